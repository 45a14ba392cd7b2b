"""What every zoo ingester shares: the metadata schema, content hashes, and one commit path.

Readers of each source format (CSV zoo, checkpoint folders) turn files into blocks of
metadata rows plus float32 weight rows and hand them to a :class:`ZooWriter`, which

* hashes each weight row (SHA-256 of its float32 bytes, truncated to 128 bits),
* skips rows the zoo already holds (same hash, init, activation, epoch, classes), so
  re-ingesting a file adds nothing, and says so,
* finds rows that share a weight vector (early-stopped models filed under several epoch
  bins) and reports them instead of hiding them,
* writes weights into a new Zarr segment as they arrive (memory stays flat), and
* commits metadata + segment atomically in one snapshot.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from weightlake.arch import INITS, Architecture, get_architecture
from weightlake.errors import IngestError, WeightLakeError
from weightlake.storage.snapshot import Manifest
from weightlake.storage.transaction import Transaction


def load_architecture(spec: str | Path) -> Architecture:
    """An architecture by built-in name (``cnn-s``), or from a JSON file describing one (``*.json``),
    as ``--arch`` and a job file's ``arch`` take it."""
    import json

    text = str(spec)
    if text.endswith(".json"):
        try:
            return get_architecture(json.loads(Path(text).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise IngestError(f"cannot read architecture description: {exc}", path=text) from exc
    return get_architecture(text)

META_SCHEMA: dict[str, Any] = {
    "init": pl.String,
    "activation": pl.String,
    "epoch": pl.Int32,
    "actual_epoch": pl.Int32,
    "classes": pl.List(pl.Int8),
    "class_mask": pl.Int32,
    "n_classes": pl.Int8,
    "accuracy": pl.Float64,
    "source_file": pl.String,
    "source_row": pl.Int64,
    "weights_hash": pl.String,
    "fallback": pl.Boolean,
}
"""Columns every ingester provides (``model_id``, ``zoo`` and ``arch`` are added at commit)."""

IDENTITY = ("weights_hash", "init", "activation", "epoch", "class_mask")
"""A row with the same identity as one already in the zoo is not added again."""


def check_init(init: str) -> str:
    """``init`` if it names one of :data:`~weightlake.arch.INITS`; every ingester checks a given init here.

    Raises
    ------
    IngestError
        An unknown name (``'Kaiming'``, ``'kaiming_unifrom'``), with the list of valid ones.
    """
    if init not in INITS:
        raise IngestError(f"unknown initialisation {init!r}; expected one of {INITS}")
    return init


def check_rejects_path(lake_root: str | os.PathLike[str], rejects: str | os.PathLike[str]) -> None:
    """Refuse a rejects file inside a local lake root (before any row is read): the lake changes
    only through commits, and ``gc`` would take the file for a stray one.

    Raises
    ------
    IngestError
        ``rejects`` is the lake root or lies under it.
    """
    from weightlake.storage.store import split_url

    scheme, rest = split_url(lake_root)
    if scheme not in (None, "file"):
        return
    root, target = Path(rest).resolve(), Path(rejects).resolve()
    if target == root or root in target.parents:
        raise IngestError(f"refusing to write the rejects file {str(rejects)!r}: it lies inside the lake "
                          f"{str(lake_root)!r}, which changes only through weightlake's own commands; give --rejects "
                          "a path outside it")


def check_zoo_name(zoo: str) -> str:
    """``zoo`` if it can name the zoo's folders and partitions; every ingester checks it before reading.

    Raises
    ------
    IngestError
        An empty name, or one with a space, a slash or another character outside
        letters, digits, ``_ - + .`` (found only at the commit before, after the whole parse).
    """
    from weightlake.storage.tables import partition_value

    try:
        return partition_value(zoo)
    except WeightLakeError:
        raise IngestError(f"zoo name {zoo!r} may hold only letters, digits, '_', '-', '+' and '.' (it names the "
                          f"zoo's folders), e.g. {re.sub(r'[^A-Za-z0-9_.+-]+', '-', str(zoo)).strip('-.') or 'zoo'!r}"
                          ) from None


def label_text(classes: Any) -> str:
    """The CSV/folder label of a class list: ``[0, 1, 7]``."""
    return "[" + ", ".join(str(int(c)) for c in classes) + "]"


def class_mask(classes: Any) -> int:
    out = 0
    for c in classes:
        out |= 1 << int(c)
    return out


def row_major(x: np.ndarray, rows: int = 2048, cols: int = 16) -> np.ndarray:
    """``x`` as a C-ordered float32 array; a column-major input is copied in cache-sized blocks.

    numpy's plain strided copy of a column-major ``[8192, 2464]`` block runs at about 0.4 GB/s
    here (every row touches every column's cache line); tall narrow blocks keep both sides in
    cache and run 5x faster.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.flags.c_contiguous or x.ndim != 2:
        return np.ascontiguousarray(x)
    out = np.empty(x.shape, dtype=np.float32)
    for r in range(0, x.shape[0], rows):
        for c in range(0, x.shape[1], cols):
            out[r:r + rows, c:c + cols] = x[r:r + rows, c:c + cols]
    return out


def take_rows(blocks: list[np.ndarray], keep: np.ndarray) -> list[np.ndarray]:
    """The rows of consecutive ``[k, P]`` blocks where the boolean ``keep`` (over all of them) is true."""
    out, start = [], 0
    for block in blocks:
        part = keep[start:start + len(block)]
        start += len(block)
        if len(block) and part.all():
            out.append(block)
        elif part.any():
            out.append(block[part])
    return out


def hash_rows(rows: np.ndarray) -> list[str]:
    """SHA-256 of each row's float32 bytes, first 128 bits as hex (SHA-256 runs in hardware here)."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    return [hashlib.sha256(r.data).hexdigest()[:32] for r in rows]


def conform(meta: pl.DataFrame) -> pl.DataFrame:
    """Cast to :data:`META_SCHEMA`, adding missing columns as nulls; extra columns are kept."""
    cols = [pl.col(c).cast(t) if c in meta.columns else pl.lit(None, dtype=t).alias(c)
            for c, t in META_SCHEMA.items()]
    extra = [c for c in meta.columns if c not in META_SCHEMA]
    return meta.select(*cols, *extra)


@dataclass
class IngestReport:
    """What an ingest did: counts, duplicates found, rejects, and the snapshot it made."""

    zoo: str
    source: str
    rows_read: int = 0
    rows_added: int = 0
    rows_rejected: int = 0
    rows_already_present: int = 0
    rows_repeated: int = 0
    """Rows that repeat an earlier row of the same source (same identity): not added again."""
    repeats_other_accuracy: list[str] = field(default_factory=list)
    """Those repeats whose accuracy differs from the first row's (the first row's is kept), one line each."""
    already_ingested: bool = False
    duplicate_groups: int = 0
    duplicate_rows: int = 0
    duplicate_examples: list[dict[str, Any]] = field(default_factory=list)
    rejects_path: str | None = None
    snapshot: int | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    unit: str = "rows"

    def lines(self) -> list[str]:
        out = [f"{self.source}: read {self.rows_read} {self.unit}, added {self.rows_added} models to zoo {self.zoo!r}"
               + (f" (snapshot {self.snapshot})" if self.snapshot is not None else "")]
        if self.already_ingested:
            out.append("  this source was ingested before with the same content: nothing added")
        elif self.rows_already_present:
            out.append(f"  {self.rows_already_present} rows were already in the zoo and were not added again")
        if self.snapshot is None and not self.rows_added and not self.already_ingested:
            out.append("  nothing new: no snapshot committed, the lake is unchanged")
        if self.rows_repeated:
            out.append(f"  {self.rows_repeated} rows repeat an earlier row of this source (same weights, init, "
                       "activation, epoch and classes) and were not added again")
            if self.repeats_other_accuracy:
                n = len(self.repeats_other_accuracy)
                out.append(f"  {n} of them give another accuracy than the row they repeat; the first row's accuracy "
                           "is kept (check which is right):")
                out += [f"    e.g. {line}" for line in self.repeats_other_accuracy[:3]]
        if self.rows_rejected:  # an ingester without a rejects file lists them in extra["rejected"]
            where = f"see {self.rejects_path}" if self.rejects_path else "listed below under 'rejected'"
            out.append(f"  {self.rows_rejected} bad {self.unit} skipped; {where}")
        if self.duplicate_groups:
            out.append(f"  {self.duplicate_rows} rows share a weight vector with another row "
                       f"({self.duplicate_groups} groups; early-stopped models filed under several epochs)")
            for ex in self.duplicate_examples[:3]:
                out.append(f"    e.g. {ex}")
        for key, value in self.extra.items():
            out += [f"  {key}: {v}" for v in value] if isinstance(value, list) else [f"  {key}: {value}"]
        out.append(f"  {self.seconds:.1f} s")
        return out

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ZooWriter:
    """Stream metadata + weight blocks of one zoo into a transaction.

    Weight hashing and Zarr writes run on a background thread so they overlap with the
    reader's parsing; :meth:`finish` waits for them and registers the models.

    A weight vector the zoo already holds under another initialisation is the same file
    ingested again with another ``--init``: it would count each model twice, so it raises
    :class:`~weightlake.errors.IngestError` unless ``allow_same_source``.

    ``layout`` is the segment layout (``rows`` or ``tensors``, default by width:
    :func:`weightlake.storage.parts.choose_layout`); ``rows_hint`` the rows expected.
    """

    def __init__(self, tx: Transaction, zoo: str, arch: Architecture, report: IngestReport, *,
                 codec: str = "none", allow_same_source: bool = False, layout: str | None = None,
                 rows_hint: int | None = None) -> None:
        from weightlake.storage.parts import choose_layout

        check_zoo_name(zoo)
        self.tx, self.zoo, self.arch, self.report = tx, zoo, arch, report
        self.layout = choose_layout(arch.n_params, layout)
        spans = [(t.start, t.size) for t in arch.tensors] if self.layout == "tensors" else []
        # opened on the writer thread, so its setup overlaps the reader's first parse
        self._open_segment = lambda: tx.segment_writer(zoo, arch.n_params, codec=codec, spans=spans,
                                                       rows_hint=rows_hint)
        self.segment: Any = None
        self._existing = existing_identities(tx.parent, tx.store.location, zoo)
        self._init_of = {} if allow_same_source else {key[0]: key[1] for key in self._existing}
        self._seen: dict[tuple[Any, ...], tuple[Any, Any]] = {}  # identity -> (accuracy, source row) of its first row
        self._meta: list[pl.DataFrame] = []
        self._queue: queue.Queue[tuple[np.ndarray | list[np.ndarray], pl.DataFrame] | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="weightlake-zoo-writer", daemon=True)
        self._thread.start()

    def add(self, meta: pl.DataFrame, weights: np.ndarray | list[np.ndarray]) -> None:
        """Queue rows: ``meta`` rows describe ``weights`` rows (same order), one ``[n, P]`` block or
        consecutive blocks (as a parser's chunks hold them; the segment copies each into its
        own chunk buffer, so they need not be joined first)."""
        if self._error is not None:
            raise self._error
        self._queue.put((weights, meta))

    def _work(self) -> None:
        try:
            self.segment = self._open_segment()
            while (item := self._queue.get()) is not None:
                weights, meta = item
                blocks = weights if isinstance(weights, list) else [row_major(weights)]  # rows for hashing and Zarr
                hashes = [h for block in blocks for h in hash_rows(block)]
                meta = conform(meta.with_columns(weights_hash=pl.Series(hashes, dtype=pl.String)))
                keep = self._new_rows(meta)
                if not keep.all():
                    meta, blocks = meta.filter(pl.Series(keep)), take_rows(blocks, keep)
                for block in blocks:
                    self.segment.append(block)
                if meta.height:
                    self._meta.append(meta)
        except BaseException as exc:  # surfaced to the producer on its next add() or finish()
            self._error = exc
            while self._queue.get() is not None:
                pass

    def _new_rows(self, meta: pl.DataFrame) -> np.ndarray:
        keys = meta.select(IDENTITY).rows()
        keep = np.ones(len(keys), dtype=bool)
        acc = meta["accuracy"].to_list() if "accuracy" in meta.columns else [None] * len(keys)
        where = meta["source_row"].to_list() if "source_row" in meta.columns else [None] * len(keys)
        for i, key in enumerate(keys):
            if self._init_of.get(key[0], key[1]) != key[1]:
                row = meta.row(i, named=True)
                raise IngestError(f"the zoo already holds this weight vector under init {self._init_of[key[0]]!r}, "
                                  f"now given as {key[1]!r}: the same source ingested again under another --init "
                                  "would count every model twice; pass --allow-same-source (allow_same_source=True) "
                                  "if they really are different models", path=str(row.get("source_file")),
                                  row=row.get("source_row"))
            if key in self._existing:
                keep[i] = False
                self.report.rows_already_present += 1
            elif key in self._seen:
                keep[i] = False
                self.report.rows_repeated += 1
                first_acc, first_row = self._seen[key]
                if not _same_value(acc[i], first_acc):
                    self.report.repeats_other_accuracy.append(
                        f"row {where[i]} repeats row {first_row} with accuracy {acc[i]} (row {first_row}: {first_acc})")
            else:
                self._seen[key] = (acc[i], where[i])
        return keep

    def finish(self) -> pl.DataFrame | None:
        """Wait for the writer thread and register the models; ``None`` if nothing new."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        if not self._meta:
            self.segment.close()
            return None
        meta = pl.concat(self._meta, how="vertical_relaxed")
        self.report.rows_added = meta.height
        written = self.tx.add_models(self.zoo, self.arch, meta, self.segment)
        _report_duplicates(written, self.report)
        return written

    def abort(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def existing_identities(manifest: Manifest, root: Any, zoo: str) -> set[tuple[Any, ...]]:
    """Identities of the zoo's models at ``manifest``; ``root`` is the lake (a path, URL or Store)."""
    from weightlake.lake import Lake

    entry = manifest.zoos.get(zoo)
    if entry is None or not entry.model_files:
        return set()
    df = (Lake(root, manifest).models(zoo)
          .select([c for c in IDENTITY if c != "activation"] + ["activation"]).collect())
    return set(df.select(IDENTITY).rows())


def _report_duplicates(meta: pl.DataFrame, report: IngestReport) -> None:
    dup = (meta.group_by("weights_hash").agg(n=pl.len(), model_ids=pl.col("model_id"), epochs=pl.col("epoch"),
                                             classes=pl.col("classes").first(),
                                             activation=pl.col("activation").first())
           .filter(pl.col("n") > 1).sort("n", descending=True))
    report.duplicate_groups = dup.height
    report.duplicate_rows = int(dup["n"].sum()) if dup.height else 0
    report.duplicate_examples = [
        {"classes": list(r["classes"]), "activation": r["activation"], "epochs": sorted(r["epochs"]),
         "model_ids": r["model_ids"][:6]} for r in dup.head(5).iter_rows(named=True)]


def zoo_dataset(manifest: Manifest, zoo: str) -> str | None:
    """The image dataset the zoo's sources recorded (see :func:`~weightlake.zoo.idx.dataset_id`), or None.

    Raises
    ------
    IngestError
        If its sources name different datasets.
    """
    found = sorted({str(s["dataset"]) for s in manifest.sources if s.get("zoo") == zoo and s.get("dataset")})
    if len(found) > 1:
        raise IngestError(f"zoo {zoo!r} holds models of several image datasets {found}; evaluate them as separate zoos")
    return found[0] if found else None


def check_zoo_dataset(manifest: Manifest, zoo: str, dataset: str | None) -> str | None:
    """``dataset`` (as a dataset id) if the zoo may take it: a zoo records one image dataset.

    Raises
    ------
    IngestError
        If the zoo already records another dataset.
    """
    from weightlake.zoo.idx import dataset_id

    if dataset is None:
        return None
    dataset = dataset_id(dataset)
    recorded = zoo_dataset(manifest, zoo)
    if recorded is not None and recorded != dataset:
        raise IngestError(f"zoo {zoo!r} holds models trained on {recorded!r}, this source says {dataset!r}; "
                          "ingest it into another --zoo")
    return dataset


def _same_value(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN and None to None."""
    if a is None or b is None:
        return a is None and b is None
    return bool(a == b or (a != a and b != b))


def source_seen(manifest: Manifest, zoo: str, fingerprint: str) -> Mapping[str, Any] | None:
    """The earlier ingest into this zoo of a source with this fingerprint, if any."""
    for src in manifest.sources:
        if src.get("zoo") == zoo and src.get("fingerprint") == fingerprint:
            return src
    return None


def file_fingerprint(path: Path, *, samples: int = 64, block: int = 1 << 16) -> str:
    """SHA-256 over the size and ``samples`` evenly spaced blocks of the file (about 4 MB read).

    A cheap identity for "this file was ingested before": it only names the earlier
    ingest in the report.  Whether rows are added is decided row by row (content hash and
    metadata), so a file edited between sampled blocks is still ingested correctly.
    """
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        for i in range(samples):
            fh.seek(max(0, size - block) * i // max(samples - 1, 1))
            h.update(fh.read(block))
    return h.hexdigest()
