"""A zoo records its image dataset and evaluation scores on it; another dataset only when asked (issue 9, case 6)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import weightlake as wl
from weightlake.cli import main
from weightlake.errors import IngestError, QueryError
from weightlake.experiments.evaluate import evaluate_checkpoints
from weightlake.experiments.merger import MergerConfig, TransformerAE
from weightlake.ingest.common import zoo_dataset
from weightlake.ingest.csv_zoo import ingest_csv
from weightlake.scenarios import declare_scenario
from weightlake.zoo.idx import KNOWN_DATASETS, dataset_id
from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

ZOO = "mnist-cnn-s"
FASHION = KNOWN_DATASETS["fashion-mnist"][0].is_dir()


@pytest.fixture(scope="module")
def mnist_zoo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The user's MNIST CSV zoo, ingested with --dataset mnist (not installed here), a scenario, a checkpoint."""
    tmp = tmp_path_factory.mktemp("mnistzoo")
    csv = tmp / "zoo.csv"
    write_synthetic_csv(csv, labels=all_labels(range(4), range(2, 5)), activations=("gelu",), epochs=(11,), seed=2)
    ingest_csv(tmp / "lake", csv, zoo=ZOO, init="kaiming_uniform", dataset="mnist")
    declare_scenario(tmp / "lake", "s", zoo=ZOO, digits="0-3", sizes="2", overlap=0, epochs=[11])
    torch.manual_seed(0)
    ckpt = tmp / "Experiments" / "run_h2" / "AE epoch mse val 1.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save({"epoch": 1, "model_state_dict": TransformerAE(MergerConfig(16, 2, 16, 1, 8)).state_dict()}, ckpt)
    return tmp / "lake", ckpt, csv


def test_dataset_ids() -> None:
    assert dataset_id("fashion-mnist") == "fashion-mnist" and dataset_id(" mnist ") == "mnist"
    assert dataset_id(".") == str(Path(".").resolve())


def test_trainer_records_the_dataset_and_checkpoint_ingest_reads_it(real_lake_dir: Path) -> None:
    assert zoo_dataset(wl.open_lake(real_lake_dir).manifest, "fmnist") == "fashion-mnist"


def test_csv_ingest_records_dataset_and_a_zoo_holds_one(mnist_zoo, tmp_path: Path) -> None:
    lake, _, csv = mnist_zoo
    assert zoo_dataset(wl.open_lake(lake).manifest, ZOO) == "mnist"
    other = tmp_path / "other.csv"
    write_synthetic_csv(other, labels=all_labels(range(4), range(2, 3)), activations=("relu",), epochs=(16,), seed=5)
    with pytest.raises(IngestError, match="trained on 'mnist', this source says 'fashion-mnist'"):
        ingest_csv(lake, other, zoo=ZOO, init="kaiming_uniform", dataset="fashion-mnist")


def test_a_zoo_is_not_scored_on_another_dataset_unless_asked(mnist_zoo, tmp_path: Path) -> None:
    """An MNIST zoo was scored on Fashion-MNIST by default (12.8 % accuracy, no warning)."""
    import shutil

    source, ckpt, _ = mnist_zoo
    lake = tmp_path / "lake"
    shutil.copytree(source, lake)
    with pytest.raises(QueryError, match="trained on 'mnist', which is not available here.*--images FOLDER"):
        evaluate_checkpoints(lake, [ckpt], "s", "test", metrics=["mse"], accuracy_models=1)
    assert "evaluations" not in wl.open_lake(lake).tables
    result = CliRunner().invoke(main, ["experiments", "evaluate", str(ckpt), "--scenario", "s", "--metrics", "mse",
                                       "--lake", str(lake)])
    assert result.exit_code == 1 and "which is not available here" in result.output
    if not FASHION:
        return
    report = evaluate_checkpoints(lake, [ckpt], "s", "test", metrics=["mse"], accuracy_models=1,
                                  images="fashion-mnist")
    (row,) = report.rows
    assert (row["zoo_dataset"], row["accuracy_images"]) == ("mnist", "fashion-mnist")
    assert any("not zoo 'mnist-cnn-s''s own dataset 'mnist'" in line for line in report.lines())


def test_a_zoo_without_a_recorded_dataset_needs_images(tmp_path: Path, mnist_zoo) -> None:
    _, ckpt, csv = mnist_zoo
    lake = tmp_path / "lake"
    ingest_csv(lake, csv, zoo=ZOO, init="kaiming_uniform")  # no --dataset
    declare_scenario(lake, "s", zoo=ZOO, digits="0-3", sizes="2", overlap=0, epochs=[11])
    with pytest.raises(QueryError, match="records no image dataset.*--images fashion-mnist.*--images none"):
        evaluate_checkpoints(lake, [ckpt], "s", "test", metrics=["mse"])
    report = evaluate_checkpoints(lake, [ckpt], "s", "test", metrics=["mse"], images=None)
    assert report.rows[0]["zoo_dataset"] is None and report.rows[0]["error"] is None
