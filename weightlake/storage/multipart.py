"""Unfinished S3 multipart uploads under a lake's prefix: list them, abort them.

obstore uploads a large file in parts (one multipart upload) and completes or aborts it
itself; a writer killed in between leaves the upload open.  Its parts are stored (and
billed) but no listing of objects shows them, so the key garbage of
:func:`~weightlake.storage.snapshot.garbage_keys` never finds them.  obstore has no call
that lists or aborts uploads it did not start, so the two requests S3 has for this
(``ListMultipartUploads``, ``AbortMultipartUpload``) go through botocore, which signs them
and finds credentials as AWS's own tools do (environment, ``~/.aws``, instance profile),
with path-style addressing, as obstore uses by default.

>>> [u.key for u in list_uploads(S3Store("zoos", "lake"))]     # doctest: +SKIP
['zoos/z/weights/seg-00000003-1f2e3d4c-1.zarr/c/0/0']
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from weightlake.storage.store import (
    CONNECT_TIMEOUT,
    REQUEST_TIMEOUT,
    S3Store,
    StoreError,
    _endpoint,
    _region,
    _seconds,
)


class Upload(NamedTuple):
    """One unfinished multipart upload: its key (relative to the lake root), id and start time."""

    key: str
    upload_id: str
    initiated: float


def list_uploads(store: S3Store) -> list[Upload]:
    """Every unfinished multipart upload under the lake's prefix, oldest first.

    Raises
    ------
    StoreError
        No credentials in the environment, or the store refused or could not be reached.
    """
    prefix = f"{store.prefix}/" if store.prefix else ""
    what = f"list unfinished multipart uploads under {store.url!r}"
    client, errors = _client(what)
    out = []
    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=store.bucket, Prefix=prefix):
            out += [Upload(up["Key"][len(prefix):], up["UploadId"], up["Initiated"].timestamp())
                    for up in page.get("Uploads", [])]
    except errors as exc:
        raise _store_error(what, exc) from None
    return sorted(out, key=lambda u: u.initiated)


def abort_upload(store: S3Store, upload: Upload) -> None:
    """Abort ``upload``: S3 frees its parts (an upload already gone is not an error)."""
    key = f"{store.prefix}/{upload.key}" if store.prefix else upload.key
    what = f"abort the multipart upload of {store.uri(upload.key)!r}"
    client, errors = _client(what)
    try:
        client.abort_multipart_upload(Bucket=store.bucket, Key=key, UploadId=upload.upload_id)
    except errors as exc:
        if _code(exc) != "NoSuchUpload":
            raise _store_error(what, exc) from None


def _client(what: str) -> tuple[Any, tuple[type[BaseException], ...]]:
    """A botocore S3 client for the lake's endpoint and region, and the exceptions its calls raise."""
    try:
        import botocore.session
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise StoreError(f"cannot {what}: botocore is not installed (pip install 'weightlake[s3]')") from None
    session = botocore.session.get_session()
    if session.get_credentials() is None:
        raise StoreError(f"cannot {what}: no AWS credentials found (AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY, ~/.aws, or an instance profile)")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=_seconds("WEIGHTLAKE_S3_CONNECT_TIMEOUT", CONNECT_TIMEOUT),
                    read_timeout=_seconds("WEIGHTLAKE_S3_TIMEOUT", REQUEST_TIMEOUT))
    client = session.create_client("s3", region_name=_region(), endpoint_url=endpoint, config=config)
    return client, (ClientError, BotoCoreError)


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _store_error(what: str, exc: BaseException) -> StoreError:
    response = getattr(exc, "response", None)
    if response is None:  # never got an answer (connection, timeout, ...)
        return StoreError(f"cannot {what}: {exc}; is the endpoint ({_endpoint()}, from AWS_ENDPOINT_URL) up "
                          "and reachable?")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
    hint = " (check the credentials and the s3:ListBucketMultipartUploads permission)" if status == 403 else ""
    return StoreError(f"cannot {what}: HTTP {status} {_code(exc)} ({response.get('Error', {}).get('Message', '')})"
                      f"{hint}")
