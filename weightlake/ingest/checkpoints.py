"""Read a tree of zoo checkpoints (``.pth`` files) into rows and a float32 weight block.

Two layouts exist on disk (spec, section 3)::

    A: {root}/{label}/{activation}/checkpoint epoch {e}.pth      (+ {label}/{activation}/metrics/)
    B: {root}/{label}/{activation}/{init}/checkpoint epoch {e}.pth (+ .../{init}/metrics/)

:func:`scan_checkpoint_tree` walks a tree, detects its layout and parses label, activation,
initialisation and the epoch written in each file name; it opens no checkpoint.
:func:`read_checkpoints` loads the files in a process pool with the strict reader of
:mod:`weightlake.ingest.torch_pickle` (a narrower allow-list than torch's), falling back
to ``torch.load(..., weights_only=True)``: never full unpickling, so a malicious file is
refused, not run.  It validates every state_dict against the architecture and maps the
checkpoints of each model onto the epoch bins the CSV zoo used.

Epoch-bin rule (:func:`assign_epoch_bins`)
-----------------------------------------
The trainer saved checkpoints at epochs 11, 16, ..., 36 and, when it stopped early,
one more (``checkpoint epoch -1.pth``) whose ``epoch`` key holds the real last epoch.
The CSV filed each model under its *closest predecessor bin* ("a model exiting on
epoch 19 is saved along models in the epoch 16 bin") and repeated it in later bins, so
every slot of the grid was filled.  Every checkpoint has an *actual epoch* (its
``epoch`` key, else the number in its name).  For each bin ``b`` with next bin ``b'``
(``b' = +inf`` after the last bin):

1. a checkpoint whose actual epoch is exactly ``b`` fills the slot directly;
   where the file named for epoch ``b`` is there but rejected (unreadable, misshapen,
   non-finite), the slot is missing: training went on, so no earlier state stands in;
2. otherwise the latest checkpoint with ``bins[0] <= epoch < b'`` fills it as a
   fallback: one filed under ``b`` itself (the early-stop checkpoint of epoch 19 fills
   bin 16 when no epoch-16 checkpoint exists), else the closest earlier one, which
   after an early stop is the model's final state, repeated in every later bin;
3. a checkpoint without any known epoch (``checkpoint.pth`` with no ``epoch`` key) is
   the end of training: it fills, as a fallback, every bin after the last checkpoint
   whose epoch is known that rule 1 left empty;
4. otherwise the slot is missing.  Checkpoints earlier than the first bin fill nothing.

A fallback row carries a copy of the chosen checkpoint's vector, ``fallback = True`` and
the checkpoint's own ``actual_epoch``, so the duplicates the spec warns about are
visible, never hidden.  Two files with the same actual epoch (``epoch 36.pth`` and
``epoch36.pth``) are one state: the canonically named one wins, the other is counted as
shadowed.

Accuracy of a row is ``metrics/Test Accuracy IID.npy[0][actual_epoch + 1]`` (index 0 is
before training), or the array's last entry for a checkpoint of unknown epoch; a missing
``metrics/`` folder gives null accuracies and a warning, never a failure.
"""

from __future__ import annotations

import ast
import math
import multiprocessing
import os
import re
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from weightlake._util import non_finite_rows
from weightlake.arch import ACTIVATIONS, CNN_S, EPOCH_BINS, INITS, Architecture
from weightlake.errors import ArchitectureError, IngestError

LAYOUTS: tuple[str, ...] = ("A", "B")
METRICS_DIR = "metrics"
ACCURACY_FILE = "Test Accuracy IID.npy"
FINAL_EPOCH: int = 1_000_000
"""Key :func:`assign_epoch_bins` reads as "final checkpoint, epoch unknown"."""

_NAME_RE = re.compile(r"checkpoint(?: ?epoch ?(-?\d+))?\.pth")
_LABEL_RE = re.compile(r"\[\s*\d+(?:\s*,\s*\d+)*\s*\]")
_REASON_CHARS = 400
_TORCH_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation", "(1)", "(2)")

R = TypeVar("R")


# -- values ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckpointFile:
    """One ``.pth`` file found by :func:`scan_checkpoint_tree`, or one path it rejected.

    ``relpath`` is POSIX and relative to ``root``.  ``name_epoch`` is the number in the
    file name (``-1`` marks an early stop), ``None`` for ``checkpoint.pth``.  When
    ``reject`` is set the path cannot be ingested and the other fields may be empty.
    """

    root: str
    relpath: str
    layout: str
    label: str | None = None
    classes: tuple[int, ...] = ()
    activation: str | None = None
    init: str | None = None
    name_epoch: int | None = None
    reject: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.root) / self.relpath

    @property
    def model_key(self) -> tuple[str, str, str]:
        """``(label, activation, init)``: the model this checkpoint is a state of."""
        return str(self.label), str(self.activation), str(self.init)

    @property
    def canonical(self) -> bool:
        """Whether the name is ``checkpoint epoch {e}.pth`` with ``e >= 0``."""
        return self.name_epoch is not None and self.relpath.endswith(f"/checkpoint epoch {self.name_epoch}.pth")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BinChoice(Generic[R]):
    """The checkpoint chosen for one epoch bin of one model."""

    bin: int
    epoch: int | None
    """Actual epoch of the chosen checkpoint, ``None`` if unknown (a final ``checkpoint.pth``)."""
    ref: R
    fallback: bool


@dataclass(frozen=True)
class CheckpointSummary:
    """What a :func:`read_checkpoints` run found, over the grid labels x activations x inits x bins."""

    layout: str | None
    files: int
    files_read: int
    files_rejected: int
    files_unused: int
    """Read fine but chosen for no slot (epoch before the first bin, or shadowed)."""
    files_shadowed: int
    labels: int
    activations: int
    inits: int
    bins: tuple[int, ...]
    slots_expected: int
    slots_direct: int
    slots_fallback: int
    slots_missing: int
    models_without_metrics: int
    rows_without_accuracy: int
    load_cpu_seconds: float
    """CPU time spent loading files, summed over workers (wall time divides it by up to ``workers``)."""
    missing_slots: tuple[tuple[str, str, str, int], ...] = ()
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CheckpointBatch:
    """Rows, weights, rejects and summary of one :func:`read_checkpoints` run.

    ``rows`` is a polars DataFrame, one row per filled slot, aligned with ``weights``
    (float32 ``[n, P]``).  ``rejects`` lists ``(path, reason)`` for every path that
    could not be ingested.
    """

    rows: Any
    weights: np.ndarray
    rejects: list[tuple[str, str]]
    summary: CheckpointSummary


@dataclass
class _Loaded:
    """What the pool returned for the good files (indices into the file list)."""

    flats: dict[int, np.ndarray] = field(default_factory=dict)
    epochs: dict[int, int | None] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)
    accuracy: dict[str, np.ndarray | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0


# -- epoch bins ----------------------------------------------------------------------------
def assign_epoch_bins(available: Mapping[int, R], bins: Sequence[int] = EPOCH_BINS,
                      refused: Collection[int] = ()) -> dict[int, BinChoice[R]]:
    """Map one model's checkpoints to epoch bins (the rule of the module docstring).

    Parameters
    ----------
    available : mapping of int to ref
        Actual epoch -> checkpoint reference; key :data:`FINAL_EPOCH` marks a final
        checkpoint of unknown epoch.
    bins : sequence of int
        Sorted epoch bins.
    refused : collection of int
        Epochs whose checkpoint was there but rejected (unreadable, non-finite): their bins
        stay missing, since an earlier checkpoint is no early stop's last state.

    Returns
    -------
    dict of int to BinChoice
        Bin -> choice for every bin that can be filled; missing bins are absent.
    """
    known = sorted(e for e in available if e != FINAL_EPOCH)
    last_known = known[-1] if known else -math.inf
    out: dict[int, BinChoice[R]] = {}
    for i, b in enumerate(bins):
        upper = bins[i + 1] if i + 1 < len(bins) else math.inf
        if b in available:
            out[b] = BinChoice(b, b, available[b], fallback=False)
        elif b in refused:
            continue
        elif FINAL_EPOCH in available and b > last_known:
            out[b] = BinChoice(b, None, available[FINAL_EPOCH], fallback=True)
        else:
            earlier = [e for e in known if bins[0] <= e < upper]
            if earlier:
                out[b] = BinChoice(b, earlier[-1], available[earlier[-1]], fallback=True)
    return out


# -- scanning ------------------------------------------------------------------------------
def scan_checkpoint_tree(root: str | Path, arch: Architecture = CNN_S, init: str | None = None,
                         layout: str | None = None, follow_symlinks: bool = False) -> list[CheckpointFile]:
    """Find the checkpoint files of a tree and parse their paths (no file is opened).

    Parameters
    ----------
    root : path
        The ``checkpoints`` folder.
    arch : Architecture
        Bounds the class indices a label may hold (``arch.n_outputs``).
    init : str, optional
        Layout A: the initialisation of the whole tree (required, the paths lack it).
        Layout B: keep only this initialisation.
    layout : {"A", "B"}, optional
        Skip detection.
    follow_symlinks : bool
        Symbolic links (files or folders) that point outside ``root`` are rejected unless
        this is set; links within the tree are always followed.

    Returns
    -------
    list of CheckpointFile
        Sorted by path; paths that cannot be ingested (a label folder that does not
        parse, an unknown activation or init, an unknown file name) carry ``reject``.

    Raises
    ------
    IngestError
        ``root`` is not a folder, the layout is mixed or unrecognisable, or layout A is
        read without ``init``.
    """
    base = Path(root).absolute()
    if not base.is_dir():
        raise IngestError("the checkpoint root is not a folder", path=str(base))
    ls = _Listing(base, follow_symlinks)
    folders, rejects = _list_tree(base, arch.n_outputs, ls)
    chosen = _parse_layout(layout) if layout is not None else _detect_layout(base, folders, ls)
    init = _check_init(chosen, init)
    files = [CheckpointFile(str(base), rel, chosen, reject=why) for rel, why in rejects]
    for (label, classes, activation), act_dir in folders.items():
        files += _scan_activation_dir(base, act_dir, chosen, init, label, classes, activation, ls)
    files += [CheckpointFile(str(base), _rel(base, p), chosen, reject=f"a symbolic link to {target!r}, outside the "
                             "ingested tree; pass --follow-symlinks (follow_symlinks=True) to ingest it")
              for p, target in ls.outside]
    return sorted(files, key=lambda f: f.relpath)


def _list_tree(base: Path, n_classes: int, ls: _Listing
               ) -> tuple[dict[tuple[str, tuple[int, ...], str], Path], list[tuple[str, str]]]:
    """Label and activation folders of a tree, plus the ones that do not parse."""
    listing: dict[tuple[str, tuple[int, ...], str], Path] = {}
    rejects: list[tuple[str, str]] = []
    for label_dir in ls.subdirs(base):
        classes = _parse_label(label_dir.name, n_classes)
        if isinstance(classes, str):
            rejects.append((label_dir.name, classes))
            continue
        label = _label_repr(classes)
        for act_dir in ls.subdirs(label_dir):
            if act_dir.name not in ACTIVATIONS:
                rejects.append((_rel(base, act_dir), f"unknown activation folder {act_dir.name!r}; "
                                                     f"expected one of {ACTIVATIONS}"))
                continue
            listing[(label, classes, act_dir.name)] = act_dir
        rejects += [(_rel(base, p), "a .pth file directly in a label folder; expected "
                                    "{label}/{activation}/...") for p in ls.pth_files(label_dir)]
    return listing, rejects


def _parse_label(name: str, n_classes: int) -> tuple[int, ...] | str:
    """``'[1, 7, 9]'`` -> ``(1, 7, 9)``; a reason string when the name is not a label."""
    if not _LABEL_RE.fullmatch(name):
        return f"label folder {name!r} is not a class list like '[1, 7, 9]'"
    classes = tuple(ast.literal_eval(name))
    if len(set(classes)) != len(classes) or any(c >= n_classes for c in classes):
        return f"label folder {name!r} must hold distinct classes in 0..{n_classes - 1}"
    return tuple(sorted(classes))


def _label_repr(classes: Iterable[int]) -> str:
    return "[" + ", ".join(str(c) for c in classes) + "]"


def _detect_layout(base: Path, folders: Mapping[Any, Path], ls: _Listing) -> str:
    """``'A'`` if checkpoints sit in activation folders, ``'B'`` if one level deeper."""
    flat = [d for d in folders.values() if ls.pth_files(d)]
    nested = [s for d in folders.values() for s in ls.subdirs(d) if s.name != METRICS_DIR and ls.pth_files(s)]
    if flat and nested:
        raise IngestError(
            f"mixed layouts: {len(flat)} activation folders hold .pth files directly (layout A, e.g. "
            f"{_rel(base, flat[0])!r}) and {len(nested)} folders one level deeper (layout B, e.g. "
            f"{_rel(base, nested[0])!r}); split the tree or pass layout='A' or 'B'", path=str(base))
    if not flat and not nested:
        raise IngestError(
            f"no checkpoint files found in {len(folders)} label/activation folders; expected "
            "{label}/{activation}/checkpoint epoch {e}.pth (layout A) or "
            "{label}/{activation}/{init}/checkpoint epoch {e}.pth (layout B)", path=str(base))
    return "A" if flat else "B"


def _parse_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise IngestError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    return layout


def _check_init(layout: str, init: str | None) -> str | None:
    from weightlake.ingest.common import check_init

    if init is not None:
        check_init(init)
    if layout == "A" and init is None:
        raise IngestError("layout A paths do not name the initialisation: pass init=... (one of "
                          f"{INITS}; the reference zoo is 'kaiming_uniform')")
    return init


def _scan_activation_dir(base: Path, act_dir: Path, layout: str, init: str | None, label: str,
                         classes: tuple[int, ...], activation: str, ls: _Listing) -> list[CheckpointFile]:
    model = CheckpointFile(str(base), "", layout, label=label, classes=classes, activation=activation)
    if layout == "A":
        extra = [s for s in ls.subdirs(act_dir) if s.name != METRICS_DIR and ls.pth_files(s)]
        out = [replace(model, relpath=_rel(base, s), reject="a sub-folder with .pth files in a layout-A tree")
               for s in extra]
        return out + [_parse_file(base, p, replace(model, init=init)) for p in ls.pth_files(act_dir)]
    out = [replace(model, relpath=_rel(base, p), reject="a .pth file directly in an activation folder of a "
                   "layout-B tree; expected {activation}/{init}/...") for p in ls.pth_files(act_dir)]
    for init_dir in ls.subdirs(act_dir):
        if init_dir.name == METRICS_DIR or (init is not None and init_dir.name != init):
            continue
        if init_dir.name not in INITS:
            out.append(replace(model, relpath=_rel(base, init_dir), reject=f"unknown initialisation folder "
                               f"{init_dir.name!r}; expected one of {INITS}"))
            continue
        out += [_parse_file(base, p, replace(model, init=init_dir.name)) for p in ls.pth_files(init_dir)]
    return out


def _parse_file(base: Path, path: Path, model: CheckpointFile) -> CheckpointFile:
    """``model`` (label, activation, init filled in) for the file at ``path``."""
    match = _NAME_RE.fullmatch(path.name)
    rel = _rel(base, path)
    if match is None:
        return replace(model, relpath=rel, reject=f"file name {path.name!r} not recognised; expected "
                       "'checkpoint epoch {e}.pth', 'checkpoint epoch{e}.pth' or 'checkpoint.pth'")
    epoch = None if match.group(1) is None else int(match.group(1))
    if epoch is not None and epoch < -1:
        return replace(model, relpath=rel, reject=f"epoch {epoch} in the file name; only -1 (early stop) "
                       "may be negative")
    return replace(model, relpath=rel, name_epoch=epoch)


class _Listing:
    """Directory listings of one scan, each folder read once with ``os.scandir``.

    ``DirEntry`` carries the file type from the directory itself, so a tree of 40k
    files is listed without one ``stat`` per file.
    """

    def __init__(self, base: Path, follow_symlinks: bool = False) -> None:
        self._cache: dict[Path, tuple[list[Path], list[Path]]] = {}
        self._base = os.path.realpath(base)
        self._follow = follow_symlinks
        self.outside: list[tuple[Path, str]] = []
        """Symbolic links left out because they point outside the tree: (link, target)."""

    def _inside(self, link: Path) -> bool:
        target = os.path.realpath(link)
        if self._follow or target == self._base or target.startswith(self._base + os.sep):
            return True
        self.outside.append((link, target))
        return False

    def _ls(self, path: Path) -> tuple[list[Path], list[Path]]:
        if path not in self._cache:
            with os.scandir(path) as entries:
                items = [(e.name, e.is_dir(), e.is_file()) for e in entries
                         if not e.is_symlink() or self._inside(path / e.name)]
            self._cache[path] = (sorted(path / n for n, d, _ in items if d),
                                 sorted(path / n for n, _, f in items if f and n.endswith(".pth")))
        return self._cache[path]

    def subdirs(self, path: Path) -> list[Path]:
        return self._ls(path)[0]

    def pth_files(self, path: Path) -> list[Path]:
        return self._ls(path)[1]


def _rel(base: Path, path: Path) -> str:
    # Every path here was built by joining names onto ``base``: slicing is exact, and
    # much cheaper than Path.relative_to over 40k files.
    return str(path)[len(str(base)) + 1:].replace(os.sep, "/")


# -- reading (runs in worker processes) -------------------------------------------------------
def _init_worker() -> None:
    import torch

    # Two workers on two cores: intra-op threads would only fight each other.
    torch.set_num_threads(1)


def _read_batch(arch: Architecture, groups: list[tuple[str, list[tuple[int, str]]]]
                ) -> tuple[list[int], np.ndarray, list[int | None], list[tuple[int, str]],
                           list[tuple[str, np.ndarray | None, str | None]], float]:
    """Load the checkpoints of a few model folders: one task, many files (per-task overhead)."""
    start = time.process_time()
    ok: list[int] = []
    flats: list[np.ndarray] = []
    epochs: list[int | None] = []
    failures: list[tuple[int, str]] = []
    metrics = []
    for model_dir, items in groups:
        metrics.append((model_dir, *_load_accuracy(Path(model_dir))))
        for index, path in items:
            flat, epoch, reason = _load_checkpoint(path, arch)
            if flat is None:
                failures.append((index, str(reason)))
                continue
            ok.append(index)
            flats.append(flat)
            epochs.append(epoch)
    block = np.stack(flats) if flats else np.empty((0, arch.n_params), np.float32)
    return ok, block, epochs, failures, metrics, time.process_time() - start


def _load_checkpoint(path: str, arch: Architecture) -> tuple[np.ndarray | None, int | None, str | None]:
    """``(flat, epoch key, None)`` or ``(None, None, reason)``; never runs code from the file.

    The strict reader (:mod:`weightlake.ingest.torch_pickle`, a narrower allow-list than
    torch's weights-only unpickler, about 7x faster) goes first; anything it does not
    allow goes to ``torch.load(weights_only=True)``, which then accepts or refuses it.
    """
    from weightlake.ingest.torch_pickle import Checkpoint, StrictLoadUnsupported, declared_size

    try:
        size, limit = declared_size(path), checkpoint_budget(arch)
    except OSError as exc:
        return None, None, f"cannot read the file: {_short(exc)}"
    if size > limit:
        return None, None, (f"the file declares {size:,} bytes once decompressed, over the {limit:,}-byte limit for "
                            f"a {arch.name} checkpoint (set {BUDGET_ENV}=MB to raise it); nothing was read")
    try:
        with Checkpoint(path) as ckpt:
            return _refuse_non_finite(*_flatten_strict(ckpt, arch), arch)
    except StrictLoadUnsupported:
        pass
    except ArchitectureError as exc:
        return None, None, _short(exc, with_type=False)
    except (OSError, ValueError, KeyError, EOFError) as exc:
        return None, None, f"not a readable torch checkpoint (truncated or corrupted?): {_short(exc)}"
    return _refuse_non_finite(*_load_with_torch(path, arch), arch)


def non_finite_reason(flat: np.ndarray, arch: Architecture, where: str = "model_state_dict") -> str | None:
    """Why ``flat`` cannot be stored (its first NaN or infinity, by state_dict key), or ``None``.

    The CSV reader refuses such a weight naming row and column; a checkpoint or a
    safetensors file is refused the same way, naming the tensor key and the value's
    index in that tensor.
    """
    flat = np.asarray(flat).reshape(-1)
    if not len(non_finite_rows(flat[None])):
        return None
    bad = np.flatnonzero(~np.isfinite(flat))
    first = int(bad[0])
    spec = next(t for t in arch.tensors if t.start <= first < t.stop)
    index = tuple(int(i) for i in np.unravel_index(first - spec.start, spec.shape)) if spec.shape else ()
    return (f"{where}: {spec.key!r} holds {float(flat[first])!r} at index {index} ({len(bad)} non-finite "
            f"value{'s' if len(bad) > 1 else ''} in all); weights must be finite numbers")


def _refuse_non_finite(flat: np.ndarray | None, epoch: int | None, reason: str | None,
                       arch: Architecture) -> tuple[np.ndarray | None, int | None, str | None]:
    why = non_finite_reason(flat, arch) if flat is not None else None
    return (None, None, why) if why else (flat, epoch, reason)


BUDGET_ENV = "WEIGHTLAKE_MAX_CHECKPOINT_MB"
"""Environment override of :func:`checkpoint_budget`, in MB."""


def checkpoint_budget(arch: Architecture) -> int:
    """The most bytes one checkpoint file may declare once decompressed.

    64 MiB plus 16 float32 copies of the model (weights, optimizer moments, gradients and
    room to spare): 64 MiB for CNN-s, about 0.8 GB for a ResNet-18. Files over it are
    refused before anything is decompressed; ``$WEIGHTLAKE_MAX_CHECKPOINT_MB`` overrides.
    """
    given = os.environ.get(BUDGET_ENV)
    if given:
        try:
            return int(float(given) * 2**20)
        except ValueError:
            raise IngestError(f"{BUDGET_ENV} must be a number of MB, got {given!r}") from None
    return 64 * 2**20 + 16 * 4 * arch.n_params


def _flatten_strict(ckpt: Any, arch: Architecture) -> tuple[np.ndarray | None, int | None, str | None]:
    from weightlake.ingest.torch_pickle import LazyTensor

    obj = ckpt.obj
    if not isinstance(obj, Mapping):
        return None, None, f"expected a dict with 'model_state_dict', got {type(obj).__name__}"
    state_dict = obj.get("model_state_dict", obj.get("state_dict", obj))
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, LazyTensor) for v in state_dict.values()):
        return None, None, f"no state_dict of tensors found; top-level keys {sorted(map(str, obj))[:8]}"
    storages = {v.storage.key: v.storage.numel * np.dtype(v.storage.dtype).itemsize for v in state_dict.values()}
    if sum(storages.values()) > 8 * arch.n_params:
        return None, None, (f"model_state_dict declares {sum(storages.values()):,} bytes of tensor storage for a "
                            f"{arch.n_params:,}-parameter {arch.name} model; refused before reading")
    arrays = {k: ckpt.materialize(v) for k, v in state_dict.items()}
    flat = np.asarray(arch.state_dict_to_flat(arrays, where="model_state_dict"), dtype=np.float32)
    epoch: Any = obj.get("epoch")
    if isinstance(epoch, LazyTensor) and epoch.numel() == 1:
        epoch = int(ckpt.materialize(epoch).reshape(-1)[0])
    ok = isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0
    return flat, epoch if ok else None, None


def _load_with_torch(path: str, arch: Architecture) -> tuple[np.ndarray | None, int | None, str | None]:
    import pickle

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        return None, None, f"refused by weights-only loading, nothing was executed: {_pickle_reason(exc)}"
    except Exception as exc:  # torch raises OSError, RuntimeError, KeyError, EOFError ... on bad bytes
        return None, None, f"not a readable torch checkpoint (truncated or corrupted?): {_short(exc)}"
    try:
        return _flatten(obj, arch, torch.Tensor)
    except ArchitectureError as exc:
        return None, None, _short(exc, with_type=False)
    except Exception as exc:  # odd content (a bf16 or sparse tensor...) must not sink the whole task
        return None, None, f"unexpected checkpoint content: {_short(exc)}"


def _flatten(obj: Any, arch: Architecture, tensor_type: Any) -> tuple[np.ndarray | None, int | None, str | None]:
    """The flat float32 vector and ``epoch`` key of a torch-loaded checkpoint dict (or bare state_dict)."""
    if not isinstance(obj, Mapping):
        return None, None, f"expected a dict with 'model_state_dict', got {type(obj).__name__}"
    state_dict = obj.get("model_state_dict", obj.get("state_dict", obj))
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, tensor_type) for v in state_dict.values()):
        return None, None, f"no state_dict of tensors found; top-level keys {sorted(map(str, obj))[:8]}"
    flat = arch.state_dict_to_flat(state_dict, where="model_state_dict")
    epoch: Any = obj.get("epoch")
    if isinstance(epoch, tensor_type) and epoch.numel() == 1:  # some trainers save a 0-d tensor
        epoch = epoch.item()
    ok = isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0
    return flat.float().numpy(), epoch if ok else None, None


def _load_accuracy(model_dir: Path) -> tuple[np.ndarray | None, str | None]:
    """Test accuracy per epoch (index 0 before training), or a warning."""
    path = model_dir / METRICS_DIR / ACCURACY_FILE
    if not path.is_file():
        return None, f"{path}: missing, accuracy left null"
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # a bad metrics file costs its accuracies, never the weights
        return None, f"{path}: unreadable ({_short(exc)}), accuracy left null"
    if not isinstance(arr, np.ndarray):
        return None, f"{path}: not a single array, accuracy left null"
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.number):
        return None, f"{path}: expected shape (1, E+1) numbers, got {arr.shape} {arr.dtype}; accuracy left null"
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    outside = np.flatnonzero(finite & ((arr < 0) | (arr > 100)))
    if outside.size:  # the spec's accuracies are percentages: this file holds something else
        i = int(outside[0])
        return None, (f"{path}: index {i} holds {float(arr[i])!r}, not a percentage in 0..100; "
                      "accuracy left null")
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        return arr, (f"{path}: {int((~finite).sum())} value(s) not finite (first: index {i}, {float(arr[i])!r}); "
                     "those epochs' accuracy left null")
    return arr, None


def _pickle_reason(exc: BaseException) -> str:
    """The one sentence of torch's refusal that names the cause."""
    text = str(exc)
    _, marker, cause = text.rpartition("WeightsUnpickler error:")
    lines = [ln.strip() for ln in (cause if marker else text).splitlines()]
    telling = [ln for ln in lines if ln and not ln.startswith(_TORCH_BOILERPLATE)]
    first = ([ln for ln in telling if "GLOBAL" in ln] or telling or [type(exc).__name__])[0]
    # Only the first sentence: torch goes on to suggest allowlisting the global, which
    # is the wrong advice for a file nobody vouched for.
    return first.split(". ")[0].rstrip(".")[:_REASON_CHARS]


def _short(exc: BaseException, *, with_type: bool = True) -> str:
    text = " ".join(str(exc).split())[:_REASON_CHARS]
    return f"{type(exc).__name__}: {text}" if with_type else text


# -- reading (parent side) ---------------------------------------------------------------------
def read_checkpoints(files: Sequence[CheckpointFile], arch: Architecture = CNN_S, workers: int = 2,
                     progress: Callable[[int, int], None] | None = None, *,
                     bins: Sequence[int] = EPOCH_BINS, chunk_files: int | None = None) -> CheckpointBatch:
    """Load checkpoints in parallel and map them onto the epoch-bin grid.

    Parameters
    ----------
    files : sequence of CheckpointFile
        From :func:`scan_checkpoint_tree`; rejected entries go straight to ``rejects``.
    arch : Architecture
        Every state_dict is validated against it; vectors are in its flat order.
    workers : int
        Worker processes; ``<= 1`` reads in this process.
    progress : callable, optional
        Called as ``progress(files_done, files_total)`` after each task.
    bins : sequence of int
        Epoch bins of the grid.
    chunk_files : int, optional
        Files per task (default: about eight tasks per worker, 32-512 files each).

    Returns
    -------
    CheckpointBatch
        ``rows`` columns: label (str), classes (list[i8]), class_mask (i32, bit d for
        digit d), n_classes, activation, init, epoch (the bin), actual_epoch (null if
        unknown), accuracy (percent or null), source_file (relative to the root),
        source_row (null), fallback (bool).  ``weights`` float32 ``[n, P]``.

    Notes
    -----
    Workers start from a forkserver that imports torch once, so a script that calls
    this with ``workers > 1`` needs the usual ``if __name__ == "__main__":`` guard.
    Each file costs about 5 ms of CPU, nearly all of it inside torch's pure-Python
    weights-only unpickler, so the pool scales with cores, not with tricks.
    """
    good = [i for i, f in enumerate(files) if f.reject is None]
    loaded = _run_pool(files, good, arch, workers, progress, chunk_files)
    rejects = [(str(f.path), str(f.reject)) for f in files if f.reject is not None]
    rejects += [(str(files[i].path), why) for i, why in sorted(loaded.failures.items())]
    chosen, shadowed, warnings = _choose_slots(files, loaded, bins)
    return _assemble(files, loaded, chosen, shadowed, rejects, warnings + loaded.warnings, bins, arch)


def _run_pool(files: Sequence[CheckpointFile], good: list[int], arch: Architecture, workers: int,
              progress: Callable[[int, int], None] | None, chunk_files: int | None) -> _Loaded:
    batches = _make_batches(files, good, workers, chunk_files)
    if workers <= 1 or len(batches) <= 1:
        return _collect((_read_batch(arch, b) for b in batches), progress, len(good))
    with ProcessPoolExecutor(max_workers=min(workers, len(batches)), mp_context=_pool_context(),
                             initializer=_init_worker) as pool:
        return _collect(pool.map(_read_batch, [arch] * len(batches), batches), progress, len(good))


def _collect(results: Iterable[Any], progress: Callable[[int, int], None] | None, total: int) -> _Loaded:
    out, done = _Loaded(), 0
    for ok, block, epochs, failures, metrics, cpu in results:
        out.cpu_seconds += cpu
        out.flats.update(zip(ok, block, strict=True))
        out.epochs.update(zip(ok, epochs, strict=True))
        out.failures.update(failures)
        for model_dir, acc, warning in metrics:
            out.accuracy[model_dir] = acc
            if warning:
                out.warnings.append(warning)
        done += len(ok) + len(failures)
        if progress is not None:
            progress(done, total)
    return out


def _make_batches(files: Sequence[CheckpointFile], good: list[int], workers: int,
                  chunk_files: int | None) -> list[list[tuple[str, list[tuple[int, str]]]]]:
    """Tasks of whole model folders, so a worker loads each ``metrics/`` once."""
    groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for i in good:
        groups[str(files[i].path.parent)].append((i, str(files[i].path)))
    size = chunk_files or min(512, max(32, math.ceil(len(good) / max(1, workers * 8))))
    batches: list[list[tuple[str, list[tuple[int, str]]]]] = [[]]
    count = 0
    for model_dir, items in groups.items():
        if count >= size:
            batches.append([])
            count = 0
        batches[-1].append((model_dir, items))
        count += len(items)
    return [b for b in batches if b]


def _pool_context() -> Any:
    # fork after torch has run ops in the parent can hang its thread pools; a forkserver
    # that imports torch once gives clean workers that start fast on every later call.
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["torch", __name__])
        return ctx
    return multiprocessing.get_context("spawn")


def _actual_epoch(f: CheckpointFile, key: int | None) -> int:
    if key is not None:
        return key
    if f.name_epoch is not None and f.name_epoch >= 0:
        return f.name_epoch
    return FINAL_EPOCH


def _priority(f: CheckpointFile, epoch: int) -> tuple[int, str]:
    """Lower wins when two files of a model hold the same actual epoch."""
    if f.name_epoch == epoch:
        return (0 if f.canonical else 1), f.relpath
    return (2 if f.name_epoch == -1 else 3 if f.name_epoch is None else 4), f.relpath


def _choose_slots(files: Sequence[CheckpointFile], loaded: _Loaded, bins: Sequence[int]
                  ) -> tuple[dict[tuple[str, str, str], dict[int, BinChoice[int]]], int, list[str]]:
    """Per model: bin -> chosen file index; also the shadowed-file count and warnings."""
    per_model: dict[tuple[str, str, str], dict[int, int]] = defaultdict(dict)
    shadowed, warnings = 0, []
    for i in sorted(loaded.flats):
        f, key = files[i], loaded.epochs[i]
        if key is not None and f.name_epoch is not None and f.name_epoch >= 0 and key != f.name_epoch:
            warnings.append(f"{f.path}: name says epoch {f.name_epoch}, the file's 'epoch' key says {key}; "
                            "using the key")
        epoch, slot = _actual_epoch(f, key), per_model[f.model_key]
        if epoch in slot:
            shadowed += 1
            if _priority(f, epoch) >= _priority(files[slot[epoch]], epoch):
                continue
        slot[epoch] = i
    refused: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for i in loaded.failures:  # a rejected file's own epoch (from its name) is not filled from another
        f = files[i]
        if f.name_epoch is not None and f.name_epoch >= 0:
            refused[f.model_key].add(f.name_epoch)
    chosen = {model: assign_epoch_bins(avail, bins, refused.get(model, ())) for model, avail in per_model.items()}
    return chosen, shadowed, warnings


def _accuracy(acc: np.ndarray | None, epoch: int | None) -> float | None:
    if acc is None or acc.size == 0:
        return None
    index = acc.size - 1 if epoch is None else epoch + 1
    value = float(acc[index]) if index < acc.size else None
    return value if value is not None and math.isfinite(value) else None


def _assemble(files: Sequence[CheckpointFile], loaded: _Loaded,
              chosen: Mapping[tuple[str, str, str], Mapping[int, BinChoice[int]]], shadowed: int,
              rejects: list[tuple[str, str]], warnings: list[str], bins: Sequence[int],
              arch: Architecture) -> CheckpointBatch:
    records: list[dict[str, Any]] = []
    sources: list[int] = []
    for model in sorted(chosen):
        for b in sorted(chosen[model]):
            choice = chosen[model][b]
            f = files[choice.ref]
            acc = _accuracy(loaded.accuracy.get(str(f.path.parent)), choice.epoch)
            records.append(_row(f, choice, acc))
            sources.append(choice.ref)
    weights = (np.stack([loaded.flats[i] for i in sources]) if sources
               else np.empty((0, arch.n_params), np.float32))
    summary = _summarise(files, loaded, chosen, shadowed, records, rejects, warnings, bins)
    return CheckpointBatch(rows=_to_frame(records), weights=weights, rejects=rejects, summary=summary)


def _row(f: CheckpointFile, choice: BinChoice[int], accuracy: float | None) -> dict[str, Any]:
    return {
        "label": f.label, "classes": list(f.classes), "class_mask": sum(1 << c for c in f.classes),
        "n_classes": len(f.classes), "activation": f.activation, "init": f.init, "epoch": choice.bin,
        "actual_epoch": choice.epoch, "accuracy": accuracy, "source_file": f.relpath, "source_row": None,
        "fallback": choice.fallback,
    }


def _to_frame(records: list[dict[str, Any]]) -> Any:
    import polars as pl

    schema: dict[str, Any] = {
        "label": pl.String, "classes": pl.List(pl.Int8), "class_mask": pl.Int32, "n_classes": pl.Int8,
        "activation": pl.String, "init": pl.String, "epoch": pl.Int32, "actual_epoch": pl.Int32,
        "accuracy": pl.Float64, "source_file": pl.String, "source_row": pl.Int64, "fallback": pl.Boolean,
    }
    return pl.DataFrame(records, schema=schema)


def _summarise(files: Sequence[CheckpointFile], loaded: _Loaded,
               chosen: Mapping[tuple[str, str, str], Mapping[int, BinChoice[int]]], shadowed: int,
               records: list[dict[str, Any]], rejects: list[tuple[str, str]], warnings: list[str],
               bins: Sequence[int]) -> CheckpointSummary:
    parsed = [f for f in files if f.reject is None]
    labels = sorted({f.label for f in parsed}, key=str)
    activations = sorted({str(f.activation) for f in parsed})
    inits = sorted({str(f.init) for f in parsed})
    grid = [(lab, act, ini, b) for lab in labels for act in activations for ini in inits for b in bins]
    missing = tuple(s for s in grid if s[3] not in chosen.get((str(s[0]), s[1], s[2]), {}))
    used = {c.ref for slots in chosen.values() for c in slots.values()}
    direct = sum(not r["fallback"] for r in records)
    return CheckpointSummary(
        layout=files[0].layout if files else None, files=len(files), files_read=len(loaded.flats),
        files_rejected=len(rejects), files_unused=len(loaded.flats) - len(used), files_shadowed=shadowed,
        labels=len(labels), activations=len(activations), inits=len(inits), bins=tuple(bins),
        slots_expected=len(grid), slots_direct=direct, slots_fallback=len(records) - direct,
        slots_missing=len(missing), models_without_metrics=sum(a is None for a in loaded.accuracy.values()),
        rows_without_accuracy=sum(r["accuracy"] is None for r in records), load_cpu_seconds=loaded.cpu_seconds,
        missing_slots=tuple((str(a), b, c, d) for a, b, c, d in missing), warnings=tuple(warnings))


# -- into the lake ---------------------------------------------------------------------------------
def ingest_checkpoints(lake_root: str | Path, root: str | Path, *, zoo: str, init: str | None = None,
                       arch: Architecture = CNN_S, layout: str | None = None, workers: int = 2,
                       follow_symlinks: bool = False,
                       bins: Sequence[int] | None = None, rejects_path: str | Path | None = None,
                       progress: Callable[[int, int], None] | None = None, allow_same_source: bool = False,
                       dataset: str | None = None) -> Any:
    """Ingest a checkpoint tree (layout A or B, detected) into ``zoo``; one atomic commit.

    Bad files are listed (path and reason) in the report and in ``rejects_path`` (default
    ``checkpoint-rejects.csv`` in the current directory, written only when there are
    rejects); the good ones are ingested.  Models already in the zoo are not added again.

    Parameters
    ----------
    bins
        Epoch bins of the zoo.  None: the epochs the trainer recorded in its
        ``weightlake-train.json`` files (:func:`~weightlake.ingest.trainer_records.trainer_bins`), else the CSV zoo's
        :data:`~weightlake.arch.EPOCH_BINS`; the report says which.
    allow_same_source
        Accept weight vectors the zoo already holds under another ``init`` (refused by
        default: the same tree ingested again under another ``--init``).
    dataset
        The image dataset of the models; by default the one the trainer recorded
        (:func:`~weightlake.ingest.trainer_records.trainer_dataset`).  Recorded for the zoo; evaluation uses it.

    Returns
    -------
    IngestReport

    Raises
    ------
    IngestError
        When no checkpoint fills any bin (nothing is committed; the message lists the
        epochs found and the bins tried).
    """
    from weightlake.ingest.common import (
        IngestReport,
        ZooWriter,
        check_rejects_path,
        check_zoo_dataset,
        check_zoo_name,
    )
    from weightlake.ingest.trainer_records import nothing_filled, resolve_bins, trainer_dataset, trainer_records
    from weightlake.storage.transaction import transaction

    started = time.perf_counter()
    check_zoo_name(zoo)  # before reading a single checkpoint
    check_rejects_path(lake_root, rejects_path or "checkpoint-rejects.csv")
    files = scan_checkpoint_tree(root, arch, init=init, layout=layout, follow_symlinks=follow_symlinks)
    records = trainer_records(files)
    bins, bins_from = resolve_bins(bins, records)
    dataset = trainer_dataset(records, dataset)
    batch = read_checkpoints(files, arch, workers, progress, bins=bins)
    report = IngestReport(zoo=zoo, source=str(root), rows_read=batch.summary.files,
                          rows_rejected=len(batch.rejects), unit="files")
    if batch.rejects:
        report.rejects_path = str(_write_rejects(batch.rejects, rejects_path or "checkpoint-rejects.csv"))
    if not batch.rows.height:
        raise nothing_filled(files, batch, bins, bins_from)
    report.extra["epoch bins"] = f"{','.join(map(str, bins))} ({bins_from})"
    report.extra.update(_summary_lines(batch.summary))
    rows = batch.rows.drop("label", strict=False)
    report.extra["image dataset"] = dataset or "not recorded (pass --dataset)"
    with transaction(Path(lake_root)) as tx:
        dataset = check_zoo_dataset(tx.parent, zoo, dataset)
        writer = ZooWriter(tx, zoo, arch, report, allow_same_source=allow_same_source)
        try:
            if rows.height:
                writer.add(rows, batch.weights)
            written = writer.finish()
        finally:
            writer.abort()
        if written is not None:
            tx.record_source({"zoo": zoo, "kind": "checkpoints", "path": str(Path(root).resolve()),
                              "files": batch.summary.files, "layout": batch.summary.layout, "init": init,
                              "dataset": dataset})
            manifest = tx.commit({"op": "ingest-checkpoints", "zoo": zoo, "source": str(root),
                                  "summary": f"+{report.rows_added} models from {batch.summary.files} checkpoints"})
            report.snapshot = manifest.version
    report.seconds = time.perf_counter() - started
    return report


def _summary_lines(summary: CheckpointSummary) -> dict[str, Any]:
    out: dict[str, Any] = {
        "layout": summary.layout,
        "slots (label x activation x init x epoch bin)":
            f"{summary.slots_expected} expected: {summary.slots_direct} found, "
            f"{summary.slots_fallback} filled by fallback, {summary.slots_missing} missing",
    }
    if summary.models_without_metrics:
        out["models without metrics/ (accuracy left null)"] = summary.models_without_metrics
    if summary.rows_without_accuracy:
        out["rows whose accuracy is null (no metrics/ entry at their checkpoint's epoch)"] = \
            summary.rows_without_accuracy
    if summary.files_unused:
        out["files read but used for no slot (before the first bin, or shadowed)"] = summary.files_unused
    for warning in summary.warnings[:3]:
        out.setdefault("warnings", [])
        out["warnings"].append(warning)
    return out


def _write_rejects(rejects: Sequence[tuple[str, str]], target: str | Path) -> Path:
    import csv

    target = Path(target)
    with open(target, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "reason"])
        writer.writerows(rejects)
    return target
