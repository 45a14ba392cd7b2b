"""weightlake/analysis/_rows.py: row blocks on a kept thread pool give what one thread gives."""

from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightlake.analysis import _rows
from weightlake.analysis.metrics import mae, mse


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3000), width=st.integers(1, 40), block=st.integers(1, 700), workers=st.integers(2, 4))
def test_blocks_on_the_pool_equal_one_thread(n, width, block, workers) -> None:
    rng = np.random.default_rng(n * 131 + width)
    a, b = rng.normal(size=(n, width)).astype(np.float32), rng.normal(size=(n, width)).astype(np.float32)
    one = _rows.apply_rows(_rows_kernel, a, b, block_rows=block, workers=1)
    many = _rows.apply_rows(_rows_kernel, a, b, block_rows=block, workers=workers)
    np.testing.assert_array_equal(many, one)


def _rows_kernel(x, y, xp):
    return ((x - y) ** 2).mean(axis=1)


def test_a_job_that_runs_spans_itself_does_not_wait_on_the_pool() -> None:
    """Every pool thread running a job that waits on the pool would hang; nested spans run in place."""
    out: dict[tuple[int, int], float] = {}

    def outer(span: tuple[int, int]) -> None:
        inner: list[int] = []
        _rows.run_spans(lambda s: inner.append(s[1] - s[0]), [(0, 3), (3, 7), (7, 8)], 2)  # the same pool
        out[span] = sum(inner)

    done = threading.Event()

    def run() -> None:
        _rows.run_spans(outer, [(i, i + 1) for i in range(8)], 2)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(30), "nested run_spans hung"
    assert out == {(i, i + 1): 8 for i in range(8)}


def test_a_failing_job_raises_in_the_caller() -> None:
    def job(span: tuple[int, int]) -> None:
        if span[0] == 2:
            raise ValueError("bad block")

    with pytest.raises(ValueError, match="bad block"):
        _rows.run_spans(job, [(0, 1), (1, 2), (2, 3), (3, 4)], 2)


def _child(q) -> None:
    a = np.arange(4000 * 8, dtype=np.float32).reshape(4000, 8)
    q.put(float(mae(a, a + 1, workers=2).sum()))


def test_a_forked_child_starts_its_own_threads() -> None:
    a = np.ones((4000, 8), dtype=np.float32)
    mse(a, a, workers=2)  # the parent's pool exists before the fork
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q,))
    p.start()
    p.join(60)
    assert p.exitcode == 0, "the forked child hung or failed"
    assert q.get(timeout=5) == 4000.0
