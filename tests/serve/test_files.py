"""Epoch batches as .pt and .h5 files: round trips equal to the materialised stream, safe loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from weightlake import open_lake
from weightlake.cli import main
from weightlake.errors import QueryError
from weightlake.ingest.csv_zoo import ingest_csv
from weightlake.scenarios import declare_scenario
from weightlake.serve.batches import materialize
from weightlake.serve.files import export_batches, read_batches
from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

ZOO = "mnist-cnn-s"


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("files")
    write_synthetic_csv(tmp / "zoo.csv", labels=all_labels(range(4), range(2, 5)), activations=("relu",),
                        epochs=(11,), seed=8)
    ingest_csv(tmp / "lake", tmp / "zoo.csv", zoo=ZOO, init="kaiming_uniform")
    declare_scenario(tmp / "lake", "s", zoo=ZOO, digits="0-3", sizes="2-3", overlap="0-2")
    materialize(tmp / "lake", "s", "train", batch_size=5, epochs=2, seed=3)
    return tmp / "lake"


@pytest.mark.parametrize("fmt", ["pt", "h5"])
def test_files_equal_the_materialised_batches(lake_dir: Path, tmp_path: Path, fmt: str) -> None:
    lake = open_lake(lake_dir)
    report = export_batches(lake, "s", "train", tmp_path / "out", fmt=fmt, batch_size=5, epochs=2, seed=3)
    assert len(report.files) == 2
    streamed = list(lake.batches("s", "train"))
    per_epoch = len(streamed) // 2
    for epoch, path in enumerate(report.files):
        arrays, meta = read_batches(path)
        assert meta["epoch"] == epoch and meta["seed"] == 3 and meta["batch_size"] == 5
        valid = arrays["valid"]
        for b, batch in enumerate(streamed[epoch * per_epoch:(epoch + 1) * per_epoch]):
            n = int(valid[b].sum())
            assert np.array_equal(arrays["x"][b, :n], batch["x"].numpy())
            assert np.array_equal(arrays["ids"][b, :n], torch.stack([batch["a_id"], batch["b_id"],
                                                                     batch["target_id"]], 1).numpy())
            assert np.array_equal(arrays["rows"][b, :n], batch["pair_id"].numpy())
        assert not arrays["x"][~valid].any() and (arrays["ids"][~valid] == -1).all()


def test_pt_loads_weights_only_into_a_tensor_dataset(lake_dir: Path, tmp_path: Path) -> None:
    report = export_batches(open_lake(lake_dir), "s", "train", tmp_path, fmt="pt", batch_size=5, epochs=1)
    d = torch.load(report.files[0], weights_only=True)
    ds = torch.utils.data.TensorDataset(d["x"][d["valid"]], d["ids"][d["valid"]], d["acc"][d["valid"]])
    assert len(ds) == len(open_lake(lake_dir).pairs("s", "train"))
    x, ids, acc = ds[0]
    assert x.shape == (3, 2464) and ids.shape == (3,) and torch.isfinite(acc).all()


def test_cli_formats_and_refusals(lake_dir: Path, tmp_path: Path) -> None:
    run = CliRunner().invoke
    out = run(main, ["pairs", "materialize", "s", "--format", "h5", "--out", str(tmp_path / "h5"), "--epochs", "1",
                     "--lake", str(lake_dir)])
    assert out.exit_code == 0 and "s-train-epoch0.h5" in out.output, out.output
    missing = run(main, ["pairs", "materialize", "s", "--format", "pt", "--lake", str(lake_dir)])
    assert missing.exit_code == 1 and "--out" in missing.output
    inside = run(main, ["pairs", "materialize", "s", "--format", "pt", "--out", str(lake_dir / "x"),
                        "--lake", str(lake_dir)])
    assert inside.exit_code == 1 and "inside the lake" in inside.output
    with pytest.raises(QueryError, match="unknown batch file format"):
        export_batches(open_lake(lake_dir), "s", "train", tmp_path, fmt="npz")


def test_a_second_export_refuses_to_overwrite_without_overwrite(lake_dir: Path, tmp_path: Path) -> None:
    """The names carry no batch size: exporting again with --batch-size 4 silently replaced the files of 5."""
    lake, out = open_lake(lake_dir), tmp_path / "pt"
    first = export_batches(lake, "s", "train", out, fmt="pt", batch_size=5, epochs=2, seed=3)
    before = {p: Path(p).read_bytes() for p in first.files}
    with pytest.raises(QueryError, match=r"refusing to overwrite .*s-train-epoch0.pt. \(and 1 more\).*--overwrite"):
        export_batches(lake, "s", "train", out, fmt="pt", batch_size=4, epochs=3, seed=3)
    assert {p: Path(p).read_bytes() for p in first.files} == before
    assert sorted(f.name for f in out.iterdir()) == ["s-train-epoch0.pt", "s-train-epoch1.pt"]
    run = CliRunner().invoke
    args = ["pairs", "materialize", "s", "--format", "pt", "--out", str(out), "--batch-size", "4", "--epochs", "1",
            "--lake", str(lake_dir)]
    refused = run(main, args)
    assert refused.exit_code == 1 and "refusing to overwrite" in refused.output and "Traceback" not in refused.output
    assert read_batches(out / "s-train-epoch0.pt")[1]["batch_size"] == 5
    replaced = run(main, [*args, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert read_batches(out / "s-train-epoch0.pt")[1]["batch_size"] == 4
    # epoch 1 of batch size 5 is gone too: a loop over the folder would have mixed the two exports
    assert "removed 1 later epoch file(s)" in replaced.output
    assert sorted(f.name for f in out.iterdir()) == ["s-train-epoch0.pt"]
