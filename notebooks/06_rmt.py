# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Random-matrix theory: the textbook's checks, then the zoo's layers
#
# Part 1 redoes, one section per script, every numerical check of the repository that accompanies
# *Introduction to Random Matrices: Theory and Practice* (Livan, Novaes, Vivo), with the library's
# functions (`weightlake.analysis.rmt`, `rmt_finite`, `rmt_identities`; each also a test in
# `tests/analysis/`).  Equation numbers are the book's, as the scripts cite them.  Part 2 applies the
# same yardsticks to the weight matrices of real trained models from a lake: per-layer spectra and
# their Marchenko-Pastur fits, the population spectrum, and the WeightWatcher convention beside ours.

# %%
import os

LAKE = os.environ.get("WEIGHTLAKE_LAKE", "../lake")        # the demo lake, or yours
SHORT = os.environ.get("WEIGHTLAKE_NOTEBOOK_SHORT") == "1"  # small sizes for the test suite
FIGURES = os.environ.get("WEIGHTLAKE_FIGURES")              # a folder to also write each figure to as PNG

# %%
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import polars as pl

import weightlake as wl
from weightlake.analysis import rmt, spectra, spectra_ww
from weightlake.analysis import rmt_finite as fin
from weightlake.analysis import rmt_identities as ident
from weightlake.analysis.distinct import distinct_models, latest_per_run

NAMES = {1: "GOE", 2: "GUE", 4: "GSE"}
pl.Config.set_tbl_cols(-1)  # print every column of the tables below, not polars' first few
pl.Config.set_tbl_rows(50)
pl.Config.set_tbl_width_chars(250)
SIZE = 0.25 if SHORT else 1.0  # share of the full sample sizes


def n_of(full: int, least: int = 2) -> int:
    return max(least, int(full * SIZE))


def show(fig, name: str) -> None:
    fig.tight_layout()
    if FIGURES:
        Path(FIGURES).mkdir(parents=True, exist_ok=True)
        fig.savefig(Path(FIGURES) / f"{name}.png", dpi=110)
    plt.show()
    plt.close(fig)


# %% [markdown]
# ## 1. Gaussian ensembles and the semicircle (`Gaussian_Ensembles_Density.m`)
# A Gaussian ensemble is a Hermitian matrix with independent Gaussian entries, real (GOE, Dyson index
# beta = 1), complex (GUE, 2) or quaternion (GSE, 4).  Whatever beta, the eigenvalue density tends to
# Wigner's semicircle.  In the library's convention (off-diagonal variance 1) the eigenvalues divided by
# sqrt(N) fill [-2, 2] with density sqrt(4 - x^2) / (2 pi).  Check: histograms of sampled spectra.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
x = np.linspace(-2.3, 2.3, 400)
for ax, beta in zip(axes, (1, 2, 4), strict=True):
    n = {1: 400, 2: 200, 4: 100}[beta] // (2 if SHORT else 1)
    eigs = rmt.gaussian_ensemble_eigenvalues(n, beta, size=n_of(8), seed=beta)
    ax.hist(eigs.ravel(), bins=50, range=(-2.3, 2.3), density=True, alpha=0.6, label=f"{eigs.size:,} eigenvalues")
    ax.plot(x, rmt.semicircle_density(x), "k", label="semicircle")
    ax.set(title=f"{NAMES[beta]} (beta={beta}), N={n}", xlabel="eigenvalue / sqrt(N)")
    ax.legend(fontsize=8)
axes[0].set_ylabel("density")
show(fig, "01_semicircle")

# %% [markdown]
# ## 2. Finite N, rescaled (`Gaussian_finite_N_rescaled.m`)
# In the book's scaling (entries of variance 1/N for the GOE, 1/(2N) for the GUE, 1/(4N) for the GSE) the
# density tends to sqrt(2 - x^2) / pi on [-sqrt 2, sqrt 2].  At small N it oscillates around it, one bump
# per eigenvalue; the exact finite-N curves (section 3) are drawn over the samples.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
x = np.linspace(-2, 2, 400)
for ax, beta in zip(axes, (1, 2, 4), strict=True):
    for n, colour in ((4, "C0"), (16, "C1")):
        eigs = fin.sample_rescaled_ensemble(n, beta, size=n_of(20000) // n, seed=n + beta)
        dens, centres = fin.histnorm(eigs, 40)
        ax.plot(centres, dens, "o", ms=3, color=colour, label=f"N={n} samples")
        ax.plot(x, fin.finite_density_rescaled(x, n, beta), color=colour, lw=1, label=f"N={n} exact")
    ax.plot(x, ident.book_semicircle(x), "k--", label="sqrt(2 - x^2) / pi")
    ax.set(title=f"{NAMES[beta]} rescaled", xlabel="x", xlim=(-2, 2), xticks=np.arange(-1.5, 1.6, 0.5))
    ax.legend(fontsize=7)
axes[0].set_ylabel("density")
show(fig, "02_finite_rescaled")

# %% [markdown]
# ## 3. Exact finite-N densities (`Gaussian_finite_density_check.m`; eqs. 10.20, 11.21, 11.36)
# With joint density prop. to prod |x_i - x_j|^beta exp(-sum x_i^2 / 2) the one-point density is known
# exactly at every N: for the GUE a sum of squared Hermite functions (eq. 10.20); for the GOE, N even, the
# same sum plus a term with an integral of the next Hermite function (eq. 11.21, from skew-orthogonal
# polynomials); for the GSE a sum over skew-orthogonal polynomials built from Hermite polynomials
# (eq. 11.36).  Check: the exact curve against sampled matrices, and the KS distance.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
for ax, (beta, n) in zip(axes, ((1, 6), (2, 5), (4, 4)), strict=True):
    eigs = fin.sample_book_ensemble(n, beta, size=n_of(20000) // n, seed=beta)
    dens, centres = fin.histnorm(eigs, 50)
    grid = np.linspace(eigs.min(), eigs.max(), 600)
    ax.plot(centres, dens, "o", ms=3, color="C3", label=f"{eigs.size:,} sampled eigenvalues")
    ax.plot(grid, fin.finite_density(grid, n, beta), "b", label={1: "eq. 11.21", 2: "eq. 10.20", 4: "eq. 11.36"}[beta])
    ax.set(title=f"{NAMES[beta]}, N={n}", xlabel="x", ylabel="rho(x)")
    ax.legend(fontsize=8)
show(fig, "03_finite_density")

# %% [markdown]
# ## 4. Level repulsion: the surmise (`surmise.m`), unfolded spacings and spacing ratios
# For a 2 x 2 GOE matrix [[x1, x3], [x3, x2]] (x1, x2 ~ N(0, 1), x3 ~ N(0, 1/2)) the spacing of the two
# eigenvalues has density s/2 exp(-s^2/4) exactly: eigenvalues repel (P(s) -> 0 as s -> 0).  Wigner's
# surmise rescales it to unit mean and carries over to large matrices once their spectrum is unfolded to
# unit mean density; ratios of consecutive spacings need no unfolding (mean 0.5307 / 0.5996 / 0.6744 for
# beta = 1 / 2 / 4, 0.3863 for uncorrelated levels).

# %%
fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(15, 3.8))
s = fin.sample_goe2_spacings(n_of(100000), seed=1)
dens, centres = fin.histnorm(s, 50)
grid = np.linspace(0, s.max(), 300)
ax0.plot(centres, dens, "o", ms=3, color="C3", label=f"{len(s):,} 2x2 GOE matrices")
ax0.plot(grid, fin.goe2_spacing_density(grid), "b", label="s/2 exp(-s^2/4)")
ax0.set(title="2x2 GOE spacing", xlabel="s", ylabel="density")
ax0.legend(fontsize=8)
s_grid, r_grid = np.linspace(0, 3.5, 300), np.linspace(0, 1, 200)
sizes = {}
for beta in (1, 2, 4):
    n = sizes[beta] = (200 if beta < 4 else 100) // (2 if SHORT else 1)
    eigs = rmt.gaussian_ensemble_eigenvalues(n, beta, size=n_of(30), seed=10 + beta)
    line = ax1.plot(s_grid, rmt.wigner_surmise(s_grid, beta), label=f"surmise beta={beta}")[0]
    ax1.hist(rmt.unfolded_spacings(eigs, cdf=rmt.semicircle_cdf), bins=40, range=(0, 3.5), density=True,
             histtype="step", color=line.get_color())
    ratios = rmt.spacing_ratios(eigs).ravel()
    ax2.hist(ratios, bins=30, range=(0, 1), density=True, histtype="step", color=line.get_color())
    ax2.plot(r_grid, rmt.spacing_ratio_density(r_grid, beta), color=line.get_color(),
             label=f"{NAMES[beta]}: mean {np.nanmean(ratios):.4f} (ref {rmt.SPACING_RATIO_MEAN[beta]})")
poisson = np.sort(np.random.default_rng(1).uniform(0, 1, (n_of(30), 400)), axis=1)
ax1.plot(s_grid, rmt.wigner_surmise(s_grid, "poisson"), "k--", label="Poisson exp(-s)")
ax2.plot(r_grid, rmt.spacing_ratio_density(r_grid, "poisson"), "k--",
         label=f"Poisson: mean {np.nanmean(rmt.spacing_ratios(poisson)):.4f} (ref 0.3863)")
ax1.set(title="unfolded spacings (" + ", ".join(f"{NAMES[b]} N={sizes[b]}" for b in sizes) + ")",
        xlabel="s (unit mean)", ylabel="density")
ax2.set(title="spacing ratios", xlabel="r = min(s_i, s_i+1) / max(s_i, s_i+1)", ylabel="density")
ax1.legend(fontsize=7)
ax2.legend(fontsize=7)
show(fig, "04_spacings")

# %% [markdown]
# ## 5. Wishart matrices and Marchenko-Pastur (`Wishart_check.m`)
# W = H H^T with H of shape N x M (N < M) and iid entries: the eigenvalues of W / (beta N) follow the
# Marchenko-Pastur density sqrt((x - x-)(x+ - x)) / (2 pi x), x+- = (1 +- 1/sqrt c)^2, c = N / M, for real,
# complex and quaternion entries alike.  Right: the library's convention for weight matrices,
# X X^T / N with q = M / N <= 1 and variance sigma^2, which the layer fits of part 2 use.

# %%
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 3.8))
n, m = 50, 150
c = n / m
lo, hi = (1 - 1 / math.sqrt(c)) ** 2, (1 + 1 / math.sqrt(c)) ** 2
grid = np.linspace(lo, hi, 400)
for beta, marker in ((1, "o"), (2, "s"), (4, "^")):
    dens, centres = fin.histnorm(fin.sample_book_wishart(n, m, beta, n_of(40), seed=beta), 20)
    ax0.plot(centres, dens, marker, ms=4, label=f"beta = {beta}")
ax0.plot(grid, fin.book_mp_density(grid, c), "k", label="MP density")
ax0.set(title=f"Wishart, N={n}, M={m} (c = {c:.2f})", xlabel="eigenvalue of W / (beta N)", ylabel="density")
ax0.legend(fontsize=8)
peak = 0.0
for (mm, nn), colour in (((50, 500), "C0"), ((200, 400), "C1"), ((300, 300), "C2")):
    q = mm / nn
    eigs = np.linalg.eigvalsh(rmt.sample_wishart(mm, nn, size=n_of(10), sigma=0.5, seed=mm))
    lo_q, hi_q = rmt.mp_edges(q, 0.25)
    g = np.linspace(max(lo_q, 1e-3), hi_q, 400)
    heights = ax1.hist(eigs.ravel(), bins=60, density=True, alpha=0.35, color=colour)[0]
    ax1.plot(g, rmt.mp_density(g, q, 0.25), color=colour, label=f"q = {q:.2f}")
    if q < 1:
        peak = max(peak, float(np.nanmax(rmt.mp_density(g, q, 0.25))), float(heights.max()))
# q = 1 diverges at 0: the range is set by the other curves and histograms, not clipped below them
ax1.set(title="library convention, sigma^2 = 0.25", xlabel="eigenvalue of X X^T / N", ylabel="density",
        ylim=(0, 1.1 * peak))
ax1.legend(fontsize=8)
show(fig, "05_wishart")

# %% [markdown]
# ## 6. Free addition: GOE + Wishart (`GOE_Wishart_Sum.m`; section 17.4)
# Large GOE and Wishart matrices are asymptotically free, so the density of p GOE / sqrt(N) + (1 - p) W / N
# follows from adding R-transforms.  The resolvent G then solves
# p^2 G / 2 + (1 - p)(1 + a) / (1 - (1 - p) G) + 1/G = z, a = (1 - c) / c, a cubic in G; the density is
# |Im G| / pi for its complex root.  p = 1 is the semicircle, p = 0 Marchenko-Pastur.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
n, t = 100, 300
for ax, p in zip(axes, (0.2, 0.5, 0.8), strict=True):
    eigs = ident.sample_goe_wishart_sum(n, t, p, size=n_of(40), seed=int(10 * p))
    dens, centres = fin.histnorm(eigs, 30)
    grid = np.linspace(eigs.min() - 0.1, eigs.max() + 0.1, 300)
    ax.plot(centres, dens, "o", ms=4, label=f"sampled, N={n}, T={t}")
    ax.plot(grid, ident.goe_wishart_sum_density(grid, n / t, p), "r", label="|Im G| / pi, cubic")
    ax.set(title=f"p = {p}", xlabel="x", ylabel="rho(x)")
    ax.legend(fontsize=8)
show(fig, "06_free_sum")

# %% [markdown]
# ## 7. The resolvent's two branches (`check_resolvent.m`; eqs. 8.5, 8.20)
# The resolvent G(z) = int rho(x) / (z - x) dx (eq. 8.5) of the semicircle sqrt(2 - x^2)/pi has the closed
# forms G+-(z) = z +- sqrt(z^2 - 2) (eq. 8.20).  Just below the real axis (z = x - i eta) the integral
# agrees with G+ for x < 0 and with G- for x > 0: the principal square root jumps at x = 0, the resolvent
# does not.  Its imaginary part is pi rho(x).

# %%
eta = 0.01
xs = np.linspace(-1.38, 1.38, 40 if SHORT else 120)
g = np.array([ident.semicircle_resolvent(complex(v, -eta)) for v in xs])
plus, minus = ident.resolvent_branches(xs - 1j * eta)
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 3.8))
for ax, part, name in ((ax0, np.real, "Re"), (ax1, np.imag, "Im")):
    ax.plot(xs, part(g), "ko", ms=3, label="G: integral (8.5)")
    ax.plot(xs, part(plus), "C0", label="G+ (8.20)")
    ax.plot(xs, part(minus), "C1", label="G- (8.20)")
    ax.set(title=f"{name} G(x - {eta} i)", xlabel="x")
    ax.legend(fontsize=8)
show(fig, "07_resolvent")
print(f"max |G - G+| for x < 0: {np.abs(g - plus)[xs < 0].max():.1e}; max |G - G-| for x > 0: "
      f"{np.abs(g - minus)[xs > 0].max():.1e}")

# %% [markdown]
# ## 8. The Tricomi equation (`Tricomi_check.m`; eq. 5.14)
# The equilibrium density of the Coulomb gas in a quadratic well solves the singular integral equation
# PV int rho(x) / (s - x) dx = s on its support (eq. 5.14): the force of all other charges balances the
# well.  The semicircle solves it.  Check: the principal value computed exactly (Cauchy-weight quadrature)
# and, as the script does, by cutting out (s - eps, s + eps).

# %%
s = np.linspace(-1.41, 1.41, 31)
exact = ident.tricomi_principal_value(s)
cut = ident.tricomi_principal_value(s, eps=1e-3)
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(s, s, "b", label="s (right-hand side)")
ax.plot(s, exact, "ro", ms=4, label="PV integral, Cauchy weight")
ax.plot(s, cut, "k+", label="PV integral, eps = 1e-3 cut")
ax.set(title="Tricomi equation for the semicircle", xlabel="s", ylabel="PV int rho(x) / (s - x) dx")
ax.legend(fontsize=8)
show(fig, "08_tricomi")
print(f"max |PV - s|: exact {np.abs(exact - s).max():.1e}, eps cut {np.abs(cut - s).max():.1e}")

# %% [markdown]
# ## 9. The energy integral (`integral_check.m`; eqs. 5.21, 5.22)
# The energy of the equilibrium density, 1/4 int rho x^2 + a^2/4 - 1/2 int rho log(x - a) (eq. 5.21), has a
# closed form in the edges a, b (eq. 5.22).  Check: the two agree at a = -sqrt 2, b = sqrt 2.

# %%
numeric, closed = ident.energy_integral(), ident.energy_closed_form()
print(f"eq. 5.21 (quadrature): {numeric:.12f}\neq. 5.22 (closed form): {closed:.12f}\n"
      f"difference {abs(numeric - closed):.1e}")

# %% [markdown]
# ## 10. How many eigenvalues are positive? (`Andreief_check.m`; eqs. 11.8, 11.9)
# Andreief's identity turns the N-fold integral for the probability that an N x N GUE matrix has exactly n
# positive eigenvalues into a determinant: the generating function sum_n P(n) z^n = det A(z) / det A(1),
# A_jk = ((-1)^(j+k) + z) 2^((j+k-3)/2) Gamma((j+k-1)/2) (eq. 11.8); P(n) is its n-th Taylor coefficient
# (eq. 11.9).  Computed exactly with sympy; check: frequencies over sampled matrices.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for ax, n in zip(axes, (4, 6), strict=True):
    p = fin.gue_positive_count_probabilities(n)
    samples = n_of(40000, 1000)
    freq = fin.positive_count_frequencies(fin.sample_book_ensemble(n, 2, samples, seed=n))
    k = np.arange(n + 1)
    ax.bar(k - 0.2, p, width=0.4, label="eq. 11.9 (exact)")
    ax.bar(k + 0.2, freq, width=0.4, label=f"{samples:,} sampled GUE matrices")
    ax.set(title=f"GUE N={n}: P(n positive eigenvalues)", xlabel="n", ylabel="probability", yscale="log",
           xticks=k)
    for j in k[freq == 0]:  # a zero frequency has no bar on a log axis: say so where it would be
        ax.annotate("0 sampled", (j + 0.2, 0.02), xycoords=("data", "axes fraction"), rotation=90, ha="center",
                    fontsize=7)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
show(fig, "10_andreief")
print("N=4:", np.array2string(fin.gue_positive_count_probabilities(4), precision=6))

# %% [markdown]
# ## 11. The Toda recurrence (`Toda.m`; eqs. 11.11, 11.12)
# Hankel determinants tau_n(x) = det[a0^(i+j)(x)] of the derivatives of any smooth a0 obey the Toda
# equation tau_n'' tau_n - (tau_n')^2 = tau_(n-1) tau_(n+1) (eq. 11.12; tau functions of eq. 11.11).  The
# check is symbolic: the simplified difference of the two sides is 0.

# %%
cases = ["cos(x)", "exp(-x)"] if SHORT else ["cos(x)", "exp(-x)", "x**5 + sin(x)", "1/(1 + x**2)"]
print(pl.DataFrame([{"a0(x)": a0, **{f"n={n}": str(ident.toda_residual(a0, n)) for n in (1, 2, 3)}}
                    for a0 in cases]))

# %% [markdown]
# ## 12. Z(x) of a 2 x 2 GOE matrix (`Zmultiple.m`; eqs. 15.2, 15.6)
# The Gaussian integral Z(x) = int exp(-i/2 y^T (x - H) y) dy (eq. 15.2, convergent for Im x < 0) depends
# on H only through its eigenvalues: Z = 2 pi exp(-(log(e1 - x) + log(e2 - x))/2 + i pi/2) (eq. 15.6).
# This is how averages of resolvents become integrals over eigenvalues.  Check: both forms along a line.

# %%
h = ident.sample_goe2(seed=5)
line = np.linspace(-2, 2, 9 if SHORT else 25) - 0.5j
integral = np.array([ident.z_gaussian_integral(h, v) for v in line])
closed = np.array([ident.z_eigenvalue_form(h, v) for v in line])
fine = np.linspace(-2, 2, 300) - 0.5j
curve = np.array([ident.z_eigenvalue_form(h, v) for v in fine])
fig, ax = plt.subplots(figsize=(6.5, 4))
for part, name, colour in ((np.real, "Re", "C0"), (np.imag, "Im", "C1")):
    ax.plot(fine.real, part(curve), color=colour, label=f"{name} Z, eigenvalues (15.6)")
    ax.plot(line.real, part(integral), "o", ms=4, color=colour, label=f"{name} Z, integral (15.2)")
ax.set(title=f"Z(x - 0.5 i), H eigenvalues {np.round(np.linalg.eigvalsh(h), 3)}", xlabel="Re x", ylabel="Z")
ax.legend(fontsize=7)
show(fig, "12_zmultiple")
print(f"max relative difference {np.max(np.abs(integral - closed) / np.abs(closed)):.1e}")

# %% [markdown]
# ## 13. The Coulomb gas (`Coulomb_gas.m`)
# The joint eigenvalue density exp(-beta [N/4 sum y^2 - sum log|y_i - y_j|]) is a gas of charges repelling
# logarithmically in a quadratic well at temperature 1/beta.  Metropolis sampling of the gas reproduces
# exact beta-ensemble samples (the tridiagonal model) and tends to the semicircle; colder gases (larger
# beta) are more rigid, with one bump per charge.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
x = np.linspace(-2.5, 2.5, 300)
for ax, beta in zip(axes, (1, 2, 4), strict=True):
    gas = rmt.sample_coulomb_gas(20, beta, chains=n_of(64, 8), sweeps=n_of(400, 120), burn_in=n_of(100, 40),
                                 thin=5, seed=beta)
    exact = rmt.sample_beta_hermite(20, beta, size=len(gas), seed=100 + beta)
    ax.hist(exact.ravel(), bins=80, range=(-2.5, 2.5), density=True, alpha=0.5, label="tridiagonal (exact)")
    ax.hist(gas.ravel(), bins=80, range=(-2.5, 2.5), density=True, histtype="step", color="k", label="Metropolis")
    ax.plot(x, rmt.semicircle_density(x), "r:", label="semicircle")
    ax.set(title=f"N=20, beta={beta}\n{len(gas)} configurations", xlabel="y")
    ax.legend(fontsize=7)
axes[0].set_ylabel("density")
show(fig, "13_coulomb_gas")

# %% [markdown]
# ## 14. Tracy-Widom at the edge
# Not a script of the repository but the law the layer fits below use: the largest eigenvalue, centred at
# 2 sqrt(N) and scaled by N^(1/6), tends to TW_beta (densities from Fredholm determinants).

# %%
fig, ax = plt.subplots(figsize=(7, 4))
s = np.linspace(-6, 4, 120 if SHORT else 240)
n = 200 if SHORT else 400
for beta in (1, 2):
    stat = rmt.gaussian_edge_statistic(rmt.sample_beta_hermite(n, beta, size=n_of(3000), seed=beta)[:, -1], n)
    line = ax.plot(s, np.gradient(rmt.tracy_widom_cdf(s, beta), s), label=f"TW{beta}")[0]
    ax.hist(stat, bins=40, range=(-6, 4), density=True, histtype="step", color=line.get_color(),
            label=f"{NAMES[beta]} N={n}, {len(stat)} samples: mean {stat.mean():.2f} (ref {rmt.TW_MEAN[beta]:.2f})")
ax.set(xlabel="(lambda_max - 2 sqrt N) N^(1/6)", ylabel="density", title="largest eigenvalue")
ax.legend(fontsize=8)
show(fig, "14_tracy_widom")

# %% [markdown]
# Helpers of the repository: `histnorm.m` (a histogram of unit area; `fin.histnorm`, used above) and
# `double_factorial.m` (`fin.double_factorial`, used by eqs. 11.21 and 11.36).

# %%
print([fin.double_factorial(k) for k in range(-1, 10)])

# %% [markdown]
# # Part 2: the zoo's layers
# Each layer of the zoo CNN is a small matrix: 8 x 25, 6 x 200, 4 x 24 (conv kernels flattened to
# out x in*k*k), 20 x 36 and 10 x 20.  `zoo_spectra` fits Marchenko-Pastur to each (sigma^2 from the
# bulk), counts spikes beyond the edge by their Tracy-Widom statistic, and more.  Distinct models only:
# a model filed again under a later epoch (a fallback copy) is counted once.
#
# And one checkpoint per training run: a zoo can hold several checkpoints of one run (the same class
# set, activation and initialisation, saved at different epochs; the zoo records no run id, so those
# three columns identify a run here).  Two checkpoints of one run are nearly the same network; kept
# both, they would count one run twice in every distribution below and, in the population spectrum,
# show up as pairs (one large eigenvalue per run and one tiny one for the difference between its
# checkpoints).  Each run is represented by its latest epoch; `n` below counts runs.

# %%
lake = wl.open_lake(LAKE)
zoo = lake.zoos[0]
ids, rows = lake.zoo_weights(zoo)
meta = lake.models(zoo).collect()
meta = meta.join(pl.DataFrame({"model_id": ids, "row": np.arange(len(ids))}), on="model_id").sort("row")
selection = distinct_models(meta)
print(selection.note())
rows, meta = rows[selection.keep], meta.filter(pl.Series(selection.keep))
latest = latest_per_run(meta)  # a run: its run_id, else one init, activation and class set
print(f"{meta.height} checkpoints of {int(latest.sum())} runs; one per run (its latest epoch): "
      f"n = {int(latest.sum())} models")
rows, meta = rows[latest], meta.filter(pl.Series(latest))
arch = lake.arch(zoo)
table = spectra.zoo_spectra(rows, arch, eigenvalues=True)
figures = ("mp_sigma2", "n_spikes", "tw_stat", "stable_rank", "level_spacing_ratio", "alpha")
print(table.group_by("layer", maintain_order=True)
      .agg(pl.col("rows").first(), pl.col("cols").first(), *[pl.col(c).median() for c in figures]).sort("layer"))

# %% [markdown]
# Pool every model's spectrum divided by its own fitted sigma^2 and overlay MP(q, 1); below, the
# Tracy-Widom statistic of each layer's largest eigenvalue: noise follows TW1, and a layer whose top
# eigenvalue carries structure beyond noise sits to its right (a spike at the 99 % quantile, 2.02).

# %%
layers = arch.layers
fig, axes = plt.subplots(2, len(layers), figsize=(3.4 * len(layers), 6.5))
tw_grid = np.linspace(-6, 8, 200)
tw1 = np.gradient(rmt.tracy_widom_cdf(tw_grid, 1), tw_grid)
for col, layer in enumerate(layers):
    r, c = layer.matrix_shape
    q = min(r, c) / max(r, c)
    part = table.filter(pl.col("layer") == layer.name)
    scaled = (np.stack(part["eigenvalues"].to_list()) / part["mp_sigma2"].to_numpy()[:, None]).ravel()
    lo, hi = rmt.mp_edges(q)
    grid = np.linspace(max(lo, 1e-3), hi, 300)
    ax = axes[0, col]
    ax.hist(scaled, bins=40, range=(0, max(hi * 1.6, np.quantile(scaled, 0.99))), density=True, alpha=0.6,
            label="ESD / sigma^2")
    ax.plot(grid, rmt.mp_density(grid, q), "k", label=f"MP q={q:.2f}")
    ax.set(title=f"{layer.name} {r}x{c}, n={part.height}", xlabel="lambda / sigma^2", ylabel="density")
    ax.legend(fontsize=7)
    ax = axes[1, col]
    ax.hist(part["tw_stat"].clip(-6, 8), bins=28, range=(-6, 8), density=True, alpha=0.6, label="TW stat of lambda_max")
    ax.plot(tw_grid, tw1, "k", label="TW1")
    ax.set(xlabel="TW statistic (clipped to [-6, 8])", ylabel="density")
    ax.legend(fontsize=7)
fig.suptitle(f"{zoo}: layer spectra (n = models, one per run)")
show(fig, "20_zoo_layers")

# %% [markdown]
# ## Baseline: the same CNN, untrained
# Freshly initialised networks (PyTorch's default initialisation, iid uniform weights) are noise by
# construction: their layer statistics are what "no structure" looks like at these small sizes.  Trained
# layers whose top eigenvalue sits right of the untrained ones have learned a direction.

# %%
import torch

from weightlake.zoo.cnn import build_cnn

torch.manual_seed(0)
init_rows = torch.stack([build_cnn(arch).flat() for _ in range(n_of(400, 50))]).numpy()
init = spectra.zoo_spectra(init_rows, arch)
both = pl.concat([table.drop("eigenvalues").with_columns(kind=pl.lit("trained")),
                  init.with_columns(kind=pl.lit("untrained"))])
print(both.group_by("layer", "kind", maintain_order=True)
      .agg(n=pl.len(), tw_stat=pl.col("tw_stat").median(), n_spikes=pl.col("n_spikes").mean(),
           stable_rank=pl.col("stable_rank").median(), mp_ks=pl.col("mp_ks").median()).sort("layer", "kind"))
fig, axes = plt.subplots(1, len(layers), figsize=(3.4 * len(layers), 3.4), sharey=True)
for ax, layer in zip(axes, layers, strict=True):
    for kind, colour in (("untrained", "0.5"), ("trained", "C3")):
        part = both.filter((pl.col("layer") == layer.name) & (pl.col("kind") == kind))
        ax.hist(part["tw_stat"].clip(-6, 8), bins=28, range=(-6, 8), density=True, histtype="step", color=colour,
                label=f"{kind}, n={part.height}")
    ax.plot(tw_grid, tw1, "k:", label="TW1")
    ax.set(title=f"{zoo} {layer.name}", xlabel="TW statistic of lambda_max")
    ax.legend(fontsize=7)
axes[0].set_ylabel("density")
show(fig, "20b_untrained_baseline")

# %% [markdown]
# ## The population spectrum
# Every model's flat vector is one sample (one per run), the parameters are variables (each
# standardised: X below).  With fewer models than parameters the n x n Gram matrix X X^T is decomposed
# and only its non-zero eigenvalues are fitted; they are divided by N = max(n, P) (q = rank / N), so
# the y axis is X X^T / N, not the correlation matrix X^T X / (n - 1).  Trained populations are
# structured far beyond a few spikes, so the fit is also judged: `fit_holds` is False, with the
# reason, when the bulk is not Marchenko-Pastur, and then no spike count is reported in the title
# (spikes are defined against a bulk that fits).

# %%
pop = spectra.population_spectrum(rows, center=True, standardize=True)
print(pop.note())
fig, ax = plt.subplots(figsize=(7, 4))
rank = np.arange(pop.rank, 0, -1)
ax.plot(rank, pop.eigenvalues, "o", ms=4, label=f"{pop.rank} non-zero eigenvalues (n_null = {pop.n_null})")
ax.axhspan(pop.mp_lambda_minus, pop.mp_lambda_plus, color="0.8",
           label=f"fitted MP bulk, q={pop.q:.3f}, sigma^2={pop.mp_sigma2:.3g}")
# population_spectrum divides the Gram eigenvalues by max(n, P), not by n - 1: these are not the
# correlation matrix's eigenvalues but (n - 1) / max(n, P) times them
verdict = f"fit holds, {pop.n_spikes} spikes" if pop.fit_holds else "MP fit does not hold (no spike count)"
ax.set(yscale="log", xlabel="rank (1 = largest)",
       ylabel=f"eigenvalue of X X^T / {pop.n_big}\n(X: {pop.n_models} x {pop.n_params}, standardised)",
       title=f"{zoo}: {pop.n_models} models (one per run) x {pop.n_params} parameters\n{verdict}")
ax.legend(fontsize=8)
show(fig, "21_population")

# %% [markdown]
# ## Our convention and WeightWatcher's, side by side
# `zoo_spectra_ww` computes the columns of WeightWatcher 0.7.7 as it defines them
# (`docs/spectra-conventions.md`): eigenvalues s^2 unnormalised, conv kernels cut into kh*kw slices of
# out x in whose eigenvalues are pooled and halved, spectral_norm = s_max^2, norm = squared Frobenius norm.
# On linear layers the matrix is the same, so the spectral norm (spectral_norm_ww = spectral_norm^2)
# and the stable rank agree; the power-law exponent alpha does **not**, because the two conventions
# choose the tail (xmin) and fit it by different rules (`docs/spectra-conventions.md`): compare the
# `alpha` and `ww_alpha` medians of fc1 and fc2 in the table.  On conv layers they describe different
# matrices (`n_eigs` here against `num_evals` there), and everything that depends on the spectrum
# differs with them.  Read alpha against the number of eigenvalues it is fitted to: fc2 (10 x 20)
# has 10, the fewest our fit accepts, with a tail of at least 5, which is not a meaningful power
# law; the legend gives each layer's count (ours / WeightWatcher's).  The right panel shows only layers
# with an alpha on both sides: the conv layers have fewer than 10 eigenvalues in our convention (no
# alpha), while WeightWatcher's pooled slices give it enough to fit one.

# %%
ww = spectra_ww.zoo_spectra_ww(rows, arch)
side = (table.select("row", "layer", "n_eigs", "spectral_norm", "stable_rank", "alpha")
        .join(ww.select("row", "layer", "num_evals", pl.col("spectral_norm").alias("ww_spectral_norm"),
                        pl.col("stable_rank").alias("ww_stable_rank"), pl.col("alpha").alias("ww_alpha")),
              on=["row", "layer"]))
print(side.group_by("layer", maintain_order=True).agg(pl.all().exclude("row", "layer").median()).sort("layer"))
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.2))
no_alpha = []
for i, name in enumerate(arch.layer_names):
    part = side.filter(pl.col("layer") == name)
    eigs = f"{name} ({int(part['n_eigs'].median())} / {int(part['num_evals'].median())} eigenvalues)"
    ax0.scatter(part["spectral_norm"] ** 2, part["ww_spectral_norm"], s=10, color=f"C{i}", label=eigs)
    fitted = part.filter(pl.col("alpha").is_not_nan() & pl.col("ww_alpha").is_not_nan())
    if fitted.height:
        ax1.scatter(fitted["alpha"], fitted["ww_alpha"], s=10, color=f"C{i}", label=f"{eigs}, n={fitted.height}")
    else:
        no_alpha.append(name)
lim = [side["ww_spectral_norm"].min() * 0.8, side["ww_spectral_norm"].max() * 1.2]
ax0.plot(lim, lim, "k:", lw=1, label="equal")
ax0.set(xscale="log", yscale="log", xlabel="ours: spectral_norm^2 = s_max^2 (one out x in*kh*kw matrix)",
        ylabel="WeightWatcher: spectral_norm", title=f"{zoo}, n={len(rows)}: largest eigenvalue")
ax1.set(xlabel=f"ours: alpha (NaN below {spectra.MIN_ALPHA_EIGS} eigenvalues)", ylabel="WeightWatcher: alpha",
        title="power-law exponent of the spectrum's tail"
              + (f"\nnot shown (no alpha on one side or both): {', '.join(no_alpha)}" if no_alpha else ""))
ax0.legend(fontsize=7)
ax1.legend(fontsize=7)
show(fig, "22_conventions")
