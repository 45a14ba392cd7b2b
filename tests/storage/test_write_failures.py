"""One-line errors and an unchanged lake when the machine says no: a full disk, a read-only
lake, input that is not a CSV zoo, damaged or deleted files; and `verify --gc` cleans what an
interrupted writer leaves."""

from __future__ import annotations

import gzip
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import weightlake as wl
from weightlake.cli import main
from weightlake.ingest.csv_zoo import ingest_csv
from weightlake.zoo.synthetic import all_labels, write_synthetic_csv


def one_line_error(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output  # (a progress line may precede it)
    return errors[0]


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MB tmpfs: real ENOSPC (and EROFS after a remount). Needs root, as CI and these machines have."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny zoo.csv"
    write_synthetic_csv(path, labels=all_labels()[:1], seed=3)  # 36 rows, ~350 KB of weights
    return path


def test_full_disk_is_one_line_and_the_lake_is_unchanged(small_disk: Path, tiny_csv: Path, small_csv: Path,
                                                         tree_state) -> None:  # noqa: ANN001
    lake = small_disk / "lake"
    ingest_csv(lake, tiny_csv, zoo="z", init="normal")
    before = tree_state(lake)
    out = one_line_error(["ingest", "csv", str(small_csv), "--zoo", "z", "--init", "normal", "--lake", str(lake)])
    assert "the disk is full" in out and "lake is unchanged" in out
    assert tree_state(lake) == before
    assert wl.open_lake(lake).models().collect().height == 36


def test_read_only_lake_is_one_line(small_disk: Path, tiny_csv: Path, small_csv: Path) -> None:
    lake = small_disk / "lake"
    ingest_csv(lake, tiny_csv, zoo="z", init="normal")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    out = one_line_error(["ingest", "csv", str(small_csv), "--zoo", "z", "--init", "normal", "--lake", str(lake)])
    assert "read-only" in out
    assert wl.open_lake(lake).models().collect().height == 36  # reading a read-only lake works
    assert CliRunner().invoke(main, ["verify", "--lake", str(lake)]).exit_code == 0


def test_inputs_that_are_not_csv_zoos(tmp_path: Path, small_csv: Path) -> None:
    lake = ["--zoo", "z", "--init", "normal", "--lake", str(tmp_path / "lake")]
    gz = tmp_path / "Merged zoo.csv.gz"
    gz.write_bytes(gzip.compress(small_csv.read_bytes()[:100_000]))
    assert "gzip-compressed" in one_line_error(["ingest", "csv", str(gz), *lake])
    assert "device, pipe or socket" in one_line_error(["ingest", "csv", "/dev/null", *lake])
    assert "no such file" in one_line_error(["ingest", "csv", str(tmp_path / "nope.csv"), *lake])
    usage = CliRunner().invoke(main, ["ingest", "csv", str(tmp_path), *lake])  # click's own check of PATH
    assert usage.exit_code == 2 and "is a directory" in usage.output and "Traceback" not in usage.output
    from weightlake.errors import IngestError

    with pytest.raises(IngestError, match="a folder"):
        ingest_csv(tmp_path / "lake", tmp_path, zoo="z", init="normal")
    assert not (tmp_path / "lake" / "_current").exists()


def test_sql_and_verify_over_deleted_or_truncated_files(lake_copy: Path) -> None:
    lake = wl.open_lake(lake_copy)
    meta = lake_copy / next(iter(lake.manifest.zoos.values())).model_files[0]
    meta.write_bytes(meta.read_bytes()[:100])
    assert "corrupt" in one_line_error(["sql", "SELECT count(*) FROM models", "--lake", str(lake_copy)])
    meta.unlink()
    assert "missing" in one_line_error(["sql", "SELECT count(*) FROM models", "--lake", str(lake_copy)])
    result = CliRunner().invoke(main, ["verify", "--lake", str(lake_copy)])
    assert result.exit_code == 1 and "missing" in result.output and "Traceback" not in result.output


def test_gc_removes_what_a_crashed_commit_leaves(lake_copy: Path) -> None:
    lake = wl.open_lake(lake_copy)
    orphan_manifest = lake_copy / "_snapshots" / f"v{lake.snapshot + 1:08d}-deadbeef0000.json"
    orphan_manifest.write_bytes((lake_copy / "_snapshots" / lake.manifest.file_name).read_bytes())
    tmp_files = [lake_copy / "._current.1234abcd.tmp", lake_copy / "_snapshots" / ".v00000009-x.json.1234.tmp"]
    for f in tmp_files:
        f.write_bytes(b"partial")
    empty = lake_copy / "tables" / "pairs" / "scenario=gone"
    empty.mkdir(parents=True)
    before = CliRunner().invoke(main, ["verify", "--lake", str(lake_copy)])
    assert before.exit_code == 0 and "unreferenced files" in before.output
    out = CliRunner().invoke(main, ["verify", "--gc", "--lake", str(lake_copy)])
    assert out.exit_code == 0, out.output
    assert not orphan_manifest.exists() and not any(f.exists() for f in tmp_files) and not empty.exists()
    assert wl.open_lake(lake_copy).snapshot == lake.snapshot  # the current snapshot and its history stay
    assert "unreferenced" not in CliRunner().invoke(main, ["verify", "--lake", str(lake_copy)]).output


def _cut_csv(tmp_path: Path, tiny_csv: Path) -> Path:
    """A CSV zoo whose last row breaks off: the ingest fails after writing weights."""
    bad = tmp_path / "cut.csv"
    data = tiny_csv.read_bytes()
    bad.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 100])
    return bad


def test_a_failed_first_ingest_leaves_no_folder_or_lock(tmp_path: Path, tiny_csv: Path) -> None:
    """An empty zoos/<z>/weights/ folder and _lock stayed behind, with no lake to go with them."""
    bad = _cut_csv(tmp_path, tiny_csv)
    args = ["ingest", "csv", str(bad), "--zoo", "z", "--init", "normal", "--lake"]
    assert "row" in one_line_error([*args, str(tmp_path / "new" / "lake")])
    assert not (tmp_path / "new").exists()  # the lake folder and the one above it were made by that ingest
    kept = tmp_path / "kept"
    kept.mkdir()
    assert "row" in one_line_error([*args, str(kept)])
    assert kept.is_dir() and list(kept.iterdir()) == []  # a folder that existed before stays, empty
    (kept / "_lock").touch()  # left by an earlier version: not this ingest's to remove
    assert "row" in one_line_error([*args, str(kept)])
    assert [p.name for p in kept.iterdir()] == ["_lock"]
    ingest_csv(tmp_path / "new" / "lake", tiny_csv, zoo="z", init="normal")
    assert wl.open_lake(tmp_path / "new" / "lake").models().collect().height == 36


def test_a_failed_ingest_into_a_lake_leaves_no_new_folder(tmp_path: Path, tiny_csv: Path, tree_state) -> None:  # noqa: ANN001
    lake = tmp_path / "lake"
    ingest_csv(lake, tiny_csv, zoo="z", init="normal")
    before, dirs = tree_state(lake), sorted(p for p in lake.rglob("*") if p.is_dir())
    bad = _cut_csv(tmp_path, tiny_csv)
    assert "row" in one_line_error(["ingest", "csv", str(bad), "--zoo", "z2", "--init", "normal", "--lake", str(lake)])
    assert tree_state(lake) == before and sorted(p for p in lake.rglob("*") if p.is_dir()) == dirs


def test_a_writer_waiting_on_a_lock_that_is_removed_takes_a_new_one(tmp_path: Path) -> None:
    """The first writer of a folder with no lake removes _lock when it fails; one waiting on that
    file must not go on holding a lock nobody else can see."""
    import fcntl
    import threading
    import time

    from weightlake.storage.snapshot import SnapshotStore

    root = tmp_path / "lake"
    entered, release, seen = threading.Event(), threading.Event(), []

    def first() -> None:
        with SnapshotStore(root).locked():
            entered.set()
            release.wait(10)

    def second() -> None:
        with SnapshotStore(root).locked():
            fd = os.open(root / "_lock", os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen.append("free")  # the visible _lock was not the one held
            except BlockingIOError:
                seen.append("held")
            finally:
                os.close(fd)

    t1 = threading.Thread(target=first)
    t1.start()
    assert entered.wait(10) and (root / "_lock").exists()
    t2 = threading.Thread(target=second)
    t2.start()
    time.sleep(0.3)  # let it block on the first writer's _lock
    release.set()
    t1.join(10)
    t2.join(10)
    assert seen == ["held"] and not root.exists()


@pytest.mark.parametrize("failing", [0, 1])
def test_a_first_ingest_whose_manifest_cannot_be_written_leaves_no_lake(tmp_path: Path, tiny_csv: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        failing: int) -> None:
    """Was: a full disk at the first commit left _snapshots/ (and at snapshot 1, an empty lake) behind."""
    import errno

    from weightlake.storage.snapshot import SnapshotStore

    real = SnapshotStore._write_manifest

    def write(self: SnapshotStore, manifest) -> None:  # noqa: ANN001
        if manifest.version == failing:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, manifest)

    monkeypatch.setattr(SnapshotStore, "_write_manifest", write)
    out = one_line_error(["ingest", "csv", str(tiny_csv), "--zoo", "z", "--init", "normal",
                          "--lake", str(tmp_path / "new" / "lake")])
    assert "the disk is full" in out
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    ingest_csv(tmp_path / "new" / "lake", tiny_csv, zoo="z", init="normal")
    assert [m.version for m in SnapshotStore(tmp_path / "new" / "lake").history()] == [1, 0]
