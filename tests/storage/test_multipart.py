"""Unfinished S3 multipart uploads (a writer killed mid-upload): verify lists them, gc aborts the old
ones under the lake's prefix and nothing else; the requests are signed as botocore signs them."""

from __future__ import annotations

import datetime as dt
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
    assert out.exit_code == 0 and "removed 1 unreferenced files" in out.output, out.output
    assert _uploads(client, bucket) == ["lake2/not/this/lake", "other/key"]  # other prefixes are not the lake's
    assert verify(lake).ok and verify(lake).orphans == [] and collect_garbage(lake, min_age=0) == []


def test_without_credentials_in_the_environment_a_note_says_uploads_were_not_checked(
        s3_lake_url: str, small_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.verify import collect_garbage, verify

    ingest_csv(s3_lake_url, small_csv, zoo="z", init="normal")
    lake = wl.open_lake(s3_lake_url)  # the store took its credentials already (as from an instance profile)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")  # (polars' reader reads them afresh: integrity is not checked here)
    report = verify(lake)
    assert report.notes == ["unfinished multipart uploads not checked: cannot list unfinished "
                                          f"multipart uploads under {s3_lake_url!r}: AWS_ACCESS_KEY_ID and "
                                          "AWS_SECRET_ACCESS_KEY are not set (these requests are signed with them)"]
    notes: list[str] = []
    assert collect_garbage(lake, min_age=0, notes=notes) == [] and notes == report.notes


@pytest.mark.parametrize(("method", "key", "query"), [
    ("GET", "", {"uploads": "", "prefix": "lake/"}),
    ("GET", "", {"uploads": "", "prefix": "my lake/", "key-marker": "a~b c", "upload-id-marker": "x+y"}),
    ("DELETE", "lake/zoos/z/weights/seg-1.zarr/c/0/0", {"uploadId": "2~a+b/c=="}),
])
@pytest.mark.parametrize("endpoint", ["", "http://127.0.0.1:9000"])
def test_requests_are_signed_as_botocore_signs_them(method: str, key: str, query: dict[str, str], endpoint: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's server does not check signatures, so the SigV4 signing is checked against botocore's."""
    botocore_auth = pytest.importorskip("botocore.auth")
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from weightlake.storage.multipart import signed_request

    for name, value in (("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"), ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG"),
                        ("AWS_SESSION_TOKEN", "token/with+signs"), ("AWS_REGION", "eu-central-1"),
                        ("AWS_ENDPOINT_URL", endpoint)):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    url, headers = signed_request(method, "zoos-bucket", key, query, now=dt.datetime.now(dt.UTC))
    request = AWSRequest(method=method, url=url, headers={"x-amz-content-sha256": headers["x-amz-content-sha256"]})
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", "token/with+signs")
    botocore_auth.S3SigV4Auth(credentials, "s3", "eu-central-1").add_auth(request)
    when = dt.datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    url, headers = signed_request(method, "zoos-bucket", key, query, now=when)  # at botocore's second
    assert headers["Authorization"] == request.headers["Authorization"]
    assert url.startswith(endpoint or "https://s3.eu-central-1.amazonaws.com")
