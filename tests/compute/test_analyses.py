"""Analysis results committed as lake tables, read back through SQL, polars and the CLI."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import weightlake as wl
from weightlake.analysis.distinct import distinct_models
from weightlake.analysis.spectra import zoo_spectra
from weightlake.cli import main
from weightlake.errors import QueryError


def test_spectra_table_matches_the_array_function(analysed_lake_dir):
    lake = wl.open_lake(analysed_lake_dir)
    table = lake.analysis.spectra("mnist-cnn-s").sort("model_id", "layer").collect()
    ids, rows = lake.zoo_weights("mnist-cnn-s")
    keep = np.isin(ids, table["model_id"].unique().to_numpy())  # distinct models only (see test_api_distinct.py)
    assert keep.sum() == distinct_models(lake.models("mnist-cnn-s").collect()).n_distinct
    ids, rows = ids[keep], rows[keep]
    direct = zoo_spectra(rows).sort("row", "layer")
    assert table.height == 5 * len(ids) and set(table["layer"]) == {"conv1", "conv2", "conv3", "fc1", "fc2"}
    np.testing.assert_allclose(table["stable_rank"].to_numpy(), direct["stable_rank"].to_numpy(), rtol=1e-9)
    made_at = [r["version"] for r in lake.history().iter_rows(named=True) if r["operation"] == "analyze-spectra"]
    assert table["snapshot"].unique().to_list() == [made_at[0] - 1]  # records the snapshot it was computed on
    assert {"accuracy", "activation"} <= set(table.columns)  # joined with metadata


def test_correlations_table_and_sql(analysed_lake_dir):
    lake = wl.open_lake(analysed_lake_dir)
    df = lake.sql("SELECT kind, method, against, count(*) AS n FROM correlations GROUP BY ALL ORDER BY ALL")
    params = df.filter((pl.col("kind") == "param") & (pl.col("method") == "pearson") & (pl.col("against") == "accuracy"))
    assert params["n"][0] == 2464
    # BH q-values are never below their p-values (up to rounding)
    assert lake.analysis.correlations().filter(pl.col("q") < pl.col("p") * (1 - 1e-12)).collect().height == 0


def test_rerun_replaces_the_zoo_partition(analysed_lake_dir, tmp_path):
    import shutil

    from weightlake.compute.analyses import analyze_spectra

    root = tmp_path / "lake"
    shutil.copytree(analysed_lake_dir, root)
    before = wl.open_lake(root).sql("SELECT count(*) AS n FROM spectra")["n"][0]
    analyze_spectra(root, zoo="mnist-cnn-s")
    assert wl.open_lake(root).sql("SELECT count(*) AS n FROM spectra")["n"][0] == before


@pytest.mark.parametrize("analysis", ["spectra", "topology"])
def test_a_run_over_some_layers_keeps_the_other_layers(lake_copy, analysis):
    """``analyze spectra --layers fc1`` after a full run left 67 of 335 rows: the other layers'
    rows vanished without a word. They are kept when computed with the same settings; a run
    with other settings is refused, and the table is unchanged."""
    from weightlake.compute.analyses import analyze_spectra
    from weightlake.compute.topology import analyze_topology

    def run(**kw):
        if analysis == "spectra":
            return analyze_spectra(lake_copy, zoo="mnist-cnn-s", **kw)
        return analyze_topology(lake_copy, zoo="mnist-cnn-s", cubical=False, h1=False, **kw)

    def table():
        return wl.open_lake(lake_copy).table(analysis).collect()

    run()
    full = table()
    layers = full["layer"].unique(maintain_order=True).to_list()
    assert len(layers) > 2
    run(layers=[layers[1]])
    again = table()
    assert again.height == full.height
    assert again["layer"].unique(maintain_order=True).to_list() == layers
    key = ["model_id", "layer"]
    cols = [c for c in full.columns if c != "snapshot"]  # the new layer's rows carry the snapshot it read
    assert again.sort(key).select(cols).equals(full.sort(key).select(cols))  # same settings and models: same numbers
    run(layers=[layers[2]])  # a second partial run after a merged one (its params say `layers_kept`)
    third = table()
    assert third.sort(key).select(cols).equals(full.sort(key).select(cols))
    with pytest.raises(QueryError, match=r"holds layers .* computed with other settings"):
        run(layers=[layers[0]], all_rows=True)
    assert table().sort(key).equals(third.sort(key))


def test_unknown_metadata_column(analysed_lake_dir, tmp_path):
    from weightlake.compute.analyses import analyze_correlations

    with pytest.raises(QueryError, match="unknown metadata column"):
        analyze_correlations(analysed_lake_dir, zoo="mnist-cnn-s", against=["colour"])


def test_cli_writes_heatmaps(analysed_lake_dir, tmp_path):
    import shutil

    root = tmp_path / "lake"
    shutil.copytree(analysed_lake_dir, root)
    out = tmp_path / "plots"
    result = CliRunner().invoke(main, ["analyze", "correlations", "--zoo", "mnist-cnn-s", "--against", "accuracy,epoch",
                                       "--by", "layer,activation", "--features", "params", "--methods", "pearson",
                                       "--plot", str(out), "--lake", str(root)])
    assert result.exit_code == 0, result.output
    pngs = sorted(out.glob("*.png"))
    # per activation: parameters and layers x metadata; the activations side by side; parameter x parameter
    groups = len({p.name.split("-pearson")[0] for p in pngs if "activation=" in p.name})
    assert len(pngs) == 2 * groups + 2 and groups > 1 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    result = CliRunner().invoke(main, ["analyze", "spectra", "--lake", str(root)])
    assert result.exit_code == 0 and "table 'spectra'" in result.output


def test_rows_with_a_nan_or_an_infinity_are_refused_by_model_id():
    from weightlake.compute.analyses import refuse_non_finite
    from weightlake.errors import QueryError

    rows = np.ones((6, 50), dtype=np.float32)
    refuse_non_finite("z", np.arange(6), rows)  # all finite: nothing said
    rows[:, 0] = 3e38  # every row's float32 sum overflows, yet every value is finite
    refuse_non_finite("z", np.arange(6), rows)
    rows[2, 7], rows[4, 1] = np.nan, -np.inf
    with pytest.raises(QueryError, match=r"zoo 'z': 2 models have non-finite weights \(model_id 12, 14\)"):
        refuse_non_finite("z", np.arange(10, 16), rows)


@pytest.mark.parametrize("features", ["both", "params"])
def test_correlations_refuse_a_non_finite_weight(small_lake_dir, tmp_path, tree_state, lake_with_a_bad_weight,
                                                 features):
    """Correlations streamed the rows unchecked: a LinAlgError traceback from the aggregates' spectral norms,
    or (parameters only) a committed table whose every figure of that parameter was NaN, without a word."""
    root = tmp_path / "lake"
    model_id = lake_with_a_bad_weight(small_lake_dir, root, "mnist-cnn-s", 3, 10)
    before = tree_state(root)
    out = CliRunner().invoke(main, ["analyze", "correlations", "--against", "epoch", "--features", features,
                                    "--lake", str(root)])
    assert out.exit_code == 1 and "Traceback" not in out.output, out.output
    assert f"zoo 'mnist-cnn-s': 1 models have non-finite weights (model_id {model_id})" in out.output
    assert tree_state(root) == before


def test_figures_not_computed_are_null_so_sql_aggregates_skip_them(analysed_lake_dir):
    """alpha is fitted on layers with >= 10 eigenvalues only (fc1, fc2); the conv layers' alpha was stored
    as NaN, so ``avg(alpha)`` over the table was NaN. It is null: the average is the fitted layers'."""
    lake = wl.open_lake(analysed_lake_dir)
    per_layer = lake.sql("SELECT layer, count(*) AS n, count(alpha) AS fitted, avg(alpha) AS alpha, "
                         "any_value(alpha_note) AS note FROM spectra GROUP BY layer ORDER BY layer")
    conv = per_layer.filter(pl.col("layer").str.starts_with("conv"))
    assert conv.height == 3 and (conv["fitted"] == 0).all() and conv["alpha"].is_null().all()
    assert (conv["note"] == "too few eigenvalues (k < 10)").all()  # the reason stays beside the null
    fc = per_layer.filter(pl.col("layer").str.starts_with("fc"))
    assert (fc["fitted"] == fc["n"]).all() and fc["alpha"].is_finite().all()
    whole = lake.sql("SELECT avg(alpha) AS a, count(alpha) AS k FROM spectra").row(0, named=True)
    assert whole["k"] == fc["n"].sum()
    assert whole["a"] == pytest.approx(float((fc["alpha"] * fc["n"]).sum() / fc["n"].sum()), rel=1e-12)
    for table in ("spectra", "topology", "topology_classes", "correlations"):  # no float column holds NaN for "none"
        floats = [c for c, t in lake.table(table).collect_schema().items() if t.is_float()]
        nans = lake.sql(f"SELECT {', '.join(f'count(*) FILTER (WHERE isnan({c})) AS {c}' for c in floats)} "
                        f"FROM {table}").row(0, named=True)
        assert not any(nans.values()), (table, nans)


def test_models_without_accuracy_left_out_of_correlations_are_said(tmp_path):
    """Models whose checkpoints have no metrics (accuracy null) were dropped from every column's
    correlations, epoch's too, with no word in the report or the params: only a smaller n showed it."""
    import torch

    from weightlake.compute.analyses import analyze_correlations
    from weightlake.ingest.checkpoints import ingest_checkpoints
    from weightlake.zoo.cnn import build_cnn

    root = tmp_path / "tree"
    rng = np.random.default_rng(0)
    for i, labels in enumerate(([0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [1, 2], [3, 4])):
        model_dir = root / str(labels) / "relu"
        for epoch in (11, 16):
            torch.manual_seed(10 * i + epoch)
            model_dir.mkdir(parents=True, exist_ok=True)
            torch.save({"model_state_dict": build_cnn(activation="relu").state_dict(), "epoch": epoch},
                       model_dir / f"checkpoint epoch {epoch}.pth")
        if i < 5:  # the last two models have no metrics/: accuracy null
            (model_dir / "metrics").mkdir()
            np.save(model_dir / "metrics" / "Test Accuracy IID.npy", rng.uniform(10, 100, size=(1, 17)))
    ingest_checkpoints(tmp_path / "lake", root, zoo="z", init="kaiming_uniform", bins=(11, 16), workers=1,
                       rejects_path=tmp_path / "rejects.csv")
    models = wl.open_lake(tmp_path / "lake").models("z").collect()
    missing = models["accuracy"].null_count()
    assert models.height == 14 and 4 <= missing <= 10  # the models without metrics/, at least
    report = analyze_correlations(tmp_path / "lake", zoo="z", against=["accuracy", "epoch"], features="aggregates")
    said = (f"{missing} of the 14 have no accuracy and are left out of every correlation "
            f"(n counts {14 - missing})")
    assert any(said in n for n in report.notes), report.notes
    lake = wl.open_lake(tmp_path / "lake")
    params = lake.manifest.table("correlations").properties["params:z"]
    assert f'"no_accuracy_left_out": {missing}' in params
    assert set(lake.sql("SELECT DISTINCT n FROM correlations WHERE against = 'epoch'")["n"]) == {14 - missing}


def test_a_commit_elsewhere_during_an_analysis_keeps_it(lake_copy, small_csv, tmp_path, monkeypatch):
    """A `scenario declare` while `analyze spectra` ran threw the finished analysis away ("the lake
    moved ... run it again"). It commits now; a change of the zoo it read is still refused."""
    import weightlake.compute.analyses as analyses
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.scenarios import declare_scenario

    real = analyses._commit
    meanwhile = []

    def commit_after(*args, **kw):  # another writer commits between the read and the commit
        if meanwhile:
            meanwhile.pop()()
        return real(*args, **kw)

    monkeypatch.setattr(analyses, "_commit", commit_after)
    meanwhile.append(lambda: declare_scenario(lake_copy, "elsewhere", zoo="mnist-cnn-s"))
    report = analyses.analyze_spectra(lake_copy, zoo="mnist-cnn-s", layers=["fc1"])
    lake = wl.open_lake(lake_copy)
    assert report.snapshot == lake.snapshot and "elsewhere" in lake.table("scenarios").collect()["scenario"].to_list()
    assert lake.table("spectra").collect().height == report.rows
    from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

    # a spectra run of another zoo commits first: another partition of the same table, both kept
    second = tmp_path / "second zoo [2].csv"
    write_synthetic_csv(second, labels=all_labels()[:4], seed=12)
    ingest_csv(lake_copy, second, zoo="z2", init="normal")
    meanwhile.append(lambda: analyses.analyze_spectra(lake_copy, zoo="z2", layers=["fc1"]))
    report = analyses.analyze_spectra(lake_copy, zoo="mnist-cnn-s", layers=["fc1"])
    zoos = wl.open_lake(lake_copy).table("spectra").select("zoo").unique().collect()["zoo"].to_list()
    assert sorted(zoos) == ["mnist-cnn-s", "z2"], zoos
    other = tmp_path / "more [0, 1].csv"  # the zoo itself changes: the analysis read a zoo that is gone

    write_synthetic_csv(other, labels=all_labels()[:3], seed=11)
    meanwhile.append(lambda: ingest_csv(lake_copy, other, zoo="mnist-cnn-s", init="xavier_normal"))
    before = wl.open_lake(lake_copy).table("spectra").collect()
    with pytest.raises(QueryError, match=r"the lake moved from snapshot \d+ to \d+ during the analysis and zoo "
                                         r"'mnist-cnn-s' changed; run it again"):
        analyses.analyze_spectra(lake_copy, zoo="mnist-cnn-s", layers=["fc1"])
    assert wl.open_lake(lake_copy).table("spectra").collect().equals(before)


def test_the_report_names_the_layers_without_alpha(lake_copy):
    """The conv layers' alpha was null without a word in the report (the help said "NaN with a note")."""
    from weightlake.compute.analyses import analyze_spectra

    text = str(analyze_spectra(lake_copy, zoo="mnist-cnn-s"))
    assert "alpha is null for layers ['conv1', 'conv2', 'conv3'] (no power-law fit: conv1: too few eigenvalues" \
        in text, text
    assert "alpha is null" not in str(analyze_spectra(lake_copy, zoo="mnist-cnn-s", layers=["fc1", "fc2"]))
