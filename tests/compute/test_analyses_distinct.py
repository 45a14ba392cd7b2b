"""Analyses count distinct models by default; duplicates do not pose as data (issue 9, case 7)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

import weightlake as wl
from weightlake.cli import main
from weightlake.compute.analyses import analyze_correlations, analyze_spectra
from weightlake.errors import IngestError, QueryError
from weightlake.ingest.checkpoints import ingest_checkpoints
from weightlake.ingest.csv_zoo import ingest_csv

SUBSETS = ([0, 1], [2, 3], [4, 5], [6, 7], [0, 9], [1, 8])


@pytest.fixture(scope="module")
def copied_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six models that all stopped early at epoch 1: each is filed again under bins 2 and 3 (fallback copies)."""
    from weightlake.zoo.cnn import build_cnn
    from weightlake.zoo.train import model_folder

    tmp = tmp_path_factory.mktemp("copies")
    torch.manual_seed(0)
    for classes in SUBSETS:
        folder = model_folder(tmp / "ckpt", classes, "relu", "kaiming_uniform")
        folder.mkdir(parents=True)
        torch.save({"epoch": 1, "model_state_dict": build_cnn().state_dict()}, folder / "checkpoint epoch -1.pth")
    ingest_checkpoints(tmp / "lake", tmp / "ckpt", zoo="z", bins=(1, 2, 3), rejects_path=tmp / "rejects.csv",
                       workers=1)
    models = wl.open_lake(tmp / "lake").models().collect()
    assert models.height == 18 and models["fallback"].sum() == 12
    return tmp / "lake"


def _params(lake: wl.Lake, table: str) -> dict:
    return json.loads(lake.manifest.table(table).properties["params:z"])


def test_correlations_count_distinct_models(copied_lake: Path, tmp_path: Path) -> None:
    """Counted once per bin, every parameter-vs-epoch correlation of the copies was exactly 0 on n = 18."""
    root = tmp_path / "lake"
    shutil.copytree(copied_lake, root)
    before = analyze_correlations(root, zoo="z", against=["epoch"], features="params", methods=["pearson"],
                                  all_rows=True)
    old = wl.open_lake(root).table("correlations").collect()
    assert before.n_models == 18 and set(old["n"]) == {18}
    assert np.nanmax(np.abs(old["r"].to_numpy())) < 1e-9  # the artefact: copies pin r to 0
    report = analyze_correlations(root, zoo="z", against=["epoch"], features="params", methods=["pearson"])
    assert report.n_models == 6 and "6 distinct models of 18 rows: dropped 12 fallback copies" in str(report)
    new = wl.open_lake(root).table("correlations").collect()
    assert set(new["n"]) == {6} and new["r"].is_nan().all()  # one epoch per distinct model: nothing to correlate
    params = _params(wl.open_lake(root), "correlations")["models"]
    assert params == {"rows": 18, "distinct": 6, "dropped_fallback": 12, "dropped_repeated": 0, "all_rows": False,
                      "used": 6, "runs": 6, "runs_at_several_epochs": 0}


def test_spectra_on_distinct_models_and_the_cli(copied_lake: Path, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    shutil.copytree(copied_lake, root)
    report = analyze_spectra(root, zoo="z")
    lake = wl.open_lake(root)
    table = lake.table("spectra").collect()
    assert report.n_models == 6 and table["model_id"].n_unique() == 6
    kept = lake.models().filter(pl.col("model_id").is_in(table["model_id"].implode())).collect()
    assert not kept["fallback"].any()
    assert _params(lake, "spectra")["models"]["distinct"] == 6
    result = CliRunner().invoke(main, ["analyze", "spectra", "--zoo", "z", "--all-rows", "--lake", str(root)])
    assert result.exit_code == 0 and "all 18 rows counted" in result.output, result.output
    assert wl.open_lake(root).table("spectra").collect()["model_id"].n_unique() == 18
    result = CliRunner().invoke(main, ["analyze", "correlations", "--zoo", "z", "--against", "epoch", "--lake",
                                       str(root), "--features", "aggregates"])
    assert result.exit_code == 0 and "dropped 12 fallback copies" in result.output, result.output


def test_same_file_under_another_init_is_refused(lake_copy: Path, small_csv: Path) -> None:
    before = wl.open_lake(lake_copy).snapshot
    with pytest.raises(IngestError, match="already holds this weight vector under init 'kaiming_uniform'.*"
                                          "allow-same-source"):
        ingest_csv(lake_copy, small_csv, zoo="mnist-cnn-s", init="xavier_normal")
    assert wl.open_lake(lake_copy).snapshot == before
    result = CliRunner().invoke(main, ["ingest", "csv", str(small_csv), "--zoo", "mnist-cnn-s", "--init", "normal",
                                       "--lake", str(lake_copy)])
    assert result.exit_code == 1 and "--allow-same-source" in result.output
    report = ingest_csv(lake_copy, small_csv, zoo="mnist-cnn-s", init="xavier_normal", allow_same_source=True)
    assert report.rows_added == 432


def test_quick_spectra_count_distinct_models_too(copied_lake: Path) -> None:
    lake = wl.open_lake(copied_lake)
    assert lake.analysis.compute_spectra("z")["model_id"].n_unique() == 6
    assert lake.analysis.compute_spectra("z", all_rows=True)["model_id"].n_unique() == 18


def test_checkpoints_of_one_run_are_said_in_the_note_the_params_and_the_figure(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Was: runs checkpointed at two epochs went into every p-value as twice the samples, unsaid."""
    from weightlake.analysis.distinct import distinct_models
    from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

    write_synthetic_csv(tmp_path / "zoo.csv", labels=all_labels(range(4), range(2, 3)), activations=("gelu", "relu"),
                        epochs=(11, 16), seed=4)
    ingest_csv(tmp_path / "lake", tmp_path / "zoo.csv", zoo="z", init="normal")
    sel = distinct_models(wl.open_lake(tmp_path / "lake").models().collect())
    assert sel.n_runs == 12 and sel.runs_several > 0  # 6 class pairs x 2 activations, at epochs 11 and 16
    from weightlake.analysis.heatmaps import select

    report = analyze_correlations(tmp_path / "lake", zoo="z", against=["accuracy", "epoch"], features="aggregates",
                                  methods=["pearson"], plot_dir=tmp_path / "plots")
    assert f"checkpoints of 12 training runs, {sel.runs_several} of them at several epochs" in str(report)
    assert "--per-run last" in str(report)
    assert _params(wl.open_lake(tmp_path / "lake"), "correlations")["models"]["runs_at_several_epochs"] == \
        sel.runs_several
    table = wl.open_lake(tmp_path / "lake").table("correlations").collect()
    assert set(table["runs"]) == {12} and (table["n"] > table["runs"]).all()  # every row says it
    header = select(table, method="pearson", kind="aggregate").header("distinct models")
    assert f"n={sel.n_distinct} distinct models of 12 runs (p-values take a run's checkpoints as independent)" \
        in header  # every figure's title, also when redrawn from the table (`correlation-figures`)
    # grouped by epoch, each group holds one checkpoint per run: the titles stay plain
    analyze_correlations(tmp_path / "lake", zoo="z", against=["accuracy"], by=["epoch"], features="aggregates",
                         methods=["pearson"], plot_dir=tmp_path / "by")
    table = wl.open_lake(tmp_path / "lake").table("correlations").collect()
    assert (table["n"] == table["runs"]).all()
    assert "runs" not in select(table.filter(pl.col("epoch") == 11), method="pearson", kind="aggregate").header("")
    # one checkpoint per run: each run counts once, the latest checkpoint of each
    report = analyze_correlations(tmp_path / "lake", zoo="z", against=["accuracy", "epoch"], features="aggregates",
                                  methods=["pearson"], per_run="last")
    table = wl.open_lake(tmp_path / "lake").table("correlations").collect()
    assert set(table["n"]) == set(table["runs"]) == {12} and "each run counts once" in str(report)
    meta = wl.open_lake(tmp_path / "lake").models("z").collect()
    latest = meta.group_by("activation", "class_mask").agg(pl.col("epoch").max())
    assert latest.height == 12
    with pytest.raises(QueryError, match="per_run must be one of"):
        analyze_correlations(tmp_path / "lake", zoo="z", against=["accuracy"], per_run="first")
