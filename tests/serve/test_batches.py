"""Materialised batches: Zarr layout, table rows, streaming (workers, compat tuple), replacement."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from weightlake import open_lake
from weightlake.arch import EPOCH_BINS, SCENARIO_ACTIVATIONS
from weightlake.errors import NoSuchTableError
from weightlake.ingest.csv_zoo import ingest_csv
from weightlake.scenarios import declare_scenario, mask_classes
from weightlake.serve.batches import BatchStream, materialize
from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

ZOO = "mnist-cnn-s"
B = 7


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Scenario 's' over subsets of digits 0-4, materialised: train, batch 7, 2 epochs, seed 4."""
    tmp = tmp_path_factory.mktemp("batches")
    write_synthetic_csv(tmp / "zoo.csv", labels=all_labels(range(5), range(2, 6)), activations=("gelu", "relu"),
                        epochs=(11, 16), seed=6)
    ingest_csv(tmp / "lake", tmp / "zoo.csv", zoo=ZOO, init="kaiming_uniform")
    declare_scenario(tmp / "lake", "s", zoo=ZOO, digits="0-4", sizes="2-3", overlap="0-1")
    materialize(tmp / "lake", "s", "train", batch_size=B, epochs=2, seed=4)
    return tmp / "lake"


def test_layout_and_table(lake_dir: Path) -> None:
    lake = open_lake(lake_dir)
    n = len(lake.pairs("s", "train"))
    table = lake.table("batches").collect().sort("epoch")
    n_batches = -(-n // B)
    assert table["epoch"].to_list() == [0, 1] and set(table["n_batches"]) == {n_batches}
    assert set(table["seed"]) == {4} and set(table["batch_size"]) == {B}
    assert table["valid_last"][0] == n - (n_batches - 1) * B
    group = zarr.open_group(str(lake_dir / table["path"][0]), mode="r")
    assert group["x"].shape == (n_batches, B, 3, 2464) and group["x"].chunks == (1, B, 3, 2464)
    assert group["ids"].shape == (n_batches, B, 3) and group["acc"].dtype == np.float64
    valid = group["valid"][...]
    assert valid[:-1].all() and valid[-1].sum() == table["valid_last"][0]
    if not valid[-1].all():  # padding is marked and blank
        assert (group["ids"][-1][~valid[-1]] == -1).all() and (group["x"][-1][~valid[-1]] == 0).all()
    root_attrs = zarr.open_group(str(lake_dir / table["path"][0]).rsplit("/", 1)[0], mode="r").attrs
    assert root_attrs["seed"] == 4 and root_attrs["batch_size"] == B and "padding" in root_attrs


def test_stream_matches_the_loader(lake_dir: Path) -> None:
    lake = open_lake(lake_dir)
    pairs = lake.pairs("s", "train")
    for epoch in (0, 1):
        streamed = list(lake.batches("s", "train", epoch=epoch))
        loaded = list(pairs.loader(batch_size=B, seed=4, epoch=epoch))
        assert len(streamed) == len(loaded)
        for s, ld in zip(streamed, loaded, strict=True):
            assert torch.equal(s["pair_id"], ld["pair_id"]) and torch.equal(s["x1"], ld["x1"])
            assert torch.equal(s["y"], ld["y"]) and torch.equal(s["acc_b"], ld["acc_b"])
            assert s["x"].shape == (len(s["pair_id"]), 3, 2464) and s["epoch"] == epoch
    assert len(lake.batches("s", "train")) == 2 * len(streamed)


def test_zarr_path_equals_raw_chunk_path(lake_dir: Path) -> None:
    stream = BatchStream.open(open_lake(lake_dir), "s", "train", epoch=1)
    via_zarr = BatchStream(stream.root, stream.entries, raw_chunks=False)
    for a, b in zip(stream, via_zarr, strict=True):
        assert torch.equal(a["x"], b["x"])


def test_two_workers(lake_dir: Path) -> None:
    stream = open_lake(lake_dir).batches("s", "train")
    pickle.dumps(stream)  # nothing opened before iteration: it pickles
    single = [b["pair_id"].tolist() for b in stream]
    parallel = list(stream.loader(num_workers=2))
    assert [b["pair_id"].tolist() for b in parallel] == single
    assert [b["epoch"] for b in parallel] == [0] * (len(single) // 2) + [1] * (len(single) // 2)


def test_compat_tuple(lake_dir: Path) -> None:
    lake = open_lake(lake_dir)
    frame = lake.pairs("s", "train").to_polars()
    by_id = {r["pair_id"]: r for r in frame.iter_rows(named=True)}
    first = next(iter(lake.batches("s", "train", epoch=0)))
    x, records, acc, rows = next(iter(lake.batches("s", "train", epoch=0, compat=True)))
    assert x.shape == (B, 3, 2464) and x.dtype == torch.float32
    assert acc.shape == (B, 3) and rows.shape == (B, 3) and len(records) == B
    zoo_ids, _ = lake.zoo_weights(ZOO)
    assert torch.equal(x, first["x"])
    for i, pair_id in enumerate(first["pair_id"].tolist()):
        row = by_id[pair_id]
        assert records[i] == [mask_classes(row["a_mask"]), mask_classes(row["b_mask"]),
                              EPOCH_BINS.index(row["epoch"]), SCENARIO_ACTIVATIONS.index(row["activation"])]
        assert zoo_ids[rows[i].numpy()].tolist() == [row["a_id"], row["b_id"], row["target_id"]]
        assert acc[i].tolist() == [row["acc_a"], row["acc_b"], row["acc_y"]]


def test_rematerialize_replaces_and_drop_last(lake_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    shutil.copytree(lake_dir, root)
    old = open_lake(root)
    report = materialize(root, "s", "train", batch_size=10, epochs=1, seed=1, drop_last=True)
    lake = open_lake(root)
    table = lake.table("batches").collect()
    assert table.height == 1 and table["batch_size"][0] == 10
    assert lake.manifest.table("batches").arrays == (report.path,)
    assert all(len(b["pair_id"]) == 10 for b in lake.batches("s", "train"))
    assert len(old.batches("s", "train")) == 2 * old.table("batches").collect()["n_batches"][0]  # old snapshot intact
    with pytest.raises(NoSuchTableError, match="seed"):
        lake.batches("s", "train", seed=4)
    with pytest.raises(NoSuchTableError, match="materialize"):
        lake.batches("s", "test")


def test_not_materialised(tmp_path: Path) -> None:
    lake = open_lake(tmp_path / "lake", create=True)
    with pytest.raises(NoSuchTableError, match="pairs materialize"):
        lake.batches("s", "train")


def test_drop_last_refuses_a_split_smaller_than_one_batch(lake_dir: Path, tmp_path: Path, tree_state) -> None:
    """A split of fewer pairs than a batch: materialize failed with an IndexError traceback, export wrote
    epoch files of zero batches and the loader yielded nothing, all without a word."""
    from weightlake.errors import QueryError
    from weightlake.serve.files import export_batches

    root = tmp_path / "lake"
    shutil.copytree(lake_dir, root)
    lake = open_lake(root)
    n = len(lake.pairs("s", "test"))
    before = tree_state(root)
    with pytest.raises(QueryError, match=rf"'test' of scenario 's' has {n} pairs, fewer than one batch of {n + 1}"):
        materialize(root, "s", "test", batch_size=n + 1, epochs=1, drop_last=True)
    assert tree_state(root) == before
    with pytest.raises(QueryError, match="drop_last would leave out every one"):
        export_batches(lake, "s", "test", tmp_path / "pt", batch_size=n + 1, drop_last=True)
    assert not (tmp_path / "pt").exists()
    with pytest.raises(QueryError, match=f"has {n} pairs"):
        lake.pairs("s", "test").loader(batch_size=n + 1, drop_last=True)
    with pytest.raises(QueryError, match="rank 1 of 2 has"):
        lake.pairs("s", "test").loader(batch_size=n // 2 + 1, drop_last=True, rank=1, world_size=2)
    assert len(list(lake.pairs("s", "test").loader(batch_size=n, drop_last=True))) == 1  # one full batch: kept


def test_declaring_a_scenario_again_drops_its_materialised_batches(lake_dir: Path, tmp_path: Path) -> None:
    """Re-declared with other pairs, a scenario kept its old batches: lake.batches streamed 96-odd pairs the
    scenario no longer held (of another activation) without a word."""
    root = tmp_path / "lake"
    shutil.copytree(lake_dir, root)
    before = open_lake(root)
    old_ids = {i for b in before.batches("s", "train") for i in b["a_id"].tolist()}
    report = declare_scenario(root, "s", zoo=ZOO, digits="0-4", sizes="2-3", overlap="0-1", activations="relu")
    assert any("batches materialised from its earlier pairs (train) are dropped" in n for n in report.notes)
    lake = open_lake(root)
    with pytest.raises(NoSuchTableError, match="no materialised batches"):
        lake.batches("s", "train")
    assert not old_ids <= set(lake.pairs("s", "train").ids[:, 0].tolist())  # they were stale
    assert {i for b in before.batches("s", "train") for i in b["a_id"].tolist()} == old_ids  # old snapshot intact
    materialize(root, "s", "train", batch_size=B, epochs=1)
    fresh = open_lake(root)
    assert {i for b in fresh.batches("s", "train") for i in b["a_id"].tolist()} == set(
        fresh.pairs("s", "train").ids[:, 0].tolist())
    declare_scenario(root, "other", zoo=ZOO, digits="0-3", sizes="2")  # another scenario leaves them alone
    assert len(open_lake(root).batches("s", "train")) == len(fresh.batches("s", "train"))
