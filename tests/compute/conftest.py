"""Fixtures of the compute tests: comparing a committed table with a reference."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import pytest


def _assert_same_table(got: pl.DataFrame, want: pl.DataFrame, atol: float = 1e-12) -> None:
    """Same columns and rows in the same order; non-floats equal, floats within ``atol`` (NaN where NaN)."""
    assert got.columns == want.columns and got.height == want.height
    for col in got.columns:
        a, b = got[col], want[col]
        if a.dtype.is_float():
            np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=0, atol=atol, equal_nan=True, err_msg=col)
        else:
            assert a.equals(b), col


@pytest.fixture()
def assert_same_table() -> Callable[..., None]:
    """``assert_same_table(got, want, atol=1e-12)``: two tables equal row for row within ``atol``."""
    return _assert_same_table

