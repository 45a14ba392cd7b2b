"""``benchmarks/run_all.py`` accounts for every benchmark in the folder (none left out unsaid)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run_all():
    spec = importlib.util.spec_from_file_location("run_all", BENCH / "run_all.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_benchmark_is_run_or_listed_as_run_by_hand():
    mod = _run_all()
    files = {p.stem.removeprefix("bench_") for p in BENCH.glob("bench_*.py")}
    assert files == set(mod.ORDER) | set(mod.BY_HAND)
    assert not set(mod.ORDER) & set(mod.BY_HAND)
    assert set(mod.QUICK) <= set(mod.ORDER)
    assert set(mod.ORDER) - set(mod.QUICK) == set(), "every benchmark run_all runs has a quick size"


def test_records_are_read_one_per_line_or_indented():
    text = 'round 1: 2.0 s\n{"a": 1}\n{\n  "b": {"c": [1, 2]}\n}\nnot json {"x": 1}\n{broken\n'
    assert _run_all()._records(text) == [{"a": 1}, {"b": {"c": [1, 2]}}]
