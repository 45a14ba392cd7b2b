"""Result tables built through disk (compute/spill.py) equal the concatenation of their parts."""

from __future__ import annotations

import os

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightlake.compute.spill import SpilledParts

LAYERS = pl.Enum(["conv1", "fc1"])


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(0, 50), min_size=1, max_size=6))
def test_parts_collect_to_their_concatenation(sizes) -> None:
    parts = [pl.DataFrame({"model_id": list(range(n)), "layer": pl.Series(["fc1"] * n, dtype=LAYERS),
                           "v": [i / 3 for i in range(n)], "note": [None] * n},
                          schema={"model_id": pl.Int64, "layer": LAYERS, "v": pl.Float64, "note": pl.String})
             for n in sizes]
    with SpilledParts() as spill:
        for p in parts:
            spill.add(p)
        got = spill.collect()
        folder = spill._tmp.name
    assert got.equals(pl.concat(parts)) and got.schema == parts[0].schema
    assert not os.path.exists(folder)  # removed on exit


def test_no_parts_is_an_error() -> None:
    with SpilledParts() as spill, pytest.raises(ValueError, match="no parts"):
        spill.collect()


def test_a_folder_with_brackets_is_no_glob_pattern(tmp_path) -> None:
    """polars reads ``[0, 1]`` in a path as a character class unless told not to."""
    where = tmp_path / "overlapping 0 [0, 1] 11 gelu"
    where.mkdir()
    parts = [pl.DataFrame({"v": [1, 2]}), pl.DataFrame({"v": [3]})]
    with SpilledParts(dir=where) as spill:
        for p in parts:
            spill.add(p)
        assert spill.collect()["v"].to_list() == [1, 2, 3]
