"""Weight-space augmentations: permutation preserves the function of real trained CNNs; batches are
seeded per (seed, epoch, batch) whatever the workers; noise and erasing leave the target alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import weightlake as wl
from weightlake.arch import CNN_S
from weightlake.errors import QueryError
from weightlake.scenarios import declare_scenario
from weightlake.serve.augment import Augment, permute_neurons
from weightlake.zoo.cnn import build_cnn


def test_permuted_trained_cnns_give_identical_logits(real_lake_dir: Path, fashion_test: tuple) -> None:
    lake = wl.open_lake(real_lake_dir)
    meta = lake.models().select("model_id", "activation").collect()
    ids = meta["model_id"].to_numpy()[:6]
    flats = lake.weights_numpy(ids)
    permuted = permute_neurons(flats, CNN_S, np.random.default_rng(0))
    images = torch.from_numpy(fashion_test[0][:256]).float().div(255).unsqueeze(1) \
        if fashion_test[0].ndim == 3 else torch.from_numpy(fashion_test[0][:256])
    for mid, act, before, after in zip(ids, meta["activation"][:6], flats, permuted, strict=True):
        assert not np.array_equal(before, after)
        assert np.allclose(np.sort(before), np.sort(after))  # the same values, reordered
        with torch.no_grad():
            ref = build_cnn(CNN_S, act, before)(images)
            got = build_cnn(CNN_S, act, after)(images)
        assert torch.allclose(got, ref, atol=1e-5, rtol=1e-5), (mid, float((got - ref).abs().max()))


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

    tmp = tmp_path_factory.mktemp("aug")
    write_synthetic_csv(tmp / "zoo.csv", labels=all_labels(range(5), range(2, 6)), activations=("relu",),
                        epochs=(11,), seed=5)
    ingest_csv(tmp / "lake", tmp / "zoo.csv", zoo="mnist-cnn-s", init="kaiming_uniform")
    declare_scenario(tmp / "lake", "s", zoo="mnist-cnn-s", digits="0-4", sizes="2-3", overlap="0-1")
    return wl.open_lake(tmp / "lake").pairs("s", None)


def test_augmented_batches_are_seeded_per_epoch_and_batch(pairs) -> None:  # noqa: ANN001
    aug = Augment(permute=True, noise=0.01, erase=0.1)

    def batches(epoch: int, workers: int = 0) -> list[dict]:
        return list(pairs.loader(batch_size=16, seed=1, epoch=epoch, augment=aug, num_workers=workers))

    first, again = batches(0), batches(0)
    assert all(torch.equal(a["x1"], b["x1"]) and torch.equal(a["y"], b["y"]) for a, b in zip(first, again, strict=True))
    parallel = batches(0, workers=2)
    assert all(torch.equal(a["x2"], b["x2"]) for a, b in zip(first, parallel, strict=True))
    other = batches(1)
    assert not torch.equal(first[0]["x1"], other[0]["x1"])
    plain = list(pairs.loader(batch_size=16, seed=1, epoch=0))
    assert not torch.equal(first[0]["x1"], plain[0]["x1"])
    assert [b["pair_id"].tolist() for b in first] == [b["pair_id"].tolist() for b in plain]  # same pairs, same order


def test_noise_and_erasing_leave_the_target_and_permutation_is_shared(pairs) -> None:  # noqa: ANN001
    plain = next(iter(pairs.loader(batch_size=8, seed=2)))
    noisy = next(iter(pairs.loader(batch_size=8, seed=2, augment=Augment(noise=0.05, erase=0.2))))
    assert torch.equal(noisy["y"], plain["y"]) and not torch.equal(noisy["x1"], plain["x1"])
    assert (noisy["x1"] == 0).float().mean() > 0.15
    with pytest.raises(QueryError):
        Augment(erase=1.5)


def test_pair_dataset_and_hf(pairs) -> None:  # noqa: ANN001
    ds = pairs.pair_dataset()
    x1, x2, y = pairs.tensors()
    assert len(ds) == len(pairs)
    item = ds[5]
    assert torch.equal(item["x1"], x1[5]) and torch.equal(item["y"], y[5]) and item["pair_id"] == pairs.pair_id[5]
    assert torch.equal(ds[-1]["x2"], x2[-1])
    with pytest.raises(IndexError):
        ds[len(ds)]
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False)
    assert torch.equal(next(iter(loader))["x1"], x1[:4])
    pytest.importorskip("datasets")
    hf = pairs.to_hf()
    assert len(hf) == len(pairs) and torch.equal(hf[3]["x1"], x1[3]) and int(hf[3]["pair_id"]) == pairs.pair_id[3]


@pytest.mark.parametrize("how", ["loader", "sampler"])
def test_set_epoch_moves_order_and_augmentation_and_a_repeated_pass_warns(pairs, how: str) -> None:  # noqa: ANN001
    """``dl.sampler.set_epoch(1)`` changed the order but kept epoch 0's augmentation noise, and a
    loader iterated twice gave the same epoch again without a word."""
    import warnings

    aug = Augment(noise=0.02, erase=0.1)
    want = list(pairs.loader(batch_size=16, seed=1, epoch=1, augment=aug))
    dl = pairs.loader(batch_size=16, seed=1, epoch=0, augment=aug)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(dl)  # the first pass at epoch 0 says nothing
        (dl if how == "loader" else dl.sampler).set_epoch(1)
        got = list(dl)
    assert all(torch.equal(a["x1"], b["x1"]) and torch.equal(a["pair_id"], b["pair_id"])
               for a, b in zip(want, got, strict=True))
    with pytest.warns(UserWarning, match="another pass over this loader at epoch 1"):
        list(dl)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        val = pairs.loader(batch_size=16, shuffle=False)
        list(val), list(val)  # an unshuffled, unaugmented loader is meant to repeat
