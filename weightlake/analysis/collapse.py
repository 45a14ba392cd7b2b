"""Degenerate rows and collapsed prediction sets: when a metric cannot mean anything.

Two scales of degeneracy:

* a **row** can be constant, the zero vector, non-finite, or hold very few distinct
  values (:func:`degenerate_rows` flags each); row metrics then return the value their
  docstrings state (often NaN), and these flags explain it;
* a **set** of predictions can collapse: the model emits (nearly) one vector whatever its
  input, as over 99 % of the predicted rows of many merging runs did
  (:func:`collapse_report`).  Statistics that need variety across rows, like
  :func:`across_rows_pearson`, are then reported as NaN with the reason rather than as
  a number computed from noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from weightlake.analysis._rows import BLOCK_ROWS, check_pair, default_workers, float_rows, row_spans, run_spans
from weightlake.errors import QueryError

COLLAPSE_SHARE = 0.99
"""A set is collapsed when more than this share of rows equal its most common row."""

PARTIAL_COLLAPSE_SHARE = 0.5
"""A set is partially collapsed when more than this share (but not more than
:data:`COLLAPSE_SHARE`) of rows equal its most common row: most inputs then get one output
vector, so the model ignores its input for most of them.  Pair targets of a zoo are distinct
models, so a healthy prediction set has a top-row share near ``1 / n``; half is far above
anything input-conditioned predictions produce and well below full collapse."""

MIN_UNIQUE = 8
"""Rows with fewer distinct values are flagged ``few_unique`` by :func:`degenerate_rows`."""


def degenerate_rows(x: Any, *, min_unique: int = MIN_UNIQUE, workers: int | None = None) -> dict[str, np.ndarray]:
    """Flag rows on which some metrics are undefined or meaningless.

    Parameters
    ----------
    x : array or tensor ``[n, P]`` (or ``[P]``)
    min_unique : int
        Rows with fewer distinct values than this are ``few_unique``: their value
        histograms are a few spikes, so KL/JS and W1 describe atoms, not a spread.

    Returns
    -------
    dict of boolean arrays ``[n]``:
        ``constant`` (all values equal: Pearson and NMSE against it are NaN),
        ``zero_norm`` (all zero: cosine and log-norm difference are NaN),
        ``nonfinite`` (NaN or inf present: most metrics are NaN),
        ``few_unique`` (fewer than ``min_unique`` distinct values), and
        ``any`` (any of these); plus ``n_unique``, the count of distinct values (int).
    """
    rows = float_rows(x, keep_float32=True)
    n = rows.shape[0]
    flags = {k: np.zeros(n, dtype=bool) for k in ("constant", "zero_norm", "nonfinite", "few_unique")}
    n_unique = np.zeros(n, dtype=np.int64)
    nthreads = default_workers() if workers is None else workers

    def job(span: tuple[int, int]) -> None:
        i, j = span
        block = np.sort(rows[i:j], axis=-1)
        flags["nonfinite"][i:j] = ~np.isfinite(block).all(-1)
        flags["zero_norm"][i:j] = (block == 0).all(-1)
        n_unique[i:j] = 1 + (block[:, 1:] != block[:, :-1]).sum(-1) if block.shape[-1] else 0
        flags["constant"][i:j] = n_unique[i:j] <= 1

    run_spans(job, row_spans(n, BLOCK_ROWS, nthreads), nthreads)
    flags["few_unique"] = n_unique < min_unique
    flags["any"] = np.logical_or.reduce([flags[k] for k in ("constant", "zero_norm", "nonfinite", "few_unique")])
    return {**flags, "n_unique": n_unique}


@dataclass(frozen=True)
class CollapseReport:
    """How many distinct vectors a set of rows really holds.

    ``top_row_share`` is the share of rows equal (within ``atol``) to the most common
    row; ``unique_value_share`` the number of distinct values over the number of values.
    ``collapsed`` is true when there are at least two rows and either all are one
    vector or ``top_row_share > threshold``; ``partial`` is true when the set is not
    collapsed but ``top_row_share > partial_threshold`` (:data:`PARTIAL_COLLAPSE_SHARE`);
    ``reason`` says which in one sentence, with the share.
    """

    n_rows: int
    n_distinct_rows: int
    top_row_share: float
    unique_value_share: float
    collapsed: bool
    reason: str
    atol: float = 0.0
    threshold: float = COLLAPSE_SHARE
    partial: bool = False
    partial_threshold: float = PARTIAL_COLLAPSE_SHARE

    @property
    def status(self) -> str:
        """``"collapsed"``, ``"partial"`` or ``"varied"``."""
        return "collapsed" if self.collapsed else ("partial" if self.partial else "varied")

    def __post_init__(self) -> None:
        if self.n_rows < 0 or not 0 <= self.n_distinct_rows <= self.n_rows:
            raise QueryError(f"inconsistent row counts: {self.n_distinct_rows!r} distinct of {self.n_rows!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CollapseReport:
        return cls(**data)


def _snapped(rows: np.ndarray, atol: float) -> np.ndarray:
    """Rows as compared: snapped to a grid of step ``atol`` when ``atol > 0``, ``-0.0`` made ``0.0``."""
    grid = np.round(rows / atol) if atol > 0 else rows
    return np.ascontiguousarray(grid + 0.0)  # -0.0 + 0.0 is 0.0, so equal values give equal bytes


def _group_rows(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(first, inverse, counts)`` of the bitwise-distinct rows, like ``np.unique(..., axis=0)``.

    Rows are grouped by a 64-bit hash of their bytes, then every row is checked bit for
    bit against its group's first row; on a hash collision the exact (slower) sort of
    whole rows decides instead.
    """
    hashes = np.fromiter((hash(row.tobytes()) for row in grid), dtype=np.int64, count=grid.shape[0])
    _, first, inverse, counts = np.unique(hashes, return_index=True, return_inverse=True, return_counts=True)
    bits = grid.view(np.int32 if grid.dtype.itemsize == 4 else np.int64)
    exact = all(np.array_equal(bits[i:i + BLOCK_ROWS], bits[first[inverse[i:i + BLOCK_ROWS]]])
                for i in range(0, grid.shape[0], BLOCK_ROWS))
    if exact:
        return first, inverse, counts
    keys = grid.view(np.dtype((np.void, grid.dtype.itemsize * grid.shape[1])))[:, 0]
    _, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
    return first, inverse, counts


def _share_near(rows: np.ndarray, center: np.ndarray, atol: float) -> float:
    """Share of rows within ``atol`` (max-abs) of ``center``, in blocks."""
    near = 0
    for i in range(0, rows.shape[0], BLOCK_ROWS):
        near += int((np.abs(rows[i:i + BLOCK_ROWS] - center).max(-1) <= atol).sum())
    return near / rows.shape[0]


def _distinct_rows(rows: np.ndarray, atol: float) -> tuple[np.ndarray, float, np.ndarray]:
    """``(snapped rows, top_row_share, index of each distinct row's first occurrence)``."""
    grid = _snapped(rows, atol)
    first, _, counts = _group_rows(grid)
    mode = int(np.argmax(counts))
    top = _share_near(rows, rows[first[mode]], atol) if atol > 0 else counts[mode] / rows.shape[0]
    return grid, float(top), first


def _count_unique(values: np.ndarray) -> int:
    flat = np.sort(values, axis=None)
    return int(flat.size and 1 + np.count_nonzero(flat[1:] != flat[:-1]))


def collapse_report(pred: Any, *, atol: float = 0.0, threshold: float = COLLAPSE_SHARE,
                    partial_threshold: float = PARTIAL_COLLAPSE_SHARE) -> CollapseReport:
    """Count the distinct rows of a prediction set and say whether it collapsed.

    Parameters
    ----------
    pred : array or tensor ``[n, P]``
    atol : float
        0 compares rows bit for bit (``-0.0`` equals ``0.0``).  With ``atol > 0`` values
        are snapped to a grid of step ``atol`` to count distinct rows and values, and
        ``top_row_share`` counts rows within ``atol`` (largest absolute difference) of
        the most common row.
    threshold : float
        Collapse when more than this share of rows is the most common row (default 0.99).
    partial_threshold : float
        Partial collapse when more than this share (and not more than ``threshold``) is
        the most common row (default :data:`PARTIAL_COLLAPSE_SHARE`, 0.5).

    Returns
    -------
    CollapseReport
        For no rows: zero counts, NaN shares, not collapsed.  One row cannot collapse.
    """
    _check_collapse_params(atol, threshold)
    if not 0 < partial_threshold <= threshold:
        raise QueryError(f"need 0 < partial_threshold <= threshold, got {partial_threshold!r} and {threshold!r}")
    rows = float_rows(pred, keep_float32=True)
    n = rows.shape[0]
    if n == 0 or rows.shape[1] == 0:
        return CollapseReport(n, 0, float("nan"), float("nan"), False, "no rows (or empty rows): nothing to compare",
                              atol, threshold, False, partial_threshold)
    grid, top, first = _distinct_rows(rows, atol)
    unique_share = _count_unique(grid[first]) / rows.size
    collapsed, reason = _verdict(n, len(first), top, threshold)
    partial = not collapsed and n >= 2 and top > partial_threshold
    if partial:
        reason = (f"partial collapse: {top:.2%} of {n:,} rows are one vector (partial threshold "
                  f"{partial_threshold:.0%}, full {threshold:.0%}); {len(first):,} distinct rows")
    return CollapseReport(n, len(first), top, unique_share, collapsed, reason, atol, threshold, partial,
                          partial_threshold)


def _check_collapse_params(atol: float, threshold: float) -> None:
    if atol < 0 or not 0 < threshold <= 1:
        raise QueryError(f"need atol >= 0 and 0 < threshold <= 1, got atol={atol!r}, threshold={threshold!r}")


def _verdict(n: int, distinct: int, top: float, threshold: float) -> tuple[bool, str]:
    if n < 2:
        return False, "a single row: collapse needs at least two rows to compare"
    if distinct == 1:
        return True, f"all {n:,} rows are the same vector: the model outputs one vector regardless of input"
    if top > threshold:
        return True, (f"{top:.2%} of {n:,} rows equal the most common row (collapse threshold {threshold:.0%}); "
                      f"only {distinct:,} distinct rows")
    return False, f"{distinct:,} distinct rows of {n:,}; the most common row covers {top:.2%}"


@dataclass(frozen=True)
class RowStatistic:
    """A statistic across rows, with why it is NaN when it is (``reason`` is empty otherwise)."""

    value: float
    n_used: int
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _column_moments(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-column co-moment, both second moments (all times n) and a 'varies in both' mask.

    Accumulated over row blocks as sums of differences from the first row, which keeps
    the one-pass formulas accurate when a column's mean is large next to its spread.
    """
    sums = np.zeros((5, a.shape[1]))
    a0, b0 = a[0].astype(np.float64), b[0].astype(np.float64)
    varies_a, varies_b = np.zeros(a.shape[1], dtype=bool), np.zeros(a.shape[1], dtype=bool)
    for i in range(0, a.shape[0], BLOCK_ROWS):
        da, db = a[i:i + BLOCK_ROWS] - a0, b[i:i + BLOCK_ROWS] - b0
        sums += np.stack([da.sum(0), db.sum(0), (da * da).sum(0), (db * db).sum(0), (da * db).sum(0)])
        varies_a |= (da != 0).any(0)
        varies_b |= (db != 0).any(0)
    n = a.shape[0]
    s_a, s_b, s_aa, s_bb, s_ab = sums
    return s_ab - s_a * s_b / n, s_aa - s_a**2 / n, s_bb - s_b**2 / n, varies_a & varies_b


def across_rows_pearson(pred: Any, ref: Any, *, atol: float = 0.0,
                        threshold: float = COLLAPSE_SHARE) -> RowStatistic:
    """Per-parameter Pearson correlation across rows, averaged over parameters.

    For each parameter ``j``, the correlation of ``pred[:, j]`` with ``ref[:, j]`` over
    the ``n`` pairs: does the prediction follow the reference from model to model?
    Parameters that are constant across the rows of either side are left out
    (``n_used`` counts the rest).  This needs variety across rows, so it is NaN, with
    the reason, when either side collapsed (:func:`collapse_report` with ``atol`` and
    ``threshold``), when there are fewer than 3 rows, or when no parameter varies in both.

    Returns
    -------
    RowStatistic
        ``value`` in ``[-1, 1]`` (higher is better) or NaN; ``n_used``; ``reason``.
    """
    a, b = float_rows(pred, keep_float32=True), float_rows(ref, keep_float32=True)
    check_pair(a, b)
    if a.shape[0] != b.shape[0]:
        return RowStatistic(float("nan"), 0, "needs as many pred rows as ref rows; one vector has no spread")
    if a.shape[0] < 3:
        return RowStatistic(float("nan"), 0, f"needs at least 3 row pairs, got {a.shape[0]}")
    _check_collapse_params(atol, threshold)
    for side, rows in (("pred", a), ("ref", b)):
        _, top, first = _distinct_rows(rows, atol)
        collapsed, reason = _verdict(rows.shape[0], len(first), top, threshold)
        if collapsed:
            return RowStatistic(float("nan"), 0, f"{side} collapsed: {reason}")
    cov, var_a, var_b, varies = _column_moments(a, b)
    if not varies.any():
        return RowStatistic(float("nan"), 0, "no parameter varies across rows in both pred and ref")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.clip(cov[varies] / np.sqrt(var_a[varies] * var_b[varies]), -1.0, 1.0)
    used = np.isfinite(r)
    if not used.any():
        return RowStatistic(float("nan"), 0, "no parameter has a finite correlation")
    return RowStatistic(float(r[used].mean()), int(used.sum()))


__all__ = [
    "COLLAPSE_SHARE",
    "PARTIAL_COLLAPSE_SHARE",
    "CollapseReport",
    "RowStatistic",
    "across_rows_pearson",
    "collapse_report",
    "degenerate_rows",
]
