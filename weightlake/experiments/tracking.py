"""Tracking CSVs: the user's per-pair GT / PD / FN weight files, into the lake and evaluated.

The user's training code writes, per test pair, the ground-truth target vector (GT),
the merging model's prediction (PD) and the prediction after a few epochs of
fine-tuning on real data (FN), with pandas, into files like
``Experiments/<run>/<loss>/Tracking/AE epoch <loss> <epoch>.csv``.

The layout read here (and written by :func:`write_tracking_csv`), one row per pair:

=======================================  ==================================================
header                                   content
=======================================  ==================================================
empty (pandas' index) or ``Unnamed: 0``  the row's index; optional (else rows count from 0)
any other names                          metric / info columns (``Loss``, ``W Distance``,
                                         a pair record...), numbers or text, any order
``weight 0`` ... ``weight {P-1}``        GT; ``bias i`` is accepted at bias positions
``Pred weight 0`` ...                    PD (also ``Predicted`` / ``PD`` prefixes)
``FN weight 0`` ...                      FN (also ``Finetuned`` / ``Fine-tuned`` / ``FT``)
``Step 0`` ... ``Step {K}``              dynamic: one column per fine-tuning step; their
                                         number differs between files, and rows written
                                         before a step existed leave it empty
=======================================  ==================================================

* Blocks may appear in any order, their columns in any order; each present block must
  hold every flat index ``0..P-1`` exactly once, with ``P`` the architecture's size.
  Any of the three blocks may be missing; comparisons that need it are then left out.
* A header name that repeats is read as pandas reads it: the second ``Accuracy`` is
  ``Accuracy.1``, the third ``Accuracy.2``.  A repeated *weight* name is refused
  (which of the two vectors is meant cannot be known).
* A weight prefix other than those above is refused, naming it, rather than guessed.

:func:`ingest_tracking` streams a file with polars in row chunks and commits, in one
snapshot per call:

* ``predictions`` (partitioned by ``source_id``): one row per (file row, kind) with
  ``source_file``, ``row``, ``kind`` (GT/PD/FN), ``step`` (the merging model's epoch from
  the file name) and ``array`` / ``array_row``.  The vectors are one Zarr array per file
  owned by the table (``tx.new_array_path``), not a fixed-size list column: 2,464
  float32 per vector (10 KB) times three kinds times ~11,000 test pairs is ~330 MB per
  file, which the lake already stores and reads best as chunked float32 rows (the zoo
  segments' raw read path); the Parquet side stays a small, SQL-friendly table.
* ``tracking_values`` (same partitions): the metric, info and ``Step N`` cells, long:
  ``row``, ``column`` (as read, duplicates renamed), ``position``, ``value`` (numbers),
  ``text`` (cells that are not numbers), ``step`` (N for ``Step N`` columns).
* ``evaluations`` / ``evaluation_metrics``: PD vs GT, FN vs GT and PD vs FN, the same
  metrics, collapse and variety statistics as checkpoints get
  (:mod:`weightlake.experiments.evaluate`), with ``source_kind = 'tracking'``.

Round-trip law (tested): for vectors written by :func:`write_tracking_csv`,
``load_predictions(lake, source_file=f, kind=k)`` returns them bitwise (float32 values
are printed in their shortest round-tripping form).
"""

from __future__ import annotations

import csv
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from weightlake.arch import CNN_S, Architecture
from weightlake.errors import IngestError, QueryError
from weightlake.experiments.evaluate import (
    COMPARISONS,
    PREDICTIONS,
    compare,
    long_metrics,
    source_id,
    stage_evaluations,
    stage_predictions,
    summarise,
    variety,
)

if TYPE_CHECKING:
    from weightlake.storage.transaction import Transaction

KINDS: tuple[str, ...] = ("GT", "PD", "FN")
"""Vector kinds, in the order their blocks are written and stored."""

PREFIXES: dict[str, str] = {
    "": "GT", "gt": "GT", "true": "GT", "target": "GT", "ground truth": "GT",
    "pred": "PD", "predicted": "PD", "prediction": "PD", "pd": "PD",
    "fn": "FN", "finetuned": "FN", "fine tuned": "FN", "ft": "FN",
}
"""Weight-column prefixes (lower case, separators as spaces) -> kind."""

WRITE_PREFIXES: dict[str, str] = {"GT": "", "PD": "Pred ", "FN": "FN "}
"""Prefixes :func:`write_tracking_csv` writes, as the user's code does."""

TRACKING_VALUES = "tracking_values"
CHUNK_ROWS = 2048

_WEIGHT = re.compile(r"^(?P<prefix>.*?)[\s_]*\b(?P<word>weight|bias)[\s_]*(?P<index>\d+)$", re.I)
_STEP = re.compile(r"^step[\s_]*(?P<n>\d+)$", re.I)
_INDEX_NAMES = ("", "unnamed: 0", "index")


# -- layout --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrackingLayout:
    """What a tracking CSV's header says: column names as read and what each holds."""

    columns: tuple[str, ...]
    """Every column name, duplicates renamed the pandas way (``Accuracy.1``)."""
    index_column: str | None
    blocks: dict[str, tuple[str, ...]]
    """Kind -> its column names in flat-index order."""
    steps: tuple[tuple[int, str], ...]
    """``(N, column)`` of the ``Step N`` columns, by N."""
    values: tuple[str, ...]
    """Metric and info columns."""
    duplicates: tuple[str, ...]
    """Header names that appear more than once."""

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k in KINDS if k in self.blocks)


def read_tracking_layout(path: str | Path, arch: Architecture = CNN_S) -> TrackingLayout:
    """Read and check a tracking CSV's header.

    Raises
    ------
    IngestError
        No header, no weight block, a block missing or repeating flat indices, a
        repeated weight column, or an unknown weight prefix; the message names the file
        and the columns.
    """
    path = Path(path)
    raw = _header(path)
    columns, duplicates = _dedupe(raw)
    index_column = columns[0] if raw[0].strip().lower() in _INDEX_NAMES else None
    found: dict[str, dict[int, str]] = {}
    steps, values = [], []
    for position, (name, original) in enumerate(zip(columns, raw, strict=True)):
        if name == index_column:
            continue
        weight, step = _WEIGHT.match(original.strip()), _STEP.match(original.strip())
        if weight:
            _add_weight(found, weight, name, original, position, duplicates, path)
        elif step:
            steps.append((int(step.group("n")), name))
        else:
            values.append(name)
    blocks = {kind: _check_block(found[kind], kind, arch.n_params, path) for kind in KINDS if kind in found}
    if not blocks:
        raise IngestError("no weight columns: expected 'weight i' (GT), 'Pred weight i' (PD) or 'FN weight i' (FN) "
                          "headers", path=str(path))
    return TrackingLayout(tuple(columns), index_column, blocks, tuple(sorted(steps)), tuple(values), duplicates)


def _header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), None)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise IngestError(f"cannot read the header: {exc}", path=str(path)) from exc
    if not header:
        raise IngestError("the file is empty or has no header line", path=str(path))
    return header


def _dedupe(names: Sequence[str]) -> tuple[list[str], tuple[str, ...]]:
    """Rename repeats as pandas does (``a``, ``a.1``, ``a.2``), skipping names already taken."""
    taken, counts, out = set(names), {}, []
    for name in names:
        if name not in counts:
            counts[name] = 0
            out.append(name)
            continue
        new = name
        while new in taken:
            counts[name] += 1
            new = f"{name}.{counts[name]}"
        taken.add(new)
        out.append(new)
    return out, tuple(sorted(n for n, c in counts.items() if c))


def _add_weight(found: dict[str, dict[int, str]], match: re.Match[str], name: str, original: str, position: int,
                duplicates: tuple[str, ...], path: Path) -> None:
    prefix = re.sub(r"[\s_\-]+", " ", match.group("prefix")).strip().lower()
    kind = PREFIXES.get(prefix)
    if kind is None:
        raise IngestError(f"unknown weight block prefix {match.group('prefix').strip()!r}; known prefixes: "
                          f"{sorted(p for p in PREFIXES if p)} (or none for GT)", path=str(path), column=original)
    if original in duplicates:
        raise IngestError("this weight column appears more than once: which vector it belongs to is ambiguous; "
                          "remove or rename the repeats", path=str(path), column=original)
    found.setdefault(kind, {})[int(match.group("index"))] = name


def _check_block(columns: Mapping[int, str], kind: str, n_values: int, path: Path) -> tuple[str, ...]:
    missing = sorted(set(range(n_values)) - set(columns))
    extra = sorted(i for i in columns if i >= n_values)
    if missing or extra:
        detail = (f"missing flat indices {_ranges(missing)}" if missing else "") + \
                 (f"{'; ' if missing else ''}indices past {n_values - 1}: {_ranges(extra)}" if extra else "")
        raise IngestError(f"the {kind} weight block must hold indices 0..{n_values - 1} once each: {detail} "
                          "(is it another architecture? pass --arch, or arch= in Python)", path=str(path))
    return tuple(columns[i] for i in range(n_values))


def _ranges(values: Sequence[int], limit: int = 4) -> str:
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:limit])
    return text + (", ..." if len(runs) > limit else "")


# -- writing -------------------------------------------------------------------------------------
def write_tracking_csv(
    path: str | Path,
    gt: np.ndarray | None,
    pd: np.ndarray | None = None,
    fn: np.ndarray | None = None,
    *,
    values: Sequence[tuple[str, Sequence[Any]]] = (),
    steps: np.ndarray | None = None,
    index: bool | Sequence[int] = True,
) -> Path:
    """Write a tracking CSV in the user's layout (see the module docstring).

    Parameters
    ----------
    path
        The file to write (folders are created).
    gt, pd, fn
        ``[n, P]`` vectors of each kind (None leaves the block out); stored as float32.
    values
        ``(name, values [n])`` metric / info columns, written in this order between the
        index and the weights; a name may repeat (a duplicated header, as in the user's
        files).
    steps
        ``[n, K]`` numbers for ``Step 0`` ... ``Step K-1``; NaN cells are written empty.
    index
        True: pandas' unnamed index ``0..n-1`` first; a sequence: those index values;
        False: no index column.

    Returns
    -------
    Path
    """
    path = Path(path)
    blocks = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in zip(KINDS, (gt, pd, fn), strict=True)
              if v is not None}
    n = _row_count(blocks, values, steps)
    headers: list[str] = []
    parts: list[pl.DataFrame] = []
    if index is not False:
        rows = np.arange(n) if index is True else np.asarray(index, dtype=np.int64)
        _append(headers, parts, [""], pl.DataFrame({"c": rows}))
    for name, column in values:
        _append(headers, parts, [name], pl.DataFrame({"c": pl.Series(list(column), strict=False)}))
    for kind, block in blocks.items():
        names = [f"{WRITE_PREFIXES[kind]}weight {i}" for i in range(block.shape[1])]
        _append(headers, parts, names, pl.from_numpy(block, orient="row"))
    if steps is not None:
        step_frame = pl.from_numpy(np.asarray(steps, dtype=np.float64), orient="row").fill_nan(None)
        _append(headers, parts, [f"Step {i}" for i in range(step_frame.width)], step_frame)
    _write(path, headers, parts)
    return path


def _row_count(blocks: Mapping[str, np.ndarray], values: Sequence[tuple[str, Sequence[Any]]],
               steps: np.ndarray | None) -> int:
    sizes = {v.shape[0] for v in blocks.values()} | {len(c) for _, c in values}
    if steps is not None:
        sizes.add(len(steps))
    if len(sizes) != 1:
        raise QueryError(f"every block, value column and the steps need the same number of rows, got {sorted(sizes)}")
    return sizes.pop()


def _append(headers: list[str], parts: list[pl.DataFrame], names: list[str], frame: pl.DataFrame) -> None:
    start = sum(p.width for p in parts)
    headers += names
    parts.append(frame.rename({old: f"c{start + i}" for i, old in enumerate(frame.columns)}))


def _write(path: Path, headers: list[str], parts: list[pl.DataFrame]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerow(headers)
        pl.concat(parts, how="horizontal").write_csv(fh, include_header=False)
    os.replace(tmp, path)


# -- reading -------------------------------------------------------------------------------------
@dataclass
class TrackingChunk:
    """Rows ``[start, start + n)`` of a tracking file, decoded."""

    rows: np.ndarray
    blocks: dict[str, np.ndarray]
    values: pl.DataFrame
    """Long: ``row``, ``column``, ``position``, ``value``, ``text``, ``step``."""


def read_tracking(path: str | Path, arch: Architecture = CNN_S, *, chunk_rows: int = CHUNK_ROWS,
                  layout: TrackingLayout | None = None) -> Iterator[TrackingChunk]:
    """Stream a tracking CSV in chunks of ``chunk_rows`` rows (polars' streaming CSV reader).

    Raises
    ------
    IngestError
        Bad header (see :func:`read_tracking_layout`), or a cell of a weight, step or
        index column that is not a number (the message quotes polars' location).
    """
    path = Path(path)
    layout = layout or read_tracking_layout(path, arch)
    schema: dict[str, Any] = {c: pl.String for c in layout.columns}
    schema.update({c: pl.Float32 for cols in layout.blocks.values() for c in cols})
    schema.update({c: pl.Float64 for _, c in layout.steps})
    if layout.index_column is not None:
        schema[layout.index_column] = pl.Int64
    lf = pl.scan_csv(path, new_columns=list(layout.columns), schema_overrides=schema, infer_schema=False,
                     glob=False)  # a user folder named "overlapping 0 [0, 1, 2] 11 gelu" is no pattern
    positions = {c: i for i, c in enumerate(layout.columns)}
    start = 0
    try:
        for frame in lf.collect_batches(chunk_size=chunk_rows):
            yield _decode(frame, layout, positions, start)
            start += frame.height
    except pl.exceptions.PolarsError as exc:
        raise IngestError(f"cannot parse the file as a tracking CSV: {str(exc).splitlines()[0]}",
                          path=str(path)) from exc


def _decode(frame: pl.DataFrame, layout: TrackingLayout, positions: Mapping[str, int], start: int) -> TrackingChunk:
    rows = (frame[layout.index_column].to_numpy().astype(np.int64) if layout.index_column is not None
            else np.arange(start, start + frame.height, dtype=np.int64))
    # one column at a time into a row-major block: several times faster than DataFrame.to_numpy on 2,464 columns
    blocks = {k: np.stack([frame.get_column(c).to_numpy() for c in cols], axis=1).astype(np.float32, copy=False)
              for k, cols in layout.blocks.items()}
    frame = frame.with_columns(pl.Series("__row", rows))
    parts = []
    if layout.values:
        parts.append(frame.select("__row", *layout.values)
                     .unpivot(index="__row", variable_name="column", value_name="text")
                     .with_columns(value=pl.col("text").str.strip_chars().cast(pl.Float64, strict=False),
                                   step=pl.lit(None, dtype=pl.Int32)))
    if layout.steps:
        step_of = {c: n for n, c in layout.steps}
        parts.append(frame.select("__row", *step_of)
                     .unpivot(index="__row", variable_name="column", value_name="value")
                     .drop_nulls("value")
                     .with_columns(text=pl.lit(None, dtype=pl.String),
                                   step=pl.col("column").replace_strict(step_of, return_dtype=pl.Int32)))
    values = pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()
    if values.height:
        values = values.select(
            row=pl.col("__row"), column="column",
            position=pl.col("column").replace_strict(dict(positions), return_dtype=pl.Int32),
            value="value", text=pl.when(pl.col("value").is_null()).then(pl.col("text")), step="step")
    return TrackingChunk(rows, blocks, values)


# -- ingesting -----------------------------------------------------------------------------------
@dataclass
class TrackingReport:
    """What :func:`ingest_tracking` did with one file."""

    source: str
    source_id: str = ""
    label: str = ""
    rows: int = 0
    kinds: tuple[str, ...] = ()
    value_columns: tuple[str, ...] = ()
    steps: int = 0
    duplicates: tuple[str, ...] = ()
    nonfinite_rows: dict[str, int] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    read_seconds: float = 0.0
    metric_seconds: float = 0.0
    snapshot: int | None = None
    replaced: bool = False
    """The lake held this file already (same resolved path): its earlier rows were replaced."""

    def lines(self) -> list[str]:
        if self.error:
            return [f"{self.label or self.source}: SKIPPED {self.error}"]
        ev = self.evaluation
        out = [f"{self.label}: {self.rows:,} rows, blocks {'/'.join(self.kinds)}, {len(self.value_columns)} value "
               f"columns, {self.steps} step columns ({self.read_seconds:.1f} s read, {self.metric_seconds:.1f} s "
               "metrics)"]
        if self.duplicates:
            out.append(f"  repeated header names read pandas' way (name.1, ...): {list(self.duplicates)}")
        for kind, n in self.nonfinite_rows.items():
            out.append(f"  {n} {kind} rows hold empty or non-finite cells (metrics on them are NaN)")
        parts = [f"{p}_w1 {ev[f'{p}_w1']:.4g}" for p in COMPARISONS if isinstance(ev.get(f"{p}_w1"), float)]
        if parts:
            flag = "  PD COLLAPSED" if ev.get("collapsed") else ""
            if ev.get("pd_partial_collapse"):
                flag = f"  PD PARTIAL COLLAPSE ({ev.get('pd_top_row_share', float('nan')):.0%} of rows one vector)"
            out.append("  " + "  ".join(parts) + flag)
        if self.replaced:
            out.append("  ingested before: its earlier vectors, cells and evaluation rows (same scenario) were "
                       "replaced, not added to")
        if self.snapshot is not None:
            out.append(f"  committed as snapshot {self.snapshot}")
        return out


def find_tracking_csvs(path: str | Path) -> list[Path]:
    """A file itself, or a folder's tracking CSVs (``.csv`` under a ``Tracking`` folder, the given
    folder included, or named ``*track*``), hidden folders skipped, sorted."""
    from weightlake.experiments.scan import TRACKING_FOLDER

    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise IngestError("no such tracking CSV or folder", path=str(path))
    found = []
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = [p.lower() for p in (path.name, *Path(folder).relative_to(path).parts)]
        found += [Path(folder) / f for f in sorted(files) if f.lower().endswith(".csv")
                  and (TRACKING_FOLDER in rel or "track" in Path(f).stem.lower())]
    return found


def ingest_tracking(
    lake_root: str | Path,
    paths: str | Path | Iterable[str | Path],
    *,
    scenario: str = "tracking",
    arch: Architecture | None = None,
    chunk_rows: int = CHUNK_ROWS,
    evaluate: bool = True,
    metrics: list[str] | None = None,
    include_slow: bool = False,
    on_error: str = "abort",
    progress: Callable[[int, int, str], Any] | None = None,
) -> list[TrackingReport]:
    """Ingest tracking CSVs (files or folders of them) and evaluate them; one commit.

    Parameters
    ----------
    lake_root
        The lake (created by the commit if needed: tracking files carry their own GT, no zoo is read).
    paths
        Files, or folders searched with :func:`find_tracking_csvs`.
    scenario
        The ``evaluations`` partition the rows go to (a name like ``type1-m0``).
    arch
        Architecture of the vectors (fixes ``P``).  Default: the architecture of ``scenario``'s zoo
        when the lake declares that scenario, else of the lake's zoos when they share one, else
        CNN-s (a lake of several architectures with no such scenario is refused: say which).
    chunk_rows
        Rows per streamed chunk.
    evaluate
        Compute PD vs GT, FN vs GT, PD vs FN into ``evaluations`` / ``evaluation_metrics``.
    metrics, include_slow
        As :func:`~weightlake.analysis.metrics.compute_all`.
    on_error
        ``"abort"``: a bad file raises and nothing is committed; ``"skip"``: it is
        reported (``error``) and the others are committed.
    progress
        Called as ``progress(done, total, file)`` after each file.

    Returns
    -------
    list of TrackingReport, one per file.
    """
    from weightlake.scenarios import parse_scenario_name
    from weightlake.storage.transaction import transaction

    parse_scenario_name(scenario)
    if on_error not in ("abort", "skip"):
        raise QueryError(f"on_error must be 'abort' or 'skip', got {on_error!r}")
    files = _labelled_files(paths)
    if not files:
        raise IngestError(f"no tracking CSVs under {', '.join(map(str, _as_list(paths)))}: a tracking CSV is a .csv "
                          "file in a folder named Tracking, or named *track*")
    arch = arch or tracking_arch(lake_root, scenario)
    reports: list[TrackingReport] = []  # (a new lake is created by the commit: a refusal leaves none)
    with transaction(Path(lake_root)) as tx:
        rows: list[dict[str, Any]] = []
        long_rows: list[dict[str, Any]] = []
        for done, (label, path) in enumerate(files, 1):
            try:
                report, row, longs = _ingest_one(tx, path, label, scenario, arch, chunk_rows, evaluate, metrics,
                                                 include_slow)
            except IngestError as exc:
                if on_error == "abort":
                    raise
                report, row, longs = TrackingReport(str(path), label=label, error=str(exc)), None, []
            reports.append(report)
            rows += [row] if row else []
            long_rows += longs
            if progress is not None:
                progress(done, len(files), label)
        if all(r.error for r in reports):  # --on-error skip left nothing: commit nothing
            raise IngestError(f"every one of the {len(reports)} tracking files failed, nothing committed; first: "
                              f"{reports[0].error}")
        stage_evaluations(tx, rows, long_rows)
        if tx.changed:
            version = tx.commit({"op": "ingest_tracking",
                                 "summary": f"ingested {len(rows)} tracking files into scenario {scenario}"}).version
            for report in reports:
                report.snapshot = None if report.error else version
    return reports


def _as_list(paths: str | Path | Iterable[str | Path]) -> list[str | Path]:
    return [paths] if isinstance(paths, (str, Path)) else list(paths)


def _labelled_files(paths: str | Path | Iterable[str | Path]) -> list[tuple[str, Path]]:
    items = _as_list(paths)
    out, seen = [], set()
    for item in items:
        item = Path(item)
        for f in find_tracking_csvs(item):
            if f.resolve() in seen:  # a file named twice (itself and its folder) is one source, ingested once
                continue
            seen.add(f.resolve())
            out.append((f.relative_to(item).as_posix() if item.is_dir() else "/".join(f.parts[-3:]), f))
    return out


def tracking_arch(lake_root: str | Path, scenario: str) -> Architecture:
    """The architecture tracking CSVs of ``scenario`` are read with when none is given (see
    :func:`ingest_tracking`): the scenario's zoo's, the lake's only one, or CNN-s for a new lake."""
    from weightlake.errors import LakeNotFoundError
    from weightlake.lake import open_lake
    from weightlake.scenarios import list_scenarios

    try:
        lake = open_lake(lake_root)
    except LakeNotFoundError:
        return CNN_S
    held = list_scenarios(lake).filter(pl.col("scenario") == scenario)["zoo"].drop_nulls().unique().to_list()
    if len(held) == 1 and held[0] in lake.manifest.zoos:
        return lake.arch(held[0])
    names = sorted({e.arch["name"] for e in lake.manifest.zoos.values()})
    if len(names) > 1:
        raise IngestError(f"the lake holds zoos of architectures {names} and declares no scenario {scenario!r} to "
                          "take one from: pass --arch (a built-in name or an architecture JSON file)")
    return lake.arch() if names else CNN_S


def _ingest_one(tx: Transaction, path: Path, label: str, scenario: str, arch: Architecture, chunk_rows: int,
                evaluate: bool, metrics: list[str] | None,
                include_slow: bool) -> tuple[TrackingReport, dict[str, Any] | None, list[dict[str, Any]]]:
    from weightlake.experiments.infer import parse_checkpoint_name

    started = time.perf_counter()
    layout = read_tracking_layout(path, arch)
    resolved = str(path.resolve())
    sid = source_id(resolved)
    name = parse_checkpoint_name(path.stem)
    report = TrackingReport(resolved, sid, label, kinds=layout.kinds, value_columns=layout.values,
                            steps=len(layout.steps), duplicates=layout.duplicates, replaced=_held(tx, sid))
    vectors, rows = _stream(tx, path, layout, arch, chunk_rows, sid, name)
    report.rows = len(rows)
    report.nonfinite_rows = {k: int((~np.isfinite(v).all(1)).sum()) for k, v in vectors.items()
                             if not np.isfinite(v).all()}
    report.read_seconds = time.perf_counter() - started
    if not evaluate:
        return report, None, []
    started = time.perf_counter()
    row, columns = _evaluate(vectors, arch, metrics, include_slow)
    row.update(scenario=scenario, split=None, source_kind="tracking", checkpoint=label, checkpoint_path=resolved,
               source_id=sid, loss=name["loss"], track=name["track"], epoch=name["epoch"], n_pairs=len(rows),
               evaluated_at=datetime.now(UTC).isoformat(timespec="seconds"))
    report.metric_seconds = time.perf_counter() - started
    row["pairs_per_s"] = len(rows) / max(report.read_seconds + report.metric_seconds, 1e-9)
    report.evaluation = row
    key = {k: row[k] for k in ("scenario", "split", "source_kind", "checkpoint_path", "checkpoint", "loss", "epoch")}
    return report, row, [{**key, **r} for r in long_metrics(columns, arch)]


def _held(tx: Transaction, sid: str) -> bool:
    """Whether the parent snapshot holds vectors of source ``sid`` (a re-run replaces them)."""
    entry = tx.parent.tables.get(PREDICTIONS)
    return entry is not None and any(f.startswith(f"tables/{PREDICTIONS}/source_id={sid}/") for f in entry.files)


def _stream(tx: Transaction, path: Path, layout: TrackingLayout, arch: Architecture, chunk_rows: int, sid: str,
            name: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Write the file's vectors into a new Zarr array and its cells into staged tables."""
    from weightlake.storage.tensors import SegmentWriter

    array = tx.new_array_path("predictions", sid)
    writer = SegmentWriter(array, arch.n_params)
    kept: dict[str, list[np.ndarray]] = {k: [] for k in layout.kinds}
    metas, cells, all_rows = [], [], []
    at = 0  # rows appended so far: GT, PD, FN blocks of each chunk follow one another
    for chunk in read_tracking(path, arch, chunk_rows=chunk_rows, layout=layout):
        n = len(chunk.rows)
        for kind in layout.kinds:
            metas.append(pl.DataFrame({"row": chunk.rows, "kind": kind, "array_row": np.arange(at, at + n)}))
            writer.append(chunk.blocks[kind])
            at += n
            kept[kind].append(chunk.blocks[kind])
        cells.append(chunk.values)
        all_rows.append(chunk.rows)
    writer.close()
    rows = np.concatenate(all_rows) if all_rows else np.empty(0, dtype=np.int64)
    meta = pl.concat(metas) if metas else pl.DataFrame(schema={"row": pl.Int64, "kind": pl.String,
                                                                "array_row": pl.Int64})
    meta = meta.with_columns(source_kind=pl.lit("tracking"), source_file=pl.lit(str(path.resolve())),
                             step=pl.lit(name["epoch"]), loss=pl.lit(name["loss"]))
    stage_predictions(tx, sid, meta, array)
    _stage_values(tx, sid, str(path.resolve()), [c for c in cells if c.height])
    vectors = {k: np.concatenate(v) if v else np.empty((0, arch.n_params), np.float32) for k, v in kept.items()}
    return vectors, rows


def _stage_values(tx: Transaction, sid: str, source_file: str, cells: list[pl.DataFrame]) -> None:
    schema = {"row": pl.Int64, "column": pl.String, "position": pl.Int32, "value": pl.Float64, "text": pl.String,
              "step": pl.Int32}
    frame = pl.concat(cells, how="diagonal_relaxed") if cells else pl.DataFrame(schema=schema)
    frame = frame.select([pl.col(c).cast(t) for c, t in schema.items()]).with_columns(
        source_id=pl.lit(sid), source_file=pl.lit(source_file))
    tx.drop_table_files(TRACKING_VALUES, lambda f: f.startswith(f"tables/{TRACKING_VALUES}/source_id={sid}/"))
    if frame.height:
        tx.put_table(TRACKING_VALUES, frame, partition_by=("source_id",), properties={"partition_by": ["source_id"]})


def _evaluate(vectors: Mapping[str, np.ndarray], arch: Architecture, metrics: list[str] | None,
              include_slow: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """PD vs GT, FN vs GT, PD vs FN: means, collapse and variety; absent blocks leave their columns out."""
    row: dict[str, Any] = {}
    columns: dict[str, np.ndarray] = {}
    groups = _same_rows(vectors["GT"]) if "GT" in vectors else None
    for prefix, (pred_kind, ref_kind) in COMPARISONS.items():
        if pred_kind not in vectors or ref_kind not in vectors or not len(vectors[pred_kind]):
            row[f"{prefix}_note"] = f"no {pred_kind if pred_kind not in vectors else ref_kind} block in the file"
            continue
        cols = compare(vectors[pred_kind], vectors[ref_kind], prefix, arch=arch, metrics=metrics,
                       include_slow=include_slow)
        columns.update(cols)
        row.update(summarise(cols))
        if prefix != "pdfn":
            row.update(variety(vectors[pred_kind], vectors[ref_kind], prefix, groups))
        else:
            from weightlake.analysis.collapse import across_rows_pearson

            stat = across_rows_pearson(vectors["PD"], vectors["FN"])
            row.update(pdfn_across_rows_pearson=stat.value, pdfn_across_rows_pearson_reason=stat.reason or None)
    return row, columns


def _same_rows(rows: np.ndarray) -> np.ndarray:
    """Group labels of identical rows (rows of one target model share a GT vector)."""
    keys = np.fromiter((hash(r.tobytes()) for r in np.ascontiguousarray(rows)), dtype=np.int64, count=len(rows))
    return np.unique(keys, return_inverse=True)[1]
