"""Per-tensor weight segments: one Zarr array per state_dict tensor, so one layer reads alone.

A segment in the ``tensors`` layout is a Zarr group ``seg-<commit>.zarr/`` holding one
array ``t<i>/`` of ``float32 [rows, size_i]`` per tensor of the architecture (in state
vector order), each chunked along rows only: a chunk is ``chunk_rows`` whole rows of that
one tensor (about :data:`PART_CHUNK_BYTES`, at least one row, at most 512 rows, and no more
rows than the writer was told to expect; a tensor whose rows all fit one chunk gets a chunk of
exactly that many rows, so a small segment is never padded).
Chunk boundaries therefore coincide with tensor boundaries: reading one tensor of ``n``
models reads that tensor's chunks and nothing else (``lake.layer``), and one model's
state vector needs one chunk per tensor at a time, never the zoo's rows.

The chunk files are written here directly as raw little-endian float32 bytes (the ``bytes``
codec: the Zarr v3 spec then defines the file as the chunk's array, the last one padded),
so zarr opens every array and the readers copy files straight into place.  Each chunk's
XXH3 digest (of the bytes handed to the file) goes into the manifest, as for row segments,
and every chunk is checked as it is read.

Round-trip laws: ``PartsReader(...).read(0, rows) == rows written`` bitwise, and
``read_columns(index, lo, hi) == read_rows(index)[:, lo:hi]``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from weightlake.errors import IntegrityError
from weightlake.storage.checksums import check_bytes, check_file, digest_bytes, digest_file
from weightlake.storage.mapped import zoo_rows
from weightlake.storage.snapshot import SegmentPart

PART_CHUNK_BYTES = 8 << 20
"""Target bytes of one chunk of one tensor (a tensor row larger than this is one row per chunk)."""
MAX_PART_ROWS = 512
WIDE_ROW_PARAMS = 32768
"""Models wider than this are stored in the ``tensors`` layout by default: a 512-row chunk of
them would pass 64 MiB, so row chunks shrink anyway, and one-layer reads of whole rows would
read ``P / layer size`` times the layer (measured in ``benchmarks/bench_layer_layout.py``)."""
LAYOUTS = ("rows", "tensors")


def choose_layout(cols: int, layout: str | None = None) -> str:
    """``layout`` if given, else ``tensors`` for rows wider than :data:`WIDE_ROW_PARAMS`, else ``rows``."""
    if layout is not None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown weight layout {layout!r}; expected one of {LAYOUTS}")
        return layout
    return "tensors" if cols > WIDE_ROW_PARAMS else "rows"


def part_chunk_rows(size: int, rows_hint: int | None = None) -> int:
    rows = max(1, min(MAX_PART_ROWS, PART_CHUNK_BYTES // max(1, 4 * int(size))))
    return max(1, min(rows, int(rows_hint))) if rows_hint else rows


class PartsWriter:
    """Append ``[n, P]`` rows to a new ``tensors``-layout segment; each tensor is buffered into whole chunks.

    The same interface as :class:`~weightlake.storage.tensors.SegmentWriter` (``append``,
    ``close``, ``rows``, ``meta_digest``), plus :attr:`parts` after :meth:`close`.
    Memory: one chunk buffer per tensor (at most about ``P x 4`` bytes plus
    :data:`PART_CHUNK_BYTES` per tensor).
    """

    layout = "tensors"
    chunk_digests = None

    def __init__(self, path: Path, cols: int, spans: Sequence[tuple[int, int]], *, rows_hint: int | None = None) -> None:
        import zarr

        if path.exists():
            raise IntegrityError(f"refusing to overwrite existing segment {str(path)!r}")
        if not spans or spans[0][0] != 0 or sum(s for _, s in spans) != cols or any(
                a[0] + a[1] != b[0] for a, b in zip(spans, spans[1:], strict=False)):
            raise IntegrityError(f"tensor spans must tile [0, {cols}) in order")
        self.path, self.cols, self.spans = path, cols, [(int(a), int(s)) for a, s in spans]
        self._group = zarr.create_group(store=str(path))
        self._arrays, self._buffers, self._digests = [], [], []
        for i, (_, size) in enumerate(self.spans):
            step = part_chunk_rows(size, rows_hint)
            self._arrays.append(self._new_array(i, step))
            self._buffers.append(np.zeros((step, size), dtype="<f4"))
            self._digests.append([])
        self._fill = 0  # rows buffered (the same for every tensor)
        self.rows = 0
        self.parts: tuple[SegmentPart, ...] = ()
        self.meta_digest: str | None = None

    def _new_array(self, i: int, chunk_rows: int) -> Any:
        return self._group.create_array(
            f"t{i:03d}", shape=(0, self.spans[i][1]), chunks=(chunk_rows, self.spans[i][1]), dtype="float32",
            compressors=None, fill_value=0.0, dimension_names=("model", "param"),
            config={"write_empty_chunks": True}, overwrite=True)

    def append(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != self.cols:
            raise IntegrityError(f"segment rows must be [n, {self.cols}], got {block.shape}")
        for i, (start, size) in enumerate(self.spans):  # tensors fill and flush their chunks independently
            self._append_part(i, block[:, start:start + size])
        self.rows += len(block)

    def _append_part(self, i: int, values: np.ndarray) -> None:
        buffer = self._buffers[i]
        step = len(buffer)
        done = len(self._digests[i]) * step
        fill = self.rows - done  # rows of tensor i already in its buffer
        at = 0
        while at < len(values):
            take = min(step - fill, len(values) - at)
            buffer[fill:fill + take] = values[at:at + take]
            fill, at = fill + take, at + take
            if fill == step:
                self._write_chunk(i, buffer)
                fill = 0

    def _write_chunk(self, i: int, buffer: np.ndarray) -> None:
        array = self._arrays[i]
        c = len(self._digests[i])
        key = _chunk_key(c)
        if c == 0 and array.metadata.encode_chunk_key((0, 0)) != key:
            raise IntegrityError(f"unexpected Zarr chunk key {array.metadata.encode_chunk_key((0, 0))!r}")
        target = self.path / f"t{i:03d}" / key
        target.parent.mkdir(parents=True, exist_ok=True)
        data = np.ascontiguousarray(buffer).reshape(-1).view(np.uint8)
        with open(target, "wb") as fh:
            fh.write(data)
        self._digests[i].append(digest_bytes(data))

    def close(self, attributes: dict[str, Any] | None = None) -> int:
        """Write each tensor's padded last chunk, fix the arrays' shapes, checksum the metadata."""
        for i, buffer in enumerate(self._buffers):
            step = len(buffer)
            fill = self.rows - len(self._digests[i]) * step
            if fill and not self._digests[i]:  # the whole tensor fits one chunk: make the chunk that size, unpadded
                self._arrays[i] = self._new_array(i, fill)
                self._buffers[i] = buffer = buffer[:fill]
            if fill:
                buffer[fill:] = 0.0
                self._write_chunk(i, buffer)
            self._arrays[i].resize((self.rows, self.spans[i][1]))
        if attributes is not None:
            attrs = {**attributes, "rows": self.rows, "layout": self.layout}
            if "first_model_id" in attrs:
                attrs["stop_model_id"] = int(attrs["first_model_id"]) + self.rows
            self._group.attrs.update({"weightlake": attrs})
        self.parts = tuple(
            SegmentPart(f"t{i:03d}", start, size, len(self._buffers[i]), tuple(self._digests[i]),
                        digest_file(self.path / f"t{i:03d}" / "zarr.json"))
            for i, (start, size) in enumerate(self.spans))
        self.meta_digest = digest_file(self.path / "zarr.json")
        self._buffers = []
        return self.rows


class PartsReader:
    """Row and column reads of a ``tensors``-layout segment; only the tensors asked for are read.

    Every chunk read is checked against its recorded digest; a part's ``zarr.json`` is checked
    the first time the part is touched.  ``location`` (an object store) reads the same files as
    objects: ``path`` is then the segment's key below the lake root (:func:`parts_reader`).
    """

    def __init__(self, path: Path | str, rows: int, cols: int, parts: Sequence[Any], *,
                 meta_digest: str | None = None, location: Any = None) -> None:
        self.location = location if location is not None and not location.is_local else None
        self.path = str(path).rstrip("/") if self.location is not None else Path(path)
        self.rows, self.cols, self.parts = rows, cols, tuple(parts)
        self._check_meta("zarr.json", meta_digest)
        if sum(p.size for p in self.parts) != cols:
            raise IntegrityError(f"weight segment {str(path)!r}: its tensors cover {sum(p.size for p in self.parts)} "
                                 f"columns, the snapshot says {cols}; run `weightlake verify`")
        for p in self.parts:
            if len(p.chunk_digests) != -(-rows // p.chunk_rows):
                raise IntegrityError(f"weight segment {str(path)!r}: tensor {p.name} records {len(p.chunk_digests)} "
                                     f"chunk checksums for {rows} rows of {p.chunk_rows}; run `weightlake verify`")
        self._starts = np.array([p.start for p in self.parts], dtype=np.int64)
        self._checked: set[str] = set()
        self._lock = threading.Lock()

    def read(self, start: int, stop: int, out: np.ndarray | None = None, threads: int | None = None) -> np.ndarray:
        """Rows ``start:stop`` (every tensor) into ``out`` or a new array."""
        if not 0 <= start <= stop <= self.rows:
            raise IntegrityError(f"rows {start}:{stop} out of range for segment {str(self.path)!r} of {self.rows} rows")
        return self.read_columns(np.arange(start, stop, dtype=np.int64), 0, self.cols, out=out, threads=threads)

    def read_rows(self, index: np.ndarray) -> np.ndarray:
        return self.read_columns(index, 0, self.cols)

    def read_columns(self, index: np.ndarray, lo: int, hi: int, *, out: np.ndarray | None = None,
                     threads: int | None = None) -> np.ndarray:
        """Rows ``index`` (any order, repeats allowed) of flat columns ``[lo, hi)``: ``float32 [n, hi - lo]``.

        Reads the chunks of the tensors overlapping ``[lo, hi)`` that hold a wanted row, nothing else,
        with ``threads`` readers (default 2 on disk, 8 concurrent requests on an object store).
        """
        if threads is None:
            threads = 8 if self.location is not None else 2
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= self.rows):
            raise IntegrityError(f"row index out of range for segment {str(self.path)!r} of {self.rows} rows")
        if not 0 <= lo <= hi <= self.cols:
            raise IntegrityError(f"columns {lo}:{hi} out of range for segment {str(self.path)!r} of {self.cols}")
        if out is None:
            out = np.empty((index.size, hi - lo), dtype=np.float32)
        if not index.size or hi == lo:
            return out
        tasks = [(p, c, rows) for p in self._overlapping(lo, hi) for c, rows in _by_chunk(index, p.chunk_rows)]

        def run(task: tuple[Any, int, np.ndarray]) -> None:
            self._read_part_chunk(*task, index, lo, hi, out)

        if len(tasks) < 4 or threads < 2:
            for task in tasks:
                run(task)
        else:  # file reads and checksums release the GIL
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(run, tasks))
        return out

    def _overlapping(self, lo: int, hi: int) -> Iterable[Any]:
        first = max(0, int(np.searchsorted(self._starts, lo, side="right")) - 1)
        for p in self.parts[first:]:
            if p.start >= hi:
                break
            if p.start + p.size > lo and p.size:
                yield p

    def _read_part_chunk(self, p: Any, c: int, rows: np.ndarray, index: np.ndarray, lo: int, hi: int,
                         out: np.ndarray) -> None:
        self._check_part(p)
        step = p.chunk_rows
        a, b = max(lo, p.start), min(hi, p.start + p.size)
        chunk = f"{p.name}/{_chunk_key(c)}"
        local = index[rows] - c * step
        span = np.arange(step)
        whole = (a, b) == (p.start, p.start + p.size) == (lo, hi) and len(rows) == step \
            and (local == span).all() and (rows == rows[0] + span).all()
        if whole:  # the chunk is exactly out[rows]: read it straight into place
            self._read_chunk(chunk, out[rows[0]:rows[0] + step], p.chunk_digests[c])
            return
        scratch = np.empty((step, p.size), dtype=np.float32)
        self._read_chunk(chunk, scratch, p.chunk_digests[c])
        out[rows, a - lo:b - lo] = scratch[local, a - p.start:b - p.start]

    def _check_part(self, p: Any) -> None:
        if p.name in self._checked:
            return
        self._check_meta(f"{p.name}/zarr.json", p.meta_digest)
        with self._lock:
            self._checked.add(p.name)

    def _check_meta(self, sub: str, digest: str | None) -> None:
        """Check one ``zarr.json`` of the segment (a file, or an object of the store)."""
        if self.location is None:
            check_file(self.path / sub, digest)
            return
        from weightlake.storage.remote import check_key

        check_key(self.location, f"{self.path}/{sub}", digest)

    def _read_chunk(self, sub: str, dest: np.ndarray, digest: str | None) -> None:
        """Read one whole raw chunk into ``dest`` (exactly its size), checking its size and digest."""
        from weightlake.storage.tensors import _count, _read_chunk_into

        if self.location is None:
            _read_chunk_into(self.path / sub, dest, digest)
            return
        key = f"{self.path}/{sub}"
        where = self.location.uri(key)
        try:
            data = self.location.read(key)
        except FileNotFoundError:
            raise IntegrityError(f"chunk {where!r} is missing; the snapshot lists it (run `weightlake verify`)") \
                from None
        _count(len(data))
        if len(data) != dest.nbytes:
            raise IntegrityError(f"chunk {where!r} has the wrong size ({len(data)} bytes, expected {dest.nbytes}); "
                                 "run `weightlake verify`")
        check_bytes(data, digest, where)
        dest.reshape(-1)[:] = np.frombuffer(data, dtype="<f4")


def parts_reader(location: Any, seg: Any) -> PartsReader:
    """The :class:`PartsReader` of a ``tensors``-layout segment in any store (local disk or object store)."""
    path = Path(location.uri(seg.path)) if location.is_local else seg.path
    return PartsReader(path, seg.rows, seg.cols, seg.parts, meta_digest=seg.meta_digest, location=location)


def _chunk_key(c: int) -> str:
    """The file of chunk ``c`` of a ``[rows, size]`` array (Zarr v3 default chunk key encoding)."""
    return f"c/{c}/0"


def _by_chunk(index: np.ndarray, step: int) -> Iterable[tuple[int, np.ndarray]]:
    """``(chunk, positions in index)`` for each chunk the rows of ``index`` fall in (positions ascending)."""
    chunk_of = index // step
    order = np.argsort(chunk_of, kind="stable")
    sorted_chunks = chunk_of[order]
    cuts = np.flatnonzero(np.diff(sorted_chunks)) + 1
    for group in np.split(order, cuts):
        yield int(chunk_of[group[0]]), group


def layer_bytes(parts: Sequence[Any], lo: int, hi: int, rows: int) -> int:
    """Bytes a read of columns ``[lo, hi)`` of all ``rows`` reads from a ``tensors`` segment (chunks padded)."""
    total = 0
    for p in parts:
        if p.start < hi and p.start + p.size > lo:
            total += len(p.chunk_digests) * p.chunk_rows * p.size * 4
    return total


class PartRows:
    """Random access to a zoo of ``tensors``-layout segments over the memory budget, on disk or an object store.

    The row source (:meth:`weightlake.lake.Lake.row_source`) of a wide-model zoo that does not
    fit: ``take(pos)`` reads, for every tensor, the chunks that hold a wanted row (each checked
    against its digest as it is read, as every read of this layout is) and copies the rows
    out; nothing is kept between gathers, so the process holds the output and one chunk per
    reader thread.  Cost: a chunk is about :data:`PART_CHUNK_BYTES` of one tensor, so a gather
    of ``n`` rows from different chunks reads up to ``n`` chunks per tensor (for a ResNet-18
    zoo, whose large tensors are one or a few rows per chunk, close to the rows themselves;
    for small tensors many rows' worth per wanted row).

    Round-trip law: ``PartRows(...).take(pos) == read_all(...)[pos]`` bitwise, for any
    positions (any order, repeats allowed).
    """

    resident = False

    def __init__(self, location: Any, segments: Sequence[Any]) -> None:
        self.location, self.segments = location, tuple(segments)
        self.ids, self.cols, self.starts = zoo_rows(self.segments)
        self._readers: list[PartsReader] | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.ids)

    def __getstate__(self) -> dict[str, Any]:  # a worker process opens (and checks) afresh
        return {"location": self.location, "segments": self.segments}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["location"], state["segments"])  # type: ignore[misc]

    def _segment_readers(self) -> list[PartsReader]:
        if self._readers is None:
            with self._lock:
                if self._readers is None:
                    self._readers = [parts_reader(self.location, s) for s in self.segments]
        return self._readers

    def take(self, pos: np.ndarray) -> np.ndarray:
        """Rows at zoo positions ``pos`` (int64, any order, repeats allowed) as a new ``float32 [n, P]``."""
        return self.take_columns(pos, 0, self.cols)

    def take_columns(self, pos: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Flat columns ``[lo, hi)`` of the rows at ``pos``: reads only the tensors overlapping them."""
        pos = np.asarray(pos, dtype=np.int64).reshape(-1)
        if pos.size and (pos.min() < 0 or pos.max() >= len(self.ids)):
            raise IndexError(f"row positions out of range for a zoo of {len(self.ids)} models")
        out = np.empty((pos.size, hi - lo), dtype=np.float32)
        if not pos.size:
            return out
        readers = self._segment_readers()
        seg = np.searchsorted(self.starts, pos, side="right") - 1
        for s in np.unique(seg):
            where = np.flatnonzero(seg == s)
            out[where] = readers[s].read_columns(pos[where] - self.starts[s], lo, hi)
        return out
