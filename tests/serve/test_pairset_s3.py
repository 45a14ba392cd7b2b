"""The rank loader on a lake at s3:// (moto's server) under a memory budget smaller than the zoo:
the same batches as the local lake, disjoint shares that together are every pair, each rank
reading only the chunks and rows its pairs need (``storage/remote_rows.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

import weightlake as wl
from weightlake.errors import IntegrityError
from weightlake.serve.pairset import rank_share

pytest.importorskip("obstore")
TINY = "1MB"


@pytest.fixture(scope="module")
def s3_bounded(s3_endpoint: str, bounded_lake_dir: Path) -> str:
    """``bounded_lake_dir`` rebuilt at ``s3://<fresh bucket>/lake`` from the same CSVs, in the same order."""
    import boto3

    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.scenarios import declare_scenario

    bucket = f"ranks-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/lake"
    for i, init in enumerate(("kaiming_uniform", "xavier_normal")):
        ingest_csv(url, bounded_lake_dir.parent / f"z{i}.csv", zoo="mnist-cnn-s", init=init)
    declare_scenario(url, "s", zoo="mnist-cnn-s", digits="0-4", sizes="2-3", overlap="0-1")
    return url


def _chunk_keys(source, positions: np.ndarray) -> set[str]:
    """The chunk objects holding zoo positions ``positions``."""
    parts = source._segment_chunks()
    seg = np.searchsorted(source.starts, positions, side="right") - 1
    return {parts[s].keys[(p - source.starts[s]) // parts[s].step] for s, p in zip(seg, positions, strict=True)}


def test_remote_rows_equal_the_local_rows_and_fetch_only_what_they_need(s3_bounded, bounded_lake_dir) -> None:
    from weightlake.storage.remote_rows import RemoteRows

    lake = wl.open_lake(s3_bounded, memory=TINY)
    source = lake.row_source("mnist-cnn-s")
    assert isinstance(source, RemoteRows) and not lake._cache  # over the budget: never decoded whole
    _, want = wl.open_lake(bounded_lake_dir).zoo_weights("mnist-cnn-s")
    np.testing.assert_array_equal(source.ids, wl.open_lake(bounded_lake_dir).zoo_ids("mnist-cnn-s"))
    first = np.array([3, 7, 7, 500, 2])  # rows of the first chunk of the first segment only
    np.testing.assert_array_equal(source.take(first), want[first])
    assert list(source.log.chunks) == list(_chunk_keys(source, first)) and source.log.ranged_rows == 0
    np.testing.assert_array_equal(source.take(first[::-1]), want[first[::-1]])  # checked chunk: by range
    assert source.log.ranged_rows == 4 and sum(source.log.chunks.values()) == 1
    pos = np.random.default_rng(0).integers(0, len(source), 400)  # both segments, repeats
    np.testing.assert_array_equal(source.take(pos), want[pos])
    assert set(source.log.chunks) == _chunk_keys(source, np.concatenate([first, pos]))
    assert set(source.log.chunks.values()) == {1}  # each chunk object fetched whole once
    assert source.take(np.empty(0, dtype=np.int64)).shape == (0, source.cols)
    with pytest.raises(IntegrityError, match="out of range"):
        source.take(np.array([len(source)]))


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_shares_on_s3_equal_the_local_ones(s3_bounded, bounded_lake_dir, world_size) -> None:
    """Every rank's batches equal the local lake's bitwise; shares disjoint, together every pair;
    a rank fetches only the chunks of its own pairs' rows, and by range only rows of its share."""
    local = wl.open_lake(bounded_lake_dir, memory=TINY).pairs("s", "train")
    seen = []
    for rank in range(world_size):
        pairs = wl.open_lake(s3_bounded, memory=TINY).pairs("s", "train")
        kw = {"batch_size": 64, "seed": 1, "epoch": 2, "rank": rank, "world_size": world_size}
        loader = pairs.loader(**kw)
        got = list(loader)
        want = list(local.loader(**kw))
        assert len(got) == len(want) == len(loader)
        for a, b in zip(got, want, strict=True):
            for k in a:
                torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, equal_nan=True)
        seen += [p for b in got for p in b["pair_id"].tolist()]
        share = rank_share(np.random.default_rng([1, 2]).permutation(len(pairs)), rank, world_size)
        mine = pairs.zoo_rows()[share].reshape(-1)
        source = loader.dataset.weights
        assert set(source.log.chunks) == _chunk_keys(source, mine)
        assert source.log.ranged_rows <= mine.size  # at most its own rows, by range
    assert len(seen) == len(set(seen)) == len(local)


def test_a_corrupt_chunk_on_s3_is_refused_in_one_line(s3_endpoint, s3_lake_url, small_csv) -> None:
    import boto3

    from weightlake.ingest.csv_zoo import ingest_csv

    ingest_csv(s3_lake_url, small_csv, zoo="mnist-cnn-s", init="kaiming_uniform")
    source = wl.open_lake(s3_lake_url, memory=TINY).row_source("mnist-cnn-s")
    key = source._segment_chunks()[0].keys[0]
    bucket, prefix = s3_lake_url[len("s3://"):].split("/", 1)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    data = bytearray(s3.get_object(Bucket=bucket, Key=f"{prefix}/{key}")["Body"].read())
    data[100] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=bytes(data))
    with pytest.raises(IntegrityError) as err:
        source.take(np.array([0]))
    assert key in str(err.value) and "\n" not in str(err.value)


RANK_SCRIPT = """
import json, sys, numpy as np, torch.distributed as dist, weightlake as wl
from weightlake.storage.remote_rows import RemoteRows
root, store, out, rank = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
dist.init_process_group("gloo", init_method="file://" + store, rank=rank, world_size=2)
pairs = wl.open_lake(root, memory="1MB").pairs("s", "train")
seen, taken = {}, []
for epoch in range(2):
    loader = pairs.loader(batch_size=50, epoch=epoch, rank=rank, world_size=2)
    assert isinstance(loader.dataset.weights, RemoteRows)
    seen[f"e{epoch}"] = np.concatenate([b["pair_id"].numpy() for b in loader])
    log = loader.dataset.weights.log  # the handle keeps one source: its log adds up over the epochs
    taken.append({"chunks": sorted(log.chunks), "ranged_rows": log.ranged_rows - sum(t["ranged_rows"] for t in taken)})
    gathered = [None, None]
    dist.all_gather_object(gathered, seen[f"e{epoch}"].tolist())  # every rank sees both shares
    both = gathered[0] + gathered[1]
    assert len(both) == len(set(both)) == len(pairs), (len(both), len(set(both)), len(pairs))
np.savez(out, **seen)
print(json.dumps(taken))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_processes_share_every_epoch_from_s3(s3_bounded, tmp_path) -> None:
    """Two gloo ranks (their AWS_* variables point at the moto server) read disjoint shares from s3://."""
    import json

    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIGHTLAKE_")}
    procs = [subprocess.Popen([sys.executable, str(script), s3_bounded, str(tmp_path / "store"),
                               str(tmp_path / f"rank{r}.npz"), str(r)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    logs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        logs.append(json.loads(out.strip().splitlines()[-1]))
    shares = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    pairs = wl.open_lake(s3_bounded).pairs("s", "train")
    every = set(pairs.pair_id.tolist())
    for e, epoch in (("e0", 0), ("e1", 1)):
        a, b = shares[0][e], shares[1][e]
        assert not set(a) & set(b) and len(a) + len(b) == len(every) and set(a) | set(b) == every
        for r, mine in enumerate((a, b)):  # a rank reads by range at most its own pairs' rows
            want = rank_share(np.random.default_rng([0, epoch]).permutation(len(pairs)), r, 2)
            np.testing.assert_array_equal(np.sort(mine), np.sort(pairs.pair_id[want]))
            assert logs[r][epoch]["ranged_rows"] <= 3 * len(mine)
    assert not np.array_equal(shares[0]["e0"], shares[0]["e1"])  # reshuffled per epoch
