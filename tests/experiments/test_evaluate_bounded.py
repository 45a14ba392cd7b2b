"""Evaluation's pair gather under a memory budget smaller than the zoo reads no whole zoo and equals the in-memory one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import weightlake as wl
from weightlake.experiments.evaluate import _gather_pairs


def test_evaluation_targets_under_the_budget(bounded_lake_dir: Path) -> None:
    small, roomy = wl.open_lake(bounded_lake_dir, memory="1MB"), wl.open_lake(bounded_lake_dir, memory="1GB")
    got, want = (_gather_pairs(lake, "s", "train", 300, 7) for lake in (small, roomy))
    np.testing.assert_array_equal(got.positions, want.positions)
    np.testing.assert_array_equal(got.targets, want.targets)
    assert got.targets.shape == (300, 2464) and not small._cache
