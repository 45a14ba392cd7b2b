"""Merging-model checkpoints: safe loading, config inference from shapes, file names.

Checkpoints of :class:`~weightlake.experiments.merger.TransformerAE` runs differ in their
hyperparameters, and the files do not say which.  This module reads them back:

* :func:`load_checkpoint` opens a ``.pth`` with ``torch.load(weights_only=True)`` only
  (never full unpickling), memory-mapped when the file is in torch's zip format, and
  splits it into the model's ``state_dict`` and the rest (``epoch``, optimizer state...).
* :func:`infer_config` reads every hyperparameter it can from tensor shapes and takes the
  number of heads, which no shape records, from (in this order) an explicit option, a
  sidecar JSON or the run folder's name; when none says it, the checkpoint is refused
  (:class:`~weightlake.errors.HeadsUnknownError`, saying how to give it) unless the caller
  passes ``assume_heads``, and then ``provenance["heads"]`` is ``"assumed"`` so that every
  row computed from it is marked.  :func:`infer_shapes` gives the shape-read values alone.
* :func:`load_merger` does both and returns a ready model in eval mode.
* :func:`parse_checkpoint_name` reads ``AE epoch {loss} {track} {epoch}.pth``.

State_dict normalisation (:func:`canonical_state_dict`): a ``_orig_mod.`` prefix
(``torch.compile``) and a ``module.`` prefix (``DataParallel``) are stripped, in any
nesting, when every key carries them; the token-embedder linears under ``enc_*.embed``
are renamed by their input width to ``neuron_{width}`` whatever they were called (the
report prints ``neuron_1l`` and ``neuron_12``); the report's unused ``stack`` linear
(``stack.weight``, ``stack.bias``) is dropped.  Everything else must match the model's
keys and shapes exactly, or :class:`~weightlake.errors.ArchitectureError` says what differs.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from weightlake.errors import ArchitectureError, HeadsUnknownError, IngestError, UnsafeFileError
from weightlake.experiments.merger import (
    MergerConfig,
    TransformerAE,
    build_merger,
    check_state_dict,
    embedder_name,
)

STATE_DICT_KEYS: tuple[str, ...] = ("model_state_dict", "state_dict", "model")
"""Keys under which a checkpoint dict may hold the model's state_dict, in lookup order."""

PREFIXES: tuple[str, ...] = ("_orig_mod.", "module.")
"""Wrapper prefixes stripped from every key: ``torch.compile`` and ``DataParallel``."""

IGNORED_PREFIXES: tuple[str, ...] = ("stack.",)
"""Keys dropped before loading: the report's ``stack`` linear, built but never used in forward."""

DEFAULT_HEADS: tuple[int, ...] = (4, 8, 2, 1)
"""Head counts :func:`default_heads` tries in order (the report uses 4); never applied silently."""

HEADS_HELP = ("give it with --heads N, a sidecar JSON next to the checkpoint ('<stem>.json' or 'config.json' "
              "holding {\"n_heads\": N}) or a run folder named like 'run_h4'; or pass --assume-heads N to evaluate "
              "it anyway, every row marked heads_from=assumed")
"""How to tell the tools a checkpoint's head count (the refusal's second half)."""

TRACK_WORDS: frozenset[str] = frozenset({"train", "training", "val", "valid", "validation", "test", "best", "last"})
"""Words read as the ``track`` field when a checkpoint name has a single word before the epoch."""

SIDECAR_ALIASES: dict[str, str] = {
    "heads": "n_heads", "num_heads": "n_heads", "nhead": "n_heads", "n_head": "n_heads",
    "N": "n_layers", "num_layers": "n_layers", "max_seq_len": "seq_len",
}
"""Sidecar key spellings (the report's ``TransformerAE`` arguments) mapped to :class:`MergerConfig` names."""

_ZIP_MAGIC = b"PK\x03\x04"
_SHAPE_FIELDS = ("d_model", "d_ff", "n_layers", "neck", "seq_len", "gated_attention", "output_head")
_HEADS_IN_NAME = re.compile(r"(?<![A-Za-z0-9])(?:n_?heads?|num_heads|heads?|h)[=_-]?(\d+)(?![A-Za-z0-9])", re.I)
_CHECKPOINT_NAME = re.compile(r"(?:^|[ _-])epoch[ _-]+(?P<middle>.+?)[ _-]+?(?P<epoch>-?\d+)$", re.I)


# -- reading files -------------------------------------------------------------------

def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint's state_dict and extras, without ever fully unpickling.

    Parameters
    ----------
    path
        A ``.pth`` written by ``torch.save``: either a dict holding the state_dict under
        one of :data:`STATE_DICT_KEYS` (plus ``epoch``, optimizer and scheduler states,
        losses...) or a bare state_dict.

    Returns
    -------
    state_dict, extras
        The state_dict as saved (prefixes and names untouched) and every other top-level
        entry.  Zip-format files are memory-mapped, so tensors are paged in only when
        touched; drop both results to release the file.

    Raises
    ------
    IngestError
        Missing, empty, truncated or corrupt files, and files that hold no state_dict.
    UnsafeFileError
        Files whose pickle needs more than tensors and plain containers to load (which
        could run code); nothing in them is executed.
    """
    path = Path(path)
    obj = _torch_load(path)
    return _split_checkpoint(obj, path)


def _torch_load(path: Path) -> Any:
    head = _check_file(path)
    use_mmap = head.startswith(_ZIP_MAGIC)
    if use_mmap and not zipfile.is_zipfile(path):
        raise IngestError("the file starts like a torch zip checkpoint but has no zip directory: "
                          "it is truncated (re-copy or re-save it)", path=str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol notices from the weights-only unpickler
            return torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
    except pickle.UnpicklingError as exc:
        raise UnsafeFileError(f"refused to load: the pickle needs more than tensors to unpickle, which "
                              f"could run code ({_last_line(exc)}); re-save it as a plain state_dict",
                              path=str(path)) from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, KeyError... on corrupt files
        raise IngestError(f"not a readable torch checkpoint ({type(exc).__name__}: {_last_line(exc)})",
                          path=str(path)) from exc


def _check_file(path: Path) -> bytes:
    if not path.is_file():
        raise IngestError("no such checkpoint file", path=str(path))
    with path.open("rb") as handle:
        head = handle.read(4)
    if not head:
        raise IngestError("the checkpoint file is empty", path=str(path))
    return head


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Check the documentation", "Weights only load failed"))]
    return (useful or lines or [repr(exc)])[0][:200]


def _split_checkpoint(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if isinstance(obj.get(key), Mapping):
                extras = {k: v for k, v in obj.items() if k != key}
                return _check_tensors(obj[key], path, f"[{key!r}]"), extras
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return _check_tensors(obj, path, ""), {}
    keys = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else None
    raise IngestError(f"not a checkpoint: expected a dict with one of {list(STATE_DICT_KEYS)!r} or a bare "
                      f"state_dict of tensors, got {type(obj).__name__}" + (f" with keys {keys!r}" if keys else ""),
                      path=str(path))


def _check_tensors(state_dict: Mapping[Any, Any], path: Path, where: str) -> dict[str, torch.Tensor]:
    bad = [k for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad or not state_dict:
        raise IngestError(f"the state_dict{where} must map str keys to tensors; "
                          f"offending keys {bad[:5]!r}" if bad else f"the state_dict{where} is empty", path=str(path))
    return dict(state_dict)


# -- normalising state_dicts ---------------------------------------------------------

def canonical_state_dict(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Strip wrapper prefixes, rename embedder linears by width, drop ignored keys.

    Returns
    -------
    state_dict, notes
        The normalised state_dict (same tensor objects, no copies) and what was done:
        keys ``"prefix"``, ``"renamed"`` and ``"ignored"`` when they apply.

    Raises
    ------
    ArchitectureError
        If two embedder linears of one encoder take the same input width.
    """
    sd, notes = dict(state_dict), {}
    stripped = _strip_prefixes(sd)
    if stripped:
        sd = {k[len(stripped):]: v for k, v in sd.items()}
        notes["prefix"] = f"stripped {stripped!r}"
    sd, renamed = _rename_embedders(sd)
    if renamed:
        notes["renamed"] = ", ".join(renamed)
    ignored = [k for k in sd if k.startswith(IGNORED_PREFIXES)]
    if ignored:
        notes["ignored"] = ", ".join(ignored)
    return {k: v for k, v in sd.items() if k not in ignored}, notes


def _strip_prefixes(sd: Mapping[str, Any]) -> str:
    """The combined prefix every key shares, built from :data:`PREFIXES` (e.g. ``module._orig_mod.``)."""
    combined = ""
    while sd:
        rest = [k[len(combined):] for k in sd]
        match = next((p for p in PREFIXES if all(k.startswith(p) for k in rest)), None)
        if match is None:
            return combined
        combined += match
    return combined


def _rename_embedders(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    pattern = re.compile(r"^(enc_\d+\.embed)\.([^.]+)\.weight$")
    mapping: dict[str, str] = {}
    for key, tensor in sd.items():
        match = pattern.match(key)
        if match and tensor.ndim == 2:
            module, name = match.groups()
            new = f"{module}.{embedder_name(int(tensor.shape[1]))}"
            if new in mapping.values():
                raise ArchitectureError(f"two token embedders in {module!r} take {tensor.shape[1]} inputs")
            mapping[f"{module}.{name}"] = new
    renamed = [f"{old} -> {new}" for old, new in mapping.items() if old != new]
    out = {}
    for key, tensor in sd.items():
        module, _, leaf = key.rpartition(".")
        out[f"{mapping.get(module, module)}.{leaf}"] = tensor
    return out, renamed


# -- inferring the config ------------------------------------------------------------

def infer_config(
    state_dict: Mapping[str, torch.Tensor],
    heads: int | None = None,
    sidecar: str | Path | Mapping[str, Any] | None = None,
    run_dir_name: str | None = None,
    assume_heads: int | None = None,
) -> tuple[MergerConfig, dict[str, str]]:
    """The :class:`MergerConfig` a state_dict was saved from, and where each value came from.

    Parameters
    ----------
    state_dict
        As saved; normalised with :func:`canonical_state_dict` first.
    heads
        Number of attention heads, if known: wins over every other source.
    sidecar
        A JSON file (or an already parsed mapping) with config values, e.g. from
        :func:`find_sidecar`.  Its ``n_heads`` (or ``heads``, see :data:`SIDECAR_ALIASES`)
        is the second source of heads; its ``dropout`` and ``token_sizes`` are used; shape
        values it states must agree with the tensors.
    run_dir_name
        The run folder's name or relative path; see :func:`heads_from_run_dir`.
    assume_heads
        Heads to use only when no source above gives them; the provenance is then
        ``"assumed"``.  Without it such a state_dict is refused.

    Returns
    -------
    config, provenance
        ``provenance["heads"]`` is ``"option"``, ``"sidecar"``, ``"shape"`` (a head-wise gate), ``"run_dir_name"`` or
        ``"assumed"`` and ``provenance["heads_detail"]`` says more; the other keys name the
        tensor (or source) each value was read from, plus the notes of
        :func:`canonical_state_dict`.

    Raises
    ------
    HeadsUnknownError
        If nothing records the head count and ``assume_heads`` is None.
    ArchitectureError
        If the tensors do not form a merging model (missing, unexpected or mis-shaped
        keys), the heads do not divide ``d_model``, or the sidecar contradicts the shapes.
    IngestError
        If the sidecar file cannot be read as a JSON object.
    """
    sd, notes = canonical_state_dict(state_dict)
    side = read_sidecar(sidecar)
    values, provenance = _shapes_and_dropout(sd, side)
    shape_heads = _shape(sd, "enc_1.layers.0.attn.gate.weight", "gate")[0] if values["gate"] == "headwise" else None
    n_heads, heads_prov = _resolve_heads(values["d_model"], heads, side, run_dir_name, assume_heads, shape_heads)
    provenance.update(heads_prov)
    provenance.update(notes)
    config = _make_config(dict(values, n_heads=n_heads), provenance)
    check_state_dict(config, sd)
    return config, provenance


def infer_shapes(state_dict: Mapping[str, torch.Tensor],
                 sidecar: str | Path | Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Every hyperparameter but the head count, and where each came from (as :func:`infer_config`).

    Used to show what a checkpoint is even when it is refused for want of a head count.
    """
    sd, _ = canonical_state_dict(state_dict)
    return _shapes_and_dropout(sd, read_sidecar(sidecar))


def _shapes_and_dropout(sd: Mapping[str, torch.Tensor], side: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    values, provenance = _shape_values(sd, side)
    _check_sidecar_agrees(side, values)
    values["dropout"] = _sidecar_float(side, "dropout", 0.0)
    provenance["dropout"] = "sidecar" if "dropout" in side else "default 0.0 (not stored in weights)"
    return values, provenance


def _sidecar_float(side: Mapping[str, Any], key: str, default: float) -> float:
    try:
        return float(side.get(key, default))
    except (TypeError, ValueError) as exc:
        raise ArchitectureError(f"sidecar {key!r} must be a number, got {side[key]!r}") from exc


def _make_config(values: dict[str, Any], provenance: Mapping[str, str]) -> MergerConfig:
    try:
        return MergerConfig(**values)
    except ArchitectureError as exc:
        raise ArchitectureError(f"{exc} (heads from {provenance['heads_detail']})") from exc


def _shape(sd: Mapping[str, torch.Tensor], key: str, what: str) -> tuple[int, ...]:
    if key not in sd:
        raise ArchitectureError(f"missing key {key!r}, needed to read {what}; is this a merging-model state_dict?")
    return tuple(sd[key].shape)


def _count(sd: Mapping[str, Any], pattern: str) -> int:
    rx = re.compile(pattern)
    indices = {int(m.group(1)) for k in sd if (m := rx.match(k))}
    return max(indices) + 1 if indices else 0


def _shape_values(sd: Mapping[str, torch.Tensor], side: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {
        "d_model": _shape(sd, "enc_1.norm.alpha", "d_model")[0],
        "d_ff": _shape(sd, "enc_1.layers.0.ff.linear_1.weight", "d_ff")[0],
        "n_layers": _count(sd, r"^enc_1\.layers\.(\d+)\."),
        "neck": _shape(sd, "vec2neck.weight", "neck")[0],
        "seq_len": _count(sd, r"^dec\.embed\.neurons\.(\d+)\.weight$"),
        "gated_attention": "enc_1.layers.0.attn.gate.weight" in sd,
        "output_head": "per_token" if "dec.lay.heads.0.weight" in sd else "flat",
    }
    provenance = {
        "d_model": "shape of enc_1.norm.alpha", "d_ff": "shape of enc_1.layers.0.ff.linear_1.weight",
        "n_layers": "count of enc_1.layers.*", "neck": "shape of vec2neck.weight",
        "seq_len": "count of dec.embed.neurons.*", "gated_attention": "presence of attn.gate",
        "output_head": "presence of dec.lay.heads.* (per_token) or dec.lay.linear (flat)",
    }
    if values["seq_len"] == 0:
        raise ArchitectureError("no 'dec.embed.neurons.*' keys: cannot read seq_len; is this a merging-model state_dict?")
    values["gate"], provenance["gate"] = "elementwise", "default (no attn.gate)"
    if values["gated_attention"]:
        rows = _shape(sd, "enc_1.layers.0.attn.gate.weight", "gate")[0]
        values["gate"] = "elementwise" if rows == values["d_model"] else "headwise"
        provenance["gate"] = f"shape of attn.gate.weight ({rows} rows; d_model={values['d_model']})"
    values["token_sizes"], provenance["token_sizes"] = _token_sizes(sd, values, side)
    return values, provenance


def _token_sizes(sd: Mapping[str, torch.Tensor], values: Mapping[str, Any],
                 side: Mapping[str, Any]) -> tuple[tuple[int, ...], str]:
    seq_len = values["seq_len"]
    if values["output_head"] == "per_token":
        sizes = tuple(_shape(sd, f"dec.lay.heads.{t}.weight", "token sizes")[0] for t in range(seq_len))
        return sizes, "shapes of dec.lay.heads.*"
    if "token_sizes" in side:
        return tuple(int(s) for s in side["token_sizes"]), "sidecar"
    n_out = _shape(sd, "dec.lay.linear.weight", "the output size")[0]
    widths = sorted({int(m.group(1)) for k in sd if (m := re.match(r"^enc_1\.embed\.neuron_(\d+)\.weight$", k))})
    return _solve_token_sizes(widths, seq_len, n_out), "embedder widths and output size (larger tokens first)"


def _solve_token_sizes(widths: list[int], seq_len: int, n_out: int) -> tuple[int, ...]:
    """Token sizes from the embedder widths: ``seq_len`` tokens covering ``n_out`` values."""
    if len(widths) == 1 and widths[0] * seq_len == n_out:
        return (widths[0],) * seq_len
    if len(widths) == 2:
        small, large = widths
        n_large, rem = divmod(n_out - seq_len * small, large - small)
        if rem == 0 and 0 <= n_large <= seq_len:
            return (large,) * n_large + (small,) * (seq_len - n_large)
    raise ArchitectureError(
        f"cannot infer token sizes from embedder widths {widths!r}, seq_len={seq_len} and {n_out} outputs; "
        "give 'token_sizes' in a sidecar JSON"
    )


def _check_sidecar_agrees(side: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    wrong = {k: (side[k], values[k]) for k in _SHAPE_FIELDS if k in side and side[k] != values[k]}
    if "token_sizes" in side and sum(side["token_sizes"]) != sum(values["token_sizes"]):
        wrong["token_sizes"] = (side["token_sizes"], values["token_sizes"])
    if wrong:
        detail = ", ".join(f"{k}: sidecar says {a!r}, tensors say {b!r}" for k, (a, b) in wrong.items())
        raise ArchitectureError(f"the sidecar config contradicts the state_dict ({detail})")


# -- heads ---------------------------------------------------------------------------

def _resolve_heads(d_model: int, heads: int | None, side: Mapping[str, Any], run_dir_name: str | None,
                   assume_heads: int | None = None, shape_heads: int | None = None) -> tuple[int, dict[str, str]]:
    if heads is not None:
        return int(heads), {"heads": "option", "heads_detail": f"option heads={heads!r}"}
    if "n_heads" in side:
        detail = f"sidecar {side.get('__path__', '<mapping>')!r}"
        return _as_heads(side["n_heads"], detail), {"heads": "sidecar", "heads_detail": detail}
    if shape_heads is not None:  # a head-wise gate has one row per head
        return shape_heads, {"heads": "shape", "heads_detail": "rows of the head-wise attn.gate.weight"}
    from_name = heads_from_run_dir(run_dir_name) if run_dir_name else None
    if from_name is not None:
        return from_name, {"heads": "run_dir_name", "heads_detail": f"run folder name {run_dir_name!r}"}
    if assume_heads is None:
        raise HeadsUnknownError(f"the number of attention heads (d_model={d_model}) is not recorded: no --heads, no "
                                f"sidecar n_heads, no head count in the run folder name {run_dir_name!r}; {HEADS_HELP}")
    detail = f"assumed: --assume-heads {assume_heads} (nothing records the head count)"
    return _as_heads(assume_heads, "--assume-heads"), {"heads": "assumed", "heads_detail": detail}


def _as_heads(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArchitectureError(f"heads must be an int, got {value!r} from {where}")
    return value


def default_heads(d_model: int) -> int:
    """The first of :data:`DEFAULT_HEADS` that divides ``d_model`` (4 for the report's 960).

    A suggestion for ``assume_heads``; :func:`infer_config` never applies it by itself.
    """
    return next(h for h in DEFAULT_HEADS if d_model % h == 0)


def heads_from_run_dir(name: str) -> int | None:
    """Heads written in a run folder's name, e.g. ``run_h8``, ``heads8``, ``heads=8``, ``n_heads-8``.

    ``name`` may be a relative path; its components are tried from the last (nearest the
    checkpoint) to the first, and the first component naming heads decides.  A token
    counts only when it stands alone (``depth8`` is not ``h8``).  A component naming two
    different head counts is ambiguous and skipped.

    Returns
    -------
    int or None
        The head count, or None when no component names one.
    """
    for part in reversed(re.split(r"[\\/]", name)):
        found = {int(m.group(1)) for m in _HEADS_IN_NAME.finditer(part)}
        if len(found) == 1 and min(found) > 0:
            return found.pop()
    return None


# -- sidecars ------------------------------------------------------------------------

def find_sidecar(checkpoint: str | Path) -> Path | None:
    """The sidecar config JSON of a checkpoint, if any.

    Tried in order, in the checkpoint's folder: ``<stem>.json`` (``AE epoch mse val 3.json``),
    ``<name>.json`` (``AE epoch mse val 3.pth.json``), ``config.json`` (one for the run).
    """
    path = Path(checkpoint)
    for candidate in (path.with_suffix(".json"), path.with_name(path.name + ".json"), path.with_name("config.json")):
        if candidate.is_file():
            return candidate
    return None


def read_sidecar(sidecar: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    """A sidecar's config values with :data:`SIDECAR_ALIASES` resolved; ``{}`` for None.

    Unknown keys (learning rate, epochs...) are kept but not used.  A file's path is kept
    under ``"__path__"`` for provenance.

    Raises
    ------
    IngestError
        If the file cannot be read or is not a JSON object.
    """
    if sidecar is None:
        return {}
    if isinstance(sidecar, Mapping):
        data, where = dict(sidecar), None
    else:
        data, where = _read_json(Path(sidecar)), str(sidecar)
    out = {SIDECAR_ALIASES.get(k, k): v for k, v in data.items()}
    if where is not None:
        out["__path__"] = where
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IngestError(f"cannot read the sidecar config: {exc}", path=str(path)) from exc
    if not isinstance(data, dict):
        raise IngestError(f"the sidecar config must be a JSON object, got {type(data).__name__}", path=str(path))
    return data


# -- one call ------------------------------------------------------------------------

def load_merger(
    path: str | Path,
    *,
    config: MergerConfig | None = None,
    heads: int | None = None,
    sidecar: str | Path | Mapping[str, Any] | None = None,
    run_dir_name: str | None = None,
    assume_heads: int | None = None,
) -> tuple[TransformerAE, MergerConfig, dict[str, str]]:
    """Load a checkpoint into a ready :class:`TransformerAE` (eval mode, on CPU).

    Parameters
    ----------
    path
        The ``.pth`` file.
    config
        Use this config (e.g. one from :func:`~weightlake.experiments.scan.scan_experiments`)
        instead of inferring one; the state_dict must still fit it.
    heads, sidecar, run_dir_name, assume_heads
        As for :func:`infer_config`; ``sidecar`` defaults to :func:`find_sidecar` and
        ``run_dir_name`` to the checkpoint's folder name.

    Returns
    -------
    model, config, provenance

    Raises
    ------
    IngestError, UnsafeFileError, ArchitectureError
        As :func:`load_checkpoint` and :func:`infer_config`; messages name the file.
    """
    path = Path(path)
    state_dict, _extras = load_checkpoint(path)
    try:
        if config is None:
            side = sidecar if sidecar is not None else find_sidecar(path)
            config, provenance = infer_config(state_dict, heads, side, run_dir_name or path.parent.name,
                                              assume_heads)
        else:
            provenance = {"config": "given"}
        sd, notes = canonical_state_dict(state_dict)
        return build_merger(config, sd), config, {**provenance, **notes}
    except ArchitectureError as exc:
        raise type(exc)(f"file {str(path)!r}: {exc}") from exc


# -- file names ----------------------------------------------------------------------

def parse_checkpoint_name(path: str | Path) -> dict[str, Any]:
    """Read ``loss``, ``track`` and ``epoch`` from ``AE epoch {loss} {track} {epoch}.pth``.

    Accepted: any prefix before the word ``epoch`` (usually ``AE``), any case; words
    separated by spaces, underscores or hyphens; a ``.pth``, ``.pt`` or no suffix; a
    loss of several words (``AE epoch quantile loss val 12.pth`` gives loss ``"quantile
    loss"``, joined with the name's own separator) or a number (kept as the string
    written).  With a single word between ``epoch`` and the number, it is the track if it
    is one of :data:`TRACK_WORDS`, else the loss.

    Returns
    -------
    dict
        ``{"loss": str | None, "track": str | None, "epoch": int | None}``; all None when
        the name does not match.
    """
    name = Path(path).name
    stem = re.sub(r"\.(pth|pt)$", "", name, flags=re.I)
    match = _CHECKPOINT_NAME.search(stem)
    if not match:
        return {"loss": None, "track": None, "epoch": None}
    middle = match.group("middle")
    separator = " " if " " in middle else ("_" if "_" in middle else "-")
    words = [w for w in middle.split(separator) if w]
    loss, track = _loss_and_track(words, separator)
    return {"loss": loss, "track": track, "epoch": int(match.group("epoch"))}


def _loss_and_track(words: list[str], separator: str) -> tuple[str | None, str | None]:
    if len(words) >= 2:
        return separator.join(words[:-1]), words[-1]
    if words and words[0].lower() in TRACK_WORDS:
        return None, words[0]
    return (words[0] if words else None), None

