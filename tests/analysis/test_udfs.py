"""Every wl_* SQL function agrees with the Python function behind it, on a real lake."""

from __future__ import annotations

import numpy as np
import pytest

import weightlake as wl
from weightlake.analysis.metrics import METRICS, per_layer
from weightlake.arch import CNN_S

PAIRS = "FROM weights a JOIN weights b ON b.model_id = a.model_id + 7 WHERE a.model_id < 60 ORDER BY a.model_id"


@pytest.fixture(scope="module")
def lake(small_lake_dir):
    return wl.open_lake(small_lake_dir)


@pytest.fixture(scope="module")
def rows(lake):
    ids = np.arange(60)
    return lake.weights_numpy(ids), lake.weights_numpy(ids + 7)


FAST = [s for s in METRICS.values() if not s.slow]


@pytest.mark.parametrize("spec", FAST, ids=[s.name for s in FAST])
def test_metric_udf_matches_python(lake, rows, spec):
    x, y = rows
    if spec.arity == 1:
        got = lake.sql(f"SELECT wl_{spec.name}(a.w) AS v {PAIRS}")["v"].to_numpy()
        want = spec.fn(x)
    else:
        got = lake.sql(f"SELECT wl_{spec.name}(a.w, b.w) AS v {PAIRS}")["v"].to_numpy()
        kwargs = {"arch": CNN_S} if spec.scope in ("layers", "whole") else {}
        want = spec.fn(x, y, **kwargs)
    np.testing.assert_allclose(got, np.asarray(want, dtype=np.float64), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("layer", CNN_S.layer_names)
def test_per_layer_udf_matches_per_layer(lake, rows, layer):
    x, y = rows
    got = lake.sql(f"SELECT wl_mse_layer(a.w, b.w, '{layer}') AS v {PAIRS}")["v"].to_numpy()
    np.testing.assert_allclose(got, per_layer("mse", x, y)[layer], rtol=1e-6)


def test_layer_extraction_and_norms(lake, rows):
    x, _ = rows
    df = lake.sql(f"SELECT wl_layer(a.w, 'fc1') AS fc1, wl_layer(a.w, 'conv1.bias') AS b, wl_l2(a.w) AS l2 {PAIRS}")
    np.testing.assert_array_equal(np.stack(df["fc1"].to_list()), x[:, 1514:2234])
    np.testing.assert_array_equal(np.stack(df["b"].to_list()), x[:, 200:208])
    np.testing.assert_allclose(df["l2"].to_numpy(), np.linalg.norm(x.astype(np.float64), axis=1), rtol=1e-6)


def test_unknown_layer_is_a_clear_error(lake):
    from weightlake.errors import QueryError

    with pytest.raises(QueryError, match="no layer 'fc9'"):
        lake.sql("SELECT wl_mse_layer(w, w, 'fc9') FROM weights")


def test_by_id_forms_match_vector_forms(lake):
    q = ("SELECT wl_w1(a.w, b.w) AS v, wl_w1_by_id(a.model_id, b.model_id) AS i, "
         "wl_mse_layer(a.w, b.w, 'conv2') AS lv, wl_mse_layer_by_id(a.model_id, b.model_id, 'conv2') AS li, "
         "wl_saturation_share(a.w) AS sv, wl_saturation_share_by_id(a.model_id) AS si " + PAIRS)
    df = lake.sql(q)
    np.testing.assert_array_equal(df["v"].to_numpy(), df["i"].to_numpy())
    np.testing.assert_array_equal(df["lv"].to_numpy(), df["li"].to_numpy())
    np.testing.assert_array_equal(df["sv"].to_numpy(), df["si"].to_numpy())


def test_by_id_unknown_model(lake):
    from weightlake.errors import QueryError

    with pytest.raises(QueryError, match="no model with id 999999"):
        lake.sql("SELECT wl_mse_by_id(999999, 0)")
