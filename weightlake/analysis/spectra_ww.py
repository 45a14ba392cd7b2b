"""Layer spectra in WeightWatcher's convention (version 0.7.7), batched over whole zoos.

WeightWatcher is what the literature on heavy-tailed self-regularisation reports, so a user
comparing a zoo with published figures needs its numbers, defined as it defines them.  They
differ from :mod:`weightlake.analysis.spectra` in three ways:

* **eigenvalues are not normalised**: ``lambda_i = s_i^2`` for the singular values ``s_i`` of the
  weight matrix (ours divide by ``N = max(rows, cols)``);
* **conv layers are cut into slices**: a kernel ``[out, in, kh, kw]`` gives ``kh * kw`` matrices
  ``W[:, :, i, j]`` of shape ``out x in``; their eigenvalues are pooled into one spectrum of
  ``kh * kw * min(out, in)`` values and multiplied by 1/2 (WeightWatcher scales each slice by
  ``sqrt(1/2)``, its ``conv2d_norm``).  Ours use one ``out x (in*kh*kw)`` matrix;
* **names**: ``norm`` is the squared Frobenius norm ``sum lambda`` (not its root),
  ``spectral_norm`` is ``lambda_max = s_max^2`` (not ``s_max``), ``log_*`` are base-10 logs.

Columns (per model and layer)
-----------------------------
``N``, ``M`` (larger and smaller side of one slice), ``rf`` (slices: ``kh*kw``, 1 for linear),
``num_evals`` (``M * rf``), ``norm`` = ``sum lambda``, ``log_norm`` = ``log10(norm)``,
``spectral_norm`` = ``max lambda``, ``log_spectral_norm``, ``stable_rank`` = ``norm / spectral_norm``,
``alpha`` (power-law exponent, below), ``alpha_weighted`` = ``alpha * log_spectral_norm``,
``log_alpha_norm`` = ``log10(sum lambda^alpha)``, ``xmin``/``xmax`` (fitted tail range), ``D``
(its KS distance), ``sigma`` = ``(alpha - 1) / sqrt(tail size)``, ``num_pl_spikes`` (eigenvalues at
or above ``xmin``), ``sv_max`` (largest singular value of the scaled slices), ``ww_note``.

Power-law fit
-------------
On the eigenvalues above ``1e-5`` (``k`` of them), every eigenvalue but the largest is a
candidate ``xmin``; the tail ``x_i..x_k`` (``n`` values) gets ``alpha = 1 + n / sum log(x_j / xmin)``
and ``D = max_j |1 - (x_j / xmin)^(1 - alpha) - (j - i) / n|`` (``D = 1`` where ``alpha <= 1``); the
smallest ``D`` wins.  With ``k < 20`` (WeightWatcher's small-sample path) only tails of at least 8
values count, ``alpha = 1 + (n - 1) / sum log(x_j / xmin)`` and the winner minimises
``D`` as well (its small-sample score ``D - 0.868 / sqrt(n)`` is computed but, in 0.7.7, the
smallest ``D`` overrides it).  When no tail has 8 values (a rank-deficient layer with fewer than 8
eigenvalues above ``1e-5``) both fit the whole spectrum and agree on ``alpha``, ``xmin`` and ``D``, but
WeightWatcher 0.7.7 reports ``sigma = -1 / sqrt(k)`` (computed before it sets that tail's ``alpha``);
``sigma`` here is ``(alpha - 1) / sqrt(k)`` as everywhere else.  Where no fit exists the figures are NaN and ``ww_note`` says why
(WeightWatcher itself writes -1).  Layers with fewer than ``min_evals`` eigenvalues (its default 8)
are skipped by WeightWatcher: here their rows are NaN with a note.  In the frames of :func:`zoo_spectra_ww`
(and the ``spectra_weightwatcher`` table) those NaN are null, and so is ``num_pl_spikes`` where no fit exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from weightlake.arch import CNN_S, Architecture

WW_VERSION = "0.7.7"
"""The WeightWatcher version whose definitions this module follows (and is tested against)."""
EVALS_THRESH = 1e-5
SMALL_N = 20
SMALL_N_MIN_TAIL = 8
MIN_EVALS = 8

WW_COLUMNS: tuple[str, ...] = (
    "row", "layer", "layer_type", "N", "M", "rf", "num_evals", "norm", "log_norm", "spectral_norm",
    "log_spectral_norm", "stable_rank", "alpha", "alpha_weighted", "log_alpha_norm", "xmin", "xmax", "D", "sigma",
    "num_pl_spikes", "sv_max", "ww_note",
)
"""Columns of :func:`zoo_spectra_ww`, in order."""


def ww_eigenvalues(weights: Any) -> tuple[np.ndarray, dict[str, int]]:
    """Eigenvalues ``[n, num_evals]`` (ascending) of one layer of ``n`` models, WeightWatcher's way.

    Parameters
    ----------
    weights : array, shape ``[n, out, in]`` or ``[n, out, in, kh, kw]``
        Linear weights or conv kernels (PyTorch layout).

    Returns
    -------
    eigenvalues : numpy.ndarray
        ``s^2`` of the matrix (linear), or the pooled ``s^2 / 2`` of the ``kh*kw`` slices (conv).
    shape : dict
        ``N``, ``M``, ``rf`` of the layer.
    """
    import torch

    from weightlake.analysis.spectra import refuse_non_finite

    w = torch.as_tensor(np.array(weights, dtype=np.float64))
    if w.ndim in (3, 5):
        refuse_non_finite(w)
    if w.ndim == 3:
        sv, rf, scale = torch.linalg.svdvals(w), 1, 1.0
    elif w.ndim == 5:
        n, out, inp, kh, kw = w.shape
        slices = w.permute(0, 3, 4, 1, 2).reshape(n, kh * kw, out, inp)
        sv, rf, scale = torch.linalg.svdvals(slices).reshape(n, -1), kh * kw, 0.5
    else:
        raise ValueError(f"expected weights [n, out, in] or [n, out, in, kh, kw], got shape {tuple(w.shape)}")
    out_, in_ = int(w.shape[1]), int(w.shape[2])
    evals = np.sort(sv.numpy() ** 2 * scale, axis=1)
    return evals, {"N": max(out_, in_), "M": min(out_, in_), "rf": rf}


def norm_metrics(evals: np.ndarray, alpha: np.ndarray) -> dict[str, np.ndarray]:
    """WeightWatcher's norm figures of ascending eigenvalue rows ``[n, k]`` (module docstring)."""
    norm = evals.sum(axis=1)
    spectral = evals[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_spectral = np.log10(spectral)
        return {
            "norm": norm, "log_norm": np.log10(norm), "spectral_norm": spectral, "log_spectral_norm": log_spectral,
            "stable_rank": norm / spectral, "alpha_weighted": alpha * log_spectral,
            "log_alpha_norm": np.log10(np.sum(evals ** alpha[:, None], axis=1)),
        }


def fit_power_law(evals: np.ndarray) -> dict[str, Any]:
    """WeightWatcher's power-law fit of one ascending eigenvalue vector (module docstring).

    Returns ``alpha``, ``xmin``, ``xmax``, ``D``, ``sigma``, ``num_pl_spikes`` and ``ww_note``
    (NaN figures and a reason where no fit exists).
    """
    data = np.sort(evals[evals > EVALS_THRESH]).astype(np.float64)
    k = len(data)
    if k < 2:
        return _failed(f"{k} eigenvalues above {EVALS_THRESH:g}: no power-law fit")
    logs = np.log(data)
    i = np.arange(k - 1)
    n = (k - i).astype(np.float64)
    tail_logs = np.cumsum(logs[::-1])[::-1][:-1] - n * logs[:-1]  # sum_{j >= i} log(x_j / x_i)
    small = k < SMALL_N
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        alpha = 1 + (n - 1 if small else n) / tail_logs
        d = _ks_distances(data, logs, alpha)
    valid = alpha > 1
    if small:
        valid &= (n >= SMALL_N_MIN_TAIL) & (tail_logs > 1e-12)
        valid[0] |= not valid.any()  # no admissible tail: the whole spectrum
    best = int(np.argmin(np.where(valid, d, 1.0)))
    if not tail_logs[best] > 1e-12:
        return _failed("degenerate spectrum (all eigenvalues equal)")
    a = float(alpha[best])
    if not np.isfinite(a):
        return _failed("power-law fit failed")
    xmin = float(data[best])
    return {"alpha": a, "xmin": xmin, "xmax": float(data[-1]), "D": float(d[best]),
            "sigma": (a - 1) / float(np.sqrt(k - best)), "num_pl_spikes": int(np.sum(evals >= xmin)), "ww_note": ""}


def _ks_distances(data: np.ndarray, logs: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``max_j |1 - (x_j / x_i)^(1 - alpha_i) - (j - i) / n_i|`` for every candidate ``i`` at once."""
    k = len(data)
    i, j = np.arange(k - 1)[:, None], np.arange(k)[None, :]
    n = (k - i).astype(np.float64)
    fit = 1 - np.exp((1 - alpha[:, None]) * (logs[None, :] - logs[:-1, None]))
    gap = np.abs(fit - (j - i) / n)
    return np.where(j >= i, gap, 0.0).max(axis=1)


def _failed(note: str) -> dict[str, Any]:
    nan = float("nan")
    return {"alpha": nan, "xmin": nan, "xmax": nan, "D": nan, "sigma": nan, "num_pl_spikes": 0, "ww_note": note}


def layer_spectra_ww(weights: Any, kind: str, min_evals: int = MIN_EVALS) -> dict[str, np.ndarray]:
    """All WeightWatcher figures of one layer of ``n`` models (module docstring defines each one).

    Parameters
    ----------
    weights : array, shape ``[n, out, in]`` (linear) or ``[n, out, in, kh, kw]`` (conv2d)
    kind : {"linear", "conv2d"}
        Written to ``layer_type`` as WeightWatcher names it (``dense`` / ``conv2d``).
    min_evals : int
        Layers with fewer eigenvalues are rows of NaN with a note (WeightWatcher skips them).
    """
    evals, shape = ww_eigenvalues(weights)
    n, k = evals.shape
    skipped = k < min_evals
    fits = [_failed(f"skipped: {k} eigenvalues < min_evals {min_evals}") if skipped else fit_power_law(row)
            for row in evals]
    fitted = {key: np.array([f[key] for f in fits]) for key in fits[0]} if fits else {
        key: np.zeros(0) for key in _failed("")}
    out: dict[str, Any] = {
        "layer_type": np.full(n, "conv2d" if kind == "conv2d" else "dense", dtype=object),
        **{key: np.full(n, value, dtype=np.int32) for key, value in shape.items()},
        "num_evals": np.full(n, k, dtype=np.int32), "sv_max": np.sqrt(evals[:, -1]),
    }
    out.update(norm_metrics(evals, fitted["alpha"].astype(np.float64)))
    if skipped:
        out.update({key: np.full(n, np.nan) for key, value in out.items() if value.dtype.kind == "f"})
    out.update(fitted, num_pl_spikes=fitted["num_pl_spikes"].astype(np.int32))
    return out


def zoo_spectra_ww(flat_rows: Any, arch: Architecture = CNN_S, *, layers: Sequence[str] | None = None,
                   min_evals: int = MIN_EVALS) -> Any:
    """WeightWatcher figures of every layer of every model, one row per (model, layer).

    Parameters
    ----------
    flat_rows : array, shape ``[n, P]``
    arch : Architecture
    layers : sequence of str, optional
        Layer names (default: every conv2d and linear layer of ``arch``).
    min_evals : int
        WeightWatcher's ``min_evals``.

    Returns
    -------
    polars.DataFrame
        Columns :data:`WW_COLUMNS`; ``row`` indexes ``flat_rows``; sorted by ``row`` then ``layer``.
    """
    import polars as pl

    from weightlake.analysis.spectra import refuse_non_finite_rows

    arch.check_flat(flat_rows)
    refuse_non_finite_rows(flat_rows)
    names = tuple(dict.fromkeys(layers)) if layers is not None else arch.matrix_layer_names  # named twice: once
    dtype = pl.Enum(list(arch.matrix_layer_names))
    n = flat_rows.shape[0]
    frames = []
    for name in names:
        spec = arch.layer(name)
        cols = layer_spectra_ww(arch.select(flat_rows, name), spec.kind, min_evals)
        data: dict[str, Any] = {"row": np.arange(n, dtype=np.int64), "layer": pl.Series([name] * n, dtype=dtype)}
        for key in WW_COLUMNS[2:]:
            data[key] = pl.Series(key, cols[key], dtype=pl.String if key in ("layer_type", "ww_note") else None)
        # no fit (a skipped layer, a degenerate spectrum): null figures, so SQL aggregates skip them, and no
        # count of power-law spikes either (0 would read as a fit with none)
        frame = pl.DataFrame(data).fill_nan(None)
        frames.append(frame.with_columns(num_pl_spikes=pl.when(pl.col("alpha").is_null()).then(None)
                                         .otherwise(pl.col("num_pl_spikes"))))
    return pl.concat(frames, how="vertical").sort(["row", "layer"], maintain_order=True)
