"""Hugging Face datasets of a zoo and of a pair set: the same numbers the lake serves, torch format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import weightlake as wl
from weightlake.serve.hf import zoo_to_hf

datasets = pytest.importorskip("datasets")


def test_zoo_to_hf_round_trips_every_model(real_lake_dir: Path) -> None:
    lake = wl.open_lake(real_lake_dir)
    ds = zoo_to_hf(lake)
    ids, rows = lake.zoo_weights("fmnist")
    assert isinstance(ds, datasets.Dataset) and len(ds) == len(ids) == 24
    assert ds.column_names[-1] == "weights" and {"model_id", "init", "activation", "accuracy"} <= set(ds.column_names)
    for i in (0, 7, 23):
        item = ds[i]
        assert item["weights"].dtype == torch.float32 and item["weights"].shape == (2464,)
        want = lake.weights_numpy([int(item["model_id"])])[0]
        assert np.array_equal(item["weights"].numpy().view(np.uint32), want.view(np.uint32))
    meta = lake.models("fmnist").collect().sort("model_id")
    assert ds["init"] == meta["init"].to_list()
    batch = next(iter(torch.utils.data.DataLoader(ds.select_columns(["weights", "accuracy"]), batch_size=5)))
    assert batch["weights"].shape == (5, 2464)


def test_pairset_to_hf_matches_the_tensors(analysed_lake_dir: Path) -> None:
    pairs = wl.open_lake(analysed_lake_dir).pairs("t", "train")
    ds = pairs.to_hf()
    x1, x2, y = pairs.tensors()
    assert len(ds) == len(pairs) > 0
    whole = ds[:]
    assert torch.equal(whole["x1"], x1) and torch.equal(whole["x2"], x2) and torch.equal(whole["y"], y)
    assert whole["pair_id"].tolist() == list(pairs.pair_id)
    assert whole["target_id"].tolist() == list(pairs.ids[:, 2])


def test_zoo_to_hf_over_the_budget_streams_to_a_mapped_file(bounded_lake_dir: Path, tmp_path: Path) -> None:
    from weightlake.errors import QueryError

    small = wl.open_lake(bounded_lake_dir, memory="1MB")
    with pytest.raises(QueryError, match="pass path="):
        zoo_to_hf(small)
    ds = zoo_to_hf(small, path=tmp_path / "zoo.arrow")
    assert not small._cache  # never decoded whole
    want = zoo_to_hf(wl.open_lake(bounded_lake_dir))
    assert len(ds) == len(want) == 1872 and ds.column_names == want.column_names
    whole, ref = ds[:], want[:]
    assert torch.equal(whole["weights"], ref["weights"]) and whole["model_id"].tolist() == ref["model_id"].tolist()
    assert whole["init"] == ref["init"]
    with pytest.raises(QueryError, match="inside the lake"):
        zoo_to_hf(small, path=bounded_lake_dir / "x.arrow")
