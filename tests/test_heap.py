"""weightlake/_heap.py: large blocks reuse heap pages inside a scope, and the scope undoes itself."""

from __future__ import annotations

import ctypes
import os
import resource

import numpy as np
import pytest

from weightlake import _heap

pytestmark = pytest.mark.skipif(_heap.glibc() is None, reason="glibc only")

BLOCK = 48 << 20  # above glibc's largest mmap threshold (32 MB): mapped afresh outside a scope


def _faults_of_a_second_block() -> int:
    """Minor page faults of touching a 48 MB malloc block after freeing one of the same size."""
    lib = _heap.glibc()
    lib.malloc.argtypes, lib.malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
    lib.free.argtypes = [ctypes.c_void_p]
    first = lib.malloc(BLOCK)
    ctypes.memset(first, 1, BLOCK)
    lib.free(first)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    second = lib.malloc(BLOCK)
    ctypes.memset(second, 1, BLOCK)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    lib.free(second)
    return faults


_MEASURE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from test_heap import _faults_of_a_second_block
from weightlake import _heap
outside = _faults_of_a_second_block()
with _heap.heap_kept() as kept:
    inside = _faults_of_a_second_block()
print(json.dumps([kept, outside, inside, _faults_of_a_second_block()]))
"""


def test_inside_a_scope_a_freed_block_is_reused_without_faults() -> None:
    # in a fresh interpreter: in this one, earlier tests' queries may have left a free heap top of
    # 48 MB or more (glibc keeps up to its 64 MB trim threshold), which a block outside a scope reuses too
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run([sys.executable, "-c", _MEASURE, str(Path(__file__).parent)], check=True,
                         capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                              if k != "WEIGHTLAKE_MALLOC"})
    kept, outside, inside, after = json.loads(out.stdout.strip().splitlines()[-1])
    assert kept
    assert outside >= BLOCK // (2 << 20)  # a fresh mapping: at least one fault per 2 MB page
    assert inside < outside / 4
    assert after >= BLOCK // (2 << 20)  # mapped afresh again once the scope is left


def test_scopes_nest_and_only_the_last_one_out_restores() -> None:
    with _heap.heap_kept():
        with _heap.heap_kept():
            pass
        assert _heap._depth == 1
        assert _faults_of_a_second_block() < BLOCK // (2 << 20)
    assert _heap._depth == 0


def test_the_scope_can_be_switched_off(monkeypatch) -> None:
    monkeypatch.setenv("WEIGHTLAKE_MALLOC", "default")
    with _heap.heap_kept() as kept:
        assert not kept and _heap._depth == 0


def test_a_query_naming_a_python_function_gives_the_same_result_with_and_without(small_lake_dir, monkeypatch) -> None:
    import weightlake as wl

    query = ("SELECT model_id, wl_mse_layer(w, w, 'fc1') AS a, wl_w1(w, w) AS b, wl_kl(w, w) AS c "
             "FROM weights ORDER BY model_id")
    kept = wl.open_lake(small_lake_dir).sql(query)
    assert _heap._depth == 0
    monkeypatch.setenv("WEIGHTLAKE_MALLOC", "default")
    plain = wl.open_lake(small_lake_dir).sql(query)
    for col in kept.columns:
        np.testing.assert_array_equal(kept[col].to_numpy(), plain[col].to_numpy())


def test_a_connection_of_ones_own_gets_the_scope_from_the_handle(small_lake_dir) -> None:
    import weightlake as wl

    lake = wl.open_lake(small_lake_dir)
    query = "SELECT model_id, wl_mse_layer(w, w, 'fc1') AS a, wl_w1(w, w) AS b FROM weights ORDER BY model_id"
    with lake.connect() as con:
        plain = con.sql(query).fetchall()
    with lake.heap_kept() as kept, lake.connect() as con:
        assert kept and _heap._depth == 1
        inside = con.sql(query).fetchall()
    assert _heap._depth == 0
    assert inside == plain
