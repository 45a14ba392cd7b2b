"""Every wl_* SQL function agrees with the Python function behind it, on a real lake."""

from __future__ import annotations

import numpy as np
import pytest

import weightlake as wl
from weightlake.analysis.metrics import METRICS, per_layer
from weightlake.analysis.udfs import MACROS, register_udfs
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
    # the macro forms accumulate in float64, numpy's functions sum float32 rows in float32; a difference
    # of two norms (l2/log_norm_diff) loses digits to cancellation, so those get an absolute bound
    rtol = 1e-5 if f"wl_{spec.name}" in MACROS else 1e-6
    if spec.name in ("l2_norm_diff", "log_norm_diff"):
        rtol = 1e-6 * float(np.linalg.norm(x.astype(np.float64), axis=1).max())
    np.testing.assert_allclose(got, np.asarray(want, dtype=np.float64), rtol=rtol, atol=1e-12)


MACRO_REFERENCE = {  # float64 references computed here, not by the functions under test
    "wl_l2": lambda x, y: np.sqrt((x * x).sum(1)),
    "wl_mse": lambda x, y: ((x - y) ** 2).mean(1),
    "wl_cosine": lambda x, y: (x * y).sum(1) / np.sqrt((x * x).sum(1) * (y * y).sum(1)),
    "wl_l2_norm_diff": lambda x, y: np.abs(np.sqrt((x * x).sum(1)) - np.sqrt((y * y).sum(1))),
    "wl_log_norm_diff": lambda x, y: np.abs(np.log(np.sqrt((x * x).sum(1))) - np.log(np.sqrt((y * y).sum(1)))),
}


@pytest.mark.parametrize("macros", [True, False], ids=["macro", "python-udf"])
@pytest.mark.parametrize("name", sorted(MACROS))
def test_macro_and_udf_forms_match_float64_reference(lake, rows, name, macros):
    con = lake.connect(udfs=False)  # a connection of our own, so the Python forms can be registered
    register_udfs(con, lake, only={name}, macros=macros)
    args = "a.w" if MACROS[name][0] == "w" else "a.w, b.w"
    got = con.sql(f"SELECT {name}({args}) AS v {PAIRS}").fetchnumpy()["v"]
    x, y = (r.astype(np.float64) for r in rows)
    # macros accumulate in float64 (1e-12); the Python UDFs sum float32 in float32 (about 1e-6 relative,
    # more for a difference of norms, so those are bounded relative to the norms)
    want, norm = MACRO_REFERENCE[name](x, y), float(np.sqrt((x * x).sum(1)).max())
    if macros and name == "wl_l2":  # the one macro that sums in float32 (array_inner_product)
        np.testing.assert_allclose(got, want, rtol=1e-5)
    elif macros:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14 * norm)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * norm)
    is_macro = con.sql(f"SELECT count(*) FROM duckdb_functions() WHERE function_name = '{name}' "
                       "AND function_type = 'macro'").fetchall()[0][0] > 0
    assert is_macro == macros


def test_macros_handle_zero_vectors_as_numpy_does(lake):
    con = lake.connect(udfs=False)
    register_udfs(con, lake, only=set(MACROS))
    zero, one = "[0, 0, 0]::FLOAT[3]", "[1, 2, 2]::FLOAT[3]"
    row = con.sql(f"SELECT wl_cosine({zero}, {one}), wl_log_norm_diff({zero}, {one}), wl_l2({one}), "
                  f"wl_mse({zero}, {one}), wl_l2_norm_diff({zero}, {one})").fetchall()[0]
    assert np.isnan(row[0]) and np.isnan(row[1])
    assert row[2:] == (3.0, 3.0, 3.0)


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


def test_per_layer_forms_with_a_layer_per_row(lake, rows):
    """Rows asking for different layers (not one constant name): each row gets its own layer's value."""
    x, y = rows
    name = "CASE WHEN a.model_id % 3 = 0 THEN 'fc1' WHEN a.model_id % 3 = 1 THEN 'conv2' ELSE 'fc2' END"
    df = lake.sql(f"SELECT a.model_id AS id, wl_mse_layer(a.w, b.w, {name}) AS v, "
                  f"wl_mse_layer_by_id(a.model_id, b.model_id, {name}) AS i {PAIRS}")
    layers = per_layer("mse", x, y)
    ids = df["id"].to_numpy()
    want = np.choose(ids % 3, [layers["fc1"], layers["conv2"], layers["fc2"]])
    np.testing.assert_allclose(df["v"].to_numpy(), want, rtol=1e-6)
    np.testing.assert_array_equal(df["v"].to_numpy(), df["i"].to_numpy())


def test_by_id_pairs_in_a_join_order_equal_the_vector_forms(lake):
    """Consecutive pairs handed over out of order (as a hash join does) are computed in id order
    on views of the zoo and put back: every row equals the vector form's, with a layer per row too."""
    import pyarrow as pa

    from weightlake.analysis.udfs import _id_order

    n = int(lake.sql("SELECT count(*) AS n FROM models")["n"][0])
    a = np.random.default_rng(3).permutation(n - 1)  # ids 0 .. n - 2 shuffled, each with its next
    assert _id_order(a, a + 1) is not None and _id_order(np.sort(a), np.sort(a) + 1) is None
    assert _id_order(a, a + 2 * (a % 2)) is None  # the other side not consecutive: gathered as given
    con = lake.connect()
    con.register("shuffled", pa.table({"a": a, "b": a + 1, "k": np.arange(n - 1)}))
    name = "CASE WHEN a % 3 = 0 THEN 'fc1' WHEN a % 3 = 1 THEN 'conv2' ELSE 'fc2' END"
    got = con.sql(f"SELECT wl_mse_by_id(a, b) AS m, wl_cosine_by_id(a, b) AS c, wl_mae_by_id(a, b) AS e, "
                  f"wl_mse_layer_by_id(a, b, 'conv2') AS l, wl_mse_layer_by_id(a, b, {name}) AS lr "
                  "FROM shuffled ORDER BY k").pl()
    x, y = lake.weights_numpy(a), lake.weights_numpy(a + 1)
    from weightlake.analysis import metrics

    np.testing.assert_array_equal(got["e"].to_numpy(), metrics.mae(x, y))
    np.testing.assert_allclose(got["m"].to_numpy(), metrics.mse(x, y), rtol=1e-6)
    np.testing.assert_allclose(got["c"].to_numpy(), METRICS["cosine"].fn(x, y), rtol=1e-6)
    layers = per_layer("mse", x, y)
    np.testing.assert_array_equal(got["l"].to_numpy(), layers["conv2"])
    want = np.choose(a % 3, [layers["fc1"], layers["conv2"], layers["fc2"]])
    np.testing.assert_array_equal(got["lr"].to_numpy(), want)


@pytest.mark.parametrize("macros", [True, False], ids=["macro", "python-udf"])
@pytest.mark.parametrize("name", sorted(set(MACROS) - {"wl_l2"}))
def test_a_missing_side_of_an_outer_join_gives_null(lake, name, macros):
    # DuckDB's list functions refused a whole query when one row's vector was NULL
    con = lake.connect(udfs=False)
    register_udfs(con, lake, macros=macros)
    views = ("weights", "weights_fc1") if macros else ("weights",)  # the Python forms take whole vectors
    for view in views:
        got = con.execute(f"SELECT a.model_id, {name}(a.w, b.w) FROM {view} a LEFT JOIN {view} b "
                          "ON b.model_id = a.model_id + 1 ORDER BY 1").fetchall()
        assert got[-1][1] is None
        assert all(v is not None for _, v in got[:-1])


def test_cosine_stays_within_one(lake):
    got = lake.sql("SELECT max(wl_cosine_by_id(model_id, model_id)) AS a, "
                   "max(acos(wl_cosine_layer_by_id(model_id, model_id, 'fc1'))) IS NOT NULL AS b FROM models")
    assert got["a"][0] <= 1.0 and got["b"][0]


@pytest.fixture(scope="module")
def two_arch_lake(tmp_path_factory, small_csv):
    """The small CNN-s zoo and a zoo of a smaller CNN (architecture inferred from its checkpoints)."""
    import json

    import torch
    from torch import nn

    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.ingest.modelzoo import ingest_modelzoo

    base = tmp_path_factory.mktemp("two-arch")
    ingest_csv(base / "lake", small_csv, zoo="mnist-cnn-s", init="kaiming_uniform")
    for r in range(3):
        run = base / "tiny zoo" / f"run_{r} [relu]"
        for e in (1, 2):
            (run / f"checkpoint_{e}").mkdir(parents=True)
            torch.manual_seed(10 * r + e)
            net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 4, 3), nn.Flatten(), nn.Linear(64, 10))
            torch.save(net.state_dict(), run / f"checkpoint_{e}" / "checkpoints")
        (run / "params.json").write_text(json.dumps({"model::activation": "relu", "seed": r}))
    ingest_modelzoo(base / "lake", base / "tiny zoo", zoo="tiny")
    return wl.open_lake(base / "lake")


def test_by_id_forms_take_each_zoos_architecture(two_arch_lake):
    from weightlake.arch import get_architecture
    from weightlake.errors import QueryError

    lake = two_arch_lake
    tiny = get_architecture(lake.manifest.zoo("tiny").arch)
    ids, rows = lake.zoo_weights("tiny")
    a, b = int(ids[0]), int(ids[1])
    for layer in (tiny.layer_names[0], tiny.layer_names[-1]):
        span = tiny.layer(layer)
        want = float(((rows[0, span.start:span.stop].astype(np.float64)
                       - rows[1, span.start:span.stop]) ** 2).mean())
        got = lake.sql(f"SELECT wl_mse_layer_by_id({a}, {b}, '{layer}') AS v")["v"][0]
        np.testing.assert_allclose(got, want, rtol=1e-6)
    w1 = lake.sql(f"SELECT wl_w1_by_id({a}, {b}) AS t, wl_w1_by_id(0, 1) AS c")
    x, y = np.sort(rows[0].astype(np.float64)), np.sort(rows[1].astype(np.float64))
    np.testing.assert_allclose(w1["t"][0], np.abs(x - y).mean(), rtol=1e-6)
    assert np.isfinite(w1["c"][0])
    with pytest.raises(QueryError, match="different architectures"):
        lake.sql(f"SELECT wl_mse_by_id(0, {a})")
    with pytest.raises(QueryError, match="different architectures"):
        lake.sql(f"SELECT wl_w1_by_id(0, {a})")
    with pytest.raises(QueryError, match="has no layer 'conv3'"):
        lake.sql(f"SELECT wl_mse_layer_by_id({a}, {b}, 'conv3')")
