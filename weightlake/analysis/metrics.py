"""Metrics between weight vectors: pure functions over rows, numpy for analysis, torch for losses.

Every pair metric takes ``pred`` and ``ref`` as ``[n, P]`` rows (or one ``[P]`` vector,
compared with every row) and returns one value per row pair, ``[n]``; two single vectors
give a scalar.  numpy in, float64 numpy out, computed in blocks of 4,096 rows on a few
threads; torch in, torch out with gradients, so ``mse(pred, ref).mean().backward()``
trains.  Row ``i`` of ``pred`` is always compared with row ``i`` of ``ref``.

Degenerate rows never raise: each metric's docstring gives its value on constant rows,
zero vectors and the like (a number, or NaN).  :func:`degenerate_rows` flags such rows,
:func:`collapse_report` says when a whole set of predictions is one repeated vector, and
:func:`across_rows_pearson` is NaN with a reason then (all three from
:mod:`weightlake.analysis.collapse`, re-exported here).

Layers: :func:`per_layer` evaluates a metric on each layer's block of the flat vector
(weight and bias together, ``arch.layers[k].start:stop``; for the zoo CNN the
boundaries are ``0, 208, 1414, 1514, 2254, 2464``).  :data:`METRICS` lists every pair
metric with its properties; :func:`compute_all` evaluates them all, whole-vector and per
layer, as named columns.

Distribution distances (Wasserstein, KL/JS, sliced, Sinkhorn, Gromov-Wasserstein) live
in :mod:`weightlake.analysis.distributions` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from weightlake.analysis._rows import apply_rows, is_torch, nan_where, row_max, row_min, stack_mean, to_numpy
from weightlake.analysis.collapse import CollapseReport, across_rows_pearson, collapse_report, degenerate_rows
from weightlake.analysis.distributions import (
    gromov_wasserstein,
    js_divergence,
    kl_divergence,
    sinkhorn,
    sliced_wasserstein,
    sort_rows,
    wasserstein_1,
    wasserstein_2,
    wasserstein_p,
)
from weightlake.arch import CNN_S, Architecture
from weightlake.errors import NoSuchTableError, QueryError

MAPE_EPS = 1e-3
"""Default floor on ``|ref|`` in :func:`mape`: 1 % of the ~0.1 scale of zoo weights."""

SATURATION_THRESHOLD = 0.99
"""Default ``|x|`` above which :func:`saturation_share` counts a value as saturated."""


# -- kernels (shared by numpy and torch; see weightlake.analysis._rows) -------------------------


def _mse(a: Any, b: Any, xp: Any) -> Any:
    return ((a - b) ** 2).mean(-1)


def _mae(a: Any, b: Any, xp: Any) -> Any:
    return xp.abs(a - b).mean(-1)


def _mape(a: Any, b: Any, xp: Any, *, eps: float) -> Any:
    return (xp.abs(a - b) / xp.abs(b).clip(min=eps)).mean(-1)


def _pinball(a: Any, b: Any, xp: Any, *, tau: float) -> Any:
    under = b - a
    return xp.maximum(tau * under, (tau - 1.0) * under).mean(-1)


def _l2(x: Any, xp: Any) -> Any:
    return xp.sqrt((x * x).sum(-1))


def _cosine(a: Any, b: Any, xp: Any) -> Any:
    na, nb = _l2(a, xp), _l2(b, xp)
    # rounding can put a vector's cosine with itself a few ulps past 1: kept in [-1, 1] (acos is defined)
    return nan_where((na == 0) | (nb == 0), ((a * b).sum(-1) / (na * nb)).clip(min=-1.0, max=1.0), xp)


def _pearson(a: Any, b: Any, xp: Any) -> Any:
    constant = (row_max(a, xp) == row_min(a, xp)) | (row_max(b, xp) == row_min(b, xp))
    r = _cosine(a - a.mean(-1)[..., None], b - b.mean(-1)[..., None], xp)
    return nan_where(constant, r.clip(min=-1.0, max=1.0), xp)


def _norm(x: Any, xp: Any, order: int) -> Any:
    return xp.abs(x).sum(-1) if order == 1 else _l2(x, xp)


def _norm_diff(a: Any, b: Any, xp: Any, *, order: int, signed: bool) -> Any:
    diff = _norm(a, xp, order) - _norm(b, xp, order)
    return diff if signed else xp.abs(diff)


def _log_norm_diff(a: Any, b: Any, xp: Any, *, order: int, signed: bool) -> Any:
    na, nb = _norm(a, xp, order), _norm(b, xp, order)
    diff = xp.log(na) - xp.log(nb)
    return nan_where((na == 0) | (nb == 0), diff if signed else xp.abs(diff), xp)


def _fft_diff(a: Any, b: Any, xp: Any) -> Any:
    fa, fb = xp.fft.rfft(a, norm="ortho"), xp.fft.rfft(b, norm="ortho")
    return ((xp.abs(fa) - xp.abs(fb)) ** 2).mean(-1)


def _nmse(a: Any, b: Any, xp: Any) -> Any:
    centred = b - b.mean(-1)[..., None]
    var = (centred * centred).mean(-1)
    constant = row_max(b, xp) == row_min(b, xp)
    return nan_where(constant, _mse(a, b, xp) / var, xp)


def _saturation(a: Any, b: Any, xp: Any, *, threshold: float) -> Any:
    return ((xp.abs(a) > threshold) * 1.0).mean(-1)


def _unary_norm(a: Any, b: Any, xp: Any, *, order: int) -> Any:
    return _norm(a, xp, order)


# -- element-wise and vector metrics ---------------------------------------------------------


def mse(pred: Any, ref: Any, *, workers: int | None = None) -> Any:
    """Mean squared error per row pair, ``mean_j (pred_j - ref_j)^2``.

    Range ``[0, inf)``, 0 for equal rows; defined for every finite input (NaN in, NaN out).
    Agrees with ``torch.nn.functional.mse_loss(..., reduction="none").mean(-1)``.
    """
    return apply_rows(_mse, pred, ref, workers=workers)


def mae(pred: Any, ref: Any, *, workers: int | None = None) -> Any:
    """Mean absolute error per row pair, ``mean_j |pred_j - ref_j|``. Range ``[0, inf)``, always defined."""
    return apply_rows(_mae, pred, ref, workers=workers)


def mape(pred: Any, ref: Any, *, eps: float = MAPE_EPS, workers: int | None = None) -> Any:
    """Mean absolute percentage error, relative to the reference: ``mean_j |pred_j - ref_j| / max(|ref_j|, eps)``.

    Divided by the *reference* (the truth), never by the prediction, so a prediction
    cannot lower its own error by growing.  Weights cross zero, so ``|ref|`` is floored
    at ``eps`` (default :data:`MAPE_EPS` = 1e-3, 1 % of the typical weight scale): a
    reference weight of 0 then counts its absolute error times 1,000 instead of infinity.
    Returned as a fraction (0.25 = 25 %), like scikit-learn.

    Returns
    -------
    ``[n]``, in ``[0, inf)``; 0 for equal rows; finite for finite input.
    """
    if eps <= 0:
        raise QueryError(f"mape eps must be > 0 (it floors |ref|), got {eps!r}")
    return apply_rows(_mape, pred, ref, params={"eps": float(eps)}, workers=workers)


def quantile_loss(pred: Any, ref: Any, *, tau: float = 0.5, workers: int | None = None) -> Any:
    """Quantile (pinball) loss at level ``tau``: ``mean_j max(tau u_j, (tau - 1) u_j)``, ``u = ref - pred``.

    Under-predictions cost ``tau`` per unit, over-predictions ``1 - tau``; minimised by
    the ``tau``-quantile.  ``tau = 0.5`` is half the MAE.  Range ``[0, inf)``, always defined.
    """
    if not 0.0 <= tau <= 1.0:
        raise QueryError(f"quantile level tau must be in [0, 1], got {tau!r}")
    return apply_rows(_pinball, pred, ref, params={"tau": float(tau)}, workers=workers)


def cosine_similarity(pred: Any, ref: Any, *, workers: int | None = None) -> Any:
    """Cosine of the angle between paired rows, ``<pred, ref> / (|pred| |ref|)``.

    Range ``[-1, 1]``, higher is better; ``1 - value`` is ``scipy.spatial.distance.cosine``.
    NaN when either row is the zero vector.
    """
    return apply_rows(_cosine, pred, ref, workers=workers)


def pearson(pred: Any, ref: Any, *, workers: int | None = None) -> Any:
    """Pearson correlation of paired rows across their parameters (``scipy.stats.pearsonr`` per row).

    Range ``[-1, 1]``, higher is better.  NaN when either row is constant (its values
    all equal, so it has no variance); for correlation across rows see
    :func:`weightlake.analysis.collapse.across_rows_pearson`.
    """
    return apply_rows(_pearson, pred, ref, workers=workers)


def l1_norm(x: Any, *, workers: int | None = None) -> Any:
    """L1 norm of each row, ``sum_j |x_j|``. Range ``[0, inf)``."""
    return apply_rows(_unary_norm, x, params={"order": 1}, workers=workers)


def l2_norm(x: Any, *, workers: int | None = None) -> Any:
    """L2 (Euclidean) norm of each row. Range ``[0, inf)``."""
    return apply_rows(_unary_norm, x, params={"order": 2}, workers=workers)


def norm_diff(pred: Any, ref: Any, *, order: Literal[1, 2] = 2, signed: bool = False,
              workers: int | None = None) -> Any:
    """Difference of norms, ``| |pred|_p - |ref|_p |`` with ``p = order`` (1 or 2).

    ``signed=True`` keeps the sign (positive: the prediction is larger).  Unsigned range
    ``[0, inf)``, 0 for equal norms; always defined (zero vectors have norm 0).
    """
    _check_order(order)
    return apply_rows(_norm_diff, pred, ref, params={"order": order, "signed": signed}, workers=workers)


def log_norm_diff(pred: Any, ref: Any, *, order: Literal[1, 2] = 2, signed: bool = False,
                  workers: int | None = None) -> Any:
    """Difference of log norms, ``| log |pred|_p - log |ref|_p |``: the norm ratio on a log scale.

    Scale-free (``log 2`` means one norm is twice the other).  Unsigned range ``[0, inf)``.
    NaN when either row is the zero vector (log 0 is undefined).
    """
    _check_order(order)
    return apply_rows(_log_norm_diff, pred, ref, params={"order": order, "signed": signed}, workers=workers)


def l1_norm_diff(pred: Any, ref: Any, *, signed: bool = False, workers: int | None = None) -> Any:
    """Difference of L1 norms, ``| |pred|_1 - |ref|_1 |``: :func:`norm_diff` with ``order=1``."""
    return norm_diff(pred, ref, order=1, signed=signed, workers=workers)


def _check_order(order: int) -> None:
    if order not in (1, 2):
        raise QueryError(f"norm order must be 1 or 2, got {order!r}")


def fft_diff(pred: Any, ref: Any, *, workers: int | None = None) -> Any:
    """Mean squared difference of the magnitude spectra of paired rows.

    ``mean_k (|F pred|_k - |F ref|_k)^2`` over the ``P // 2 + 1`` frequencies of the real
    FFT with orthonormal scaling (``norm="ortho"``, so magnitudes are on the weights'
    scale).  Compares periodic structure along the flat vector and ignores phase (a
    cyclic shift of a row leaves its spectrum unchanged).  Range ``[0, inf)``, 0 for equal
    rows; always defined.  Differentiable.
    """
    return apply_rows(_fft_diff, pred, ref, workers=workers)


def nmse(pred: Any, ref: Any, *, workers: int | None = None) -> Any:
    """Normalised MSE: the MSE divided by the variance of the reference row's values.

    1.0 is the error of predicting the reference's mean everywhere, so values below 1
    beat that baseline.  Range ``[0, inf)``.  NaN when the reference row is constant.
    """
    return apply_rows(_nmse, pred, ref, workers=workers)


def saturation_share(x: Any, *, threshold: float = SATURATION_THRESHOLD, workers: int | None = None) -> Any:
    """Share of each row's values with magnitude above ``threshold``.

    A decoder whose last layer is ``tanh`` cannot emit values beyond +-1; outputs pinned
    near the limits (``|x| > 0.99`` by default) signal a saturated output layer, and
    trained zoo weights (scale ~0.1) rarely reach them.  Range ``[0, 1]``, lower is
    better; always defined.  One argument: apply it to predictions (and to references
    for the baseline).
    """
    return apply_rows(_saturation, x, params={"threshold": float(threshold)}, workers=workers)


def kl_softmax(pred: Any, ref: Any, *, temperature: float = 1.0, workers: int | None = None) -> Any:
    """KL divergence of the rows' softmax distributions: :func:`kl_divergence` with ``mode="softmax"``."""
    return kl_divergence(pred, ref, mode="softmax", temperature=temperature, workers=workers)


def js_softmax(pred: Any, ref: Any, *, temperature: float = 1.0, workers: int | None = None) -> Any:
    """Jensen-Shannon divergence of the rows' softmax distributions: :func:`js_divergence` with ``mode="softmax"``."""
    return js_divergence(pred, ref, mode="softmax", temperature=temperature, workers=workers)


# -- layers -------------------------------------------------------------------------------------


def per_layer(metric: str | MetricSpec | Callable[..., Any], pred: Any, ref: Any = None,
              arch: Architecture = CNN_S, **params: Any) -> dict[str, Any]:
    """A metric on each layer's block of the flat rows: ``{layer_name: [n]}``.

    A layer's block is its weight and bias together, ``[layer.start, layer.stop)``.
    ``metric`` is a registered name (``"mse"``), a :class:`MetricSpec`, or any function
    ``f(pred, ref, **params)`` of the row-metric form.  Neuron-cloud metrics
    (``sliced_w``, ``sinkhorn``, ``gromov_w``) get the layer's name instead of a slice.
    """
    spec = _resolve(metric)
    arch.check_flat(_shape_probe(pred))
    if ref is not None:
        arch.check_flat(_shape_probe(ref))
    return {layer.name: spec.evaluate(pred, ref, arch=arch, layer=layer.name, **params) for layer in arch.layers}


def _shape_probe(x: Any) -> Any:
    return x if hasattr(x, "shape") else np.asarray(x)


def layer_nmse(pred: Any, ref: Any, arch: Architecture = CNN_S, *, workers: int | None = None) -> Any:
    """Layer-wise normalised MSE: each layer's MSE over its reference variance, averaged over layers.

    ``mean_k nmse(pred[block_k], ref[block_k])`` (see :func:`nmse`): every layer weighs
    the same whatever its size or scale, so the 100-value ``conv3`` counts as much as
    the 1,206-value ``conv2``.  Range ``[0, inf)``.  NaN when any reference layer is constant.
    """
    return stack_mean(list(per_layer(nmse, pred, ref, arch, workers=workers).values()))


def ar_mse_ratio(pred: Any, ref: Any, arch: Architecture = CNN_S, *, workers: int | None = None) -> dict[str, Any]:
    """Auto-regressive per-layer MSE ratio: each layer's MSE over the whole-vector MSE.

    ``ratio_k = mse(block_k) / mse(whole)``.  The merging model emits the flat vector as
    tokens from ``conv1`` to ``fc2``; if its errors compound along that order, the
    ratios grow with ``k`` (above 1 = worse than the vector's average).  Chosen over the
    chained ratio ``mse_k / mse_{k-1}`` because it is defined for the first layer, does
    not blow up after one near-perfect layer, and is free of the overall error scale, so
    models of different quality compare; the chained ratio is ``ratio_k / ratio_{k-1}``.
    The size-weighted mean of the ratios is 1: ``sum_k (size_k / P) ratio_k = 1``.

    Returns
    -------
    dict ``{layer_name: [n]}``, each in ``[0, inf)``; NaN where the whole-vector MSE is 0
    (a perfect prediction has no error to share out).
    """
    whole = mse(pred, ref, workers=workers)
    layers = per_layer(mse, pred, ref, arch, workers=workers)
    if is_torch(whole):
        return {name: nan_where(whole == 0, value / whole, _torch()) for name, value in layers.items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        return {name: np.where(whole == 0, np.nan, value / whole) for name, value in layers.items()}


def _torch() -> Any:
    import torch

    return torch


# -- registry ----------------------------------------------------------------------------------


Scope = Literal["values", "layers", "whole"]


@dataclass(frozen=True)
class MetricSpec:
    """A registered pair metric and what a caller needs to know to use it.

    ``scope`` says how the function sees the vector: ``"values"`` works on any block
    (whole vector or one layer's slice); ``"layers"`` compares neuron clouds and takes
    ``arch=`` and ``layer=`` (None = mean over layers); ``"whole"`` needs whole flat
    vectors and ``arch=``.  ``arity`` 1 metrics take ``pred`` only.  ``slow`` metrics are
    skipped by :func:`compute_all` unless asked for.
    """

    name: str
    fn: Callable[..., Any]
    differentiable: bool
    per_layer: bool
    higher_is_better: bool
    scope: Scope = "values"
    arity: int = 2
    slow: bool = False
    range: tuple[float, float] = (0.0, float("inf"))

    def __post_init__(self) -> None:
        if self.scope not in ("values", "layers", "whole"):
            raise QueryError(f"metric {self.name!r}: scope must be 'values', 'layers' or 'whole', got {self.scope!r}")
        if self.arity not in (1, 2):
            raise QueryError(f"metric {self.name!r}: arity must be 1 or 2, got {self.arity!r}")

    @property
    def summary(self) -> str:
        """The first line of the function's docstring."""
        return (self.fn.__doc__ or "").strip().splitlines()[0] if self.fn.__doc__ else ""

    def evaluate(self, pred: Any, ref: Any = None, *, arch: Architecture = CNN_S, layer: str | None = None,
                 **params: Any) -> Any:
        """Evaluate on whole vectors (``layer=None``) or on one layer of ``arch``."""
        args = (pred,) if self.arity == 1 else (pred, ref)
        if self.scope == "layers":
            return self.fn(*args, arch, layer, **params)
        if self.scope == "whole":
            if layer is not None:
                raise QueryError(f"metric {self.name!r} needs whole vectors; it has no per-layer form")
            return self.fn(*args, arch, **params)
        if layer is None:
            return self.fn(*args, **params)
        block = arch.layer(layer)
        return self.fn(*(x[..., block.start:block.stop] for x in _as_arrays(args)), **params)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "function": f"{self.fn.__module__}.{self.fn.__name__}",
                "differentiable": self.differentiable, "per_layer": self.per_layer,
                "higher_is_better": self.higher_is_better, "scope": self.scope, "arity": self.arity,
                "slow": self.slow, "range": list(self.range), "summary": self.summary}


def _as_arrays(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(x if is_torch(x) or isinstance(x, np.ndarray) else np.asarray(x) for x in args)


def _spec(name: str, fn: Callable[..., Any], differentiable: bool, higher_is_better: bool = False,
          **kw: Any) -> MetricSpec:
    return MetricSpec(name, fn, differentiable, kw.pop("per_layer", True), higher_is_better, **kw)


_UNIT = (-1.0, 1.0)

METRICS: dict[str, MetricSpec] = {s.name: s for s in (
    _spec("mse", mse, True),
    _spec("mae", mae, True),
    _spec("mape", mape, True),
    _spec("quantile_loss", quantile_loss, True),
    _spec("cosine", cosine_similarity, True, higher_is_better=True, range=_UNIT),
    _spec("pearson", pearson, True, higher_is_better=True, range=_UNIT),
    _spec("l1_norm_diff", l1_norm_diff, True),
    _spec("l2_norm_diff", norm_diff, True),
    _spec("log_norm_diff", log_norm_diff, True),
    _spec("fft_diff", fft_diff, True),
    _spec("nmse", nmse, True),
    _spec("layer_nmse", layer_nmse, True, per_layer=False, scope="whole"),
    _spec("w1", wasserstein_1, True),
    _spec("w2", wasserstein_2, True),
    _spec("kl", kl_divergence, False),
    _spec("js", js_divergence, False, range=(0.0, float(np.log(2.0)))),
    _spec("kl_softmax", kl_softmax, True),
    _spec("js_softmax", js_softmax, True, range=(0.0, float(np.log(2.0)))),
    _spec("sliced_w", sliced_wasserstein, False, scope="layers"),
    _spec("sinkhorn", sinkhorn, False, scope="layers", slow=True),
    _spec("gromov_w", gromov_wasserstein, False, scope="layers", slow=True),
    _spec("saturation_share", saturation_share, False, arity=1, range=(0.0, 1.0)),
)}
"""Every pair metric by name.  Each ``fn(pred, ref) -> [n]`` (``fn(pred)`` for arity 1).

UDF and evaluation code iterate this dict.  The per-layer MSE ratio is a family of
columns rather than one number per pair, so it is not here: see :func:`ar_mse_ratio`
(``compute_all`` adds its ``ar_mse_ratio_<layer>`` columns).
"""

def _resolve(metric: str | MetricSpec | Callable[..., Any]) -> MetricSpec:
    if isinstance(metric, MetricSpec):
        return metric
    if isinstance(metric, str):
        try:
            return METRICS[metric]
        except KeyError:
            raise NoSuchTableError(f"no metric named {metric!r}; registered: {sorted(METRICS)}") from None
    for spec in METRICS.values():
        if spec.fn is metric:
            return spec
    return MetricSpec(getattr(metric, "__name__", "metric"), metric, False, True, False)


def compute_all(pred: Any, ref: Any, arch: Architecture = CNN_S, per_layer: bool = True,
                include_slow: bool = False, metrics: list[str] | None = None) -> dict[str, np.ndarray]:
    """Every registered metric as named columns ``{column: [n] float64}``.

    Columns are ``<name>`` for whole vectors and ``<name>_<layer>`` per layer (metrics
    with a per-layer form, when ``per_layer``), plus ``ar_mse_ratio_<layer>``.
    Neuron-cloud metrics have no whole-vector form: their ``<name>`` column is the mean
    of their per-layer values.  Arity-1 metrics (``saturation_share``) describe ``pred``.

    Parameters
    ----------
    pred, ref : ``[n, P]`` or ``[P]`` rows of ``arch`` (tensors are detached).
    per_layer : bool
        Add the per-layer columns.
    include_slow : bool
        Also compute ``slow`` metrics (Sinkhorn, Gromov-Wasserstein: minutes for 47k pairs).
    metrics : list of str, optional
        Only these registered names (default: all).

    Returns
    -------
    dict of column name -> float64 array ``[n]`` (insertion order: metric by metric).
    """
    a, b = _flat_rows(pred, arch), _flat_rows(ref, arch)
    out: dict[str, np.ndarray] = {}
    for spec in _selected(metrics, include_slow):
        layers = _layer_columns(spec, a, b, arch) if (per_layer and spec.per_layer) or spec.scope == "layers" else {}
        whole = stack_mean(list(layers.values())) if spec.scope == "layers" else spec.evaluate(a, b, arch=arch)
        out[spec.name] = np.asarray(whole, dtype=np.float64)
        if per_layer:
            out.update({f"{spec.name}_{name}": np.asarray(v, dtype=np.float64) for name, v in layers.items()})
    if per_layer and (metrics is None or "ar_mse_ratio" in metrics):
        out.update({f"ar_mse_ratio_{k}": v for k, v in ar_mse_ratio(a, b, arch).items()})
    return out


def _flat_rows(x: Any, arch: Architecture) -> np.ndarray:
    rows = to_numpy(x)
    rows = rows[None, :] if rows.ndim == 1 else rows
    arch.check_flat(rows)
    return rows


def _selected(names: list[str] | None, include_slow: bool) -> list[MetricSpec]:
    if names is None:
        return [s for s in METRICS.values() if include_slow or not s.slow]
    return [_resolve(n) for n in names if n != "ar_mse_ratio"]


def _layer_columns(spec: MetricSpec, a: np.ndarray, b: np.ndarray, arch: Architecture) -> dict[str, Any]:
    return {layer.name: spec.evaluate(a, b, arch=arch, layer=layer.name) for layer in arch.layers}


__all__ = [
    "METRICS",
    "CollapseReport",
    "MetricSpec",
    "across_rows_pearson",
    "ar_mse_ratio",
    "collapse_report",
    "compute_all",
    "cosine_similarity",
    "degenerate_rows",
    "fft_diff",
    "gromov_wasserstein",
    "js_divergence",
    "kl_divergence",
    "js_softmax",
    "kl_softmax",
    "l1_norm",
    "l1_norm_diff",
    "l2_norm",
    "layer_nmse",
    "log_norm_diff",
    "mae",
    "mape",
    "mse",
    "nmse",
    "norm_diff",
    "pearson",
    "per_layer",
    "quantile_loss",
    "saturation_share",
    "sinkhorn",
    "sliced_wasserstein",
    "sort_rows",
    "wasserstein_1",
    "wasserstein_2",
    "wasserstein_p",
]
