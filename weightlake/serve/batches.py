"""Materialised epoch batches: a scenario split's shuffled batches written once to Zarr, then streamed.

:func:`materialize` writes, for each epoch ``e``, the batches in the order
:func:`~weightlake.serve.pairset.epoch_order` gives for ``(seed, e)`` (so epoch ``e`` on
disk holds exactly the batches of ``pairs.loader(batch_size=B, seed=seed, epoch=e)``),
into one Zarr group owned by the derived table ``batches``::

    batches/<scenario>/<split>/<token>.zarr/          attrs: scenario, split, seed, batch_size, epochs, ...
        epoch-0/x         float32 [n_batches, B, 3, P]   (a, b, target); one batch per chunk, uncompressed
        epoch-0/ids       int64   [n_batches, B, 3]      model ids
        epoch-0/acc       float64 [n_batches, B, 3]      accuracies
        epoch-0/rows      int64   [n_batches, B]         pair_id of each pair
        epoch-0/zoo_rows  int64   [n_batches, B, 3]      positions of the models in the zoo (compat output)
        epoch-0/masks     int32   [n_batches, B, 2]      class bitmasks of A and B
        epoch-0/keys      int8    [n_batches, B, 2]      epoch key and activation key (-1 if not a standard bin)
        epoch-0/valid     bool    [n_batches, B]         False on padding

The last partial batch is padded to ``B`` (weights 0, ids and rows -1, accuracies NaN,
``valid`` False) so every chunk has one shape; :class:`BatchStream` trims the padding
and yields a short last batch, as a DataLoader with ``drop_last=False`` would.  With
``drop_last=True`` the partial batch is not written.

The table ``batches`` (partitioned by scenario and split) has one row per epoch; writing
a scenario split again replaces its rows and arrays in one commit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from torch.utils.data import IterableDataset  # serve is the layer that knows torch; lake.batches() imports this lazily

from weightlake.arch import EPOCH_BINS, SCENARIO_ACTIVATIONS
from weightlake.errors import IntegrityError, NoSuchTableError, QueryError
from weightlake.scenarios import mask_classes
from weightlake.serve.pairset import PairSet, as_is, check_drop_last, epoch_order
from weightlake.storage.checksums import check_bytes
from weightlake.storage.remote import ArrayFiles
from weightlake.storage.store import resolve_store

if TYPE_CHECKING:
    import torch

    from weightlake.lake import Lake


BLOCK_BYTES = 64 << 20
"""Target size of one write (many batches are gathered and written together)."""
TABLE = "batches"


@dataclass
class MaterializeReport:
    """What :func:`materialize` wrote."""

    scenario: str
    split: str
    path: str
    epochs: int
    batch_size: int
    n_batches: int
    n_pairs: int
    bytes: int
    snapshot: int

    def lines(self) -> list[str]:
        return [f"materialised {self.scenario}/{self.split}: {self.epochs} epoch(s) x {self.n_batches} batches of "
                f"{self.batch_size} ({self.n_pairs} pairs, {self.bytes / 1e9:.2f} GB of weights)",
                f"  {self.path} (snapshot {self.snapshot})",
                f"  stream it: lake.batches({self.scenario!r}, {self.split!r})"]


# -- writing ---------------------------------------------------------------------------------------
def materialize(lake_root: str | Path, scenario: str, split: str = "train", batch_size: int = 36, epochs: int = 3,
                seed: int = 0, progress: Callable[[int], Any] | None = None,
                drop_last: bool = False) -> MaterializeReport:
    """Write ``epochs`` shuffled epochs of a scenario split as Zarr batches and commit them.

    Parameters
    ----------
    lake_root
        The lake directory.
    scenario, split
        The pair set (see :func:`~weightlake.scenarios.declare_scenario`).
    batch_size
        Pairs per batch (36 in the user's training code).
    epochs, seed
        Epoch ``e`` is shuffled by ``(seed, e)``, as ``pairs.loader(seed=seed, epoch=e)``.
    progress
        Called with the number of batches just written.
    drop_last
        Leave out the last partial batch instead of padding it (see the module notes).

    Returns
    -------
    MaterializeReport

    Raises
    ------
    NoSuchTableError
        The scenario is not declared.
    QueryError
        The split is empty, or ``batch_size``/``epochs`` are not positive.
    """
    if batch_size < 1 or epochs < 1:
        raise QueryError(f"batch_size and epochs must be >= 1, got batch_size={batch_size!r}, epochs={epochs!r}")
    from weightlake.lake import Lake
    from weightlake.storage.transaction import transaction

    root = Path(lake_root)
    with transaction(root) as tx:
        pairs = PairSet.open(Lake(root, tx.parent), scenario, split)
        if not len(pairs):
            raise QueryError(f"scenario {scenario!r} has no {split!r} pairs to materialise")
        path = tx.new_array_path("batches", scenario, split)
        import zarr

        with zarr.config.set({"array.write_empty_chunks": True}):  # every batch on disk: a missing one is an error
            writer = _EpochWriter(pairs, path, batch_size, drop_last)
            writer.write_group_attrs(seed=seed, epochs=epochs)
            rows = [writer.write_epoch(e, seed, progress) for e in range(epochs)]
        _stage_table(tx, scenario, split, batch_size, rows, path)
        summary = f"materialised {scenario}/{split}: {epochs} epochs x {rows[0]['n_batches']} batches"
        version = tx.commit({"op": "materialize_batches", "summary": summary}).version
        rel = str(path.relative_to(tx.root))  # tx.root: the lake, or the staging folder of an object store's lake
    nb = int(rows[0]["n_batches"])
    return MaterializeReport(scenario, split, rel, epochs, batch_size, nb, len(pairs),
                             epochs * nb * batch_size * 3 * pairs.lake.arch(pairs.zoo).n_params * 4, version)


class EpochSource:
    """The batches of a pair set's epochs, as arrays: what every materialised format writes.

    Epoch ``e`` is ordered by ``epoch_order(n_pairs, seed, e)`` and cut into ``[n_batches, B]``
    positions; the last partial batch is padded (``valid`` False) unless ``drop_last``.
    """

    SMALL = ("ids", "acc", "rows", "zoo_rows", "masks", "keys")

    def __init__(self, pairs: PairSet, batch_size: int, drop_last: bool) -> None:
        check_drop_last(len(pairs), batch_size, drop_last, f"split {pairs.split!r} of scenario {pairs.scenario!r}")
        self.weights = pairs.lake.row_source(pairs.zoo)  # the zoo in memory if it fits the budget, else mapped
        self.block_bytes = max(1, min(BLOCK_BYTES, pairs.lake.memory // 4))
        self.pairs, self.batch_size, self.drop_last = pairs, batch_size, drop_last
        self.zoo_rows = pairs.zoo_rows()
        frame = pairs.to_polars()
        self.masks = np.stack([frame["a_mask"].to_numpy(), frame["b_mask"].to_numpy()], axis=1).astype(np.int32)
        self.keys = np.stack([_keys(frame["epoch"].to_numpy(), EPOCH_BINS),
                              _keys(frame["activation"].to_numpy(), SCENARIO_ACTIVATIONS)], axis=1)

    def attrs(self, *, seed: int, epochs: int) -> dict[str, Any]:
        p = self.pairs
        return {"scenario": p.scenario, "split": p.split, "zoo": p.zoo, "seed": seed, "epochs": epochs,
                "batch_size": self.batch_size, "n_pairs": len(p), "drop_last": self.drop_last,
                "snapshot": p.lake.snapshot, "order": "numpy default_rng([seed, epoch]).permutation(n_pairs)",
                "padding": "last batch padded to batch_size: x 0, ids/rows -1, acc NaN, valid False"}

    def layout(self, epoch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """``(index [n_batches, B], valid [n_batches, B])`` of an epoch."""
        return _pad(epoch_order(len(self.pairs), seed=seed, epoch=epoch), self.batch_size, self.drop_last)

    def small(self, index: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
        """Every per-pair array of the epoch, padding filled (ids/rows -1, acc NaN), plus ``valid``."""
        p = self.pairs
        safe, blank = np.where(valid, index, 0), ~valid
        out: dict[str, np.ndarray] = {}
        for name, source, fill in (("ids", p.ids, -1), ("acc", p.accuracy, np.nan), ("rows", p.pair_id, -1),
                                   ("zoo_rows", self.zoo_rows, -1), ("masks", self.masks, 0),
                                   ("keys", self.keys, -1)):
            data = source[safe]
            data[blank] = fill
            out[name] = data
        out["valid"] = valid
        return out

    def x_blocks(self, index: np.ndarray, valid: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(start, stop, x [stop - start, B, 3, P])`` blocks of about :data:`BLOCK_BYTES`."""
        n_batches, b = index.shape
        p = self.weights.cols
        step = max(1, self.block_bytes // (b * 3 * p * 4))
        for start in range(0, n_batches, step):
            stop = min(start + step, n_batches)
            rows = self.zoo_rows[np.where(valid[start:stop], index[start:stop], 0)]
            block = self.weights.take(rows.reshape(-1)).reshape(stop - start, b, 3, p)
            block[~valid[start:stop]] = 0.0
            yield start, stop, block


class _EpochWriter:
    """Writes the epochs of an :class:`EpochSource` into one Zarr group."""

    def __init__(self, pairs: PairSet, path: Path, batch_size: int, drop_last: bool) -> None:
        import zarr

        self.source = EpochSource(pairs, batch_size, drop_last)
        self.group = zarr.open_group(str(path), mode="w-")

    def write_group_attrs(self, *, seed: int, epochs: int) -> None:
        self.group.attrs.update(self.source.attrs(seed=seed, epochs=epochs))

    def write_epoch(self, epoch: int, seed: int, progress: Callable[[int], Any] | None) -> dict[str, Any]:
        index, valid = self.source.layout(epoch, seed)
        g = self.group.create_group(f"epoch-{epoch}")
        for name, data in self.source.small(index, valid).items():
            g.create_array(name, data=data, chunks=data.shape, compressors=None)
        n_batches, b = index.shape
        x = g.create_array("x", shape=(n_batches, b, 3, self.source.weights.cols),
                           chunks=(1, b, 3, self.source.weights.cols), dtype="float32", compressors=None,
                           fill_value=0.0)
        for start, stop, block in self.source.x_blocks(index, valid):
            x[start:stop] = block
            if progress is not None:
                progress(stop - start)
        g.attrs.update({"epoch": epoch, "seed": seed})
        return {"epoch": epoch, "seed": seed, "n_batches": len(index), "valid_last": int(valid[-1].sum()),
                "path": f"{g.path}"}


def _keys(values: np.ndarray, known: Sequence[Any]) -> np.ndarray:
    lookup = {v: i for i, v in enumerate(known)}
    return np.array([lookup.get(v, -1) for v in values.tolist()], dtype=np.int8)


def _pad(order: np.ndarray, batch_size: int, drop_last: bool) -> tuple[np.ndarray, np.ndarray]:
    """``order`` as ``[n_batches, B]`` positions plus the ``valid`` mask (padding at the end only)."""
    n = len(order) - len(order) % batch_size if drop_last else len(order)
    n_batches = -(-n // batch_size)
    flat = np.full(n_batches * batch_size, -1, dtype=np.int64)
    flat[:n] = order[:n]
    index = flat.reshape(n_batches, batch_size)
    return index, index >= 0


def _stage_table(tx: Any, scenario: str, split: str, batch_size: int, rows: list[dict[str, Any]], path: Path) -> None:
    """Replace the scenario split's rows (and arrays) of table ``batches`` with ``rows``."""
    rel = str(path.relative_to(tx.root))
    old = (f"batches/{scenario}/{split}/", f"tables/{TABLE}/scenario={scenario}/split={split}/")
    tx.drop_table_files(TABLE, lambda f: f.startswith(old))
    created = datetime.now(UTC).isoformat(timespec="seconds")
    df = pl.DataFrame({
        "scenario": [scenario] * len(rows), "split": [split] * len(rows),
        "epoch": [r["epoch"] for r in rows], "seed": [r["seed"] for r in rows],
        "batch_size": [batch_size] * len(rows),
        "n_batches": [r["n_batches"] for r in rows], "valid_last": [r["valid_last"] for r in rows],
        "path": [f"{rel}/{r['path']}" for r in rows], "created": [created] * len(rows),
    }, schema_overrides={"epoch": pl.Int32, "seed": pl.Int64, "batch_size": pl.Int32, "n_batches": pl.Int32, "valid_last": pl.Int32})
    tx.put_table(TABLE, df, partition_by=("scenario", "split"),
                 properties={"partition_by": ["scenario", "split"]}, arrays=[path])


# -- streaming -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Entry:
    """One materialised epoch: where it lives and its shape (plain values, so it pickles)."""

    path: str
    epoch: int
    n_batches: int
    batch_size: int


class BatchStream(IterableDataset):
    """A torch IterableDataset over materialised batches, one item per batch.

    Items are dicts ``{x [B, 3, P], x1, x2, y, a_id, b_id, target_id, acc_a, acc_b, acc_y,
    pair_id, epoch}`` (``x1 = x[:, 0]`` ...), or with ``compat=True`` the tuple the
    user's training loop takes: ``(x [B, 3, P], records, acc [B, 3], zoo_rows [B, 3])``
    with ``records`` a list of ``[classes_a, classes_b, epoch_key, activation_key]``.

    Under a DataLoader with ``W`` workers, worker ``i`` reads batches ``i, i+W, ...``;
    the DataLoader interleaves them back into the materialised order.  Nothing is opened
    until iteration starts in the process that iterates.
    """

    def __init__(self, root: Any, entries: Sequence[_Entry], *, compat: bool = False, raw_chunks: bool = True,
                 checksums: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.root, self.entries, self.compat, self.raw_chunks = root, tuple(entries), compat, raw_chunks
        self.checksums = checksums
        """Per epoch path: the recorded checksum of every file below it (None: a lake without checksums)."""

    @classmethod
    def open(cls, lake: Lake, scenario: str, split: str = "train", epoch: int | None = None, seed: int | None = None,
             compat: bool = False) -> BatchStream:
        """Stream the materialised batches of a scenario split.

        ``epoch=None`` streams every materialised epoch in order; ``seed=None`` accepts
        whichever seed was materialised.

        Raises
        ------
        NoSuchTableError
            Nothing is materialised for this scenario split (or not this epoch/seed).
        """
        rows = _batch_rows(lake, scenario, split)
        for column, wanted in (("seed", seed), ("epoch", epoch)):
            if wanted is not None:
                held = sorted(set(rows[column].to_list()))
                if wanted not in held:
                    raise NoSuchTableError(f"{scenario}/{split} is materialised with {column} {held}, not {wanted!r}; "
                                           f"run `weightlake pairs materialize {scenario} --split {split} ...`")
                rows = rows.filter(pl.col(column) == wanted)
        entries = [_Entry(r["path"], r["epoch"], r["n_batches"], r["batch_size"])
                   for r in rows.sort("epoch").iter_rows(named=True)]
        checksums = None
        if lake.manifest.format >= 2:
            checksums = {e.path: {k[len(e.path) + 1:]: v for k, v in lake.manifest.checksums.items()
                                  if k.startswith(e.path + "/")} for e in entries}
        return cls(lake.location, entries, compat=compat, checksums=checksums)

    def __len__(self) -> int:
        return sum(e.n_batches for e in self.entries)

    def __repr__(self) -> str:
        epochs = [e.epoch for e in self.entries]
        return f"<BatchStream {len(self)} batches, epochs {epochs}{' compat' if self.compat else ''}>"

    def __iter__(self) -> Iterator[Any]:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        wid, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        at = 0
        for entry in self.entries:
            first = (wid - at) % n_workers  # this worker's first batch of the epoch, in global numbering
            if first < entry.n_batches:
                reader = _EpochReader(ArrayFiles(resolve_store(self.root), entry.path), raw_chunks=self.raw_chunks,
                                      checksums=None if self.checksums is None else self.checksums[entry.path])
                for b in range(first, entry.n_batches, n_workers):
                    yield reader.compat(b) if self.compat else reader.batch(b, entry.epoch)
            at += entry.n_batches

    def loader(self, num_workers: int = 0, **kw: Any) -> torch.utils.data.DataLoader:
        """A DataLoader over the stream (items are already batches)."""
        from torch.utils.data import DataLoader

        return DataLoader(self, batch_size=None, num_workers=num_workers, collate_fn=as_is, **kw)


def _batch_rows(lake: Lake, scenario: str, split: str) -> pl.DataFrame:
    hint = f"run `weightlake pairs materialize {scenario} --split {split}` (or weightlake.serve.batches.materialize)"
    if TABLE not in lake.tables or not lake.manifest.table(TABLE).files:
        raise NoSuchTableError(f"the lake has no materialised batches at snapshot {lake.snapshot}; {hint}")
    rows = lake.table(TABLE).filter((pl.col("scenario") == scenario) & (pl.col("split") == split)).collect()
    if rows.height == 0:
        raise NoSuchTableError(f"no materialised batches for scenario {scenario!r} split {split!r}; {hint}")
    return rows


class _EpochReader:
    """Reads one materialised epoch in the current process.

    The small arrays (ids, accuracies, rows, masks) are read whole once.  A batch of ``x``
    is one chunk; when the array is laid out as this module writes it (regular chunks
    of one batch, the ``bytes`` codec little-endian and nothing else, default ``c/``
    chunk keys), the chunk file is read directly as the Zarr v3 spec defines it: zarr's
    per-call overhead (about 0.8 ms) otherwise dominates reading a 1 MB batch.  Any other
    layout goes through zarr.
    """

    def __init__(self, files: ArrayFiles, *, raw_chunks: bool = True,
                 checksums: Mapping[str, str] | None = None) -> None:
        self.files, self.checksums = files, checksums
        if checksums is not None:  # everything but the batches of x is small: check it all up front
            for rel, digest in checksums.items():
                if not rel.startswith("x/c/"):
                    files.check(rel, digest)
        group: Any = files.group()
        small = ("ids", "acc", "rows", "zoo_rows", "masks", "keys", "valid")
        self.arrays = {name: np.asarray(group[name][...]) for name in small}
        self.x = group["x"]
        self.raw = _raw_layout(files, "x") if raw_chunks else None

    def read_x(self, b: int) -> np.ndarray:
        key = f"x/c/{b}/0/0/0"
        digest = self.checksums.get(key) if self.checksums is not None else None
        chunk = self.files.name(key)
        if self.checksums is not None and digest is None:
            raise IntegrityError(f"batch chunk {str(chunk)!r} has no recorded checksum; run `weightlake verify`")
        if self.raw is None:
            if digest is not None:
                self.files.check(key, digest)
            return np.asarray(self.x[b])
        shape, dtype = self.raw
        if digest is None and not self.files.exists(key):  # no checksums: never written means the fill value
            return np.zeros(shape, dtype=dtype)
        try:
            data = self.files.read(key)
        except FileNotFoundError:
            raise IntegrityError(f"batch chunk {str(chunk)!r} is missing; the snapshot lists it") from None
        check_bytes(data, digest, chunk)
        if data.size != int(np.prod(shape)) * dtype.itemsize:
            raise IntegrityError(f"batch chunk {str(chunk)!r} has {data.size} bytes, expected "
                                 f"{int(np.prod(shape)) * dtype.itemsize}")
        return data.view(dtype).reshape(shape)

    def _trimmed(self, b: int) -> tuple[int, np.ndarray]:
        n = int(self.arrays["valid"][b].sum())
        x = self.read_x(b)
        return n, x[:n] if n < len(x) else x

    def batch(self, b: int, epoch: int) -> dict[str, Any]:
        import torch

        n, x = self._trimmed(b)
        xt = torch.from_numpy(x)
        ids = torch.from_numpy(self.arrays["ids"][b, :n])
        acc = torch.from_numpy(self.arrays["acc"][b, :n])
        return {"x": xt, "x1": xt[:, 0], "x2": xt[:, 1], "y": xt[:, 2],
                "a_id": ids[:, 0], "b_id": ids[:, 1], "target_id": ids[:, 2],
                "acc_a": acc[:, 0], "acc_b": acc[:, 1], "acc_y": acc[:, 2],
                "pair_id": torch.from_numpy(self.arrays["rows"][b, :n]), "epoch": epoch}

    def compat(self, b: int) -> tuple[Any, list[list[Any]], Any, Any]:
        import torch

        n, x = self._trimmed(b)
        masks, keys = self.arrays["masks"][b, :n].tolist(), self.arrays["keys"][b, :n].tolist()
        records = [[_classes(ma), _classes(mb), ek, ak] for (ma, mb), (ek, ak) in zip(masks, keys, strict=True)]
        return (torch.from_numpy(x), records, torch.from_numpy(self.arrays["acc"][b, :n]),
                torch.from_numpy(self.arrays["zoo_rows"][b, :n]))


@lru_cache(maxsize=4096)
def _classes_tuple(mask: int) -> tuple[int, ...]:
    return tuple(mask_classes(mask))


def _classes(mask: int) -> list[int]:
    return list(_classes_tuple(mask))


def _raw_layout(files: ArrayFiles, array: str) -> tuple[tuple[int, ...], np.dtype] | None:
    """``(chunk shape, dtype)`` if chunks of ``array`` are raw little-endian files at ``c/i/0/0/0``."""
    try:
        meta = json.loads(files.text(f"{array}/zarr.json"))
    except (OSError, ValueError):
        return None
    shape, chunks = meta.get("shape", []), meta.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape")
    plain = (meta.get("codecs") == [{"name": "bytes", "configuration": {"endian": "little"}}]
             and meta.get("chunk_key_encoding") == {"name": "default", "configuration": {"separator": "/"}}
             and meta.get("data_type") == "float32" and not meta.get("storage_transformers")
             and chunks is not None and len(shape) == 4 and chunks[0] == 1 and list(chunks[1:]) == list(shape[1:]))
    return (tuple(chunks[1:]), np.dtype("<f4")) if plain else None
