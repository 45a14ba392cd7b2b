"""The lake on either store (``store_lake_url``: a local directory, then s3:// on moto's server):
materialised batches and prediction arrays, streamed reads, analyses, and a writer SIGKILLed in its commit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import weightlake as wl
from weightlake.storage.budget import BudgetWarning
from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

KILLED = Path(__file__).with_name("_killed_writer.py")


@pytest.fixture()
def scenario_lake(store_lake_url: str, tmp_path: Path) -> str:
    """A small zoo 'z' (every subset of digits 0-3) with scenario 't', on the store of ``store_lake_url``."""
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.scenarios import declare_scenario

    csv_path = tmp_path / "zoo.csv"
    write_synthetic_csv(csv_path, labels=all_labels(range(4), range(2, 5)), seed=3)
    ingest_csv(store_lake_url, csv_path, zoo="z", init="kaiming_uniform")
    declare_scenario(store_lake_url, "t", zoo="z", digits=range(4), sizes=range(2, 4), overlap=(0, 2))
    return store_lake_url


def test_materialised_batches_stream_from_either_store(scenario_lake: str) -> None:
    from weightlake.serve.batches import materialize

    report = materialize(scenario_lake, "t", "train", batch_size=8, epochs=2, seed=1)
    assert report.path.startswith("batches/t/train/")
    lake = wl.open_lake(scenario_lake)
    pairs = lake.pairs("t", "train")
    got = list(lake.batches("t", "train"))
    assert len(got) == 2 * report.n_batches and {b["epoch"] for b in got} == {0, 1}
    for batch in got[:3] + got[-2:]:
        ids = np.stack([batch[c].numpy() for c in ("a_id", "b_id", "target_id")], axis=1)
        np.testing.assert_array_equal(batch["x"].numpy(), np.stack([lake.weights_numpy(ids[:, i]) for i in range(3)],
                                                                   axis=1))
    epoch0 = np.concatenate([b["pair_id"].numpy() for b in got if b["epoch"] == 0])
    assert sorted(epoch0) == sorted(pairs.pair_id)  # every pair once per epoch
    from weightlake.verify import verify

    assert verify(lake).ok, verify(lake).problems


def test_a_corrupt_batch_on_either_store_is_refused(scenario_lake: str) -> None:
    from weightlake.errors import IntegrityError
    from weightlake.serve.batches import materialize
    from weightlake.storage.store import resolve_store

    report = materialize(scenario_lake, "t", "train", batch_size=8, epochs=1)
    location = resolve_store(scenario_lake)
    key = f"{report.path}/epoch-0/x/c/1/0/0/0"
    if not location.exists(key):
        key = next(k for k in location.keys(report.path) if "/x/c/1/" in k)
    data = location.read(key)
    location.write(key, data[:10] + bytes([data[10] ^ 0xFF]) + data[11:])
    with pytest.raises(IntegrityError, match="corrupt"):
        list(wl.open_lake(scenario_lake).batches("t", "train"))


def test_prediction_arrays_round_trip_on_either_store(store_lake_url: str, tmp_path: Path) -> None:
    from weightlake.experiments.evaluate import load_predictions
    from weightlake.experiments.tracking import ingest_tracking, write_tracking_csv

    rng = np.random.default_rng(0)
    gt = (rng.standard_normal((12, 2464)) * 0.1).astype(np.float32)
    pd = (gt * 0.5 + rng.standard_normal((12, 2464)) * 0.05).astype(np.float32)
    path = write_tracking_csv(tmp_path / "AE epoch mse track 5.csv", gt, pd)
    (report,) = ingest_tracking(store_lake_url, path, scenario="t", chunk_rows=5)
    lake = wl.open_lake(store_lake_url)
    for kind, want in (("GT", gt), ("PD", pd)):
        frame, got = load_predictions(lake, source_file=str(path.resolve()), kind=kind)
        assert frame.height == 12
        np.testing.assert_array_equal(got, want[frame["row"].to_numpy()])  # bitwise
    assert all(a.startswith("predictions/") for a in lake.manifest.table("predictions").arrays)


def test_streamed_reads_and_analyses_under_a_small_budget_on_either_store(scenario_lake: str,
                                                                           tmp_path: Path) -> None:
    from weightlake.compute.analyses import analyze_correlations
    from weightlake.compute.pair_metrics import analyze_pair_metrics

    lake = wl.open_lake(scenario_lake, memory="1MB")
    with warnings.catch_warnings():
        warnings.simplefilter("error", BudgetWarning)  # neither store decodes the zoo whole
        blocks = list(lake.iter_weights("z"))
        analyze_correlations(scenario_lake, zoo="z", against=["accuracy", "epoch"], memory="1MB")
        analyze_pair_metrics(scenario_lake, scenario="t", split="test", metrics=["mse", "w1"], memory="1MB")
    assert len(blocks) > 1
    ids = np.concatenate([i for i, _ in blocks])
    whole_ids, whole = wl.open_lake(scenario_lake).zoo_weights("z")
    np.testing.assert_array_equal(ids, whole_ids)
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), whole)
    after = wl.open_lake(scenario_lake)
    assert after.table("correlations").collect().height > 0
    metrics = after.sql("SELECT metric, count(*) AS n FROM pair_metrics GROUP BY 1 ORDER BY 1")
    n_test = after.pairs("t", "test").ids.shape[0]
    assert metrics.to_dicts() == [{"metric": "mse", "n": 3 * n_test}, {"metric": "w1", "n": 3 * n_test}]


@pytest.mark.parametrize("phase", ["data", "manifest", "claimed"])
def test_a_writer_killed_during_its_commit_loses_nothing(store_lake_url: str, small_csv: Path, tmp_path: Path,
                                                         phase: str) -> None:
    """A real ingest process SIGKILLed inside its commit: before the version is claimed the lake is
    unchanged (its files are orphans that gc removes); once claimed, the whole commit is visible."""
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.storage.snapshot import SnapshotStore
    from weightlake.verify import collect_garbage, verify

    ingest_csv(store_lake_url, small_csv, zoo="base", init="kaiming_uniform")
    before = SnapshotStore(store_lake_url).current()
    csv2 = tmp_path / "more.csv"
    write_synthetic_csv(csv2, labels=all_labels()[12:14], seed=9)
    marker = tmp_path / "inside-commit"
    proc = subprocess.Popen([sys.executable, str(KILLED), store_lake_url, str(csv2), phase, str(marker)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the writer never reached its commit"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    lake = wl.open_lake(store_lake_url)
    if phase == "claimed":
        assert lake.snapshot == before.version + 1 and sorted(lake.zoos) == ["base", "killed"]
        assert lake.models("killed").collect().height == 72 == len(lake.zoo_ids("killed"))
        assert lake.zoo_weights("killed")[1].shape == (72, 2464)
        assert not verify(lake).orphans
    else:
        assert lake.manifest == before and lake.zoos == ["base"]
        report = verify(lake)
        assert report.ok and report.orphans, report.problems
        removed = collect_garbage(lake, min_age=0)
        assert set(report.orphans) <= {r.rstrip("/") for r in removed} | set(removed)
        assert not verify(wl.open_lake(store_lake_url)).orphans
    assert verify(lake).ok and lake.models("base").collect().height == 432
    # the next writer is not blocked (no lock or half-claimed version left behind)
    ingest_csv(store_lake_url, csv2, zoo="after", init="kaiming_uniform")
    assert "after" in wl.open_lake(store_lake_url).zoos
