"""Distances between distributions: of a vector's values, and of a layer's neurons.

Two kinds of distribution are compared here, and every function says which:

**The value distribution of a vector** (:func:`wasserstein_1`, :func:`wasserstein_2`,
:func:`wasserstein_p`, :func:`kl_divergence`, :func:`js_divergence`): the ``P`` numbers of
one row as an empirical distribution on the real line, positions forgotten.  Row ``i`` of
``pred`` is compared with row ``i`` of ``ref``, never a batch with a batch.

**The neuron cloud of a layer** (:func:`sliced_wasserstein`, :func:`sinkhorn`,
:func:`gromov_wasserstein`): each output unit's incoming weights as one point, uniform
mass per point (:func:`layer_point_cloud`).  Layer ``fc1`` of one model is 20 points in
R^36, ``conv2`` is 6 points in R^200 (a filter ``8 x 5 x 5`` flattened).  Because the
cloud is a set, these distances do not change when the hidden units of that layer are
permuted (the next layer's columns move with them, so its cloud does change).  Again,
each model is compared with its own partner: pair ``i`` is the cloud of ``pred[i]``
against the cloud of ``ref[i]``.

KL and Jensen-Shannon are computed on proper probability vectors, never on raw weights
(negative values have no logarithm), in one of two documented modes, see
:func:`kl_divergence`.

POT (``ot``) is imported inside the functions that use it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import numpy as np

from weightlake.analysis._rows import (
    BLOCK_ROWS,
    apply_rows,
    check_pair,
    float_rows,
    is_torch,
    log_softmax,
    sort_last,
    sort_rows,
    stack_mean,
    to_numpy,
)
from weightlake.arch import CNN_S, Architecture
from weightlake.errors import QueryError

Presorted = bool | Literal["pred", "ref"]

__all__ = [
    "gromov_wasserstein",
    "js_divergence",
    "kl_divergence",
    "layer_point_cloud",
    "sinkhorn",
    "sliced_wasserstein",
    "sort_rows",
    "value_histograms",
    "wasserstein_1",
    "wasserstein_2",
    "wasserstein_p",
]


# -- Wasserstein between value distributions -----------------------------------------------


@lru_cache(maxsize=32)
def _quantile_grid(m: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact common refinement of the quantile steps of an ``m``- and a ``k``-point sample.

    Quantile levels are kept as integers in units of ``1 / (m k)`` so no two breakpoints
    are merged or split by rounding.  Returns (interval widths, index into the sorted
    ``m`` sample, index into the sorted ``k`` sample), one entry per interval.
    """
    ends = np.union1d(np.arange(1, m + 1) * k, np.arange(1, k + 1) * m)
    widths = np.diff(ends, prepend=0) / (m * k)
    return widths, (ends - 1) // k, (ends - 1) // m


def _wasserstein_kernel(a: Any, b: Any, xp: Any, *, p: float, sort_a: bool, sort_b: bool) -> Any:
    sa = sort_last(a, xp) if sort_a else a
    sb = sort_last(b, xp) if sort_b else b
    if sa.shape[-1] == sb.shape[-1]:
        diff = sa - sb
        if xp is np:
            np.abs(diff, out=diff)
            # float32 differences, float64 sums: exact enough and half the memory traffic
            power = diff.mean(axis=-1, dtype=np.float64) if p == 1 else (diff.astype(np.float64) ** p).mean(-1)
        else:
            power = xp.abs(diff).mean(-1) if p == 1 else (xp.abs(diff) ** p).mean(-1)
    else:
        widths, ia, ib = _quantile_grid(sa.shape[-1], sb.shape[-1])
        if xp is not np:
            widths, ia, ib = (xp.as_tensor(v, device=sa.device) for v in (widths, ia, ib))
            widths = widths.to(sa.dtype)
        power = (xp.abs(sa[..., ia] - sb[..., ib]) ** p * widths).sum(-1)
    return power if p == 1 else power ** (1.0 / p)


def wasserstein_p(pred: Any, ref: Any, p: float = 1.0, *, presorted: Presorted = False,
                  workers: int | None = None) -> Any:
    """Wasserstein-p distance between the value distributions of paired rows (exact).

    Each row is an empirical distribution with mass ``1/P`` on each of its values.  For
    equal sizes ``W_p = (mean_i |sort(pred)_i - sort(ref)_i|^p)^(1/p)``; for unequal
    sizes the quantile functions are integrated exactly on the union of their steps.
    Positions do not matter: a permutation of a row leaves every distance unchanged.

    Parameters
    ----------
    pred, ref : array or tensor, ``[n, P]`` or ``[P]`` (``ref`` may have another length ``Q``)
        Rows to compare, pair by pair; a single vector is compared with every row.
    p : float
        Order, ``p >= 1``.
    presorted : bool or {"pred", "ref"}
        Skip sorting both arguments (``True``) or one of them; rows must then already be
        ascending (see :func:`sort_rows`).  Sorting is most of the cost.
    workers : int, optional
        Threads for numpy inputs (default: cores, at most 4).

    Returns
    -------
    array ``[n]`` (float64) or tensor ``[n]``; a scalar for two vectors.
        In ``[0, inf)``, in the units of the weights; 0 when the value multisets are equal.
        Constant rows are fine (the distance between point masses is ``|c - d|``).
        Tensors keep gradients (sort is differentiable almost everywhere).
    """
    if p < 1:
        raise QueryError(f"Wasserstein order p must be >= 1, got {p!r}")
    params = {"p": float(p), "sort_a": presorted not in (True, "pred"),
              "sort_b": presorted not in (True, "ref")}
    return apply_rows(_wasserstein_kernel, pred, ref, params=params, keep_float32=True,
                      same_width=False, workers=workers)


def wasserstein_1(pred: Any, ref: Any, *, presorted: Presorted = False, workers: int | None = None) -> Any:
    """Wasserstein-1 (earth mover's) distance between value distributions.

    ``mean |sort(pred) - sort(ref)|`` for equal sizes; agrees with
    ``scipy.stats.wasserstein_distance`` row by row.  Range ``[0, inf)``, 0 for equal
    multisets.  See :func:`wasserstein_p` for the parameters.
    """
    return wasserstein_p(pred, ref, 1.0, presorted=presorted, workers=workers)


def wasserstein_2(pred: Any, ref: Any, *, presorted: Presorted = False, workers: int | None = None) -> Any:
    """Wasserstein-2 distance between value distributions.

    ``sqrt(mean (sort(pred) - sort(ref))^2)`` for equal sizes; equals
    ``sqrt(ot.wasserstein_1d(pred, ref, p=2))``.  Range ``[0, inf)``; ``W1 <= W2``.  The
    torch gradient is undefined (NaN) exactly at ``W2 = 0`` (square root at zero).  See
    :func:`wasserstein_p` for the parameters.
    """
    return wasserstein_p(pred, ref, 2.0, presorted=presorted, workers=workers)


# -- KL and Jensen-Shannon on proper distributions -----------------------------------------


def _bin_counts(x: np.ndarray, lo: np.ndarray, scale: np.ndarray, bins: int, rows: int) -> np.ndarray:
    idx = ((x - lo[:, None]) * scale[:, None]).astype(np.int64)
    np.clip(idx, 0, bins - 1, out=idx)
    idx = np.broadcast_to(idx, (rows, x.shape[-1])) + (np.arange(rows) * bins)[:, None]
    return np.bincount(idx.ravel(), minlength=rows * bins).reshape(rows, bins).astype(np.float64)


def _histograms(a: np.ndarray, b: np.ndarray, bins: int, value_range: tuple[float, float] | None,
                alpha: float) -> tuple[np.ndarray, np.ndarray]:
    rows = max(a.shape[0], b.shape[0])
    if value_range is None:
        lo = np.broadcast_to(np.minimum(a.min(-1), b.min(-1)), (rows,))
        hi = np.broadcast_to(np.maximum(a.max(-1), b.max(-1)), (rows,))
    else:
        lo, hi = np.full(rows, float(value_range[0])), np.full(rows, float(value_range[1]))
    span = hi - lo
    scale = bins / np.where(span > 0, span, 1.0)  # a zero span puts every value in bin 0
    probs = []
    for x in (a, b):
        counts = _bin_counts(x, lo, scale, bins, rows) + alpha
        probs.append(counts / counts.sum(-1, keepdims=True))
    return probs[0], probs[1]


def value_histograms(pred: Any, ref: Any, *, bins: int = 64, value_range: tuple[float, float] | None = None,
                     alpha: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed histograms of paired rows on a grid shared within each pair.

    The grid has ``bins`` equal bins over ``[min, max]`` of the pair's values together
    (or over ``value_range`` for one grid for all pairs; values outside it are counted in
    the edge bins).  Each bin gets ``alpha`` pseudo-counts before normalising (Jeffreys'
    0.5 by default), so every probability is positive and KL is finite.  A pair whose
    values are all equal puts everything in bin 0 of both histograms.

    Returns
    -------
    (p_pred, p_ref) : two arrays ``[n, bins]``, each row summing to 1.
    """
    _check_hist_params(bins, alpha, value_range)
    a, b = float_rows(pred), float_rows(ref)
    check_pair(a, b, same_width=False)
    return _histograms(a, b, bins, value_range, alpha)


def _check_hist_params(bins: int, alpha: float, value_range: tuple[float, float] | None) -> None:
    if int(bins) < 1:
        raise QueryError(f"bins must be a positive integer, got {bins!r}")
    if alpha < 0:
        raise QueryError(f"alpha (pseudo-counts per bin) must be >= 0, got {alpha!r}")
    if value_range is not None and not value_range[0] < value_range[1]:
        raise QueryError(f"value_range must be (low, high) with low < high, got {value_range!r}")


def _xlogy_ratio(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``sum p log(p / q)`` per row with ``0 log 0 = 0`` (inf where ``q = 0 < p``)."""
    return np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0).sum(-1)


def _divergence(p: np.ndarray, q: np.ndarray, kind: str) -> np.ndarray:
    if kind == "kl":
        return _xlogy_ratio(p, q)
    mid = 0.5 * (p + q)
    return 0.5 * _xlogy_ratio(p, mid) + 0.5 * _xlogy_ratio(q, mid)


def _hist_kernel(a: Any, b: Any, xp: Any, *, kind: str, bins: int, value_range: Any, alpha: float) -> Any:
    p_pred, p_ref = _histograms(a, b, bins, value_range, alpha)
    out = _divergence(p_ref, p_pred, kind)
    finite = np.isfinite(a).all(-1) & np.isfinite(b).all(-1)
    return np.where(finite, out, np.nan)


def _softmax_kernel(a: Any, b: Any, xp: Any, *, kind: str, temperature: float) -> Any:
    log_pred, log_ref = log_softmax(a / temperature, xp), log_softmax(b / temperature, xp)
    p_pred, p_ref = xp.exp(log_pred), xp.exp(log_ref)
    if kind == "kl":
        return (p_ref * (log_ref - log_pred)).sum(-1)
    log_mid = xp.logaddexp(log_pred, log_ref) - float(np.log(2.0))
    return 0.5 * (p_ref * (log_ref - log_mid)).sum(-1) + 0.5 * (p_pred * (log_pred - log_mid)).sum(-1)


def _divergence_rows(kind: str, pred: Any, ref: Any, mode: str, bins: int, value_range: Any,
                     alpha: float, temperature: float, workers: int | None) -> Any:
    if mode == "softmax":
        if temperature <= 0:
            raise QueryError(f"temperature must be > 0, got {temperature!r}")
        return apply_rows(_softmax_kernel, pred, ref, params={"kind": kind, "temperature": temperature},
                          workers=workers)
    if mode != "hist":
        raise QueryError(f"mode must be 'hist' or 'softmax', got {mode!r}")
    _check_hist_params(bins, alpha, value_range)
    params = {"kind": kind, "bins": int(bins), "value_range": value_range, "alpha": float(alpha)}
    out = apply_rows(_hist_kernel, to_numpy(pred), to_numpy(ref), params=params, same_width=False,
                     workers=workers)
    return _like_input(out, pred, ref)


def _like_input(out: Any, pred: Any, ref: Any) -> Any:
    """A numpy result as a (gradient-free) tensor when an input was a tensor."""
    if not (is_torch(pred) or is_torch(ref)):
        return out
    import torch

    like = pred if is_torch(pred) else ref
    dtype = like.dtype if like.is_floating_point() else torch.float64
    return torch.as_tensor(np.asarray(out), dtype=dtype, device=like.device)


def kl_divergence(pred: Any, ref: Any, *, mode: str = "hist", bins: int = 64,
                  value_range: tuple[float, float] | None = None, alpha: float = 0.5,
                  temperature: float = 1.0, workers: int | None = None) -> Any:
    """Kullback-Leibler divergence ``KL(P_ref || P_pred)`` (natural log) of paired rows.

    Never computed on raw weights.  Two modes make proper distributions first:

    ``mode="hist"`` (default)
        The value distributions: smoothed histograms on a grid shared by the pair (see
        :func:`value_histograms` for ``bins``, ``value_range``, ``alpha``).  Positions do
        not matter.  Not differentiable (tensors in, a tensor without gradient out).
    ``mode="softmax"``
        ``softmax(row / temperature)`` over the ``P`` positions: position ``i`` of pred
        against position ``i`` of ref.  Differentiable.

    Returns
    -------
    array or tensor ``[n]`` (scalar for two vectors)
        In ``[0, inf)``; finite for ``alpha > 0`` and in softmax mode; 0 for identical
        rows, and for two rows that are the same constant.  NaN for rows with NaN/inf.
    """
    return _divergence_rows("kl", pred, ref, mode, bins, value_range, alpha, temperature, workers)


def js_divergence(pred: Any, ref: Any, *, mode: str = "hist", bins: int = 64,
                  value_range: tuple[float, float] | None = None, alpha: float = 0.5,
                  temperature: float = 1.0, workers: int | None = None) -> Any:
    """Jensen-Shannon divergence (natural log) of paired rows, in the modes of :func:`kl_divergence`.

    ``JS = KL(P || M) / 2 + KL(Q || M) / 2`` with ``M = (P + Q) / 2``: symmetric, in
    ``[0, ln 2]``, finite even without smoothing.  This is the divergence, the square of
    ``scipy.spatial.distance.jensenshannon``.  0 for identical rows; NaN for rows with NaN/inf.
    """
    return _divergence_rows("js", pred, ref, mode, bins, value_range, alpha, temperature, workers)


# -- neuron clouds: sliced Wasserstein, Sinkhorn, Gromov-Wasserstein ------------------------


def _cloud_of(rows: np.ndarray, arch: Architecture, layer: str, include_bias: bool) -> np.ndarray:
    cloud = arch.layer_matrix(rows, layer)
    if include_bias:
        cloud = np.concatenate([cloud, arch.select(rows, f"{layer}.bias")[..., None]], axis=-1)
    return cloud


def layer_point_cloud(x: Any, layer: str, arch: Architecture = CNN_S, *, include_bias: bool = False) -> np.ndarray:
    """One layer of flat rows as neuron clouds ``[n, out, d]`` (numpy, float64).

    Point ``j`` of row ``i`` is output unit ``j``'s incoming weights (a conv filter
    flattened ``in x kh x kw``), so ``d = in * kh * kw``; with ``include_bias`` the unit's
    bias is appended as one more coordinate.  A ``[P]`` vector gives ``[1, out, d]``.
    """
    rows = float_rows(x)
    arch.check_flat(rows)
    return np.ascontiguousarray(_cloud_of(rows, arch, layer, include_bias))


def _paired_clouds(a: np.ndarray, b: np.ndarray, arch: Architecture, layer: str,
                   include_bias: bool) -> tuple[np.ndarray, np.ndarray]:
    """Clouds of two row blocks, broadcast to the same number of rows."""
    ca, cb = _cloud_of(a, arch, layer, include_bias), _cloud_of(b, arch, layer, include_bias)
    n = max(ca.shape[0], cb.shape[0])
    return np.broadcast_to(ca, (n, *ca.shape[1:])), np.broadcast_to(cb, (n, *cb.shape[1:]))


def _cloud_metric(kernel: Any, pred: Any, ref: Any, arch: Architecture, layer: str | None,
                  params: dict[str, Any], *, block_rows: int = BLOCK_ROWS, workers: int | None = None,
                  layer_params: Any = None) -> Any:
    """A neuron-cloud kernel on one layer, or its mean over all layers when ``layer`` is None.

    Rows go through :func:`apply_rows` (blocks, threads, ``[P]`` broadcasting) as numpy;
    ``layer_params(name)`` adds per-layer parameters (sliced projections).
    """
    a, b = to_numpy(pred), to_numpy(ref)
    arch.check_flat(a)
    arch.check_flat(b)
    names = arch.layer_names if layer is None else (arch.layer(layer).name,)
    values = []
    for name in names:
        extra = layer_params(name) if layer_params else {}
        values.append(apply_rows(kernel, a, b, params={**params, **extra, "arch": arch, "layer": name},
                                 block_rows=block_rows, workers=workers))
    return stack_mean(values)


def _sliced_kernel(a: np.ndarray, b: np.ndarray, xp: Any, *, arch: Architecture, layer: str, dirs: np.ndarray,
                   p: float, include_bias: bool) -> np.ndarray:
    ca, cb = _paired_clouds(a, b, arch, layer, include_bias)
    # [rows, directions, points], contiguous so each direction's 1-D sort runs on a row
    pa = np.sort(np.ascontiguousarray((ca @ dirs).transpose(0, 2, 1)), axis=-1)
    pb = np.sort(np.ascontiguousarray((cb @ dirs).transpose(0, 2, 1)), axis=-1)
    diff = np.abs(pa - pb)
    power = (diff * diff if p == 2 else diff**p).mean(axis=(1, 2))
    return power ** (1.0 / p)


def sliced_wasserstein(pred: Any, ref: Any, arch: Architecture = CNN_S, layer: str | None = None, *,
                       n_projections: int = 50, p: float = 2.0, seed: int = 0,
                       include_bias: bool = False, workers: int | None = None) -> Any:
    """Sliced Wasserstein-p distance between the neuron clouds of paired models.

    The clouds are :func:`layer_point_cloud` (uniform mass per unit).  Both are projected
    on the same ``n_projections`` random unit directions, drawn by POT's
    ``ot.sliced.get_random_projections`` from ``RandomState(seed)`` and shared by all
    pairs (so rows are comparable); ``SW_p = (mean over directions of W_p^p)^(1/p)``.
    Equals ``ot.sliced_wasserstein_distance(cloud_pred, cloud_ref, seed=seed)`` for every
    pair, computed for all pairs at once.

    Parameters
    ----------
    layer : str, optional
        Layer name; None averages the per-layer distances over all layers.

    Returns
    -------
    array ``[n]`` (scalar for two vectors)
        In ``[0, inf)``; 0 for equal clouds, including permuted units.  Not differentiable here.
    """
    if p < 1 or n_projections < 1:
        raise QueryError(f"need p >= 1 and n_projections >= 1, got p={p!r}, n_projections={n_projections!r}")

    def directions(name: str) -> dict[str, Any]:
        from ot.sliced import get_random_projections

        dim = arch.layer(name).matrix_shape[1] + int(include_bias)
        return {"dirs": get_random_projections(dim, n_projections, seed=np.random.RandomState(seed))}

    return _cloud_metric(_sliced_kernel, pred, ref, arch, layer, {"p": float(p), "include_bias": include_bias},
                         workers=workers, layer_params=directions)


def _sinkhorn_kernel(a: np.ndarray, b: np.ndarray, xp: Any, *, arch: Architecture, layer: str, reg: float,
                     max_iter: int, tol: float, include_bias: bool) -> np.ndarray:
    from ot.batch import dist_batch, solve_batch

    ca, cb = _paired_clouds(a, b, arch, layer, include_bias)
    cost = dist_batch(np.ascontiguousarray(ca), np.ascontiguousarray(cb))  # squared Euclidean
    eps = reg * np.maximum(cost.mean(axis=(1, 2)), np.finfo(float).tiny)
    # one reg per pair: solve the rescaled problem cost / eps with reg 1, same plan
    res = solve_batch(cost / eps[:, None, None], 1.0, method="log_sinkhorn", max_iter=max_iter, tol=tol)
    return res.value_linear * eps


def sinkhorn(pred: Any, ref: Any, arch: Architecture = CNN_S, layer: str | None = None, *, reg: float = 0.1,
             max_iter: int = 1000, tol: float = 1e-6, include_bias: bool = False,
             workers: int | None = None) -> Any:
    """Entropic OT cost (Sinkhorn) between the neuron clouds of paired models.

    Cost matrix: squared Euclidean distances between the units of ``pred[i]`` and of
    ``ref[i]`` (:func:`layer_point_cloud`, uniform masses).  The regularisation is
    relative: ``epsilon = reg * mean(cost)`` per pair, so one ``reg`` suits every layer
    whatever its scale.  The value is the transport cost ``<T, cost>`` of the entropic
    plan ``T``, as ``ot.sinkhorn2(a, b, cost, epsilon)`` returns; it approaches ``W2^2``
    of the clouds as ``reg -> 0`` and is positive even for identical clouds (the
    entropic plan spreads mass).  Solved by POT's batched log-domain solver
    (``ot.batch.solve_batch``) on blocks of 256 pairs, each stopping when its marginals
    are within ``tol`` or after ``max_iter`` iterations.

    Returns
    -------
    array ``[n]`` (scalar for two vectors)
        In ``[0, inf)``, in squared weight units; 0 for clouds of one repeated point.
        ``layer=None`` averages over layers.  Slow: minutes for 47,000 pairs.
    """
    if reg <= 0:
        raise QueryError(f"reg must be > 0, got {reg!r}")
    params = {"reg": reg, "max_iter": max_iter, "tol": tol, "include_bias": include_bias}
    return _cloud_metric(_sinkhorn_kernel, pred, ref, arch, layer, params, block_rows=256, workers=workers)


def _gw_kernel(a: np.ndarray, b: np.ndarray, xp: Any, *, arch: Architecture, layer: str,
               include_bias: bool) -> np.ndarray:
    import ot

    ca, cb = _paired_clouds(a, b, arch, layer, include_bias)
    mass_a, mass_b = np.full(ca.shape[1], 1.0 / ca.shape[1]), np.full(cb.shape[1], 1.0 / cb.shape[1])
    out = np.empty(ca.shape[0])
    for i in range(ca.shape[0]):
        da, db = ot.dist(ca[i], ca[i], metric="euclidean"), ot.dist(cb[i], cb[i], metric="euclidean")
        out[i] = ot.gromov.gromov_wasserstein2(da, db, mass_a, mass_b, loss_fun="square_loss")
    return out


def gromov_wasserstein(pred: Any, ref: Any, arch: Architecture = CNN_S, layer: str | None = None, *,
                       include_bias: bool = False, workers: int | None = None) -> Any:
    """Gromov-Wasserstein discrepancy between the same layer of paired models.

    Each layer is summarised by its intra-layer distance matrix: Euclidean distances
    between its units' incoming weight vectors (:func:`layer_point_cloud`).  GW compares
    the two matrices through the best soft matching of units
    (``ot.gromov.gromov_wasserstein2``, square loss, uniform masses, POT's conditional
    gradient solver, one pair at a time).  It ignores rotations, reflections and unit
    permutations: only the geometry inside the layer matters.

    Returns
    -------
    array ``[n]`` (scalar for two vectors)
        In ``[0, inf)``, in squared weight units; 0 for isometric layers (the solver
        finds a local optimum, so the value is an upper bound).  ``layer=None`` averages
        over layers.  Slow: about 1 ms per pair and layer.
    """
    return _cloud_metric(_gw_kernel, pred, ref, arch, layer, {"include_bias": include_bias},
                         block_rows=256, workers=workers)
