"""Unfinished S3 multipart uploads under a lake's prefix: list them, abort them.

obstore uploads a large file in parts (one multipart upload) and completes or aborts it
itself; a writer killed in between leaves the upload open.  Its parts are stored (and
billed) but no listing of objects shows them, so the key garbage of
:func:`~weightlake.storage.snapshot.garbage_keys` never finds them.  obstore has no call
that lists or aborts uploads it did not start, so the two requests S3 has for this
(``ListMultipartUploads``, ``AbortMultipartUpload``) are made here with the standard
library, signed with AWS Signature Version 4 from the same ``AWS_*`` environment variables
(path-style addressing, as obstore uses by default).

>>> [u.key for u in list_uploads(S3Store("zoos", "lake"))]     # doctest: +SKIP
['zoos/z/weights/seg-00000003-1f2e3d4c-1.zarr/c/0/0']
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import os
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from typing import NamedTuple

from weightlake.storage.store import REQUEST_TIMEOUT, S3Store, StoreError, _endpoint, _region, _s3_error, _seconds

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class Upload(NamedTuple):
    """One unfinished multipart upload: its key (relative to the lake root), id and start time."""

    key: str
    upload_id: str
    initiated: float


def has_credentials() -> bool:
    """Whether the environment holds the keys these requests are signed with."""
    return bool(os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"))


def list_uploads(store: S3Store) -> list[Upload]:
    """Every unfinished multipart upload under the lake's prefix, oldest first.

    Raises
    ------
    StoreError
        No credentials in the environment, or the store refused or could not be reached.
    """
    prefix = f"{store.prefix}/" if store.prefix else ""
    query, out = {"uploads": "", "prefix": prefix}, []
    while True:
        root = ET.fromstring(_request(store, "GET", "", query, f"list unfinished multipart uploads under {store.url!r}"))
        for up in root.iter(f"{_NS}Upload"):
            key = up.findtext(f"{_NS}Key") or ""
            when = _dt.datetime.fromisoformat((up.findtext(f"{_NS}Initiated") or "").replace("Z", "+00:00"))
            out.append(Upload(key[len(prefix):], up.findtext(f"{_NS}UploadId") or "", when.timestamp()))
        if (root.findtext(f"{_NS}IsTruncated") or "").lower() != "true":
            return sorted(out, key=lambda u: u.initiated)
        query = {**query, "key-marker": root.findtext(f"{_NS}NextKeyMarker") or "",
                 "upload-id-marker": root.findtext(f"{_NS}NextUploadIdMarker") or ""}


def abort_upload(store: S3Store, upload: Upload) -> None:
    """Abort ``upload``: S3 frees its parts (an upload already gone is not an error)."""
    key = f"{store.prefix}/{upload.key}" if store.prefix else upload.key
    try:
        _request(store, "DELETE", key, {"uploadId": upload.upload_id},
                 f"abort the multipart upload of {store.uri(upload.key)!r}")
    except StoreError as exc:
        if "NoSuchUpload" not in str(exc):
            raise


def _request(store: S3Store, method: str, key: str, query: dict[str, str], what: str) -> bytes:
    if not has_credentials():
        raise StoreError(f"cannot {what}: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set "
                         "(these requests are signed with them)")
    url, headers = signed_request(method, store.bucket, key, query, now=_dt.datetime.now(_dt.UTC))
    request = urllib.request.Request(url, method=method, headers=headers)
    timeout = _seconds("WEIGHTLAKE_S3_TIMEOUT", REQUEST_TIMEOUT)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        code, message = _s3_error(Exception(exc.read().decode("utf-8", "replace")))
        raise StoreError(f"cannot {what}: HTTP {exc.code} {code} ({message})") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StoreError(f"cannot {what}: {reason}; is the endpoint ({_endpoint()}, from "
                         "AWS_ENDPOINT_URL) up and reachable?") from None


def signed_request(method: str, bucket: str, key: str, query: dict[str, str], *,
                   now: _dt.datetime) -> tuple[str, dict[str, str]]:
    """The URL and headers of an S3 request signed with SigV4 (empty payload), path-style addressing."""
    endpoint = (os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
                or f"https://s3.{_region()}.amazonaws.com").rstrip("/")
    host = urllib.parse.urlsplit(endpoint).netloc
    path = "/" + "/".join(_quote(p) for p in ([bucket, *key.split("/")] if key else [bucket]))
    canonical_query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(query.items()))
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    headers = {"host": host, "x-amz-content-sha256": _EMPTY_SHA256, "x-amz-date": stamp}
    if os.environ.get("AWS_SESSION_TOKEN"):
        headers["x-amz-security-token"] = os.environ["AWS_SESSION_TOKEN"]
    signed = ";".join(sorted(headers))
    canonical = "\n".join([method, path, canonical_query, *(f"{h}:{headers[h].strip()}" for h in sorted(headers)),
                           "", signed, _EMPTY_SHA256])
    scope = f"{day}/{_region()}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    signing_key = f"AWS4{secret}".encode()
    for part in (day, _region(), "s3", "aws4_request"):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={os.environ.get('AWS_ACCESS_KEY_ID', '')}/{scope}, "
                                f"SignedHeaders={signed}, Signature={signature}")
    url = f"{endpoint}{path}" + (f"?{canonical_query}" if canonical_query else "")
    return url, headers


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~")
