"""Pair serving under a memory budget smaller than the zoo equals serving from the decoded zoo;
distributed shares (``loader(rank=, world_size=)``) are disjoint and together every pair."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import weightlake as wl
from weightlake.errors import QueryError
from weightlake.serve.pairset import EpochBatches, rank_share
from weightlake.storage.budget import BudgetWarning
from weightlake.storage.mapped import MappedRows

ZOO = "mnist-cnn-s"
TINY = "1MB"


@pytest.fixture(scope="module")
def lakes(bounded_lake_dir: Path) -> tuple[wl.Lake, wl.Lake]:
    """(a handle whose budget holds the zoo, one whose 1MB budget is far below its 18 MB)."""
    return wl.open_lake(bounded_lake_dir, memory="1GB"), wl.open_lake(bounded_lake_dir, memory=TINY)


def _batches(lake: wl.Lake, **kw) -> list[dict]:
    return list(lake.pairs("s", "train").loader(**kw))


@settings(max_examples=12, deadline=None)
@given(batch_size=st.integers(1, 700), seed=st.integers(0, 3), epoch=st.integers(0, 2),
       world_size=st.integers(1, 3), drop_last=st.booleans())
def test_bounded_batches_equal_in_memory_ones_on_every_rank(lakes, batch_size, seed, epoch, world_size,
                                                            drop_last) -> None:
    roomy, small = lakes
    n = len(roomy.pairs("s", "train"))
    seen = []
    for rank in range(world_size):
        kw = {"batch_size": batch_size, "seed": seed, "epoch": epoch, "rank": rank, "world_size": world_size,
              "drop_last": drop_last}
        want, got = _batches(roomy, **kw), _batches(small, **kw)
        assert len(want) == len(got) == len(small.pairs("s", "train").loader(**kw))
        for a, b in zip(want, got, strict=True):
            assert a.keys() == b.keys()
            for k in a:
                torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, equal_nan=True)
        seen += [p for b in got for p in b["pair_id"].tolist()]
    assert len(seen) == len(set(seen))  # disjoint shares
    if not drop_last:
        assert len(seen) == n  # together: every pair
    assert isinstance(small.row_source(ZOO), MappedRows) and not small._cache  # the zoo was never decoded whole


def test_bounded_tensors_equal_in_memory_ones(lakes) -> None:
    roomy, small = lakes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetWarning)  # the tensors themselves exceed 1MB: it says so
        got = small.pairs("s", "val").tensors()
    for a, b in zip(roomy.pairs("s", "val").tensors(), got, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.warns(BudgetWarning, match="tensors"):
        small.pairs("s", "val").tensors()


def test_bounded_materialised_batches_equal_in_memory_ones(bounded_lake_dir, tmp_path) -> None:
    import shutil

    from weightlake.serve.batches import materialize

    streams = []
    for budget in ("1GB", TINY):
        root = tmp_path / budget
        shutil.copytree(bounded_lake_dir, root)
        os.environ["WEIGHTLAKE_MEMORY"] = budget
        try:
            materialize(root, "s", "train", batch_size=100, epochs=2, seed=3)
        finally:
            del os.environ["WEIGHTLAKE_MEMORY"]
        streams.append([list(wl.open_lake(root).batches("s", "train", epoch=e)) for e in range(2)])
    for want, got in zip(*streams, strict=True):
        assert len(want) == len(got)
        for a, b in zip(want, got, strict=True):
            for k in ("x1", "x2", "y", "pair_id", "a_id"):
                torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_a_rank_gathers_only_its_own_rows(lakes) -> None:
    _, small = lakes
    pairs = small.pairs("s", "train")
    loader = pairs.loader(batch_size=64, rank=1, world_size=2, epoch=4)
    source, taken = loader.dataset.weights, []
    original = source.take
    loader.dataset.weights = type("Recording", (), {"cols": source.cols,
                                                    "take": lambda self, pos: (taken.append(pos), original(pos))[1]})()
    ids = np.concatenate([b["pair_id"].numpy() for b in loader])
    share = rank_share(np.random.default_rng([0, 4]).permutation(len(pairs)), 1, 2)
    np.testing.assert_array_equal(ids, pairs.pair_id[share])
    np.testing.assert_array_equal(np.sort(np.concatenate(taken)), np.sort(pairs.zoo_rows()[share].reshape(-1)))


@pytest.mark.parametrize(("rank", "world_size", "match"), [
    (2, 2, r"rank must be in 0\.\.1"), (-1, 2, "rank must be"), (0, 0, "world_size must be >= 1"),
    (0.5, 2, "whole number"), (True, 2, "whole number"), (0, "2", "whole number")])
def test_bad_ranks_are_refused(lakes, rank, world_size, match) -> None:
    with pytest.raises(QueryError, match=match):
        lakes[1].pairs("s", "train").loader(rank=rank, world_size=world_size)


def test_shares_per_epoch_reshuffle() -> None:
    a = [list(EpochBatches(101, 8, epoch=e, rank=0, world_size=2)) for e in (0, 1)]
    assert not np.array_equal(np.concatenate(a[0]), np.concatenate(a[1]))
    assert len(EpochBatches(101, 8, rank=0, world_size=2)) == 7 and len(EpochBatches(101, 8, rank=1, world_size=2)) == 7


RANK_SCRIPT = """
import sys, numpy as np, torch.distributed as dist, weightlake as wl
root, store, out, rank = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
dist.init_process_group("gloo", init_method="file://" + store, rank=rank, world_size=2)
pairs = wl.open_lake(root, memory="1MB").pairs("s", "train")
seen = {}
for epoch in range(2):
    ids = [b["pair_id"] for b in pairs.loader(batch_size=50, epoch=epoch, rank=rank, world_size=2)]
    seen[f"e{epoch}"] = np.concatenate([i.numpy() for i in ids])
    gathered = [None, None]
    dist.all_gather_object(gathered, seen[f"e{epoch}"].tolist())  # every rank sees both shares
    both = gathered[0] + gathered[1]
    assert len(both) == len(set(both)) == len(pairs), (len(both), len(set(both)), len(pairs))
np.savez(out, **seen)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_processes_share_every_epoch(bounded_lake_dir, tmp_path) -> None:
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIGHTLAKE_")}
    procs = [subprocess.Popen([sys.executable, str(script), str(bounded_lake_dir), str(tmp_path / "store"),
                               str(tmp_path / f"rank{r}.npz"), str(r)], env=env, stderr=subprocess.PIPE, text=True)
             for r in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
    shares = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    every = set(wl.open_lake(bounded_lake_dir).pairs("s", "train").pair_id.tolist())
    for e in ("e0", "e1"):
        a, b = shares[0][e], shares[1][e]
        assert not set(a) & set(b) and len(a) + len(b) == len(every) and set(a) | set(b) == every
        assert abs(len(a) - len(b)) <= 1
    assert not np.array_equal(shares[0]["e0"], shares[0]["e1"])  # reshuffled per epoch


def _same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            torch.testing.assert_close(x[k], y[k], rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("prefetch", [1, 2, 5])
def test_prefetched_batches_equal_gathering_in_the_loop(lakes, prefetch) -> None:
    from weightlake.serve.augment import Augment

    roomy, small = lakes
    for lake, sizes in ((roomy, (70, 33)), (small, (2, 1))):  # decoded and mapped (whose 1MB holds few batches)
        for kw in ({"batch_size": sizes[0], "epoch": 3},
                   {"batch_size": sizes[1], "seed": 2, "augment": Augment(noise=0.1)}):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "prefetch=")  # capped below 5 on the small budget: said, not here
                # (was: capped to 0 on the mapped lake, so the test compared two loops without prefetch)
                assert lake.pairs("s", "train").loader(prefetch=prefetch, **kw).prefetch >= 1
                _same(_batches(lake, prefetch=prefetch, **kw), _batches(lake, prefetch=0, **kw))


def test_prefetch_is_capped_by_the_budget(lakes) -> None:
    roomy, small = lakes  # one batch of 3 x 64 CNN-s rows is 1.9 MB: more than a quarter of 1MB
    with pytest.warns(UserWarning, match=r"prefetch=3: .* gathering 0 ahead"):  # was silent
        assert small.pairs("s", "train").loader(batch_size=64, prefetch=3).prefetch == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert roomy.pairs("s", "train").loader(batch_size=64, prefetch=3).prefetch == 3


def test_a_loop_left_early_stops_the_prefetch_threads(lakes) -> None:
    import gc
    import threading

    loader = lakes[0].pairs("s", "train").loader(batch_size=16, prefetch=2)
    for k, _ in enumerate(loader):
        if k == 2:
            break
    gc.collect()
    assert not [t for t in threading.enumerate() if t.name.startswith("weightlake-prefetch")]


def test_a_failed_gather_is_raised_at_its_own_batch(lakes) -> None:
    loader = lakes[0].pairs("s", "train").loader(batch_size=16, prefetch=2)
    source = loader.dataset.weights
    # the gathers run in two threads, so the call order is not the batch order: fail the gather
    # of the fourth batch by its rows
    fourth = np.asarray(list(iter(loader.sampler))[3], dtype=np.int64)
    doomed = loader.dataset.rows_t[:, fourth].reshape(-1)

    def take(pos):
        if np.array_equal(pos, doomed):
            raise OSError("chunk unreadable")
        return source.take(pos)

    loader.dataset.weights = type("Failing", (), {"cols": source.cols, "take": staticmethod(take)})()
    got = []
    with pytest.raises(OSError, match="unreadable"):
        for batch in loader:
            got.append(batch)
    assert len(got) == 3  # the batches before the failed one arrive, in order


def test_prefetch_with_workers_is_a_plain_dataloader(lakes) -> None:
    _, small = lakes
    with pytest.warns(UserWarning, match="num_workers=0 is faster"):
        loader = small.pairs("s", "train").loader(batch_size=90, epoch=1, num_workers=2, prefetch=1)
    _same(list(loader), _batches(small, batch_size=90, epoch=1))
