"""Weight segments read from an object store: zarr opens the array, chunks are fetched and checked.

The local reader (:mod:`weightlake.storage.tensors`) reads chunk files straight into place;
on an object store the same layout holds (one object per chunk, ``zarr.json`` beside them),
so zarr's own :class:`zarr.storage.ObjectStore` opens the array (shape, chunk grid, codecs,
chunk keys) and the chunk objects are fetched concurrently, each checked against the digest
the snapshot recorded before it is copied into the destination.  Compressed segments are
decoded by zarr after their chunk objects passed the check.  ``tensors``-layout segments
(one array per tensor) are read by :class:`weightlake.storage.parts.PartsReader` over the
same store, as on disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from weightlake.errors import IntegrityError
from weightlake.storage.checksums import check_bytes
from weightlake.storage.snapshot import Segment
from weightlake.storage.store import Store
from weightlake.storage.tensors import _raw_layout, coalesce_blocks

FETCH_THREADS = 8
"""Concurrent chunk requests (object stores reward parallel GETs; the copy itself is cheap)."""


def open_segment(location: Store, seg: Segment) -> Any:
    """Open a segment through zarr's object store after checking its ``zarr.json`` digest and shape."""
    import zarr

    if seg.parts:  # callers read tensors-layout segments through storage.parts.parts_reader
        raise IntegrityError(f"weight segment {location.uri(seg.path)!r} uses the tensors layout: it has no single "
                             "zarr array to open")
    key = f"{seg.path}/zarr.json"
    try:
        check_bytes(location.read(key), seg.meta_digest, location.uri(key))
        array = zarr.open_array(store=location.zarr_store(), path=seg.path, mode="r")
    except FileNotFoundError:
        raise IntegrityError(f"weight segment {location.uri(seg.path)!r} is missing; the snapshot lists it") from None
    if tuple(array.shape) != (seg.rows, seg.cols):
        raise IntegrityError(f"weight segment {location.uri(seg.path)!r} has shape {tuple(array.shape)}, the "
                             f"snapshot says ({seg.rows}, {seg.cols}); run `weightlake verify`")
    return array


def _fetch(location: Store, seg: Segment, array: Any, chunks: Sequence[int]) -> dict[int, bytes]:
    """The chunk objects' bytes, each checked against its recorded digest."""
    digests = seg.chunk_digests
    n_chunks = -(-seg.rows // int(array.chunks[0]))
    if digests is not None and len(digests) != n_chunks:
        raise IntegrityError(f"weight segment {location.uri(seg.path)!r} has {n_chunks} chunks but the snapshot "
                             f"records {len(digests)} checksums; run `weightlake verify`")

    def get(i: int) -> tuple[int, bytes]:
        key = f"{seg.path}/{array.metadata.encode_chunk_key((i, 0))}"
        try:
            data = location.read(key)
        except FileNotFoundError:
            raise IntegrityError(f"chunk {location.uri(key)!r} is missing; the snapshot lists it "
                                 "(run `weightlake verify`)") from None
        check_bytes(data, digests[i] if digests is not None else None, location.uri(key))
        return i, data

    with ThreadPoolExecutor(min(FETCH_THREADS, max(1, len(chunks)))) as pool:
        return dict(pool.map(get, chunks))


def read_all(location: Store, seg: Segment, out: np.ndarray | None = None) -> np.ndarray:
    """Decode a whole segment into ``out`` (or a new array)."""
    if seg.parts:  # tensors layout: one object per chunk of one tensor, read by the same reader as on disk
        from weightlake.storage.parts import parts_reader

        return parts_reader(location, seg).read(0, seg.rows, out=out)
    array = open_segment(location, seg)
    out = np.empty((seg.rows, seg.cols), dtype=np.float32) if out is None else out
    step = int(array.chunks[0])
    chunks = _fetch(location, seg, array, range(-(-seg.rows // step)))
    if not _raw_layout(array):
        return _decode(array, out)
    for i, data in chunks.items():
        _place(data, out, i * step, min((i + 1) * step, seg.rows), step, seg)
    return out


def read_rows(location: Store, seg: Segment, index: np.ndarray) -> np.ndarray:
    """Decode selected rows (any order, repeats allowed), fetching only the chunks they touch."""
    index = np.asarray(index, dtype=np.int64)
    if index.size == 0:
        return np.empty((0, seg.cols), dtype=np.float32)
    if index.min() < 0 or index.max() >= seg.rows:
        raise IntegrityError(f"row index out of range for segment {location.uri(seg.path)!r} of {seg.rows} rows")
    if seg.parts:
        from weightlake.storage.parts import parts_reader

        return parts_reader(location, seg).read_rows(index)
    array = open_segment(location, seg)
    step = int(array.chunks[0])
    wanted = np.unique(index // step)
    chunks = _fetch(location, seg, array, [int(c) for c in wanted])
    if not _raw_layout(array):
        return _decode(array, np.empty((seg.rows, seg.cols), dtype=np.float32))[index]
    out = np.empty((index.size, seg.cols), dtype=np.float32)
    block = np.empty((step, seg.cols), dtype=np.float32)
    for c, data in chunks.items():
        _place(data, block, 0, step, step, seg)
        mask = index // step == c
        out[mask] = block[index[mask] - c * step]
    return out


def _place(data: bytes, out: np.ndarray, start: int, stop: int, step: int, seg: Segment) -> None:
    """Copy one raw chunk (``step`` rows of little-endian float32, the last one padded) into ``out``."""
    rows = np.frombuffer(data, dtype="<f4")
    if rows.size != step * seg.cols:
        raise IntegrityError(f"a chunk of {seg.path!r} has {len(data)} bytes, expected {step * seg.cols * 4}; "
                             "run `weightlake verify`")
    out[start:stop] = rows.reshape(step, seg.cols)[: stop - start]


def _decode(array: Any, out: np.ndarray) -> np.ndarray:
    from zarr.core.buffer import default_buffer_prototype

    array.get_basic_selection(Ellipsis, out=default_buffer_prototype().nd_buffer.from_numpy_array(out))
    return out


def check_key(location: Store, key: str, digest: str | None) -> None:
    """Fetch one listed object and check it against ``digest``; a missing object is an error."""
    try:
        data = location.read(key)
    except FileNotFoundError:
        raise IntegrityError(f"{location.uri(key)!r} is missing; the snapshot lists it "
                             "(run `weightlake verify`)") from None
    check_bytes(data, digest, location.uri(key))


def checked_paths(location: Store, files: Sequence[str], manifest: Any, verified: set[str] | None = None) -> list[str]:
    """pyarrow paths (``bucket/prefix/<file>``) of listed files, each fetched once and checked."""
    out = []
    for f in files:
        if verified is None or f not in verified:
            check_key(location, f, manifest.checksum(f))
            if verified is not None:
                verified.add(f)
        out.append(location.arrow_path(f))
    return out


def chunk_rows(location: Store, seg: Segment, default: int = 512) -> int:
    """Rows per stored chunk of a segment, from its checked ``zarr.json`` (``default`` for a ``tensors``-layout
    segment, whose tensors are chunked each on its own).

    The chunk count alone does not give it: 1,440 rows in three chunks are chunks of 512, not 480.
    """
    if seg.parts:
        return default
    import json

    key = f"{seg.path}/zarr.json"
    try:
        data = location.read(key)
    except FileNotFoundError:
        raise IntegrityError(f"weight segment {location.uri(seg.path)!r} is missing; the snapshot lists it") from None
    check_bytes(data, seg.meta_digest, location.uri(key))
    try:
        return int(json.loads(data)["chunk_grid"]["configuration"]["chunk_shape"][0])
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise IntegrityError(f"{location.uri(key)!r} records no chunk shape ({exc}); run `weightlake verify`") from exc


def read_block(location: Store, seg: Segment, start: int, stop: int) -> np.ndarray:
    """Rows ``start .. stop-1`` of a segment, checked, from either kind of store (a Dask task's body)."""
    index = np.arange(start, stop, dtype=np.int64)
    if location.is_local:
        from pathlib import Path

        from weightlake.storage.tensors import read_rows as read_local

        return read_local(Path(location.uri(seg.path)), seg.rows, seg.cols, index,
                          digests=seg.chunk_digests, meta_digest=seg.meta_digest, parts=seg.parts)
    return read_rows(location, seg, index)


def read_part(location: Store, key: str, digest: str | None, partition_by: Sequence[str]) -> Any:
    """One listed Parquet file as a pandas frame, checked, with its Hive partition columns (a Dask task)."""
    import io

    import polars as pl

    try:
        data = location.read(key)
    except FileNotFoundError:
        raise IntegrityError(f"{location.uri(key)!r} is missing; the snapshot lists it (run `weightlake verify`)") \
            from None
    check_bytes(data, digest, location.uri(key))
    frame = pl.read_parquet(io.BytesIO(data))
    parts = dict(p.split("=", 1) for p in key.split("/")[:-1] if "=" in p)
    frame = frame.with_columns(**{c: pl.lit(parts[c], dtype=pl.String) for c in partition_by if c in parts})
    return frame.to_pandas()


def rows_by_id(location: Store, segments: Sequence[Segment], ids: np.ndarray) -> np.ndarray:
    """Rows of model ``ids`` (any order) from a zoo's segments, reading and checking only the chunks they touch."""
    from weightlake.errors import NoSuchModelError

    ids = np.asarray(ids, dtype=np.int64)
    cols = segments[0].cols if segments else 0
    out = np.empty((ids.size, cols), dtype=np.float32)
    found = np.zeros(ids.size, dtype=bool)
    for seg in segments:
        mask = (ids >= seg.first_id) & (ids < seg.first_id + seg.rows)
        if mask.any():
            out[mask] = _segment_rows(location, seg, ids[mask] - seg.first_id)
            found |= mask
    if not found.all():
        raise NoSuchModelError(f"no model with id {int(ids[~found][0])} in the zoo's segments")
    return out


def _segment_rows(location: Store, seg: Segment, index: np.ndarray) -> np.ndarray:
    if location.is_local:
        from pathlib import Path

        from weightlake.storage.tensors import read_rows as read_local

        return read_local(Path(location.uri(seg.path)), seg.rows, seg.cols, index,
                          digests=seg.chunk_digests, meta_digest=seg.meta_digest, parts=seg.parts)
    return read_rows(location, seg, index)


class ArrayFiles:
    """The files of one table-owned array directory (materialised batches, prediction vectors), in any store.

    Readers address files by their path inside the array (``x/c/0/0/0/0``); a local lake
    reads them from disk (``numpy.fromfile``), an object store fetches the objects.  Both
    hand back writable bytes, so tensors made from them need no copy.
    """

    def __init__(self, location: Store, rel: str) -> None:
        self.location, self.rel = location, rel.rstrip("/")

    def __repr__(self) -> str:
        return f"ArrayFiles({self.location.uri(self.rel)!r})"

    def name(self, sub: str) -> str:
        """Where ``sub`` lives, for messages: a path or URL."""
        return self.location.uri(f"{self.rel}/{sub}")

    def read(self, sub: str) -> np.ndarray:
        """The file's bytes as ``uint8``; raises :class:`FileNotFoundError` if it does not exist."""
        if self.location.is_local:
            return np.fromfile(self.name(sub), dtype=np.uint8)
        return np.frombuffer(bytearray(self.location.read(f"{self.rel}/{sub}")), dtype=np.uint8)

    def check(self, sub: str, digest: str | None) -> None:
        """Fetch ``sub`` and check it against ``digest``; a missing file is an :class:`IntegrityError`."""
        try:
            data = self.read(sub)
        except FileNotFoundError:
            raise IntegrityError(f"{self.name(sub)!r} is missing; the snapshot lists it "
                                 "(run `weightlake verify`)") from None
        check_bytes(data, digest, self.name(sub))

    def exists(self, sub: str) -> bool:
        return self.location.exists(f"{self.rel}/{sub}")

    def text(self, sub: str) -> str:
        return self.read(sub).tobytes().decode()

    def group(self) -> Any:
        """The array directory as a read-only zarr group (or array)."""
        import zarr

        if self.location.is_local:
            return zarr.open(store=self.location.uri(self.rel), mode="r")
        return zarr.open(store=self.location.zarr_store(), path=self.rel, mode="r")

    def shape(self) -> tuple[int, ...]:
        """Shape of the array stored here (from its ``zarr.json``)."""
        import json

        return tuple(int(n) for n in json.loads(self.text("zarr.json"))["shape"])


def read_array_rows(location: Store, rel: str, index: np.ndarray, *, digests: Sequence[str] | None = None,
                    meta_digest: str | None = None) -> np.ndarray:
    """Selected rows of a table-owned ``float32 [rows, cols]`` array written as a weight segment
    (prediction vectors), checked, from either kind of store."""
    rows, cols = ArrayFiles(location, rel).shape()
    return _segment_rows(location, Segment(rel, 0, rows, cols, tuple(digests) if digests else None, meta_digest),
                         np.asarray(index, dtype=np.int64))


def iter_blocks(location: Store, segments: Sequence[Segment], step: int) -> Any:
    """``(ids, float32 [<= step, P])`` blocks of a zoo in model-id order, read from the store chunk range by chunk
    range (each range's chunks fetched concurrently and checked), running across segment boundaries."""
    def open_segment(seg: Segment) -> Any:
        def read(start: int, stop: int, out: np.ndarray) -> None:
            out[:] = read_rows(location, seg, np.arange(start, stop, dtype=np.int64))
        return read

    return coalesce_blocks(segments, step, open_segment)
