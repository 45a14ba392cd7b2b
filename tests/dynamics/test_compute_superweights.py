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


def test_a_model_where_no_weight_stands_out_is_flagged_and_reported():
    """fc2's weights are zero, so its bias alone decides every prediction: no single zeroing costs a
    probe image. The old table still named a 'super weight' per layer and model (model_rank 1,
    ranked by a loss increase of 0) and the report said nothing."""
    import numpy as np
    import torch

    from weightlake.compute.superweights import model_super_weights, none_stand_out
    from weightlake.zoo.cnn import build_cnn

    torch.manual_seed(0)
    model = build_cnn(activation="relu")
    with torch.no_grad():
        fc2 = model.module_list[model.arch.layer("fc2").module_index]
        fc2.weight.zero_()
        fc2.bias.copy_(torch.arange(10.0))
    x = torch.rand(12, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([9, 9, 9, 9, 3, 3, 3, 3, 1, 1, 1, 1])
    rows, _ = model_super_weights(model, x, y, top=2, ks=(1,))
    table = pl.DataFrame(rows)
    assert table.height == 5 * 2 and not table["costs_accuracy"].any()
    assert np.allclose(table["accuracy_drop"].to_numpy(), 0.0)
    [note] = none_stand_out(table, 12)
    assert note.startswith("1 of 1 models have no single weight whose zeroing costs any of the 12 probe images")
    flagged = pl.DataFrame([{"model_rank": 1, "costs_accuracy": True}, {"model_rank": 2, "costs_accuracy": False}])
    assert none_stand_out(flagged, 12) == []
