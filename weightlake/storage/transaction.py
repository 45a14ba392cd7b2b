"""The one commit path: every writer (ingest, scenarios, analysis, batches) goes through here.

A :class:`Transaction` holds the writer lock, starts from the current snapshot, writes new
files under names unique to the transaction, and commits one new manifest.  If the block
raises, the files it wrote and the folders it made for them are removed and the lake is
unchanged (a failed first write leaves no lake folder or ``_lock``); if the process dies, the
files stay behind unreferenced (``weightlake verify --gc`` lists and removes them).
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from weightlake._util import make_parent
from weightlake.arch import Architecture
from weightlake.errors import CommitConflictError, IntegrityError, LakeWriteError, WeightLakeError
from weightlake.storage import tables
from weightlake.storage.checksums import digest_file, digest_tree
from weightlake.storage.snapshot import Manifest, Segment, SnapshotStore, TableEntry, ZooEntry, empty_manifest
from weightlake.storage.tensors import DEFAULT_CHUNK_ROWS, SegmentWriter

MODEL_PARTITIONS = ("zoo", "activation")


class Transaction:
    """Stage changes on top of the current snapshot; :meth:`commit` publishes them atomically."""

    def __init__(self, root: Path, store: SnapshotStore) -> None:
        self.root, self.store = root, store
        # a new lake is created by its first commit, so a first write that fails leaves no lake behind
        self._new_lake = not store.exists
        self.parent: Manifest = empty_manifest() if self._new_lake else store.current()
        self.token = f"{self.parent.version + 1:08d}-{uuid.uuid4().hex[:8]}"
        self._zoos: dict[str, ZooEntry] = dict(self.parent.zoos)
        self._tables: dict[str, TableEntry] = dict(self.parent.tables)
        self._sources: list[Mapping[str, Any]] = list(self.parent.sources)
        self._next_id = self.parent.next_model_id
        self._checksums: dict[str, str] = dict(self.parent.checksums)
        self._written: list[Path] = []
        self._made: list[Path] = []  # folders this transaction created, outermost first
        self._uploaded: list[str] = []
        self._n = 0
        self.reads: set[tuple[str, str, tuple[str, ...]]] = set()
        """What this change was computed from: ``("zoo", name, ())``, ``("table", name, ())`` or a part
        of a table, ``("table", name, prefixes)``. A writer that changed one of them meanwhile makes
        re-applying it a conflict (see :meth:`read`)."""
        self.committed: Manifest | None = None
        """The snapshot this transaction committed (None until :meth:`commit` succeeds)."""
        self.rebased = 0
        """How many times :meth:`commit` lost a race and re-applied the change on a newer snapshot."""

    # -- zoos ----------------------------------------------------------------------------
    def segment_writer(self, zoo: str, cols: int, *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                       codec: str = "none", spans: Sequence[tuple[int, int]] = (),
                       rows_hint: int | None = None) -> Any:
        """A writer for a new weight segment of ``zoo`` (rows are added later by :meth:`add_models`).

        With tensor ``spans`` (``(start, size)`` per state_dict tensor), the segment uses the
        ``tensors`` layout (:class:`~weightlake.storage.parts.PartsWriter`; ``rows_hint``: rows
        expected, so small segments are not padded to whole 512-row chunks).
        """
        rel = f"zoos/{tables.partition_value(zoo)}/weights/seg-{self._unique()}.zarr"
        path = self.root / rel
        make_parent(path, self._made)
        self._written.append(path)
        if spans:
            from weightlake.storage.parts import PartsWriter

            if codec != "none":
                raise ValueError("the tensors layout is stored uncompressed")
            return PartsWriter(path, cols, spans, rows_hint=rows_hint)
        return SegmentWriter(path, cols, chunk_rows=chunk_rows, codec=codec)

    def add_models(self, zoo: str, arch: Architecture, meta: pl.DataFrame, segment: Any) -> pl.DataFrame:
        """Register ``segment``'s rows as new models of ``zoo`` with metadata ``meta`` (same order).

        Assigns ``model_id`` (stable, lake-wide, increasing) and ``zoo``; returns the metadata
        as written.
        """
        rows = segment.close(attributes={"zoo": zoo, "first_model_id": self._next_id})
        if rows != meta.height:
            raise IntegrityError(f"segment has {rows} rows but metadata has {meta.height}")
        entry = self._zoos.get(zoo) or ZooEntry(arch=arch.to_dict())
        if dict(entry.arch) != arch.to_dict():
            raise IntegrityError(f"zoo {zoo!r} uses architecture {entry.arch.get('name')!r}; cannot add "
                                 f"{arch.name!r} models to it (use another zoo name)")
        first = self._next_id
        meta = meta.with_columns(model_id=pl.int_range(first, first + rows, dtype=pl.Int64),
                                 zoo=pl.lit(zoo), arch=pl.lit(arch.name)).select("model_id", pl.exclude("model_id"))
        files = tables.write_partitioned(meta, self.root, "models", MODEL_PARTITIONS, self._unique(), self._made)
        self._track(files)
        seg = Segment(str(segment.path.relative_to(self.root)), first, rows, segment.cols,
                      segment.chunk_digests, segment.meta_digest, segment.layout, segment.parts)
        self._zoos[zoo] = replace(entry, segments=(*entry.segments, seg),
                                  model_files=(*entry.model_files, *files))
        self._next_id += rows
        return meta

    def record_source(self, source: Mapping[str, Any]) -> None:
        self._sources.append(dict(source, snapshot=self.parent.version + 1))

    # -- derived tables ---------------------------------------------------------------------
    def put_table(self, name: str, df: pl.DataFrame, *, partition_by: Sequence[str] = (),
                  replace_partitions: bool = True, properties: Mapping[str, Any] | None = None,
                  arrays: Sequence[Path] = ()) -> list[str]:
        """Add ``df`` to table ``name``.

        With ``partition_by``, partitions that ``df`` writes replace the same partitions of
        the parent snapshot (so re-declaring a scenario replaces its pairs); without it,
        ``replace_partitions`` replaces the whole table.
        """
        base = f"tables/{tables.partition_value(name)}"
        files = tables.write_partitioned(df, self.root, base, partition_by, self._unique(), self._made) \
            if df.height else []
        self._track(files)
        old = self._tables.get(name, TableEntry())
        keep = list(old.files)
        if replace_partitions:
            prefixes = {str(Path(f).parent) + "/" for f in files} if partition_by else None
            keep = [f for f in keep if prefixes is not None and not any(f.startswith(p) for p in prefixes)]
        props = {**old.properties, **(properties or {})}
        array_paths = [str(Path(a).relative_to(self.root)) for a in arrays]
        for a in arrays:
            self._checksums.update(digest_tree(self.root, Path(a)))
        self._tables[name] = TableEntry(files=(*keep, *files), properties=props,
                                        arrays=(*old.arrays, *array_paths))
        return files

    def drop_table_files(self, name: str, predicate: Any) -> None:
        """Drop files (and arrays) of a table for which ``predicate(path)`` is true."""
        old = self._tables.get(name)
        if old is not None:
            self._tables[name] = TableEntry(files=tuple(f for f in old.files if not predicate(f)),
                                            properties=old.properties,
                                            arrays=tuple(a for a in old.arrays if not predicate(a)))

    def new_array_path(self, kind: str, *parts: str) -> Path:
        """A fresh directory for a Zarr array owned by a derived table."""
        rel = Path(kind, *(tables.partition_value(p) for p in parts), f"{self._unique()}.zarr")
        path = self.root / rel
        make_parent(path, self._made)
        self._written.append(path)
        return path

    # -- commit ------------------------------------------------------------------------------
    @property
    def changed(self) -> bool:
        return bool(self._written)

    def commit(self, operation: Mapping[str, Any], *, retries: int = 50) -> Manifest:
        """Publish the staged changes as one new snapshot.

        If another writer committed first, the change is re-applied on the newer snapshot when
        the two do not overlap (different zoos and tables, at most one of them adding models);
        otherwise :class:`CommitConflictError` says what collided and nothing is committed.
        """
        self._upload()
        base = self.parent
        if self._new_lake:  # create it now; another creator may have committed to it meanwhile
            base = self.store.create_locked()
            if base.version:
                self._check_disjoint(base)
            elif self.store.is_local:  # under the lock: a failed first commit takes the empty lake back
                try:
                    return self._commit_on(base, operation, retries)
                except CommitConflictError:
                    raise
                except BaseException:
                    self.store.discard_empty(base)
                    raise
        return self._commit_on(base, operation, retries)

    def _commit_on(self, base: Manifest, operation: Mapping[str, Any], retries: int) -> Manifest:
        for _ in range(retries):
            try:
                self.committed = self.store.commit(self._manifest_on(base, operation))
                return self.committed
            except CommitConflictError:
                latest = self.store.current()
                if latest.file_name == base.file_name:
                    raise
                self._check_disjoint(latest)
                base = latest
                self.rebased += 1
        raise CommitConflictError(f"gave up after {retries} commits by other writers won the race; "
                                  "nothing was committed, retry later")

    def _manifest_on(self, base: Manifest, operation: Mapping[str, Any]) -> Manifest:
        """This transaction's changes applied to ``base`` (the parent, or a newer snapshot)."""
        zoos: dict[str, Any] = dict(base.zoos)
        tables_: dict[str, Any] = dict(base.tables)
        pairs: tuple[tuple[Mapping[str, Any], dict[str, Any], Mapping[str, Any]], ...] = (
            (self._zoos, zoos, self.parent.zoos), (self._tables, tables_, self.parent.tables))
        for mine, theirs, parent in pairs:
            for name in set(mine) | set(parent):
                if name not in mine:
                    theirs.pop(name, None)
                elif mine[name] != parent.get(name):
                    merged = None
                    if mine is self._tables and base.tables.get(name) != parent.get(name):
                        merged = merge_table_change(mine[name], base.tables.get(name), parent.get(name))
                    theirs[name] = mine[name] if merged is None else merged
        added = self._next_id != self.parent.next_model_id
        new_sources = [{**src, "snapshot": base.version + 1} if "snapshot" in src else src
                for src in self._sources[len(self.parent.sources):]]  # re-applied: the version it lands in
        manifest = base.evolve(operation, zoos=zoos, tables=tables_, sources=(*base.sources, *new_sources),
                               next_model_id=self._next_id if added else base.next_model_id)
        return replace(manifest, checksums=self._listed_checksums(manifest, {**base.checksums, **self._checksums}))

    def read(self, *, zoos: Sequence[str] = (), tables: Sequence[str] = (),
             parts: Sequence[tuple[str, Sequence[str]]] = ()) -> None:
        """Record that this change was computed from ``zoos``, whole ``tables`` and ``parts`` of tables
        (``(table, path prefixes)``: its files and arrays under those, e.g. ``tables/pairs/scenario=s1/``)
        of the parent snapshot.

        An analysis writes only its own table, so without this a commit race against an ingest
        into the zoo it analysed re-applied it over the new models, unsaid.
        """
        self.reads |= ({("zoo", z, ()) for z in zoos} | {("table", t, ()) for t in tables}
                       | {("table", t, tuple(p)) for t, p in parts})

    def stale_reads(self, newer: Manifest, older: Manifest | None = None) -> list[str]:
        """What this change read that differs between ``older`` (default: the parent) and ``newer``."""
        older = older or self.parent
        return sorted({_read_label(kind, name, prefixes) for kind, name, prefixes in self.reads
                       if _read_view(newer, kind, name, prefixes) != _read_view(older, kind, name, prefixes)})

    def _check_disjoint(self, latest: Manifest) -> None:
        def changed(a: Mapping[str, Any], b: Mapping[str, Any]) -> set[str]:
            return {k for k in set(a) | set(b) if a.get(k) != b.get(k)}

        stale = self.stale_reads(latest)
        if stale:
            raise CommitConflictError(
                f"snapshot {latest.version} ({latest.operation.get('op', '?')}) was committed by another writer "
                f"while this change was computed from snapshot {self.parent.version}, and it changed "
                f"{', '.join(stale)}, which this change read; nothing was committed: re-run on the new snapshot")

        zoos = changed(self._zoos, self.parent.zoos) & changed(latest.zoos, self.parent.zoos)
        tabs = {t for t in changed(self._tables, self.parent.tables) & changed(latest.tables, self.parent.tables)
                if merge_table_change(self._tables.get(t), latest.tables.get(t), self.parent.tables.get(t)) is None}
        both_added = self._next_id != self.parent.next_model_id and latest.next_model_id != self.parent.next_model_id
        if zoos or tabs or both_added:
            what = ", ".join([*(f"zoo {z!r}" for z in sorted(zoos)), *(f"table {t!r}" for t in sorted(tabs))]
                             + (["new model ids"] if both_added else []))
            raise CommitConflictError(
                f"snapshot {latest.version} ({latest.operation.get('op', '?')}) was committed by another writer "
                f"while this change was prepared on snapshot {self.parent.version}, and both change {what}; "
                "nothing was committed: re-run on the new snapshot")

    def _listed_checksums(self, manifest: Manifest, known: Mapping[str, str] | None = None) -> dict[str, str]:
        """Checksums of the files the new snapshot lists (table arrays: every file below them)."""
        known = self._checksums if known is None else known
        files = {f for z in manifest.zoos.values() for f in z.model_files}
        files |= {f for t in manifest.tables.values() for f in t.files}
        arrays = tuple(a.rstrip("/") + "/" for t in manifest.tables.values() for a in t.arrays)
        return {k: v for k, v in known.items() if k in files or k.startswith(arrays)}

    def _upload(self) -> None:
        """On an object store: copy every staged file or array to the lake before the manifest."""
        location = self.store.location
        if location.is_local:
            return
        for path in self._written:
            if path.exists():
                self._uploaded += location.upload(path, path.relative_to(self.root).as_posix())

    def abort(self) -> None:
        for key in reversed(self._uploaded):
            self.store.location.delete(key)
        self._uploaded.clear()
        for path in reversed(self._written):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        self._written.clear()
        for folder in reversed(self._made):  # innermost first; one still holding a file stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._made.clear()

    def _unique(self) -> str:
        self._n += 1
        return f"{self.token}-{self._n}"

    def _track(self, files: Sequence[str]) -> None:
        self._written += [self.root / f for f in files]
        self._checksums.update({f: digest_file(self.root / f) for f in files})


@contextlib.contextmanager
def transaction(root: Any) -> Iterator[Transaction]:
    """``with transaction(root) as tx:`` — lock, stage, and abort (remove files) on error.

    ``root`` is a lake directory or URL (``s3://bucket/prefix``). On an object store the
    transaction stages its files in a local temporary directory (``tx.root``), uploads them
    at commit and then claims the next version; no lock is held.

    The caller commits explicitly with ``tx.commit(operation)``; leaving the block without
    committing aborts.
    """
    store = SnapshotStore(root)
    try:
        with store.locked(), _staging(store) as staging:
            tx = Transaction(staging, store)
            try:
                yield tx
            finally:
                if tx.committed is None:
                    tx.abort()
    except OSError as exc:
        if isinstance(exc, WeightLakeError):
            raise
        raise LakeWriteError(_write_failure(root, exc)) from exc


@contextlib.contextmanager
def _staging(store: SnapshotStore) -> Iterator[Path]:
    if store.location.is_local:
        yield Path(store.root)
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="weightlake-stage-") as tmp:
        yield Path(tmp)


def _write_failure(root: Path, exc: OSError) -> str:
    import errno

    where = f" ({exc.filename!r})" if exc.filename else ""
    reason = {errno.ENOSPC: "the disk is full", errno.EROFS: "the lake is on a read-only file system",
              errno.EACCES: "permission denied", errno.EPERM: "permission denied",
              errno.EDQUOT: "the disk quota is exceeded"}.get(exc.errno or 0, exc.strerror or str(exc))
    return (f"cannot write to the lake {str(root)!r}: {reason}{where}; nothing was committed and the lake is "
            "unchanged (files this run wrote were removed)")


def _read_view(manifest: Manifest, kind: str, name: str, prefixes: tuple[str, ...]) -> Any:
    """What a recorded read sees of ``manifest``: a zoo's entry, a table's entry, or a table's files and
    arrays under ``prefixes``."""
    if kind == "zoo":
        return manifest.zoos.get(name)
    entry = manifest.tables.get(name)
    if not prefixes or entry is None:
        return entry
    return (tuple(f for f in entry.files if f.startswith(prefixes)),
            tuple(a for a in entry.arrays if a.startswith(prefixes)))


def _read_label(kind: str, name: str, prefixes: tuple[str, ...]) -> str:
    if not prefixes:
        return f"{kind} {name!r}"
    where = ", ".join(p.rstrip("/").rsplit("/", 1)[-1] for p in prefixes)
    return f"{kind} {name!r} ({where})"


def _partition(path: str) -> str:
    """The top partition of a table file: ``tables/pairs/scenario=s`` for
    ``tables/pairs/scenario=s/split=train/part.parquet``; the table's folder for an unpartitioned file."""
    parts = path.split("/")
    return "/".join(parts[:3]) if len(parts) > 3 and "=" in parts[2] else "/".join(parts[:2])


def merge_table_change(mine: TableEntry | None, latest: TableEntry | None,
                       parent: TableEntry | None) -> TableEntry | None:
    """``mine`` (a change of ``parent``) re-applied on ``latest`` (another writer's change of it), or None
    when the two collide.

    Was: any two writers of one table collided, so two `scenario declare` of different names, or
    `analyze spectra` of two zoos, at once: the second was refused ("both change table 'pairs'").
    They do not collide when they add and remove files in different top partitions
    (``scenario=...``, ``zoo=...``), remove no array and change different properties (or set them
    alike): ``latest``'s files, less those ``mine`` removed, plus those ``mine`` added.
    """
    if mine is None or latest is None:
        return None
    parent = parent or TableEntry()
    before, own, theirs = set(parent.files), set(mine.files), set(latest.files)
    touched_mine = {_partition(f) for f in own ^ before}
    touched_theirs = {_partition(f) for f in theirs ^ before}
    if touched_mine & touched_theirs or not (before - own) <= theirs:
        return None
    if set(parent.arrays) - set(mine.arrays) or set(parent.arrays) - set(latest.arrays):
        return None
    new_arrays = [a for a in mine.arrays if a not in parent.arrays]
    if set(new_arrays) & set(latest.arrays):
        return None
    keys = set(mine.properties) | set(parent.properties)
    changed = {k for k in keys if mine.properties.get(k) != parent.properties.get(k)}
    if any(k in latest.properties and latest.properties.get(k) != parent.properties.get(k)
           and latest.properties.get(k) != mine.properties.get(k) for k in changed):
        return None
    properties = {**latest.properties, **{k: mine.properties[k] for k in changed if k in mine.properties}}
    for k in changed - set(mine.properties):
        properties.pop(k, None)
    files = (*(f for f in latest.files if f not in before - own), *(f for f in mine.files if f not in before))
    return TableEntry(files=files, properties=properties, arrays=(*latest.arrays, *new_arrays))

