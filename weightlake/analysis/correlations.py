"""Correlations of parameters and per-layer aggregates with model metadata.

Every parameter of every model (a block ``[n, P]``) is correlated against every metadata column
(``[n, k]``) in one matrix product: for Pearson, ``r = Xc^T Yc / (|Xc| |Yc|)`` accumulated over row
blocks in float64; for Spearman, the same on average ranks (ties share the mean of their
positions, as ``scipy.stats.rankdata``).  p-values use the t distribution with ``n - 2``
degrees of freedom, written as a regularised incomplete beta function
(``p = I_{1 - r^2}((n - 2) / 2, 1 / 2)``, as ``scipy.stats.pearsonr`` and ``spearmanr``).  A
Spearman p-value of at most :data:`SPEARMAN_EXACT_MAX_N` models is the exact permutation test
instead (:func:`spearman_exact_pvalues`, as ``scipy.stats.permutation_test``): there the t form gave
``p = 0`` to a perfect rank order of 3-6 models, where the exact test gives 1/3 ... 1/360, and
0.333 to 3 models in the order of their epochs with two epochs tied, where it gives 0.667.  Above it the
Spearman p-value is the t form (as ``scipy.stats.spearmanr``), never below ``2 / n!``
(:func:`spearman_p_floor`).
Multiple testing: Benjamini-Hochberg q-values and Bonferroni-adjusted p-values, computed within
one *family* = all (feature, metadata column) tests of one method in one group.

Metadata columns are expanded into numbers by :func:`metadata_matrix`: numeric and boolean
columns as they are, text columns one-hot (``activation=relu``), list columns (class subsets such
as ``[0, 3, 7]``, also as their text repr) into per-value presence (``classes has 3``) plus a count
(``classes count``, left out when an asked-for column such as ``n_classes`` holds the same
values).  A constant column (within a group), or a feature with a non-finite value,
has ``r = p = q = NaN`` and is left out of its family.

Heatmaps are drawn by :mod:`~weightlake.analysis.heatmaps` (the two ``plot_*`` functions here
forward to it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from weightlake.analysis._rows import default_workers
from weightlake.arch import CNN_S, Architecture
from weightlake.errors import ArchitectureError

METHODS: tuple[str, ...] = ("pearson", "spearman")
AGGREGATE_STATS: tuple[str, ...] = ("l2_norm", "mean", "std", "abs_max", "bias_mean", "bias_norm")
SPECTRAL_STATS: tuple[str, ...] = (
    "spectral_norm", "stable_rank", "effective_rank", "condition_number", "entropy", "mp_sigma2",
    "n_spikes", "tw_stat", "level_spacing_ratio", "ipr_mean", "alpha",
)
RESULT_COLUMNS: tuple[str, ...] = ("feature", "param", "layer", "against", "method", "r", "p", "q",
                                   "p_bonferroni", "n")
"""Columns of the long result table (after any group-key columns)."""
SPEARMAN_EXACT_MAX_N = 7
"""Largest ``n`` whose Spearman p-values come from all ``n!`` pairings (5,040 at 7; the largest ``n``
that ``scipy.stats.permutation_test`` enumerates exactly at its default 9,999 resamples)."""


# -- metadata --------------------------------------------------------------------------------------
def metadata_matrix(meta: Any, columns: Sequence[str] | None = None, *, max_levels: int = 64
                    ) -> tuple[list[str], np.ndarray]:
    """Expand metadata columns into a float64 design matrix ``[n, k]`` and its column names.

    Parameters
    ----------
    meta : polars.DataFrame or mapping of column -> sequence
    columns : sequence of str, optional
        Columns to use (default: all).
    max_levels : int
        Largest number of distinct values a text column may have before one-hot expansion is refused.

    Returns
    -------
    names : list of str
    values : numpy.ndarray
        Nulls become NaN (which makes that column's correlations NaN).

    Raises
    ------
    ArchitectureError
        An unknown column, or a text column with too many levels (give it as a list column instead).
    """
    import polars as pl

    frame = _as_frame(meta)
    names: list[str] = []
    parts: list[np.ndarray] = []
    for col in columns if columns is not None else frame.columns:
        if col not in frame.columns:
            raise ArchitectureError(f"metadata has no column {col!r}; columns: {frame.columns}")
        for name, values in _expand_column(frame[col], max_levels, pl):
            names.append(name)
            parts.append(values)
    # a list column's count that another asked-for column already holds ("classes count" and
    # n_classes) is one variable: tested twice it would enter the BH family twice
    plain = {n: v for n, v in zip(names, parts, strict=True) if n in frame.columns}
    twins = {n for n, v in zip(names, parts, strict=True) if n.endswith(" count") and n not in frame.columns
             and any(np.array_equal(v, other, equal_nan=True) for other in plain.values())}
    kept = [i for i, n in enumerate(names) if n not in twins]
    names, parts = [names[i] for i in kept], [parts[i] for i in kept]
    values = np.column_stack(parts) if parts else np.empty((frame.height, 0))
    return names, values


def _as_frame(meta: Any) -> Any:
    import polars as pl

    return meta if isinstance(meta, pl.DataFrame) else pl.DataFrame(dict(meta))


def _expand_column(series: Any, max_levels: int, pl: Any) -> list[tuple[str, np.ndarray]]:
    name, dtype = series.name, series.dtype
    if dtype == pl.String and _looks_like_lists(series, pl):
        series = series.str.json_decode(pl.List(pl.Int64))
        dtype = series.dtype
    if isinstance(dtype, pl.List):
        return _expand_lists(series, pl)
    if dtype.is_numeric() or dtype == pl.Boolean:
        return [(name, series.cast(pl.Float64).fill_null(np.nan).to_numpy())]
    levels = sorted(str(v) for v in series.drop_nulls().unique().to_list())
    if len(levels) > max_levels:
        raise ArchitectureError(
            f"metadata column {name!r} has {len(levels)} distinct values (more than max_levels={max_levels}); "
            "pass fewer columns, raise max_levels, or give it as a list column")
    text = series.cast(pl.String)
    return [(f"{name}={level}", (text == level).fill_null(False).cast(pl.Float64).to_numpy()) for level in levels]


def _looks_like_lists(series: Any, pl: Any) -> bool:
    values = series.drop_nulls()
    return values.len() > 0 and bool((values.str.starts_with("[") & values.str.ends_with("]")).all())


def _expand_lists(series: Any, pl: Any) -> list[tuple[str, np.ndarray]]:
    name = series.name
    levels = sorted(v for v in series.explode().drop_nulls().unique().to_list())
    out = [(f"{name} has {v}", series.list.contains(v).fill_null(False).cast(pl.Float64).to_numpy())
           for v in levels]
    out.append((f"{name} count", series.list.len().cast(pl.Float64).fill_null(np.nan).to_numpy()))
    return out


# -- correlation kernels ------------------------------------------------------------------------------
def pearson_matrix(x: Any, y: Any, block: int = 4096, workers: int | None = None) -> np.ndarray:
    """Pearson correlations ``[F, k]`` of every column of ``x [n, F]`` with every column of ``y [n, k]``.

    One pass over ``x`` in row blocks (float64, on ``workers`` threads), so ``x`` may be a float32
    memory map of any size.  Columns are shifted by their first value, which keeps sums of squares
    accurate and makes a constant column exactly zero (NaN result); since ``y`` is centred the
    shift does not change the cross products.  Constant or non-finite columns give NaN.
    """
    x, yc, y_ss = _prepare(x, y)
    n, f = x.shape
    if n == 0:
        return np.full((f, yc.shape[1]), np.nan)
    origin = x[0].astype(np.float64)
    # one product gives the cross products and (against the ones column) the column sums
    y_one = np.column_stack([yc, np.ones(n)])
    step = max(1, min(block, _PEARSON_ROWS))
    buffers = _ThreadBuffers()

    def run(i: int) -> tuple[np.ndarray, np.ndarray]:
        part = x[i:i + step]
        b = buffers.get("rows", (step, f))[:len(part)]
        np.subtract(part, origin, out=b)
        return np.einsum("ij,ij->j", b, b), b.T @ y_one[i:i + step]

    with _blas_one_thread(), ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        parts = list(pool.map(run, range(0, n, step)))
    s2 = np.sum([part[0] for part in parts], axis=0)
    both = np.sum([part[1] for part in parts], axis=0)
    cross, s1 = both[:, :-1], both[:, -1]
    with np.errstate(invalid="ignore"):
        x_ss = s2 - s1 * s1 / n
    valid = np.isfinite(s2) & (s2 > 0)
    return _normalise(cross, np.maximum(x_ss, 0.0), y_ss, valid)


_PEARSON_ROWS = 512
"""Rows per Pearson block: 512 x 2,464 float64 is 10 MB, reused by each thread (no page faults)."""


@contextmanager
def _blas_one_thread() -> Iterator[None]:
    """BLAS on one thread while our own threads run the blocks.

    OpenBLAS's threads spin while they wait: under our two block threads they doubled the CPU time
    of the products (Pearson 0.81 -> 0.39 s of CPU for 36,468 x 2,464 against 19 columns).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        yield


class _ThreadBuffers:
    """Scratch arrays kept per thread for one kernel call, so blocks do not fault in fresh pages."""

    def __init__(self) -> None:
        import threading

        self._local = threading.local()

    def get(self, name: str, shape: tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
        buf = getattr(self._local, name, None)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.empty(shape, dtype=dtype)
            setattr(self._local, name, buf)
        return buf


def spearman_matrix(x: Any, y: Any, block: int = 128, workers: int | None = None) -> np.ndarray:
    """Spearman correlations ``[F, k]``: Pearson on average ranks, columns of ``x`` ranked in parallel blocks.

    A column's centred sum of squared ranks is ``(n^3 - n) / 12`` less ``(t^3 - t) / 12`` for every
    group of ``t`` tied values, so ranks are only ever multiplied with the centred ``y`` ranks.
    """
    x = np.asarray(x)
    y = np.asarray(y, dtype=np.float64)
    y_ranks = average_ranks(y[:, None] if y.ndim == 1 else y).T
    y_ranks[:, ~np.isfinite(y).reshape(len(y), -1).all(axis=0)] = np.nan
    _, yc, y_ss = _prepare(x, y_ranks)
    n = x.shape[0]
    buffers = _ThreadBuffers()

    def run(j: int) -> np.ndarray:
        part = x[:, j:j + block]
        ranks, tie_ss, finite = _rank_block(part, buffers)
        x_ss = n * (n * n - 1) / 12 - tie_ss
        return _normalise(ranks @ yc, x_ss, y_ss, finite & (x_ss > 0))

    starts = range(0, x.shape[1], block)
    with _blas_one_thread(), ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        parts = list(pool.map(run, starts))
    return np.concatenate(parts) if parts else np.empty((0, yc.shape[1]))


def _prepare(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if x.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ArchitectureError(f"expected features [n, F] and metadata [n, k] with the same n, got "
                                f"{x.shape} and {y.shape}")
    yc = y - y.mean(axis=0)
    return x, yc, np.einsum("ij,ij->j", yc, yc)


def _normalise(cross: np.ndarray, x_ss: np.ndarray, y_ss: np.ndarray, valid: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = cross / np.sqrt(np.outer(x_ss, y_ss))
    r[~valid] = np.nan
    r[:, ~(y_ss > 0)] = np.nan
    return np.clip(r, -1.0, 1.0)


def average_ranks(block: Any) -> np.ndarray:
    """Average ranks (1-based, ties get their mean position) of each column of ``block [n, c]``, returned ``[c, n]``.

    Agrees with ``scipy.stats.rankdata(block, axis=0).T`` for finite input.
    """
    return _rank_block(np.asarray(block))[0]


def _rank_block(block: np.ndarray, buffers: _ThreadBuffers | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ranks ``[c, n]``, the tie correction ``sum (t^3 - t) / 12`` per column, which columns are all finite.

    The ranks may live in a per-thread buffer of ``buffers`` (valid until that thread's next call).
    """
    buffers = buffers or _ThreadBuffers()
    n, c = block.shape
    order, sorted_vals, finite = _sorted_order(block, buffers)
    ranks = buffers.get("ranks", (c, n))
    positions = _positions(n)
    for i in range(c):  # per-row scatter: about twice as fast as put_along_axis here
        ranks[i, order[i]] = positions
    # ties: sorted position pos + 1 holds the same value as pos (rare: a sparse fix-up of the ranks)
    rows, pos = np.nonzero(sorted_vals[:, 1:] == sorted_vals[:, :-1])
    tie_ss = np.zeros(c)
    if len(rows):
        first, last, run = _tie_runs(rows * n + pos)
        start, stop = pos[first], pos[last]
        size = stop - start + 2  # a run covers sorted positions start .. stop + 1
        mean = (start + stop + 1) / 2 + 1
        np.add.at(tie_ss, rows[first], (size ** 3 - size) / 12)
        ranks[rows, order[rows, pos]] = mean[run]
        ranks[rows, order[rows, pos + 1]] = mean[run]
    return ranks, tie_ss, finite


def _tie_runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of consecutive values in ascending ``flat``: each run's first and last entry, each entry's run id."""
    new = np.ones(len(flat), dtype=bool)
    new[1:] = np.diff(flat) != 1
    first = np.flatnonzero(new)
    last = np.append(first[1:], len(flat)) - 1
    return first, last, np.cumsum(new) - 1


_POSITIONS: dict[int, np.ndarray] = {}


def _positions(n: int) -> np.ndarray:
    if n not in _POSITIONS:
        _POSITIONS[n] = np.arange(1, n + 1, dtype=np.float64)
    return _POSITIONS[n]


def _sorted_order(block: np.ndarray, buffers: _ThreadBuffers) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(order [c, n], sorted values [c, n] float64, finite [c])`` of each column of ``block [n, c]``.

    float32 input takes a fast path: each value, widened exactly to float64, carries its row index
    in the low mantissa bits that widening leaves zero, so a plain (SIMD) sort of these keys is an
    argsort; clearing the index bits again leaves the exact sorted values.  A non-finite value
    ends up first or last (an infinity carrying index bits is a NaN, and NaNs sort last).  Other
    dtypes use ``numpy.argsort``.
    """
    n, c = block.shape
    shift = max(1, (n - 1).bit_length())
    if block.dtype != np.float32 or shift > 29:
        xt = np.ascontiguousarray(block.T, dtype=np.float64) + 0.0
        order = np.argsort(xt, axis=1, kind="stable")  # timsort: fast on the runs of few-level metadata
        vals = np.take_along_axis(xt, order, axis=1)
        return order, vals, _all_finite(block)
    keys = buffers.get("keys", (c, n))
    bits = keys.view(np.uint64)
    index = _row_index(n)
    for r in range(0, n, _TRANSPOSE_ROWS):  # transposed in cache-sized pieces: 3x faster than one strided copy
        stop = r + _TRANSPOSE_ROWS
        np.add(block[r:stop].T, 0.0, out=keys[:, r:stop])  # widen; -0.0 -> +0.0, so both zeros are one tie group
        bits[:, r:stop] |= index[r:stop]
    keys.sort(axis=1)
    finite = np.isfinite(keys[:, 0]) & np.isfinite(keys[:, -1]) if n else np.ones(c, dtype=bool)
    mask = np.uint64((1 << shift) - 1)
    order = buffers.get("order", (c, n), np.uint64)
    np.bitwise_and(bits, mask, out=order)
    bits &= ~mask
    return order.view(np.int64), keys, finite


_TRANSPOSE_ROWS = 256
_ROW_INDEX: dict[int, np.ndarray] = {}


def _row_index(n: int) -> np.ndarray:
    if n not in _ROW_INDEX:
        _ROW_INDEX[n] = np.arange(n, dtype=np.uint64)
    return _ROW_INDEX[n]


def _all_finite(block: np.ndarray) -> np.ndarray:
    if block.dtype.kind != "f":
        return np.ones(block.shape[1], dtype=bool)
    return np.isfinite(block.min(axis=0)) & np.isfinite(block.max(axis=0))


# -- p-values and multiple testing -----------------------------------------------------------------------
def correlation_pvalues(r: Any, n: int) -> np.ndarray:
    """Two-sided p-values of correlations ``r`` from ``n`` observations (t test, ``n - 2`` d.o.f.)."""
    from scipy.special import betainc

    r = np.asarray(r, dtype=np.float64)
    if n < 3:
        return np.full(r.shape, np.nan)
    return betainc((n - 2) / 2, 0.5, np.clip(1 - r * r, 0.0, 1.0))


def spearman_p_floor(n: int) -> float:
    """``2 / n!``: the smallest two-sided p-value of a rank correlation of ``n`` values (one ordering of
    ``n!`` and its reverse; ``scipy.stats.permutation_test`` gives exactly this for a perfect order),
    below which the t approximation goes for small ``n`` (0 at ``rho = +-1``)."""
    import math

    return 2 / math.factorial(n) if n <= 170 else 0.0  # 2 / 171! is below the smallest double


def spearman_exact_pvalues(x: Any, y: Any, r: Any) -> np.ndarray:
    """Two-sided exact permutation p-values ``[F, k]`` of the Spearman correlations ``r`` of ``x [n, F]``
    with ``y [n, k]``, over all ``n!`` pairings (ties keep their average ranks).

    As ``scipy.stats.permutation_test(..., permutation_type="pairings")``: ``p = min(1, 2 min(P(T <= t),
    P(T >= t)))`` with a relative tolerance on equal statistics; NaN where ``r`` is NaN.  For ``n <=``
    :data:`SPEARMAN_EXACT_MAX_N`.  The null distribution of a feature depends only on its multiset
    of ranks (a reordering of the feature reorders the pairings), so it is computed once per tie
    pattern and column: once for all features without ties.
    """
    import itertools

    x, y, r = np.asarray(x), np.asarray(y, dtype=np.float64), np.asarray(r, dtype=np.float64)
    n = x.shape[0]
    if n > SPEARMAN_EXACT_MAX_N:
        raise ValueError(f"exact Spearman p-values take n <= {SPEARMAN_EXACT_MAX_N}, got n = {n}")
    p = np.full(r.shape, np.nan)
    ok = np.isfinite(r)
    if n < 2 or not ok.any():
        return p
    xr = average_ranks(np.nan_to_num(x.astype(np.float64)))  # [F, n]; a non-finite feature has r = NaN anyway
    xr -= xr.mean(axis=1, keepdims=True)
    yr = average_ranks(np.nan_to_num(y))  # [k, n]
    yr -= yr.mean(axis=1, keepdims=True)
    observed = xr @ yr.T  # [F, k]: the covariance of ranks, monotone in rho under every pairing
    tol = np.abs(observed) * 1e-13 + 1e-12
    patterns, which = np.unique(np.sort(xr, axis=1), axis=0, return_inverse=True)
    which = which.ravel()
    perms = np.array(list(itertools.permutations(range(n))), dtype=np.intp)  # [n!, n]
    m = len(perms)
    for j in np.flatnonzero(ok.any(axis=0)):
        nulls = np.sort(yr[j][perms] @ patterns.T, axis=0)  # [n!, patterns]
        for u in range(len(patterns)):
            rows = np.flatnonzero((which == u) & ok[:, j])
            if not len(rows):
                continue
            t, e = observed[rows, j], tol[rows, j]
            less = np.searchsorted(nulls[:, u], t + e, side="right") / m
            greater = (m - np.searchsorted(nulls[:, u], t - e, side="left")) / m
            p[rows, j] = np.minimum(1.0, 2 * np.minimum(less, greater))
    return p


def bh_qvalues(p: Any) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) over all non-NaN entries; NaN stays NaN."""
    p = np.asarray(p, dtype=np.float64)
    flat = p.ravel()
    ok = ~np.isnan(flat)
    vals = flat[ok]
    order = np.argsort(vals)
    scaled = vals[order] * len(vals) / np.arange(1, len(vals) + 1)
    adjusted = np.empty_like(vals)
    adjusted[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    out = np.full_like(flat, np.nan)
    out[ok] = adjusted
    return out.reshape(p.shape)


def bonferroni(p: Any) -> np.ndarray:
    """Bonferroni-adjusted p-values ``min(1, m p)``, ``m`` = number of non-NaN entries."""
    p = np.asarray(p, dtype=np.float64)
    return np.minimum(p * np.count_nonzero(~np.isnan(p)), 1.0)


# -- long result tables --------------------------------------------------------------------------------
def correlate(features: Any, metadata: Any, *, feature_names: Sequence[str] | None = None,
              layers: Sequence[str] | None = None, params: Sequence[int] | None = None,
              columns: Sequence[str] | None = None, methods: Sequence[str] = METHODS,
              group_by: str | Sequence[str] | None = None, max_levels: int = 64) -> Any:
    """Correlate every feature with every expanded metadata column, optionally within groups.

    Parameters
    ----------
    features : array ``[n, F]`` or polars.DataFrame
        Parameters or aggregates of ``n`` models (a DataFrame supplies ``feature_names``).
    metadata : polars.DataFrame or mapping
        ``n`` rows of metadata, aligned with ``features``.
    feature_names, layers, params : sequence, optional
        Per-feature name (default ``"0"``, ``"1"``, ...), layer name (default null) and flat parameter
        index (default null).
    columns : sequence of str, optional
        Metadata columns to correlate against (default: all but the ``group_by`` columns).
    methods : sequence of {"pearson", "spearman"}
    group_by : str or sequence of str, optional
        Metadata columns; correlations are computed within each group of equal values.
    max_levels : int
        See :func:`metadata_matrix`.

    Returns
    -------
    polars.DataFrame
        Long format: group keys, then :data:`RESULT_COLUMNS`; one row per group x method x feature x
        metadata column.  q-values and Bonferroni are per (group, method) family.
    """
    import polars as pl

    meta = _as_frame(metadata)
    x, names = _feature_block(features, feature_names)
    keys = [group_by] if isinstance(group_by, str) else list(group_by or [])
    against = [c for c in (columns if columns is not None else meta.columns) if c not in keys]
    labels = _feature_labels(names, layers, params, x.shape[1])
    frames = []
    for key_values, rows in _groups(meta, keys):
        y_names, y = metadata_matrix(meta[rows] if keys else meta, against, max_levels=max_levels)
        for method in methods:
            frame = _method_frame(x[rows] if keys else x, y, y_names, method, labels)
            frames.append(frame.with_columns(*[pl.lit(v).alias(k) for k, v in zip(keys, key_values, strict=True)]))
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames).select(*keys, *RESULT_COLUMNS)


def _feature_block(features: Any, names: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    import polars as pl

    if isinstance(features, pl.DataFrame):
        return features.to_numpy(), list(names or features.columns)
    x = np.asarray(features)
    if x.ndim != 2:
        raise ArchitectureError(f"expected features [n, F], got shape {x.shape}")
    return x, list(names) if names is not None else [str(i) for i in range(x.shape[1])]


def _feature_labels(names: list[str], layers: Sequence[str] | None, params: Sequence[int] | None,
                    count: int) -> dict[str, Any]:
    for label, seq in (("feature_names", names), ("layers", layers), ("params", params)):
        if seq is not None and len(seq) != count:
            raise ArchitectureError(f"{label} has {len(seq)} entries for {count} features")
    return {"feature": names, "layer": list(layers) if layers is not None else [None] * count,
            "param": list(params) if params is not None else [None] * count}


def _groups(meta: Any, keys: list[str]) -> list[tuple[tuple[Any, ...], Any]]:
    import polars as pl

    if not keys:
        return [((), slice(None))]
    grouped = (meta.select(keys).with_row_index("__row").group_by(keys, maintain_order=True)
               .agg(pl.col("__row")).sort(keys))
    return [(tuple(row[k] for k in keys), np.asarray(row["__row"], dtype=np.int64))
            for row in grouped.iter_rows(named=True)]


def _method_frame(x: np.ndarray, y: np.ndarray, y_names: list[str], method: str, labels: dict[str, Any]) -> Any:
    import polars as pl

    if method not in METHODS:
        raise ArchitectureError(f"unknown correlation method {method!r}; expected one of {METHODS}")
    kernel = pearson_matrix if method == "pearson" else spearman_matrix
    r = kernel(x, y) if y.shape[1] else np.empty((x.shape[1], 0))
    n = x.shape[0]
    if method == "spearman" and n <= SPEARMAN_EXACT_MAX_N:
        p = spearman_exact_pvalues(x, y, r)
    else:
        p = correlation_pvalues(r, n)
        if method == "spearman":
            p = np.maximum(p, spearman_p_floor(n))  # NaN stays NaN
    f, k = r.shape
    per_feature = np.repeat(np.arange(f), k)  # gathers in polars: much faster than repeating Python strings
    return pl.DataFrame({
        "feature": pl.Series(labels["feature"], dtype=pl.String).gather(per_feature),
        "param": pl.Series(labels["param"], dtype=pl.Int32).gather(per_feature),
        "layer": pl.Series(labels["layer"], dtype=pl.String).gather(per_feature),
        "against": pl.Series(y_names, dtype=pl.String).gather(np.tile(np.arange(k), f)),
        "method": pl.repeat(method, f * k, dtype=pl.String, eager=True),
        "r": r.ravel(), "p": p.ravel(), "q": bh_qvalues(p).ravel(), "p_bonferroni": bonferroni(p).ravel(),
        "n": pl.repeat(n, f * k, dtype=pl.Int64, eager=True),
    })


# -- parameters and aggregates --------------------------------------------------------------------------
def param_correlations(flat_rows: Any, metadata: Any, arch: Architecture = CNN_S, **options: Any) -> Any:
    """:func:`correlate` every flat parameter (named as the CSV zoo's ``weight i`` / ``bias i``) with metadata."""
    arch.check_flat(flat_rows)
    layer_of = np.asarray(arch.layer_names, dtype=object)[arch.param_layer_index()]
    return correlate(flat_rows, metadata, feature_names=arch.csv_columns(), layers=list(layer_of),
                     params=list(range(arch.n_params)), **options)


def layer_aggregates(flat_rows: Any, arch: Architecture = CNN_S, spectral: bool = True, block: int = 4096) -> Any:
    """Per-layer summaries of each model, wide: columns ``"{layer}.{stat}"`` for stats in
    :data:`AGGREGATE_STATS` (and :data:`SPECTRAL_STATS` with ``spectral=True``), plus ``"all.l2_norm"``.

    Weight statistics use the layer's weight only; ``bias_mean`` / ``bias_norm`` its bias.
    """
    import polars as pl

    arch.check_flat(flat_rows)
    x = np.asarray(flat_rows)
    data: dict[str, np.ndarray] = {}
    for layer in arch.layers:
        w = x[:, layer.start:layer.bias_start].astype(np.float64)
        b = x[:, layer.bias_start:layer.stop].astype(np.float64)
        data.update({f"{layer.name}.l2_norm": np.linalg.norm(w, axis=1), f"{layer.name}.mean": w.mean(axis=1),
                     f"{layer.name}.std": w.std(axis=1), f"{layer.name}.abs_max": np.abs(w).max(axis=1),
                     f"{layer.name}.bias_mean": b.mean(axis=1), f"{layer.name}.bias_norm": np.linalg.norm(b, axis=1)})
    data["all.l2_norm"] = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    if spectral:
        data.update(_spectral_aggregates(x, arch, block))
    return pl.DataFrame(data)


def _spectral_aggregates(x: np.ndarray, arch: Architecture, block: int) -> dict[str, np.ndarray]:
    from weightlake.analysis.spectra import zoo_spectra

    table = zoo_spectra(x, arch, block)
    out = {}
    for name in arch.layer_names:
        part = table.filter(table["layer"] == name)
        out.update({f"{name}.{stat}": part[stat].cast(float).to_numpy() for stat in SPECTRAL_STATS})
    return out


def aggregate_correlations(flat_rows: Any, metadata: Any, arch: Architecture = CNN_S, spectral: bool = True,
                           **options: Any) -> Any:
    """:func:`correlate` the per-layer aggregates of :func:`layer_aggregates` with metadata.

    Aggregates that are NaN for a layer (e.g. ``alpha`` of small layers) give NaN rows.
    """
    aggs = layer_aggregates(flat_rows, arch, spectral)
    layers = [c.split(".", 1)[0] for c in aggs.columns]
    return correlate(aggs, metadata, layers=layers, **options)


def param_correlation_matrix(flat_rows: Any, arch: Architecture = CNN_S, layer: str | None = None,
                             method: str = "pearson", dtype: Any = np.float32, block: int = 4096) -> np.ndarray:
    """Parameter x parameter correlation matrix, of one layer's block (weight then bias) or of all ``P``.

    ``dtype`` is the precision of the Gram product (float32: about 1e-5 absolute, half the time of
    float64).  Constant parameters give NaN rows and columns.
    """
    arch.check_flat(flat_rows)
    x = np.asarray(flat_rows)
    if layer is not None:
        spec = arch.layer(layer)
        x = x[:, spec.start:spec.stop]
    if method == "spearman":
        x = np.concatenate([average_ranks(x[:, j:j + 128]).T for j in range(0, x.shape[1], 128)], axis=1)
    elif method != "pearson":
        raise ArchitectureError(f"unknown correlation method {method!r}; expected one of {METHODS}")
    mean = x.mean(axis=0, dtype=np.float64)
    gram = np.zeros((x.shape[1], x.shape[1]), dtype=np.float64)
    for i in range(0, x.shape[0], block):
        z = (x[i:i + block] - mean).astype(dtype)
        gram += z.T @ z
    ss = np.diag(gram).copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = gram / np.sqrt(np.outer(ss, ss))
    corr[~(ss > 0)] = np.nan
    corr[:, ~(ss > 0)] = np.nan
    return np.clip(corr, -1.0, 1.0)


# -- heatmaps ----------------------------------------------------------------------------------------
def plot_param_metadata_heatmap(table: Any, path: str | Path, arch: Architecture = CNN_S, **options: Any) -> Path:
    """Parameters x metadata heatmap as PNG: see :func:`weightlake.analysis.heatmaps.param_metadata_figure`."""
    from weightlake.analysis import heatmaps

    return heatmaps.plot_param_metadata_heatmap(table, path, arch, **options)


def plot_param_matrix_heatmap(matrix: Any, path: str | Path, arch: Architecture = CNN_S, layer: str | None = None,
                              **options: Any) -> Path:
    """Parameter x parameter heatmap as PNG: see :func:`weightlake.analysis.heatmaps.param_matrix_figure`."""
    from weightlake.analysis import heatmaps

    return heatmaps.plot_param_matrix_heatmap(matrix, path, arch, layer, **options)
