"""Row plumbing shared by the metric modules: backends, broadcasting, row blocks, threads.

Every row metric is written once as a *kernel* ``kernel(a, b, xp, **params) -> [rows]``
over a block of rows, where ``xp`` is the ``numpy`` or the ``torch`` module.  Kernels
use only operations both modules spell the same way (``xp.abs``, ``x.sum(-1)``,
``xp.fft.rfft``, ...) plus the few helpers below, so one kernel serves analysis (numpy,
float64, in row blocks and threads) and training losses (torch, autograd intact).

:func:`apply_rows` is the one entry point:

* torch in (either argument a tensor): the kernel runs once on whole tensors, the
  result is a tensor with ``grad_fn`` when an input requires grad;
* numpy in: rows are cut into blocks of at most ``block_rows`` rows, converted to
  float64 block by block (so 47,000 x 2,464 float32 inputs never get full-size float64
  copies or temporaries), blocks run on a few threads (numpy releases the GIL in sorts
  and ufuncs) and the result is a float64 array.

A ``[P]`` argument is a single row broadcast against the other's ``[n, P]``; when both
are ``[P]`` the result is a scalar (0-d).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from weightlake.errors import ArchitectureError

BLOCK_ROWS = 4096
"""Default rows per block: 4,096 x 2,464 float64 is 80 MB per temporary."""

MIN_THREAD_ROWS = 256
"""Blocks are not split below this many rows just to feed more threads."""

Kernel = Callable[..., Any]


def is_torch(x: Any) -> bool:
    """True for a ``torch.Tensor`` (checked without importing torch)."""
    return type(x).__module__.startswith("torch")


def default_workers() -> int:
    """Threads for row blocks: the machine's cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def to_numpy(x: Any) -> np.ndarray:
    """An array from a numpy array, a torch tensor (detached, on CPU) or a sequence."""
    if is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def as_rows(x: Any) -> np.ndarray:
    """``x`` as a 2-D array ``[rows, P]`` without copying (a ``[P]`` vector becomes ``[1, P]``)."""
    arr = to_numpy(x)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ArchitectureError(f"expected a vector [P] or rows [n, P], got shape {tuple(arr.shape)}")
    return arr


def as_float(block: np.ndarray, *, keep_float32: bool = False) -> np.ndarray:
    """float64, unless ``keep_float32`` and the block is float32 (sorts run twice as fast on it)."""
    if keep_float32 and block.dtype == np.float32:
        return block
    return block.astype(np.float64, copy=False)


def float_rows(x: Any, *, keep_float32: bool = False) -> np.ndarray:
    """:func:`as_rows` then :func:`as_float`: a 2-D float array (a copy only when converting)."""
    return as_float(as_rows(x), keep_float32=keep_float32)


def check_pair(a: Any, b: Any, *, same_width: bool = True) -> None:
    """Raise :class:`ArchitectureError` unless ``a`` and ``b`` broadcast row by row."""
    n_a, n_b = a.shape[0], b.shape[0]
    if n_a != n_b and 1 not in (n_a, n_b):
        raise ArchitectureError(
            f"pred has {n_a} rows and ref has {n_b}: expected equal row counts, or a single "
            "vector [P] to compare with every row")
    if same_width and a.shape[-1] != b.shape[-1]:
        raise ArchitectureError(
            f"pred rows have {a.shape[-1]} values and ref rows {b.shape[-1]}: this metric compares "
            "values position by position, so both need the same length")


def row_spans(n: int, block_rows: int = BLOCK_ROWS, workers: int = 1) -> list[tuple[int, int]]:
    """``[start, stop)`` row ranges: at most ``block_rows`` long, enough to feed ``workers``."""
    per_worker = -(-n // max(1, workers))
    size = max(1, min(block_rows, max(per_worker, MIN_THREAD_ROWS)))
    return [(i, min(i + size, n)) for i in range(0, n, size)]


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()
_in_pool = threading.local()


def _drop_pools() -> None:  # a forked child has the pools but not their threads
    _pools.clear()


os.register_at_fork(after_in_child=_drop_pools)


def _pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``workers`` threads, started on first use and kept.

    A SQL function computes its metric on every 2,048-row vector: a pool made per call started
    two threads each time; with this one ``wl_mse_layer_by_id`` ran 1.14-1.39x faster
    (BENCHMARKS.md, "metric blocks on a kept thread pool").
    """
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(
                workers, thread_name_prefix="weightlake-rows", initializer=setattr, initargs=(_in_pool, "on", True))
        return pool


def run_spans(job: Callable[[tuple[int, int]], None], spans: Sequence[tuple[int, int]], workers: int) -> None:
    """Run ``job`` on every span, on ``workers`` threads when there is more than one span.

    The threads are a kept pool per thread count (:func:`_pool`); a job that itself runs spans
    runs them in its own thread (a pool thread waiting on the pool could wait for ever).
    """
    if workers <= 1 or len(spans) <= 1 or getattr(_in_pool, "on", False):
        for span in spans:
            job(span)
        return
    list(_pool(workers).map(job, spans))


def _rows_of(x: np.ndarray | None, i: int, j: int, keep_float32: bool) -> np.ndarray | None:
    """Rows ``i:j`` converted to float block by block (a single row is shared by all blocks)."""
    if x is None:
        return None
    return as_float(x if x.shape[0] == 1 else x[i:j], keep_float32=keep_float32)


def apply_rows(kernel: Kernel, pred: Any, ref: Any = None, *, params: dict[str, Any] | None = None,
               keep_float32: bool = False, same_width: bool = True,
               block_rows: int = BLOCK_ROWS, workers: int | None = None) -> Any:
    """Evaluate a row kernel on ``pred`` (and ``ref``): see the module docstring.

    ``ref=None`` makes a one-argument (unary) metric.  Returns ``[n]``, or a scalar when
    every argument is a single vector ``[P]``.
    """
    params = params or {}
    if is_torch(pred) or is_torch(ref):
        return _apply_torch(kernel, pred, ref, params, same_width)
    a = as_rows(pred)
    b = None if ref is None else as_rows(ref)
    if b is not None:
        check_pair(a, b, same_width=same_width)
    n = a.shape[0] if b is None else max(a.shape[0], b.shape[0])
    out = np.empty(n, dtype=np.float64)
    nthreads = default_workers() if workers is None else workers

    def job(span: tuple[int, int]) -> None:
        i, j = span
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out[i:j] = kernel(_rows_of(a, i, j, keep_float32), _rows_of(b, i, j, keep_float32), np, **params)

    run_spans(job, row_spans(n, block_rows, nthreads), nthreads)
    scalar = np.ndim(pred) == 1 and (ref is None or np.ndim(ref) == 1)
    return out[0] if scalar else out


def _apply_torch(kernel: Kernel, pred: Any, ref: Any, params: dict[str, Any], same_width: bool) -> Any:
    import torch

    like = pred if is_torch(pred) else ref
    dtype = like.dtype if like.is_floating_point() else torch.float64
    a = torch.as_tensor(pred, dtype=dtype, device=like.device)
    b = None if ref is None else torch.as_tensor(ref, dtype=dtype, device=like.device)
    scalar = a.ndim == 1 and (b is None or b.ndim == 1)
    a = a[None, :] if a.ndim == 1 else a
    if b is not None:
        b = b[None, :] if b.ndim == 1 else b
        check_pair(a, b, same_width=same_width)
    out = kernel(a, b, torch, **params)
    return out[0] if scalar else out


# -- helpers kernels share across numpy and torch ------------------------------------------


def sort_last(x: Any, xp: Any) -> Any:
    """Values sorted along the last axis (torch.sort returns a pair; numpy an array)."""
    if xp is np:
        return np.sort(x, axis=-1)
    return xp.sort(x, dim=-1).values


def nan_where(cond: Any, x: Any, xp: Any) -> Any:
    """``x`` with NaN where ``cond`` holds."""
    return xp.where(cond, float("nan"), x)


def row_max(x: Any, xp: Any) -> Any:
    return xp.amax(x, -1)


def row_min(x: Any, xp: Any) -> Any:
    return xp.amin(x, -1)


def log_softmax(x: Any, xp: Any) -> Any:
    """Row-wise log-softmax, stable for large values."""
    if xp is not np:
        return xp.log_softmax(x, dim=-1)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def stack_mean(values: Sequence[Any]) -> Any:
    """Element-wise mean of equally shaped arrays or tensors (NaN if any is NaN)."""
    if values and is_torch(values[0]):
        import torch

        return torch.stack(list(values)).mean(0)
    return np.mean(np.stack(values), axis=0)


def sort_rows(x: Any, *, block_rows: int = BLOCK_ROWS, workers: int | None = None) -> np.ndarray:
    """Each row of ``x`` sorted ascending, as a new numpy array (float32 stays float32).

    Sort a zoo once and pass it with ``presorted=`` to the Wasserstein functions to skip
    the sort, which is most of their cost.  Rows are sorted in blocks on a few threads.
    """
    out = np.array(float_rows(x, keep_float32=True), copy=True)
    nthreads = default_workers() if workers is None else workers

    def job(span: tuple[int, int]) -> None:
        out[span[0]:span[1]].sort(axis=-1)

    run_spans(job, row_spans(out.shape[0], block_rows, nthreads), nthreads)
    return out if np.ndim(x) != 1 else out[0]
