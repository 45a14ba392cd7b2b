"""PairSet: tensors, metadata and the batch loader (determinism, workers, views)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from weightlake import open_lake
from weightlake.errors import NoSuchTableError, QueryError
from weightlake.ingest.csv_zoo import ingest_csv
from weightlake.scenarios import declare_scenario
from weightlake.serve.pairset import PairSet, epoch_order
from weightlake.serve.tokens import from_tokens
from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

ZOO = "mnist-cnn-s"


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Subsets of digits 0-4, two activations, two epochs; scenario 's' (digits 0-4, sizes 2-3, overlap 0-1)."""
    tmp = tmp_path_factory.mktemp("pairset")
    write_synthetic_csv(tmp / "zoo.csv", labels=all_labels(range(5), range(2, 6)), activations=("gelu", "relu"),
                        epochs=(11, 16), seed=5)
    ingest_csv(tmp / "lake", tmp / "zoo.csv", zoo=ZOO, init="kaiming_uniform")
    declare_scenario(tmp / "lake", "s", zoo=ZOO, digits="0-4", sizes="2-3", overlap="0-1")
    return tmp / "lake"


@pytest.fixture(scope="module")
def train(lake_dir: Path) -> PairSet:
    return open_lake(lake_dir).pairs("s", "train")


def test_open_and_metadata(lake_dir: Path, train: PairSet) -> None:
    lake = open_lake(lake_dir)
    everything = lake.pairs("s")
    splits = [len(lake.pairs("s", s)) for s in ("train", "val", "test")]
    assert len(everything) == sum(splits) and all(splits)
    frame = train.to_polars()
    assert set(frame["split"]) == {"train"} and len(frame) == len(train)
    acc = dict(lake.models(ZOO).select("model_id", "accuracy").collect().iter_rows())
    for row in frame.head(20).iter_rows(named=True):
        assert (row["acc_a"], row["acc_b"], row["acc_y"]) == (acc[row["a_id"]], acc[row["b_id"]],
                                                              acc[row["target_id"]])


def test_tensors_equal_lake_weights(lake_dir: Path, train: PairSet) -> None:
    lake = open_lake(lake_dir)
    x1, x2, y = train.tensors()
    assert x1.dtype == torch.float32 and x1.shape == (len(train), 2464)
    assert torch.equal(x1, lake.weights(train.ids[:, 0]))
    assert torch.equal(x2, lake.weights(train.ids[:, 1]))
    assert torch.equal(y, lake.weights(train.ids[:, 2]))
    assert train.tensors()[0] is x1  # gathered once


def test_loader_batches_hold_the_right_rows(lake_dir: Path, train: PairSet) -> None:
    lake = open_lake(lake_dir)
    batches = list(train.loader(batch_size=16, seed=3))
    assert [len(b["pair_id"]) for b in batches[:-1]] == [16] * (len(batches) - 1)
    seen = torch.cat([b["pair_id"] for b in batches]).numpy()
    assert sorted(seen.tolist()) == sorted(train.pair_id.tolist())
    b = batches[1]
    assert torch.equal(b["x1"], lake.weights(b["a_id"].numpy()))
    assert torch.equal(b["x2"], lake.weights(b["b_id"].numpy()))
    assert torch.equal(b["y"], lake.weights(b["target_id"].numpy()))
    frame = train.to_polars()
    acc_y = dict(zip(frame["pair_id"].to_list(), frame["acc_y"].to_list(), strict=True))
    assert [acc_y[p] for p in b["pair_id"].tolist()] == b["acc_y"].tolist()


def order(loader) -> list[list[int]]:
    return [b["pair_id"].tolist() for b in loader]


def test_loader_is_deterministic_per_seed_and_epoch(train: PairSet) -> None:
    first = order(train.loader(batch_size=32, seed=1, epoch=0))
    assert order(train.loader(batch_size=32, seed=1, epoch=0)) == first
    assert order(train.loader(batch_size=32, seed=1, epoch=1)) != first
    assert order(train.loader(batch_size=32, seed=2, epoch=0)) != first
    plain = order(train.loader(batch_size=32, shuffle=False))
    assert sum(plain, []) == train.pair_id.tolist()
    assert np.array_equal(epoch_order(10, seed=4, epoch=2), epoch_order(10, seed=4, epoch=2))


def test_drop_last(train: PairSet) -> None:
    batches = order(train.loader(batch_size=50, drop_last=True))
    assert len(batches) == len(train) // 50 and all(len(b) == 50 for b in batches)


def test_two_workers_give_the_same_batches(train: PairSet) -> None:
    with pytest.warns(UserWarning, match="num_workers=0 is faster"):
        loader = train.loader(batch_size=64, seed=9, epoch=2, num_workers=2)
    batches = list(loader)
    assert [b["pair_id"].tolist() for b in batches] == order(train.loader(batch_size=64, seed=9, epoch=2))
    single = list(train.loader(batch_size=64, seed=9, epoch=2))
    assert all(torch.equal(a["y"], b["y"]) for a, b in zip(batches, single, strict=True))


def test_dataset_pickles_without_handles(train: PairSet) -> None:
    ds = train.dataset()
    clone = pickle.loads(pickle.dumps(ds))
    idx = np.array([3, 1, 2])
    assert torch.equal(clone[idx]["x1"], ds[idx]["x1"])


def test_views(train: PairSet) -> None:
    flat = next(iter(train.loader(batch_size=8, shuffle=False)))
    tokens = next(iter(train.loader(batch_size=8, shuffle=False, view="tokens")))
    tok80, tok16 = tokens["x1"]
    assert tok80.shape == (8, 26, 80) and tok16.shape == (8, 24, 16)
    assert torch.equal(from_tokens(*tokens["y"]), flat["y"])
    layers = next(iter(train.loader(batch_size=8, shuffle=False, view="layers")))
    assert layers["x2"]["conv1"].shape == (8, 8, 1, 5, 5) and layers["x2"]["fc2.bias"].shape == (8, 10)
    with pytest.raises(QueryError, match="view"):
        train.loader(view="pixels")


def test_errors(lake_dir: Path) -> None:
    lake = open_lake(lake_dir)
    with pytest.raises(NoSuchTableError, match="no scenario 'nope'"):
        lake.pairs("nope", "train")
    with pytest.raises(QueryError, match="split"):
        lake.pairs("s", "training")


def test_filter_keeps_the_chosen_pairs_and_their_weights(lake_dir: Path, train: PairSet) -> None:
    """``filter`` narrows a pair set by SQL or polars conditions; the tensors follow the rows kept."""
    import polars as pl

    lake = open_lake(lake_dir)
    everything = lake.pairs("s")
    frame = everything.to_polars()
    assert frame["fallback"].any() and frame["overlap"].n_unique() == 2  # the fixture has both kinds
    disjoint = everything.filter("overlap = 0 AND NOT fallback")
    expected = frame.filter((pl.col("overlap") == 0) & ~pl.col("fallback"))
    assert 0 < len(disjoint) < len(everything) and disjoint.pair_id.tolist() == expected["pair_id"].to_list()
    assert len(everything.filter(pl.col("overlap") == 0, "NOT fallback")) == len(disjoint)
    x1, _, y = disjoint.tensors()
    assert torch.equal(x1, lake.weights(expected["a_id"].to_numpy())) and torch.equal(y, lake.weights(expected["target_id"].to_numpy()))
    batch = next(iter(disjoint.loader(batch_size=4, shuffle=False)))
    assert torch.equal(batch["x1"], lake.weights(expected["a_id"].to_numpy()[:4]))
    with pytest.raises(QueryError, match="cannot filter the pairs of 's'.*pair columns: pair_id"):
        train.filter("no_such_column > 1")


def test_filter_by_the_models_accuracies(lake_dir: Path) -> None:
    """``pairs.filter("acc_y > 80")`` was refused (the accuracies are not pair columns); and a null
    accuracy, held as NaN, passed ``acc_y > 80`` (polars orders NaN above every number)."""
    import polars as pl

    everything = open_lake(lake_dir).pairs("s")
    frame = everything.to_polars()
    cut = float(frame["acc_y"].median())
    good = everything.filter(f"acc_y > {cut} AND overlap = 0")
    expected = frame.filter((pl.col("acc_y") > cut) & (pl.col("overlap") == 0))
    assert 0 < len(good) < len(everything) and good.pair_id.tolist() == expected["pair_id"].to_list()
    assert good.to_polars().columns == frame.columns  # no second set of accuracy columns
    assert len(everything.filter(pl.col("acc_a") >= pl.col("acc_b"))) == frame.filter(
        pl.col("acc_a") >= pl.col("acc_b")).height
    everything.accuracy[0, 2] = np.nan  # as _accuracies holds a model without an accuracy
    assert everything.to_polars()["acc_y"][0] is None
    assert everything.pair_id[0] not in everything.filter("acc_y > -1").pair_id
