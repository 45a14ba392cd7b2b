"""Fixtures of the compute tests: comparing a committed table with a reference."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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


def _lake_with_a_bad_weight(src: Path, dst: Path, zoo: str, row: int, col: int, value: float = np.nan) -> int:
    """A copy of ``src``'s zoo in a new lake ``dst`` (same layout) with ``value`` at ``[row, col]`` of its weight
    rows, as a lake written before ingestion refused non-finite weights holds it; returns that model's id."""
    import weightlake as wl
    from weightlake.ingest.common import IngestReport, ZooWriter
    from weightlake.storage.transaction import transaction

    lake = wl.open_lake(src)
    ids, rows = lake.zoo_weights(zoo)
    rows = np.array(rows, dtype=np.float32)
    rows[row, col] = value
    meta = lake.models(zoo).collect()
    order = {mid: i for i, mid in enumerate(meta["model_id"].to_list())}
    meta = meta[[order[int(i)] for i in ids]].drop("model_id", "weights_hash")
    layout = lake.manifest.zoo(zoo).segments[0].layout
    with transaction(dst) as tx:
        writer = ZooWriter(tx, zoo, lake.arch(zoo), IngestReport(zoo=zoo, source=str(src)), layout=layout)
        writer.add(meta, rows)
        written = writer.finish()
        tx.commit({"op": "ingest-test", "zoo": zoo, "summary": "a copy with one non-finite weight"})
    return int(written["model_id"][row])


@pytest.fixture()
def lake_with_a_bad_weight() -> Callable[..., int]:
    """``lake_with_a_bad_weight(src, dst, zoo, row, col, value=nan)``: ``src``'s zoo copied into lake ``dst``
    with one non-finite weight; returns the id of the model holding it."""
    return _lake_with_a_bad_weight
