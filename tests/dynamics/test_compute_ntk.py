"""`analyze ntk` on the real trained lake: rows, recorded parameters, refusal without a dataset."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch
from click.testing import CliRunner

import weightlake as wl
from weightlake.cli import main
from weightlake.compute._common import DatasetNotRecordedError, probe_images
from weightlake.compute.ntk import analyze_ntk, kappa_predicts_accuracy, ntk_with_metadata
from weightlake.dynamics.ntk import empirical_ntk, ntk_spectrum


def test_ntk_table_matches_the_pure_function(real_copy):
    report = analyze_ntk(real_copy, zoo="fmnist", sample=3, probe_images_k=6, images="fashion-mnist", seed=1)
    assert "distinct models" in str(report)
    lake = wl.open_lake(real_copy)
    table = ntk_with_metadata(lake, "fmnist")
    assert table.height == 3 * 2 * 2 and set(table["state"]) == {"trained", "init"}
    row = table.filter((pl.col("state") == "trained") & (pl.col("form") == "full")).row(0, named=True)
    meta = lake.model(row["model_id"])
    x, _ = probe_images("fashion-mnist", meta["classes"], 6, seed=1)
    direct = ntk_spectrum(empirical_ntk(lake.cnn(row["model_id"]), x))
    assert row["lambda_max"] == pytest.approx(direct.lambda_max, rel=1e-6)
    assert row["size"] == 60 and row["lr_bound"] == pytest.approx(2 / row["lambda_max"])
    params = lake.manifest.table("ntk").properties["params:fmnist"]
    assert '"images": "fashion-mnist"' in params and '"n": 3' in params
    summary = kappa_predicts_accuracy(table)
    assert set(summary["form"]) == {"full", "trace"} and summary["n"].max() == 3


def test_probe_images_are_balanced_and_of_the_models_classes():
    x, y = probe_images("fashion-mnist", [1, 8], 10, seed=0)
    assert x.shape == (10, 1, 28, 28) and x.dtype == torch.float32
    assert sorted(set(y.tolist())) == [1, 8] and abs(int((y == 1).sum()) - 5) <= 1


def test_ntk_uses_the_recorded_dataset_and_refuses_to_guess_one(real_copy, lake_copy):
    """The trainer-made zoo records Fashion-MNIST; a CSV zoo ingested without --dataset records nothing."""
    report = analyze_ntk(real_copy, zoo="fmnist", sample=1, probe_images_k=2, at_init=False)
    assert report.rows == 2
    params = wl.open_lake(real_copy).manifest.table("ntk").properties["params:fmnist"]
    assert '"images": "fashion-mnist"' in params
    with pytest.raises(DatasetNotRecordedError, match="--images"):
        analyze_ntk(lake_copy, zoo="mnist-cnn-s", sample=1, probe_images_k=2)
    before = wl.open_lake(lake_copy).snapshot
    result = CliRunner().invoke(main, ["analyze", "ntk", "--lake", str(lake_copy), "--sample", "1"])
    assert result.exit_code == 1 and "--images" in result.output and "Traceback" not in result.output
    assert wl.open_lake(lake_copy).snapshot == before


def test_ntk_says_when_the_images_are_not_the_zoos_own(real_copy, tmp_path):
    """Images given explicitly that are not the zoo's recorded dataset: the run goes ahead and says so."""
    other = tmp_path / "my images [copy]"
    other.mkdir()
    for f in Path("/usr/share/datasets/fashion-mnist").iterdir():
        (other / f.name).symlink_to(f)
    report = analyze_ntk(real_copy, zoo="fmnist", sample=1, probe_images_k=2, at_init=False, images=str(other))
    assert "are not zoo 'fmnist'" in str(report) and "fashion-mnist" in str(report)
    params = wl.open_lake(real_copy).manifest.table("ntk").properties["params:fmnist"]
    assert "not zoo 'fmnist'" in params
    quiet = analyze_ntk(real_copy, zoo="fmnist", sample=1, probe_images_k=2, at_init=False, images="fashion-mnist")
    assert "not zoo" not in str(quiet)


def test_ntk_cli(real_copy):
    result = CliRunner().invoke(main, ["analyze", "ntk", "--lake", str(real_copy), "--sample", "2",
                                       "--probe-images", "4", "--images", "fashion-mnist", "--no-init"])
    assert result.exit_code == 0, result.output
    assert "table 'ntk': 4 rows" in result.output


@pytest.mark.parametrize("analysis", ["ntk", "super-weights"])
def test_a_model_with_a_non_finite_weight_is_refused_up_front(small_lake_dir, tmp_path, tree_state,
                                                              lake_with_a_bad_weight, analysis):
    """The runs rebuilt each model unchecked: the NTK's eigvalsh failed (a LinAlgError traceback) and the
    super-weight scan committed NaN losses and chance accuracies for the model, without a word."""
    from weightlake.compute.superweights import analyze_super_weights
    from weightlake.errors import QueryError

    root = tmp_path / "lake"
    model_id = lake_with_a_bad_weight(small_lake_dir, root, "mnist-cnn-s", 3, 10)
    before = tree_state(root)
    run = analyze_ntk if analysis == "ntk" else analyze_super_weights
    with pytest.raises(QueryError, match=rf"zoo 'mnist-cnn-s': 1 models have non-finite weights \(model_id {model_id}\)"):
        run(root, sample=None, model_ids=[model_id - 1, model_id], images="fashion-mnist")
    assert tree_state(root) == before


def test_kappa_summary_counts_numerically_singular_kernels_by_that_name():
    table = pl.DataFrame({"state": ["trained"] * 4, "form": ["full"] * 4, "kappa": [10.0, 100.0, 1e3, float("inf")],
                          "accuracy": [90.0, 80.0, None, 95.0]})
    summary = kappa_predicts_accuracy(table).row(0, named=True)
    # a null accuracy is neither a correlation point nor a singular kernel
    assert summary["n"] == 2 and summary["n_numerically_singular"] == 1 and "n_infinite" not in summary
