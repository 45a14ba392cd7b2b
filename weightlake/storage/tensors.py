"""Weight segments: one Zarr v3 array ``float32 [rows, P]`` per commit that adds models.

Chunks are ``chunk_rows`` whole rows (default 512 rows, about 5 MB for the zoo CNN), so a
whole-array scan reads large sequential chunks and a contiguous row block touches one or
two chunks.  Chunks are stored uncompressed by default: trained weights barely compress
(measured in ``benchmarks/bench_storage.py``) and decompression slows reads 2-4x.

Round-trip law: ``read_rows(write_segment(x)) == x`` bitwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from weightlake.errors import IntegrityError

DEFAULT_CHUNK_ROWS = 512
CODECS = ("none", "zstd", "blosc")


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

    Not thread-safe.  Call :meth:`close` to flush the tail and fix the final shape.
    """

    def __init__(self, path: Path, cols: int, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, codec: str = "none") -> None:
        import zarr

        if path.exists():
            raise IntegrityError(f"refusing to overwrite existing segment {str(path)!r}")
        self.path, self.cols, self.chunk_rows = path, cols, chunk_rows
        self._array = zarr.create_array(
            store=str(path), shape=(0, cols), chunks=(chunk_rows, cols), dtype="float32",
            compressors=_compressors(codec), fill_value=0.0, dimension_names=("model", "param"),
        )
        self._buffer = np.empty((chunk_rows, cols), dtype=np.float32)
        self._fill = 0
        self.rows = 0

    def append(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != self.cols:
            raise IntegrityError(f"segment rows must be [n, {self.cols}], got {block.shape}")
        start = 0
        while start < len(block):
            take = min(self.chunk_rows - self._fill, len(block) - start)
            self._buffer[self._fill:self._fill + take] = block[start:start + take]
            self._fill += take
            start += take
            if self._fill == self.chunk_rows:
                self._flush()

    def _flush(self) -> None:
        if not self._fill:
            return
        begin = self.rows
        self._array.resize((begin + self._fill, self.cols))
        self._array[begin:begin + self._fill] = self._buffer[: self._fill]
        self.rows += self._fill
        self._fill = 0

    def close(self) -> int:
        self._flush()
        return self.rows


def write_segment(path: Path, rows: np.ndarray | Iterable[np.ndarray], cols: int, **kw: Any) -> int:
    """Write a whole array (or an iterable of row blocks) as a new segment; returns the row count."""
    writer = SegmentWriter(path, cols, **kw)
    blocks = [rows] if isinstance(rows, np.ndarray) else rows
    for block in blocks:
        writer.append(block)
    return writer.close()


def open_segment(path: Path, rows: int, cols: int) -> Any:
    """Open a segment read-only and check its shape against the manifest."""
    import zarr

    try:
        array = zarr.open_array(store=str(path), mode="r")
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise IntegrityError(f"weight segment {str(path)!r} is missing or unreadable: {exc}") from exc
    if tuple(array.shape) != (rows, cols):
        raise IntegrityError(f"weight segment {str(path)!r} has shape {tuple(array.shape)}, the snapshot "
                             f"says ({rows}, {cols}); run `weightlake verify`")
    return array


def read_all(path: Path, rows: int, cols: int, out: np.ndarray | None = None) -> np.ndarray:
    """Decode a whole segment into ``out`` (or a new array)."""
    array = open_segment(path, rows, cols)
    if out is None:
        out = np.empty((rows, cols), dtype=np.float32)
    if _raw_layout(array):
        return _read_raw(path, array, out)
    from zarr.core.buffer import default_buffer_prototype

    proto = default_buffer_prototype()
    array.get_basic_selection(Ellipsis, out=proto.nd_buffer.from_numpy_array(out))
    return out


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


def _read_raw(path: Path, array: Any, out: np.ndarray, threads: int = 2) -> np.ndarray:
    """Read chunk files straight into ``out`` (one copy from the page cache, no codec pipeline).

    Two threads: ``readinto`` releases the GIL, and one core alone does not saturate memory.
    """
    from concurrent.futures import ThreadPoolExecutor

    rows, cols = array.shape
    step = array.chunks[0]
    flat = out.reshape(-1).view(np.uint8)

    def read(i: int) -> None:
        start = i * step
        n = min(step, rows - start) * cols * 4
        chunk = path / array.metadata.encode_chunk_key((i, 0))
        try:
            with open(chunk, "rb", buffering=0) as fh:
                got = fh.readinto(flat[start * cols * 4: start * cols * 4 + n])  # type: ignore[arg-type]
        except FileNotFoundError:  # a chunk never written holds the fill value
            out[start:start + n // (cols * 4)] = array.fill_value
            return
        if got != n:
            raise IntegrityError(f"chunk {str(chunk)!r} is truncated ({got} of {n} bytes)")

    n_chunks = -(-rows // step)
    if n_chunks < 4:
        for i in range(n_chunks):
            read(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(read, range(n_chunks)))
    return out


def read_rows(path: Path, rows: int, cols: int, index: np.ndarray) -> np.ndarray:
    """Decode selected rows (any order, repeats allowed)."""
    array = open_segment(path, rows, cols)
    index = np.asarray(index, dtype=np.int64)
    if index.size == 0:
        return np.empty((0, cols), dtype=np.float32)
    lo, hi = int(index.min()), int(index.max()) + 1
    if lo == 0 and hi == rows and index.size == rows and (np.diff(index) == 1).all():
        return read_all(path, rows, cols)  # every row in order: decode straight into the result
    if hi - lo <= 4 * index.size or hi - lo <= 2 * DEFAULT_CHUNK_ROWS:
        # a dense range: one contiguous read, then a gather (cheaper than per-chunk selection)
        block = np.asarray(array[lo:hi])
        return block if hi - lo == index.size and (np.diff(index) == 1).all() else block[index - lo]
    uniq, inverse = np.unique(index, return_inverse=True)
    block = np.asarray(array.get_orthogonal_selection((uniq, slice(None))))
    return block if len(uniq) == len(index) and (uniq == index).all() else block[inverse]
