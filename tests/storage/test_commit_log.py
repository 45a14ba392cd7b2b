"""Commits without rename: the version-named log entry is created put-if-absent, locally and on S3."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from weightlake.errors import CommitConflictError
from weightlake.storage.snapshot import SnapshotStore
from weightlake.storage.transaction import Transaction, transaction

WRITER = Path(__file__).with_name("_race_writer.py")


@pytest.fixture()
def lake_root(store_lake_url: str) -> str:
    """The lake root on each store in turn (conftest's ``store_lake_url``)."""
    return store_lake_url


def _table_tx(root: str, name: str) -> Transaction:
    """A transaction outside ``transaction()`` (no lock), so two can be open at once in one process."""
    store = SnapshotStore(root)
    return Transaction(store.root if store.location.is_local else Path(os.environ["WL_STAGE"]), store)


def test_the_log_is_the_truth_and_the_pointer_a_hint(lake_root: str) -> None:
    store = SnapshotStore(lake_root)
    first = store.create()
    second = store.commit(first.evolve({"op": "a"}))
    third = store.commit(second.evolve({"op": "b"}))
    store.location.write("_current", first.file_name.encode())  # a stale hint (a slow writer's, say)
    assert store.current() == third
    assert [m.version for m in store.history()] == [2, 1, 0]
    assert store.version(1) == second
    assert store.location.read("_log/00000002") == third.file_name.encode()


def test_a_lake_without_a_log_reads_from_its_pointer(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "lake")
    first = store.create()
    second = store.commit(first.evolve({"op": "a"}))
    for entry in (tmp_path / "lake" / "_log").iterdir():  # as written before the log existed
        entry.unlink()
    assert store.current() == second
    third = store.commit(second.evolve({"op": "b"}))
    assert store.current() == third and (tmp_path / "lake" / "_log" / "00000002").is_file()


def test_the_second_claim_of_a_version_loses(lake_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writer B passes its check on the parent, then A claims the version before B does."""
    a, b = SnapshotStore(lake_root), SnapshotStore(lake_root)
    parent = a.create()
    mine, theirs = parent.evolve({"op": "a"}), parent.evolve({"op": "b"})
    claim = b.location.write_if_absent

    def a_first(key: str, data: bytes) -> bool:
        a.commit(mine)
        return claim(key, data)

    monkeypatch.setattr(b.location, "write_if_absent", a_first)
    with pytest.raises(CommitConflictError, match="another writer committed snapshot 1 first"):
        b.commit(theirs)
    assert b.current() == mine
    assert not b.location.exists(f"_snapshots/{theirs.file_name}")  # the loser's manifest is gone


def _race(root: str, tmp_path: Path, mode: str, rounds: int) -> list[list[str]]:
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(WRITER), root, mode, name, str(rounds), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
             for name in ("w1", "w2")]
    if mode == "raw":
        for i in range(rounds):
            deadline = time.monotonic() + 60
            while not all(Path(f"{go}.{n}.ready.{i}").exists() for n in ("w1", "w2")):
                assert time.monotonic() < deadline, "writers did not get ready"
                time.sleep(0.002)
            Path(f"{go}.{i}").touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outs.append(out.split("\n"))
    return outs


@pytest.mark.slow
def test_two_processes_racing_for_each_version(lake_root: str, tmp_path: Path) -> None:
    """Two real writers prepare each version on the same parent and commit at the same moment:
    every round has exactly one winner and no committed version is lost."""
    SnapshotStore(lake_root).create()
    rounds = 10
    outs = _race(lake_root, tmp_path, "raw", rounds)
    results = [{int(line.split()[1]): line.split()[0] for line in out if line} for out in outs]
    for i in range(rounds):
        assert sorted((results[0][i], results[1][i])) == ["lost", "won"], f"round {i}: {results[0][i]}, {results[1][i]}"
    history = SnapshotStore(lake_root).history()
    assert [m.version for m in history] == list(range(rounds, -1, -1))
    winners = {(m.operation["writer"], m.operation["round"]) for m in history[:-1]}
    assert winners == {("w1" if results[0][i] == "won" else "w2", i) for i in range(rounds)}


@pytest.mark.slow
def test_two_writers_committing_different_tables_lose_nothing(lake_root: str, tmp_path: Path) -> None:
    """Two processes commit 8 tables each through ``transaction``; on S3 (no lock) they race and
    the loser re-applies its table on the winner's snapshot."""
    SnapshotStore(lake_root).create()
    outs = _race(lake_root, tmp_path, "table", 8)
    store = SnapshotStore(lake_root)
    current = store.current()
    assert current.version == 16
    assert sorted(current.tables) == sorted(f"{w}-{i}" for w in ("w1", "w2") for i in range(8))
    versions = [int(line.split()[2]) for out in outs for line in out if line]
    assert sorted(versions) == list(range(1, 17))
    from weightlake.lake import Lake

    lake = Lake(store.root, current, location=store.location)
    assert lake.table("w2-7").collect().to_dicts() == [{"writer": "w2", "i": 7}]


def test_disjoint_changes_are_reapplied_and_overlapping_ones_refused(lake_root: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WL_STAGE", str(tmp_path))
    SnapshotStore(lake_root).create()
    one, two, three = (_table_tx(lake_root, n) for n in "abc")
    one.put_table("alpha", pl.DataFrame({"x": [1]}))
    two.put_table("beta", pl.DataFrame({"x": [2]}))
    three.put_table("alpha", pl.DataFrame({"x": [3]}))
    one.commit({"op": "one"})
    done = two.commit({"op": "two"})  # prepared on snapshot 0, re-applied on 1
    assert done.version == 2 and sorted(done.tables) == ["alpha", "beta"]
    assert done.checksums.keys() >= set(done.tables["alpha"].files) | set(done.tables["beta"].files)
    with pytest.raises(CommitConflictError, match="both change table 'alpha'"):
        three.commit({"op": "three"})
    three.abort()
    store = SnapshotStore(lake_root)
    assert store.current().version == 2
    assert not any(store.location.exists(f) for f in three._tables["alpha"].files)


def test_transaction_on_s3_stages_uploads_and_aborts(s3_lake_url: str) -> None:
    with transaction(s3_lake_url) as tx:
        files = tx.put_table("t", pl.DataFrame({"x": [1, 2]}))
        staged = tx.root
        assert (staged / files[0]).is_file()
        done = tx.commit({"op": "t"})
    assert not staged.exists()
    store = SnapshotStore(s3_lake_url)
    assert store.current() == done and store.location.exists(files[0])
    with pytest.raises(RuntimeError), transaction(s3_lake_url) as tx:
        failed = tx.put_table("u", pl.DataFrame({"x": [3]}))
        tx._upload()
        assert store.location.exists(failed[0])
        raise RuntimeError("writer fails before its commit")
    assert not store.location.exists(failed[0]) and store.current() == done


def test_changes_to_other_partitions_of_one_table_are_both_kept(lake_root: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Two `scenario declare` of different names, or `analyze spectra` of two zoos, at once: the second
    was refused ("both change table 'pairs'"). Other partitions merge; the same partition still collides."""
    from weightlake.lake import Lake

    monkeypatch.setenv("WL_STAGE", str(tmp_path))
    SnapshotStore(lake_root).create()
    seed = _table_tx(lake_root, "seed")
    seed.put_table("pairs", pl.DataFrame({"scenario": ["old"], "x": [0]}), partition_by=("scenario",),
                   properties={"partition_by": ["scenario"], "params:old": "0"})
    seed.commit({"op": "seed"})
    one, two, three = (_table_tx(lake_root, n) for n in "abc")
    one.put_table("pairs", pl.DataFrame({"scenario": ["s1", "s1"], "x": [1, 2]}), partition_by=("scenario",),
                  properties={"partition_by": ["scenario"], "params:s1": "1"})
    two.drop_table_files("pairs", lambda f: "/scenario=old/" in f)  # a re-declaration replaces its partition
    two.put_table("pairs", pl.DataFrame({"scenario": ["old", "s2"], "x": [3, 4]}), partition_by=("scenario",),
                  properties={"partition_by": ["scenario"], "params:s2": "2", "params:old": "3"})
    three.put_table("pairs", pl.DataFrame({"scenario": ["s1"], "x": [9]}), partition_by=("scenario",),
                    properties={"partition_by": ["scenario"], "params:s1": "9"})
    one.commit({"op": "one"})
    done = two.commit({"op": "two"})  # prepared on snapshot 1, re-applied on 2: other partitions
    assert done.version == 3 and two.rebased == 1
    lake = Lake(SnapshotStore(lake_root).root, done, location=SnapshotStore(lake_root).location)
    rows = sorted(lake.table("pairs").collect().select("scenario", "x").iter_rows())
    assert rows == [("old", 3), ("s1", 1), ("s1", 2), ("s2", 4)]
    props = done.tables["pairs"].properties
    assert (props["params:s1"], props["params:s2"], props["params:old"]) == ("1", "2", "3")
    assert done.checksums.keys() >= set(done.tables["pairs"].files)
    with pytest.raises(CommitConflictError, match="both change table 'pairs'"):  # the same partition, s1
        three.commit({"op": "three"})
    three.abort()


def test_a_change_computed_from_what_another_writer_changed_is_not_reapplied(lake_root: str, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An analysis writes only its own table: a commit race against a writer of what it read (its zoo,
    the topology table for topology-classes) re-applied it over the new data, unsaid."""
    monkeypatch.setenv("WL_STAGE", str(tmp_path))
    SnapshotStore(lake_root).create()
    seed = _table_tx(lake_root, "seed")
    seed.put_table("src", pl.DataFrame({"x": [1]}))
    seed.commit({"op": "seed"})
    analysis, other, writer = (_table_tx(lake_root, n) for n in "abc")
    analysis.read(tables=["src"])
    analysis.put_table("derived", pl.DataFrame({"y": [2]}))
    other.put_table("derived2", pl.DataFrame({"y": [3]}))  # reads nothing: re-applied as before
    writer.put_table("src", pl.DataFrame({"x": [5]}))
    writer.commit({"op": "rewrite src"})
    assert other.commit({"op": "other"}).version == 3
    with pytest.raises(CommitConflictError, match=r"it changed table 'src', which this change read"):
        analysis.commit({"op": "analysis"})
    analysis.abort()
    assert SnapshotStore(lake_root).current().version == 3


def test_a_read_of_one_partition_is_stale_only_when_that_partition_changed(lake_root: str, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Pair metrics of scenario s1 read only s1's pairs: a `scenario declare s2` meanwhile refused them too."""
    monkeypatch.setenv("WL_STAGE", str(tmp_path))
    SnapshotStore(lake_root).create()
    seed = _table_tx(lake_root, "seed")
    seed.put_table("pairs", pl.DataFrame({"scenario": ["s1"], "x": [1]}), partition_by=("scenario",))
    seed.commit({"op": "seed"})
    metrics, again = (_table_tx(lake_root, n) for n in "ab")
    metrics.read(parts=[("pairs", ("tables/pairs/scenario=s1/",))])
    metrics.put_table("pair_metrics", pl.DataFrame({"scenario": ["s1"], "m": [0.5]}), partition_by=("scenario",))
    other = _table_tx(lake_root, "c")
    other.put_table("pairs", pl.DataFrame({"scenario": ["s2"], "x": [2]}), partition_by=("scenario",))
    other.commit({"op": "declare s2"})
    assert metrics.commit({"op": "pair metrics s1"}).version == 3  # s2 is not what it read
    again.read(parts=[("pairs", ("tables/pairs/scenario=s1/",))])
    again.put_table("pair_metrics2", pl.DataFrame({"m": [1.0]}))
    redeclare = _table_tx(lake_root, "d")
    redeclare.drop_table_files("pairs", lambda f: "/scenario=s1/" in f)
    redeclare.put_table("pairs", pl.DataFrame({"scenario": ["s1"], "x": [7]}), partition_by=("scenario",))
    redeclare.commit({"op": "declare s1 again"})
    with pytest.raises(CommitConflictError, match=r"table 'pairs' \(scenario=s1\), which this change read"):
        again.commit({"op": "pair metrics of the old s1"})
    again.abort()
