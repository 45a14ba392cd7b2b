"""glibc's malloc during a query: keep freed blocks in the heap instead of unmapping them.

Before DuckDB calls a Python function it copies each ``FLOAT[P]`` argument of a 2,048-row
vector into a fresh Arrow buffer of 32 MB or more (the values of ``P = 2,464`` take 20 MB),
and frees it after the call. glibc serves such a request with its own ``mmap`` and unmaps it
on ``free`` (a running process cannot raise that threshold past 32 MB; raising it to 32 MB
changed nothing here), so every vector faults in new zeroed pages:
measured here, a function that does nothing took 0.40 s and 175,000 page faults over the
36,468-model zoo, and ``wl_mse_layer(w, w, 'fc1')`` 0.54-0.63 s against numpy's 0.06-0.14 s
on the same rows. With the heap's own mmaps off and its top kept up to 128 MB
(:func:`heap_kept`), through ``lake.sql`` in fresh processes (``benchmarks/bench_sql_heap.py``):
``wl_mse_layer`` 0.35-0.55 -> 0.22-0.24 s (16,000 faults: the first vector's), ``wl_mae(w, w)``
0.78-0.87 -> 0.39-0.53 s, ``wl_w1(w, w)`` 0.75-0.91 -> 0.59-0.62 s; the process's peak RSS
1.29-1.34 -> 1.63-1.66 GB.

:func:`heap_kept` is scoped: on leaving the last open scope glibc's limits are set to the
values its own dynamic tuning converges to (mmap threshold 32 MB, trim threshold 64 MB), and
``malloc_trim(0)`` hands back what the heap holds free. A block allocated inside the scope
and freed long after it (a large query result) comes from the heap and is handed back at the
next scope's end, not at its ``free``. Nothing changes on other C libraries or with
``WEIGHTLAKE_MALLOC=default``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator
from typing import Any

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
"""mallopt parameters, from glibc's malloc.h."""
KEPT_TOP = 128 << 20
"""Bytes of free heap top kept inside a scope: DuckDB holds several vectors' buffers at once,
and with 64 MB they were trimmed away between vectors (190,000 faults a query, as without the
scope); 128 and 256 MB ran alike."""
AFTER = {M_MMAP_MAX: 65536, M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 64 << 20}
"""The limits set when the last scope ends: glibc's defaults for the mmap count, and the
thresholds its dynamic tuning reaches after freeing a large block (setting any limit stops
that tuning for the process)."""

_lock = threading.Lock()
_depth = 0
_libc: Any = None


def glibc() -> Any:
    """The process's glibc (``ctypes``), or None on another C library or with ``WEIGHTLAKE_MALLOC=default``."""
    global _libc
    if os.environ.get("WEIGHTLAKE_MALLOC") == "default":
        return None
    if _libc is None:
        try:
            lib = ctypes.CDLL(None)
            lib.gnu_get_libc_version  # noqa: B018 (present in glibc only)
            lib.mallopt.argtypes, lib.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            lib.malloc_trim.argtypes, lib.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
            _libc = lib
        except (OSError, AttributeError):
            _libc = False
    return _libc or None


@contextlib.contextmanager
def heap_kept() -> Iterator[bool]:
    """Within the block, large allocations come from the heap and freed ones stay there (up to
    :data:`KEPT_TOP` at its top); yields whether that is in force. Scopes nest and may be open
    on several threads; the settings change when the first opens and the last closes."""
    global _depth
    lib = glibc()
    if lib is None:
        yield False
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            lib.mallopt(M_MMAP_MAX, 0)
            lib.mallopt(M_TRIM_THRESHOLD, KEPT_TOP)
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for param, value in AFTER.items():
                    lib.mallopt(param, value)
                lib.malloc_trim(0)
