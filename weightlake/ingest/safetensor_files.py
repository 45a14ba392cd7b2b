"""Models as safetensors files: no pickle at all, architecture and metadata in the header.

:func:`export_safetensors` writes one ``<zoo>-<model_id>.safetensors`` per model: its
``state_dict`` tensors (float32, the architecture's own key names and shapes, so
``model.load_state_dict(safetensors.torch.load_file(path))`` works) and a header
``__metadata__`` of two JSON strings:

- ``weightlake.arch``: the :class:`~weightlake.arch.Architecture` (``Architecture.from_dict``);
- ``weightlake.model``: ``zoo``, ``model_id``, ``init``, ``activation``, ``epoch``,
  ``actual_epoch`` (the epoch the weights are from: an early-stopped model's fallback rows
  fill later bins; null when unknown), ``classes``, ``accuracy``, ``weights_hash``,
  ``fallback``, ``dataset``.

:func:`ingest_safetensors` reads such files back into a zoo in one commit.  Round-trip law:
exporting a zoo and ingesting the files into a new lake gives the same weight vectors
bitwise and the same metadata (model ids are the new lake's).  A file without the header,
with another architecture than the zoo's, or with tensors that do not fit it, or holding a NaN or an infinity, is refused
with a one-line error naming it; nothing is committed.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from weightlake.arch import ACTIVATIONS, INITS, Architecture
from weightlake.errors import IngestError, QueryError
from weightlake.ingest.checkpoints import non_finite_reason
from weightlake.ingest.common import (
    IngestReport,
    ZooWriter,
    check_zoo_dataset,
    class_mask,
    file_fingerprint,
    zoo_dataset,
)

ARCH_KEY, MODEL_KEY = "weightlake.arch", "weightlake.model"
MODEL_FIELDS: tuple[str, ...] = ("model_id", "init", "activation", "epoch", "actual_epoch", "classes", "accuracy",
                                 "weights_hash", "fallback")


def _require() -> Any:
    try:
        import safetensors.numpy as st
    except ModuleNotFoundError:
        raise QueryError("safetensors files need the safetensors package: pip install 'weightlake[safetensors]'") from None
    return st


def export_safetensors(lake: Any, out_dir: str | Path, *, zoo: str | None = None, where: str | None = None,
                       params: Mapping[str, Any] | None = None) -> list[Path]:
    """Write every model of ``zoo`` (optionally filtered by SQL ``where`` over ``models``) as safetensors.

    Returns the files written, ordered by ``model_id``.

    Raises
    ------
    QueryError
        No model matches, or ``out_dir`` lies inside the lake.
    """
    st = _require()
    out = lake.check_output(out_dir)
    zoo = zoo or lake._only_zoo()
    arch = lake.arch(zoo)
    cols = ", ".join(MODEL_FIELDS)
    sql = f"SELECT {cols} FROM models WHERE zoo = $zoo" + (f" AND ({where})" if where else "") + " ORDER BY model_id"
    from weightlake.query import run_sql

    meta = run_sql(lake, sql, {"zoo": zoo, **(params or {})})
    if meta.height == 0:
        raise QueryError(f"no models of zoo {zoo!r} match" + (f" {where!r}" if where else "") + "; nothing written")
    out.mkdir(parents=True, exist_ok=True)
    header = {ARCH_KEY: arch.to_json(), "format": "pt"}
    dataset = zoo_dataset(lake.manifest, zoo)
    files = []
    weights = lake.weights_numpy(meta["model_id"].to_numpy())
    for row, flat in zip(meta.iter_rows(named=True), weights, strict=True):
        tensors = {k: np.ascontiguousarray(v) for k, v in arch.flat_to_state_dict(flat).items()}
        model = {"zoo": zoo, **row, "dataset": dataset}
        target = out / f"{zoo}-{row['model_id']:08d}.safetensors"
        tmp = target.with_name(f".{target.name}.partial")
        st.save_file(tensors, str(tmp), metadata={**header, MODEL_KEY: json.dumps(model, default=_plain)})
        os.replace(tmp, target)
        files.append(target)
    return files


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} into a safetensors header")


def read_safetensors(path: str | Path) -> tuple[Architecture, dict[str, Any], dict[str, np.ndarray]]:
    """``(architecture, model metadata, tensors)`` of one file written by :func:`export_safetensors`.

    Raises
    ------
    IngestError
        Not a safetensors file, or one without weightlake's header entries.
    """
    st = _require()
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as fh:
            header = fh.metadata() or {}
        tensors = st.load_file(str(path))
    except Exception as exc:  # the reader's own errors (truncated, not safetensors) vary by version
        raise IngestError(f"not a readable safetensors file: {str(exc).splitlines()[0][:200]}", path=str(path)) from exc
    missing = [k for k in (ARCH_KEY, MODEL_KEY) if k not in header]
    if missing:
        raise IngestError(f"the safetensors header has no {missing} entries (write the file with "
                          "`weightlake export safetensors`, or ingest it as a checkpoint)", path=str(path))
    try:
        arch, model = Architecture.from_dict(json.loads(header[ARCH_KEY])), json.loads(header[MODEL_KEY])
    except (ValueError, KeyError, TypeError) as exc:
        raise IngestError(f"unreadable weightlake header: {exc}", path=str(path)) from exc
    return arch, model, tensors


def ingest_safetensors(lake_root: str | Path, paths: Iterable[str | Path], *, zoo: str | None = None,
                       allow_same_source: bool = False) -> IngestReport:
    """Ingest safetensors model files (folders are searched for ``*.safetensors``) into one zoo, one commit.

    Parameters
    ----------
    zoo : str, optional
        Default: the zoo the files' headers record (files naming several zoos are refused).

    Raises
    ------
    IngestError
        No files, a file that does not fit (see :func:`read_safetensors`), files of different
        architectures, or files naming different image datasets.
    """
    from weightlake.storage.transaction import transaction

    files = _files(paths)
    started = time.perf_counter()
    loaded = [(f, *read_safetensors(f)) for f in files]
    arch = loaded[0][1]
    if not zoo:
        named = Counter(str(model.get("zoo") or "") for _, _, model, _ in loaded)
        if len(named) > 1:  # one zoo for all would relabel the others' models without a word
            listed = ", ".join(f"{z!r} ({n} files)" if z else f"none ({n} files)" for z, n in sorted(named.items()))
            raise IngestError(f"the files name several zoos: {listed}; ingest each zoo's files on their own, or pass "
                              "--zoo to put them all in one", path=str(files[0].parent))
        zoo = next(iter(named))
    if not zoo:
        raise IngestError("the files name no zoo; pass zoo=... (--zoo)", path=str(files[0]))
    report = IngestReport(zoo=zoo, source=", ".join(str(f) for f in files[:3]) + (" ..." if len(files) > 3 else ""))
    rows, metas = [], []
    for path, file_arch, model, tensors in loaded:
        if file_arch.to_dict() != arch.to_dict():
            raise IngestError(f"architecture {file_arch.name!r} differs from {arch.name!r} of {files[0].name}",
                              path=str(path))
        try:
            flat = np.asarray(arch.state_dict_to_flat(tensors, where=path.name), dtype=np.float32)
        except Exception as exc:
            raise IngestError(str(exc).splitlines()[0], path=str(path)) from exc
        why = non_finite_reason(flat, arch, where=path.name)
        if why:
            raise IngestError(why, path=str(path))
        rows.append(flat)
        metas.append(_meta_row(model, path))
    datasets = {str(m["dataset"]) for _, _, m, _ in loaded if m.get("dataset") is not None}
    if len(datasets) > 1:
        raise IngestError(f"the files name different image datasets {sorted(datasets)}", path=str(files[0]))
    with transaction(Path(lake_root)) as tx:
        dataset = check_zoo_dataset(tx.parent, zoo, next(iter(datasets), None))
        writer = ZooWriter(tx, zoo, arch, report, allow_same_source=allow_same_source)
        try:
            report.rows_read = len(rows)
            writer.add(pl.DataFrame(metas), np.stack(rows))
            written = writer.finish()
            tx.record_source({"zoo": zoo, "kind": "safetensors", "path": str(Path(files[0]).resolve().parent),
                              "fingerprint": file_fingerprint(files[0]), "rows": len(rows), "dataset": dataset})
            if written is not None:
                report.snapshot = tx.commit({"op": "ingest-safetensors", "zoo": zoo, "source": str(files[0].parent),
                                             "summary": f"+{report.rows_added} models from {len(files)} safetensors "
                                                        "files"}).version
        finally:
            writer.abort()
    report.seconds = time.perf_counter() - started
    return report


def _files(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        out += sorted(p.rglob("*.safetensors")) if p.is_dir() else [p]
    if not out:
        raise IngestError("no .safetensors files given or found")
    for f in out:
        if not f.is_file():
            raise IngestError("no such file", path=str(f))
    return out


def _meta_row(model: Mapping[str, Any], path: Path) -> dict[str, Any]:
    try:
        classes = [int(c) for c in model.get("classes") or []]
    except (TypeError, ValueError):
        raise IngestError(f"the weightlake header's classes {model.get('classes')!r} are not a list of digits",
                          path=str(path)) from None
    for key in ("init", "activation", "epoch"):
        if model.get(key) is None:
            raise IngestError(f"the weightlake header has no {key!r}", path=str(path))
    # the header is the file's own word, checked as every other ingester checks its input
    if model["init"] not in INITS:
        raise IngestError(f"the weightlake header's initialisation {model['init']!r} is not one of {INITS}",
                          path=str(path))
    if model["activation"] not in ACTIVATIONS:
        raise IngestError(f"the weightlake header's activation {model['activation']!r} is not one of {ACTIVATIONS}",
                          path=str(path))
    epoch, actual = model["epoch"], model.get("actual_epoch")  # files written before it was kept have none
    for key, value in (("epoch", epoch), ("actual_epoch", actual)):
        if (value is not None or key == "epoch") and (isinstance(value, bool) or not isinstance(value, int)
                                                      or value < 0):
            raise IngestError(f"the weightlake header's {key} {value!r} is not a non-negative integer", path=str(path))
    accuracy = model.get("accuracy")
    if accuracy is not None and (isinstance(accuracy, bool) or not isinstance(accuracy, int | float)
                                 or not math.isfinite(accuracy) or not 0 <= accuracy <= 100):
        raise IngestError(f"the weightlake header's accuracy {accuracy!r} is not a percentage in 0..100",
                          path=str(path))
    if any(not 0 <= c <= 9 for c in classes) or len(set(classes)) != len(classes):
        raise IngestError(f"the weightlake header's classes {classes} are not distinct digits 0..9", path=str(path))
    return {"init": str(model["init"]), "activation": str(model["activation"]), "epoch": epoch, "actual_epoch": actual,
            "classes": classes, "class_mask": class_mask(classes), "n_classes": len(classes),
            "accuracy": model.get("accuracy"), "source_file": path.name, "source_row": 0,
            "fallback": bool(model.get("fallback") or False)}
