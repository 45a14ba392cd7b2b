"""Snapshots: immutable manifests and one atomically swapped pointer.

Layout under the lake root::

    _current                              name of the current manifest (atomic replace)
    _snapshots/v00000007-<uuid>.json      manifest of snapshot 7 (never rewritten)
    _lock                                 writers hold an exclusive flock while committing

A manifest lists every file the snapshot reads: per zoo its architecture, its weight
segments (Zarr arrays, one per commit that added models) and its model metadata files
(Hive-partitioned Parquet); per derived table its Parquet files; and the sources already
ingested (for idempotent re-ingest).  Data files are written first, under fresh names that
no earlier snapshot lists; the manifest is written next; the pointer is replaced last.  A
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
from pathlib import Path
from typing import Any

from weightlake._util import atomic_write
from weightlake.errors import CommitConflictError, IntegrityError, LakeNotFoundError, NoSuchTableError
from weightlake.storage.checksums import corrupt, digest_bytes

FORMAT_VERSION = 2
"""2: every listed file and the manifest itself carry checksums (format 1 lakes read unchecked)."""
_CURRENT = "_current"
_SNAPSHOTS = "_snapshots"
_LOCK = "_lock"
_MANIFEST_NAME = re.compile(r"^v\d{8}-[0-9a-f]{1,32}\.json$")


@dataclass(frozen=True)
class Segment:
    """A Zarr array of weights: rows ``first_id .. first_id + rows - 1`` of one zoo."""

    path: str
    first_id: int
    rows: int
    cols: int
    chunk_digests: tuple[str, ...] | None = None
    """One checksum per chunk file, in chunk order (None: written before checksums)."""
    meta_digest: str | None = None
    """Checksum of the segment's ``zarr.json``."""

    @property
    def stop_id(self) -> int:
        return self.first_id + self.rows

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "first_id": self.first_id, "rows": self.rows, "cols": self.cols}
        if self.chunk_digests is not None:
            out.update(chunk_digests=list(self.chunk_digests), meta_digest=self.meta_digest)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Segment:
        digests = d.get("chunk_digests")
        return cls(str(d["path"]), int(d["first_id"]), int(d["rows"]), int(d["cols"]),
                   tuple(str(x) for x in digests) if digests is not None else None, d.get("meta_digest"))


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
    format: int = FORMAT_VERSION

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
        return {
            "format": FORMAT_VERSION,
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
    """Reads manifests and commits new ones under a lake root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def exists(self) -> bool:
        return (self.root / _CURRENT).is_file()

    def create(self) -> Manifest:
        """Initialise an empty lake (idempotent: an existing lake is left alone)."""
        with self.locked():
            return self.create_locked()

    def create_locked(self) -> Manifest:
        """:meth:`create` for a caller that already holds :meth:`locked`."""
        if self.exists:
            return self.current()
        (self.root / _SNAPSHOTS).mkdir(parents=True, exist_ok=True)
        manifest = empty_manifest()
        self._write_manifest(manifest)
        atomic_write(self.root / _CURRENT, manifest.file_name.encode())
        return manifest

    def current(self) -> Manifest:
        pointer = self.root / _CURRENT
        try:
            name = pointer.read_bytes().decode("ascii", "replace").strip()
        except FileNotFoundError:
            raise LakeNotFoundError(
                f"no lake at {str(self.root)!r} (no {_CURRENT} file); create one by ingesting a zoo, "
                "e.g. `weightlake ingest csv FILE --zoo NAME`, or pass --lake DIR") from None
        except OSError as exc:
            raise IntegrityError(f"{str(pointer)!r} cannot be read: {exc.strerror or exc}") from exc
        if not _MANIFEST_NAME.match(name):
            raise IntegrityError(f"{str(pointer)!r} does not name a snapshot (it holds {name[:40]!r}); "
                                 f"the manifests are in {_SNAPSHOTS}/: see `weightlake history`")
        return self.load(name)

    def load(self, name: str) -> Manifest:
        path = self.root / _SNAPSHOTS / name
        if not _MANIFEST_NAME.match(name):
            raise IntegrityError(f"{name!r} is not a snapshot manifest name")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"snapshot manifest {str(path)!r} is missing") from None
        except OSError as exc:
            raise IntegrityError(f"snapshot manifest {str(path)!r} cannot be read: {exc.strerror or exc}") from exc
        return decode_manifest(data, path)

    def history(self) -> list[Manifest]:
        """Snapshots from the current one back to the first, following parents."""
        out, manifest = [], self.current()
        while True:
            out.append(manifest)
            if manifest.parent is None:
                return out
            manifest = self.load(manifest.parent)

    def version(self, version: int) -> Manifest:
        for path in (self.root / _SNAPSHOTS).glob(f"v{version:08d}-*.json"):
            manifest = self.load(path.name)
            if any(m.file_name == manifest.file_name for m in self.history()):
                return manifest
        raise NoSuchTableError(f"the lake has no snapshot version {version}")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive writer lock; the OS releases it if the process dies."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / _LOCK, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def commit(self, manifest: Manifest) -> Manifest:
        """Make ``manifest`` current.  Call while holding :meth:`locked`.

        Raises :class:`CommitConflictError` if the current snapshot is not ``manifest.parent``.
        """
        current = self.current()
        if current.file_name != manifest.parent:
            raise CommitConflictError(
                f"snapshot {current.version} was committed while this change was prepared on "
                f"{manifest.parent}; re-open the lake and retry")
        self._write_manifest(manifest)
        atomic_write(self.root / _CURRENT, manifest.file_name.encode())
        return manifest

    def _write_manifest(self, manifest: Manifest) -> None:
        atomic_write(self.root / _SNAPSHOTS / manifest.file_name, manifest.encode())


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
