"""analyze pair-metrics: distances between the models of each pair of a scenario, locally and on Dask."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import weightlake as wl
from weightlake.cli import main
from weightlake.compute.pair_metrics import analyze_pair_metrics
from weightlake.errors import QueryError

METRICS = ["mse", "cosine", "w1", "kl", "sliced_w"]


@pytest.fixture()
def pair_lake(tmp_path: Path, analysed_lake_dir: Path) -> Path:
    """A private copy of the analysed lake (scenario 't' declared over its zoo)."""
    root = tmp_path / "lake"
    shutil.copytree(analysed_lake_dir, root)
    return root


def test_pair_metrics_agree_with_the_sql_functions_and_scipy(pair_lake: Path) -> None:
    from scipy.stats import wasserstein_distance

    report = analyze_pair_metrics(pair_lake, scenario="t", metrics=METRICS)
    lake = wl.open_lake(pair_lake)
    long = lake.table("pair_metrics").collect()
    pairs = lake.table("pairs").filter(pl.col("scenario") == "t").collect().sort("pair_id")
    assert report.rows == long.height == 3 * pairs.height * len(METRICS) > 0
    assert long["layer"].is_null().all() and sorted(long["metric"].unique()) == sorted(METRICS)
    table = long.pivot("metric", index=["split", "pair_id", "couple", "pred_id", "ref_id"], values="value")
    assert report.n_models == len(np.unique(pairs.select("a_id", "b_id", "target_id").to_numpy()))
    a_t = table.filter(pl.col("couple") == "a_target").sort("pair_id")
    assert a_t["pred_id"].to_list() == pairs["a_id"].to_list()
    assert a_t["ref_id"].to_list() == pairs["target_id"].to_list()
    assert a_t["split"].to_list() == pairs["split"].to_list()
    # the same numbers through DuckDB's wl_*_by_id functions (the registry both use), rel 1e-9
    sql = lake.sql("SELECT pair_id, wl_mse_by_id(a_id, target_id) AS mse, wl_cosine_by_id(a_id, target_id) AS cosine, "
                   "wl_w1_by_id(a_id, target_id) AS w1 FROM pairs WHERE scenario = 't' ORDER BY pair_id")
    for col in ("mse", "cosine", "w1"):
        np.testing.assert_allclose(a_t[col].to_numpy(), sql[col].to_numpy(), rtol=1e-9, atol=1e-12, err_msg=col)
    # W1 of the two value distributions against scipy, for a few couples
    for row in table.sample(5, seed=0).iter_rows(named=True):
        a, b = lake.weights_numpy([row["pred_id"], row["ref_id"]])
        assert row["w1"] == pytest.approx(wasserstein_distance(a, b), rel=1e-5)
    params = json.loads(lake.manifest.table("pair_metrics").properties["params:t"])
    assert params["pairs"] == pairs.height and params["engine"] == "local"
    # pairs with a fallback target are included, and said (the report counted them nowhere)
    n_fallback = int(pairs["fallback"].sum())
    assert params["fallback_pairs"] == n_fallback
    said = [n for n in report.notes if "have a fallback target" in n]
    assert said == ([f"{n_fallback} of them have a fallback target (an earlier or early-stopped model, "
                     "pairs.fallback): included; join pairs and filter NOT fallback to leave them out"]
                    if n_fallback else [])


def test_a_zoo_over_the_budget_is_read_per_block_with_the_same_result(pair_lake: Path, assert_same_table) -> None:
    import warnings

    from weightlake.storage.budget import BudgetWarning

    analyze_pair_metrics(pair_lake, scenario="t", metrics=METRICS, per_layer=True)
    want = wl.open_lake(pair_lake).table("pair_metrics").collect().drop("snapshot")
    with warnings.catch_warnings():
        warnings.simplefilter("error", BudgetWarning)
        analyze_pair_metrics(pair_lake, scenario="t", metrics=METRICS, per_layer=True, memory="1MB")
    got = wl.open_lake(pair_lake).table("pair_metrics").collect().drop("snapshot")
    assert got.filter(pl.col("metric") == "w1")["layer"].n_unique() == 1 + len(wl.open_lake(pair_lake).arch().layers)
    assert_same_table(got, want, atol=0)


def test_one_split_replaces_that_split_only(pair_lake: Path) -> None:
    analyze_pair_metrics(pair_lake, scenario="t", metrics=["mse"])
    before = wl.open_lake(pair_lake).table("pair_metrics").collect()
    report = analyze_pair_metrics(pair_lake, scenario="t", split="test", metrics=["mse", "cosine"])
    after = wl.open_lake(pair_lake).table("pair_metrics").collect()
    test = after.filter(pl.col("split") == "test")
    assert report.rows == test.height == 2 * before.filter(pl.col("split") == "test").height > 0
    assert sorted(test["metric"].unique()) == ["cosine", "mse"]
    assert after.filter(pl.col("split") != "test").equals(before.filter(pl.col("split") != "test"))


def test_cli_help_and_bad_input(pair_lake: Path, tree_state) -> None:
    runner = CliRunner()
    help_text = runner.invoke(main, ["analyze", "pair-metrics", "--help"]).output
    assert "a_target = (a, target)" in help_text and "--dask" in help_text and "Example" in help_text
    state = tree_state(pair_lake)
    result = runner.invoke(main, ["analyze", "pair-metrics", "--scenario", "t", "--metrics", "mse,nope",
                                  "--lake", str(pair_lake)])
    assert result.exit_code == 1 and "unknown metric(s) ['nope']" in result.output
    assert result.output.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in result.output
    result = runner.invoke(main, ["analyze", "pair-metrics", "--scenario", "zz", "--lake", str(pair_lake)])
    assert result.exit_code == 1 and "no scenario 'zz'" in result.output
    assert tree_state(pair_lake) == state
    with pytest.raises(QueryError):
        analyze_pair_metrics(pair_lake, scenario="t", metrics=["nope"])
    out = runner.invoke(main, ["analyze", "pair-metrics", "--scenario", "t", "--split", "val", "--metrics", "mse",
                               "--lake", str(pair_lake)])
    assert out.exit_code == 0 and "table 'pair_metrics'" in out.output, out.output


@pytest.mark.slow
def test_pair_metrics_on_a_local_cluster_equal_the_local_run(pair_lake: Path, assert_same_table,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Two worker processes on 127.0.0.1, several tasks; every value identical (atol 0)."""
    pytest.importorskip("distributed")
    from weightlake.compute import pair_metrics
    from weightlake.compute.dask_runs import analyze_pair_metrics_dask

    monkeypatch.setattr(pair_metrics, "PAIR_BLOCK", 50)
    analyze_pair_metrics(pair_lake, scenario="t", metrics=METRICS, per_layer=True)
    want = wl.open_lake(pair_lake).table("pair_metrics").collect().drop("snapshot")
    report = analyze_pair_metrics_dask(pair_lake, scenario="t", address="local", metrics=METRICS, per_layer=True)
    got = wl.open_lake(pair_lake).table("pair_metrics").collect().drop("snapshot")
    assert any("ran on Dask (local)" in n for n in report.notes) and report.rows == got.height
    assert_same_table(got, want, atol=0)


@pytest.mark.parametrize("memory", [None, "1MB"])  # the zoo decoded once, or read per block from the store
def test_a_non_finite_weight_is_refused_not_committed_as_nan(analysed_lake_dir: Path, tmp_path: Path, tree_state,
                                                             lake_with_a_bad_weight, memory) -> None:
    """pair-metrics ran no check: every metric of each couple naming that model went into the table as NaN."""
    from weightlake.scenarios import declare_scenario

    root = tmp_path / "lake"
    model_id = lake_with_a_bad_weight(analysed_lake_dir, root, "mnist-cnn-s", 0, 10, np.inf)
    declare_scenario(root, "t", zoo="mnist-cnn-s", digits=range(4), sizes=range(2, 4), overlap=(0, 2))
    before = tree_state(root)
    with pytest.raises(QueryError, match=rf"zoo 'mnist-cnn-s': 1 models have non-finite weights \(model_id {model_id}\)"):
        analyze_pair_metrics(root, scenario="t", metrics=METRICS, memory=memory)
    assert tree_state(root) == before


def test_declaring_the_scenario_again_drops_its_pair_metrics(pair_lake: Path) -> None:
    """The rows were keyed by the old pairs' ids, so they described pairs the scenario no longer held."""
    from weightlake.scenarios import declare_scenario

    declare_scenario(pair_lake, "u", zoo="mnist-cnn-s", digits=range(4), sizes=range(2, 4), overlap=(0, 2))
    analyze_pair_metrics(pair_lake, scenario="u", metrics=["mse"])
    analyze_pair_metrics(pair_lake, scenario="t", metrics=["mse"])
    before = wl.open_lake(pair_lake).table("pair_metrics").collect()
    assert set(before["scenario"]) == {"t", "u"}
    report = declare_scenario(pair_lake, "u", zoo="mnist-cnn-s", digits=range(4), sizes=range(2, 3), overlap=(0,))
    assert any("the pair metrics of its earlier pairs are dropped" in n for n in report.notes), report.notes
    after = wl.open_lake(pair_lake).table("pair_metrics").collect()
    assert set(after["scenario"]) == {"t"} and after.equals(before.filter(pl.col("scenario") == "t"))
    again = declare_scenario(pair_lake, "u", zoo="mnist-cnn-s", digits=range(4), sizes=range(2, 3), overlap=(0,))
    assert not any("pair metrics" in n for n in again.notes)  # nothing left to drop: nothing said
