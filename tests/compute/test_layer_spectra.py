"""Spectra of a ResNet zoo layer by layer: every conv and linear layer, batch norms skipped with the reason,
the same table as the whole-row path, and agreement with numpy's SVD on the same matrices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import weightlake as wl
from weightlake.compute.analyses import analyze_spectra
from weightlake.ingest.modelzoo import ingest_modelzoo
from weightlake.storage.tensors import count_reads
from weightlake.zoo.resnet import random_state_dict, resnet_shapes

SHAPES = resnet_shapes((4, 8, 8, 16), num_classes=10)


def _tree(root: Path, runs: int = 3, epochs: tuple[int, ...] = (1, 2)) -> None:
    rng = np.random.default_rng(0)
    for r in range(runs):
        run = root / f"run [{r}]"
        run.mkdir(parents=True)
        (run / "params.json").write_text(json.dumps({"seed": r}))
        (run / "result.json").write_text("\n".join(json.dumps({"training_iteration": e, "acc": e}) for e in epochs))
        for e in epochs:
            (run / f"checkpoint_{e}").mkdir()
            sd = {k: torch.from_numpy(np.asarray(v)) for k, v in random_state_dict(SHAPES, rng, batches=e).items()}
            torch.save(sd, run / f"checkpoint_{e}" / "checkpoints")


@pytest.fixture(scope="module")
def lakes(tmp_path_factory):
    base = tmp_path_factory.mktemp("resnet-spectra")
    _tree(base / "zoo")
    ingest_modelzoo(base / "tensors", base / "zoo", zoo="rn", layout="tensors")
    ingest_modelzoo(base / "rows", base / "zoo", zoo="rn", layout="rows")
    return base / "tensors", base / "rows"


def test_every_conv_and_linear_layer_is_covered_and_batch_norms_are_skipped(lakes, monkeypatch):
    import weightlake.compute.layer_spectra as per_layer

    tensors, _ = lakes
    monkeypatch.setattr(per_layer, "BLOCK_MODELS", 4)  # blocks of 4 and 2 models
    report = analyze_spectra(tensors, zoo="rn", memory="1MB")
    lake = wl.open_lake(tensors)
    arch = lake.arch("rn")
    table = lake.table("spectra").collect()
    assert report.n_models == 6 and table.height == 6 * 21
    assert set(table["layer"]) == set(arch.matrix_layer_names)
    params = json.loads(lake.manifest.table("spectra").properties["params:rn"])
    assert params["read"] == "per layer" and params["conv_matrix"] == "out x in*kh*kw"
    bn = [layer.name for layer in arch.layers if layer.kind == "batchnorm"]
    assert sorted(params["skipped"]) == sorted(bn) and "not a matrix" in params["skipped"]["bn1"]
    conv = table.filter(table["layer"] == "layer2.0.conv1")
    assert conv["rows"].unique().to_list() == [8] and conv["cols"].unique().to_list() == [4 * 3 * 3]


def test_the_per_layer_table_equals_the_whole_row_path(lakes):
    tensors, rows = lakes
    analyze_spectra(tensors, zoo="rn")
    analyze_spectra(rows, zoo="rn")
    a = wl.open_lake(tensors).table("spectra").collect().sort("model_id", "layer").drop("snapshot")
    b = wl.open_lake(rows).table("spectra").collect().sort("model_id", "layer").drop("snapshot")
    assert a.columns == b.columns and a.height == b.height
    for col in a.columns:
        if a[col].dtype.is_float():
            np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=1e-9, equal_nan=True)
        else:
            assert a[col].to_list() == b[col].to_list(), col


def test_figures_agree_with_numpy_svd(lakes):
    tensors, _ = lakes
    analyze_spectra(tensors, zoo="rn")
    lake = wl.open_lake(tensors)
    arch = lake.arch("rn")
    table = lake.table("spectra").collect()
    for name in ("conv1", "layer3.0.downsample.0", "layer4.1.conv2", "fc"):
        layer = arch.matrix_layer(name)
        weights = lake.layer(lake.zoo_ids("rn"), name).numpy().astype(np.float64)
        for model_id, w in zip(lake.zoo_ids("rn"), weights, strict=True):
            m = w.reshape(layer.matrix_shape)  # out x in*kh*kw
            s = np.linalg.svd(m, compute_uv=False)
            row = table.filter((table["model_id"] == model_id) & (table["layer"] == name)).row(0, named=True)
            assert row["n_eigs"] == min(m.shape)
            assert row["spectral_norm"] == pytest.approx(s[0], rel=1e-6)
            assert row["stable_rank"] == pytest.approx((s ** 2).sum() / s[0] ** 2, rel=1e-6)
            assert row["condition_number"] == pytest.approx(np.linalg.cond(m), rel=1e-5)
            assert row["lambda_max"] == pytest.approx(s[0] ** 2 / max(m.shape), rel=1e-6)


def test_the_per_layer_path_reads_each_layer_once(lakes):
    tensors, _ = lakes
    lake = wl.open_lake(tensors)
    arch = lake.arch("rn")
    matrix_bytes = sum(layer.weight_size * 4 for layer in arch.matrix_layers) * 6
    with count_reads() as count:
        analyze_spectra(tensors, zoo="rn")
    assert count.bytes <= 1.2 * matrix_bytes  # conv and linear weights, nothing else


def test_cli_spectra_and_an_unknown_layer(lakes):
    from weightlake.cli import main

    tensors, _ = lakes
    out = CliRunner().invoke(main, ["analyze", "spectra", "--zoo", "rn", "--layers", "fc,bn1", "--lake", str(tensors)])
    assert out.exit_code == 0, out.output
    assert "1 conv/linear layers; 1 skipped" in out.output
    out = CliRunner().invoke(main, ["analyze", "spectra", "--zoo", "rn", "--layers", "nope", "--lake", str(tensors)])
    assert out.exit_code == 1 and "has no layer 'nope'" in out.output and "Traceback" not in out.output


def test_per_layer_spectra_of_a_tensors_zoo_on_s3_equal_the_local_ones(lakes, s3_lake_url, tmp_path):
    """The zoo at s3:// (moto): the same table as on disk, reading only the conv and linear weights' chunk objects."""
    tensors, _ = lakes
    ingest_modelzoo(s3_lake_url, tensors.parent / "zoo", zoo="rn", layout="tensors")
    arch = wl.open_lake(s3_lake_url).arch("rn")
    with count_reads() as count:
        analyze_spectra(s3_lake_url, zoo="rn")
    assert 0 < count.bytes <= 1.2 * sum(layer.weight_size * 4 for layer in arch.matrix_layers) * 6
    analyze_spectra(tensors, zoo="rn")
    a = wl.open_lake(s3_lake_url).table("spectra").collect().sort("model_id", "layer").drop("snapshot")
    b = wl.open_lake(tensors).table("spectra").collect().sort("model_id", "layer").drop("snapshot")
    assert a.equals(b)



@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_weight_is_refused_naming_zoo_layer_and_model(lakes, tmp_path, tree_state, bad,
                                                                   lake_with_a_bad_weight):
    """The per-layer path ran no check: eigh failed to converge in a worker thread (a LinAlgError traceback)."""
    from weightlake.cli import main

    tensors, _ = lakes
    root = tmp_path / "lake"
    col = wl.open_lake(tensors).arch("rn").matrix_layer("layer2.0.conv1").start + 5
    model_id = lake_with_a_bad_weight(tensors, root, "rn", 3, col, bad)
    before = tree_state(root)
    out = CliRunner().invoke(main, ["analyze", "spectra", "--zoo", "rn", "--lake", str(root)])
    assert out.exit_code == 1 and "Traceback" not in out.output and out.output.count("error:") == 1
    assert (f"zoo 'rn': 1 models have non-finite weights in layer 'layer2.0.conv1' (model_id {model_id})"
            in out.output)
    assert tree_state(root) == before
    analyze_spectra(root, zoo="rn", layers=["fc", "layer1.0.conv1"])  # the layers without it still give figures
