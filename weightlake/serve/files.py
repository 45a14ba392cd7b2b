"""Epoch batches as plain files for other training code: ``.pt`` (torch) and ``.h5`` (HDF5).

:func:`export_batches` writes one file per epoch, ``<scenario>-<split>-epoch<e>.pt`` or
``.h5``, holding exactly the batches ``pairs.loader(batch_size=B, seed=seed, epoch=e)``
yields and :func:`~weightlake.serve.batches.materialize` would store (the same
:class:`~weightlake.serve.batches.EpochSource`), in the same layout::

    x         float32 [n_batches, B, 3, P]   (a, b, target); padding rows are 0
    ids       int64   [n_batches, B, 3]      model ids (-1 on padding)
    acc       float64 [n_batches, B, 3]      accuracies (NaN on padding)
    rows      int64   [n_batches, B]         pair_id of each pair
    zoo_rows  int64   [n_batches, B, 3]      positions of the models in the zoo
    masks     int32   [n_batches, B, 2]      class bitmasks of A and B
    keys      int8    [n_batches, B, 2]      epoch key and activation key
    valid     bool    [n_batches, B]         False on padding
    meta      scenario, split, zoo, seed, epoch, batch_size, n_pairs, snapshot, order, padding

A ``.pt`` file is a dict of tensors plus ``meta`` (plain strings and numbers), so
``torch.load(path, weights_only=True)`` reads it with no pickled code; an ``.h5`` file holds
the arrays as datasets and ``meta`` as attributes (h5py, the ``files`` extra). Either gives a
``TensorDataset`` in one line::

    d = torch.load("t-train-epoch0.pt", weights_only=True)
    ds = torch.utils.data.TensorDataset(d["x"][d["valid"]], d["ids"][d["valid"]], d["acc"][d["valid"]])

Round-trip law: the arrays read back equal the batches of ``lake.batches`` for the same
``(seed, epoch)`` bitwise. Files are written under a temporary name and renamed, so a
crash leaves no partial file. The names do not carry the batch size or seed (``meta`` does),
so an export that would replace an existing file is refused before anything is written,
unless ``overwrite=True`` (``--overwrite``), which also removes the later epochs of the export
it replaces.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from weightlake.errors import QueryError

FORMATS = ("pt", "h5")


@dataclass
class ExportReport:
    """What :func:`export_batches` wrote."""

    scenario: str
    split: str
    fmt: str
    files: list[str] = field(default_factory=list)
    n_batches: int = 0
    bytes: int = 0
    removed: list[str] = field(default_factory=list)
    """Later epochs of the export this one overwrote (they would have mixed two exports)."""

    def lines(self) -> list[str]:
        out = [f"wrote {len(self.files)} epoch file(s) of {self.n_batches} batches ({self.fmt}, "
               f"{self.bytes / 1e9:.2f} GB)", *(f"  {f}" for f in self.files)]
        if self.removed:
            out += [f"removed {len(self.removed)} later epoch file(s) of the export it overwrote",
                    *(f"  {f}" for f in self.removed)]
        return out


def export_batches(lake: Any, scenario: str, split: str, out_dir: str | Path, *, fmt: str = "pt",
                   batch_size: int = 36, epochs: int = 1, seed: int = 0, drop_last: bool = False,
                   overwrite: bool = False, progress: Callable[[int], Any] | None = None) -> ExportReport:
    """Write ``epochs`` shuffled epochs of a scenario split's batches as ``.pt`` or ``.h5`` files.

    Parameters
    ----------
    lake
        An open :class:`~weightlake.lake.Lake` (read only: nothing is committed).
    out_dir
        Folder for the files (created); refused inside the lake.
    fmt
        ``"pt"`` or ``"h5"``.
    overwrite
        Replace the files of an earlier export of the same scenario and split (their batch
        size, seed or snapshot may differ), its later epochs removed; without it such an
        export is refused.
    progress
        Called with the number of batches just gathered.

    Raises
    ------
    QueryError
        Unknown format, non-positive sizes, an empty split, ``out_dir`` inside the lake, or
        files already there (without ``overwrite``).
    """
    from weightlake.serve.batches import EpochSource
    from weightlake.serve.pairset import PairSet

    if fmt not in FORMATS:
        raise QueryError(f"unknown batch file format {fmt!r}; expected one of {FORMATS} (or zarr: materialize)")
    if batch_size < 1 or epochs < 1:
        raise QueryError(f"batch_size and epochs must be >= 1, got batch_size={batch_size!r}, epochs={epochs!r}")
    out = lake.check_output(out_dir)
    pairs = PairSet.open(lake, scenario, split)
    if not len(pairs):
        raise QueryError(f"scenario {scenario!r} has no {split!r} pairs to export")
    if fmt == "h5":
        _require_h5py()
    targets = [out / f"{scenario}-{split}-epoch{epoch}.{fmt}" for epoch in range(epochs)]
    if not overwrite:
        _refuse_existing(targets)
    source = EpochSource(pairs, batch_size, drop_last)
    out.mkdir(parents=True, exist_ok=True)
    report = ExportReport(scenario, split, fmt)
    for epoch, target in enumerate(targets):
        index, valid = source.layout(epoch, seed)
        meta = {**source.attrs(seed=seed, epochs=epochs), "epoch": epoch}
        arrays = source.small(index, valid)
        x = np.empty((*index.shape, 3, source.weights.cols), dtype=np.float32)
        for start, stop, block in source.x_blocks(index, valid):
            x[start:stop] = block
            if progress is not None:
                progress(stop - start)
        (_write_pt if fmt == "pt" else _write_h5)(target, {"x": x, **arrays}, meta)
        report.files.append(str(target))
        report.n_batches += len(index)
        report.bytes += target.stat().st_size
    if overwrite:
        report.removed = _remove_later_epochs(out, scenario, split, fmt, epochs)
    return report


def _refuse_existing(targets: list[Path]) -> None:
    # checked for every epoch before the first is written, so a refusal leaves the folder as it was
    existing = [t for t in targets if t.exists()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise QueryError(f"refusing to overwrite {str(existing[0])!r}{more}, written by an earlier export "
                         f"(maybe with another batch size or seed); pass overwrite=True (--overwrite) "
                         f"to replace, or choose another folder")


def _remove_later_epochs(out: Path, scenario: str, split: str, fmt: str, epochs: int) -> list[str]:
    name = re.compile(rf"{re.escape(scenario)}-{re.escape(split)}-epoch(\d+)\.{fmt}")
    later = sorted((int(m[1]), path) for path in out.iterdir() if (m := name.fullmatch(path.name)) and int(m[1]) >= epochs)
    for _, path in later:
        path.unlink()
    return [str(path) for _, path in later]


def _write_pt(target: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    import torch

    tmp = target.with_name(f".{target.name}.partial")
    torch.save({**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}, "meta": meta}, tmp)
    os.replace(tmp, target)


def _write_h5(target: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    import h5py

    tmp = target.with_name(f".{target.name}.partial")
    with h5py.File(tmp, "w") as fh:
        for name, data in arrays.items():
            # one batch per chunk, as in the Zarr layout: a training loop reads a batch at a time
            chunks = (1, *data.shape[1:]) if name == "x" else None
            fh.create_dataset(name, data=data, chunks=chunks)
        fh.attrs.update({k: v for k, v in meta.items() if v is not None})
    os.replace(tmp, target)


def _require_h5py() -> None:
    try:
        import h5py  # noqa: F401
    except ModuleNotFoundError:
        raise QueryError("writing .h5 needs h5py: pip install 'weightlake[files]' (or pip install h5py)") from None


def read_batches(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and ``meta`` of an exported epoch file (``.pt`` read with ``weights_only=True``)."""
    path = Path(path)
    if path.suffix == ".pt":
        import torch

        data = torch.load(path, weights_only=True)
        meta = data.pop("meta")
        return {k: v.numpy() for k, v in data.items()}, meta
    if path.suffix == ".h5":
        _require_h5py()
        import h5py

        with h5py.File(path, "r") as fh:
            return {k: fh[k][...] for k in fh}, dict(fh.attrs)
    raise QueryError(f"{str(path)!r} is neither a .pt nor an .h5 batch file")
