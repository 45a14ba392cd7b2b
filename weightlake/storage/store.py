"""Where a lake lives: a local directory or a prefix of an object store (``s3://bucket/prefix``).

A :class:`Store` is the handful of operations the commit protocol and the readers need,
keyed by paths relative to the lake root (``_log/00000007``, ``models/zoo=a/x.parquet``):
read, write, write-if-absent (the one atomic step of a commit), exists, keys, delete, and an
upload of a locally staged file or directory tree.  It also hands each reader library its
own way into the same place: absolute paths or a pyarrow filesystem for Arrow datasets,
URLs and ``storage_options`` for polars, a zarr store for weights.

Object I/O goes through obstore (Rust ``object_store``): it issues the conditional put
(``If-None-Match: *``) that object stores offer instead of an atomic rename.  Credentials,
region and endpoint come from the standard AWS environment variables (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``; ``AWS_ALLOW_HTTP=true`` for a
plain-http endpoint such as a local test server).

>>> resolve_store("lake").is_local                 # doctest: +SKIP
True
>>> resolve_store("s3://zoos/lake").url            # doctest: +SKIP
's3://zoos/lake'
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

from weightlake._util import fsync_dir
from weightlake.errors import LakeNotFoundError, LakeWriteError, WeightLakeError

_URL = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*):/(?P<slash>/?)(?P<rest>.*)$")


class Store:
    """Operations on one lake root; keys are ``/``-separated paths relative to it."""

    url: str
    is_local: bool

    def read(self, key: str) -> bytes:
        """The object's bytes; raises :class:`FileNotFoundError` if it does not exist."""
        raise NotImplementedError

    def write(self, key: str, data: bytes) -> None:
        """Write (or replace) an object; readers see the old bytes or the new ones."""
        raise NotImplementedError

    def write_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if it does not exist; False if another writer created it first."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def keys(self, prefix: str) -> list[str]:
        """Keys below ``prefix`` (relative to the lake root), sorted."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Remove an object if it exists."""
        raise NotImplementedError

    def list_modified(self, prefix: str) -> dict[str, float]:
        """Keys below ``prefix`` with their last-modified times (seconds since the epoch)."""
        raise NotImplementedError

    def upload(self, local: Path, key: str) -> list[str]:
        """Copy a staged local file, or every file below a staged directory, to ``key``; returns the keys."""
        raise NotImplementedError

    def uri(self, key: str) -> str:
        """An absolute path (local) or URL (object store) that polars can read."""
        raise NotImplementedError

    def arrow_path(self, key: str = "") -> str:
        """The path pyarrow uses for ``key`` with :meth:`arrow_filesystem`."""
        raise NotImplementedError

    def arrow_filesystem(self) -> Any:
        """A pyarrow filesystem for Arrow datasets (None: the local file system)."""
        return None

    def polars_options(self) -> dict[str, str] | None:
        """``storage_options`` for polars' own object-store reader (None locally)."""
        return None

    def zarr_store(self) -> Any:
        """A read-only zarr store rooted at the lake root."""
        raise NotImplementedError

    def read_ranges(self, key: str, starts: Sequence[int], lengths: Sequence[int]) -> list[bytes]:
        """Byte ranges ``[start, start + length)`` of one object; this default reads it whole."""
        data = self.read(key)
        return [data[s:s + n] for s, n in zip(starts, lengths, strict=True)]


class LocalStore(Store):
    """A lake in a local directory (the lake as it has always been)."""

    is_local = True

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def __repr__(self) -> str:
        return f"LocalStore({self.url!r})"

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def read_ranges(self, key: str, starts: Sequence[int], lengths: Sequence[int]) -> list[bytes]:
        with open(self.root / key, "rb") as f:
            return [os.pread(f.fileno(), int(n), int(s)) for s, n in zip(starts, lengths, strict=True)]

    def write(self, key: str, data: bytes) -> None:
        from weightlake._util import atomic_write

        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)

    def write_if_absent(self, key: str, data: bytes) -> bool:
        """Write a temporary file, fsync it, then hard-link it to ``key``: ``link`` fails if ``key``
        exists, so of two writers exactly one wins, and a reader never sees a partial file."""
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)
        return True

    def exists(self, key: str) -> bool:
        return (self.root / key).exists()

    def keys(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def list_modified(self, prefix: str) -> dict[str, float]:
        return {k: (self.root / k).stat().st_mtime for k in self.keys(prefix)}

    def upload(self, local: Path, key: str) -> list[str]:
        if Path(local).resolve() == (self.root / key).resolve():
            return [key]
        raise LakeWriteError(f"a local lake is written in place, not uploaded ({str(local)!r})")

    def uri(self, key: str) -> str:
        return str(self.root / key)

    def arrow_path(self, key: str = "") -> str:
        return str(self.root / key) if key else str(self.root)

    def zarr_store(self) -> Any:
        from zarr.storage import LocalStore as ZarrLocal

        return ZarrLocal(str(self.root), read_only=True)


class S3Store(Store):
    """A lake under ``s3://bucket/prefix``, through obstore (conditional puts) and pyarrow/polars/zarr readers."""

    is_local = False

    def __init__(self, bucket: str, prefix: str) -> None:
        from obstore.store import S3Store as ObS3

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._store = ObS3(bucket, prefix=self.prefix or None, **_aws_config())

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    def __reduce__(self) -> Any:  # workers (Dask, DataLoader) rebuild the client from the environment
        return (S3Store, (self.bucket, self.prefix))

    def _call(self, op: str, key: str, fn: Any) -> Any:
        """Run one obstore call; a missing object on a read stays :class:`FileNotFoundError`, any other
        failure (no bucket, no permission, endpoint unreachable) is a one-line :class:`StoreError`."""
        from obstore.exceptions import BaseError, PermissionDeniedError, UnauthenticatedError

        try:
            return fn()
        except FileNotFoundError as exc:
            if _s3_error(exc)[0] == "NoSuchBucket":  # not a missing object: there is no bucket to hold one
                raise StoreError(f"cannot {op} {self.uri(key)!r}: the bucket {self.bucket!r} does not exist at "
                                 f"{_endpoint()}; check the bucket name, or create the bucket first") from None
            if op in ("read", "stat"):
                raise FileNotFoundError(self.uri(key)) from None
            raise StoreError(f"cannot {op} {self.uri(key)!r}: not found ({_first_line(exc)}); does the bucket "
                             f"{self.bucket!r} exist?") from None
        except BaseError as exc:
            hint = _unreachable_hint(exc)
            if "169.254.169.254" in str(exc):  # no key in the environment: obstore asked the instance metadata service
                hint = ("; no AWS credentials found (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE), so "
                        "the store asked the instance metadata service at 169.254.169.254, which refused")
            elif isinstance(exc, PermissionDeniedError | UnauthenticatedError):
                hint = ("; check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and "
                        f"what they may do in bucket {self.bucket!r}")
            raise StoreError(f"cannot {op} {self.uri(key)!r}: {_first_line(exc)}{hint}") from None

    def read(self, key: str) -> bytes:
        import obstore

        return self._call("read", key, lambda: bytes(obstore.get(self._store, key).bytes()))

    def write(self, key: str, data: bytes) -> None:
        import obstore

        self._call("write", key, lambda: obstore.put(self._store, key, data))

    def write_if_absent(self, key: str, data: bytes) -> bool:
        import obstore
        from obstore.exceptions import AlreadyExistsError

        def put() -> bool:
            try:
                obstore.put(self._store, key, data, mode="create")
            except AlreadyExistsError:
                return False
            return True

        return bool(self._call("write", key, put))

    def exists(self, key: str) -> bool:
        import obstore

        try:
            self._call("stat", key, lambda: obstore.head(self._store, key))
        except FileNotFoundError:
            return False
        return True

    def keys(self, prefix: str) -> list[str]:
        return sorted(self.list_modified(prefix))

    def delete(self, key: str) -> None:
        import obstore

        def delete() -> None:
            with contextlib.suppress(FileNotFoundError):
                obstore.delete(self._store, key)

        self._call("delete", key, delete)

    def list_modified(self, prefix: str) -> dict[str, float]:
        import obstore

        return self._call("list", prefix, lambda: {
            str(m["path"]): m["last_modified"].timestamp()
            for batch in obstore.list(self._store, prefix=prefix.rstrip("/") or None) for m in batch})

    def upload(self, local: Path, key: str) -> list[str]:
        import obstore

        local = Path(local)
        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
        keys = []
        for path in files:
            sub = key if path == local else f"{key}/{path.relative_to(local).as_posix()}"
            self._call("write", sub, lambda sub=sub, path=path: obstore.put(self._store, sub, path))
            keys.append(sub)
        return keys

    def uri(self, key: str) -> str:
        return f"{self.url}/{key}"

    def arrow_path(self, key: str = "") -> str:
        base = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        return f"{base}/{key}" if key else base

    def arrow_filesystem(self) -> Any:
        import pyarrow.fs as pafs

        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        kw: dict[str, Any] = {"region": _region()}
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            kw.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
        if os.environ.get("AWS_ACCESS_KEY_ID"):
            kw.update(access_key=os.environ["AWS_ACCESS_KEY_ID"], secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
                      session_token=os.environ.get("AWS_SESSION_TOKEN"))
        return pafs.S3FileSystem(**kw)

    def polars_options(self) -> dict[str, str]:
        out = {"aws_region": _region()}
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            out["aws_endpoint_url"] = endpoint
        if _allow_http():
            out["aws_allow_http"] = "true"
        return out

    def zarr_store(self) -> Any:
        from zarr.storage import ObjectStore

        return ObjectStore(self._store, read_only=True)

    def read_ranges(self, key: str, starts: Sequence[int], lengths: Sequence[int]) -> list[bytes]:
        """Byte ranges of one object in one call (obstore merges ranges closer than 1 MB into one request)."""
        import obstore

        if not len(starts):
            return []
        return self._call("read", key, lambda: [bytes(b) for b in obstore.get_ranges(
            self._store, key, starts=[int(s) for s in starts], lengths=[int(n) for n in lengths])])

    @property
    def obstore(self) -> Any:
        """The underlying obstore store (for bulk reads)."""
        return self._store


class StoreError(WeightLakeError, OSError):
    """The object store refused or could not be reached (no bucket, no permission, no endpoint)."""


def _first_line(exc: BaseException) -> str:
    """obstore's first line, with the store's own error code and message in place of the XML body it cuts off."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0].split("<?xml", 1)[0].rstrip(": ")[:300]
    code, message = _s3_error(exc)
    return f"{line}: {code} ({message})" if code else line


def _s3_error(exc: BaseException) -> tuple[str, str]:
    """The ``<Code>`` and ``<Message>`` of an S3 error body quoted in an obstore error (empty when absent)."""
    text = str(exc)
    code, message = re.search(r"<Code>([^<]*)</Code>", text), re.search(r"<Message>([^<]*)</Message>", text)
    return (code.group(1) if code else "", message.group(1) if message else "")


def _endpoint() -> str:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS's default endpoint"


def _unreachable_hint(exc: BaseException) -> str:
    """A pointer to the endpoint setting when the request never got an answer."""
    text = str(exc).lower()
    if not any(s in text for s in ("error sending request", "connection refused", "timed out", "dns error")):
        return ""
    return f"; is the endpoint ({_endpoint()}, from AWS_ENDPOINT_URL) up and reachable?"


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _allow_http() -> bool:
    return os.environ.get("AWS_ALLOW_HTTP", "").lower() in ("1", "true", "yes")


CONNECT_TIMEOUT = 5.0
"""Seconds to open a connection to the object store (``$WEIGHTLAKE_S3_CONNECT_TIMEOUT``)."""
REQUEST_TIMEOUT = 120.0
"""Seconds one request may take, body included (``$WEIGHTLAKE_S3_TIMEOUT``; a 5 MB chunk needs far less)."""
RETRIES = 3
"""Retries of a failed request: 5xx, dropped connections, timeouts of reads (``$WEIGHTLAKE_S3_RETRIES``)."""
RETRY_TIMEOUT = 15.0
"""Seconds after the first attempt past which no retry starts (``$WEIGHTLAKE_S3_RETRY_TIMEOUT``).

obstore's defaults (10 retries over 3 minutes) make a dead endpoint look like a hang; with
these a refused connection fails in about a second and an unreachable host in about
``(RETRIES + 1) * CONNECT_TIMEOUT``, bounded by ``RETRY_TIMEOUT + CONNECT_TIMEOUT``."""


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name, "")
    try:
        value = float(text) if text else default
    except ValueError:
        raise StoreError(f"${name} must be a number, got {text!r}") from None
    if value < 0:
        raise StoreError(f"${name} must not be negative, got {text!r}")
    return value


def check_endpoint() -> None:
    """Refuse an endpoint setting obstore cannot use, in one line, before any request.

    Was: ``AWS_ENDPOINT_URL=127.0.0.1:5077`` (no scheme) was a Rust panic and a Python traceback,
    and an ``http://`` endpoint without ``AWS_ALLOW_HTTP=true`` failed as "builder error".
    """
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        url = os.environ.get(name)
        if not url:
            continue
        if not re.match(r"https?://[^/\s]+", url):
            raise StoreError(f"${name}={url!r} is no endpoint URL: give its scheme, e.g. http://{url.split('://')[-1]}")
        if url.startswith("http://") and not _allow_http():
            raise StoreError(f"${name}={url!r} is plain http, which the store refuses unless AWS_ALLOW_HTTP=true "
                             "(a local S3 server such as moto or MinIO)")
        return


def _aws_config() -> dict[str, Any]:
    """obstore reads the ``AWS_*`` variables itself; we add the region default, ``allow_http``,
    and bounded timeouts and retries (see :data:`RETRY_TIMEOUT`)."""
    from datetime import timedelta

    check_endpoint()

    client: dict[str, Any] = {
        "connect_timeout": timedelta(seconds=_seconds("WEIGHTLAKE_S3_CONNECT_TIMEOUT", CONNECT_TIMEOUT)),
        "timeout": timedelta(seconds=_seconds("WEIGHTLAKE_S3_TIMEOUT", REQUEST_TIMEOUT)),
    }
    if _allow_http():
        client["allow_http"] = True
    retry = {"max_retries": int(_seconds("WEIGHTLAKE_S3_RETRIES", RETRIES)),
             "retry_timeout": timedelta(seconds=_seconds("WEIGHTLAKE_S3_RETRY_TIMEOUT", RETRY_TIMEOUT)),
             "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2), "base": 2}}
    return {"region": _region(), "client_options": client, "retry_config": retry}


def split_url(root: str | os.PathLike[str]) -> tuple[str | None, str]:
    """``(scheme, rest)`` of a lake root; ``(None, path)`` for a plain path.

    A URL that went through :class:`pathlib.Path` (``s3:/bucket/p``, one slash lost) is
    recognised too, so callers that wrap the root in ``Path`` keep working.
    """
    text = os.fspath(root)
    m = _URL.match(text)
    if m is None or len(m.group("scheme")) < 2:  # "C:/..." is a drive, not a scheme
        return None, text
    if isinstance(root, PurePath) and not m.group("slash"):
        return m.group("scheme").lower(), m.group("rest")
    if not m.group("slash"):
        return None, text
    return m.group("scheme").lower(), m.group("rest")


def resolve_store(root: str | os.PathLike[str] | Store) -> Store:
    """The :class:`Store` for a lake root: a path, ``file://PATH`` or ``s3://bucket[/prefix]``."""
    if isinstance(root, Store):
        return root
    scheme, rest = split_url(root)
    if scheme is None:
        return LocalStore(Path(rest))
    if scheme == "file":
        return LocalStore(Path("/" + rest.lstrip("/")))
    if scheme in ("s3", "s3a"):
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise LakeNotFoundError(f"{os.fspath(root)!r} names no bucket; give s3://BUCKET/PREFIX")
        try:
            return S3Store(bucket, prefix)
        except ImportError:
            raise LakeNotFoundError("a lake on s3:// needs obstore: pip install 'weightlake[s3]'") from None
    raise LakeNotFoundError(f"unsupported lake root {os.fspath(root)!r}: give a path, file://PATH or "
                            "s3://BUCKET/PREFIX")


def is_remote(root: str | os.PathLike[str] | Store) -> bool:
    """True for a root that is not a local directory."""
    if isinstance(root, Store):
        return not root.is_local
    return split_url(root)[0] not in (None, "file")


def posix_key(path: str | PurePath) -> str:
    """A manifest-relative path as an object key."""
    return PurePosixPath(str(path).replace(os.sep, "/")).as_posix()
