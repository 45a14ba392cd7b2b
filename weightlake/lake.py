"""The core read handle: one pinned snapshot, read through polars and torch.

>>> lake = open_lake("lake")                      # doctest: +SKIP
>>> lake.models().filter(pl.col("epoch") == 11)   # doctest: +SKIP
>>> lake.weights([0, 5, 9]).shape                 # doctest: +SKIP
torch.Size([3, 2464])

A :class:`Lake` never sees a later commit until :meth:`Lake.refresh`; files listed by its
snapshot are immutable, so reads need no locks.

This module sits below query, serving, scenarios and the lake-level runs, and imports none
of them: they take a :class:`Lake` and read it.  The handle users get from
:func:`weightlake.open_lake` is :class:`weightlake.handle.LakeHandle`, a subclass defined at
the top of the house that adds ``lake.sql``, ``lake.connect``, ``lake.pairs``,
``lake.batches`` and ``lake.analysis`` by calling those layers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import polars as pl

from weightlake.arch import Architecture, describe_zoos, get_architecture, same_layout
from weightlake.errors import ArchitectureError, NoSuchModelError, NoSuchTableError, QueryError
from weightlake.storage import remote, tables
from weightlake.storage.budget import block_rows as budget_rows
from weightlake.storage.budget import resolve_memory
from weightlake.storage.remote import checked_paths as remote_checked_paths
from weightlake.storage.snapshot import Manifest, Segment, SnapshotStore
from weightlake.storage.store import Store, resolve_store
from weightlake.storage.tensors import DEFAULT_CHUNK_ROWS, SegmentReader, coalesce_blocks, read_all, read_rows

if TYPE_CHECKING:
    import torch

DEFAULT_LAKE = "lake"
ENV_LAKE = "WEIGHTLAKE_LAKE"

MODEL_HIVE = {"zoo": pl.String, "activation": pl.String}

USER_FACADE = {
    "connect": "weightlake.query.connect(lake)",
    "sql": "weightlake.query.run_sql(lake, query)",
    "analysis": "weightlake.compute.analyses.LakeAnalysis(lake)",
    "pairs": "weightlake.serve.pairset.PairSet.open(lake, scenario, split)",
    "batches": "weightlake.serve.batches.BatchStream.open(lake, scenario, split)",
}
"""Methods of the user handle (:class:`weightlake.handle.LakeHandle`) and the call each one makes."""


def resolve_lake_path(path: Any = None) -> Any:
    """Explicit argument > ``$WEIGHTLAKE_LAKE`` > ``./lake``: a :class:`Path`, or the URL as given
    (``s3://bucket/prefix``, see :mod:`weightlake.storage.store`)."""
    from weightlake.storage.store import split_url

    text = path if path is not None and str(path) != "" else os.environ.get(ENV_LAKE) or DEFAULT_LAKE
    return Path(text) if split_url(text)[0] is None else text


def open_lake(path: Any = None, *, create: bool = False, memory: str | int | None = None) -> Lake:
    """Open the core handle on a lake's current snapshot; ``create=True`` makes an empty one if needed.

    This is the handle the layers below the top use.  Users open the full handle (SQL, pairs,
    batches, analyses) with :func:`weightlake.open_lake`.

    ``memory`` is the handle's memory budget for weights (``"1GB"``, bytes; default
    ``$WEIGHTLAKE_MEMORY``, else a quarter of the machine): see :mod:`weightlake.storage.budget`.
    """
    return Lake.open(path, create=create, memory=memory)


def _read_listed(item: tuple[str, str | None], location: Store, partition_by: Sequence[str]) -> Any:
    return remote.read_part(location, item[0], item[1], partition_by)


@dataclass(frozen=True)
class _Span:
    zoo: str
    segment: Segment


class Lake:
    """A read handle on one snapshot of a lake.

    ``root`` is the lake directory; for a lake on an object store it is the store's pyarrow
    path (``bucket/prefix``) and ``location`` (a :class:`~weightlake.storage.store.Store`)
    is how every file is reached.  :func:`weightlake.open_lake` returns the user handle,
    :class:`weightlake.handle.LakeHandle`, a subclass with SQL, pairs, batches and analyses.
    """

    def __init__(self, root: Any, manifest: Manifest, *, location: Store | None = None,
                 memory: str | int | None = None) -> None:
        self.location: Store = location if location is not None else resolve_store(root)
        self.root = SnapshotStore(self.location).root
        self.manifest = manifest
        self.memory = resolve_memory(memory)
        """Memory budget in bytes for weights held at once (streamed blocks, decoded zoos)."""
        self._cache: dict[str, np.ndarray] = {}
        self._sources: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._verified: set[str] = set()
        self._uniform: dict[tuple[str, ...], bool] = {}  # a table's files -> do its partitions share a schema

    @classmethod
    def open(cls, path: Any = None, *, create: bool = False, memory: str | int | None = None) -> Self:
        """A handle of this type on the current snapshot of the lake at ``path`` (see :func:`open_lake`)."""
        store = SnapshotStore(resolve_lake_path(path))
        if create and not store.exists:
            store.create()
        return cls(store.root, store.current(), location=store.location, memory=memory)

    def __getattr__(self, name: str) -> Any:
        # called only when normal lookup fails: the user API lives at the top (weightlake.handle)
        if name in USER_FACADE and not hasattr(type(self), name):
            raise AttributeError(f"{type(self).__name__}.{name} is part of the user handle: open the lake with "
                                 f"weightlake.open_lake(...) for lake.{name}, or call {USER_FACADE[name]} "
                                 "with this handle")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        zoos = ", ".join(f"{k}: {v.n_models}" for k, v in self.manifest.zoos.items()) or "no zoos"
        return f"<Lake {str(self.root)!r} snapshot {self.manifest.version} ({zoos})>"

    # -- snapshot ------------------------------------------------------------------------
    @property
    def snapshot(self) -> int:
        return self.manifest.version

    @property
    def store(self) -> SnapshotStore:
        return SnapshotStore(self.location)

    def refresh(self) -> Self:
        """A handle of the same type on the newest snapshot (this one stays pinned)."""
        return type(self)(self.root, self.store.current(), location=self.location, memory=self.memory)

    def at(self, version: int) -> Self:
        """A handle of the same type pinned to an earlier snapshot version."""
        return type(self)(self.root, self.store.version(version), location=self.location, memory=self.memory)

    def history(self) -> pl.DataFrame:
        rows = [{"version": m.version, "created": m.created, "operation": m.operation.get("op"),
                 "summary": m.operation.get("summary", ""), "models": sum(z.n_models for z in m.zoos.values())}
                for m in self.store.history()]
        return pl.DataFrame(rows)

    # -- zoos and models -------------------------------------------------------------------
    @property
    def zoos(self) -> list[str]:
        return sorted(self.manifest.zoos)

    def arch(self, zoo: str | None = None) -> Architecture:
        """The architecture of ``zoo`` (or of the only zoo / the one all zoos share)."""
        if zoo is not None:
            return get_architecture(self.manifest.zoo(zoo).arch)
        archs = {e.arch["name"]: e.arch for e in self.manifest.zoos.values()}
        if len(archs) != 1:
            raise NoSuchTableError(f"say which zoo: the lake holds architectures {sorted(archs) or 'none'}")
        return get_architecture(next(iter(archs.values())))

    def models(self, zoo: str | None = None) -> pl.LazyFrame:
        """Model metadata as a polars LazyFrame (all zoos, or one)."""
        files = self._model_files(zoo)
        if not files:
            return pl.LazyFrame(schema={"model_id": pl.Int64, "zoo": pl.String, "activation": pl.String})
        lf = self._scan(files, MODEL_HIVE)
        cols = ["model_id", "zoo", "arch", "init", "activation", "epoch"]
        return lf.select(*cols, pl.exclude(cols))

    def check_output(self, path: str | os.PathLike[str]) -> Path:
        """Refuse an output file inside the lake root: the lake changes only through commits.

        Outputs are local paths; a URL (``s3://...``, ``file://...``) is refused rather than written
        as a local folder named ``s3:``.
        """
        from weightlake.storage.store import split_url

        if split_url(path)[0] is not None:
            raise QueryError(f"refusing to write {str(path)!r}: outputs are local paths, not URLs (give a path, and "
                             "copy the file to an object store yourself)")
        target = Path(path).resolve()
        if not self.location.is_local:  # a local file cannot lie inside an object-store lake
            return target
        if target == self.root.resolve() or self.root.resolve() in target.parents:
            raise QueryError(f"refusing to write {str(path)!r}: it lies inside the lake {str(self.root)!r}, which "
                             "changes only through weightlake's own commands; write the result elsewhere")
        return target

    def checked_paths(self, files: Sequence[str]) -> list[str]:
        """Absolute paths of listed files, each checked against its recorded checksum once per handle."""
        with self._lock:
            if self.location.is_local:
                return tables.checked_paths(self.root, files, self.manifest, self._verified)
            return remote_checked_paths(self.location, files, self.manifest, self._verified)

    def _scan(self, files: Sequence[str], hive: dict[str, Any] | None) -> pl.LazyFrame:
        """A polars scan of listed, checked Parquet files (by URL with polars' own S3 reader off disk)."""
        paths = self.checked_paths(files)
        if not self.location.is_local:
            paths = [self.location.uri(f) for f in files]
        return tables.scan_parquet(paths, hive_schema=hive, storage_options=self.location.polars_options())

    def array_digests(self, rel: str) -> tuple[tuple[str, ...] | None, str | None]:
        """Recorded checksums of a table-owned 2-D array ``rel``: (per chunk ``c/<i>/0`` in order, ``zarr.json``).

        ``(None, None)`` for a snapshot written before checksums.
        """
        if self.manifest.format < 2:
            return None, None
        prefix = rel.rstrip("/") + "/"
        chunks: dict[int, str] = {}
        for key, digest in self.manifest.checksums.items():
            parts = key[len(prefix):].split("/") if key.startswith(prefix) else []
            if len(parts) == 3 and parts[0] == "c" and parts[1].isdigit():
                chunks[int(parts[1])] = digest
        return tuple(chunks[i] for i in range(len(chunks)) if i in chunks), self.manifest.checksum(prefix + "zarr.json")

    def _model_files(self, zoo: str | None) -> list[str]:
        entries = [self.manifest.zoo(zoo)] if zoo else list(self.manifest.zoos.values())
        return [f for e in entries for f in e.model_files]

    def runs(self, zoo: str | None = None) -> pl.DataFrame:
        """Training runs: one row per ``(zoo, run_id)`` with its model ids, epochs and ``m_*``
        metrics as lists in epoch order (zoos ingested from a layout that records runs, such as
        ``ingest modelzoo``).

        Raises
        ------
        NoSuchTableError
            When no model of the zoo(s) has a ``run_id``.
        """
        meta = self.models(zoo)
        names = meta.collect_schema().names()
        if "run_id" not in names:
            raise NoSuchTableError(f"{'zoo ' + repr(zoo) if zoo else 'the lake'} records no training runs (no "
                                   "run_id column); runs come from layouts that record them (ingest modelzoo)")
        metrics = [c for c in names if c.startswith("m_")]
        return (meta.filter(pl.col("run_id").is_not_null()).sort("zoo", "run_id", "epoch")
                .group_by("zoo", "run_id", maintain_order=True)
                .agg(pl.len().alias("n_epochs"), "epoch", "model_id", *metrics).collect())

    def check_aligned(self, zoos: Iterable[str], what: str) -> None:
        """Refuse to mix zoos whose flat vectors do not line up (:func:`~weightlake.arch.same_layout`).

        Raises
        ------
        ArchitectureError
            Naming ``what`` and each zoo with its architecture and parameter count.
        """
        names = sorted(set(zoos))
        if len(names) < 2:
            return
        archs = {zoo: self.arch(zoo) for zoo in names}
        if all(same_layout(archs[names[0]], arch) for arch in archs.values()):
            return
        raise ArchitectureError(f"{what} span zoos whose weight vectors do not line up: {describe_zoos(archs)}; "
                                "ask one zoo at a time")

    def model(self, model_id: int) -> dict[str, Any]:
        """One model's metadata as a dict."""
        span = self._span(int(model_id))
        df = self.models(span.zoo).filter(pl.col("model_id") == int(model_id)).collect()
        return df.row(0, named=True)

    @cached_property
    def _spans(self) -> tuple[np.ndarray, list[_Span]]:
        spans = sorted((_Span(z, s) for z, e in self.manifest.zoos.items() for s in e.segments),
                       key=lambda sp: sp.segment.first_id)
        starts = np.array([sp.segment.first_id for sp in spans], dtype=np.int64)
        return starts, spans

    def _span(self, model_id: int) -> _Span:
        starts, spans = self._spans
        i = int(np.searchsorted(starts, model_id, side="right")) - 1
        if i < 0 or model_id >= spans[i].segment.stop_id:
            raise NoSuchModelError(f"no model with id {model_id} at snapshot {self.snapshot}")
        return spans[i]

    # -- weights ---------------------------------------------------------------------------
    def weights_numpy(self, ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Flat weights ``float32 [n, P]`` of the given model ids, in the given order."""
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64).reshape(-1)
        starts, spans = self._spans
        if ids.size == 0:  # the width is the lake's, when its zoos agree on one
            self.check_aligned({sp.zoo for sp in spans}, "no model ids were given, and the lake's zoos")
            return np.empty((0, spans[0].segment.cols if spans else 0), dtype=np.float32)
        seg_index = np.searchsorted(starts, ids, side="right") - 1
        bad = (seg_index < 0) | (ids >= np.array([spans[max(i, 0)].segment.stop_id for i in seg_index]))
        if bad.any():
            raise NoSuchModelError(f"no model with id {int(ids[bad][0])} at snapshot {self.snapshot}")
        used = np.unique(seg_index)
        self.check_aligned({spans[i].zoo for i in used}, "the model ids")
        cols = {spans[i].segment.cols for i in used}
        if len(used) == 1:
            return self._segment_rows(spans[used[0]], ids - spans[used[0]].segment.first_id)
        out = np.empty((ids.size, cols.pop()), dtype=np.float32)
        for i in used:
            mask = seg_index == i
            out[mask] = self._segment_rows(spans[i], ids[mask] - spans[i].segment.first_id)
        return out

    def _segment_rows(self, span: _Span, index: np.ndarray) -> np.ndarray:
        cached = self._cache.get(span.segment.path)
        if cached is not None:
            return cached[index]
        seg = span.segment
        if not self.location.is_local:
            return remote.read_rows(self.location, seg, index)
        return read_rows(self.root / seg.path, seg.rows, seg.cols, index, digests=seg.chunk_digests,
                         meta_digest=seg.meta_digest, parts=seg.parts)

    def weights(self, ids: Iterable[int] | np.ndarray) -> torch.Tensor:
        """Flat weights as a ``torch.float32 [n, P]`` tensor sharing memory with the decoded rows."""
        import torch

        return torch.from_numpy(self.weights_numpy(ids))

    def zoo_weights(self, zoo: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All model ids and weights of a zoo, decoded once and kept: ``(ids [n], float32 [n, P])``.

        The array is cached on this handle (read-only), so analysis gathers from memory
        instead of decoding chunks per call.  It holds the whole zoo whatever the memory
        budget, and warns (:class:`~weightlake.storage.budget.BudgetWarning`) when the zoo
        exceeds it (correlations still read this way).  Random access within the budget
        (pair serving, ``wl_*_by_id``) goes through :meth:`row_source`; streaming consumers
        use :meth:`iter_weights`.
        """
        zoo = zoo or self._only_zoo()
        entry = self.manifest.zoo(zoo)
        with self._lock:
            key = f"zoo:{zoo}"
            if key not in self._cache:
                if not self.fits(zoo):
                    _warn_over_budget(zoo, self.zoo_bytes(zoo), self.memory)
                cols = entry.segments[0].cols if entry.segments else self.arch(zoo).n_params
                out = np.empty((entry.n_models, cols), dtype=np.float32)
                at = 0
                for seg in entry.segments:
                    if not self.location.is_local:
                        remote.read_all(self.location, seg, out=out[at:at + seg.rows])
                    else:
                        read_all(self.root / seg.path, seg.rows, seg.cols, out=out[at:at + seg.rows],
                                 digests=seg.chunk_digests, meta_digest=seg.meta_digest, parts=seg.parts)
                    self._cache[seg.path] = out[at:at + seg.rows]
                    at += seg.rows
                out.flags.writeable = False
                self._cache[key] = out
        return self.zoo_ids(zoo), self._cache[key]

    def row_source(self, zoo: str | None = None, *, method: str = "mmap") -> Any:
        """Random access to a zoo's rows within the memory budget: ``src.take(positions)`` -> ``float32 [n, P]``.

        Positions index :meth:`zoo_ids` (``src.ids``).  A zoo that fits the budget (or is already
        decoded on this handle) is decoded once and gathered from memory
        (:class:`~weightlake.storage.mapped.ResidentRows`, as :meth:`zoo_weights`).  A larger zoo
        of uncompressed segments on local disk is memory-mapped
        (:class:`~weightlake.storage.mapped.MappedRows`): the process's own memory then holds only
        what it gathers, each chunk is checked once on first use, and the source is kept on this
        handle.  On an object store such a zoo is gathered by byte range
        (:class:`~weightlake.storage.remote_rows.RemoteRows`: each chunk object fetched whole and
        checked once, then only the rows taken).  A zoo of ``tensors``-layout segments (wide
        models), on disk or an object store, is read chunk by chunk for each gather
        (:class:`~weightlake.storage.parts.PartRows`).  Anything else (compressed segments) is
        decoded whole, with a :class:`~weightlake.storage.budget.BudgetWarning` over the budget.
        """
        from weightlake.storage.mapped import MappedRows, ResidentRows, can_map

        zoo = zoo or self._only_zoo()
        entry = self.manifest.zoo(zoo)
        if f"zoo:{zoo}" not in self._cache and not self.fits(zoo) and self.location.is_local:
            with self._lock:
                key = (zoo, method)
                if key not in self._sources and can_map(entry.segments, self.root):
                    self._sources[key] = MappedRows(self.root, entry.segments, method=method)
            if key in self._sources:
                return self._sources[key]
        if f"zoo:{zoo}" not in self._cache and not self.fits(zoo) and not self.location.is_local:
            from weightlake.storage.remote_rows import RemoteRows, can_address

            with self._lock:
                key = (zoo, "remote")
                if key not in self._sources and can_address(self.location, entry.segments):
                    self._sources[key] = RemoteRows(self.location, entry.segments)
            if key in self._sources:
                return self._sources[key]
        if f"zoo:{zoo}" not in self._cache and not self.fits(zoo) and entry.segments \
                and all(s.parts for s in entry.segments):
            from weightlake.storage.parts import PartRows

            with self._lock:
                key = (zoo, "parts")
                if key not in self._sources:
                    self._sources[key] = PartRows(self.location, entry.segments)
            return self._sources[key]
        return ResidentRows(*self.zoo_weights(zoo))

    def zoo_ids(self, zoo: str | None = None) -> np.ndarray:
        """A zoo's model ids in weight-row order (the order of :meth:`zoo_weights` and :meth:`iter_weights`)."""
        entry = self.manifest.zoo(zoo or self._only_zoo())
        if not entry.segments:
            return np.empty(0, dtype=np.int64)
        return np.concatenate([np.arange(s.first_id, s.stop_id, dtype=np.int64) for s in entry.segments])

    def zoo_bytes(self, zoo: str | None = None) -> int:
        """Bytes of a zoo's decoded weights (``float32 [n, P]``)."""
        entry = self.manifest.zoo(zoo or self._only_zoo())
        return sum(4 * s.rows * s.cols for s in entry.segments)

    def fits(self, zoo: str | None = None) -> bool:
        """True when the whole zoo (every zoo when ``zoo`` is None) fits this handle's memory budget.

        Consumers that stream (spectra, the SQL ``weights`` view, ``export csv``, ``verify``)
        decode and keep the zoo when it fits (as fast as an in-memory read) and stream blocks
        otherwise.
        """
        zoos = [zoo] if zoo is not None else self.zoos
        return sum(self.zoo_bytes(z) for z in zoos) <= self.memory

    def block_rows(self, zoo: str | None = None) -> int:
        """Rows per streamed block of ``zoo`` under this handle's budget (whole 512-row chunks)."""
        entry = self.manifest.zoo(zoo or self._only_zoo())
        cols = entry.segments[0].cols if entry.segments else self.arch(zoo).n_params
        return budget_rows(cols, self.memory, DEFAULT_CHUNK_ROWS)

    def iter_weights(self, zoo: str | None = None, *, block_rows: int | None = None,
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream a zoo in model-id order as ``(ids int64 [n], float32 [n, P])`` blocks.

        Blocks hold at most ``block_rows`` rows (default :meth:`block_rows`: a quarter of
        the memory budget) and run across segment boundaries; each is a new array the
        caller may keep, and every chunk is checked against its checksum as it is read.
        A zoo already decoded on this handle (:meth:`zoo_weights`) is served from memory
        (the blocks are then read-only views).
        """
        zoo = zoo or self._only_zoo()
        entry = self.manifest.zoo(zoo)
        step = max(1, int(block_rows or self.block_rows(zoo)))
        cached = self._cache.get(f"zoo:{zoo}")
        if cached is not None:
            ids, rows = self.zoo_weights(zoo)
            for start in range(0, len(ids), step):
                yield ids[start:start + step], rows[start:start + step]
            return
        if not self.location.is_local:  # object stores: block by block, each block's chunks fetched concurrently
            yield from remote.iter_blocks(self.location, entry.segments, step)
            return
        yield from _coalesce(self.root, entry.segments, step)

    def to_dask(self, zoo: str | None = None) -> Any:
        """The zoo's weights as a dask array ``float32 [n_models, P]``, one block per stored chunk.

        Each block is one task that reads and checks its chunk (local disk or object store),
        so the array runs on any Dask scheduler, including a distributed cluster whose workers
        reach the same store; rows are in model-id order (``zoo_weights``' ids).
        """
        import dask
        import dask.array as da

        zoo = zoo or self._only_zoo()
        entry = self.manifest.zoo(zoo)
        # keys name the store too: a copy of the lake (same relative paths) in the same graph is
        # other data, and dask computes each key once
        where = self.location.url if not self.location.is_local else os.path.abspath(self.location.url)
        blocks = []
        for seg in entry.segments:
            step = remote.chunk_rows(self.location, seg)
            token = dask.base.tokenize(where, seg.path)
            for start in range(0, seg.rows, step):
                stop = min(start + step, seg.rows)
                task = dask.delayed(remote.read_block, pure=True)(self.location, seg, start, stop,
                                                                   dask_key_name=f"wl-{token}-{start}")
                blocks.append(da.from_delayed(task, shape=(stop - start, seg.cols), dtype=np.float32))
        if not blocks:
            return da.zeros((0, self.arch(zoo).n_params), dtype=np.float32)
        return da.concatenate(blocks, axis=0)

    def to_dask_frame(self, name: str = "models", zoo: str | None = None) -> Any:
        """Model metadata (``"models"``) or a derived table as a dask dataframe, one partition per listed file.

        Each partition is a task that reads and checks its Parquet file from the lake's store and
        adds the Hive partition columns (``zoo``, ``activation``, ...) as strings.
        """
        import dask.dataframe as dd

        if name == "models":
            files, partition_by = self._model_files(zoo), ("zoo", "activation")
        else:
            entry = self.manifest.table(name)
            files, partition_by = list(entry.files), tuple(entry.properties.get("partition_by", ()))
        if not files:
            raise NoSuchTableError(f"{name!r} has no files at snapshot {self.snapshot}")
        return dd.from_map(_read_listed, [(f, self.manifest.checksum(f)) for f in files], location=self.location,
                           partition_by=partition_by)

    def _only_zoo(self) -> str:
        if len(self.manifest.zoos) != 1:
            raise NoSuchTableError(f"say which zoo; the lake holds {self.zoos or 'none'}")
        return next(iter(self.manifest.zoos))

    def layer(self, ids: Iterable[int] | np.ndarray, name: str) -> torch.Tensor:
        """One layer of the given models: ``"fc1"`` -> ``[n, 20, 36]``, ``"conv1"`` -> ``[n, 8, 1, 5, 5]``,
        ``"fc1.bias"`` -> ``[n, 20]``, or any state_dict key (``"layer4.1.conv2.weight"``,
        ``"layer1.0.bn1.running_mean"``).

        From a zoo decoded on this handle: views into its rows.  A ``tensors``-layout segment
        reads only that tensor's chunks (bytes read = tensor bytes x models, up to the padding
        of a last chunk).  A ``rows``-layout segment is read in budget-sized blocks of whole
        rows of which only the layer is kept (memory grows with ``n x layer size``; the bytes
        read are whole chunks, as each chunk's checksum covers all its rows' parameters).
        """
        import torch

        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64).reshape(-1)
        zoos = self.zoos_of(ids) if ids.size else [self._only_zoo()]
        where = {zoo: self.arch(zoo).locate(name) for zoo in zoos}
        if len(set(where.values())) > 1:  # each zoo's own columns, or none: never one zoo's offsets on another's rows
            archs = {zoo: self.arch(zoo) for zoo in zoos}
            raise ArchitectureError(f"the model ids span zoos whose {name!r} lies at other columns or has another "
                                    f"shape: {describe_zoos(archs)}; ask one zoo at a time")
        if len(zoos) == 1 and f"zoo:{zoos[0]}" in self._cache:
            return self.arch(zoos[0]).select(torch.from_numpy(self.weights_numpy(ids)), name)
        lo, hi, shape = where[zoos[0]]
        return torch.from_numpy(self._columns(ids, lo, hi)).reshape((ids.size, *shape))

    def zoos_of(self, ids: Iterable[int] | np.ndarray) -> list[str]:
        """The zoos holding model ids ``ids`` (in order of first appearance); unknown ids are left to the readers."""
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64).reshape(-1)
        starts, spans = self._spans
        seg_index = np.searchsorted(starts, ids, side="right") - 1
        _, first = np.unique(seg_index, return_index=True)
        return list(dict.fromkeys(spans[max(int(seg_index[i]), 0)].zoo for i in sorted(first)))

    def columns_numpy(self, ids: Iterable[int] | np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Flat columns ``[lo, hi)`` of the given models: ``float32 [n, hi - lo]``, in the given order.

        ``tensors``-layout segments read only the tensors overlapping ``[lo, hi)``; ``rows``-layout
        segments are read in budget-sized blocks of whole rows, keeping the columns.  Ids of zoos
        whose vectors do not line up are refused (a column means another parameter in each).
        """
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64).reshape(-1)
        if ids.size:
            self.check_aligned(self.zoos_of(ids), "the model ids")
        return self._columns(ids, lo, hi)

    def _columns(self, ids: np.ndarray, lo: int, hi: int) -> np.ndarray:
        from weightlake.storage.parts import parts_reader

        out = np.empty((ids.size, hi - lo), dtype=np.float32)
        if not ids.size:
            return out
        starts, spans = self._spans
        seg_index = np.searchsorted(starts, ids, side="right") - 1
        for i in np.unique(seg_index):
            span = spans[max(int(i), 0)]
            mask = seg_index == i
            local = ids[mask] - span.segment.first_id
            if i < 0 or local.min() < 0 or local.max() >= span.segment.rows:
                raise NoSuchModelError(f"no model with id {int(ids[mask][0])} at snapshot {self.snapshot}")
            seg = span.segment
            if not 0 <= lo <= hi <= seg.cols:
                raise ArchitectureError(f"columns [{lo}, {hi}) lie outside the {seg.cols:,} parameters of zoo "
                                        f"{span.zoo!r}")
            if seg.parts:
                out[mask] = parts_reader(self.location, seg).read_columns(local, lo, hi)
                continue
            step = budget_rows(seg.cols, self.memory, 1)
            where = np.flatnonzero(mask)
            for start in range(0, where.size, step):
                chunk = where[start:start + step]
                out[chunk] = self.weights_numpy(ids[chunk])[:, lo:hi]
        return out

    def state_dict(self, model_id: int) -> dict[str, torch.Tensor]:
        """The model's state_dict: every tensor with its key, shape and dtype (``load_state_dict`` accepts it).

        Reads one model: a ``tensors``-layout segment one chunk per tensor at a time, so memory
        holds this model plus one chunk, whatever the zoo's size.
        """
        import torch

        arch = self.arch(self._span(int(model_id)).zoo)
        flat = self.weights_numpy([model_id])[0]
        return {t.key: torch.from_numpy(flat[t.start:t.stop].reshape(t.shape).copy()).to(getattr(torch, t.dtype))
                for t in arch.tensors}

    def cnn(self, model_id: int) -> torch.nn.Module:
        """A ready torch module (eval mode) with this model's weights and activation."""
        from weightlake.zoo.cnn import build_cnn

        meta = self.model(model_id)
        return build_cnn(self.arch(meta["zoo"]), meta["activation"], self.weights_numpy([model_id])[0])

    # -- tables and SQL ----------------------------------------------------------------------
    @property
    def tables(self) -> list[str]:
        return sorted(self.manifest.tables)

    def table(self, name: str) -> pl.LazyFrame:
        """A derived table (``pairs``, ``scenarios``, ``spectra`` ...) as a polars LazyFrame."""
        entry = self.manifest.table(name)
        if not entry.files:
            # a table whose last write was empty: its writer may have recorded the schema
            spec = entry.properties.get("schema") or {}
            return pl.LazyFrame(schema={name: getattr(pl, dtype) for name, dtype in spec.items()})
        hive = {c: pl.String for c in entry.properties.get("partition_by", ())}
        groups: dict[str, list[str]] = {}
        for f in entry.files:
            groups.setdefault(f.rsplit("/", 1)[0], []).append(f)
        if len(groups) < 2:
            return self._scan(entry.files, hive or None)
        # Partitions written by different runs may hold different columns (evaluations of other
        # metrics): one scan of them all took the first file's columns and raised a SchemaError on
        # the next. Partitions of one schema are still scanned as one.
        # The answer is kept per handle: on an object store each schema is a footer request.
        uniform = self._uniform.get(entry.files)
        if uniform is None:
            schemas = [self._scan(files, hive or None).collect_schema() for files in groups.values()]
            uniform = self._uniform[entry.files] = all(schema == schemas[0] for schema in schemas[1:])
        if uniform:
            return self._scan(entry.files, hive or None)
        return pl.concat([self._scan(files, hive or None) for files in groups.values()], how="diagonal_relaxed")


def _coalesce(root: Path, segments: Sequence[Segment], step: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Blocks of ``step`` rows read across the local segments in order (the last block may be short)."""
    def open_segment(seg: Segment) -> Any:
        reader = SegmentReader(root / seg.path, seg.rows, seg.cols, digests=seg.chunk_digests,
                               meta_digest=seg.meta_digest, parts=seg.parts)
        return lambda start, stop, out: reader.read(start, stop, out=out)

    return coalesce_blocks(segments, step, open_segment)


def _warn_over_budget(zoo: str, need: int, budget: int) -> None:
    import warnings

    from weightlake.storage.budget import BudgetWarning, format_memory

    warnings.warn(f"decoding zoo {zoo!r} whole ({format_memory(need)}), more than the memory budget "
                  f"({format_memory(budget)}): this reader (correlations, or a compressed or object-store zoo) holds the "
                  "whole zoo; raise WEIGHTLAKE_MEMORY or use the bounded readers (lake.iter_weights, "
                  "lake.row_source, pair serving, analyze spectra, SQL)", BudgetWarning, stacklevel=3)
