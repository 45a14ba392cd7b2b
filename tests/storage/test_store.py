"""The store layer: one set of operations over a local directory and over S3 (moto's server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from weightlake.errors import LakeNotFoundError
from weightlake.storage.store import LocalStore, S3Store, is_remote, resolve_store, split_url


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "local":
        return resolve_store(tmp_path / "lake")
    return resolve_store(request.getfixturevalue("s3_lake_url"))


def test_roots_resolve_to_stores(tmp_path: Path) -> None:
    assert isinstance(resolve_store(tmp_path), LocalStore)
    assert resolve_store(f"file://{tmp_path}").url == str(tmp_path)
    assert split_url("s3://zoos/lake") == ("s3", "zoos/lake")
    assert split_url(Path("s3://zoos/lake")) == ("s3", "zoos/lake")  # a URL that went through Path
    assert split_url("relative/dir") == (None, "relative/dir")
    assert is_remote("s3://zoos/lake") and not is_remote(tmp_path) and not is_remote(f"file://{tmp_path}")
    with pytest.raises(LakeNotFoundError, match="unsupported lake root"):
        resolve_store("ftp://host/lake")
    with pytest.raises(LakeNotFoundError, match="names no bucket"):
        resolve_store("s3:///lake")


def test_read_write_list_delete(store, tmp_path: Path) -> None:
    store.write("a/b.txt", b"one")
    store.write("a/b.txt", b"two")
    assert store.read("a/b.txt") == b"two"
    assert store.exists("a/b.txt") and not store.exists("a/c.txt")
    with pytest.raises(FileNotFoundError):
        store.read("a/c.txt")
    store.write("a/d/e.txt", b"x")
    assert store.keys("a") == ["a/b.txt", "a/d/e.txt"]
    store.delete("a/b.txt")
    store.delete("a/b.txt")  # deleting what is gone is fine
    assert store.keys("a") == ["a/d/e.txt"]


def test_write_if_absent_has_one_winner(store) -> None:
    assert store.write_if_absent("_log/00000001", b"first")
    assert not store.write_if_absent("_log/00000001", b"second")
    assert store.read("_log/00000001") == b"first"


def test_upload_a_staged_tree(tmp_path: Path, s3_lake_url: str) -> None:
    store = resolve_store(s3_lake_url)
    assert isinstance(store, S3Store)
    staged = tmp_path / "seg.zarr"
    (staged / "c" / "0").mkdir(parents=True)
    (staged / "zarr.json").write_bytes(b"{}")
    (staged / "c" / "0" / "0").write_bytes(b"\x00" * 16)
    keys = store.upload(staged, "zoos/z/weights/seg.zarr")
    assert keys == ["zoos/z/weights/seg.zarr/c/0/0", "zoos/z/weights/seg.zarr/zarr.json"]
    assert store.read("zoos/z/weights/seg.zarr/c/0/0") == b"\x00" * 16
    assert store.polars_options()["aws_allow_http"] == "true"
    assert store.arrow_path("x") == f"{s3_lake_url[5:]}/x"


def test_a_missing_bucket_is_one_line(s3_endpoint: str, small_csv: Path) -> None:
    """Reading or writing a bucket that does not exist says so (not "no lake here", not S3's XML)."""
    from click.testing import CliRunner

    from weightlake.cli import main
    from weightlake.storage.store import StoreError

    store = resolve_store("s3://no-such-bucket/lake")
    for op in (lambda: store.read("_current"), lambda: store.write("x", b"1")):
        with pytest.raises(StoreError, match="the bucket 'no-such-bucket' does not exist at http://127.0.0.1"):
            op()
    for args in (["ingest", "csv", str(small_csv), "--zoo", "z", "--init", "kaiming_uniform"], ["sql", "SELECT 1"]):
        result = CliRunner().invoke(main, [*args, "--lake", "s3://no-such-bucket/lake"])
        assert result.exit_code == 1 and "Traceback" not in result.output and "<?xml" not in result.output
        assert result.output.strip().splitlines()[-1].endswith(
            "the bucket 'no-such-bucket' does not exist at " + s3_endpoint + "; check the bucket name, or create "
            "the bucket first"), result.output
    assert not store.exists("_current")  # a missing object of a missing bucket is still just missing
