"""Every script of the textbook's repository (Livan, Novaes, Vivo), as a test with a stated tolerance.

Sampling checks are seeded and use the Kolmogorov-Smirnov distance to the law (bound: the iid 1 %
critical value 1.63 / sqrt(samples), conservative since eigenvalues of one matrix repel) or an L1
histogram distance; where it makes sense a wrong law is shown to fail the same bound.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy.special import factorial2

from weightlake.analysis import rmt
from weightlake.analysis import rmt_finite as fin
from weightlake.analysis import rmt_identities as ident


def ks_to_density(samples: np.ndarray, density, lo: float, hi: float, points: int = 20001) -> float:
    """KS distance of samples to the law of ``density`` (CDF by cumulative quadrature on [lo, hi])."""
    grid = np.linspace(lo, hi, points)
    cdf = integrate.cumulative_trapezoid(density(grid), grid, initial=0)
    cdf /= cdf[-1]
    x = np.sort(np.ravel(samples))
    f = np.interp(x, grid, cdf)
    i = np.arange(1, len(x) + 1)
    return float(max(np.max(i / len(x) - f), np.max(f - (i - 1) / len(x))))


def ks_bound(samples: np.ndarray) -> float:
    return 1.63 / math.sqrt(np.size(samples))


# -- histnorm.m, double_factorial.m ----------------------------------------------------------------------
def test_double_factorial() -> None:
    assert [fin.double_factorial(n) for n in (-1, 0, 1, 2, 5, 6, 9)] == [1, 1, 1, 2, 15, 48, 945]
    for n in range(0, 30):
        assert fin.double_factorial(n) == int(factorial2(n, exact=True))
    with pytest.raises(ValueError):
        fin.double_factorial(-3)


def test_histnorm_has_unit_area_and_matlab_centres() -> None:
    data = np.random.default_rng(0).normal(size=5000)
    density, centres = fin.histnorm(data, 25)
    width = (data.max() - data.min()) / 25
    assert np.sum(density) * width == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(centres, data.min() + width * (np.arange(25) + 0.5), rtol=1e-12)


# -- Gaussian_Ensembles_Density.m, Gaussian_finite_N_rescaled.m ------------------------------------------
@pytest.mark.parametrize("beta", [1, 2, 4])
def test_rescaled_ensembles_approach_the_semicircle(beta: int) -> None:
    """Radius sqrt(2) semicircle: the KS distance shrinks with N and is small at N = 200."""
    def semicircle(x):
        return ident.book_semicircle(x)
    ks = [ks_to_density(fin.sample_rescaled_ensemble(n, beta, 3000 // n, seed=n), semicircle, -3, 3)
          for n in (4, 100)]
    assert ks[1] < 0.012 < ks[0]  # finite-N wiggles at N = 4; at N = 100 only edge effects remain


# -- Gaussian_finite_density_check.m: eqs. 10.20, 11.21, 11.36 --------------------------------------------
@pytest.mark.parametrize("beta, n", [(2, 1), (2, 3), (2, 8), (1, 2), (1, 4), (1, 8), (4, 1), (4, 3), (4, 6)])
def test_finite_n_density_matches_sampled_matrices(beta: int, n: int) -> None:
    eigs = fin.sample_book_ensemble(n, beta, 24000 // n, seed=10 * beta + n)
    lim = 2 * math.sqrt(2 * fin.BOOK_SCALE[beta] * n) + 6
    x = np.linspace(-lim, lim, 8001)
    assert np.trapezoid(fin.finite_density(x, n, beta), x) == pytest.approx(1.0, abs=1e-9)
    ks = ks_to_density(eigs, lambda g: fin.finite_density(g, n, beta), -lim, lim)
    assert ks < ks_bound(eigs)
    if beta == 1 and n >= 4:  # the GUE formula is a different law: it fails the same bound on GOE samples
        assert ks_to_density(eigs, lambda g: fin.gue_density(g, n), -lim, lim) > ks_bound(eigs)


def goe_density_skew_orthogonal(x: np.ndarray, n: int) -> np.ndarray:
    """Eq. 11.21 as the book writes it: skew-orthogonal polynomials R_2k, R_2k+1 (Hermite H_j(x)) and
    Phi_j(x) = int R_j(t) exp(-t^2/2) sgn(x - t) dt (here by fine cumulative quadrature); the
    normalisation constants a_N cancel, leaving 1 / (2N)."""
    from scipy.special import eval_hermite

    grid = np.linspace(-40, 40, 400001)
    rho = np.zeros_like(x)
    for k in range(n // 2):
        c_even = math.sqrt(2) / (math.pi**0.25 * 2**k * fin.double_factorial(2 * k))
        c_odd = math.sqrt(2) / (math.pi**0.25 * 2 ** (k + 2) * fin.double_factorial(2 * k - 1))

        def r_even(t, k=k, c=c_even):
            return eval_hermite(2 * k, t) * c

        def r_odd(t, k=k, c=c_odd):
            return ((4 * k * eval_hermite(2 * k - 1, t)) if k else 0) * c - eval_hermite(2 * k + 1, t) * c

        def phi(r):
            cum = integrate.cumulative_trapezoid(r(grid) * np.exp(-grid**2 / 2), grid, initial=0)
            return np.interp(x, grid, 2 * cum - cum[-1])

        rho += np.exp(-x**2 / 2) * (r_even(x) * phi(r_odd) - r_odd(x) * phi(r_even))
    return rho / (2 * n)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_goe_density_is_the_books_skew_orthogonal_form(n: int) -> None:
    """The library evaluates eq. 11.21 through Hermite functions; the book's own form gives the same curve."""
    x = np.linspace(-7, 7, 57)
    np.testing.assert_allclose(fin.goe_density(x, n), goe_density_skew_orthogonal(x, n), atol=1e-8)


@pytest.mark.parametrize("n", [1, 5, 12])
def test_gue_density_is_eq_10_20(n: int) -> None:
    """Hermite functions by recurrence against the book's sum of squared Hermite polynomials."""
    from scipy.special import eval_hermite

    x = np.linspace(-8, 8, 81)
    book = sum(eval_hermite(j, x / math.sqrt(2)) ** 2 * np.exp(-x**2 / 2) / (2**j * math.factorial(j))
               for j in range(n)) / (n * math.sqrt(2 * math.pi))
    np.testing.assert_allclose(fin.gue_density(x, n), book, rtol=1e-10, atol=1e-300)


def test_finite_densities_rescaled_tend_to_the_semicircle() -> None:
    """Max gap to the semicircle inside the bulk falls with N (oscillations ~ 1/N; strongest for the GSE)."""
    x = np.linspace(-1.2, 1.2, 97)
    for beta, bound in ((1, 0.01), (2, 0.015), (4, 0.07)):
        gap = [np.abs(fin.finite_density_rescaled(x, n, beta) - ident.book_semicircle(x)).max() for n in (4, 8, 16, 32)]
        assert np.all(np.diff(gap) < 0) and gap[-1] < bound
    with pytest.raises(ValueError, match="even N"):
        fin.goe_density(x, 3)


# -- surmise.m, Wishart_check.m ---------------------------------------------------------------------------
def test_two_by_two_goe_spacing() -> None:
    s = fin.sample_goe2_spacings(40000, seed=1)
    assert ks_to_density(s, fin.goe2_spacing_density, 0, 12) < ks_bound(s)
    assert integrate.quad(fin.goe2_spacing_density, 0, np.inf)[0] == pytest.approx(1.0, abs=1e-10)
    assert s.mean() == pytest.approx(math.sqrt(math.pi), rel=0.01)
    assert fin.goe2_spacing_cdf(3.0) == pytest.approx(integrate.quad(fin.goe2_spacing_density, 0, 3)[0], abs=1e-12)


@pytest.mark.parametrize("beta", [1, 2, 4])
def test_wishart_matches_marchenko_pastur_for_every_beta(beta: int) -> None:
    n, m = 50, 150
    eigs = fin.sample_book_wishart(n, m, beta, 40, seed=beta)
    c = n / m
    lo, hi = (1 - 1 / math.sqrt(c)) ** 2, (1 + 1 / math.sqrt(c)) ** 2
    assert ks_to_density(eigs, lambda g: fin.book_mp_density(g, c), lo, hi) < 0.02  # N = 50 edge effects
    # the book's normalisation is the library's MP law, scaled: rho(x) = c * mp(c x; q = c)
    x = np.linspace(lo, hi, 50)
    np.testing.assert_allclose(fin.book_mp_density(x, c), c * rmt.mp_density(c * x, c), rtol=1e-10, atol=1e-7)  # atol: the edge


# -- Andreief_check.m: eqs. 11.8-11.9 ---------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_andreief_positive_eigenvalue_counts(n: int) -> None:
    p = fin.gue_positive_count_probabilities(n)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(p, p[::-1], atol=1e-12)  # x -> -x symmetry
    freq = fin.positive_count_frequencies(fin.sample_book_ensemble(n, 2, 40000, seed=n))
    # each frequency within 4 binomial standard errors of its probability
    assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / 40000) + 1e-9)
    if n == 1:
        assert p == pytest.approx([0.5, 0.5])


# -- check_resolvent.m: eqs. 8.5 and 8.20 -----------------------------------------------------------------
@pytest.mark.parametrize("re", [-1.3, -0.6, -0.1, 0.2, 0.7, 1.35])
def test_resolvent_branches(re: float) -> None:
    z = complex(re, -0.01)
    g = ident.semicircle_resolvent(z)
    plus, minus = ident.resolvent_branches(z)
    right, wrong = (plus, minus) if re < 0 else (minus, plus)
    assert abs(g - right) < 1e-9
    assert abs(g - wrong) > 0.5  # the other branch is on the other sheet
    far = complex(3.0, 0.5)
    assert abs(ident.semicircle_resolvent(far) - ident.resolvent_branches(far)[1]) < 1e-9  # G ~ 1/z


# -- Tricomi_check.m, integral_check.m: eqs. 5.14, 5.21, 5.22 ----------------------------------------------
def test_tricomi_equation() -> None:
    s = np.linspace(-1.4, 1.4, 29)
    np.testing.assert_allclose(ident.tricomi_principal_value(s), s, atol=1e-9)
    np.testing.assert_allclose(ident.tricomi_principal_value(s, eps=1e-6), s, atol=1e-4)  # the script's split


def test_energy_integral_closed_form() -> None:
    assert ident.energy_integral() == pytest.approx(ident.energy_closed_form(), abs=1e-10)
    assert ident.energy_closed_form() == pytest.approx(0.548286795, abs=1e-9)


# -- Toda.m: eqs. 11.11, 11.12 -----------------------------------------------------------------------------
@pytest.mark.parametrize("a0", ["cos(x)", "exp(-x)", "x**5 + sin(x)", "1/(1 + x**2)"])
def test_toda_recurrence_holds_symbolically(a0: str) -> None:
    for n in (1, 2, 3):
        assert ident.toda_residual(a0, n) == 0


def test_toda_residual_is_not_trivially_zero() -> None:
    import sympy as sp

    x = sp.Symbol("x")
    a0 = sp.exp(-x**2)
    derivs = [sp.diff(a0, x, k) for k in range(5)]
    tau2 = sp.Matrix(2, 2, lambda i, j: derivs[i + j]).det()
    # dropping the tau_{n-1} tau_{n+1} term leaves a non-zero remainder
    assert sp.simplify(sp.diff(tau2, x, 2) * tau2 - sp.diff(tau2, x) ** 2) != 0


# -- Zmultiple.m: eqs. 15.2, 15.6 --------------------------------------------------------------------------
@pytest.mark.parametrize("x", [0.5 - 0.5j, -1 - 1j, 2 - 0.3j, 0.1 - 2j])
def test_z_of_a_two_by_two_goe_matrix(x: complex) -> None:
    for seed in range(3):
        h = ident.sample_goe2(seed)
        assert ident.z_gaussian_integral(h, x) == pytest.approx(ident.z_eigenvalue_form(h, x), rel=1e-9)
    with pytest.raises(ValueError):
        ident.z_gaussian_integral(h, 1 + 1j)


# -- GOE_Wishart_Sum.m: section 17.4 ----------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.0, 0.3, 0.6, 1.0])
def test_goe_wishart_free_sum(p: float) -> None:
    n, t = 100, 300
    eigs = ident.sample_goe_wishart_sum(n, t, p, 60, seed=int(10 * p))
    lo, hi = eigs.min() - 0.2, eigs.max() + 0.2
    x = np.linspace(lo, hi, 4001)
    dens = ident.goe_wishart_sum_density(x, n / t, p)
    assert np.trapezoid(dens, x) == pytest.approx(1.0, abs=2e-3)
    ks = ks_to_density(eigs, lambda g: np.interp(g, x, dens), lo, hi)
    assert ks < 0.015  # N = 100: finite-N edges; 6,000 eigenvalues
    if 0 < p < 1:  # neither pure law fits the sum
        assert ks_to_density(eigs, lambda g: np.interp(g, x, ident.goe_wishart_sum_density(x, n / t, 1.0)),
                             lo, hi) > 0.05


# -- Coulomb_gas.m -----------------------------------------------------------------------------------------
def test_coulomb_gas_fills_the_semicircle() -> None:
    """The Metropolis log-gas (library convention, radius 2) against the semicircle, beta = 2."""
    draws = rmt.sample_coulomb_gas(30, 2.0, chains=32, sweeps=300, burn_in=150, thin=10, seed=3)
    assert ks_to_density(draws, rmt.semicircle_density, -2.5, 2.5) < 0.03  # N = 30 edge and finite-N effects
