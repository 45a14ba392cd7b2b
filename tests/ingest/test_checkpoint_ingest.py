"""Checkpoint trees into the lake, on a real mini zoo trained on Fashion-MNIST in this session."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import polars as pl
import pytest
import torch

import weightlake as wl
from weightlake.arch import CNN_S
from weightlake.ingest.checkpoints import ingest_checkpoints
from weightlake.ingest.csv_zoo import export_csv, ingest_csv
from weightlake.zoo.idx import select_classes
from weightlake.zoo.train import evaluate_accuracy

BINS = (0, 1, 2)  # the mini zoo checkpoints every epoch of 3


def test_layout_b_round_trip_and_accuracy(zoo_b, fashion_test, tmp_path):
    report = ingest_checkpoints(tmp_path / "lake", zoo_b.out, zoo="fmnist", bins=BINS)
    lake = wl.open_lake(tmp_path / "lake")
    models = lake.models().collect()
    assert report.rows_added == models.height == 2 * 2 * 2 * 3  # subsets x acts x inits x bins
    assert set(models["init"]) == {"kaiming_uniform", "xavier_normal"}
    assert models["accuracy"].null_count() == 0
    images, labels = fashion_test
    for row in models.filter(pl.col("epoch") == 2).iter_rows(named=True):
        x, y = select_classes(images, labels, row["classes"])
        acc = evaluate_accuracy(lake.cnn(row["model_id"]), x, y)
        # weights, layout and metadata survived: the rebuilt CNN scores what training recorded
        assert acc == pytest.approx(row["accuracy"], abs=100 / len(y) + 1e-9), row
    # the weights are exactly the checkpoint's parameters
    row = models.row(0, named=True)
    ckpt = torch.load(zoo_b.out / row["source_file"], weights_only=True)
    flat = torch.cat([v.reshape(-1) for v in ckpt["model_state_dict"].values()])
    assert torch.equal(lake.weights([row["model_id"]])[0], flat)


def test_train_checkpoints_lake_csv_lake(zoo_b, tmp_path):
    ingest_checkpoints(tmp_path / "lake", zoo_b.out, zoo="fmnist", bins=BINS)
    lake = wl.open_lake(tmp_path / "lake")
    for init in ("kaiming_uniform", "xavier_normal"):
        out = tmp_path / f"Merged_zoo_{init}.csv"
        n = export_csv(lake, out, where="init = $init", params={"init": init})
        assert n == 12
        ingest_csv(tmp_path / "again", out, zoo=f"csv-{init}", init=init, epoch_bins=BINS)
    again = wl.open_lake(tmp_path / "again")
    a = lake.models().sort("init", "activation", "class_mask", "epoch").collect()
    b = again.models().sort("init", "activation", "class_mask", "epoch").collect()
    assert a.select("init", "activation", "classes", "epoch", "accuracy").equals(
        b.select("init", "activation", "classes", "epoch", "accuracy"))
    assert np.array_equal(lake.weights_numpy(a["model_id"].to_numpy()), again.weights_numpy(b["model_id"].to_numpy()))


def test_layout_a_needs_init_and_reingest_adds_nothing(zoo_a, tmp_path):
    from weightlake.errors import IngestError

    with pytest.raises(IngestError, match="init"):
        ingest_checkpoints(tmp_path / "lake", zoo_a.out, zoo="z", bins=BINS)
    first = ingest_checkpoints(tmp_path / "lake", zoo_a.out, zoo="z", init="kaiming_uniform", bins=BINS)
    again = ingest_checkpoints(tmp_path / "lake", zoo_a.out, zoo="z", init="kaiming_uniform", bins=BINS)
    assert first.rows_added == 12 and again.rows_added == 0 and again.rows_already_present == 12
    assert wl.open_lake(tmp_path / "lake").snapshot == first.snapshot


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {_Evil.marker}",))


def test_bad_files_are_rejected_good_ones_kept(zoo_a, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(zoo_a.out, tree)
    files = sorted(tree.rglob("checkpoint epoch *.pth"))
    files[0].write_bytes(files[0].read_bytes()[:500])  # truncated
    _Evil.marker = tmp_path / "pwned"
    with open(files[1], "wb") as fh:
        pickle.dump({"epoch": 1, "model_state_dict": _Evil()}, fh)
    sd = CNN_S.flat_to_state_dict(torch.zeros(2464))
    sd["module_list.9.weight"] = torch.zeros(20, 35)
    torch.save({"epoch": 2, "model_state_dict": sd}, files[2])
    report = ingest_checkpoints(tmp_path / "lake", tree, zoo="z", init="kaiming_uniform", bins=BINS,
                                rejects_path=tmp_path / "rejects.csv")
    assert not _Evil.marker.exists(), "the malicious pickle must not run"
    rejects = pl.read_csv(tmp_path / "rejects.csv")
    assert rejects.height == 3 and report.rows_rejected == 3
    reasons = " ".join(rejects["reason"])
    assert "refused" in reasons and "truncated" in reasons and "(20, 35)" in reasons
    assert report.rows_added > 0
    assert wl.open_lake(tmp_path / "lake").models().collect().height == report.rows_added
