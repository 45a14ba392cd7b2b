"""Finite-N random-matrix results of the textbook (Livan, Novaes, Vivo, *Introduction to Random
Matrices: Theory and Practice*), in the book's own convention, with samplers to check them.

:mod:`weightlake.analysis.rmt` holds the large-N laws in a convention made for weight matrices;
this module follows the book's scripts so each of its checks can be run as written:

* **Gaussian ensembles** (:func:`sample_book_ensemble`): ``H = (M + M^H) / 2`` for ``M`` with iid
  standard real (GOE), complex ``N(0,1) + i N(0,1)`` (GUE) or quaternion (GSE, ``2N x 2N`` complex)
  entries.  GOE and GUE have the joint eigenvalue density ``prod |x_i - x_j|^beta exp(-sum x_i^2 / 2)``;
  at large N the spectrum fills ``|x| <= sqrt(2N)`` (GOE), ``2 sqrt(N)`` (GUE), ``2 sqrt(2N)`` (GSE).
* **Finite-N densities**, normalised to 1: GUE from Hermite functions (eq. 10.20), GOE for even
  ``N`` (eq. 11.21), GSE (eq. 11.36), and their rescaled forms that tend to the semicircle
  ``sqrt(2 - x^2) / pi`` (the book's radius ``sqrt(2)``).
* **Andreief's identity** (eqs. 11.8-11.9): the probability that an ``N x N`` GUE matrix has
  exactly ``n`` positive eigenvalues, from the generating function ``det A(z) / det B``.
* **Spacings and Wishart as in the scripts**: the 2 x 2 GOE spacing ``s/2 exp(-s^2/4)`` (surmise.m)
  and Wishart matrices for ``beta`` = 1, 2, 4 (Wishart_check.m).
* helpers ``histnorm`` (a histogram normalised to unit area) and ``double_factorial``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from weightlake.analysis.rmt import _check_beta, _rng


# -- helpers ---------------------------------------------------------------------------------------
def double_factorial(n: int) -> int:
    """``n!! = n (n - 2) (n - 4) ...`` down to 1 or 2; ``0!! = (-1)!! = 1`` (as the book's script)."""
    if n < -1:
        raise ValueError(f"double factorial needs n >= -1, got {n!r}")
    return math.prod(range(n, 0, -2)) if n > 0 else 1


def histnorm(data: Any, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Histogram normalised to unit area: ``(density, bin centres)`` over ``bins`` equal bins
    from ``min(data)`` to ``max(data)`` (what the book's ``histnorm.m`` returns)."""
    data = np.ravel(np.asarray(data, dtype=float))
    density, edges = np.histogram(data, bins=bins, range=(data.min(), data.max()), density=True)
    return density, (edges[1:] + edges[:-1]) / 2


def hermite_functions(n_max: int, x: Any) -> np.ndarray:
    """Orthonormal Hermite functions ``psi_k(x) = H_k(x) exp(-x^2/2) / sqrt(2^k k! sqrt(pi))``,
    ``k = 0..n_max``, shape ``[n_max + 1, *x.shape]``, by the three-term recurrence (stable at any order)."""
    x = np.asarray(x, dtype=float)
    out = np.zeros((n_max + 1, *x.shape))
    out[0] = math.pi ** -0.25 * np.exp(-x**2 / 2)
    if n_max >= 1:
        out[1] = math.sqrt(2) * x * out[0]
    for k in range(1, n_max):
        out[k + 1] = math.sqrt(2 / (k + 1)) * x * out[k] - math.sqrt(k / (k + 1)) * out[k - 1]
    return out


# -- sampling in the book's convention ----------------------------------------------------------------
def sample_book_ensemble(n: int, beta: int = 1, size: int = 1, seed: Any = None) -> np.ndarray:
    """Sorted eigenvalues ``[size, n]`` of GOE/GUE/GSE matrices built as the book's scripts build them.

    ``H = (M + M^H) / 2`` with ``M`` real standard normal (``beta=1``), ``N(0,1) + i N(0,1)`` (2), or
    the quaternion block ``[[A, B], [-conj(B), conj(A)]]`` of two such complex matrices (4; one
    eigenvalue of each Kramers pair is kept).
    """
    _check_beta(beta)
    rng = _rng(seed)
    if beta == 1:
        m = rng.standard_normal((size, n, n))
    elif beta == 2:
        m = rng.standard_normal((size, n, n)) + 1j * rng.standard_normal((size, n, n))
    else:
        a = rng.standard_normal((size, n, n)) + 1j * rng.standard_normal((size, n, n))
        b = rng.standard_normal((size, n, n)) + 1j * rng.standard_normal((size, n, n))
        m = np.block([[a, b], [-b.conj(), a.conj()]])
    eigs = np.linalg.eigvalsh((m + np.conj(m).transpose(0, 2, 1)) / 2)
    return eigs[:, ::2] if beta == 4 else eigs


BOOK_SCALE = {1: 1.0, 2: 2.0, 4: 4.0}
"""Eigenvalues of :func:`sample_book_ensemble` divided by ``sqrt(BOOK_SCALE[beta] * N)`` fill the
semicircle of radius ``sqrt(2)`` (the scalings of Gaussian_finite_N_rescaled.m)."""


def sample_rescaled_ensemble(n: int, beta: int = 1, size: int = 1, seed: Any = None) -> np.ndarray:
    """Eigenvalues of the rescaled ensembles, whose density tends to ``sqrt(2 - x^2) / pi``."""
    return sample_book_ensemble(n, beta, size, seed) / math.sqrt(BOOK_SCALE[beta] * n)


# -- finite-N densities ------------------------------------------------------------------------------------
def gue_density(x: Any, n: int) -> np.ndarray:
    """GUE eigenvalue density at finite ``n`` (eq. 10.20), normalised to 1.

    ``rho(x) = 1 / (n sqrt(2 pi)) sum_{j<n} H_j(x / sqrt 2)^2 exp(-x^2/2) / (2^j j!)``, written with
    Hermite functions: ``rho(x) = 1 / (n sqrt 2) sum_{j<n} psi_j(x / sqrt 2)^2``.
    """
    psi = hermite_functions(n - 1, np.asarray(x, dtype=float) / math.sqrt(2))
    return (psi**2).sum(axis=0) / (n * math.sqrt(2))


def goe_density(x: Any, n: int, nodes: int = 120) -> np.ndarray:
    """GOE eigenvalue density at finite even ``n`` (eq. 11.21), normalised to 1.

    The skew-orthogonal form of eq. 11.21 reduces to Hermite functions (Mehta's form):
    ``rho(x) = (1/n) [sum_{k<n} psi_k(x)^2 + sqrt(n/2) psi_{n-1}(x) int_0^x psi_n(t) dt]``; the
    integral is done by Gauss-Legendre quadrature on ``[0, x]`` (exact to ~1e-13 with 120 nodes for
    ``n`` up to about 40).
    """
    if n % 2 or n < 2:
        raise ValueError(f"the finite-N GOE density (eq. 11.21) is for even N, got {n!r}")
    x = np.asarray(x, dtype=float)
    psi = hermite_functions(n, x)
    t, w = np.polynomial.legendre.leggauss(nodes)
    flat = x.reshape(-1, 1)
    points = (t[None, :] + 1) / 2 * flat
    integral = (hermite_functions(n, points)[n] * (w[None, :] / 2 * flat)).sum(axis=1).reshape(x.shape)
    return ((psi[:n] ** 2).sum(axis=0) + math.sqrt(n / 2) * psi[n - 1] * integral) / n


def gse_density(x: Any, n: int) -> np.ndarray:
    """GSE eigenvalue density at finite ``n`` (eq. 11.36, the ``n`` distinct eigenvalues), normalised to 1.

    ``rho(x) = 1/(2n) sum_{k<n} exp(-x^2/2) (Q_{2k} Q'_{2k+1} - Q_{2k+1} Q'_{2k})`` with the
    skew-orthogonal polynomials of the book: ``Q_{2k+1} ~ H_{2k+1}(x / sqrt 2)`` and
    ``Q~_{2k} = 4k Q~_{2k-2} + H_{2k}(x / sqrt 2)``.  Built from Hermite polynomials, so keep ``n``
    below about 40.
    """
    from scipy.special import eval_hermite

    x = np.asarray(x, dtype=float)
    y = x / math.sqrt(2)
    rho, q_tilde, dq_tilde = np.zeros_like(x), np.ones_like(x), np.zeros_like(x)
    for k in range(n):
        if k:
            q_tilde = 4 * k * q_tilde + eval_hermite(2 * k, y)
            dq_tilde = 4 * k * (dq_tilde + eval_hermite(2 * k - 1, y) / math.sqrt(2))
        even = math.sqrt(2) / (math.pi**0.25 * 2**k * double_factorial(2 * k))
        odd = 1 / (math.pi**0.25 * 2**k * double_factorial(2 * k + 1))
        q_odd = eval_hermite(2 * k + 1, y) * odd / math.sqrt(2)
        dq_odd = (2 * k + 1) * eval_hermite(2 * k, y) * odd
        rho += np.exp(-x**2 / 2) * (q_tilde * even * dq_odd - q_odd * dq_tilde * even)
    return rho / (2 * n)


def finite_density(x: Any, n: int, beta: int) -> np.ndarray:
    """The finite-``n`` density of :func:`sample_book_ensemble` for ``beta`` = 1 (even ``n``), 2 or 4."""
    _check_beta(beta)
    return {1: goe_density, 2: gue_density, 4: gse_density}[beta](x, n)


def finite_density_rescaled(x: Any, n: int, beta: int) -> np.ndarray:
    """The finite-``n`` density of :func:`sample_rescaled_ensemble`; tends to ``sqrt(2 - x^2) / pi``."""
    scale = math.sqrt(BOOK_SCALE[beta] * n)
    return scale * finite_density(np.asarray(x, dtype=float) * scale, n, beta)


# -- Andreief: how many eigenvalues are positive --------------------------------------------------------------
def gue_positive_count_probabilities(n: int, digits: int = 40) -> np.ndarray:
    """``P(N = n, k)``: probability that an ``n x n`` GUE matrix has exactly ``k`` positive eigenvalues,
    ``k = 0..n`` (eqs. 11.8-11.9).

    By Andreief's identity the generating function ``phi(z) = sum_k P(k) z^k`` is ``det A(z) / det B``
    with ``A_jk = ((-1)^(j+k) + z) 2^((j+k-3)/2) Gamma((j+k-1)/2)`` and ``B = A(1)``; ``P(k)`` is its
    ``k``-th Taylor coefficient at 0.  ``phi`` is a polynomial of degree ``n``, so its coefficients are
    recovered exactly from its values at ``z = 0..n`` (determinants and the Vandermonde solve in
    ``digits``-digit arithmetic with mpmath, which the book's script does symbolically).
    """
    import mpmath

    with mpmath.workdps(digits):
        def a(z: Any) -> Any:  # 0-based j, k: the book's j + k - 3 is j + k - 1 here
            return mpmath.matrix([[((-1) ** (j + k) + z) * mpmath.sqrt(2) ** (j + k - 1)
                                   * mpmath.gamma(mpmath.mpf(j + k + 1) / 2) for k in range(n)] for j in range(n)])

        norm = mpmath.det(a(1))
        points = list(range(n + 1))
        values = mpmath.matrix([mpmath.det(a(z)) / norm for z in points])
        vandermonde = mpmath.matrix([[mpmath.mpf(z) ** k for k in range(n + 1)] for z in points])
        coeffs = mpmath.lu_solve(vandermonde, values)
        return np.array([float(c) for c in coeffs])


def positive_count_frequencies(eigs: Any) -> np.ndarray:
    """Share of samples ``[size, n]`` with exactly ``k`` positive eigenvalues, ``k = 0..n``."""
    eigs = np.asarray(eigs)
    counts = np.bincount((eigs > 0).sum(axis=1), minlength=eigs.shape[1] + 1)
    return counts / len(eigs)


# -- the scripts' spacing and Wishart checks --------------------------------------------------------------
def goe2_spacing_density(s: Any) -> np.ndarray:
    """Spacing density ``s/2 exp(-s^2/4)`` of the 2 x 2 GOE matrix ``[[x1, x3], [x3, x2]]``, ``x1, x2 ~ N(0, 1)``,
    ``x3 ~ N(0, 1/2)`` (surmise.m; mean spacing ``sqrt(pi)``, not 1 as in :func:`rmt.wigner_surmise`)."""
    s = np.asarray(s, dtype=float)
    return np.where(s >= 0, s / 2 * np.exp(-s**2 / 4), 0.0)


def goe2_spacing_cdf(s: Any) -> np.ndarray:
    """CDF ``1 - exp(-s^2/4)`` of :func:`goe2_spacing_density`."""
    s = np.asarray(s, dtype=float)
    return np.where(s >= 0, 1 - np.exp(-s**2 / 4), 0.0)


def sample_goe2_spacings(size: int, seed: Any = None) -> np.ndarray:
    """Spacings of ``size`` sampled 2 x 2 GOE matrices built as surmise.m builds them."""
    rng = _rng(seed)
    x1, x2, x3 = rng.standard_normal(size), rng.standard_normal(size), rng.standard_normal(size) / math.sqrt(2)
    return np.sqrt((x1 - x2) ** 2 + 4 * x3**2)  # |difference of the two eigenvalues|


def sample_book_wishart(n: int, m: int, beta: int = 1, size: int = 1, seed: Any = None) -> np.ndarray:
    """Eigenvalues ``[size, n]`` of ``H H^H / (beta n)`` for ``H`` of shape ``n x m`` (``n < m``) with real,
    complex or quaternion standard entries (Wishart_check.m); they follow :func:`book_mp_density`."""
    _check_beta(beta)
    rng = _rng(seed)

    def cplx() -> np.ndarray:
        return rng.standard_normal((size, n, m)) + 1j * rng.standard_normal((size, n, m))

    if beta == 1:
        h = rng.standard_normal((size, n, m))
    elif beta == 2:
        h = cplx()
    else:
        a, b = cplx(), cplx()
        h = np.block([[a, b], [-b.conj(), a.conj()]])
    eigs = np.linalg.eigvalsh(h @ np.conj(h).transpose(0, 2, 1)) / (beta * n)
    return eigs[:, ::2] if beta == 4 else eigs


def book_mp_density(x: Any, c: float) -> np.ndarray:
    """Marchenko-Pastur density ``sqrt((x - x-)(x+ - x)) / (2 pi x)``, ``x+- = (1 +- 1/sqrt(c))^2``, ``c = n/m < 1``
    (the book's normalisation of Wishart_check.m)."""
    if not 0 < c < 1:
        raise ValueError(f"expected 0 < c = n/m < 1, got {c!r}")
    x = np.asarray(x, dtype=float)
    lo, hi = (1 - 1 / math.sqrt(c)) ** 2, (1 + 1 / math.sqrt(c)) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, np.sqrt(np.clip((x - lo) * (hi - x), 0, None)) / (2 * math.pi * x), 0.0)
