"""``weightlake verify``: integrity of a pinned snapshot and a data-quality report.

Integrity (a failure makes the CLI exit non-zero): every file the snapshot lists exists;
each weight segment's shape matches the manifest and the metadata row count; every
model's stored content hash matches its weight row; model ids are unique.

Quality (reported, never a failure): rows sharing a weight vector and where, NaN or
infinite weights, missing (classes, activation, epoch) slots against the full grid the
zoo spans, and an accuracy summary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from weightlake.errors import IntegrityError, WeightLakeError
from weightlake.ingest.common import hash_rows
from weightlake.lake import Lake
from weightlake.storage import remote
from weightlake.storage.checksums import check_file
from weightlake.storage.remote import check_key as remote_check
from weightlake.storage.snapshot import empty_dirs, garbage, garbage_keys
from weightlake.storage.tensors import SegmentReader

if TYPE_CHECKING:
    from weightlake.storage.multipart import Upload


@dataclass
class VerifyReport:
    snapshot: int
    problems: list[str] = field(default_factory=list)
    quality: dict[str, Any] = field(default_factory=dict)
    orphans: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = [f"snapshot {self.snapshot}: integrity " + ("OK" if self.ok else f"FAILED ({len(self.problems)} problems)")]
        out += [f"  ! {p}" for p in self.problems[:50]]
        for zoo, q in self.quality.items():
            out.append(f"zoo {zoo!r}: {q['models']} models")
            out.append(f"  duplicate weight vectors: {q['duplicate_rows']} rows in {q['duplicate_groups']} groups")
            for ex in q["duplicate_examples"]:
                out.append(f"    {ex}")
            out.append(f"  non-finite weights: {q['nonfinite_rows']} rows")
            if q["slots_grid"] is None:
                out.append("  slots (classes x activation x epoch): none to fill, the zoo records no class sets")
            else:
                out.append(f"  slots (classes x activation x epoch): {q['slots_filled']} filled of {q['slots_grid']}"
                           f" ({q['slots_missing']} missing)")
            for ex in q["missing_examples"]:
                out.append(f"    missing: {ex}")
            acc = q["accuracy"]
            out.append(f"  accuracy: mean {acc['mean']:.2f}, min {acc['min']:.2f}, max {acc['max']:.2f}, "
                       f"null {acc['null']}" if acc["mean"] is not None else f"  accuracy: none recorded ({acc['null']} null)")
        if self.orphans:
            out.append(f"{len(self.orphans)} unreferenced files (left by interrupted writers; `--gc` removes them)")
        out += [f"note: {n}" for n in self.notes]
        return out


def verify(lake: Lake, *, progress: Callable[[int], None] | None = None) -> VerifyReport:
    report = VerifyReport(snapshot=lake.snapshot)
    for rel in lake.manifest.files():
        if not _exists(lake, rel):
            report.problems.append(f"missing file {rel}")
    if lake.manifest.format < 2:
        report.problems.append(f"snapshot {lake.snapshot} was written before checksums (format "
                               f"{lake.manifest.format}): its files cannot be checked")
    _verify_checksums(lake, report)
    for zoo in lake.zoos:
        _verify_zoo(lake, zoo, report, progress)
    try:
        keep = lake.store.history()
    except WeightLakeError as exc:  # an earlier manifest damaged: report it, keep what can be read
        report.problems.append(f"history: {exc}")
        keep = [lake.manifest]
    if lake.location.is_local:
        report.orphans = [str(p.relative_to(lake.root)) for p in garbage(lake.root, keep)]
    else:
        report.orphans = garbage_keys(lake.location, keep)
        report.orphans += [_upload_label(u) for u in stale_uploads(lake, min_age=0.0, notes=report.notes)]
    return report


def _exists(lake: Lake, rel: str) -> bool:
    if lake.location.is_local:
        return (lake.root / rel).exists()
    # an object store has no directories: an array exists when its zarr.json does
    return lake.location.exists(f"{rel}/zarr.json" if rel.endswith(".zarr") else rel)


def _verify_checksums(lake: Lake, report: VerifyReport) -> None:
    """Every Parquet file and every file of a table-owned array against its recorded checksum."""
    for rel, digest in sorted(lake.manifest.checksums.items()):
        try:
            if lake.location.is_local:
                check_file(lake.root / rel, digest)
            else:
                remote_check(lake.location, rel, digest)
        except IntegrityError as exc:
            report.problems.append(str(exc))


def _verify_zoo(lake: Lake, zoo: str, report: VerifyReport, progress: Callable[[int], None] | None) -> None:
    entry = lake.manifest.zoo(zoo)
    meta: pl.DataFrame | None = None
    try:
        meta = lake.models(zoo).sort("model_id").collect()
    except (WeightLakeError, pl.exceptions.PolarsError, OSError) as exc:  # unreadable Parquet: report, keep going
        report.problems.append(f"zoo {zoo!r}: model metadata unreadable: {exc}")
    if meta is not None and meta.height != entry.n_models:
        report.problems.append(f"zoo {zoo!r}: {meta.height} metadata rows but {entry.n_models} weight rows")
    if meta is not None and meta["model_id"].n_unique() != meta.height:
        report.problems.append(f"zoo {zoo!r}: duplicate model ids")
    nonfinite = 0
    # without metadata there are no hashes to compare, but every chunk is still checked
    hashes = dict(zip(meta["model_id"].to_list(), meta["weights_hash"].to_list(), strict=True)) \
        if meta is not None else None
    step = lake.block_rows(zoo)  # blocks of a quarter of the handle's memory budget
    for seg in entry.segments:
        try:
            reader = SegmentReader(lake.root / seg.path, seg.rows, seg.cols, digests=seg.chunk_digests,
                                   meta_digest=seg.meta_digest, parts=seg.parts) if lake.location.is_local else None
            chunk = _chunk_rows(lake, seg)
        except WeightLakeError as exc:
            report.problems.append(str(exc))
            continue

        def read(start: int, stop: int, seg: Any = seg, reader: Any = reader) -> np.ndarray:
            return reader.read(start, stop) if reader is not None \
                else remote.read_rows(lake.location, seg, np.arange(start, stop))

        for start in range(0, seg.rows, step):
            stop = min(start + step, seg.rows)
            for at, block in _checked_blocks(read, start, stop, chunk, report):
                nonfinite += int((~np.isfinite(block).all(axis=1)).sum())
                if hashes is not None:
                    _check_hashes(block, hashes, zoo, seg, at, report)
                if progress is not None:
                    progress(len(block))
    if meta is not None:
        report.quality[zoo] = _quality(meta, nonfinite)


def _check_hashes(block: np.ndarray, hashes: dict[int, str], zoo: str, seg: Any, at: int,
                  report: VerifyReport) -> None:
    """Each row of ``block`` (rows ``at ..`` of ``seg``) against the content hash its metadata records."""
    for offset, digest in enumerate(hash_rows(block)):
        mid = seg.first_id + at + offset
        if hashes.get(mid) != digest:
            report.problems.append(f"zoo {zoo!r}: model {mid} weights do not match their hash "
                                   f"(segment {seg.path}, row {at + offset})")


def _chunk_rows(lake: Lake, seg: Any) -> int:
    """Rows of the segment's smallest stored chunk (a tensors-layout segment chunks each tensor on its own)."""
    return min(p.chunk_rows for p in seg.parts) if seg.parts else remote.chunk_rows(lake.location, seg)


def _checked_blocks(read: Callable[[int, int], np.ndarray], start: int, stop: int, chunk: int,
                    report: VerifyReport) -> Any:
    """``(first row, rows)`` of ``start:stop`` read whole, or, when that fails, chunk by chunk: each
    damaged chunk is reported (once) and the intact ones around it are still checked."""
    try:
        yield start, read(start, stop)
        return
    except WeightLakeError as exc:
        if stop - start <= chunk:
            if str(exc) not in report.problems:
                report.problems.append(str(exc))
            return
    for lo in range(start - start % chunk, stop, chunk):
        yield from _checked_blocks(read, max(lo, start), min(lo + chunk, stop), chunk, report)


def _quality(meta: pl.DataFrame, nonfinite: int) -> dict[str, Any]:
    dup = (meta.group_by("weights_hash").agg(n=pl.len(), ids=pl.col("model_id").sort(), epochs=pl.col("epoch").sort(),
                                             classes=pl.col("classes").first(), activation=pl.col("activation").first(),
                                             init=pl.col("init").first())
           .filter(pl.col("n") > 1).with_columns(first=pl.col("ids").list.first())
           .sort(["n", "first"], descending=[True, False]))  # the same examples every run
    keys = ["init", "activation", "epoch"]
    labels = meta.select("class_mask").unique()
    grid = labels.join(meta.select(keys).unique(), how="cross") if "init" in meta.columns else labels
    grid = grid.join(meta.select("init", "activation").unique(), on=["init", "activation"], how="semi")
    present = meta.select("class_mask", *keys).unique()
    missing = grid.join(present, on=["class_mask", *keys], how="anti").sort(["class_mask", *keys])
    if meta.height and meta["class_mask"].null_count() == meta.height:
        grid = missing = None  # no class sets (a Model Zoos layout zoo): there is no grid of slots to fill
    acc = meta["accuracy"]
    return {
        "models": meta.height,
        "duplicate_groups": dup.height,
        "duplicate_rows": int(dup["n"].sum()) if dup.height else 0,
        "duplicate_examples": [f"classes {list(r['classes'])} {r['activation']} {r['init']}: epochs {list(r['epochs'])}"
                               f" -> model ids {list(r['ids'])[:6]}" for r in dup.head(3).iter_rows(named=True)],
        "nonfinite_rows": nonfinite,
        "slots_grid": None if grid is None else grid.height,
        "slots_filled": present.height,
        "slots_missing": None if missing is None else missing.height,
        "missing_examples": [] if missing is None else [
            f"classes {_mask_classes(r['class_mask'])} {r['activation']} {r['init']} epoch {r['epoch']}"
            for r in missing.head(5).iter_rows(named=True)],
        "accuracy": {"mean": acc.mean(), "min": acc.min(), "max": acc.max(), "null": acc.null_count()},
    }


def _mask_classes(mask: int | None) -> list[int]:
    if mask is None:  # a zoo without class subsets (e.g. ingested from the Model Zoos layout)
        return []
    return [d for d in range(32) if mask >> d & 1]


GC_MIN_AGE = 3600.0
"""On an object store (no writer lock), ``--gc`` removes only unreferenced keys (and aborts only
unfinished multipart uploads) older than this (seconds)."""


def collect_garbage(lake: Lake, *, min_age: float = GC_MIN_AGE, notes: list[str] | None = None) -> list[str]:
    """Remove what no snapshot in the history lists (see :func:`garbage`) and the empty folders
    left behind; returns what was removed.  On an object store: unreferenced keys older than
    ``min_age`` seconds (a running writer's uploads are younger), and unfinished multipart
    uploads under the lake's prefix started longer ago (a killed writer's: no listing shows
    their parts, but they are stored); ``notes`` receives why those could not be checked."""
    import shutil

    if not lake.location.is_local:
        from weightlake.storage.multipart import abort_upload
        from weightlake.storage.store import S3Store

        location = lake.location
        keys = garbage_keys(location, lake.store.history(), min_age=min_age)
        for key in keys:
            location.delete(key)
        for upload in stale_uploads(lake, min_age=min_age, notes=notes):
            if isinstance(location, S3Store):  # (stale_uploads lists only those)
                abort_upload(location, upload)
                keys.append(_upload_label(upload))
        return keys
    with lake.store.locked():
        removed = []
        for path in garbage(lake.root, lake.store.history()):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(str(path.relative_to(lake.root)))
        for path in empty_dirs(lake.root):
            path.rmdir()
            removed.append(str(path.relative_to(lake.root)) + "/")
    return removed


def stale_uploads(lake: Lake, *, min_age: float, notes: list[str] | None = None) -> list[Upload]:
    """Unfinished multipart uploads under an S3 lake's prefix started at least ``min_age`` s ago.

    Listing them needs a permission (``s3:ListBucketMultipartUploads``) and credentials in the
    environment that reading the lake does not: without them, none, and a note says why.
    """
    from weightlake.storage.multipart import list_uploads
    from weightlake.storage.store import S3Store, StoreError

    if not isinstance(lake.location, S3Store):
        return []
    import time

    try:
        uploads = list_uploads(lake.location)
    except StoreError as exc:
        if notes is not None:
            notes.append(f"unfinished multipart uploads not checked: {exc}")
        return []
    now = time.time()
    return [u for u in uploads if now - u.initiated >= min_age]


UPLOAD_SUFFIX = " (unfinished multipart upload)"
"""How :func:`collect_garbage` and the orphans of :func:`verify` label an unfinished upload."""


def _upload_label(upload: Upload) -> str:
    return f"{upload.key}{UPLOAD_SUFFIX}"
