"""`analyze super-weights` on the real trained lake: both tables, agreement with the pure scan."""

from __future__ import annotations

import polars as pl
import pytest
from click.testing import CliRunner

import weightlake as wl
from weightlake.cli import main
from weightlake.compute._common import probe_images
from weightlake.compute.superweights import analyze_super_weights
from weightlake.dynamics.superweights import ablation_scan
from weightlake.query import run_named


def test_super_weight_tables_agree_with_the_scan(real_copy):
    report = analyze_super_weights(real_copy, zoo="fmnist", sample=2, probe_images_n=60, top=2, ks=(1, 3),
                                   images="fashion-mnist", seed=2)
    assert "super_weight_sparsity" in str(report)
    lake = wl.open_lake(real_copy)
    table = lake.table("super_weights").collect()
    assert table.height == 2 * 5 * 2 and table["model_rank"].min() == 1
    row = table.filter((pl.col("layer") == "fc1") & (pl.col("rank") == 1)).row(0, named=True)
    x, y = probe_images("fashion-mnist", lake.model(row["model_id"])["classes"], 60, seed=2)
    scan = ablation_scan(lake.cnn(row["model_id"]), x, y, "fc1")
    assert row["accuracy_drop"] == pytest.approx(scan.drop.max())
    assert row["flat_index"] == lake.arch("fmnist").layer("fc1").start + row["entry"]
    sparsity = lake.table("super_weight_sparsity").collect()
    assert sparsity.height == 2 * 2 * 3
    for name in ("super_weight_is_largest", "super_weight_sparsity_summary", "super_weight_index_by_group"):
        assert run_named(lake, name, {"zoo": "fmnist"}).height > 0


def test_super_weights_cli_refuses_without_a_recorded_dataset(lake_copy):
    """A CSV zoo ingested without --dataset records no images: refused, not guessed."""
    result = CliRunner().invoke(main, ["analyze", "super-weights", "--lake", str(lake_copy), "--sample", "1"])
    assert result.exit_code == 1 and "--images" in result.output and "Traceback" not in result.output
