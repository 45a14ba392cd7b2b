"""Snapshots: immutable manifests and one atomically swapped pointer.

Layout under the lake root::

    _current                              hint: name of the newest manifest (replaced after each commit)
    _snapshots/v00000007-<uuid>.json      manifest of snapshot 7 (never rewritten)
    _log/00000007                         the commit of version 7: the manifest's name, created
                                          put-if-absent, so one writer wins each version
    _lock                                 local writers hold an exclusive flock while committing

A manifest lists every file the snapshot reads: per zoo its architecture, its weight
segments (Zarr arrays, one per commit that added models) and its model metadata files
(Hive-partitioned Parquet); per derived table its Parquet files; and the sources already
ingested (for idempotent re-ingest).  Data files are written first, under fresh names that
no earlier snapshot lists; the manifest is written next; its log entry is claimed last (the
commit point; no rename needed, so the same protocol runs on an object store).  A
crash at any point therefore leaves the previous snapshot intact and readable, with at
most some unreferenced files that :func:`garbage` finds.

Round-trip law: ``Manifest.from_dict(m.to_dict()) == m``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from weightlake._util import make_parent
from weightlake.errors import CommitConflictError, IntegrityError, LakeNotFoundError, NoSuchTableError, WeightLakeError
from weightlake.storage.checksums import corrupt, digest_bytes
from weightlake.storage.store import LocalStore, Store, StoreError, resolve_store

FORMAT_VERSION = 3
"""2: every listed file and the manifest itself carry checksums (format 1 lakes read unchecked);
3: a segment may use the ``tensors`` layout (written only by manifests that hold one, so a
lake without one stays readable by format-2 readers)."""
_CURRENT = "_current"
_SNAPSHOTS = "_snapshots"
_LOCK = "_lock"
_LOG = "_log"
_MANIFEST_NAME = re.compile(r"^v\d{8}-[0-9a-f]{1,32}\.json$")


@dataclass(frozen=True)
class SegmentPart:
    """One tensor's array inside a ``tensors``-layout segment: flat columns ``[start, start + size)``."""

    name: str
    """The array's folder inside the segment (``t000`` ...)."""
    start: int
    size: int
    chunk_rows: int
    chunk_digests: tuple[str, ...]
    meta_digest: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "start": self.start, "size": self.size, "chunk_rows": self.chunk_rows,
                "chunk_digests": list(self.chunk_digests), "meta_digest": self.meta_digest}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SegmentPart:
        return cls(str(d["name"]), int(d["start"]), int(d["size"]), int(d["chunk_rows"]),
                   tuple(str(x) for x in d["chunk_digests"]), d.get("meta_digest"))


@dataclass(frozen=True)
class Segment:
    """Weights of rows ``first_id .. first_id + rows - 1`` of one zoo.

    Layout ``rows``: one Zarr array ``[rows, cols]`` chunked by whole rows.  Layout ``tensors``
    (:mod:`weightlake.storage.parts`): a Zarr group with one array per state_dict tensor, listed
    in ``parts``; ``chunk_digests`` is then None and each part carries its own.
    """

    path: str
    first_id: int
    rows: int
    cols: int
    chunk_digests: tuple[str, ...] | None = None
    """One checksum per chunk file, in chunk order (None: written before checksums)."""
    meta_digest: str | None = None
    """Checksum of the segment's ``zarr.json`` (the group's, in the ``tensors`` layout)."""
    layout: str = "rows"
    parts: tuple[SegmentPart, ...] = ()

    @property
    def stop_id(self) -> int:
        return self.first_id + self.rows

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "first_id": self.first_id, "rows": self.rows, "cols": self.cols}
        if self.chunk_digests is not None:
            out.update(chunk_digests=list(self.chunk_digests), meta_digest=self.meta_digest)
        if self.layout != "rows":
            out.update(layout=self.layout, meta_digest=self.meta_digest, parts=[p.to_dict() for p in self.parts])
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Segment:
        digests = d.get("chunk_digests")
        return cls(str(d["path"]), int(d["first_id"]), int(d["rows"]), int(d["cols"]),
                   tuple(str(x) for x in digests) if digests is not None else None, d.get("meta_digest"),
                   str(d.get("layout", "rows")), tuple(SegmentPart.from_dict(p) for p in d.get("parts", ())))


@dataclass(frozen=True)
class ZooEntry:
    """A zoo: its architecture (as data), weight segments and model metadata files."""

    arch: Mapping[str, Any]
    segments: tuple[Segment, ...] = ()
    model_files: tuple[str, ...] = ()

    @property
    def n_models(self) -> int:
        return sum(s.rows for s in self.segments)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": dict(self.arch), "segments": [s.to_dict() for s in self.segments],
                "model_files": list(self.model_files)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ZooEntry:
        return cls(arch=dict(d["arch"]), segments=tuple(Segment.from_dict(s) for s in d.get("segments", ())),
                   model_files=tuple(d.get("model_files", ())))


@dataclass(frozen=True)
class TableEntry:
    """A derived table (pairs, spectra, ...): Parquet files plus free-form properties."""

    files: tuple[str, ...] = ()
    properties: Mapping[str, Any] = field(default_factory=dict)
    arrays: tuple[str, ...] = ()
    """Zarr arrays that belong to the table (materialised batches), kept alive with it."""

    def to_dict(self) -> dict[str, Any]:
        return {"files": list(self.files), "properties": dict(self.properties), "arrays": list(self.arrays)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TableEntry:
        return cls(files=tuple(d.get("files", ())), properties=dict(d.get("properties", {})),
                   arrays=tuple(d.get("arrays", ())))


@dataclass(frozen=True)
class Manifest:
    """One snapshot of the lake.  Immutable; a commit makes a new one with ``parent`` set."""

    version: int
    snapshot_id: str
    parent: str | None
    created: str
    operation: Mapping[str, Any]
    zoos: Mapping[str, ZooEntry] = field(default_factory=dict)
    tables: Mapping[str, TableEntry] = field(default_factory=dict)
    sources: tuple[Mapping[str, Any], ...] = ()
    next_model_id: int = 0
    checksums: Mapping[str, str] = field(default_factory=dict)
    """Checksum of every listed Parquet file and of every file of a table-owned array (relative paths)."""
    format: int = field(default=FORMAT_VERSION, compare=False)
    """The format the manifest was read as (2 or 3 as written: see :data:`FORMAT_VERSION`)."""

    @property
    def file_name(self) -> str:
        return f"v{self.version:08d}-{self.snapshot_id}.json"

    def zoo(self, name: str) -> ZooEntry:
        try:
            return self.zoos[name]
        except KeyError:
            raise NoSuchTableError(
                f"the lake has no zoo {name!r} at snapshot {self.version}; zoos: {sorted(self.zoos) or 'none'}"
            ) from None

    def table(self, name: str) -> TableEntry:
        try:
            return self.tables[name]
        except KeyError:
            raise NoSuchTableError(
                f"the lake has no table {name!r} at snapshot {self.version}; tables: {sorted(self.tables) or 'none'}"
            ) from None

    def files(self) -> list[str]:
        """Every data file or array directory this snapshot reads (relative paths)."""
        out: list[str] = []
        for zoo in self.zoos.values():
            out += [s.path for s in zoo.segments] + list(zoo.model_files)
        for table in self.tables.values():
            out += list(table.files) + list(table.arrays)
        return out

    def to_dict(self) -> dict[str, Any]:
        tensors = any(s.layout != "rows" for z in self.zoos.values() for s in z.segments)
        return {
            "format": FORMAT_VERSION if tensors else 2,
            "version": self.version,
            "snapshot_id": self.snapshot_id,
            "parent": self.parent,
            "created": self.created,
            "operation": dict(self.operation),
            "next_model_id": self.next_model_id,
            "zoos": {k: v.to_dict() for k, v in sorted(self.zoos.items())},
            "tables": {k: v.to_dict() for k, v in sorted(self.tables.items())},
            "sources": [dict(s) for s in self.sources],
            "checksums": dict(sorted(self.checksums.items())),
        }

    def checksum(self, path: str) -> str | None:
        """The recorded checksum of a listed file (None for a format-1 snapshot)."""
        if self.format < 2:
            return None
        try:
            return self.checksums[path]
        except KeyError:
            raise IntegrityError(f"snapshot {self.version} records no checksum for {path!r}; "
                                 "run `weightlake verify`") from None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Manifest:
        fmt = int(d.get("format", 1))
        if fmt > FORMAT_VERSION:
            raise IntegrityError(f"manifest format {d['format']} is newer than this weightlake ({FORMAT_VERSION}); "
                                 "upgrade weightlake to read this lake")
        return cls(
            version=int(d["version"]), snapshot_id=str(d["snapshot_id"]), parent=d.get("parent"),
            created=str(d["created"]), operation=dict(d.get("operation", {})),
            zoos={k: ZooEntry.from_dict(v) for k, v in d.get("zoos", {}).items()},
            tables={k: TableEntry.from_dict(v) for k, v in d.get("tables", {}).items()},
            sources=tuple(dict(s) for s in d.get("sources", ())),
            next_model_id=int(d.get("next_model_id", 0)),
            checksums={str(k): str(v) for k, v in d.get("checksums", {}).items()}, format=fmt,
        )

    def evolve(self, operation: Mapping[str, Any], **changes: Any) -> Manifest:
        """The child manifest: a new id and version, ``parent`` set to this one."""
        return replace(self, version=self.version + 1, snapshot_id=uuid.uuid4().hex[:12], parent=self.file_name,
                       created=_now(), operation=dict(operation), format=FORMAT_VERSION, **changes)

    def encode(self) -> bytes:
        """The manifest file: its JSON body with a checksum of that body (see :func:`decode_manifest`)."""
        body = self.to_dict()
        return json.dumps({**body, "checksum": digest_bytes(_canonical(body))}, indent=1).encode()


def _canonical(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def decode_manifest(data: bytes, where: Path) -> Manifest:
    """Parse a manifest file and check its own checksum (format 2); raises :class:`IntegrityError`.

    Round-trip law: ``decode_manifest(m.encode(), p) == m``.
    """
    try:
        body = json.loads(data)
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        stored = body.pop("checksum", None)
        if int(body.get("format", 1)) >= 2 and stored != digest_bytes(_canonical(body)):
            raise corrupt(where)
        return Manifest.from_dict(body)
    except IntegrityError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"snapshot manifest {str(where)!r} is unreadable: {exc}") from exc


def empty_manifest() -> Manifest:
    return Manifest(version=0, snapshot_id=uuid.uuid4().hex[:12], parent=None, created=_now(),
                    operation={"op": "create"})


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class SnapshotStore:
    """Reads manifests and commits new ones under a lake root (a directory or an object-store prefix).

    The truth is the commit log: ``_log/<version:08d>`` holds the file name of that version's
    manifest and is created with a conditional put (put-if-absent), so of two writers that
    prepared the same version exactly one wins.  ``_current`` is a hint written after each
    commit; :meth:`current` starts from it and steps forward while a next log entry exists.
    Lakes written before the log (no ``_log/``) read from the pointer alone.
    """

    def __init__(self, root: Any) -> None:
        self.location: Store = resolve_store(root)
        self.root: Any = self.location.root if isinstance(self.location, LocalStore) \
            else PurePosixPath(self.location.arrow_path())

    @property
    def exists(self) -> bool:
        return self.location.exists(_CURRENT) or self.location.exists(_log_key(0))

    def create(self) -> Manifest:
        """Initialise an empty lake (idempotent: an existing lake is left alone)."""
        with self.locked():
            return self.create_locked()

    def create_locked(self) -> Manifest:
        """:meth:`create` for a caller that already holds :meth:`locked` (on an object store, two
        creators race on the first log entry and the loser reads the winner's lake)."""
        if self.exists:
            return self.current()
        manifest = empty_manifest()
        if not isinstance(self.location, LocalStore):
            return self._claim_first(manifest)
        made = [self.root / d for d in (_SNAPSHOTS, _LOG) if not (self.root / d).exists()]
        (self.root / _SNAPSHOTS).mkdir(parents=True, exist_ok=True)
        try:
            return self._claim_first(manifest)
        except BaseException:  # a first commit that failed (a full disk) leaves no manifest or folder behind
            if not self.exists:
                with contextlib.suppress(OSError):
                    (self.root / _SNAPSHOTS / manifest.file_name).unlink(missing_ok=True)
                    for folder in made:
                        if folder.exists():
                            folder.rmdir()
            raise

    @property
    def is_local(self) -> bool:
        return isinstance(self.location, LocalStore)

    def discard_empty(self, first: Manifest) -> None:
        """Take back the empty lake ``first`` made by :meth:`create_locked`, while it is still the
        current snapshot (a local lake, under :meth:`locked`): its first commit failed, and the
        attempt should leave nothing behind.  Anything else is left alone."""
        with contextlib.suppress(OSError, WeightLakeError):
            if not self.is_local or first.version != 0 or self.current().file_name != first.file_name \
                    or self._logged(1) is not None:
                return
            for key in (_CURRENT, _log_key(0), f"{_SNAPSHOTS}/{first.file_name}"):
                (self.root / key).unlink(missing_ok=True)
            for folder in (_LOG, _SNAPSHOTS):
                if (self.root / folder).is_dir() and not any((self.root / folder).iterdir()):
                    (self.root / folder).rmdir()

    def _claim_first(self, manifest: Manifest) -> Manifest:
        self._write_manifest(manifest)
        if not self.location.write_if_absent(_log_key(0), manifest.file_name.encode()):
            self.location.delete(f"{_SNAPSHOTS}/{manifest.file_name}")
            return self.current()
        self.location.write(_CURRENT, manifest.file_name.encode())
        return manifest

    def current(self) -> Manifest:
        """The newest committed snapshot: the pointer's version, then every later log entry."""
        name = self._pointer()
        version = int(name[1:9])
        logged = self._logged(version)
        name = logged or name
        while (later := self._logged(version + 1)) is not None:
            version, name = version + 1, later
        return self.load(name)

    def _pointer(self) -> str:
        where = self.location.uri(_CURRENT)
        try:
            name = self.location.read(_CURRENT).decode("ascii", "replace").strip()
        except FileNotFoundError:
            first = self._logged(0)
            if first is not None:  # a creator died between the first log entry and the pointer
                return first
            raise LakeNotFoundError(
                f"no lake at {self.location.url!r} (no {_CURRENT} file); create one by ingesting a zoo, "
                "e.g. `weightlake ingest csv FILE --zoo NAME`, or pass --lake DIR") from None
        except StoreError:  # the store itself failed (unreachable, refused): say so, not "corrupt"
            raise
        except OSError as exc:
            raise IntegrityError(f"{where!r} cannot be read: {exc.strerror or exc}") from exc
        if not _MANIFEST_NAME.match(name):
            raise IntegrityError(f"{where!r} does not name a snapshot (it holds {name[:40]!r}); "
                                 f"the manifests are in {_SNAPSHOTS}/: see `weightlake history`")
        return name

    def _logged(self, version: int) -> str | None:
        """The manifest name the log records for ``version`` (None: no such entry)."""
        try:
            name = self.location.read(_log_key(version)).decode("ascii", "replace").strip()
        except FileNotFoundError:
            return None
        if not _MANIFEST_NAME.match(name) or int(name[1:9]) != version:
            raise IntegrityError(f"commit log entry {self.location.uri(_log_key(version))!r} does not name a "
                                 f"snapshot of version {version} (it holds {name[:40]!r})")
        return name

    def load(self, name: str) -> Manifest:
        key = f"{_SNAPSHOTS}/{name}"
        path = self.location.uri(key)
        if not _MANIFEST_NAME.match(name):
            raise IntegrityError(f"{name!r} is not a snapshot manifest name")
        try:
            data = self.location.read(key)
        except FileNotFoundError:
            raise IntegrityError(f"snapshot manifest {path!r} is missing") from None
        except StoreError:
            raise
        except OSError as exc:
            raise IntegrityError(f"snapshot manifest {path!r} cannot be read: {exc.strerror or exc}") from exc
        return decode_manifest(data, Path(path))

    def history(self) -> list[Manifest]:
        """Snapshots from the current one back to the first, following parents."""
        out, manifest = [], self.current()
        while True:
            out.append(manifest)
            if manifest.parent is None:
                return out
            manifest = self.load(manifest.parent)

    def version(self, version: int) -> Manifest:
        logged = self._logged(version)
        names = [logged] if logged else [k.rsplit("/", 1)[-1] for k in self.location.keys(_SNAPSHOTS)
                                         if k.rsplit("/", 1)[-1].startswith(f"v{version:08d}-")]
        for name in names:
            if _MANIFEST_NAME.match(name) and any(m.file_name == name for m in self.history()):
                return self.load(name)
        current = self.current().version
        raise NoSuchTableError(f"the lake has no snapshot version {version}: its snapshots are 0 to {current} "
                               "(`weightlake history` lists them)")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive writer lock on a local lake (the OS releases it if the process dies).

        It only serialises local writers; correctness comes from the conditional put of the
        log entry.  An object store has no lock: racing writers are sorted out at commit.

        When no lake exists afterwards (a first write that failed), the lock file and the
        lake folder are removed if this call created them (the folder only when empty), so
        the attempt leaves nothing behind.
        """
        if not isinstance(self.location, LocalStore):
            yield
            return
        made: list[Path] = []
        fd, created = self._lock_file(made)
        try:
            yield
        finally:
            try:
                if created and not self.exists:
                    # still held: a writer waiting on this file finds it unlinked and takes a new one
                    (self.root / _LOCK).unlink(missing_ok=True)
                    for folder in reversed(made):
                        with contextlib.suppress(OSError):
                            folder.rmdir()
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def _lock_file(self, made: list[Path]) -> tuple[int, bool]:
        """The locked ``_lock`` file's descriptor, and whether this call created the file (folders it
        created go into ``made``)."""
        path = self.root / _LOCK
        while True:
            make_parent(path, made)
            try:
                fd, created = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
            except FileExistsError:
                fd, created = os.open(path, os.O_RDWR | os.O_CREAT, 0o644), False
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:  # the file may have been removed while this writer waited for it (see locked)
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return fd, created
            except FileNotFoundError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def commit(self, manifest: Manifest) -> Manifest:
        """Make ``manifest`` current: write it, then claim its version in the log with a put-if-absent.

        Raises :class:`CommitConflictError` if the current snapshot is not ``manifest.parent``,
        or if another writer claimed the version first (its manifest file is then removed).
        """
        current = self.current()
        if current.file_name != manifest.parent:
            raise CommitConflictError(
                f"snapshot {current.version} was committed while this change was prepared on "
                f"{manifest.parent}; re-open the lake and retry")
        self._write_manifest(manifest)
        if not self.location.write_if_absent(_log_key(manifest.version), manifest.file_name.encode()):
            self.location.delete(f"{_SNAPSHOTS}/{manifest.file_name}")
            raise CommitConflictError(
                f"another writer committed snapshot {manifest.version} first, while this change was prepared "
                f"on {manifest.parent}; re-open the lake and retry")
        self.location.write(_CURRENT, manifest.file_name.encode())  # a hint: readers step past it
        return manifest

    def _write_manifest(self, manifest: Manifest) -> None:
        self.location.write(f"{_SNAPSHOTS}/{manifest.file_name}", manifest.encode())


def _log_key(version: int) -> str:
    return f"{_LOG}/{version:08d}"


def garbage(root: Path, keep: list[Manifest]) -> list[Path]:
    """What a crashed or interrupted writer can leave under ``root``, that none of ``keep`` lists.

    Data files and arrays no kept snapshot lists, manifests outside the kept history (a
    commit that died between writing its manifest and swapping the pointer), and the
    temporary files of interrupted atomic writes (``.<name>.<id>.tmp``).
    """
    listed = {os.path.normpath(p) for m in keep for p in m.files()}
    out: list[Path] = []
    for top in _DATA_TOPS:
        base = root / top
        if not base.exists():
            continue
        for path in sorted(base.rglob("*")):
            rel = os.path.normpath(path.relative_to(root))
            if (path.suffix == ".zarr" and path.is_dir() or path.suffix == ".parquet" and path.is_file()) \
                    and rel not in listed or path.is_file() and path.name.endswith(".tmp"):
                out.append(path)
    names = {m.file_name for m in keep}
    snapshots = root / _SNAPSHOTS
    if snapshots.is_dir():
        out += sorted(p for p in snapshots.iterdir() if p.is_file() and p.name not in names
                      and (_MANIFEST_NAME.match(p.name) or p.name.endswith(".tmp")))
    out += sorted(p for p in root.glob(".*.tmp") if p.is_file())
    return out


def garbage_keys(location: Store, keep: list[Manifest], *, min_age: float = 0.0) -> list[str]:
    """:func:`garbage` for a lake on an object store: keys no kept snapshot lists, older than ``min_age`` s.

    An object store has no writer lock, so a key a running writer has uploaded but not yet
    committed looks like garbage too; ``min_age`` (``weightlake verify --gc`` uses an hour)
    leaves such recent keys alone.
    """
    import time

    listed = {p.rstrip("/") for m in keep for p in m.files()}
    names = {f"{_SNAPSHOTS}/{m.file_name}" for m in keep}
    now, out = time.time(), []
    for top in (*_DATA_TOPS, _SNAPSHOTS):
        for key, modified in location.list_modified(top).items():
            parts = key.split("/")
            owned = any("/".join(parts[:i]) in listed for i in range(1, len(parts) + 1))
            if not owned and key not in names and now - modified >= min_age:
                out.append(key)
    return sorted(out)


def empty_dirs(root: Path) -> list[Path]:
    """Empty folders under the lake's data folders (left when a failed transaction removed its files), deepest first."""
    out: list[Path] = []
    for top in _DATA_TOPS:
        base = root / top
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base, topdown=False):
            path = Path(dirpath)
            if not filenames and all(Path(dirpath, d) in out for d in dirnames) and path != base:
                out.append(path)
    return out


_DATA_TOPS = ("zoos", "models", "tables", "batches", "predictions")
