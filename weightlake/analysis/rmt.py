"""Random-matrix theory reference: ensembles, limiting densities and edge laws.

The textbook results that the spectra of trained layers are compared against, written as
small numpy functions so that tests and examples can check them by sampling:

* Gaussian ensembles GOE, GUE, GSE (Dyson index ``beta`` = 1, 2, 4) and the
  Dumitriu-Edelman tridiagonal model for any ``beta > 0``;
* the Wigner semicircle and the Marchenko-Pastur law (density, CDF, quantiles, edges);
* Wishart sampling;
* nearest-neighbour statistics: Wigner surmise, spacing ratios, unfolding;
* Tracy-Widom laws (CDF as a Fredholm determinant, moments, Johnstone's Wishart scaling);
* a Coulomb-gas (log-gas) Metropolis sampler.

Conventions
-----------
Gaussian ensembles are scaled so that an off-diagonal entry has ``E|H_ij|^2 = 1``; the
joint eigenvalue density is then proportional to
``prod_{i<j} |x_i - x_j|^beta * exp(-beta/4 * sum x_i^2)`` and the spectrum fills
``[-2 sqrt(N), 2 sqrt(N)]``.  Functions that take ``scale=True`` divide by ``sqrt(N)`` so
the semicircle sits on ``[-2, 2]``.  The Marchenko-Pastur law is written for the smaller
Gram side: ``W = X X^T / N`` with ``X`` of shape ``M x N``, ``M <= N``, iid entries of
variance ``sigma2``, ratio ``q = M / N`` in ``(0, 1]``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

SPACING_RATIO_MEAN: dict[Any, float] = {
    "poisson": 2 * math.log(2) - 1,
    1: 0.5307,
    2: 0.5996,
    4: 0.6744,
}
"""Large-N mean of ``r = min(s_i, s_{i+1}) / max(s_i, s_{i+1})`` (Atas et al. 2013)."""

TW_MEAN: dict[int, float] = {1: -1.2065335745820, 2: -1.7710868074116}
"""Means of the Tracy-Widom laws TW1 and TW2."""

TW_STD: dict[int, float] = {1: math.sqrt(1.6077810345810), 2: math.sqrt(0.8131947928329)}
"""Standard deviations of TW1 and TW2."""

TW1_Q95, TW1_Q99 = 0.9793, 2.0234
"""95 % and 99 % quantiles of TW1 (checked against :func:`tracy_widom_cdf` in the tests)."""

_SURMISE = {  # beta -> (a, b) of P(s) = a s^beta exp(-b s^2), unit mean spacing
    1: (math.pi / 2, math.pi / 4),
    2: (32 / math.pi**2, 4 / math.pi),
    4: (2**18 / (3**6 * math.pi**3), 64 / (9 * math.pi)),
}
_RATIO_NORM = {1: 8 / 27, 2: 4 * math.pi / (81 * math.sqrt(3)), 4: 4 * math.pi / (729 * math.sqrt(3))}


def _rng(seed: Any) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_beta(beta: int, allowed: tuple[int, ...] = (1, 2, 4)) -> None:
    if beta not in allowed:
        raise ValueError(f"expected beta in {allowed}, got {beta!r}")


# -- Gaussian ensembles ----------------------------------------------------------------------
def _complex_normal(rng: np.random.Generator, shape: tuple[int, ...], var: float) -> np.ndarray:
    """Circular complex Gaussian with ``E|z|^2 = var``."""
    sd = math.sqrt(var / 2)
    return rng.normal(0, sd, shape) + 1j * rng.normal(0, sd, shape)


def sample_gaussian_ensemble(n: int, beta: int = 1, size: int = 1, seed: Any = None) -> np.ndarray:
    """Sample ``size`` matrices of the GOE (``beta=1``), GUE (2) or GSE (4).

    Parameters
    ----------
    n : int
        Matrix order (for the GSE: quaternion order; the returned complex matrix is ``2n x 2n``).
    beta : {1, 2, 4}
        Dyson index.
    size : int
        Number of matrices.
    seed : int, Generator or None
        Random source.

    Returns
    -------
    numpy.ndarray
        ``[size, n, n]`` real symmetric (GOE), complex Hermitian (GUE), or ``[size, 2n, 2n]``
        complex Hermitian with quaternion structure ``[[A, B], [-conj(B), conj(A)]]`` (GSE),
        all with ``E|H_ij|^2 = 1`` off the diagonal.
    """
    _check_beta(beta)
    rng = _rng(seed)
    if beta == 1:
        a = rng.standard_normal((size, n, n))
        return (a + a.transpose(0, 2, 1)) / math.sqrt(2)
    if beta == 2:
        a = _complex_normal(rng, (size, n, n), 1.0)
        return (a + a.conj().transpose(0, 2, 1)) / math.sqrt(2)
    x, y = _complex_normal(rng, (size, n, n), 0.5), _complex_normal(rng, (size, n, n), 0.5)
    q = np.block([[x, y], [-y.conj(), x.conj()]])
    return (q + q.conj().transpose(0, 2, 1)) / math.sqrt(2)


def gaussian_ensemble_eigenvalues(n: int, beta: int = 1, size: int = 1, seed: Any = None,
                                  scale: bool = True) -> np.ndarray:
    """Sorted eigenvalues ``[size, n]`` of sampled GOE/GUE/GSE matrices.

    For the GSE each eigenvalue is doubly degenerate (Kramers pairs); one of each pair is kept.
    With ``scale=True`` the eigenvalues are divided by ``sqrt(n)`` (semicircle on ``[-2, 2]``).
    """
    h = sample_gaussian_ensemble(n, beta, size, seed)
    eigs = np.linalg.eigvalsh(h)
    if beta == 4:
        eigs = eigs[:, ::2]
    return eigs / math.sqrt(n) if scale else eigs


def sample_beta_hermite(n: int, beta: float, size: int = 1, seed: Any = None, scale: bool = True) -> np.ndarray:
    """Eigenvalues ``[size, n]`` of the Dumitriu-Edelman tridiagonal beta-Hermite ensemble.

    Works for any ``beta > 0`` and has the same joint density as :func:`gaussian_ensemble_eigenvalues`
    at ``beta`` = 1, 2, 4 (same convention), so it is the reference for the Coulomb gas sampler.
    """
    from scipy.linalg import eigvalsh_tridiagonal

    rng = _rng(seed)
    diag = rng.normal(0, math.sqrt(2), (size, n))
    off = np.sqrt(rng.chisquare(beta * np.arange(n - 1, 0, -1), (size, n - 1)))
    eigs = np.stack([eigvalsh_tridiagonal(d, e) for d, e in zip(diag, off, strict=True)])
    # DE's matrix is t / sqrt(2) with weight exp(-x^2 / 2); rescale to exp(-beta x^2 / 4)
    eigs *= 1 / math.sqrt(2) * math.sqrt(2 / beta)
    return eigs / math.sqrt(n) if scale else eigs


# -- limiting densities ------------------------------------------------------------------------
def semicircle_density(x: Any, radius: float = 2.0) -> np.ndarray:
    """Wigner semicircle ``2 / (pi R^2) * sqrt(R^2 - x^2)`` on ``[-R, R]``."""
    x = np.asarray(x, dtype=float)
    return 2 / (math.pi * radius**2) * np.sqrt(np.clip(radius**2 - x**2, 0, None))


def semicircle_cdf(x: Any, radius: float = 2.0) -> np.ndarray:
    """CDF of the semicircle law of radius ``radius``."""
    u = np.clip(np.asarray(x, dtype=float) / radius, -1, 1)
    return 0.5 + (u * np.sqrt(1 - u**2) + np.arcsin(u)) / math.pi


def mp_edges(q: float, sigma2: float = 1.0) -> tuple[float, float]:
    """Bulk edges ``sigma2 * (1 -/+ sqrt(q))^2`` of the Marchenko-Pastur law."""
    return sigma2 * (1 - math.sqrt(q)) ** 2, sigma2 * (1 + math.sqrt(q)) ** 2


def mp_density(x: Any, q: float, sigma2: float = 1.0) -> np.ndarray:
    """Marchenko-Pastur density ``sqrt((l+ - x)(x - l-)) / (2 pi sigma2 q x)`` for ``0 < q <= 1``."""
    if not 0 < q <= 1:
        raise ValueError(f"expected an aspect ratio 0 < q <= 1 (smaller Gram side), got {q!r}")
    x = np.asarray(x, dtype=float)
    lo, hi = mp_edges(q, sigma2)
    inside = np.clip((hi - x) * (x - lo), 0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, np.sqrt(inside) / (2 * math.pi * sigma2 * q * x), 0.0)


@lru_cache(maxsize=256)
def _mp_cdf_table(q: float, points: int = 4097) -> tuple[np.ndarray, np.ndarray]:
    """``(x, F(x))`` on a grid for ``sigma2 = 1``: substituting ``x = l- + w (1 - cos phi) / 2``
    removes the square-root edges, so a trapezoid rule in ``phi`` is accurate to ~1e-7."""
    lo, hi = mp_edges(q)
    w = hi - lo
    half = np.linspace(0, math.pi, points) / 2
    s2, c2 = np.sin(half) ** 2, np.cos(half) ** 2
    x = lo + w * s2
    # density dx = w^2 s2 c2 / (2 pi q x) dphi; at q = 1 (lo = 0) s2 / x -> 1 / w as phi -> 0
    ratio = np.divide(s2, x, out=np.full_like(x, 1 / w), where=x > 0)
    integrand = w**2 * c2 * ratio / (2 * math.pi * q)
    phi = 2 * half
    cdf = np.concatenate([[0.0], np.cumsum((integrand[1:] + integrand[:-1]) / 2 * np.diff(phi))])
    return x, cdf / cdf[-1]


def mp_cdf(x: Any, q: float, sigma2: float = 1.0) -> np.ndarray:
    """Marchenko-Pastur CDF for ``0 < q <= 1`` (numerical, accurate to about 1e-6)."""
    grid, cdf = _mp_cdf_table(float(q))
    return np.interp(np.asarray(x, dtype=float) / sigma2, grid, cdf)


def mp_quantile(p: Any, q: float, sigma2: float = 1.0) -> np.ndarray:
    """Inverse of :func:`mp_cdf`; ``mp_quantile(0.5, q)`` is the median used by the MP fit."""
    grid, cdf = _mp_cdf_table(float(q))
    return sigma2 * np.interp(np.asarray(p, dtype=float), cdf, grid)


# -- Wishart -----------------------------------------------------------------------------------
def sample_wishart(m: int, n: int, size: int = 1, sigma: float = 1.0, beta: int = 1, seed: Any = None) -> np.ndarray:
    """Sample ``size`` Wishart matrices ``X X^H / n`` with ``X`` of shape ``m x n``.

    Entries of ``X`` are real (``beta=1``) or complex (``beta=2``) Gaussian with ``E|x|^2 = sigma^2``.
    For ``m <= n`` the eigenvalues follow Marchenko-Pastur with ``q = m / n`` and ``sigma2 = sigma^2``.
    """
    _check_beta(beta, (1, 2))
    rng = _rng(seed)
    x = rng.normal(0, sigma, (size, m, n)) if beta == 1 else _complex_normal(rng, (size, m, n), sigma**2)
    return x @ x.conj().transpose(0, 2, 1) / n


# -- level statistics -------------------------------------------------------------------------
def wigner_surmise(s: Any, beta: Any = 1) -> np.ndarray:
    """Wigner surmise ``a s^beta exp(-b s^2)`` (unit mean), or ``exp(-s)`` for ``beta='poisson'``."""
    s = np.asarray(s, dtype=float)
    if beta == "poisson" or beta == 0:
        return np.exp(-s)
    _check_beta(beta)
    a, b = _SURMISE[beta]
    return a * s**beta * np.exp(-b * s**2)


def spacing_ratio_density(r: Any, beta: Any = 1) -> np.ndarray:
    """Surmise for the density of ``r~ = min(s_i, s_{i+1}) / max(...)`` on ``[0, 1]`` (Atas et al.).

    ``2 / Z_beta * (r + r^2)^beta / (1 + r + r^2)^(1 + 3 beta / 2)``, or ``2 / (1 + r)^2`` (Poisson).
    """
    r = np.asarray(r, dtype=float)
    inside = (r >= 0) & (r <= 1)
    if beta == "poisson" or beta == 0:
        return np.where(inside, 2 / (1 + r) ** 2, 0.0)
    _check_beta(beta)
    dens = 2 / _RATIO_NORM[beta] * (r + r**2) ** beta / (1 + r + r**2) ** (1 + 1.5 * beta)
    return np.where(inside, dens, 0.0)


def spacing_ratios(eigs: Any) -> np.ndarray:
    """Ratios ``min(s_i, s_{i+1}) / max(s_i, s_{i+1})`` of consecutive spacings along the last axis.

    Input need not be sorted.  Output has two fewer entries than the input; a 0/0 ratio
    (three equal eigenvalues) is NaN.
    """
    s = np.diff(np.sort(np.asarray(eigs, dtype=float), axis=-1), axis=-1)
    lo, hi = np.minimum(s[..., 1:], s[..., :-1]), np.maximum(s[..., 1:], s[..., :-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(hi > 0, lo / hi, np.nan)


def mean_spacing_ratio(eigs: Any) -> np.ndarray:
    """Mean spacing ratio along the last axis; NaN where fewer than 3 eigenvalues (or only ties)."""
    eigs = np.asarray(eigs, dtype=float)
    if eigs.shape[-1] < 3:
        return np.full(eigs.shape[:-1], np.nan)
    r = spacing_ratios(eigs)
    count = np.sum(~np.isnan(r), axis=-1)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, np.nansum(r, axis=-1) / np.maximum(count, 1), np.nan)


def unfold_spectrum(eigs: Any, cdf: Any = None, degree: int = 9) -> np.ndarray:
    """Map sorted eigenvalues ``[..., n]`` to unit mean density.

    With ``cdf`` (a callable limiting CDF) the unfolded values are ``n * cdf(x)``; without it
    a polynomial of ``degree`` is fitted to the empirical staircase ``x_(i) -> i`` of each row.
    """
    x = np.sort(np.asarray(eigs, dtype=float), axis=-1)
    n = x.shape[-1]
    if cdf is not None:
        return n * np.asarray(cdf(x))
    flat = x.reshape(-1, n)
    stairs = np.arange(1, n + 1, dtype=float)
    out = np.stack([np.polynomial.Polynomial.fit(row, stairs, degree)(row) for row in flat])
    return out.reshape(x.shape)


def unfolded_spacings(eigs: Any, cdf: Any = None, degree: int = 9, trim: float = 0.1) -> np.ndarray:
    """Nearest-neighbour spacings of the unfolded spectrum, pooled and scaled to unit mean.

    ``trim`` drops that fraction of eigenvalues at each edge, where unfolding is least reliable.
    """
    u = unfold_spectrum(eigs, cdf, degree)
    n = u.shape[-1]
    cut = int(trim * n)
    s = np.diff(u[..., cut:n - cut], axis=-1).ravel()
    return s / s.mean()


# -- Tracy-Widom --------------------------------------------------------------------------------
def _airy_kernel_det(s: float, nodes: int) -> float:
    from scipy.special import airy

    t, w = np.polynomial.legendre.leggauss(nodes)
    hi = max(s, 0.0) + 14.0
    x = s + (t + 1) * (hi - s) / 2
    w = w * (hi - s) / 2
    ai, aip, _, _ = airy(x)
    dx = x[:, None] - x[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        k = (ai[:, None] * aip[None, :] - aip[:, None] * ai[None, :]) / dx
    k[np.diag_indices(nodes)] = aip**2 - x * ai**2
    sw = np.sqrt(w)
    return float(np.linalg.det(np.eye(nodes) - sw[:, None] * k * sw[None, :]))


def _goe_kernel_det(s: float, nodes: int) -> float:
    from scipy.special import airy

    t, w = np.polynomial.legendre.leggauss(nodes)
    length = 2 * (14.0 - min(s, 0.0))
    x = (t + 1) * length / 2
    w = w * length / 2
    k = 0.5 * airy((x[:, None] + x[None, :]) / 2 + s)[0]
    sw = np.sqrt(w)
    return float(np.linalg.det(np.eye(nodes) - sw[:, None] * k * sw[None, :]))


def tracy_widom_cdf(s: Any, beta: int = 1, nodes: int = 40) -> np.ndarray:
    """Tracy-Widom CDF ``F_beta(s)`` for ``beta`` = 1 or 2, as a Fredholm determinant.

    Bornemann's method: ``F_2(s) = det(I - K_Airy)`` on ``L2(s, inf)`` and
    ``F_1(s) = det(I - A_s)`` on ``L2(0, inf)`` with ``A_s(x, y) = Ai((x + y) / 2 + s) / 2``,
    each discretised by Gauss-Legendre quadrature (truncated where Ai is below ~1e-13).
    """
    _check_beta(beta, (1, 2))
    det = _goe_kernel_det if beta == 1 else _airy_kernel_det
    values = [det(float(v), nodes) for v in np.ravel(s)]
    return np.clip(np.reshape(values, np.shape(s)), 0.0, 1.0)


def tracy_widom_moments(beta: int = 1, lo: float = -9.0, hi: float = 8.0, points: int = 400) -> tuple[float, float]:
    """Mean and standard deviation of TW_beta from :func:`tracy_widom_cdf` (numerical check of the constants)."""
    s = np.linspace(lo, hi, points)
    f = tracy_widom_cdf(s, beta)
    mean = hi - np.trapezoid(f, s)
    second = hi**2 - np.trapezoid(2 * s * f, s)
    return float(mean), float(math.sqrt(second - mean**2))


def wishart_edge_scaling(n: Any, p: Any, beta: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Centering and scaling of the largest eigenvalue of ``X^T X``, ``X`` of shape ``n x p`` with iid N(0, 1).

    Johnstone (2001) for real data (``beta=1``): ``mu = (sqrt(n-1) + sqrt(p))^2``,
    ``sigma = (sqrt(n-1) + sqrt(p)) (1/sqrt(n-1) + 1/sqrt(p))^(1/3)``, so that
    ``(l_max - mu) / sigma`` tends to TW1.  Complex data (``beta=2``, Johansson 2000) uses ``n``.
    """
    _check_beta(beta, (1, 2))
    a = np.sqrt(np.asarray(n, dtype=float) - (1 if beta == 1 else 0))
    b = np.sqrt(np.asarray(p, dtype=float))
    return (a + b) ** 2, (a + b) * (1 / a + 1 / b) ** (1 / 3)


def gaussian_edge_statistic(lambda_max: Any, n: int, scaled: bool = True) -> np.ndarray:
    """``(lambda_max - 2 sqrt(n)) n^(1/6)``, which tends to TW_beta for GOE/GUE in this module's convention.

    With ``scaled=True`` ``lambda_max`` is taken on the ``[-2, 2]`` scale (already divided by ``sqrt(n)``).
    """
    lam = np.asarray(lambda_max, dtype=float) * (math.sqrt(n) if scaled else 1.0)
    return (lam - 2 * math.sqrt(n)) * n ** (1 / 6)


# -- Coulomb gas -------------------------------------------------------------------------------
def coulomb_gas_energy(y: Any) -> np.ndarray:
    """Energy ``n/4 sum y_i^2 - sum_{i<j} log|y_i - y_j|`` of configurations ``[..., n]`` (scaled units)."""
    y = np.asarray(y, dtype=float)
    n = y.shape[-1]
    d = np.abs(y[..., :, None] - y[..., None, :])
    iu = np.triu_indices(n, 1)
    return n / 4 * np.sum(y**2, axis=-1) - np.sum(np.log(d[..., iu[0], iu[1]]), axis=-1)


def sample_coulomb_gas(n: int, beta: float, chains: int = 64, sweeps: int = 400, burn_in: int = 200,
                       thin: int = 10, seed: Any = None) -> np.ndarray:
    """Metropolis samples of the log-gas ``exp(-beta * coulomb_gas_energy(y))``.

    This is the eigenvalue law of the beta-Hermite ensemble on the ``[-2, 2]`` scale, read as
    ``n`` charges repelling logarithmically in a quadratic well at temperature ``1/beta``.
    Each sweep proposes a Gaussian move of every charge in turn, in all ``chains`` at once; the
    step size adapts towards 40-60 % acceptance during burn-in.

    Returns
    -------
    numpy.ndarray
        ``[draws, n]`` sorted configurations, ``draws = chains * ((sweeps - burn_in) // thin)``.
    """
    rng = _rng(seed)
    y = np.sort(rng.uniform(-2, 2, (chains, n)), axis=1)
    step, draws = 0.5 / n, []
    for sweep in range(sweeps):
        accepted = _coulomb_sweep(y, n, beta, step, rng)
        if sweep < burn_in:
            step *= 1.1 if accepted > 0.6 else (0.9 if accepted < 0.4 else 1.0)
        elif (sweep - burn_in + 1) % thin == 0:
            draws.append(np.sort(y, axis=1))
    return np.concatenate(draws) if draws else np.empty((0, n))


def _coulomb_sweep(y: np.ndarray, n: int, beta: float, step: float, rng: np.random.Generator) -> float:
    """One in-place Metropolis sweep over all charges; returns the acceptance rate."""
    accepted = 0
    for i in range(n):
        old, new = y[:, i], y[:, i] + step * rng.standard_normal(y.shape[0])
        others = np.delete(y, i, axis=1)
        with np.errstate(divide="ignore"):
            log_old = np.log(np.abs(others - old[:, None])).sum(axis=1)
            log_new = np.log(np.abs(others - new[:, None])).sum(axis=1)
        delta = n / 4 * (new**2 - old**2) - (log_new - log_old)
        ok = np.log(rng.uniform(size=y.shape[0])) < -beta * delta
        y[ok, i] = new[ok]
        accepted += int(ok.sum())
    return accepted / (n * y.shape[0])
