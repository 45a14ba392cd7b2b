"""Evaluate merging-model checkpoints on a scenario's pairs: every metric, collapse, accuracy.

:func:`evaluate_checkpoints` takes checkpoints (a folder, scanned with
:func:`~weightlake.experiments.scan.scan_experiments`, or files), and for each one in
turn loads it with its inferred config, runs batched forward passes over the pairs the
lake serves for one scenario split, and compares the predicted weights (PD) with the
targets (GT).  One model and one prediction buffer are in memory at a time; each model
is released before the next is loaded.

Three comparisons share one vocabulary (the column prefixes), here and in
:mod:`weightlake.experiments.tracking`:

=========  ==============================================================
``pd``     predicted vs ground truth (checkpoints and tracking files)
``fn``     fine-tuned vs ground truth (tracking files)
``pdfn``   predicted vs fine-tuned (tracking files)
=========  ==============================================================

Every metric of :func:`~weightlake.analysis.metrics.compute_all` (whole vector, per
layer, ``ar_mse_ratio_<layer>``) is computed per pair and averaged over pairs, NaN
pairs left out.  Statistics that need variety across rows (correlation across rows,
class-cluster silhouette) are NaN with a ``*_reason`` when the predictions collapsed.

Tables written (partitioned by ``scenario``; evaluating the same source on the same
scenario and split again replaces its rows, other rows are kept):

* ``evaluations``: one row per source (checkpoint or tracking file) x scenario split:
  identity (``checkpoint``, ``loss``, ``epoch``, ...), the inferred config, ``snapshot``
  (the lake snapshot the pairs were read at), ``pd_<column>`` / ``fn_<column>`` /
  ``pdfn_<column>`` means, collapse (``collapsed``, ``pd_top_row_share``,
  ``pd_unique_value_share``...), variety statistics with reasons, and the rebuilt
  CNNs' accuracy (``pd_accuracy`` vs ``gt_accuracy`` on the same held-out images);
* ``evaluation_metrics``: the same numbers long, one row per source x comparison x
  metric x layer (``layer`` null for the whole vector) with mean, median, std, count;
* ``evaluation_baselines`` (with ``baselines=True``, the default): trivial predictions (all
  zeros, the mean train target, the average of the two inputs) scored on the same pairs,
  metrics and images as the checkpoints, ``source_kind = 'baseline'``
  (:mod:`weightlake.experiments.baselines`);
* ``predictions`` (with ``store_predictions=True``, and always for tracking files):
  one row per stored vector, the vectors in a Zarr array owned by the table
  (:func:`load_predictions` reads them back).
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import polars as pl

from weightlake.analysis._rows import default_workers
from weightlake.analysis.collapse import RowStatistic, across_rows_pearson, collapse_report
from weightlake.analysis.metrics import METRICS, compute_all
from weightlake.arch import CNN_S, Architecture
from weightlake.errors import ArchitectureError, IngestError, QueryError, WeightLakeError

if TYPE_CHECKING:
    from weightlake.experiments.scan import CheckpointInfo
    from weightlake.lake import Lake
    from weightlake.storage.transaction import Transaction

COMPARISONS: dict[str, tuple[str, str]] = {"pd": ("PD", "GT"), "fn": ("FN", "GT"), "pdfn": ("PD", "FN")}
"""Column prefix -> (prediction kind, reference kind)."""

EVALUATIONS = "evaluations"
EVALUATION_METRICS = "evaluation_metrics"
PREDICTIONS = "predictions"
PARTITION = ("scenario",)

COMPARE_ROWS = 256
"""Rows per :func:`compute_all` call.  Every metric is row-wise, so the result is bitwise the
same; blocks this small keep its float64 temporaries in cache (measured: half the CPU time of
one call on 2,000 rows)."""

SILHOUETTE_ROWS = 1000
"""Rows sampled for the silhouette (its cost grows with the square of the rows)."""

ZOO_DATASET = "zoo"
"""``images`` default of :func:`evaluate_checkpoints`: the image dataset the zoo recorded at ingest."""

KEY = ("source_kind", "checkpoint_path", "split")
"""Rows of ``evaluations`` with the same key (within a scenario) are replaced by a new evaluation."""

CONFIG_COLUMNS = ("d_model", "n_heads", "d_ff", "n_layers", "neck", "seq_len", "dropout", "gated_attention",
                  "output_head")

FIXED_TYPES: dict[str, Any] = {
    "scenario": pl.String, "split": pl.String, "source_kind": pl.String, "checkpoint": pl.String,
    "checkpoint_path": pl.String, "source_id": pl.String, "loss": pl.String, "track": pl.String,
    "epoch": pl.Int64, "saved_epoch": pl.Int64, "zoo": pl.String, "snapshot": pl.Int64, "n_pairs": pl.Int64,
    "limit_pairs": pl.Int64, "pair_seed": pl.Int64, "d_model": pl.Int64, "n_heads": pl.Int64, "d_ff": pl.Int64,
    "n_layers": pl.Int64, "neck": pl.Int64, "seq_len": pl.Int64, "dropout": pl.Float64,
    "gated_attention": pl.Boolean, "output_head": pl.String, "heads_source": pl.String, "n_params": pl.Int64,
    "config": pl.String, "config_provenance": pl.String, "file_bytes": pl.Int64, "error": pl.String, "evaluated_at": pl.String,
    "forward_seconds": pl.Float64, "metric_seconds": pl.Float64, "pairs_per_s": pl.Float64,
    "collapsed": pl.Boolean, "fn_collapsed": pl.Boolean, "pd_distinct_rows": pl.Int64,
    "fn_distinct_rows": pl.Int64, "pd_accuracy": pl.Float64, "gt_accuracy": pl.Float64,
    "accuracy_models": pl.Int64, "accuracy_images": pl.String, "accuracy_note": pl.String, "zoo_dataset": pl.String,
}
"""Columns every ``evaluations`` row has (null where they do not apply), first, with their types.

Other columns are float metrics, except strings ending in ``_reason`` / ``_note``."""

PREDICTIONS_SCHEMA: dict[str, Any] = {
    "source_id": pl.String, "source_kind": pl.String, "source_file": pl.String, "row": pl.Int64,
    "kind": pl.String, "step": pl.Int32, "loss": pl.String, "scenario": pl.String, "split": pl.String,
    "pair_id": pl.Int64, "a_id": pl.Int64, "b_id": pl.Int64, "target_id": pl.Int64, "snapshot": pl.Int64,
    "array": pl.String, "array_row": pl.Int64,
}
"""Columns of the ``predictions`` table (partitioned by ``source_id``)."""


# -- metric sets -----------------------------------------------------------------------------------
def compare(pred: np.ndarray, ref: np.ndarray, prefix: str, *, arch: Architecture = CNN_S,
            metrics: list[str] | None = None, include_slow: bool = False) -> dict[str, np.ndarray]:
    """Per-pair metric columns of one comparison, named ``<prefix>_<column>``.

    ``pred`` and ``ref`` are ``float32 [n, P]``; the columns are those of
    :func:`~weightlake.analysis.metrics.compute_all` (whole vector, per layer, and
    ``ar_mse_ratio_<layer>``), each ``float64 [n]``.
    """
    from concurrent.futures import ThreadPoolExecutor

    def block(i: int) -> dict[str, np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NaN rows are expected; their docstrings say why
            return compute_all(pred[i:i + COMPARE_ROWS], ref[i:i + COMPARE_ROWS], arch=arch, metrics=metrics,
                               include_slow=include_slow)

    starts = list(range(0, len(pred), COMPARE_ROWS)) or [0]
    with ThreadPoolExecutor(max_workers=min(len(starts), default_workers())) as pool:
        parts = list(pool.map(block, starts))  # numpy releases the GIL in the kernels
    return {f"{prefix}_{name}": np.concatenate([p[name] for p in parts]) for name in parts[0]}


def summarise(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The mean over pairs of each column, NaN pairs left out (NaN when every pair is NaN)."""
    out = {}
    for name, values in columns.items():
        finite = values[np.isfinite(values)]
        out[name] = float(finite.mean()) if finite.size else float("nan")
    return out


def long_metrics(columns: Mapping[str, np.ndarray], arch: Architecture = CNN_S) -> list[dict[str, Any]]:
    """One dict per column: ``comparison``, ``metric``, ``layer`` (None = whole), mean, median, std, counts."""
    rows = []
    layers = arch.layer_names
    for name, values in columns.items():
        comparison, column = name.split("_", 1)
        metric, layer = split_metric_column(column, layers)
        finite = values[np.isfinite(values)]
        stats = (float(finite.mean()), float(np.median(finite)), float(finite.std())) if finite.size \
            else (float("nan"),) * 3
        rows.append({"comparison": comparison, "metric": metric, "layer": layer, "mean": stats[0],
                     "median": stats[1], "std": stats[2], "n": int(values.size), "n_valid": int(finite.size)})
    return rows


def split_metric_column(column: str, layer_names: Sequence[str]) -> tuple[str, str | None]:
    """``"w1_fc1"`` -> ``("w1", "fc1")``; ``"w1"`` -> ``("w1", None)``; ``"ar_mse_ratio_conv2"`` -> its parts."""
    if column in METRICS:
        return column, None
    for layer in sorted(layer_names, key=len, reverse=True):
        if column.endswith("_" + layer):
            return column[: -len(layer) - 1], layer
    return column, None


def variety(pred: np.ndarray, ref: np.ndarray | None, prefix: str,
            groups: np.ndarray | None = None) -> dict[str, Any]:
    """Collapse of ``pred`` and the statistics that need variety across its rows.

    Returns ``<prefix>_top_row_share``, ``_unique_value_share``, ``_distinct_rows``,
    ``_collapse_reason``, ``_partial_collapse`` (more than
    :data:`~weightlake.analysis.collapse.PARTIAL_COLLAPSE_SHARE` of the rows one vector, not
    fully collapsed) and the collapse flag (``collapsed`` for ``pd``,
    ``<prefix>_collapsed`` otherwise); ``_across_rows_pearson`` against ``ref``; and
    ``_silhouette`` of the rows grouped by ``groups``.  Each statistic that is NaN comes
    with a ``*_reason`` saying why, instead of an exception.
    """
    report = collapse_report(pred)
    flag = "collapsed" if prefix == "pd" else f"{prefix}_collapsed"
    out: dict[str, Any] = {
        flag: bool(report.collapsed), f"{prefix}_partial_collapse": bool(report.partial),
        f"{prefix}_top_row_share": report.top_row_share,
        f"{prefix}_unique_value_share": report.unique_value_share, f"{prefix}_distinct_rows": report.n_distinct_rows,
        f"{prefix}_collapse_reason": report.reason,
    }
    if ref is not None:
        out.update(_statistic(across_rows_pearson(pred, ref), f"{prefix}_across_rows_pearson"))
    out.update(_statistic(silhouette(pred, groups), f"{prefix}_silhouette"))
    return out


def _statistic(stat: RowStatistic, name: str) -> dict[str, Any]:
    return {name: stat.value, f"{name}_reason": stat.reason or None}


def silhouette(rows: np.ndarray, groups: np.ndarray | None, *, max_rows: int = SILHOUETTE_ROWS,
               seed: int = 0) -> RowStatistic:
    """Mean silhouette of ``rows`` clustered by ``groups`` (Euclidean): are the groups separable?

    With ``groups`` the target class set of each pair, this says whether predictions for
    different class sets form separate clusters (1: tight and apart, 0: overlapping).
    At most ``max_rows`` rows are used (a seeded sample).  NaN with a reason when there
    are no groups, fewer than two groups with two or more rows, or the rows collapsed
    (one vector, or over 99 % of the rows one vector); rows in singleton groups count 0 (the usual
    convention).
    """
    if groups is None:
        return RowStatistic(float("nan"), 0, "no grouping of the rows is known")
    rows, groups = _sample(np.asarray(rows, dtype=np.float32), np.asarray(groups), max_rows, seed)
    report = collapse_report(rows)
    if report.collapsed:
        return RowStatistic(float("nan"), 0, f"collapsed: {report.reason}")
    if report.n_distinct_rows < 2:
        return RowStatistic(float("nan"), 0, "a single distinct row: nothing to cluster")
    labels, counts = np.unique(groups, return_inverse=True)[1], np.unique(groups, return_counts=True)[1]
    if (counts >= 2).sum() < 2:
        return RowStatistic(float("nan"), 0, f"{len(counts)} groups, fewer than two of them with two or more rows")
    return RowStatistic(_silhouette_value(rows, labels, counts), int(rows.shape[0]))


def _sample(rows: np.ndarray, groups: np.ndarray, max_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if rows.shape[0] <= max_rows:
        return rows, groups
    keep = np.sort(np.random.default_rng(seed).choice(rows.shape[0], max_rows, replace=False))
    return rows[keep], groups[keep]


def _silhouette_value(rows: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> float:
    x = rows - rows.mean(0)  # centred (float32 Gram matrix, float64 distances): less cancellation
    sq = (x.astype(np.float64) ** 2).sum(1)
    dist = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T).astype(np.float64), 0.0, None))
    one_hot = np.zeros((x.shape[0], len(counts)))
    one_hot[np.arange(x.shape[0]), labels] = 1.0
    sums = dist @ one_hot  # [n, groups]: summed distance from each row to each group
    own = labels
    with np.errstate(divide="ignore", invalid="ignore"):
        a = sums[np.arange(len(own)), own] / (counts[own] - 1)
        others = sums / counts[None, :]
        others[np.arange(len(own)), own] = np.inf
        b = others.min(1)
        s = (b - a) / np.maximum(a, b)
    s = np.where(counts[own] > 1, np.nan_to_num(s, nan=0.0), 0.0)
    return float(s.mean())


# -- table staging -----------------------------------------------------------------------------------
def _dtype(name: str, values: Iterable[Any]) -> Any:
    if name in FIXED_TYPES:
        return FIXED_TYPES[name]
    if name.endswith(("_reason", "_note")):
        return pl.String
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, bool):
        return pl.Boolean
    if isinstance(sample, str):
        return pl.String
    if isinstance(sample, (int, np.integer)):
        return pl.Int64
    return pl.Float64


def rows_frame(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """A frame of ``rows`` (dicts with possibly different keys) with stable column types.

    A float NaN (a value not computed: accuracy with ``--images none``, a silhouette of collapsed
    rows, a mean over no finite pair) is stored as null, so SQL aggregates skip it: stored as
    NaN, ``avg(pd_accuracy)`` over a scenario was NaN.
    """
    names = list(dict.fromkeys(k for row in rows for k in row))
    data = {n: [None if isinstance(v, float) and v != v else v for v in (row.get(n) for row in rows)] for n in names}
    return pl.DataFrame(data, schema={n: _dtype(n, data[n]) for n in names})


def complete_families(frame: pl.DataFrame) -> pl.DataFrame:
    """Add the null columns that make every comparison carry the same columns.

    A checkpoint has no FN vectors and a tracking file may lack a block or a config;
    their rows still get ``fn_<column>`` / ``pdfn_<column>`` and every column of
    :data:`FIXED_TYPES` (first, in that order) so that queries such as
    ``SELECT checkpoint, d_model, pd_w1, fn_w1, collapsed FROM evaluations`` run on any lake.
    """
    suffixes = {c.split("_", 1)[1]: frame.schema[c] for c in frame.columns
                if c.split("_", 1)[0] in COMPARISONS and "_" in c}
    wanted: dict[str, Any] = {f"{p}_{s}": t for s, t in suffixes.items() for p in COMPARISONS}
    if "collapsed" in frame.columns:
        wanted["fn_collapsed"] = pl.Boolean
    wanted.update(FIXED_TYPES)
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in wanted.items() if c not in frame.columns]
    frame = frame.with_columns(missing) if missing else frame
    return frame.select(*FIXED_TYPES, pl.exclude(*FIXED_TYPES))


def stage_evaluations(tx: Transaction, rows: Sequence[Mapping[str, Any]],
                      long_rows: Sequence[Mapping[str, Any]], notes: list[str] | None = None,
                      kept: list[str] | None = None) -> pl.DataFrame | None:
    """Stage ``rows`` into ``evaluations`` and ``long_rows`` into ``evaluation_metrics``.

    Within each scenario partition, rows of the parent snapshot with the same
    :data:`KEY` as a new row are replaced; the others are kept.  A new row that failed
    (``error`` set) does not replace an earlier row that succeeded: the earlier evaluation
    stays, and a line in ``notes`` says which were kept.  Returns the staged
    ``evaluations`` rows of those scenarios (None without ``rows``).
    """
    staged = None
    if rows:
        new = _keep_earlier_successes(tx, complete_families(rows_frame(rows)), notes, kept)
        staged = _stage_partitioned(tx, EVALUATIONS, new, KEY) if new.height else None
    if long_rows:
        _stage_partitioned(tx, EVALUATION_METRICS, rows_frame(long_rows), KEY)
    return staged


def _keep_earlier_successes(tx: Transaction, new: pl.DataFrame, notes: list[str] | None,
                            kept_labels: list[str] | None = None) -> pl.DataFrame:
    """``new`` without its failed rows whose checkpoint has a successful row in the parent snapshot.

    Was: a re-evaluation that failed (a file truncated since, a missing dependency) replaced
    the earlier good row, so its ``pd_mse`` ... were gone from the table without a word.
    """
    from weightlake.lake import Lake

    failed = new.filter(pl.col("error").is_not_null())
    if not failed.height:
        return new
    old = partition_rows(Lake(tx.store.location, tx.parent), EVALUATIONS, failed["scenario"].unique().to_list())
    if not old.height or "error" not in old.columns:
        return new
    good = old.filter(pl.col("error").is_null()).select(
        *[pl.col(k).cast(new.schema[k]) for k in KEY], "scenario", "checkpoint", "evaluated_at")
    kept = failed.select(*KEY, "scenario").join(good, on=[*KEY, "scenario"], how="inner", nulls_equal=True)
    if not kept.height:
        return new
    if kept_labels is not None:
        kept_labels += kept["checkpoint"].to_list()
    if notes is not None:
        names = ", ".join(kept["checkpoint"].head(3).to_list()) + (" ..." if kept.height > 3 else "")
        notes.append(f"{kept.height} checkpoints failed this time but had a successful evaluation: the earlier rows "
                     f"are kept in `{EVALUATIONS}` (evaluated_at says when), this run's errors are only above ({names})")
    return new.join(kept.select(*KEY, "scenario"), on=[*KEY, "scenario"], how="anti", nulls_equal=True)


def _stage_partitioned(tx: Transaction, name: str, new: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
    from weightlake.lake import Lake

    parent = Lake(tx.store.location, tx.parent)
    frames = [new]
    old = partition_rows(parent, name, new["scenario"].unique().to_list())
    if old.height:
        stale = new.select(*key).unique().with_columns(pl.col(k).cast(old.schema[k]) for k in key)
        frames.insert(0, old.join(stale, on=list(key), how="anti", nulls_equal=True))
    merged = pl.concat(frames, how="diagonal_relaxed")
    tx.put_table(name, merged, partition_by=PARTITION, properties={"partition_by": list(PARTITION)})
    return merged


def partition_rows(lake: Lake, name: str, scenarios: Sequence[str]) -> pl.DataFrame:
    """The rows of table ``name`` in the ``scenario`` partitions ``scenarios``, stacked by column name.

    Each partition is written whole by one commit, so its files share their columns, but
    partitions differ (a scenario evaluated with other metrics has other ``pd_*`` columns);
    one polars scan over every file takes the first file's columns and refused the others
    (a ``SchemaError`` traceback when a re-run read the table back).  So each partition is
    scanned alone, and only those named.  An empty frame when none holds rows.
    """
    entry = lake.manifest.tables.get(name)
    wanted = {f"{PARTITION[0]}={value}" for value in scenarios}
    groups: dict[str, list[str]] = {}
    for file in entry.files if entry is not None else ():
        if Path(file).parent.name in wanted:
            groups.setdefault(str(Path(file).parent), []).append(file)
    hive = {column: pl.String for column in PARTITION}
    frames = [lake._scan(files, hive).collect() for files in groups.values()]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def source_id(*parts: Any) -> str:
    """A partition-safe id for a source: a slug of its file name and a hash of ``parts``."""
    stem = Path(str(parts[0])).stem if parts else "source"
    slug = re.sub(r"[^A-Za-z0-9]+", "-", stem).strip("-")[:40] or "source"
    digest = hashlib.blake2b("\x00".join(map(str, parts)).encode(), digest_size=6).hexdigest()
    return f"{slug}-{digest}"


def stage_predictions(tx: Transaction, sid: str, meta: pl.DataFrame, array: Path) -> None:
    """Stage rows of ``predictions`` for source ``sid`` whose vectors live in ``array``.

    Rows and arrays the parent snapshot holds for ``sid`` are replaced.  ``meta`` needs
    ``array_row`` (the row in ``array``) and any of :data:`PREDICTIONS_SCHEMA`'s columns.
    """
    rel = str(array.relative_to(tx.root))
    old_prefix = f"{PREDICTIONS}/{sid}/"
    tx.drop_table_files(PREDICTIONS, lambda f: f.startswith(old_prefix))
    meta = meta.with_columns(source_id=pl.lit(sid), array=pl.lit(rel))
    frame = meta.select([pl.col(c).cast(t) if c in meta.columns else pl.lit(None, dtype=t).alias(c)
                         for c, t in PREDICTIONS_SCHEMA.items()])
    tx.put_table(PREDICTIONS, frame, partition_by=("source_id",), properties={"partition_by": ["source_id"]},
                 arrays=[array])


def load_predictions(lake: Lake, *, source_id: str | None = None, source_file: str | None = None,
                     kind: str | None = None, scenario: str | None = None) -> tuple[pl.DataFrame, np.ndarray]:
    """Rows of the ``predictions`` table and their vectors ``float32 [n, P]`` (same order).

    Filters combine with AND; rows come sorted by source, row and kind.

    Raises
    ------
    NoSuchTableError
        The lake has no ``predictions`` table at its snapshot.
    """
    from weightlake.storage.remote import read_array_rows

    lf = lake.table(PREDICTIONS)
    for col, value in (("source_id", source_id), ("source_file", source_file), ("kind", kind),
                       ("scenario", scenario)):
        if value is not None:
            lf = lf.filter(pl.col(col) == value)
    frame = lf.collect().sort("source_id", "row", "kind", "array_row")
    out = np.empty((frame.height, 0), dtype=np.float32)
    for i, array in enumerate(frame["array"].unique(maintain_order=True).to_list()):
        mask = (frame["array"] == array).to_numpy()
        index = frame.filter(pl.col("array") == array)["array_row"].to_numpy()
        digests, meta_digest = lake.array_digests(array)
        block = read_array_rows(lake.location, array, index, digests=digests, meta_digest=meta_digest)
        if i == 0:
            out = np.empty((frame.height, block.shape[1]), dtype=np.float32)
        out[mask] = block
    return frame, out


def _array_shape(path: Path) -> tuple[int, int]:
    import zarr

    shape = zarr.open_array(store=str(path), mode="r").shape
    return int(shape[0]), int(shape[1])


# -- checkpoints ------------------------------------------------------------------------------------
@dataclass
class EvaluationReport:
    """What :func:`evaluate_checkpoints` did: one summary row per checkpoint and the commit."""

    scenario: str
    split: str | None
    zoo: str | None
    n_pairs: int
    pairs_snapshot: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    snapshot: int | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    baselines: list[dict[str, Any]] = field(default_factory=list)
    """Rows of ``evaluation_baselines``: trivial predictions scored on the same pairs."""
    kept_earlier: list[str] = field(default_factory=list)
    """Checkpoints that failed this time and kept their earlier good row (their errors are not in the table)."""

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r.get("error")]

    def failure_line(self) -> str:
        """One line for the checkpoints that were not evaluated (empty when every one was): how many,
        and where their reasons are; the CLI prints it and exits 1."""
        if not self.failed:
            return ""
        refused = sum(r.get("heads_source") == "unknown" for r in self.failed)
        kept = (f" ({len(self.kept_earlier)} of them kept their earlier good row: their errors are only above)"
                if self.kept_earlier else "")
        split = f" AND split = '{self.split}'" if self.split else ""
        return (f"{len(self.failed)} of {len(self.rows)} checkpoints not evaluated ({len(self.failed) - refused} "
                f"failed, {refused} refused): the reasons are on their lines above and in column `error` of "
                f"`{EVALUATIONS}` (SELECT checkpoint, error FROM {EVALUATIONS} WHERE scenario = '{self.scenario}'"
                f"{split} AND error IS NOT NULL){kept}; the other {len(self.rows) - len(self.failed)} are "
                f"committed in snapshot {self.snapshot}")

    def to_polars(self) -> pl.DataFrame:
        """Every row as committed to ``evaluations``."""
        return rows_frame(self.rows) if self.rows else pl.DataFrame()

    def lines(self) -> list[str]:
        ok = len(self.rows) - len(self.failed)
        out = [f"evaluated {ok} of {len(self.rows)} checkpoints on {self.scenario}/{self.split or 'all'}: "
               f"{self.n_pairs:,} pairs of zoo {self.zoo!r} (pairs of snapshot {self.pairs_snapshot}), "
               f"{self.seconds:.1f} s"]
        out += [_row_line(row) for row in self.rows]
        if self.baselines:
            out.append("  baselines on the same pairs (references, not checkpoints):")
            out += ["  " + _row_line(row) for row in self.baselines]
        assumed = sum(r.get("heads_source") == "assumed" for r in self.rows)
        if assumed:
            out.append(f"  note: {assumed} checkpoints ran with assumed heads (--assume-heads); their rows carry "
                       "heads_source='assumed'")
        out += [f"  note: {n}" for n in self.notes]
        if self.snapshot is not None:
            tables = f"{EVALUATIONS}, {EVALUATION_METRICS}" + (", evaluation_baselines" if self.baselines else "")
            out.append(f"  committed as snapshot {self.snapshot} (tables {tables})")
        return out


def _row_line(row: Mapping[str, Any]) -> str:
    if row.get("error") and row.get("source_kind") == "baseline":
        return f"  {row['checkpoint']}: {row['error']}"
    if row.get("error"):
        verb = "REFUSED" if row.get("heads_source") == "unknown" else "FAILED"
        return f"  {row['checkpoint']}: {verb} {row['error']}"
    flags = [f"heads_from=assumed (n_heads={row.get('n_heads')})"] if row.get("heads_source") == "assumed" else []
    if row.get("collapsed"):
        flags.append("COLLAPSED")
    elif row.get("pd_partial_collapse"):
        flags.append(f"PARTIAL COLLAPSE ({row.get('pd_top_row_share', float('nan')):.0%} of rows one vector)")
    speed = f"  {row['pairs_per_s']:.0f} pairs/s" if row.get("pairs_per_s") is not None else ""
    return (f"  {row['checkpoint']}: pd_mse {row.get('pd_mse', float('nan')):.4g}  "
            f"pd_w1 {row.get('pd_w1', float('nan')):.4g}  pd_accuracy {row.get('pd_accuracy', float('nan')):.1f}%"
            + speed + "".join(f"  {f}" for f in flags))


@dataclass
class _Pairs:
    """The evaluated pairs of one scenario split, gathered once for every checkpoint."""

    dataset: Any
    positions: np.ndarray
    frame: pl.DataFrame
    targets: np.ndarray
    zoo: str
    snapshot: int


def select_positions(n: int, limit: int | None, seed: int = 0) -> np.ndarray:
    """Pair positions to evaluate: all ``n``, or a seeded sample of ``limit`` in pair order."""
    if limit is not None and limit < 1:
        raise QueryError(f"limit_pairs must be >= 1, got {limit!r}")
    if limit is None or limit >= n:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False)).astype(np.int64)


Checkpoints: TypeAlias = "str | Path | Iterable[str | Path | CheckpointInfo | tuple[str, CheckpointInfo]]"


def resolve_checkpoints(root_or_paths: Checkpoints, heads: int | None = None,
                        assume_heads: int | None = None) -> list[tuple[str, CheckpointInfo]]:
    """``(display name, info)`` for every checkpoint of a folder, files, or scanned infos.

    Folders are scanned (tracking CSVs in them are left out); a folder's checkpoints
    are named by their path relative to it, single files and infos by ``parent/name``;
    ``(name, info)`` pairs (this function's own output) pass through.  ``heads`` and
    ``assume_heads`` are as for :func:`~weightlake.experiments.scan.scan_experiments`.
    """
    from weightlake.experiments.scan import CheckpointInfo, scan_checkpoint, scan_experiments

    items = [root_or_paths] if isinstance(root_or_paths, (str, Path, CheckpointInfo)) else list(root_or_paths)
    out: list[tuple[str, CheckpointInfo]] = []
    for item in items:
        if isinstance(item, tuple):
            out.append(item)
        elif isinstance(item, CheckpointInfo):
            out.append((_label(Path(item.path)), item))
        elif Path(item).is_dir():
            infos = [i for i in scan_experiments(item, heads=heads, assume_heads=assume_heads)
                     if i.kind == "checkpoint"]
            out += [(Path(i.path).relative_to(item).as_posix(), i) for i in infos]
        elif Path(item).is_file():
            out.append((_label(Path(item)), scan_checkpoint(item, heads=heads, assume_heads=assume_heads)))
        else:
            raise IngestError("no such checkpoint file or folder", path=str(item))
    return out


def _label(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def evaluate_checkpoints(
    lake_root: str | Path,
    root_or_paths: Checkpoints,
    scenario: str,
    split: str | None = "test",
    *,
    limit_pairs: int | None = None,
    batch_size: int = 256,
    heads: int | None = None,
    assume_heads: int | None = None,
    images: str | None = ZOO_DATASET,
    accuracy_models: int = 8,
    accuracy_images_per_class: int | None = 500,
    seed: int = 0,
    metrics: list[str] | None = None,
    include_slow: bool = False,
    store_predictions: bool = False,
    baselines: bool = True,
    progress: Callable[[int, int, str], Any] | None = None,
) -> EvaluationReport:
    """Evaluate every checkpoint on a scenario split; commit ``evaluations`` in one snapshot.

    Parameters
    ----------
    lake_root
        The lake holding the zoo and the declared scenario.
    root_or_paths
        An experiments folder, checkpoint files, :class:`CheckpointInfo` from a scan, or
        the output of :func:`resolve_checkpoints`.
    scenario, split
        The pairs: ``lake.pairs(scenario, split)`` (``split=None``: every split).
    limit_pairs, seed
        Evaluate a seeded sample of this many pairs (the same for every checkpoint).
    batch_size
        Pairs per forward pass.
    heads
        Attention heads for every checkpoint (else sidecar, then folder name).
    assume_heads
        Heads for the checkpoints whose head count nothing records; their rows get
        ``heads_source = "assumed"``.  Without it those checkpoints are refused: their
        row carries the ``error`` saying how to give the head count, and no metrics.
    images
        The image dataset on which the predicted CNNs are rebuilt and scored (test split,
        the target's classes).  :data:`ZOO_DATASET` (default): the dataset the zoo
        recorded at ingest (trainer record, or ``--dataset``); a zoo that records none is
        refused, so is a recorded dataset that is not available here.  A name for
        :func:`~weightlake.zoo.idx.load_dataset` (``"fashion-mnist"`` or an IDX folder)
        overrides it, explicitly: rows then carry both ``accuracy_images`` and
        ``zoo_dataset``, and a note when they differ.  None skips accuracy.
    accuracy_models
        How many predicted CNNs (evenly spread over the pairs) to rebuild per checkpoint.
    accuracy_images_per_class
        Held-out images per class they are scored on (a fixed seeded draw; None: all).
    metrics, include_slow
        As :func:`~weightlake.analysis.metrics.compute_all` (default: every fast metric).
    store_predictions
        Also store the predicted vectors in the ``predictions`` table.
    baselines
        Also score the trivial predictions of :mod:`weightlake.experiments.baselines` (all
        zeros, the mean train target, the average of the two inputs) on the same pairs, metrics
        and images, into the ``evaluation_baselines`` table (``source_kind = 'baseline'``).
    progress
        Called as ``progress(done, total, checkpoint)`` after each checkpoint.

    Returns
    -------
    EvaluationReport
        A checkpoint that cannot be read or run gets a row with ``error`` set; the others go on.

    Raises
    ------
    NoSuchTableError
        The scenario is not declared.
    QueryError
        The split has no pairs, or bad ``limit_pairs`` / ``batch_size``, or the zoo's
        image dataset is not known or not available (with ``images=ZOO_DATASET``).
    """
    from weightlake.lake import Lake
    from weightlake.storage.transaction import transaction

    if batch_size < 1:
        raise QueryError(f"batch_size must be >= 1, got {batch_size!r}")
    started = time.perf_counter()
    checkpoints = resolve_checkpoints(root_or_paths, heads, assume_heads)
    root = Path(lake_root)
    with transaction(root) as tx:
        lake = Lake(root, tx.parent)
        pairs = _gather_pairs(lake, scenario, split, limit_pairs, seed)
        arch = lake.arch(pairs.zoo)
        recorded, images, image_notes = resolve_images(lake, pairs.zoo, images)
        scorer = _AccuracyScorer(arch, images, accuracy_models, accuracy_images_per_class, pairs)
        report = EvaluationReport(scenario, split, pairs.zoo, len(pairs.positions), lake.snapshot,
                                  notes=image_notes + scorer.notes)
        context = {"scenario": scenario, "split": split, "zoo": pairs.zoo, "zoo_dataset": recorded,
                   "snapshot": lake.snapshot,
                   "n_pairs": len(pairs.positions), "limit_pairs": limit_pairs, "pair_seed": seed}
        gt_cols = _statistic(silhouette(pairs.targets, pairs.frame["target_mask"].to_numpy()), "gt_silhouette")
        buffer = np.empty_like(pairs.targets)
        long_rows: list[dict[str, Any]] = []
        for done, (label, info) in enumerate(checkpoints, 1):
            row, columns = _evaluate_one(label, info, pairs, buffer, batch_size, arch, scorer, metrics, include_slow)
            row.update(context, **gt_cols)
            if columns and store_predictions:
                _store(tx, row, pairs, buffer)
            long_rows += [{**_key(row), "checkpoint": label, "loss": row.get("loss"), "epoch": row.get("epoch"), **r}
                          for r in long_metrics(columns, arch)]
            report.rows.append(row)
            if progress is not None:
                progress(done, len(checkpoints), label)
        staged = stage_evaluations(tx, report.rows, long_rows, report.notes, report.kept_earlier)
        if baselines and report.rows and staged is not None:  # nothing new staged: no baselines to renew
            from weightlake.experiments.baselines import evaluate_baselines, stage_baselines

            report.baselines = evaluate_baselines(lake, pairs, buffer, arch, scorer, {**context, **gt_cols},
                                                  metrics, include_slow)
            stage_baselines(tx, report.baselines, staged)
        summary = f"evaluated {len(checkpoints)} checkpoints on {scenario}/{split or 'all'} ({len(pairs.positions)} pairs)"
        if tx.changed:
            report.snapshot = tx.commit({"op": "evaluate_checkpoints", "summary": summary}).version
        else:  # every checkpoint failed and kept its earlier evaluation: nothing to commit
            report.snapshot = tx.parent.version
            report.notes.append(f"nothing new to commit: the lake stays at snapshot {tx.parent.version}")
    report.seconds = time.perf_counter() - started
    return report


def resolve_images(lake: Lake, zoo: str, images: str | None) -> tuple[str | None, str | None, list[str]]:
    """``(zoo's recorded dataset, images to score on, notes)`` for :func:`evaluate_checkpoints`.

    Raises
    ------
    QueryError
        ``images`` is :data:`ZOO_DATASET` and the zoo records no dataset, or its dataset
        cannot be loaded here.
    """
    from weightlake.ingest.common import zoo_dataset
    from weightlake.zoo.idx import dataset_dir, dataset_id

    recorded = zoo_dataset(lake.manifest, zoo)
    if images != ZOO_DATASET:
        if images is not None and recorded is not None and dataset_id(images) != recorded:
            return recorded, images, [f"images {images!r} are not zoo {zoo!r}'s own dataset {recorded!r} "
                                      "(given explicitly): accuracies are on another dataset"]
        return recorded, images, []
    if recorded is None:
        raise QueryError(f"zoo {zoo!r} records no image dataset, so the rebuilt CNNs cannot be scored without a "
                         "guess: pass --images fashion-mnist, --images FOLDER (the zoo's IDX files) or --images none "
                         "(record it at ingest with --dataset)")
    try:
        dataset_dir(recorded)
    except IngestError as exc:
        raise QueryError(f"zoo {zoo!r} was trained on {recorded!r}, which is not available here ({exc}); pass "
                         "--images FOLDER with its IDX files, or --images none") from exc
    return recorded, recorded, []


def _key(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"scenario": row["scenario"], **{k: row.get(k) for k in KEY}}


def _gather_pairs(lake: Lake, scenario: str, split: str | None, limit: int | None, seed: int) -> _Pairs:
    from weightlake.serve.pairset import PairSet

    pairset = PairSet.open(lake, scenario, split)
    if not len(pairset):
        raise QueryError(f"scenario {scenario!r} has no {split or 'any'!r} pairs to evaluate")
    positions = select_positions(len(pairset), limit, seed)
    dataset = pairset.dataset()
    frame = pairset.to_polars().select(pl.all().gather(positions))
    targets = np.empty((len(positions), lake.arch(pairset.zoo).n_params), dtype=np.float32)
    for start in range(0, len(positions), 4096):
        chunk = positions[start:start + 4096]
        targets[start:start + len(chunk)] = dataset[chunk]["y"].numpy()
    return _Pairs(dataset, positions, frame, targets, pairset.zoo, lake.snapshot)


def _identity(label: str, info: CheckpointInfo) -> dict[str, Any]:
    name = info.name_fields or {}
    row: dict[str, Any] = {
        "source_kind": "checkpoint", "checkpoint": label, "checkpoint_path": str(Path(info.path).resolve()),
        "loss": name.get("loss"), "track": name.get("track"),
        "epoch": name.get("epoch") if name.get("epoch") is not None else info.saved_epoch,
        "saved_epoch": info.saved_epoch, "file_bytes": info.size_bytes, "error": info.error,
        "heads_source": info.heads_source, "n_params": info.n_params,
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config_provenance": json.dumps(info.provenance) if info.provenance else None,
    }
    if info.config is not None:
        config = info.config.to_dict()
        row.update({k: config[k] for k in CONFIG_COLUMNS}, config=json.dumps(config))
    else:  # refused (e.g. heads unknown): still say what the file is
        row.update({k: info.hyperparameters.get(k) for k in CONFIG_COLUMNS})
    return row


def _evaluate_one(label: str, info: CheckpointInfo, pairs: _Pairs, buffer: np.ndarray, batch_size: int,
                  arch: Architecture, scorer: _AccuracyScorer, metrics: list[str] | None,
                  include_slow: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    row = _identity(label, info)
    if info.error is not None or info.config is None:
        return row, {}
    try:
        started = time.perf_counter()
        _predict(info, pairs, buffer, batch_size, arch)
        forward = time.perf_counter() - started
    except (WeightLakeError, RuntimeError, OSError) as exc:  # torch shape errors are RuntimeErrors
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row, {}
    started = time.perf_counter()
    columns = score_predictions(row, buffer, pairs, arch, scorer, metrics, include_slow)
    spent = time.perf_counter() - started
    row.update(forward_seconds=forward, metric_seconds=spent, pairs_per_s=len(buffer) / max(forward + spent, 1e-9))
    return row, columns


def score_predictions(row: dict[str, Any], preds: np.ndarray, pairs: _Pairs, arch: Architecture,
                      scorer: _AccuracyScorer, metrics: list[str] | None,
                      include_slow: bool) -> dict[str, np.ndarray]:
    """Fill ``row`` with every ``pd_`` mean, the variety statistics and the rebuilt CNNs' accuracy
    of ``preds`` (one row per pair of ``pairs``); return the per-pair metric columns.

    The one scoring path of checkpoints and baselines: both are scored on the same pairs, the
    same metrics and the same images.
    """
    columns = compare(preds, pairs.targets, "pd", arch=arch, metrics=metrics, include_slow=include_slow)
    row.update(summarise(columns))
    row.update(variety(preds, pairs.targets, "pd", pairs.frame["target_mask"].to_numpy()))
    row.update(scorer.score(preds))
    return columns


def _predict(info: CheckpointInfo, pairs: _Pairs, out: np.ndarray, batch_size: int, arch: Architecture) -> None:
    """Fill ``out`` with the checkpoint's predictions; the model is released on return."""
    import torch

    from weightlake.experiments.infer import load_merger

    assert info.config is not None
    if info.config.n_values != arch.n_params:
        raise ArchitectureError(f"the model predicts {info.config.n_values} values but zoo {pairs.zoo!r} models "
                                f"have {arch.n_params}")
    model, _, _ = load_merger(info.path, config=info.config)
    try:
        with torch.inference_mode():
            for start in range(0, len(pairs.positions), batch_size):
                batch = pairs.dataset[pairs.positions[start:start + batch_size]]
                out[start:start + len(batch["x1"])] = model(batch["x1"], batch["x2"]).numpy()
    finally:
        del model
        gc.collect()


def _store(tx: Transaction, row: dict[str, Any], pairs: _Pairs, preds: np.ndarray) -> None:
    from weightlake.storage.tensors import write_segment

    sid = source_id(row["checkpoint_path"], row["scenario"], row["split"])
    row["source_id"] = sid
    path = tx.new_array_path(PREDICTIONS, sid)
    write_segment(path, preds, preds.shape[1])
    frame = pairs.frame
    meta = pl.DataFrame({
        "source_kind": "checkpoint", "source_file": row["checkpoint_path"], "row": pairs.positions,
        "kind": "PD", "step": row.get("epoch"), "loss": row.get("loss"), "scenario": row["scenario"],
        "split": row["split"], "pair_id": frame["pair_id"], "a_id": frame["a_id"], "b_id": frame["b_id"],
        "target_id": frame["target_id"], "snapshot": row["snapshot"], "array_row": np.arange(len(preds)),
    }, strict=False)
    stage_predictions(tx, sid, meta, path)


class _AccuracyScorer:
    """Rebuilds predicted CNNs and scores them on held-out images of their target's classes."""

    def __init__(self, arch: Architecture, images: str | None, n_models: int, per_class: int | None,
                 pairs: _Pairs) -> None:
        self.arch, self.per_class = arch, per_class
        self.notes: list[str] = []
        self.picks = np.unique(np.linspace(0, len(pairs.positions) - 1, max(n_models, 0)).round().astype(np.int64)) \
            if n_models > 0 else np.empty(0, dtype=np.int64)
        self.data = self._load(images) if len(self.picks) else None
        self.images = images if self.data is not None else None
        self.activations = pairs.frame["activation"].to_list()
        self.classes = [_classes(int(m)) for m in pairs.frame["target_mask"].to_list()]
        self.gt = self._scores(pairs.targets) if self.data is not None else None

    def _load(self, images: str | None) -> tuple[np.ndarray, np.ndarray] | None:
        from weightlake.zoo.idx import load_dataset

        if images is None:
            self.notes.append("accuracy skipped: no image data given")
            return None
        try:
            return load_dataset(images, "test")
        except (IngestError, OSError) as exc:
            self.notes.append(f"accuracy skipped: image data {images!r} unavailable ({exc})")
            return None

    def _scores(self, vectors: np.ndarray) -> list[float]:
        from weightlake.zoo.cnn import build_cnn
        from weightlake.zoo.idx import select_classes
        from weightlake.zoo.train import evaluate_accuracy

        assert self.data is not None
        out = []
        for i in self.picks:
            imgs, labels = select_classes(*self.data, self.classes[i], per_class=self.per_class)
            model = build_cnn(self.arch, self.activations[i], vectors[i])
            out.append(evaluate_accuracy(model, imgs, labels) if len(labels) else float("nan"))
        return out

    def score(self, preds: np.ndarray) -> dict[str, Any]:
        if self.data is None or self.gt is None:
            return {"pd_accuracy": float("nan"), "gt_accuracy": float("nan"), "accuracy_models": 0,
                    "accuracy_images": None, "accuracy_note": self.notes[0] if self.notes else "no models asked for"}
        pd_scores = self._scores(preds)
        return {"pd_accuracy": float(np.nanmean(pd_scores)), "gt_accuracy": float(np.nanmean(self.gt)),
                "accuracy_models": len(pd_scores), "accuracy_images": self.images,
                "accuracy_note": f"test images of each target's classes ({self.per_class or 'all'} per class); "
                                 "argmax over all logits"}


def _classes(mask: int) -> list[int]:
    return [d for d in range(32) if mask >> d & 1]
