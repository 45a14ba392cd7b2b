"""Weight segments: one Zarr v3 array ``float32 [rows, P]`` per commit that adds models.

Chunks are ``chunk_rows`` whole rows (default 512 rows, about 5 MB for the zoo CNN), so a
whole-array scan reads large sequential chunks and a contiguous row block touches one or
two chunks.  Chunks are stored uncompressed by default: trained weights barely compress
(measured in ``benchmarks/bench_storage.py``) and decompression slows reads 2-4x.

Every chunk file gets a checksum (the digests go into the manifest) that is checked whenever
it is read; a missing or short chunk file is an error, never a row of fill values. An
uncompressed segment's chunk files are written by :class:`SegmentWriter` itself, as the
Zarr v3 spec defines them for the ``bytes`` codec (the chunk's raw float32 bytes), and each
digest is taken of the exact bytes written to the file; a compressed segment is written by
zarr and its chunk files are read back for their digests at close.

Round-trip laws: ``read_rows(write_segment(x)) == x`` bitwise, and the blocks of
:func:`iter_blocks` concatenate to ``x``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from weightlake.errors import IntegrityError
from weightlake.storage.checksums import check_bytes, check_file, digest_bytes, digest_file

DEFAULT_CHUNK_ROWS = 512
MAX_CHUNK_BYTES = 2**26
"""A chunk holds at most this many bytes (64 MiB): ``chunk_rows`` is lowered for wide rows
(one ResNet-18 row is 47 MB, so its chunks hold one row), so writing never buffers 512 big models."""
CODECS = ("none", "zstd", "blosc")
DIRECT_ALIGN = 4096
"""Address and size alignment of a direct (``O_DIRECT``) chunk write."""


def direct_writes_wanted() -> bool:
    """Whether uncompressed chunk files are written with ``O_DIRECT`` (the default where the OS has it).

    ``WEIGHTLAKE_DIRECT_WRITES=0`` writes them through the page cache instead.
    """
    return bool(getattr(os, "O_DIRECT", 0)) and os.environ.get("WEIGHTLAKE_DIRECT_WRITES", "1") != "0"


def aligned_empty(shape: tuple[int, ...], dtype: Any = np.float32, align: int = DIRECT_ALIGN) -> np.ndarray:
    """An uninitialised C-ordered array whose data starts at a multiple of ``align`` bytes."""
    itemsize = np.dtype(dtype).itemsize
    nbytes = int(np.prod(shape, dtype=np.int64)) * itemsize
    raw = np.empty(nbytes + align, dtype=np.uint8)
    offset = -raw.ctypes.data % align
    return raw[offset:offset + nbytes].view(dtype).reshape(shape)


class ReadCount:
    """Bytes and chunk files read from raw weight chunks (both layouts) since :func:`count_reads` began."""

    def __init__(self) -> None:
        self.bytes = 0
        self.chunks = 0


_COUNTERS: list[ReadCount] = []
_COUNT_LOCK = threading.Lock()


@contextlib.contextmanager
def count_reads() -> Iterator[ReadCount]:
    """Count the chunk bytes this process reads inside the block (every raw chunk read goes through
    :func:`_read_chunk_into`); used to check that a layer read touches only its tensor's chunks."""
    counter = ReadCount()
    with _COUNT_LOCK:
        _COUNTERS.append(counter)
    try:
        yield counter
    finally:
        with _COUNT_LOCK:
            _COUNTERS.remove(counter)


def _count(nbytes: int) -> None:
    if _COUNTERS:
        with _COUNT_LOCK:
            for counter in _COUNTERS:
                counter.bytes += nbytes
                counter.chunks += 1


def _compressors(codec: str) -> Any:
    if codec == "none":
        return None
    if codec == "zstd":
        from zarr.codecs import ZstdCodec

        return [ZstdCodec(level=3)]
    if codec == "blosc":
        from zarr.codecs import BloscCodec

        return [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]
    raise ValueError(f"unknown codec {codec!r}; expected one of {CODECS}")


class SegmentWriter:
    """Append rows to a new Zarr array; rows are buffered into whole chunks before writing.

    Not thread-safe.  Call :meth:`close` to flush the tail and fix the final shape; the
    checksums of the written chunk files and of ``zarr.json`` are then in
    :attr:`chunk_digests` and :attr:`meta_digest`.

    Uncompressed (``codec="none"``), each chunk file is written here, not through zarr: the
    file is the chunk's C-order float32 bytes (the last chunk padded with the fill value 0.0,
    as zarr pads it) and its digest is of the very buffer written, so nothing is read back
    at close.  zarr's own write path (an event loop, a metadata rewrite per chunk for the
    growing shape, a temporary file per chunk) cost 0.8 s of CPU for the 360 MB zoo, the
    digest read-back a serial 0.03-0.2 s more.  ``zarr.json`` is the document zarr writes for
    such an array (at open, and at close with the final shape and attributes), so zarr itself
    opens the segment.

    A chunk whose size is a multiple of 4 KiB is written with ``O_DIRECT`` (from a 4 KiB-aligned
    buffer; a block that is not aligned is first copied into the segment's own): a buffered
    write of the zoo's 360 MB cost 0.1-1.0 s of system CPU depending on how much page cache
    the kernel had to reclaim for it, a direct one 0.045 s (``benchmarks/bench_ingest.py``).
    The new segment is then not in the page cache (its first read comes from disk), and the
    ingest does not evict the pages other work is using.  A file system that refuses
    ``O_DIRECT`` (``EINVAL``) gets buffered writes; ``WEIGHTLAKE_DIRECT_WRITES=0`` asks for them.
    """

    layout = "rows"
    parts: tuple[Any, ...] = ()

    def __init__(self, path: Path, cols: int, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, codec: str = "none") -> None:
        if path.exists():
            raise IntegrityError(f"refusing to overwrite existing segment {str(path)!r}")
        chunk_rows = chunk_rows_for(cols, chunk_rows)
        self.path, self.cols, self.chunk_rows = path, cols, chunk_rows
        self._raw = codec == "none"
        self._array: Any = None
        if self._raw:
            _write_raw_metadata(path, 0, cols, chunk_rows, {})
        else:
            import zarr

            # every chunk is written, even one equal to the fill value: a missing chunk file is then always an error
            self._array = zarr.create_array(
                store=str(path), shape=(0, cols), chunks=(chunk_rows, cols), dtype="float32",
                compressors=_compressors(codec), fill_value=0.0, dimension_names=("model", "param"),
                config={"write_empty_chunks": True},
            )
        self._buffer = aligned_empty((chunk_rows, cols))
        self._direct = self._raw and direct_writes_wanted() and self._buffer.nbytes % DIRECT_ALIGN == 0
        self._fill = 0
        self.rows = 0
        self._digests: list[str] = []
        self.chunk_digests: tuple[str, ...] = ()
        self.meta_digest: str | None = None

    def append(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != self.cols:
            raise IntegrityError(f"segment rows must be [n, {self.cols}], got {block.shape}")
        start, step = 0, self.chunk_rows
        while start < len(block):
            if self._raw and not self._fill and len(block) - start >= step and block.flags.c_contiguous:
                self._write_chunk(block[start:start + step])  # whole chunks straight from the block
                start += step
                continue
            take = min(step - self._fill, len(block) - start)
            self._buffer[self._fill:self._fill + take] = block[start:start + take]
            self._fill += take
            start += take
            if self._fill == step:
                self._flush()

    def _flush(self) -> None:
        if not self._fill:
            return
        if self._raw:
            self._buffer[self._fill:] = 0.0  # the padding of a short last chunk, as zarr writes it
            fill, self._fill = self._fill, 0
            self._write_chunk(self._buffer, fill)
            return
        begin = self.rows
        self._array.resize((begin + self._fill, self.cols))
        self._array[begin:begin + self._fill] = self._buffer[: self._fill]
        self.rows += self._fill
        self._fill = 0

    def _write_chunk(self, rows: np.ndarray, n: int | None = None) -> None:
        """Write one whole chunk's bytes as the next chunk file (never over an existing file) and
        record the digest of exactly those bytes; ``n`` rows of it are the array's."""
        chunk = self.path / "c" / str(len(self._digests)) / "0"  # the default chunk key of chunk (i, 0)
        chunk.parent.mkdir(parents=True, exist_ok=True)
        if self._direct and rows.ctypes.data % DIRECT_ALIGN:
            self._buffer[:] = rows  # the buffer is empty whenever a whole chunk comes straight from a block
            rows = self._buffer
        data = memoryview(rows.reshape(-1)).cast("B")  # type: ignore[arg-type]  # ndarray has the buffer protocol
        if not (self._direct and self._write_direct(chunk, data)):
            _write_new_file(chunk, data, 0)
        self._digests.append(digest_bytes(data))
        self.rows += len(rows) if n is None else n

    def _write_direct(self, chunk: Path, data: memoryview) -> bool:
        """Write ``data`` to the new file ``chunk`` with ``O_DIRECT``; False (no file left) where the
        file system refuses it, and every later chunk of this segment is written buffered."""
        try:
            _write_new_file(chunk, data, os.O_DIRECT)
            return True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            chunk.unlink(missing_ok=True)
            self._direct = False
            return False

    def close(self, attributes: dict[str, Any] | None = None) -> int:
        """Flush, record ``attributes`` under the array's ``weightlake`` attribute (with the row
        count, and ``stop_model_id`` when ``first_model_id`` is given), and take the checksums:
        of each chunk's bytes as written (uncompressed), or of the files on disk, read back
        (compressed), and of ``zarr.json``."""
        self._flush()
        attrs: dict[str, Any] = {}
        if attributes is not None:
            attrs = {**attributes, "rows": self.rows}
            if "first_model_id" in attrs:
                attrs["stop_model_id"] = int(attrs["first_model_id"]) + self.rows  # exclusive
        if self._raw:
            _write_raw_metadata(self.path, self.rows, self.cols, self.chunk_rows,
                                {"weightlake": attrs} if attributes is not None else {})
            self.chunk_digests = tuple(self._digests)
        else:
            if attributes is not None:
                self._array.attrs.update({"weightlake": attrs})
            n_chunks = -(-self.rows // self.chunk_rows)
            self.chunk_digests = tuple(digest_file(_chunk_file(self.path, self._array, i)) for i in range(n_chunks))
        self.meta_digest = digest_file(self.path / "zarr.json")
        return self.rows


def _write_new_file(path: Path, data: memoryview, flags: int) -> None:
    """Create ``path`` (it must not exist) and write all of ``data`` to it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | flags, 0o644)
    try:
        written = 0
        while written < data.nbytes:  # a raw write may be short
            written += os.write(fd, data[written:])
    finally:
        os.close(fd)


def _write_raw_metadata(path: Path, rows: int, cols: int, chunk_rows: int, attributes: dict[str, Any]) -> None:
    """Write the ``zarr.json`` of an uncompressed ``float32 [rows, cols]`` segment, as zarr writes it.

    The Zarr v3 array metadata of a regular grid of whole-row chunks with the ``bytes`` codec
    (little-endian), fill value 0.0 and default ``c/<i>/0`` chunk keys: what
    ``zarr.create_array(..., compressors=None)`` writes (``tests/storage/test_integrity.py``
    compares them), written here so an ingest need not import zarr (0.16 s of CPU). Written to
    a temporary name and renamed, so a reader never sees half a document.
    """
    import json
    import os

    meta = {
        "shape": [rows, cols], "data_type": "float32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [chunk_rows, cols]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0.0, "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "attributes": attributes, "dimension_names": ["model", "param"],
        "zarr_format": 3, "node_type": "array", "storage_transformers": [],
    }
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f"zarr.json.{os.getpid()}.partial"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, path / "zarr.json")


def chunk_rows_for(cols: int, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> int:
    """``chunk_rows`` lowered so a chunk of ``cols`` float32 values stays within :data:`MAX_CHUNK_BYTES`."""
    return max(1, min(int(chunk_rows), MAX_CHUNK_BYTES // max(1, 4 * int(cols))))


def write_segment(path: Path, rows: np.ndarray | Iterable[np.ndarray], cols: int, **kw: Any) -> int:
    """Write a whole array (or an iterable of row blocks) as a new segment; returns the row count."""
    writer = SegmentWriter(path, cols, **kw)
    blocks = [rows] if isinstance(rows, np.ndarray) else rows
    for block in blocks:
        writer.append(block)
    return writer.close()


def open_segment(path: Path, rows: int, cols: int, *, meta_digest: str | None = None) -> Any:
    """Open a segment read-only and check its ``zarr.json`` checksum and shape against the manifest."""
    import zarr

    if meta_digest is not None:
        check_file(path / "zarr.json", meta_digest)
    try:
        array = zarr.open_array(store=str(path), mode="r")
    except (FileNotFoundError, ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"weight segment {str(path)!r} is missing or unreadable: {exc}") from exc
    if tuple(array.shape) != (rows, cols):
        raise IntegrityError(f"weight segment {str(path)!r} has shape {tuple(array.shape)}, the snapshot "
                             f"says ({rows}, {cols}); run `weightlake verify`")
    return array


def read_all(path: Path, rows: int, cols: int, out: np.ndarray | None = None, *,
             digests: Sequence[str] | None = None, meta_digest: str | None = None,
             parts: Sequence[Any] = ()) -> np.ndarray:
    """Decode a whole segment into ``out`` (or a new array), checking every chunk against ``digests``
    (a ``tensors``-layout segment: its ``parts``, see :mod:`weightlake.storage.parts`)."""
    if parts:
        from weightlake.storage.parts import PartsReader

        return PartsReader(path, rows, cols, parts, meta_digest=meta_digest).read(0, rows, out)
    array = open_segment(path, rows, cols, meta_digest=meta_digest)
    if out is None:
        out = np.empty((rows, cols), dtype=np.float32)
    _check_digest_count(path, array, digests)
    if _raw_layout(array):
        return _read_raw(path, array, out, digests)
    return _read_codec(path, array, out, range(_n_chunks(array)), digests)


def _n_chunks(array: Any) -> int:
    return -(-int(array.shape[0]) // int(array.chunks[0]))


def _check_digest_count(path: Path, array: Any, digests: Sequence[str] | None) -> None:
    if digests is not None and len(digests) != _n_chunks(array):
        raise IntegrityError(f"weight segment {str(path)!r} has {_n_chunks(array)} chunks but the snapshot "
                             f"records {len(digests)} checksums; run `weightlake verify`")


def _chunk_file(path: Path, array: Any, i: int) -> Path:
    return path / array.metadata.encode_chunk_key((i, 0))


def _raw_layout(array: Any) -> bool:
    """True when every chunk file is the chunk's raw little-endian float32 bytes in C order.

    That is the case for a regular grid of whole-row chunks whose only codec is ``bytes``
    (no compression, no sharding): the Zarr v3 spec then defines the file as the array bytes.
    """
    from zarr.codecs import BytesCodec

    codecs: tuple[Any, ...] = tuple(getattr(array.metadata, "codecs", ()))
    if len(codecs) != 1 or not isinstance(codecs[0], BytesCodec) or codecs[0].endian is None:
        return False
    return (codecs[0].endian.value == "little" and np.dtype(array.dtype) == np.float32
            and array.chunks[1] == array.shape[1])


def _read_chunk_into(chunk: Path, dest: np.ndarray, digest: str | None) -> None:
    """Read one whole raw chunk file into ``dest`` (exactly its size), checking its digest."""
    view = dest.reshape(-1).view(np.uint8)
    try:
        with open(chunk, "rb", buffering=0) as fh:
            got = fh.readinto(view)  # type: ignore[arg-type]
            extra = fh.read(1)
    except FileNotFoundError:
        raise IntegrityError(f"chunk {str(chunk)!r} is missing; the snapshot lists it (run `weightlake verify`)") \
            from None
    except OSError as exc:
        raise IntegrityError(f"chunk {str(chunk)!r} cannot be read: {exc.strerror or exc}") from exc
    _count(got or 0)
    if got != view.size or extra:
        raise IntegrityError(f"chunk {str(chunk)!r} has the wrong size ({'more than ' if extra else ''}{got} bytes, "
                             f"expected {view.size}); run `weightlake verify`")
    check_bytes(view, digest, chunk)


def _read_raw(path: Path, array: Any, out: np.ndarray, digests: Sequence[str] | None,
              threads: int = 2) -> np.ndarray:
    """Read chunk files straight into ``out`` (one copy from the page cache, no codec pipeline).

    Zarr stores the last chunk whole (padded), so it goes through a chunk-sized buffer.
    Two threads: ``readinto`` and the checksum release the GIL, and one core alone does
    not saturate memory.
    """
    from concurrent.futures import ThreadPoolExecutor

    rows, cols = array.shape
    step = array.chunks[0]

    def read(i: int) -> None:
        start = i * step
        stop = min(start + step, rows)
        digest = digests[i] if digests is not None else None
        if stop - start == step:
            _read_chunk_into(_chunk_file(path, array, i), out[start:stop], digest)
        else:
            tail = np.empty((step, cols), dtype=np.float32)
            _read_chunk_into(_chunk_file(path, array, i), tail, digest)
            out[start:stop] = tail[: stop - start]

    n_chunks = _n_chunks(array)
    if n_chunks < 4:
        for i in range(n_chunks):
            read(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(read, range(n_chunks)))
    return out


def _read_codec(path: Path, array: Any, out: np.ndarray, chunks: Iterable[int],
                digests: Sequence[str] | None) -> np.ndarray:
    """A compressed segment: check the chunk files first (missing is an error), then let zarr decode."""
    from zarr.core.buffer import default_buffer_prototype

    for i in chunks:
        check_file(_chunk_file(path, array, i), digests[i] if digests is not None else None)
    proto = default_buffer_prototype()
    array.get_basic_selection(Ellipsis, out=proto.nd_buffer.from_numpy_array(out))
    return out


def read_rows(path: Path, rows: int, cols: int, index: np.ndarray, *,
              digests: Sequence[str] | None = None, meta_digest: str | None = None,
              parts: Sequence[Any] = ()) -> np.ndarray:
    """Decode selected rows (any order, repeats allowed), checking every chunk they touch."""
    if parts:
        from weightlake.storage.parts import PartsReader

        return PartsReader(path, rows, cols, parts, meta_digest=meta_digest).read_rows(index)
    index = np.asarray(index, dtype=np.int64)
    if index.size == 0:
        return np.empty((0, cols), dtype=np.float32)
    if index.min() < 0 or index.max() >= rows:
        raise IntegrityError(f"row index out of range for segment {str(path)!r} of {rows} rows")
    if index.size == rows and (np.diff(index) == 1).all():
        return read_all(path, rows, cols, digests=digests, meta_digest=meta_digest)
    array = open_segment(path, rows, cols, meta_digest=meta_digest)
    _check_digest_count(path, array, digests)
    step = int(array.chunks[0])
    out = np.empty((index.size, cols), dtype=np.float32)
    chunk_of = index // step
    if not _raw_layout(array):
        block = _read_codec(path, array, np.empty((rows, cols), dtype=np.float32), np.unique(chunk_of), digests)
        return block[index]
    chunks = np.unique(chunk_of)
    local = threading.local()

    def gather(c: int) -> None:
        buffer = getattr(local, "buffer", None)
        if buffer is None:
            buffer = local.buffer = np.empty((step, cols), dtype=np.float32)
        _read_chunk_into(_chunk_file(path, array, c), buffer, digests[c] if digests is not None else None)
        mask = chunk_of == c
        out[mask] = buffer[index[mask] - c * step]

    if len(chunks) < 4:
        for c in chunks:
            gather(int(c))
    else:  # as in _read_raw: file reads release the GIL, two threads keep both cores busy
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(gather, (int(c) for c in chunks)))
    return out


class SegmentReader:
    """Contiguous row ranges of one segment, checked chunk by chunk; the segment is opened once.

    Reads of whole chunks go straight into the destination; a chunk only partly wanted
    (a range boundary, the padded last chunk) is read whole into a scratch buffer, so its
    checksum is still checked, and the wanted rows are copied out.

    Round-trip law: ``reader.read(a, b) == read_all(...)[a:b]`` bitwise.
    """

    def __init__(self, path: Path, rows: int, cols: int, *, digests: Sequence[str] | None = None,
                 meta_digest: str | None = None, parts: Sequence[Any] = ()) -> None:
        self.path, self.rows, self.cols, self.digests = path, rows, cols, digests
        self._parts: Any = None
        if parts:  # a tensors-layout segment: rows are gathered tensor by tensor
            from weightlake.storage.parts import PartsReader

            self._parts = PartsReader(path, rows, cols, parts, meta_digest=meta_digest)
            return
        self.array = open_segment(path, rows, cols, meta_digest=meta_digest)
        _check_digest_count(path, self.array, digests)
        self.chunk_rows = int(self.array.chunks[0])
        self.raw = _raw_layout(self.array)
        self._lock = threading.Lock()
        self._last: tuple[int, np.ndarray] | None = None

    def read(self, start: int, stop: int, out: np.ndarray | None = None, threads: int = 2) -> np.ndarray:
        """Rows ``start:stop`` into ``out`` (or a new ``float32 [stop - start, cols]`` array)."""
        if self._parts is not None:
            return self._parts.read(start, stop, out, threads=threads)
        if not 0 <= start <= stop <= self.rows:
            raise IntegrityError(f"rows {start}:{stop} out of range for segment {str(self.path)!r} of {self.rows} rows")
        if out is None:
            out = np.empty((stop - start, self.cols), dtype=np.float32)
        if stop == start:
            return out
        step = self.chunk_rows
        chunks = range(start // step, -(-stop // step))
        if not self.raw:
            for c in chunks:
                check_file(_chunk_file(self.path, self.array, c), self._digest(c))
            out[:] = self.array[start:stop]
            return out

        def read_chunk(c: int) -> None:
            lo, hi = max(start, c * step), min(stop, (c + 1) * step)
            if lo == c * step and hi - lo == step:
                _read_chunk_into(_chunk_file(self.path, self.array, c), out[lo - start:hi - start], self._digest(c))
                return
            out[lo - start:hi - start] = self._partial(c)[lo - c * step:hi - c * step]

        if len(chunks) < 4 or threads < 2:
            for c in chunks:
                read_chunk(c)
        else:  # as in _read_raw: file reads and checksums release the GIL
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(read_chunk, chunks))
        return out

    def _partial(self, c: int) -> np.ndarray:
        """Chunk ``c`` whole (checked), kept until another partial chunk is asked for: blocks
        smaller than a chunk then read each chunk once, not once per block."""
        with self._lock:
            if self._last is not None and self._last[0] == c:
                return self._last[1]
        chunk = np.empty((self.chunk_rows, self.cols), dtype=np.float32)
        _read_chunk_into(_chunk_file(self.path, self.array, c), chunk, self._digest(c))
        with self._lock:
            self._last = (c, chunk)
        return chunk

    def _digest(self, c: int) -> str | None:
        return self.digests[c] if self.digests is not None else None

    def chunk_file(self, c: int) -> Path:
        """The file of chunk ``c`` (for a raw segment, the chunk's float32 bytes: see :func:`_raw_layout`)."""
        return _chunk_file(self.path, self.array, c)

    def chunk_digest(self, c: int) -> str | None:
        """The recorded checksum of chunk ``c`` (None for a segment written before checksums)."""
        return self._digest(c)


def iter_blocks(path: Path, rows: int, cols: int, block_rows: int, *, digests: Sequence[str] | None = None,
                meta_digest: str | None = None, parts: Sequence[Any] = ()) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, float32 [n, cols])`` blocks of at most ``block_rows`` rows covering the segment in order.

    Each block is a new array (a consumer may keep it); peak memory is what the consumer keeps
    plus one block.  Every chunk is checked against ``digests`` as it is read.
    """
    reader = SegmentReader(path, rows, cols, digests=digests, meta_digest=meta_digest, parts=parts)
    step = max(1, int(block_rows))
    for start in range(0, rows, step):
        yield start, reader.read(start, min(start + step, rows))


def coalesce_blocks(segments: Sequence[Any], step: int,
                    open_segment: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(ids, float32 [<= step, P])`` blocks of a zoo in model-id order, running across segments.

    ``open_segment(seg)`` returns ``read(start, stop, out)``, which fills ``out`` with rows
    ``start:stop`` of that segment (checked as its reader checks). Only the last block may be
    short. Each yielded block is a fresh array.
    """
    if not segments:
        return
    cols = segments[0].cols
    block, ids, fill = np.empty((step, cols), dtype=np.float32), np.empty(step, dtype=np.int64), 0
    for seg in segments:
        read, at = open_segment(seg), 0
        while at < seg.rows:
            take = min(step - fill, seg.rows - at)
            read(at, at + take, block[fill:fill + take])
            ids[fill:fill + take] = np.arange(seg.first_id + at, seg.first_id + at + take)
            fill, at = fill + take, at + take
            if fill == step:
                yield ids, block
                block, ids, fill = np.empty((step, cols), dtype=np.float32), np.empty(step, dtype=np.int64), 0
    if fill:
        yield ids[:fill], block[:fill]
