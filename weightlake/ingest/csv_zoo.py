"""The CSV zoo (``Merged zoo.csv``): streaming ingestion and exact export.

Columns, in order (see ``zoo-formats.md`` section 2): ``label``, digit one-hots ``0``..``9``,
activation one-hots in :data:`~weightlake.arch.ACTIVATIONS` order, the architecture's
weight columns (``weight i`` / ``bias i``), ``Accuracy``, ``epoch``.

Ingestion parses with polars in row batches (the file is never held whole), validates
each batch with vectorised checks, and streams weights into a Zarr segment.  Any problem
is reported with file, row (1-based line number in the file, header = line 1) and column.
When polars itself cannot parse the file (a non-numeric field, a ragged line), a slower
line-by-line pass finds exactly where.

Round-trip law: ``read(export(ingest(f)))`` equals ``read(f)`` value for value (weights as
float32, accuracy as float64, labels and one-hots exactly).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gc
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from weightlake._util import non_finite_rows
from weightlake.arch import ACTIVATIONS, CNN_S, Architecture
from weightlake.errors import IngestError, QueryError
from weightlake.ingest.common import (
    IngestReport,
    ZooWriter,
    check_init,
    check_rejects_path,
    check_zoo_dataset,
    check_zoo_name,
    file_fingerprint,
    source_seen,
    take_rows,
)
from weightlake.ingest.csv_checks import AccuracyScale, epoch_bin_problems, parse_epoch_bins, zoo_accuracies
from weightlake.storage.transaction import transaction

DIGITS = tuple(str(d) for d in range(10))
LABEL_RE = r"^\[\d(, \d)*\]$"
ProgressFn = Callable[[int], None]
_WEIGHTS = "_weights"  # the scan packs the weight columns into this one fixed-size array column


def csv_columns(arch: Architecture = CNN_S) -> list[str]:
    """The exact header of a CSV zoo of this architecture."""
    return ["label", *DIGITS, *ACTIVATIONS, *arch.csv_columns(), "Accuracy", "epoch"]


def csv_schema(arch: Architecture = CNN_S) -> dict[str, Any]:
    schema: dict[str, Any] = {"label": pl.String}
    schema.update({d: pl.Float64 for d in DIGITS})
    schema.update({a: pl.Float64 for a in ACTIVATIONS})
    schema.update({c: pl.Float32 for c in arch.csv_columns()})
    schema.update({"Accuracy": pl.Float64, "epoch": pl.Float64})
    return schema


@dataclass(frozen=True)
class BadRow:
    row: int
    column: str | None
    reason: str


# -- header and diagnosis -------------------------------------------------------------------
_COMPRESSED = {b"\x1f\x8b": ("gzip", "gunzip -k"), b"PK\x03\x04": ("zip", "unzip"),
               b"\x28\xb5\x2f\xfd": ("zstd", "unzstd"), b"\xfd7zXZ": ("xz", "unxz -k"), b"BZh": ("bzip2", "bunzip2 -k")}


def check_input_file(path: Path) -> None:
    """Refuse what cannot be a CSV zoo before reading it: missing, not a regular file, compressed."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise IngestError("no such file", path=str(path)) from None
    except OSError as exc:
        raise IngestError(f"cannot read the file: {exc.strerror or exc}", path=str(path)) from exc
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a device, pipe or socket"
        raise IngestError(f"is {kind}, not a CSV file", path=str(path))
    with open(path, "rb") as fh:
        head = fh.read(6)
    for magic, (name, tool) in _COMPRESSED.items():
        if head.startswith(magic):
            raise IngestError(f"the file is {name}-compressed; decompress it first ({tool} {str(path)!r}) and "
                              "ingest the CSV", path=str(path))


def check_header(path: Path, arch: Architecture) -> None:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), None)
    except (OSError, UnicodeDecodeError) as exc:
        raise IngestError(f"cannot read the file: {exc}", path=str(path)) from exc
    if not header:
        raise IngestError("the file is empty; expected a CSV zoo with a header line", path=str(path), row=1)
    expected = csv_columns(arch)
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    if len(header) != len(expected):
        hint = " (is there an index column? export with index=False)" if len(header) == len(expected) + 1 else ""
        raise IngestError(f"expected {len(expected)} columns for architecture {arch.name!r}, "
                          f"the header has {len(header)}{hint}", path=str(path), row=1)
    for i, (got, want) in enumerate(zip(header, expected, strict=True)):
        if got != want:
            raise IngestError(f"header column {i} is {got!r}, expected {want!r}", path=str(path), row=1, column=got)


def diagnose(path: Path, arch: Architecture, limit: int | None = 1) -> list[BadRow]:
    """Find lines polars could not parse (ragged or non-numeric), line by line; slow path."""
    cols = csv_columns(arch)
    bad: list[BadRow] = []
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for line_no, fields in enumerate(reader, start=2):
            problem = _line_problem(fields, cols)
            if problem:
                bad.append(BadRow(line_no, *problem))
                if limit is not None and len(bad) >= limit:
                    break
    return bad


def _line_problem(fields: list[str], cols: list[str]) -> tuple[str | None, str] | None:
    if len(fields) != len(cols):
        what = "truncated line" if len(fields) < len(cols) else "too many fields"
        return (cols[len(fields)] if len(fields) < len(cols) else None,
                f"{what}: {len(fields)} fields, expected {len(cols)}")
    for name, value in zip(cols[1:], fields[1:], strict=True):
        try:
            float(value)
        except ValueError:
            return name, f"not a number: {value[:40]!r}"
    return None


def _clean_copy(path: Path, bad_rows: set[int], tmpdir: str) -> tuple[Path, np.ndarray]:
    """A copy without the bad lines, and the original line number of each kept data line."""
    out = Path(tmpdir) / "clean.csv"
    kept: list[int] = []
    with open(path, newline="", encoding="utf-8", errors="replace") as src, open(out, "w", newline="") as dst:
        dst.write(src.readline())
        for line_no, line in enumerate(src, start=2):
            if line_no not in bad_rows:
                dst.write(line if line.endswith("\n") else line + "\n")
                kept.append(line_no)
    return out, np.asarray(kept, dtype=np.int64)


# -- batch validation ------------------------------------------------------------------------
# Validation runs on numpy and plain Python, not polars expressions: while the streaming parser
# keeps polars' thread pool busy, every small expression would queue behind it.
_LABEL_RE = re.compile(LABEL_RE)
_BITS = 1 << np.arange(10)


@functools.lru_cache(maxsize=4096)
def _parse_label(text: str) -> tuple[tuple[int, ...], int] | None:
    """``"[0, 3, 7]"`` -> ``((0, 3, 7), mask)``; None unless a sorted list of distinct digits."""
    if not _LABEL_RE.match(text):
        return None
    classes = tuple(int(c) for c in text[1:-1].split(", "))
    if any(b <= a for a, b in zip(classes, classes[1:], strict=False)):
        return None
    return classes, sum(1 << c for c in classes)


def _validate(batch: pl.DataFrame, rows: np.ndarray,
              arch: Architecture) -> tuple[pl.DataFrame, list[np.ndarray], list[BadRow]]:
    """Check a parsed batch whose records are the file's lines ``rows``; returns (metadata, weights, bad rows)."""
    weight_cols = arch.csv_columns()
    numeric = [*DIGITS, *ACTIVATIONS, "Accuracy", "epoch"]
    values = _columns_to_numpy(batch, numeric, np.float64)  # [n, 18]; a null becomes NaN
    labels = batch["label"].to_list()
    packed = batch[_WEIGHTS]
    # the rows as the scan's chunks hold them ([k, P] each, zero-copy unless a weight is null,
    # which becomes NaN): joining them would be a copy and fresh pages the writer's copy into
    # its chunk buffer makes anyway
    weights = [chunk.to_numpy() for chunk in packed.get_chunks()]

    parsed = [_parse_label(t) if t is not None else None for t in labels]
    mask = np.array([p[1] if p else -1 for p in parsed], dtype=np.int64)
    digits, acts, acc, epoch = values[:, :10], values[:, 10:16], values[:, 16], values[:, 17]
    onehot_ok = ((digits == 0) | (digits == 1)).all(axis=1)
    onehot = np.where(onehot_ok, ((digits == 1) * _BITS).sum(axis=1), -2)  # integer sums: no BLAS threads woken
    act_ok = ((acts == 0) | (acts == 1)).all(axis=1) & (acts.sum(axis=1) == 1)
    epoch_ok = np.isfinite(epoch) & (epoch >= 0) & (np.mod(epoch, 1) == 0)

    problems: list[BadRow] = []
    for i in np.flatnonzero(np.isnan(values).any(axis=1) | np.array([t is None for t in labels])):
        col = "label" if labels[i] is None else numeric[int(np.argmax(np.isnan(values[i])))]
        given_nan = col != "label" and batch.get_column(col)[int(i)] is not None  # a written 'nan', not a gap
        problems.append(BadRow(int(rows[i]), col, f"{col} is nan, not a number" if given_nan
                               else "missing value (truncated line or empty field)"))
    checks = [
        ("label", mask < 0, "malformed label: expected a sorted list of distinct digits like '[0, 3, 7]'"),
        ("0", ~onehot_ok, "digit one-hot values must be 0 or 1"),
        ("0", onehot_ok & (mask >= 0) & (onehot != mask), "label and digit one-hot columns disagree"),
        (ACTIVATIONS[0], ~act_ok, "activation one-hot must hold exactly one 1.0"),
        ("Accuracy", ~np.isfinite(acc), "accuracy is not a finite number"),
        # a percentage (spec, section 2): a fraction 0..1 would pass too, but so would nothing past 100
        ("Accuracy", np.isfinite(acc) & ((acc < 0) | (acc > 100)), "accuracy must be a percentage in 0..100"),
        ("epoch", ~epoch_ok, "epoch must be a non-negative integer"),
    ]
    for column, bad, reason in checks:
        for i in np.flatnonzero(bad):
            col = _first_onehot_mismatch(digits[i], int(mask[i])) if reason.startswith("label and digit") else column
            problems.append(BadRow(int(rows[i]), col, f"{reason} (label {labels[i]!r})"))
    for i, j, value in _non_finite(weights):
        missing = packed[i][j] is None
        problems.append(BadRow(int(rows[i]), weight_cols[j], "missing value (truncated line or empty field)"
                               if missing else f"weight is {value!r}, not a finite number"))

    act_idx = np.where(act_ok, acts.argmax(axis=1), 0)
    out = pl.DataFrame({
        "classes": _class_lists(mask),
        "class_mask": pl.Series(np.maximum(mask, 0), dtype=pl.Int32),
        "n_classes": pl.Series([len(p[0]) if p else 0 for p in parsed], dtype=pl.Int8),
        "activation": pl.Series(np.asarray(ACTIVATIONS, dtype=object)[act_idx], dtype=pl.String),
        "epoch": pl.Series(np.where(epoch_ok, epoch, 0).astype(np.int32)),
        "accuracy": pl.Series(acc, dtype=pl.Float64),
        "source_row": pl.Series(rows, dtype=pl.Int64),
    })
    return out, weights, sorted(problems, key=lambda b: b.row)


def _class_lists(mask: np.ndarray) -> pl.Series:
    """The class lists of each row's class mask (``[]`` for -1) as a ``List(Int8)`` Series.

    Built once per distinct mask (a zoo has at most 1,013) and gathered: building it from one
    Python list per row cost 0.5 s per 8,192-row batch.
    """
    distinct, inverse = np.unique(mask, return_inverse=True)
    lists = [[d for d in range(10) if m >= 0 and (int(m) >> d) & 1] for m in distinct]
    return pl.Series("classes", lists, dtype=pl.List(pl.Int8)).gather(inverse.reshape(-1))


def _non_finite(blocks: list[np.ndarray]) -> list[tuple[int, int, float]]:
    """``(row, first bad column, its value)`` of every row holding a NaN, an infinity or a missing
    weight; rows are counted through the ``[k, P]`` blocks in turn.

    A row holding a NaN or an infinity has a non-finite sum, so a clean block costs one float32
    sum per row (one numpy call, no temporaries); a sum that overflows only sends that row to
    the exact per-value check, which finds nothing.
    """
    out, start = [], 0
    for block in blocks:
        for i in non_finite_rows(block):
            j = int(np.flatnonzero(~np.isfinite(block[i]))[0])
            out.append((start + int(i), j, float(block[i, j])))
        start += len(block)
    return out


def _columns_to_numpy(batch: pl.DataFrame, columns: list[str], dtype: type) -> np.ndarray:
    """Columns as a column-major ``[rows, len(columns)]`` array, one column at a time (null -> NaN).

    ``DataFrame.to_numpy`` of many columns runs on polars' thread pool, where each call queues
    behind the streaming parser (0.5 s per batch); a Series converts on the calling thread
    (zero-copy when it holds no nulls) and the copy into place is a contiguous write.
    """
    out = np.empty((len(columns), batch.height), dtype=dtype)
    for j, name in enumerate(columns):
        series = batch.get_column(name)
        if series.null_count():
            out[j] = series.cast(pl.Float64).fill_null(float("nan")).to_numpy()
        else:
            out[j] = series.to_numpy()
    return out.T


def _first_onehot_mismatch(digits: np.ndarray, mask: int) -> str:
    for d in range(10):
        if int(digits[d]) != (mask >> d) & 1:
            return str(d)
    return "0"


# -- ingest -------------------------------------------------------------------------------------
def ingest_csv(lake_root: Path | str, path: Path | str, *, zoo: str, init: str, arch: Architecture = CNN_S,
               on_error: str = "abort", rejects_path: Path | str | None = None, batch_rows: int = 4096,
               codec: str = "none", progress: ProgressFn | None = None,
               allow_same_source: bool = False, dataset: str | None = None,
               epoch_bins: Sequence[int] | None = None) -> IngestReport:
    """Ingest a CSV zoo into ``zoo`` with initialisation ``init`` (the file does not say it).

    Parameters
    ----------
    on_error
        ``"abort"`` (default): the first bad row raises :class:`IngestError` and the lake is
        unchanged.  ``"skip"``: bad rows are left out and written to ``rejects_path``
        (default ``<file>.rejects.csv``) with row, column and reason.  Bad rows include an
        epoch outside ``epoch_bins`` and an accuracy in (0, 1] where the zoo's accuracies are
        percentages (see :mod:`weightlake.ingest.csv_checks`).
    batch_rows
        Rows parsed, checked and handed to the writer thread at a time (4,096: the pipeline
        fills and drains in half the time of 8,192-row batches, measured 10-20 % faster).
    progress
        Called with the number of bytes of the file consumed so far.
    allow_same_source
        Accept weight vectors the zoo already holds under another ``init`` (by default
        that is the same file ingested again under another ``--init``, and refused).
    dataset
        The image dataset the models were trained on (``"fashion-mnist"``, an IDX folder,
        or a name such as ``"mnist"``), recorded for the zoo: evaluation scores rebuilt
        CNNs on it.  The CSV does not say it; without it the zoo records none.
    epoch_bins
        The epochs the ``epoch`` column may hold (default: the CSV zoo's 11, 16, 21, 26, 31, 36).

    Returns
    -------
    IngestReport
    """
    if on_error not in ("abort", "skip"):
        raise IngestError(f"on_error must be 'abort' or 'skip', got {on_error!r}")
    options = dict(zoo=zoo, init=init, arch=arch, on_error=on_error, rejects_path=rejects_path, batch_rows=batch_rows,
                   codec=codec, progress=progress, allow_same_source=allow_same_source, dataset=dataset,
                   epoch_bins=epoch_bins)
    try:
        return _ingest_csv(lake_root, path, refused={}, **options)
    except _LateRejects as late:  # skip mode, rows refused only once the whole file was read: read it again
        return _ingest_csv(lake_root, path, refused=late.rows, **options)


class _LateRejects(Exception):  # noqa: N818 - not an error: a signal to read the file again
    """Rows found bad after the whole file was streamed (an accuracy of (0, 1] before the first percentage)."""

    def __init__(self, rows: dict[int, BadRow]) -> None:
        super().__init__(f"{len(rows)} rows refused late")
        self.rows = rows


def _ingest_csv(lake_root: Path | str, path: Path | str, *, zoo: str, init: str, arch: Architecture,
                on_error: str, rejects_path: Path | str | None, batch_rows: int, codec: str,
                progress: ProgressFn | None, allow_same_source: bool, dataset: str | None,
                epoch_bins: Sequence[int] | None, refused: dict[int, BadRow]) -> IngestReport:
    check_init(init)
    check_zoo_name(zoo)
    bins = parse_epoch_bins(epoch_bins)
    root, path = Path(lake_root), Path(path)
    check_input_file(path)
    if on_error == "skip":
        check_rejects_path(lake_root, rejects_path or f"{path}.rejects.csv")
    check_header(path, arch)
    started = time.perf_counter()
    report = IngestReport(zoo=zoo, source=str(path))
    fingerprint = file_fingerprint(path)
    with _gc_paused(), transaction(root) as tx, tempfile.TemporaryDirectory() as tmpdir:
        earlier = source_seen(tx.parent, zoo, fingerprint)
        elsewhere = sorted({f"{src['zoo']!r} (init {src.get('init')})" for src in tx.parent.sources
                            if src.get("fingerprint") == fingerprint and src.get("zoo") != zoo})
        if elsewhere:  # allowed (a scratch copy of a zoo), but a lake-wide count would see each model twice
            report.extra["this file is also ingested in zoo"] = [
                f"{z}: its models are in both zoos; queries over all zoos count them twice" for z in elsewhere]
        dataset = check_zoo_dataset(tx.parent, zoo, dataset)
        writer = ZooWriter(tx, zoo, arch, report, codec=codec, allow_same_source=allow_same_source)
        scale = AccuracyScale.of_zoo(str(path), zoo, zoo_accuracies(tx.parent, tx.store.location, zoo))
        rejects: list[BadRow] = []
        try:
            for meta, weights, bad in _batches(path, arch, batch_rows, on_error, tmpdir, progress):
                bad = _value_problems(meta, bad, bins, epoch_bins is not None, scale, refused)
                if bad:
                    if on_error == "abort":
                        b = bad[0]
                        raise IngestError(b.reason, path=str(path), row=b.row, column=b.column)
                    rejects += bad
                    keep = ~meta["source_row"].is_in([b.row for b in bad]).to_numpy()
                    meta, weights = meta.filter(pl.Series(keep)), take_rows(weights, keep)
                report.rows_read += meta.height + len({b.row for b in bad})
                writer.add(meta.with_columns(init=pl.lit(init), source_file=pl.lit(path.name)), weights)
            late = [BadRow(*p) for p in scale.late()]
            if late and on_error == "abort":
                b = late[0]
                raise IngestError(b.reason, path=str(path), row=b.row, column=b.column)
            if late:
                raise _LateRejects({b.row: b for b in late})
            _check_not_empty(path, report.rows_read, rejects, rejects_path)
            written = writer.finish()
            report.rows_rejected = len({b.row for b in rejects})
            if rejects:
                report.rejects_path = str(_write_rejects(rejects, rejects_path or f"{path}.rejects.csv", path))
            if written is None and earlier and not rejects:
                # same fingerprint and every row already present: the very same file again
                report.already_ingested = True
                report.extra["first ingested at snapshot"] = earlier.get("snapshot")
            elif written is not None:  # nothing new commits nothing: leaving uncommitted removes the empty segment
                tx.record_source({"zoo": zoo, "kind": "csv", "path": str(path.resolve()), "fingerprint": fingerprint,
                                  "rows": report.rows_read, "init": init, "dataset": dataset})
                manifest = tx.commit({"op": "ingest-csv", "zoo": zoo, "source": str(path),
                                      "summary": f"+{report.rows_added} models from {path.name}"})
                report.snapshot = manifest.version
        finally:
            writer.abort()
    report.seconds = time.perf_counter() - started
    return report


def _value_problems(meta: pl.DataFrame, bad: list[BadRow], bins: tuple[int, ...], bins_given: bool,
                    scale: AccuracyScale, refused: dict[int, BadRow]) -> list[BadRow]:
    """``bad`` plus the rows whose values parse but the zoo cannot take (:mod:`~weightlake.ingest.csv_checks`)
    and the rows ``refused`` by an earlier pass."""
    if not meta.height:
        return bad
    rows = meta["source_row"].to_numpy()
    more = [refused[int(r)] for r in rows if int(r) in refused] if refused else []
    ok = ~np.isin(rows, [b.row for b in bad + more])
    more += [BadRow(*p) for p in epoch_bin_problems(meta, ok, bins, bins_given)]
    ok &= ~np.isin(rows, [b.row for b in more])
    more += [BadRow(*p) for p in scale.problems(meta, ok)]
    return sorted(bad + more, key=lambda b: b.row) if more else bad


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Python's cycle collector off while batches stream (restored after, as it was found).

    Each batch makes tens of thousands of small tuples and lists, which triggers full
    collections over every object of the loaded libraries; nothing an ingest makes is cyclic.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _check_not_empty(path: Path, rows_read: int, rejects: list[BadRow], rejects_path: Path | str | None) -> None:
    """An ingest that would add nothing from a file with nothing usable is an error, not a success."""
    if rows_read == 0:
        raise IngestError("the file has a header but no data rows: nothing to ingest", path=str(path))
    rejected = {b.row for b in rejects}
    if len(rejected) == rows_read:
        where = _write_rejects(rejects, rejects_path or f"{path}.rejects.csv", path)
        first = min(rejects, key=lambda b: b.row)
        raise IngestError(f"--on-error skip rejected all {rows_read} rows, so nothing is committed (first: "
                          f"{first.reason}); every reject is listed in {str(where)!r}", path=str(path),
                          row=first.row, column=first.column)


def _batches(path: Path, arch: Architecture, batch_rows: int, on_error: str, tmpdir: str,
             progress: ProgressFn | None) -> Iterator[tuple[pl.DataFrame, list[np.ndarray], list[BadRow]]]:
    source, line_of = path, None
    bad_parse: list[BadRow] = []
    try:
        yield from _parse(source, arch, batch_rows, line_of, [], progress)
        return
    except pl.exceptions.PolarsError as exc:
        bad_parse = diagnose(path, arch, limit=1 if on_error == "abort" else None)
        if not bad_parse:
            raise IngestError(f"could not parse the file: {str(exc).splitlines()[0]}", path=str(path)) from exc
        if on_error == "abort":
            b = bad_parse[0]
            raise IngestError(b.reason, path=str(path), row=b.row, column=b.column) from None
    # skip mode after a parse failure: parse a copy without the unparseable lines
    source, line_of = _clean_copy(path, {b.row for b in bad_parse}, tmpdir)
    yield from _parse(source, arch, batch_rows, line_of, bad_parse, progress)


def _parse(source: Path, arch: Architecture, batch_rows: int, line_of: np.ndarray | None,
           first_bad: list[BadRow], progress: ProgressFn | None) -> Iterator[tuple[pl.DataFrame, list[np.ndarray], list[BadRow]]]:
    weight_cols = arch.csv_columns()
    # Batches come in file order, so a record's line is counted here (polars' own row index
    # costs 0.15-0.3 s of CPU on its threads for the zoo); the weight columns are packed into
    # rows by the scan itself, on polars' threads, for less CPU than stacking them in numpy.
    lf = (pl.scan_csv(source, schema=csv_schema(arch), has_header=True, glob=False)
          .select(pl.exclude(weight_cols), pl.concat_arr(weight_cols).alias(_WEIGHTS)))
    size = max(source.stat().st_size, 1)
    done_rows = 0
    pending = list(first_bad)
    for batch in lf.collect_batches(chunk_size=batch_rows):
        rows = np.arange(done_rows + 2, done_rows + 2 + batch.height, dtype=np.int64)  # line 1 is the header
        if line_of is not None:
            rows = line_of[rows - 2]
        meta, weights, bad = _validate(batch, rows, arch)
        if pending:
            bad, pending = sorted(bad + pending, key=lambda b: b.row), []
        done_rows += batch.height
        if progress is not None:
            progress(min(size, int(done_rows * size / max(_estimate_rows(source, size), done_rows))))
        yield meta, weights, bad
    if pending:  # every line was bad
        yield pl.DataFrame(schema={"source_row": pl.Int64}), [], pending


_ROW_ESTIMATE: dict[str, int] = {}


def _estimate_rows(path: Path, size: int) -> int:
    key = str(path)
    if key not in _ROW_ESTIMATE:
        with open(path, "rb") as fh:
            fh.readline()
            sample = fh.read(1 << 20)
        per_row = max(len(sample) // max(sample.count(b"\n"), 1), 1)
        _ROW_ESTIMATE[key] = max(size // per_row, 1)
    return _ROW_ESTIMATE[key]


def _write_rejects(rejects: list[BadRow], target: Path | str, source: Path) -> Path:
    target = Path(target)
    with open(target, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "row", "column", "reason"])
        seen: set[int] = set()
        for b in sorted(rejects, key=lambda r: r.row):
            if b.row not in seen:  # one line per rejected row: its first problem
                seen.add(b.row)
                w.writerow([str(source), b.row, b.column or "", b.reason])
    return target


# -- export --------------------------------------------------------------------------------------
def export_csv(lake: Any, out: Path | str, *, zoo: str | None = None, where: str | None = None,
               params: dict[str, Any] | None = None, batch_rows: int | None = None,
               progress: ProgressFn | None = None) -> int:
    """Write models (optionally filtered by a SQL ``where`` over ``models``) in the exact CSV zoo format.

    Returns the number of rows written.  Rows come out ordered by ``model_id``, gathered in
    batches of ``batch_rows`` (default: up to 4,096, fewer when the handle's memory budget
    asks for it: a batch's text and frame take about four times its weights).

    Raises
    ------
    QueryError
        When no model matches (nothing is written); the message says what the zoo holds.
        When the models hold several initialisations: the file cannot say which row has
        which, so it would read back as one init with every model repeated; the message
        names the inits and the ``where`` that picks one.
    """
    lake.check_output(out)
    zoo = zoo or lake._only_zoo()
    arch = lake.arch(zoo)
    sql = "SELECT model_id, init, classes, class_mask, activation, accuracy, epoch FROM models WHERE zoo = $zoo"
    if where:
        sql += f" AND ({where})"
    from weightlake.query import run_sql

    meta = run_sql(lake, sql + " ORDER BY model_id", {"zoo": zoo, **(params or {})})
    if meta.height == 0:
        raise QueryError(f"no models of zoo {zoo!r} match" + (f" --where {where!r}" if where else "")
                         + f", nothing written; {zoo_contents(lake, zoo)}")
    check_csv_fields(meta, zoo)
    check_one_init(meta, zoo, where)
    batch_rows = batch_rows or max(1, min(4096, lake.block_rows(zoo) // 4))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)  # as `export safetensors` makes its folder
    tmp = out.with_name(f".{out.name}.partial")
    names = csv_columns(arch)
    try:
        with open(tmp, "wb") as fh:
            fh.write((",".join(f'"{n}"' if "," in n else n for n in names) + "\n").encode())
            for start in range(0, meta.height, batch_rows):
                part = meta.slice(start, batch_rows)
                weights = lake.weights_numpy(part["model_id"].to_numpy())
                _frame(part, weights, arch).write_csv(fh, include_header=False, float_precision=None)
                if progress is not None:
                    progress(part.height)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no half-written file left beside the output
        raise
    return meta.height


def check_csv_fields(meta: pl.DataFrame, zoo: str) -> None:
    """Refuse models a CSV zoo row cannot hold: no class set (a Model Zoos tree records none),
    or an activation without a one-hot column.  (A null accuracy is written as an empty field.)

    Raises
    ------
    QueryError
        Naming each missing field with its model count and an example model, and how to
        export them instead (safetensors) or leave them out.
    """
    gaps = [("no class set (classes is null)", pl.col("classes").is_null() | (pl.col("classes").list.len() == 0),
             "classes IS NOT NULL"),
            (f"an activation outside {list(ACTIVATIONS)}", ~pl.col("activation").is_in(ACTIVATIONS).fill_null(False),
             f"activation IN ({', '.join(repr(a) for a in ACTIVATIONS)})")]
    found, keep = [], []
    for what, bad, fix in gaps:
        ids = meta.filter(bad)["model_id"]
        if ids.len():
            found.append(f"{ids.len()} have {what}, e.g. model {ids[0]}")
            keep.append(fix)
    if found:
        raise QueryError(f"of the {meta.height} models of zoo {zoo!r} to export, {'; '.join(found)}: a CSV zoo row "
                         "needs a label and one of its activations; export them with `weightlake export "
                         f"safetensors`, or leave them out with --where \"{' AND '.join(keep)}\"; nothing written")


def check_one_init(meta: pl.DataFrame, zoo: str, where: str | None) -> None:
    """Refuse to write models of several initialisations into one CSV zoo file.

    The format has no initialisation column (spec section 2: one file per init,
    ``Merged_zoo_{init}.csv``), so such a file would read back as one init holding every
    (label, activation, epoch) several times.

    Raises
    ------
    QueryError
        Naming each init with its model count, and the ``--where`` that exports one.
    """
    counts = meta.group_by("init").len().sort("init", nulls_last=True)
    if counts.height < 2:
        return
    found = ", ".join(f"{init!r} ({n} models)" if init is not None else f"none recorded ({n} models)"
                      for init, n in counts.rows())
    first = counts["init"][0]
    pick = f"init = '{first}'" if first is not None else "init IS NULL"
    hint = f"({where}) AND {pick}" if where else pick
    raise QueryError(f"the models of zoo {zoo!r} to export hold {counts.height} initialisations: {found}; a CSV "
                     "zoo file cannot record the initialisation, so they would read back as one init with every "
                     f"(label, activation, epoch) repeated; export one init per file (e.g. Merged_zoo_{first}.csv) "
                     f"with --where \"{hint}\"; nothing written")


def zoo_contents(lake: Any, zoo: str) -> str:
    """One line saying what a zoo holds: model count, inits, activations, epochs, subset sizes."""
    from weightlake.query import run_sql

    row = run_sql(lake, "SELECT count(*) AS n, list(DISTINCT init ORDER BY init) AS inits, "
                  "list(DISTINCT activation ORDER BY activation) AS activations, "
                  "list(DISTINCT epoch ORDER BY epoch) AS epochs, list(DISTINCT n_classes ORDER BY n_classes) AS sizes "
                  "FROM models WHERE zoo = $zoo", {"zoo": zoo}).row(0, named=True)
    return (f"the zoo holds {row['n']} models; inits in this zoo: {row['inits']}; activations: {row['activations']}; "
            f"epochs: {row['epochs']}; classes per model: {row['sizes']}")


def _frame(meta: pl.DataFrame, weights: np.ndarray, arch: Architecture) -> pl.DataFrame:
    mask = meta["class_mask"].to_numpy()
    act = meta["activation"].to_list()
    cols: dict[str, Any] = {"label": [("[" + ", ".join(str(c) for c in cl) + "]") for cl in meta["classes"].to_list()]}
    for d in range(10):
        cols[str(d)] = pl.Series(((mask >> d) & 1).astype(np.int64))
    for a in ACTIVATIONS:
        cols[a] = pl.Series([1.0 if x == a else 0.0 for x in act], dtype=pl.Float64)
    frame = pl.DataFrame(cols)
    wdf = pl.from_numpy(weights, schema=arch.csv_columns(), orient="row")
    tail = pl.DataFrame({"Accuracy": meta["accuracy"].cast(pl.Float64), "epoch": meta["epoch"].cast(pl.Int64)})
    return pl.concat([frame, wdf, tail], how="horizontal")
