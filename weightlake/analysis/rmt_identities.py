"""Analytic identities of the textbook (Livan, Novaes, Vivo), each as a function that computes
both sides, so that a test can check they agree.

* the semicircle's resolvent ``G(z) = int rho(x) / (z - x) dx`` (eq. 8.5) against its two closed
  branches ``G_+- (z) = z +- sqrt(z^2 - 2)`` (eq. 8.20);
* the Tricomi equation (eq. 5.14): ``PV int rho(x) / (s - x) dx = s`` inside the support;
* the two forms of the semicircle's energy integral (eqs. 5.21 and 5.22);
* the Toda recurrence of Hankel tau functions (eqs. 11.11-11.12), symbolically with sympy;
* ``Z(x)`` of a 2 x 2 GOE matrix as a Gaussian integral (eq. 15.2) and from its eigenvalues (eq. 15.6);
* the free sum ``p GOE / sqrt(N) + (1 - p) Wishart / N`` (section 17.4): its density from the
  cubic equation of the resolvent, with a sampler to check it.

The semicircle here is the book's ``rho(x) = sqrt(2 - x^2) / pi`` on ``[-sqrt 2, sqrt 2]``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from weightlake.analysis.rmt import _rng

EDGE = math.sqrt(2)
"""Edge of the book's semicircle."""


def book_semicircle(x: Any) -> np.ndarray:
    """``sqrt(2 - x^2) / pi`` on ``[-sqrt 2, sqrt 2]``, 0 outside."""
    x = np.asarray(x, dtype=float)
    return np.sqrt(np.clip(2 - x**2, 0, None)) / math.pi


def _rho(x: float) -> float:
    """:func:`book_semicircle` at one point (quadrature integrands call it thousands of times)."""
    return math.sqrt(max(2 - x * x, 0.0)) / math.pi


# -- resolvent (eqs. 8.5 and 8.20) -------------------------------------------------------------------
def semicircle_resolvent(z: complex) -> complex:
    """``G(z) = int rho(x) / (z - x) dx`` (eq. 8.5) by adaptive quadrature (real and imaginary parts,
    with ``Re z`` marked as a difficult point), valid for ``z`` off the support (``Im z != 0`` or ``|z| > sqrt 2``)."""
    from scipy.integrate import quad

    def part(f: Any) -> float:
        points = [z.real] if -EDGE < z.real < EDGE else None
        return quad(lambda x: f(_rho(x) / (z - x)), -EDGE, EDGE, points=points, limit=400,
                    epsabs=1e-13, epsrel=1e-12)[0]

    return complex(part(lambda v: v.real), part(lambda v: v.imag))


def resolvent_branches(z: Any) -> tuple[np.ndarray, np.ndarray]:
    """The two closed forms ``G_+ = z + sqrt(z^2 - 2)`` and ``G_- = z - sqrt(z^2 - 2)`` (eq. 8.20,
    principal square root).  Just below the real axis (``z = x - i eta``) ``G_+`` is the resolvent for
    ``-sqrt 2 < x < 0`` and ``G_-`` for ``0 < x < sqrt 2``; the book's ``rho`` is normalised so that
    ``G(z) ~ 1/z`` at infinity picks the same branch."""
    z = np.asarray(z, dtype=complex)
    root = np.sqrt(z**2 - 2)
    return z + root, z - root


# -- Tricomi (eq. 5.14) and the energy integral (eqs. 5.21, 5.22) -----------------------------------------
def tricomi_principal_value(s: Any, eps: float | None = None) -> np.ndarray:
    """``PV int_{-sqrt 2}^{sqrt 2} rho(x) / (s - x) dx`` for each ``s`` inside the support (eq. 5.14: equals ``s``).

    With ``eps=None`` the principal value is exact (QUADPACK's Cauchy weight); with ``eps`` it is the
    book script's split integral over ``(-sqrt 2, s - eps)`` and ``(s + eps, sqrt 2)``.
    """
    from scipy.integrate import quad

    def one(point: float) -> float:
        if eps is None:
            return -quad(_rho, -EDGE, EDGE, weight="cauchy", wvar=point, limit=200)[0]

        def integrand(x: float) -> float:
            return _rho(x) / (point - x)

        return (quad(integrand, -EDGE, point - eps, limit=200)[0]
                + quad(integrand, point + eps, EDGE, limit=200)[0])

    return np.array([one(float(p)) for p in np.ravel(s)]).reshape(np.shape(s))


def energy_integral(a: float = -EDGE, b: float = EDGE) -> float:
    """Eq. 5.21: ``1/4 int rho x^2 + a^2/4 - 1/2 int rho log(x - a)`` for the semicircle (numerical)."""
    from scipy.integrate import quad

    second = quad(lambda x: _rho(x) * x**2, -EDGE, EDGE)[0]
    log_part = quad(lambda x: _rho(x) * math.log(x - a), a, b, limit=200)[0]
    return second / 4 + a**2 / 4 - log_part / 2


def energy_closed_form(a: float = -EDGE, b: float = EDGE) -> float:
    """Eq. 5.22: the same energy in closed form, a polynomial in the edges ``a, b`` plus logarithms."""
    return (-9 * a**4 + 4 * a**3 * b + 2 * a**2 * (5 * b**2 + 48) + 4 * a * b * (b**2 + 16)
            - 256 * math.log(b - a) - 9 * b**4 + 96 * b**2 + 512 * math.log(2)) / 512


# -- Toda (eqs. 11.11, 11.12) -----------------------------------------------------------------------------------
def toda_residual(a0: Any, n: int, x: Any = None) -> Any:
    """``tau_n'' tau_n - (tau_n')^2 - tau_{n-1} tau_{n+1}`` simplified (eq. 11.12: zero), where
    ``tau_n = det[a0^{(i+j)}]_{i,j<n}`` is the Hankel determinant of derivatives of ``a0(x)`` (eq. 11.11).

    Parameters
    ----------
    a0 : sympy expression or str
        E.g. ``"cos(x)"``, ``"exp(-x)"``, ``"x**5 + sin(x)"``.
    n : int
        ``n >= 1``; ``tau_0 = 1``.
    x : sympy.Symbol, optional
        The variable (default ``x``).
    """
    import sympy as sp

    x = x if x is not None else sp.Symbol("x")
    a0 = sp.sympify(a0, locals={"x": x})
    derivs = [a0]
    for _ in range(2 * n):
        derivs.append(sp.diff(derivs[-1], x))

    def tau(k: int) -> Any:
        return sp.Integer(1) if k == 0 else sp.Matrix(k, k, lambda i, j: derivs[i + j]).det(method="berkowitz")

    tn = tau(n)
    return sp.simplify(sp.diff(tn, x, 2) * tn - sp.diff(tn, x) ** 2 - tau(n - 1) * tau(n + 1))


# -- Z(x) of a 2 x 2 GOE matrix (eqs. 15.2, 15.6) ------------------------------------------------------------
def sample_goe2(seed: Any = None) -> np.ndarray:
    """A 2 x 2 GOE matrix built as Zmultiple.m builds it: ``(A + A^T) / 2`` with ``A ~ N(0, 1/2)``."""
    a = _rng(seed).standard_normal((2, 2)) / math.sqrt(2)
    return (a + a.T) / 2


def z_gaussian_integral(h: np.ndarray, x: complex, nodes: int = 600) -> complex:
    """Eq. 15.2: ``Z(x) = int exp(-i/2 y^T (x - H) y) dy`` over ``R^2`` for ``Im x < 0`` (convergent).

    Tensor Gauss-Legendre quadrature on ``[-L, L]^2`` with ``L`` where the envelope
    ``exp(-|Im x| y^2 / 2)`` is below 1e-16.
    """
    if not x.imag < 0:
        raise ValueError(f"eq. 15.2 converges for Im x < 0 (the script's x = re - i im, im > 0), got {x!r}")
    half = math.sqrt(2 * 37 / -x.imag)
    t, w = np.polynomial.legendre.leggauss(nodes)
    y, wy = t * half, w * half
    y1, y2 = y[:, None], y[None, :]
    quad_form = (x - h[0, 0]) * y1**2 - 2 * h[0, 1] * y1 * y2 + (x - h[1, 1]) * y2**2
    return complex(np.sum(wy[:, None] * wy[None, :] * np.exp(-0.5j * quad_form)))


def z_eigenvalue_form(h: np.ndarray, x: complex) -> complex:
    """Eq. 15.6: ``Z(x) = 2 pi exp(-(log(e1 - x) + log(e2 - x)) / 2 + i pi / 2)`` from the eigenvalues of ``H``."""
    e = np.linalg.eigvalsh(h)
    return complex(2 * math.pi * np.exp(-(np.log(e[0] - x + 0j) + np.log(e[1] - x + 0j)) / 2 + 0.5j * math.pi))


# -- free sum of GOE and Wishart (section 17.4) --------------------------------------------------------------
def sample_goe_wishart_sum(n: int, t: int, p: float, size: int = 1, seed: Any = None) -> np.ndarray:
    """Eigenvalues ``[size, n]`` of ``p M / sqrt(n) + (1 - p) W / n``: ``M`` a GOE matrix ``(A + A^T)/2``,
    ``W = H H^T`` with ``H`` of shape ``n x t``, ``n < t`` (GOE_Wishart_Sum.m)."""
    if not n < t:
        raise ValueError(f"the Wishart part needs n < t, got n={n!r}, t={t!r}")
    rng = _rng(seed)
    a = rng.standard_normal((size, n, n))
    h = rng.standard_normal((size, n, t))
    m = (a + a.transpose(0, 2, 1)) / 2
    return np.linalg.eigvalsh(p * m / math.sqrt(n) + (1 - p) * h @ h.transpose(0, 2, 1) / n)


def goe_wishart_sum_density(x: Any, c: float, p: float) -> np.ndarray:
    """Density of the free sum, ``|Im G(x)| / pi`` for the root of the resolvent's cubic with non-zero
    imaginary part.

    With ``a = (1 - c) / c``, ``c = n / t`` and ``u = 1 - p`` the resolvent solves
    ``p^2 G / 2 + u (1 + a) / (1 - u G) + 1 / G = z``, i.e. the cubic
    ``-(p^2 u / 2) G^3 + (p^2 / 2 + u z) G^2 + (u a - z) G + 1 = 0`` (``p = 1``: the semicircle of
    radius ``sqrt 2``; ``p = 0``: Marchenko-Pastur of ``W / n``).  Where all roots are real the density is 0.
    """
    if not 0 < c < 1 or not 0 <= p <= 1:
        raise ValueError(f"expected 0 < c < 1 and 0 <= p <= 1, got c={c!r}, p={p!r}")
    x = np.ravel(np.asarray(x, dtype=float))
    a, u = (1 - c) / c, 1 - p
    c3, c2, c1 = -(p**2) * u / 2, p**2 / 2 + u * x, u * a - x
    if c3 != 0:  # all cubics at once: eigenvalues of their companion matrices
        companion = np.zeros((len(x), 3, 3))
        companion[:, 0, :] = -np.stack([c2, c1, np.ones_like(x)], axis=1) / c3
        companion[:, 1, 0] = companion[:, 2, 1] = 1
        roots = np.linalg.eigvals(companion)
    else:  # p = 0 or 1: the cubic is the quadratic c2 G^2 + c1 G + 1
        disc = np.sqrt((c1**2 - 4 * c2).astype(complex))
        roots = np.stack([(-c1 + disc) / (2 * c2), (-c1 - disc) / (2 * c2)], axis=1)
    return np.abs(roots.imag).max(axis=1) / math.pi
