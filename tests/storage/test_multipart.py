"""Unfinished S3 multipart uploads (a writer killed mid-upload): verify lists them, gc aborts the old
ones under the lake's prefix and nothing else (on moto's server)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import weightlake as wl
from weightlake.cli import main


def _uploads(client, bucket: str) -> list[str]:  # noqa: ANN001
    return sorted(u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def _start_upload(client, bucket: str, key: str) -> None:  # noqa: ANN001
    """What a writer killed between the parts and the completion leaves: an open upload with a part."""
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)
    client.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 1024)


def test_gc_aborts_a_killed_writers_upload_after_the_grace_period(s3_lake_url: str, s3_endpoint: str,
                                                                    small_csv: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`verify --gc` left such uploads open: their parts stay stored (and billed) with no object to show."""
    import boto3

    from weightlake.storage.multipart import list_uploads
    from weightlake.verify import collect_garbage, verify

    run = CliRunner().invoke
    assert run(main, ["ingest", "csv", str(small_csv), "--zoo", "z", "--init", "normal", "--lake", s3_lake_url]
               ).exit_code == 0
    bucket = s3_lake_url.removeprefix("s3://").split("/")[0]
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    dead = "lake/zoos/z/weights/seg-00000002-deadbeef-1.zarr/c/0/0"
    for key in (dead, "lake2/not/this/lake", "other/key"):
        _start_upload(client, bucket, key)
    lake = wl.open_lake(s3_lake_url)
    label = "zoos/z/weights/seg-00000002-deadbeef-1.zarr/c/0/0 (unfinished multipart upload)"
    assert verify(lake).orphans == [label]
    # the clock is set against the start the server reports (moto reports one fixed time for every upload)
    (upload,) = list_uploads(lake.location)
    assert upload.key == label.split(" ")[0]
    monkeypatch.setattr(time, "time", lambda: upload.initiated + 600)
    assert collect_garbage(lake) == [] and len(_uploads(client, bucket)) == 3  # younger than an hour: kept
    monkeypatch.setattr(time, "time", lambda: upload.initiated + 2 * 3600)
    out = run(main, ["verify", "--gc", "--lake", s3_lake_url])
    assert out.exit_code == 0 and "removed 0 unreferenced files, aborted 1 unfinished multipart uploads" in out.output, out.output
    assert _uploads(client, bucket) == ["lake2/not/this/lake", "other/key"]  # other prefixes are not the lake's
    assert verify(lake).ok and verify(lake).orphans == [] and collect_garbage(lake, min_age=0) == []


def test_without_credentials_in_the_environment_a_note_says_uploads_were_not_checked(
        s3_lake_url: str, small_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.verify import collect_garbage, verify

    ingest_csv(s3_lake_url, small_csv, zoo="z", init="normal")
    lake = wl.open_lake(s3_lake_url)  # the store took its credentials already
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)  # (polars' reader reads them afresh: integrity is not checked here)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    report = verify(lake)
    assert report.notes == ["unfinished multipart uploads not checked: cannot list unfinished "
                            f"multipart uploads under {s3_lake_url!r}: no AWS credentials found (AWS_ACCESS_KEY_ID "
                            "and AWS_SECRET_ACCESS_KEY, ~/.aws, or an instance profile)"]
    notes: list[str] = []
    assert collect_garbage(lake, min_age=0, notes=notes) == [] and notes == report.notes


def test_a_refused_listing_is_one_line_with_the_s3_code(s3_lake_url: str, small_csv: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """An endpoint that answers with an S3 error is named with its code; an unreachable one with the endpoint."""
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.storage.multipart import list_uploads
    from weightlake.storage.store import S3Store, StoreError

    ingest_csv(s3_lake_url, small_csv, zoo="z", init="normal")
    lake = wl.open_lake(s3_lake_url)
    assert isinstance(lake.location, S3Store)
    with pytest.raises(StoreError, match=r"HTTP 404 NoSuchBucket"):
        list_uploads(S3Store("no-such-bucket", "lake"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("WEIGHTLAKE_S3_CONNECT_TIMEOUT", "0.5")
    with pytest.raises(StoreError, match=r"is the endpoint \(http://127.0.0.1:9, from AWS_ENDPOINT_URL\) up"):
        list_uploads(lake.location)
