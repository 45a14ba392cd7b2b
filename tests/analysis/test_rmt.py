"""Textbook random-matrix results, checked by sampling (seeded, tolerances several standard errors wide)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from weightlake.analysis import rmt


def hist_l1(samples: np.ndarray, density, lo: float, hi: float, bins: int = 40) -> float:
    """L1 distance between a density histogram of ``samples`` and ``density`` (bin centres)."""
    counts, edges = np.histogram(samples, bins=bins, range=(lo, hi), density=True)
    centres = (edges[:-1] + edges[1:]) / 2
    return float(np.sum(np.abs(counts - density(centres)) * np.diff(edges)))


def ks_distance(samples: np.ndarray, cdf) -> float:
    x = np.sort(np.ravel(samples))
    f = cdf(x)
    i = np.arange(len(x))
    return float(np.max(np.maximum(f - i / len(x), (i + 1) / len(x) - f)))


@pytest.mark.parametrize(("beta", "n", "size"), [(1, 400, 6), (2, 200, 8), (4, 100, 10)])
def test_semicircle_matches_gaussian_ensembles(beta: int, n: int, size: int) -> None:
    eigs = rmt.gaussian_ensemble_eigenvalues(n, beta, size=size, seed=beta)
    assert eigs.shape == (size, n)
    assert hist_l1(eigs, rmt.semicircle_density, -2.2, 2.2) < 0.08
    assert ks_distance(eigs, rmt.semicircle_cdf) < 0.02


def test_gse_has_kramers_pairs() -> None:
    h = rmt.sample_gaussian_ensemble(10, 4, size=2, seed=0)
    assert h.shape == (2, 20, 20)
    np.testing.assert_allclose(h, h.conj().transpose(0, 2, 1))
    e = np.linalg.eigvalsh(h)
    np.testing.assert_allclose(e[:, ::2], e[:, 1::2], atol=1e-10)


def test_off_diagonal_variance_convention() -> None:
    for beta in (1, 2, 4):
        e = rmt.gaussian_ensemble_eigenvalues(60, beta, size=40, seed=10 + beta, scale=False)
        # E sum x^2 = n^2 + n (2 / beta - 1) for weight exp(-beta/4 sum x^2) |Delta|^beta
        expected = 60**2 + 60 * (2 / beta - 1)
        assert abs((e**2).sum(axis=1).mean() / expected - 1) < 0.02


def test_semicircle_density_and_cdf_agree() -> None:
    total, _ = integrate.quad(rmt.semicircle_density, -2, 2)
    assert total == pytest.approx(1.0, abs=1e-8)
    part, _ = integrate.quad(rmt.semicircle_density, -2, 0.7)
    assert float(rmt.semicircle_cdf(0.7)) == pytest.approx(part, abs=1e-8)


@pytest.mark.parametrize("q", [0.05, 0.3, 0.5, 1.0])
def test_mp_density_cdf_quantile(q: float) -> None:
    lo, hi = rmt.mp_edges(q, 2.0)
    total, _ = integrate.quad(lambda x: rmt.mp_density(x, q, 2.0), lo, hi, limit=200)
    assert total == pytest.approx(1.0, abs=1e-6)
    mid = (lo + hi) / 2
    part, _ = integrate.quad(lambda x: rmt.mp_density(x, q, 2.0), lo, mid, limit=200)
    assert float(rmt.mp_cdf(mid, q, 2.0)) == pytest.approx(part, abs=1e-5)
    assert float(rmt.mp_cdf(rmt.mp_quantile(0.5, q, 2.0), q, 2.0)) == pytest.approx(0.5, abs=1e-5)


def test_mp_matches_sampled_wishart() -> None:
    w = rmt.sample_wishart(200, 400, size=10, sigma=0.3, seed=3)
    eigs = np.linalg.eigvalsh(w)
    q, s2 = 0.5, 0.09
    lo, hi = rmt.mp_edges(q, s2)
    assert hist_l1(eigs, lambda x: rmt.mp_density(x, q, s2), 0, hi * 1.05) < 0.1
    assert ks_distance(eigs, lambda x: rmt.mp_cdf(x, q, s2)) < 0.02
    assert eigs.mean() == pytest.approx(s2, rel=0.01)


def test_complex_wishart_matches_mp() -> None:
    eigs = np.linalg.eigvalsh(rmt.sample_wishart(100, 300, size=10, beta=2, seed=4))
    assert ks_distance(eigs, lambda x: rmt.mp_cdf(x, 1 / 3)) < 0.03


@pytest.mark.parametrize("beta", [1, 2, 4, "poisson"])
def test_surmise_is_normalised_with_unit_mean(beta) -> None:
    mass, _ = integrate.quad(lambda s: rmt.wigner_surmise(s, beta), 0, np.inf)
    mean, _ = integrate.quad(lambda s: s * rmt.wigner_surmise(s, beta), 0, np.inf)
    assert mass == pytest.approx(1.0, abs=1e-8)
    assert mean == pytest.approx(1.0, abs=1e-8)


def test_surmise_matches_unfolded_goe_spacings() -> None:
    eigs = rmt.gaussian_ensemble_eigenvalues(400, 1, size=10, seed=5)
    s = rmt.unfolded_spacings(eigs, cdf=rmt.semicircle_cdf)
    assert hist_l1(s, lambda x: rmt.wigner_surmise(x, 1), 0, 3.5, bins=35) < 0.12
    poly = rmt.unfolded_spacings(eigs)  # polynomial unfolding of the staircase
    assert hist_l1(poly, lambda x: rmt.wigner_surmise(x, 1), 0, 3.5, bins=35) < 0.15
    assert hist_l1(s, lambda x: rmt.wigner_surmise(x, "poisson"), 0, 3.5, bins=35) > 0.3


@pytest.mark.parametrize(("beta", "n", "size"), [(1, 200, 20), (2, 200, 20), (4, 100, 40)])
def test_spacing_ratio_means(beta: int, n: int, size: int) -> None:
    # the mean over one matrix of this size has a standard deviation of about 0.025
    eigs = rmt.gaussian_ensemble_eigenvalues(n, beta, size=size, seed=20 + beta)
    assert rmt.mean_spacing_ratio(eigs).mean() == pytest.approx(rmt.SPACING_RATIO_MEAN[beta], abs=0.015)
    tridiagonal = rmt.sample_beta_hermite(100, beta, size=2000, seed=40 + beta)
    assert rmt.mean_spacing_ratio(tridiagonal).mean() == pytest.approx(rmt.SPACING_RATIO_MEAN[beta], abs=0.005)


def test_spacing_ratio_poisson_and_edge_cases() -> None:
    levels = np.random.default_rng(6).uniform(size=(20, 500))
    assert rmt.mean_spacing_ratio(levels).mean() == pytest.approx(rmt.SPACING_RATIO_MEAN["poisson"], abs=0.01)
    assert np.isnan(rmt.mean_spacing_ratio(np.array([1.0, 2.0])))
    assert np.isnan(rmt.mean_spacing_ratio(np.array([1.0, 1.0, 1.0])))
    assert float(rmt.mean_spacing_ratio(np.array([0.0, 1.0, 3.0]))) == pytest.approx(0.5)


@pytest.mark.parametrize("beta", [1, 2, 4, "poisson"])
def test_spacing_ratio_density(beta) -> None:
    mass, _ = integrate.quad(lambda r: rmt.spacing_ratio_density(r, beta), 0, 1)
    mean, _ = integrate.quad(lambda r: r * rmt.spacing_ratio_density(r, beta), 0, 1)
    assert mass == pytest.approx(1.0, abs=1e-8)
    assert mean == pytest.approx(rmt.SPACING_RATIO_MEAN[beta], abs=0.01)  # surmise vs large-N values


def test_tracy_widom_quantiles_and_moments() -> None:
    f = rmt.tracy_widom_cdf([rmt.TW1_Q95, rmt.TW1_Q99], beta=1)
    np.testing.assert_allclose(f, [0.95, 0.99], atol=2e-4)
    for beta in (1, 2):
        mean, sd = rmt.tracy_widom_moments(beta, points=250)
        assert mean == pytest.approx(rmt.TW_MEAN[beta], abs=2e-3)
        assert sd == pytest.approx(rmt.TW_STD[beta], abs=2e-3)


def test_gaussian_edge_tends_to_tracy_widom() -> None:
    lam = rmt.sample_beta_hermite(300, 2, size=200, seed=7)[:, -1]
    stat = rmt.gaussian_edge_statistic(lam, 300)
    assert stat.mean() == pytest.approx(rmt.TW_MEAN[2], abs=0.25)
    assert stat.std() == pytest.approx(rmt.TW_STD[2], abs=0.2)


def test_wishart_edge_scaling_gives_tw1() -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((150, 200, 80))  # n=200 samples, p=80 variables
    lmax = np.linalg.eigvalsh(x.transpose(0, 2, 1) @ x)[:, -1]
    mu, sigma = rmt.wishart_edge_scaling(200, 80)
    stat = (lmax - mu) / sigma
    assert stat.mean() == pytest.approx(rmt.TW_MEAN[1], abs=0.35)
    assert stat.std() == pytest.approx(rmt.TW_STD[1], abs=0.3)


def test_beta_hermite_matches_dense_goe() -> None:
    tri = rmt.sample_beta_hermite(200, 1, size=20, seed=9)
    dense = rmt.gaussian_ensemble_eigenvalues(200, 1, size=20, seed=9)
    assert (tri**2).mean() == pytest.approx((dense**2).mean(), rel=0.02)
    assert ks_distance(tri, rmt.semicircle_cdf) < 0.03


@pytest.mark.parametrize("beta", [1.0, 2.0, 4.0])
def test_coulomb_gas_matches_beta_ensemble(beta: float) -> None:
    n = 12
    gas = rmt.sample_coulomb_gas(n, beta, chains=64, sweeps=260, burn_in=60, thin=5, seed=int(beta))
    assert gas.shape == (64 * 40, n)
    assert np.all(np.diff(gas, axis=1) >= 0)
    # second moment: E sum y^2 = n + 2 / beta - 1 on the [-2, 2] scale
    assert (gas**2).sum(axis=1).mean() == pytest.approx(n + 2 / beta - 1, rel=0.04)
    exact = rmt.sample_beta_hermite(n, beta, size=3000, seed=30)
    assert rmt.mean_spacing_ratio(gas).mean() == pytest.approx(rmt.mean_spacing_ratio(exact).mean(), abs=0.02)


def test_coulomb_gas_energy() -> None:
    y = np.array([-1.0, 0.0, 2.0])
    expected = 3 / 4 * 5 - (math.log(1) + math.log(3) + math.log(2))
    assert float(rmt.coulomb_gas_energy(y)) == pytest.approx(expected)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="beta"):
        rmt.sample_gaussian_ensemble(3, beta=3)
    with pytest.raises(ValueError, match="aspect ratio"):
        rmt.mp_density([1.0], q=2.0)
