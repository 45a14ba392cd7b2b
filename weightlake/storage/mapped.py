"""Random access to a zoo's rows under the memory budget: memory-mapped chunk files.

Pair serving, ``wl_*_by_id`` and materialised batches gather rows in random order.  A
zoo that fits the budget is decoded once and gathered from memory (:class:`ResidentRows`).
A larger one is served by :class:`MappedRows`: every chunk file of an uncompressed segment
is the chunk's raw float32 rows (the ``bytes`` codec), so the files are memory-mapped
read-only, side by side, into one address range for the whole zoo, and a gather is a numpy
row gather from that range, as from memory (a loop over segments cost 2-4x as much per row:
``benchmarks/bench_bounded.py --million``).  The pages are the kernel's page cache
(file-backed, shared, evicted under pressure), not this process's anonymous memory:
the process holds only what it gathers.

Threads: a gather of at least ``2 * SPLIT_ROWS`` rows is split over :data:`GATHER_THREADS`
threads (two, or one on a one-core machine; ``MappedRows(threads=)``), each copying its share
of the rows straight into the one output array (``np.take(..., out=, mode="clip")``, which
releases the GIL; the default ``mode="raise"`` would gather into a buffer first and cost
twice as much).  A gather from a 10 GB mapping waits on address translation and memory
rather than on bandwidth, so two threads nearly halve it when a core is free; a gather
from a decoded array (:class:`ResidentRows`) is closer to the memory bandwidth and stays on
one thread.  The threads belong to the process that started them: a forked child (a
DataLoader worker) starts its own on its first large gather, and a pickled source carries
only its settings.

Checksums: a chunk is checked the first time any of its rows is gathered, once per chunk
per source (a fresh source, or a process that unpickles one, checks again).  The first
check of a chunk reads all of it (5 MB for 512 CNN-s rows), so an epoch over random pairs
of a zoo reads the whole zoo once, sequentially chunk by chunk; later gathers read only
the pages of the rows they take (from the page cache when it holds them, else from disk).

``method="pread"`` reads the wanted rows with one ``preadv`` each, sorted by file offset,
into the output (checking each chunk once in the same way); it exists for chunk sizes that
are not a whole number of pages and for the benchmark that chose memory-mapping
(``benchmarks/bench_bounded.py``).  Object stores have their own source
(:class:`~weightlake.storage.remote_rows.RemoteRows`), ``tensors``-layout zoos theirs
(:class:`~weightlake.storage.parts.PartRows`); compressed segments have none:
:meth:`weightlake.lake.Lake.row_source` decodes those whole (and warns over the budget).

Round-trip law: ``MappedRows(...).take(pos) == read_all(...)[pos]`` bitwise, for any
positions (any order, repeats allowed).
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import sys
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from weightlake.errors import IntegrityError
from weightlake.storage.checksums import check_bytes
from weightlake.storage.snapshot import Segment
from weightlake.storage.tensors import SegmentReader, _read_chunk_into

METHODS = ("mmap", "pread")
GATHER_THREADS = min(2, os.cpu_count() or 1)
"""Threads a mapped gather of at least ``2 * SPLIT_ROWS`` rows is split over (``MappedRows(threads=)``)."""
SPLIT_ROWS = 256
"""Fewest rows per thread: below that a thread's start-up costs more than it saves."""
_PROT_NONE, _MAP_FIXED, _MAP_NORESERVE = 0, 0x10, 0x4000  # Linux values (the mmap module lacks them)


def zoo_rows(segments: Sequence[Segment]) -> tuple[np.ndarray, int, np.ndarray]:
    """A zoo's segments as one row space: ``(ids, cols, starts)`` -- the model ids in row order, the
    row width, and each segment's first row (with the total appended), for the row sources."""
    ids = (np.concatenate([np.arange(s.first_id, s.stop_id, dtype=np.int64) for s in segments])
           if segments else np.empty(0, dtype=np.int64))
    cols = int(segments[0].cols) if segments else 0
    return ids, cols, np.cumsum([0, *(s.rows for s in segments)]).astype(np.int64)


class ResidentRows:
    """A zoo decoded in memory: ``take(pos)`` is ``weights[pos]``."""

    resident = True

    def __init__(self, ids: np.ndarray, weights: np.ndarray) -> None:
        self.ids, self.weights = ids, weights
        self.cols = int(weights.shape[1]) if weights.ndim == 2 else 0

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, pos: np.ndarray) -> np.ndarray:
        """Rows at zoo positions ``pos`` (int64, any order) as a new ``float32 [len(pos), P]`` array."""
        return self.weights[np.asarray(pos, dtype=np.int64)]


def can_map(segments: Sequence[Segment], root: Path) -> bool:
    """True when every segment is raw (uncompressed whole-row chunks) on local disk, so rows can be mapped."""
    try:
        return all(SegmentReader(root / s.path, s.rows, s.cols).raw for s in segments)
    except IntegrityError:
        return False


class MappedRows:
    """A zoo's raw segments as memory-mapped (or ``pread``) rows, each chunk checked once on first use.

    Parameters
    ----------
    root
        The lake directory.
    segments
        The zoo's segments in row order (``ids`` follows them).
    method
        ``"mmap"`` (default; falls back to ``"pread"`` where a chunk is not a whole number of pages
        or the platform is not Linux) or ``"pread"``.
    """

    resident = False

    def __init__(self, root: Path, segments: Sequence[Segment], *, method: str = "mmap",
                 threads: int | None = None) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.root, self.segments, self.method = Path(root), tuple(segments), method
        self.ids, self.cols, self.starts = zoo_rows(self.segments)
        self._maps: list[_SegmentMap] | None = None
        self._view: np.ndarray | None = None  # every mapped segment in one address range
        self._shift = np.zeros(len(self.segments), dtype=np.int64)  # zoo position -> row of _view
        self._checked_all = False
        self._lock = threading.Lock()
        self.threads = max(1, int(threads if threads is not None else GATHER_THREADS))
        self._threads: tuple[int, Any] | None = None  # (pid, pool): the pool of the process that made it

    def __len__(self) -> int:
        return len(self.ids)

    def __getstate__(self) -> dict[str, Any]:  # a spawned worker maps (and checks) afresh
        return {"root": self.root, "segments": self.segments, "method": self.method, "threads": self.threads}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["root"], state["segments"], method=state["method"],  # type: ignore[misc]
                      threads=state.get("threads"))

    @property
    def checked_chunks(self) -> int:
        """Chunks checked so far by this source."""
        return sum(int(m.verified.sum()) for m in self._maps or ())

    def _segment_maps(self) -> list[_SegmentMap]:
        with self._lock:
            if self._maps is None:
                readers = [_reader(self.root / s.path, s) for s in self.segments]
                if self.method == "mmap" and readers and all(_mappable(r) for r in readers):
                    self._maps, self._view, self._shift = _map_zoo(readers, self.cols)
                else:
                    self._maps = [_SegmentMap(r, "pread") for r in readers]
            return self._maps

    def take(self, pos: np.ndarray) -> np.ndarray:
        """Rows at zoo positions ``pos`` (int64, any order, repeats allowed) as ``float32 [len(pos), P]``."""
        pos = np.asarray(pos, dtype=np.int64).reshape(-1)
        if pos.size == 0:
            return np.empty((0, self.cols), dtype=np.float32)
        if pos.min() < 0 or pos.max() >= len(self.ids):
            raise IntegrityError(f"row position out of range for a zoo of {len(self.ids)} rows")
        maps = self._segment_maps()
        seg = np.searchsorted(self.starts, pos, side="right") - 1 if len(maps) > 1 else np.zeros(pos.size, np.int64)
        if not self._checked_all:
            for s in np.unique(seg):
                s = int(s)
                maps[s].check((pos[seg == s] - self.starts[s]) // maps[s].step)
            self._checked_all = all(bool(m.verified.all()) for m in maps)
        if self._view is not None:
            return self._gather(pos + self._shift[seg] if len(maps) > 1 else pos)
        out = np.empty((pos.size, self.cols), dtype=np.float32)
        for s in np.unique(seg):
            where = np.flatnonzero(seg == s)
            maps[int(s)].read_rows(pos[where] - self.starts[s], out, where)
        return out


    def _gather(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` of the mapping, in parts on :data:`GATHER_THREADS` threads when there are enough."""
        view = self._view
        assert view is not None
        parts = min(self.threads, len(rows) // SPLIT_ROWS)
        if parts < 2:
            return view[rows]  # one fancy index over the whole mapping, as from decoded memory
        out = np.empty((len(rows), self.cols), dtype=np.float32)
        # rows are in range (take checked them): mode="clip" writes straight into out (the default
        # mode="raise" gathers into a buffer first, and costs twice as much)
        cuts = np.linspace(0, len(rows), parts + 1).astype(np.int64)
        done = [self._pool().submit(np.take, view, rows[a:b], 0, out[a:b], "clip")
                for a, b in zip(cuts[1:-1], cuts[2:], strict=True)]
        np.take(view, rows[:cuts[1]], 0, out[:cuts[1]], "clip")
        for d in done:
            d.result()
        return out

    def _pool(self) -> Any:
        """This process's gather threads (a forked child, such as a DataLoader worker, starts its own)."""
        if self._threads is None or self._threads[0] != os.getpid():
            from concurrent.futures import ThreadPoolExecutor

            with self._lock:
                if self._threads is None or self._threads[0] != os.getpid():
                    pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="weightlake-gather")
                    self._threads = (os.getpid(), pool)
        return self._threads[1]


def _reader(path: Path, seg: Segment) -> SegmentReader:
    reader = SegmentReader(path, seg.rows, seg.cols, digests=seg.chunk_digests, meta_digest=seg.meta_digest)
    if not reader.raw:
        raise IntegrityError(f"weight segment {str(path)!r} is compressed: its rows cannot be mapped")
    return reader


def _mappable(reader: SegmentReader) -> bool:
    """Chunks of whole pages on Linux: each chunk file can be mapped at its place in one range."""
    return (reader.chunk_rows * 4 * reader.cols) % mmap.PAGESIZE == 0 and sys.platform == "linux"


def _map_zoo(readers: list[SegmentReader], cols: int) -> tuple[list[_SegmentMap], np.ndarray, np.ndarray]:
    """Reserve one address range for every chunk of every segment and map each chunk file into its place.

    Segment ``s`` starts at row ``shift[s] + starts[s]`` of the returned view: each segment's
    last chunk is padded to whole chunk rows, so the rows of the next one start a little later.
    """
    libc = _libc()
    sizes = [-(-r.rows // r.chunk_rows) * r.chunk_rows * 4 * cols for r in readers]
    size = int(sum(sizes))
    base = libc.mmap(None, size, _PROT_NONE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0)
    if base in (None, ctypes.c_void_p(-1).value):
        raise IntegrityError(f"cannot reserve {size} bytes of address space for {str(readers[0].path)!r}")
    maps, offset, shift, first = [], 0, [], 0
    try:
        for reader, seg_size in zip(readers, sizes, strict=True):
            maps.append(_SegmentMap(reader, "mmap", base=base + offset))
            shift.append(offset // (4 * cols) - first)
            offset, first = offset + seg_size, first + reader.rows
    except BaseException:
        libc.munmap(base, size)
        raise
    holder = (ctypes.c_char * size).from_address(base)
    weakref.finalize(holder, libc.munmap, base, size)
    view = np.frombuffer(holder, dtype=np.float32).reshape(-1, cols)
    view.flags.writeable = False  # the pages are PROT_READ: a write would fault
    return maps, view, np.asarray(shift, dtype=np.int64)


class _SegmentMap:
    """One segment's chunk files, mapped at ``base`` (``mmap``) or opened for ``preadv``; checks chunks once."""

    def __init__(self, reader: SegmentReader, method: str, *, base: int | None = None) -> None:
        self.reader = reader
        self.rows, self.cols, self.step = reader.rows, reader.cols, reader.chunk_rows
        self.row_bytes = 4 * self.cols
        self.chunk_bytes = self.step * self.row_bytes
        self.n_chunks = -(-self.rows // self.step)
        self.verified = np.zeros(self.n_chunks, dtype=bool)
        self._lock = threading.Lock()
        self.base = base
        self._fds: dict[int, int] = {}
        if method == "mmap":
            self._map_chunks()
        else:
            weakref.finalize(self, _close_all, self._fds)

    def _map_chunks(self) -> None:
        """Map each chunk file into its place in the reserved range that starts at ``base``."""
        libc = _libc()
        for c in range(self.n_chunks):
            fd = self._open_chunk(c)
            want = self.base + c * self.chunk_bytes
            try:
                got = libc.mmap(want, self.chunk_bytes, mmap.PROT_READ, mmap.MAP_SHARED | _MAP_FIXED, fd, 0)
            finally:
                os.close(fd)
            if got != want:
                raise IntegrityError(f"cannot map chunk {str(self.reader.chunk_file(c))!r}: "
                                     f"{os.strerror(ctypes.get_errno())}")

    def _open_chunk(self, c: int) -> int:
        """An fd of chunk ``c``'s file, whose size must be exactly one chunk (a short file would fault when mapped)."""
        chunk = self.reader.chunk_file(c)
        try:
            fd = os.open(chunk, os.O_RDONLY)
        except FileNotFoundError:
            raise IntegrityError(f"chunk {str(chunk)!r} is missing; the snapshot lists it (run `weightlake verify`)") \
                from None
        size = os.fstat(fd).st_size
        if size != self.chunk_bytes:
            os.close(fd)
            raise IntegrityError(f"chunk {str(chunk)!r} has the wrong size ({size} bytes, expected "
                                 f"{self.chunk_bytes}); run `weightlake verify`")
        return fd

    # -- checking and reading ---------------------------------------------------------------
    def check(self, chunks: np.ndarray) -> None:
        """Check each of ``chunks`` not checked yet against its digest (mapped: the mapped bytes themselves)."""
        todo = np.unique(chunks[~self.verified[chunks]])
        for c in todo:
            c = int(c)
            with self._lock:
                if self.verified[c]:
                    continue
                if self.base is not None:
                    # the whole chunk, padded tail of the last one included
                    buf = (ctypes.c_char * self.chunk_bytes).from_address(self.base + c * self.chunk_bytes)
                    check_bytes(memoryview(buf), self.reader.chunk_digest(c), self.reader.chunk_file(c))
                else:
                    scratch = np.empty((self.step, self.cols), dtype=np.float32)
                    _read_chunk_into(self.reader.chunk_file(c), scratch, self.reader.chunk_digest(c))
                self.verified[c] = True

    def read_rows(self, local: np.ndarray, out: np.ndarray, where: np.ndarray) -> None:
        """Rows ``local`` of this segment into ``out[where]`` with one ``preadv`` each, in file order."""
        order = np.argsort(local, kind="stable")  # sorted by file offset: sequential within a chunk
        for k in order:
            row = int(local[k])
            c, r = divmod(row, self.step)
            fd = self._fd(c)
            target = out[int(where[k])]
            got = os.preadv(fd, [memoryview(target).cast("B")], r * self.row_bytes)
            if got != self.row_bytes:
                raise IntegrityError(f"chunk {str(self.reader.chunk_file(c))!r} is short; run `weightlake verify`")

    def _fd(self, c: int) -> int:
        fd = self._fds.get(c)
        if fd is None:
            fd = self._fds[c] = self._open_chunk(c)
        return fd


def _close_all(fds: dict[int, int]) -> None:
    for fd in fds.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()


_LIBC: Any = None


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]
        libc.munmap.restype = ctypes.c_int
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        _LIBC = libc
    return _LIBC
