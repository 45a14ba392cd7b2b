"""Correlation tables against scipy, multiple-testing control, grouping, heatmaps."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.stats as st
from hypothesis import given, settings
from hypothesis import strategies as hs
from hypothesis.extra import numpy as hnp

from weightlake.analysis import correlations as C
from weightlake.arch import ACTIVATIONS, CNN_S
from weightlake.errors import ArchitectureError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def small_zoo(n: int = 240, seed: int = 0) -> tuple[np.ndarray, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    rows = (rng.standard_normal((n, CNN_S.n_params)) * 0.1).astype(np.float32)
    labels = [sorted(rng.choice(10, int(rng.integers(2, 7)), replace=False).tolist()) for _ in range(n)]
    acc = rng.uniform(50, 100, n) + 300 * rows[:, 0]  # parameter 0 drives accuracy
    rows[:, 2254] += np.array([0.05 * len(c) for c in labels], dtype=np.float32)  # fc2 weight ~ class count
    meta = pl.DataFrame({
        "accuracy": acc,
        "epoch": rng.choice([11, 16, 21], n),
        "activation": np.array(ACTIVATIONS[:3])[rng.integers(0, 3, n)],
        "label": [str(c) for c in labels],  # the CSV zoo's list repr
    })
    return rows, meta


def features_with_ties(n: int = 150, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, 12)) * 0.1).astype(np.float32)
    x[:, 1] = np.round(x[:, 1], 1)  # heavy ties
    x[:, 2] = rng.integers(0, 3, n)  # few levels
    x[:, 3] = -x[:, 0] * 2 + 0.01  # exact (negative) dependence
    x[:, 4] = 0.01  # constant (every bias at init)
    x[:5, 5] = 0.0
    x[5:10, 5] = -0.0  # signed zeros tie
    return x


def test_metadata_expansion() -> None:
    _, meta = small_zoo(40)
    names, y = C.metadata_matrix(meta)
    assert names[:5] == ["accuracy", "epoch", "activation=gelu", "activation=relu", "activation=silu"]
    assert [n for n in names if n.startswith("label has")] == [f"label has {d}" for d in range(10)]
    assert names[-1] == "label count"
    assert y.shape == (40, len(names))
    counts = [len(eval(s)) for s in meta["label"]]  # noqa: S307 - test data we wrote ourselves
    np.testing.assert_array_equal(y[:, -1], counts)
    np.testing.assert_array_equal(y[:, 2:5].sum(axis=1), 1)
    list_meta = meta.with_columns(pl.col("label").str.json_decode(pl.List(pl.Int64)))
    assert C.metadata_matrix(list_meta)[0] == names
    with pytest.raises(ArchitectureError, match="max_levels"):
        C.metadata_matrix(meta.with_columns(pl.col("accuracy").cast(pl.String)), max_levels=10)
    with pytest.raises(ArchitectureError, match="no column"):
        C.metadata_matrix(meta, ["nope"])
    # Was: "label count" and an asked-for n_classes (the same values) were both tested
    with_n = meta.with_columns(n_classes=pl.Series(counts))
    twice, _ = C.metadata_matrix(with_n, ["label", "n_classes"])
    assert "label count" not in twice and twice[-1] == "n_classes"
    assert "label count" in C.metadata_matrix(with_n, ["label", "accuracy"])[0]


@pytest.mark.parametrize(("method", "reference"), [("pearson", st.pearsonr), ("spearman", st.spearmanr)])
def test_matches_scipy_per_column(method: str, reference) -> None:
    x = features_with_ties()
    rng = np.random.default_rng(2)
    y = np.column_stack([x[:, 0] + rng.normal(0, 0.1, len(x)), rng.integers(0, 2, len(x)),
                         np.round(rng.normal(size=len(x)), 1)])
    kernel = C.pearson_matrix if method == "pearson" else C.spearman_matrix
    r = kernel(x, y)
    p = C.correlation_pvalues(r, len(x))
    for i in range(x.shape[1]):
        for j in range(y.shape[1]):
            if i == 4:
                assert np.isnan(r[i, j]) and np.isnan(p[i, j])
                continue
            ref = reference(x[:, i].astype(np.float64), y[:, j])
            assert r[i, j] == pytest.approx(ref.statistic, abs=1e-12)
            assert p[i, j] == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-300)


def test_small_block_and_single_thread_give_same_answer() -> None:
    x = features_with_ties(500)
    y = np.random.default_rng(3).normal(size=(500, 2))
    np.testing.assert_allclose(C.pearson_matrix(x, y, block=37, workers=1), C.pearson_matrix(x, y), rtol=1e-12)
    np.testing.assert_allclose(C.spearman_matrix(x, y, block=5, workers=1), C.spearman_matrix(x, y), rtol=1e-12)


def test_non_finite_values_give_nan() -> None:
    x = features_with_ties()
    x[3, 0], x[4, 6] = np.nan, np.inf
    y = np.random.default_rng(4).normal(size=(len(x), 1))
    for kernel in (C.pearson_matrix, C.spearman_matrix):
        r = kernel(x, y)
        assert np.isnan(r[[0, 4, 6]]).all()
        assert np.isfinite(r[[1, 2, 3, 7]]).all()


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
                  elements=hs.sampled_from([-2.5, -1.0, -0.0, 0.0, 1e-38, 0.5, 3.0, 7.25])
                  | hs.floats(-1e3, 1e3, width=32)))
def test_average_ranks_match_scipy(x: np.ndarray) -> None:
    np.testing.assert_array_equal(C.average_ranks(x), st.rankdata(x, axis=0).T)
    np.testing.assert_array_equal(C.average_ranks(x.astype(np.float64)), st.rankdata(x, axis=0).T)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float64, hs.integers(1, 60), elements=hs.floats(0, 1)))
def test_bh_matches_scipy(p: np.ndarray) -> None:
    np.testing.assert_allclose(C.bh_qvalues(p), st.false_discovery_control(p, method="bh"), rtol=1e-12)


def test_bh_and_bonferroni_skip_nan() -> None:
    p = np.array([0.01, np.nan, 0.04, 0.03, np.nan])
    q = C.bh_qvalues(p)
    np.testing.assert_allclose(q[[0, 2, 3]], st.false_discovery_control(p[[0, 2, 3]]))
    assert np.isnan(q[[1, 4]]).all()
    np.testing.assert_allclose(C.bonferroni(p), [0.03, np.nan, 0.12, 0.09, np.nan])


def test_param_correlations_table() -> None:
    rows, meta = small_zoo()
    table = C.param_correlations(rows, meta)
    k = len(C.metadata_matrix(meta)[0])
    assert table.columns == list(C.RESULT_COLUMNS)
    assert table.height == CNN_S.n_params * k * 2
    first = table.row(0, named=True)
    assert (first["feature"], first["param"], first["layer"], first["n"]) == ("weight 0", 0, "conv1", 240)
    bias = table.filter(pl.col("param") == 2454)
    assert set(bias["feature"]) == {"bias 2454"} and set(bias["layer"]) == {"fc2"}
    best = table.filter((pl.col("method") == "pearson") & (pl.col("against") == "accuracy")).sort("p").row(0, named=True)
    assert best["param"] == 0 and best["q"] < 1e-6
    count = table.filter((pl.col("against") == "label count") & (pl.col("method") == "spearman")).sort("p")
    assert count["param"][0] == 2254
    pearson = table.filter(pl.col("method") == "pearson")
    np.testing.assert_allclose(pearson["q"].to_numpy(), st.false_discovery_control(pearson["p"].to_numpy()))


def test_grouped_results_equal_per_group_runs() -> None:
    rows, meta = small_zoo()
    grouped = C.correlate(rows[:, :50], meta, group_by="activation", methods=("spearman",))
    assert grouped.columns == ["activation", *C.RESULT_COLUMNS]
    assert grouped["activation"].unique().sort().to_list() == ["gelu", "relu", "silu"]
    assert not grouped["against"].str.starts_with("activation").any()
    for act in ("gelu", "silu"):
        mask = (meta["activation"] == act).to_numpy()
        alone = C.correlate(rows[mask, :50], meta.filter(mask), columns=["accuracy", "epoch", "label"],
                            methods=("spearman",))
        part = grouped.filter(pl.col("activation") == act).drop("activation")
        assert part.equals(alone)
        assert set(part["n"]) == {int(mask.sum())}
    two = C.correlate(rows[:, :5], meta, group_by=["activation", "epoch"], methods=("pearson",))
    assert two.select("activation", "epoch").unique().height == 9


def test_aggregate_correlations() -> None:
    rows, meta = small_zoo(120)
    aggs = C.layer_aggregates(rows)
    assert aggs.height == 120
    assert "conv1.l2_norm" in aggs.columns and "fc1.stable_rank" in aggs.columns and "all.l2_norm" in aggs.columns
    np.testing.assert_allclose(aggs["fc2.l2_norm"].to_numpy(),
                               np.linalg.norm(CNN_S.select(rows, "fc2").reshape(120, -1).astype(np.float64), axis=1))
    table = C.aggregate_correlations(rows, meta, methods=("pearson",))
    assert set(table["layer"]) == {*CNN_S.layer_names, "all"}
    alpha_small = table.filter(pl.col("feature") == "conv1.alpha")
    assert alpha_small["r"].is_nan().all()  # alpha is NaN for layers with fewer than 10 eigenvalues
    assert table.filter(pl.col("feature") == "fc1.alpha")["r"].is_finite().all()


def test_param_correlation_matrix() -> None:
    rows, _ = small_zoo(200)
    layer = CNN_S.layer("conv3")
    block = rows[:, layer.start:layer.stop].astype(np.float64)
    mat = C.param_correlation_matrix(rows, layer="conv3", dtype=np.float64)
    np.testing.assert_allclose(mat, np.corrcoef(block, rowvar=False), atol=1e-12)
    spear = C.param_correlation_matrix(rows, layer="conv3", method="spearman", dtype=np.float64)
    np.testing.assert_allclose(spear, st.spearmanr(block).statistic, atol=1e-12)
    const = rows.copy()
    const[:, layer.bias_start] = 0.01
    assert np.isnan(C.param_correlation_matrix(const, layer="conv3")[layer.weight_size]).all()


def test_spearman_fast_path_matches_scipy_with_many_ties_and_blocks() -> None:
    """float32 fast path (packed sort keys, sparse tie fix-up, per-thread buffers reused over blocks of
    different widths) against scipy.stats.spearmanr per column, and against the float64 path."""
    rng = np.random.default_rng(5)
    n = 3000
    x = (rng.standard_normal((n, 23)) * 0.1).astype(np.float32)
    x[:, 0] = np.round(x[:, 0], 2)  # long tie runs
    x[:, 1] = rng.integers(0, 2, n)  # two levels
    x[::7, 2] = 0.125  # one big run inside distinct values
    x[:10, 3], x[10:20, 3] = 0.0, -0.0
    y = np.column_stack([x[:, 0] + rng.normal(0, 0.05, n), rng.integers(0, 3, n), rng.normal(size=n)])
    r = C.spearman_matrix(x, y, block=5, workers=2)
    for i in range(x.shape[1]):
        for j in range(y.shape[1]):
            assert r[i, j] == pytest.approx(st.spearmanr(x[:, i].astype(np.float64), y[:, j]).statistic, abs=1e-12)
    np.testing.assert_allclose(C.spearman_matrix(x.astype(np.float64), y), r, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(C.average_ranks(x), st.rankdata(x, axis=0).T)


def test_pearson_blocks_match_scipy_on_offset_columns() -> None:
    """Row blocks of the reused buffer, the ones column for the sums, one BLAS thread: same r as scipy."""
    rng = np.random.default_rng(6)
    n = 1500
    x = (0.01 + rng.standard_normal((n, 9)) * 1e-4).astype(np.float32)  # bias-like: large offset, small spread
    y = np.column_stack([x[:, 0] * 3 + rng.normal(0, 1e-4, n), rng.integers(0, 2, n)])
    r = C.pearson_matrix(x, y, block=300, workers=2)
    for i in range(x.shape[1]):
        for j in range(y.shape[1]):
            assert r[i, j] == pytest.approx(st.pearsonr(x[:, i].astype(np.float64), y[:, j]).statistic, abs=1e-12)


@pytest.mark.parametrize("n", [3, 4, 5, 7])
def test_spearman_p_of_a_few_models_with_ties_is_the_exact_permutation_test(n: int) -> None:
    """At n <= 7 the Spearman p is the exact permutation test (scipy's, to 1e-12), ties included: the t
    form gave 0.333 to 3 models in the order of their epochs with two epochs tied, where the exact test gives 0.667."""
    rng = np.random.default_rng(n)
    x = np.column_stack([np.arange(n), rng.integers(0, 3, n), rng.standard_normal(n), np.ones(n),
                         np.r_[np.nan, np.arange(n - 1)]]).astype(np.float32)
    meta = pl.DataFrame({"epoch": np.r_[0, 0, np.arange(n - 2) + 1] * 5, "acc": rng.integers(0, 2, n) * 1.0})
    table = C.correlate(x, meta, methods=["spearman"])
    for row in table.iter_rows(named=True):
        xi, yj = x[:, int(row["feature"])].astype(np.float64), meta[row["against"]].to_numpy().astype(np.float64)
        if not np.isfinite(xi).all() or np.ptp(xi) == 0 or np.ptp(yj) == 0:
            assert row["p"] is None or np.isnan(row["p"])
            continue
        exact = st.permutation_test((xi,), lambda a, yj=yj: st.spearmanr(a, yj).statistic,
                                    permutation_type="pairings").pvalue
        assert row["p"] == pytest.approx(exact, rel=1e-12, abs=1e-12), row
    if n == 3:
        t_form = C.correlation_pvalues(np.array([st.spearmanr(x[:, 0], meta["epoch"]).statistic]), 3)[0]
        assert t_form == pytest.approx(1 / 3, abs=1e-9)  # what the t form said
        assert table.filter((pl.col("feature") == "0") & (pl.col("against") == "epoch"))["p"][0] == pytest.approx(2 / 3)


def test_spearman_p_above_the_exact_size_is_the_t_form() -> None:
    """At n = 8 the p-value is scipy's spearmanr (the t form), to 1e-10."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((8, 3)).astype(np.float32)
    meta = pl.DataFrame({"epoch": rng.integers(0, 4, 8)})
    table = C.correlate(x, meta, methods=["spearman"])
    for i in range(3):
        ref = st.spearmanr(x[:, i].astype(np.float64), meta["epoch"].to_numpy()).pvalue
        assert table["p"][i] == pytest.approx(max(ref, C.spearman_p_floor(8)), rel=1e-10)


def test_exact_spearman_refuses_a_large_n() -> None:
    with pytest.raises(ValueError, match="n <= 7"):
        C.spearman_exact_pvalues(np.zeros((8, 1)), np.zeros((8, 1)), np.zeros((1, 1)))


@pytest.mark.parametrize("n", [3, 4, 5, 6])
def test_spearman_p_of_a_few_models_is_never_below_the_exact_test(n: int) -> None:
    """The t form gave p = 0 (q = 0, a significant cell) to a perfect rank order of 3-6 models: the exact
    permutation test (scipy) gives 2 / n!, at n <= 4 never below 0.05."""
    x = np.column_stack([np.arange(n) ** 2, np.arange(n)[::-1] + 0.5]).astype(np.float32)  # rho = +1, -1
    meta = pl.DataFrame({"epoch": np.arange(n) * 5})
    table = C.correlate(x, meta, methods=["spearman"])
    for i in range(x.shape[1]):
        exact = st.permutation_test((x[:, i].astype(np.float64),),
                                    lambda a: st.spearmanr(a, meta["epoch"].to_numpy()).statistic,
                                    permutation_type="pairings").pvalue
        assert table["p"][i] == pytest.approx(exact, rel=1e-12) == pytest.approx(C.spearman_p_floor(n))
    if n <= 4:
        assert (table["q"] > 0.05).all()
