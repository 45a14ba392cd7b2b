"""The ``wl_*_by_id`` SQL functions under a memory budget smaller than the zoo equal the in-memory ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import weightlake as wl

TINY = "1MB"
FUNCTIONS = ("wl_w1_by_id(a, b) AS w1, wl_w2_by_id(a, b) AS w2, wl_mse_by_id(a, b) AS mse, "
             "wl_cosine_by_id(a, b) AS cos, wl_mse_layer_by_id(a, b, 'conv2') AS mse_conv2, "
             "wl_saturation_share_by_id(a) AS sat")


@pytest.fixture(scope="module")
def lakes(bounded_lake_dir: Path) -> tuple[wl.Lake, wl.Lake]:
    return wl.open_lake(bounded_lake_dir, memory="1GB"), wl.open_lake(bounded_lake_dir, memory=TINY)


@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_by_id_rows_equal_in_memory_ones(lakes, data) -> None:
    roomy, small = lakes
    n = roomy.manifest.zoo("mnist-cnn-s").n_models
    a = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3000))
    b = data.draw(st.lists(st.integers(0, n - 1), min_size=len(a), max_size=len(a)))
    q = f"SELECT i, {FUNCTIONS} FROM (SELECT unnest($a) AS a, unnest($b) AS b, unnest(range(len($a))) AS i) ORDER BY i"
    want, got = (lake.sql(q, {"a": a, "b": b}) for lake in (roomy, small))
    assert want.columns == got.columns and want.height == len(a)
    for col in want.columns:
        np.testing.assert_array_equal(got[col].to_numpy(), want[col].to_numpy(), err_msg=col)
    assert not small._cache  # the zoo was never decoded whole on the small handle


def test_an_aggregate_over_pairs_equals_the_in_memory_one(lakes) -> None:
    roomy, small = lakes
    q = ("SELECT split, count(*) AS n, avg(wl_w1_by_id(a_id, b_id)) AS w1, avg(wl_mse_by_id(a_id, target_id)) AS mse "
         "FROM pairs WHERE scenario = 's' GROUP BY split ORDER BY split")
    want, got = roomy.sql(q), small.sql(q)
    assert want.height == 3
    for col in want.columns:
        if col != "split":
            np.testing.assert_allclose(got[col].to_numpy(), want[col].to_numpy(), rtol=1e-12, err_msg=col)


def test_unknown_ids_are_refused_under_the_budget(lakes) -> None:
    from weightlake.errors import QueryError

    with pytest.raises(QueryError, match="no model with id 999999"):
        lakes[1].sql("SELECT wl_mse_by_id(999999, 0)")
