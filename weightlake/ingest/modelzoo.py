"""The Model Zoos / ray.tune layout: one folder per training run, one model state per checkpoint.

A run folder holds ``params.json`` (the run's configuration), ``result.json`` (JSON lines,
one record per epoch, keyed by ``training_iteration``) and ``checkpoint_<epoch>/checkpoints``
(a pickled state_dict, read with the package's restricted reader, never full unpickling).
Every readable checkpoint becomes a model with ``run_id`` (the folder name), ``epoch``
(the checkpoint number), that epoch's metrics as ``m_<key>`` columns and the configuration
as ``cfg_<key>`` columns; ``activation`` and ``init`` come from configuration keys that
name them.  Unreadable files are rejected with a reason (the rest go in); nothing is
guessed: ``accuracy`` stays null (the layout's metrics keep their own names and scale).

The architecture is inferred from the first readable state_dict
(:func:`~weightlake.arch.infer_architecture`: CNN-s when the keys and shapes are its own,
else conv2d/linear layers with opaque gaps) unless one is given; a checkpoint whose keys or
shapes do not fit it is rejected with the reason.  Runs are ordinary metadata columns
(``run_id``, ``epoch``), so trajectories are plain SQL over ``models`` (and ``lake.runs()``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from weightlake.arch import Architecture
from weightlake.errors import IngestError

_CHECKPOINT = re.compile(r"^checkpoint_(\d+)$")
_NAME = re.compile(r"[^0-9a-zA-Z]+")


def find_runs(root: Path) -> list[Path]:
    """Run folders under ``root`` (any depth): folders holding a ``params.json``, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise IngestError("not a folder", path=str(root))
    runs = sorted(p.parent for p in root.rglob("params.json") if p.is_file())
    if not runs:
        raise IngestError("no run folder (one holding params.json) found: expected the Model Zoos / ray.tune "
                          "layout <run>/params.json, <run>/result.json, <run>/checkpoint_<epoch>/checkpoints",
                          path=str(root))
    return runs


def read_config(run: Path) -> dict[str, Any]:
    """``params.json`` flattened to ``cfg_<key>`` columns (nested keys joined, lists as JSON text)."""
    path = run / "params.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IngestError(f"params.json is not readable JSON: {exc}", path=str(path)) from exc
    if not isinstance(data, Mapping):
        raise IngestError(f"params.json holds a {type(data).__name__}, expected an object", path=str(path))
    return {f"cfg_{_column(k)}": v for k, v in _flatten(data).items()}


def read_results(run: Path) -> dict[int, dict[str, Any]]:
    """``result.json`` lines by ``training_iteration``: numeric metrics as ``m_<key>``."""
    path = run / "result.json"
    if not path.exists():
        return {}
    out: dict[int, dict[str, Any]] = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            raise IngestError(f"not a JSON line: {exc}", path=str(path), row=i) from exc
        step = rec.get("training_iteration") if isinstance(rec, Mapping) else None
        if not isinstance(step, int):
            raise IngestError("record lacks an integer 'training_iteration'", path=str(path), row=i)
        out[step] = {f"m_{_column(k)}": float(v) for k, v in rec.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "training_iteration"}
    return out


def ingest_modelzoo(lake_root: str | Path, root: str | Path, *, zoo: str, arch: Architecture | None = None,
                    progress: Callable[[int, int], None] | None = None, allow_same_source: bool = False,
                    layout: str | None = None) -> Any:
    """Ingest a Model Zoos / ray.tune tree into ``zoo`` in one commit; returns an ``IngestReport``.

    Checkpoints are read and handed to the writer one at a time, so memory holds a few
    state vectors, never the zoo.  ``layout``: ``rows`` or ``tensors`` (default: by the
    model's width, see :func:`weightlake.storage.parts.choose_layout`).

    Raises
    ------
    IngestError
        When the tree has no run folder, a ``params.json`` or ``result.json`` is malformed
        (file and line named), or no checkpoint is readable (nothing is committed).
    """
    from weightlake.ingest.common import IngestReport, ZooWriter, check_zoo_name
    from weightlake.storage.transaction import transaction

    check_zoo_name(zoo)
    started = time.perf_counter()
    runs = find_runs(Path(root))
    files = [(run, int(m.group(1)), d / "checkpoints") for run in runs for d in sorted(run.iterdir())
             if (m := _CHECKPOINT.match(d.name)) and d.is_dir()]
    report = IngestReport(zoo=zoo, source=str(root), rows_read=len(files), unit="checkpoints")
    arch = arch or infer_zoo_architecture([f[2] for f in files])
    report.extra["architecture"] = _describe(arch)
    configs = {run: read_config(run) for run in runs}
    results = {run: read_results(run) for run in runs}
    rejects: list[str] = []
    with transaction(Path(lake_root)) as tx:
        writer = ZooWriter(tx, zoo, arch, report, allow_same_source=allow_same_source, layout=layout,
                           rows_hint=len(files))
        report.extra["layout"] = writer.layout
        try:  # one checkpoint at a time into the writer: memory holds a few state vectors, not the zoo
            done = 0
            for run in runs:
                for item in (f for f in files if f[0] == run):
                    rows, weights = _read_run([item], arch, configs[run], results[run], rejects)
                    if rows:
                        writer.add(pl.DataFrame(rows, infer_schema_length=None, strict=False), np.stack(weights))
                    done += 1
                    if progress is not None:
                        progress(done, len(files))
            if len(rejects) == len(files):
                raise IngestError(f"no readable checkpoint among {len(files)} in {len(runs)} runs"
                                  + (f"; first: {rejects[0]}" if rejects else ""), path=str(root))
            written = writer.finish()
        finally:
            writer.abort()
        report.rows_rejected = len(rejects)
        more = [f"... and {len(rejects) - 20} more (not listed)"] if len(rejects) > 20 else []
        report.extra.update(rejected=rejects[:20] + more, runs=len(runs),
                            accuracy="not set (the layout's metrics are kept as m_* columns)")
        if written is not None:
            tx.record_source({"zoo": zoo, "kind": "modelzoo", "path": str(Path(root).resolve()),
                              "runs": len(runs), "files": len(files)})
            report.snapshot = tx.commit({"op": "ingest-modelzoo", "zoo": zoo, "source": str(root),
                                         "summary": f"+{report.rows_added} models from {len(runs)} runs"}).version
    report.seconds = time.perf_counter() - started
    return report


def _describe(arch: Architecture) -> str:
    if not arch.is_tensor_list:
        return f"{arch.name} ({arch.n_params:,} parameters, layers {', '.join(arch.layer_names)})"
    kinds: dict[str, int] = {}
    for layer in arch.layers:
        kinds[layer.kind] = kinds.get(layer.kind, 0) + 1
    state = arch.n_params - arch.n_trainable
    return (f"{arch.name} ({arch.n_trainable:,} trainable parameters"
            + (f" + {state:,} batch-norm statistics" if state else "") + "; "
            + ", ".join(f"{n} {k}" for k, n in kinds.items()) + " layers)")


def infer_zoo_architecture(paths: list[Path]) -> Architecture:
    """The architecture of the first checkpoint whose state_dict the strict reader can list.

    Only the archive's pickle is read (tensor shapes, not values); files it cannot read are
    passed over here and rejected with their reason by the ingest itself.
    """
    from weightlake.arch import infer_architecture

    for path in paths:
        shapes = _state_dict_shapes(path)
        if shapes is not None:
            return infer_architecture(shapes, where=str(path))
    raise IngestError("no checkpoint could be read to infer the architecture; pass one (--arch cnn-s or "
                      "--arch FILE.json)", path=str(paths[0].parent.parent.parent) if paths else None)


def _state_dict_shapes(path: Path) -> dict[str, tuple[int, ...]] | None:
    from weightlake.ingest.torch_pickle import Checkpoint, LazyTensor

    try:
        with Checkpoint(str(path)) as ckpt:
            obj = ckpt.obj
    except Exception:  # noqa: BLE001 - any unreadable file: try the next one (the ingest reports it)
        return None
    sd = obj.get("model_state_dict", obj.get("state_dict", obj)) if isinstance(obj, Mapping) else None
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(v, LazyTensor) for v in sd.values()):
        return None
    return {str(k): v.shape for k, v in sd.items()}


def _read_run(files: list[tuple[Path, int, Path]], arch: Architecture, config: Mapping[str, Any],
              results: Mapping[int, Mapping[str, Any]], rejects: list[str]) -> tuple[list[dict[str, Any]], list[Any]]:
    from weightlake.ingest.checkpoints import _load_checkpoint

    rows, weights = [], []
    for run, epoch, path in files:
        flat, _, reason = _load_checkpoint(str(path), arch)
        if flat is None:
            rejects.append(f"{path}: {reason}")
        else:
            weights.append(flat)
            rows.append(_row(run, epoch, config, results.get(epoch, {})))
    return rows, weights


def _row(run: Path, epoch: int, config: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {"run_id": run.name, "epoch": epoch, "activation": _pick(config, "activation"),
            "init": _pick(config, "init_type", "init"), "source_file": f"{run.name}/checkpoint_{epoch}/checkpoints",
            "fallback": False, **{k: _scalar(v) for k, v in config.items()}, **metrics}


def _pick(config: Mapping[str, Any], *names: str) -> str | None:
    """The value of the configuration key whose last part is one of ``names`` (first match)."""
    for name in names:
        for key, value in config.items():
            if key.rsplit("_", 1)[-1] == name or key.endswith("_" + name):
                return None if value is None else str(value).lower()
    return None


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _scalar(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else value


def _column(key: str) -> str:
    return _NAME.sub("_", str(key)).strip("_").lower()
