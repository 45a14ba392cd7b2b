# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Random-matrix theory: the textbook results, then the zoo's layers
#
# Part 1 reproduces the classic results with `weightlake.analysis.rmt`: the Wigner semicircle for the
# Gaussian ensembles GOE / GUE / GSE (Dyson index beta = 1, 2, 4), nearest-neighbour spacings against the
# Wigner surmise, spacing ratios, Marchenko-Pastur for Wishart matrices, Tracy-Widom at the edge, and a
# Coulomb gas sampled by Metropolis.  Part 2 applies the same yardsticks to the weight matrices of zoo
# models with `weightlake.analysis.spectra`.
#
# Run as a script (`.venv/bin/python examples/rmt_textbook.py [--lake lake] [--rows zoo.npy] [--out out/rmt]`) or open
# as a notebook with jupytext.  Without `--rows` it builds freshly initialised CNNs (PyTorch's default
# initialisation), which should look like noise: a useful baseline before looking at trained zoos.

# %%
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib
import numpy as np
import polars as pl

if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from weightlake.analysis import rmt, spectra  # noqa: E402
from weightlake.arch import CNN_S  # noqa: E402

parser = argparse.ArgumentParser(description="RMT textbook results and zoo layer spectra")
parser.add_argument("--out", default="out/rmt", help="directory for the PNGs (default out/rmt)")
parser.add_argument("--rows", default=None, help="a .npy of flat rows [n, 2464]; default: random-init CNNs")
parser.add_argument("--lake", default=None, help="a weightlake lake: use the weights of its zoo (see --zoo)")
parser.add_argument("--zoo", default=None, help="zoo in --lake (default: its only zoo)")
parser.add_argument("--models", type=int, default=2000, help="random-init CNNs to build without --rows")
parser.add_argument("--seed", type=int, default=0)
args, _ = parser.parse_known_args()
OUT = Path(args.out)
OUT.mkdir(parents=True, exist_ok=True)
BETAS = (1, 2, 4)
NAMES = {1: "GOE", 2: "GUE", 4: "GSE"}


def save(fig, name: str) -> None:
    fig.tight_layout()
    fig.savefig(OUT / name, dpi=110)
    print(f"wrote {OUT / name}")
    if "ipykernel" not in sys.modules:
        plt.close(fig)


# %% [markdown]
# ## 1. Wigner semicircle for beta = 1, 2, 4
# Eigenvalues divided by sqrt(N) fill [-2, 2] with density sqrt(4 - x^2) / (2 pi), whatever beta is.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
x = np.linspace(-2.2, 2.2, 400)
for ax, beta in zip(axes, BETAS, strict=True):
    n = 400 if beta == 1 else 200 if beta == 2 else 100
    eigs = rmt.gaussian_ensemble_eigenvalues(n, beta, size=8, seed=beta)
    ax.hist(eigs.ravel(), bins=50, range=(-2.2, 2.2), density=True, alpha=0.6, label=f"{NAMES[beta]}, N={n}")
    ax.plot(x, rmt.semicircle_density(x), "k", label="semicircle")
    ax.set_title(f"{NAMES[beta]} (beta={beta})")
    ax.set_xlabel("eigenvalue / sqrt(N)")
    ax.legend(fontsize=8)
axes[0].set_ylabel("density")
save(fig, "semicircle.png")

# %% [markdown]
# ## 2. Level repulsion: Wigner surmise and spacing ratios
# Unfold with the semicircle CDF (unit mean spacing), then compare the spacings with
# P(s) = a s^beta exp(-b s^2); uncorrelated (Poisson) levels give exp(-s).  Ratios of consecutive
# spacings need no unfolding: their mean is 0.5307 / 0.5996 / 0.6744 for beta = 1 / 2 / 4, 0.3863 for Poisson.

# %%
fig, (ax_s, ax_r) = plt.subplots(1, 2, figsize=(12, 4))
s_grid, r_grid = np.linspace(0, 3.5, 300), np.linspace(0, 1, 200)
for beta in BETAS:
    eigs = rmt.gaussian_ensemble_eigenvalues(200 if beta < 4 else 100, beta, size=30, seed=10 + beta)
    spacing = rmt.unfolded_spacings(eigs, cdf=rmt.semicircle_cdf)
    line = ax_s.plot(s_grid, rmt.wigner_surmise(s_grid, beta), label=f"surmise beta={beta}")[0]
    ax_s.hist(spacing, bins=40, range=(0, 3.5), density=True, histtype="step", color=line.get_color())
    ratios = rmt.spacing_ratios(eigs).ravel()
    ax_r.hist(ratios, bins=30, range=(0, 1), density=True, histtype="step", color=line.get_color())
    ax_r.plot(r_grid, rmt.spacing_ratio_density(r_grid, beta), color=line.get_color(),
              label=f"{NAMES[beta]}: mean r {np.nanmean(ratios):.4f} (ref {rmt.SPACING_RATIO_MEAN[beta]})")
    print(f"{NAMES[beta]}: mean spacing ratio {np.nanmean(ratios):.4f}, reference {rmt.SPACING_RATIO_MEAN[beta]}")
poisson = np.sort(np.random.default_rng(1).uniform(0, 1, (30, 400)), axis=1)
ax_s.plot(s_grid, rmt.wigner_surmise(s_grid, "poisson"), "k--", label="Poisson exp(-s)")
ax_r.plot(r_grid, rmt.spacing_ratio_density(r_grid, "poisson"), "k--",
          label=f"Poisson: mean r {np.nanmean(rmt.spacing_ratios(poisson)):.4f} (ref 0.3863)")
ax_s.set(xlabel="unfolded spacing s", ylabel="density", title="nearest-neighbour spacings")
ax_r.set(xlabel="r = min(s_i, s_i+1) / max(s_i, s_i+1)", title="spacing ratios")
ax_s.legend(fontsize=8)
ax_r.legend(fontsize=7)
save(fig, "spacings.png")

# %% [markdown]
# ## 3. Marchenko-Pastur for Wishart matrices
# W = X X^T / N with X of shape M x N, iid entries of variance sigma^2: the eigenvalues fill
# [sigma^2 (1 - sqrt q)^2, sigma^2 (1 + sqrt q)^2] with q = M / N.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
for ax, (m, n) in zip(axes, [(50, 500), (200, 400), (300, 300)], strict=True):
    q = m / n
    eigs = np.linalg.eigvalsh(rmt.sample_wishart(m, n, size=10, sigma=0.5, seed=m))
    lo, hi = rmt.mp_edges(q, 0.25)
    grid = np.linspace(max(lo * 0.9, 1e-4), hi * 1.05, 400)
    ax.hist(eigs.ravel(), bins=60, density=True, alpha=0.6, label="Wishart sample")
    ax.plot(grid, rmt.mp_density(grid, q, 0.25), "k", label="Marchenko-Pastur")
    ax.set(title=f"M={m}, N={n}, q={q:.2f}, sigma^2=0.25", xlabel="eigenvalue")
    ax.legend(fontsize=8)
    if q == 1:
        ax.set_ylim(0, 4)
save(fig, "marchenko_pastur.png")

# %% [markdown]
# ## 4. Tracy-Widom at the edge
# The largest eigenvalue, centred at 2 sqrt(N) and scaled by N^(1/6), tends to TW_beta.  The densities are
# derivatives of the CDFs computed as Fredholm determinants (Bornemann's method).  Samples come from the
# tridiagonal beta-Hermite model, which has the GOE / GUE eigenvalue law at a fraction of the cost.

# %%
fig, ax = plt.subplots(figsize=(7, 4))
s = np.linspace(-6, 4, 240)
for beta in (1, 2):
    stat = rmt.gaussian_edge_statistic(rmt.sample_beta_hermite(400, beta, size=3000, seed=beta)[:, -1], 400)
    density = np.gradient(rmt.tracy_widom_cdf(s, beta), s)
    line = ax.plot(s, density, label=f"TW{beta} (mean {rmt.TW_MEAN[beta]:.3f})")[0]
    ax.hist(stat, bins=50, range=(-6, 4), density=True, histtype="step", color=line.get_color(),
            label=f"{NAMES[beta]} N=400: mean {stat.mean():.3f}")
ax.set(xlabel="(lambda_max - 2 sqrt N) N^(1/6)", ylabel="density", title="largest eigenvalue")
ax.legend(fontsize=8)
save(fig, "tracy_widom.png")

# %% [markdown]
# ## 5. The Coulomb gas
# The eigenvalue law exp(-beta [N/4 sum y^2 - sum log|y_i - y_j|]) read as charges in a quadratic well at
# temperature 1 / beta, sampled by Metropolis (N = 20) and compared with exact beta-ensemble samples.
# Higher beta = colder gas = more rigid, crystal-like spacing (the density shows N bumps).

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
for ax, beta in zip(axes, BETAS, strict=True):
    gas = rmt.sample_coulomb_gas(20, beta, chains=64, sweeps=400, burn_in=100, thin=5, seed=beta)
    exact = rmt.sample_beta_hermite(20, beta, size=len(gas), seed=100 + beta)
    ax.hist(exact.ravel(), bins=80, range=(-2.5, 2.5), density=True, alpha=0.5, label="tridiagonal (exact)")
    ax.hist(gas.ravel(), bins=80, range=(-2.5, 2.5), density=True, histtype="step", color="k", label="Metropolis")
    ax.plot(x, rmt.semicircle_density(x), "r:", label="semicircle")
    ax.set(title=f"beta={beta}: E sum y^2 = {np.mean(np.sum(gas**2, axis=1)):.2f} (exact {20 + 2 / beta - 1:.2f})",
           xlabel="y")
    ax.legend(fontsize=7)
save(fig, "coulomb_gas.png")

# %% [markdown]
# ## 6. The zoo's layers
# Each layer of each model is a small matrix (conv kernels flattened to out x in*k*k): 8 x 25, 6 x 200,
# 4 x 24, 20 x 36, 10 x 20.  `zoo_spectra` fits Marchenko-Pastur to each one (sigma^2 from the bulk) and
# reports spikes, the TW statistic of the top eigenvalue, spacing ratios and more.


# %%
def load_rows() -> np.ndarray:
    if args.lake:
        import weightlake as wl

        lake = wl.open_lake(args.lake)
        _, rows = lake.zoo_weights(args.zoo)
        print(f"read {rows.shape[0]:,} models of zoo {args.zoo or lake.zoos[0]!r} from {args.lake}")
        return np.array(rows)
    if args.rows:
        rows = np.load(args.rows, mmap_mode="r")
        CNN_S.check_flat(rows)
        print(f"loaded {rows.shape[0]:,} rows from {args.rows}")
        return np.asarray(rows, dtype=np.float32)
    import torch

    from weightlake.zoo.cnn import build_cnn

    torch.manual_seed(args.seed)
    rows = torch.stack([build_cnn().flat() for _ in range(args.models)]).numpy()
    print(f"built {len(rows):,} randomly initialised CNNs (PyTorch default init)")
    return rows


rows = load_rows()
table = spectra.zoo_spectra(rows, eigenvalues=True)
FIGURES = ("mp_sigma2", "stable_rank", "effective_rank", "tw_stat", "level_spacing_ratio", "ipr_mean", "alpha")
summary = (table.group_by("layer", maintain_order=True)
           .agg(pl.col("rows").first(), pl.col("cols").first(), *[pl.col(c).median() for c in FIGURES],
                spikes_per_model=pl.col("n_spikes").mean())
           .sort("layer"))
with pl.Config(tbl_cols=12, tbl_width_chars=160):
    print("medians per layer:")
    print(summary)
table.drop("eigenvalues").write_csv(OUT / "zoo_spectra.csv")

# %% [markdown]
# Pool every model's ESD after dividing by its own fitted sigma^2, and overlay MP(q, 1); for the smallest
# layers (4-8 eigenvalues per model) finite-size effects are visible at the edges.

# %%
fig, axes = plt.subplots(2, 5, figsize=(17, 6.5))
tw_grid = np.linspace(-6, 6, 200)
tw1_density = np.gradient(rmt.tracy_widom_cdf(tw_grid, 1), tw_grid)
for col, layer in enumerate(CNN_S.layers):
    r, c = layer.matrix_shape
    q = min(r, c) / max(r, c)
    part = table.filter(pl.col("layer") == layer.name)
    esd = np.stack(part["eigenvalues"].to_list())
    scaled = (esd / part["mp_sigma2"].to_numpy()[:, None]).ravel()
    lo, hi = rmt.mp_edges(q)
    grid = np.linspace(max(lo * 0.9, 1e-3), hi * 1.1, 300)
    ax = axes[0, col]
    ax.hist(scaled, bins=60, range=(0, hi * 1.6), density=True, alpha=0.6, label="pooled ESD / sigma^2")
    ax.plot(grid, rmt.mp_density(grid, q), "k", label=f"MP q={q:.2f}")
    ax.set(title=f"{layer.name} {r}x{c}", xlabel="lambda / sigma^2")
    ax.legend(fontsize=7)
    ax = axes[1, col]
    ax.hist(part["tw_stat"], bins=50, range=(-6, 6), density=True, alpha=0.6, label="top-eigenvalue TW stat")
    ax.plot(tw_grid, tw1_density, "k", label="TW1")
    ax.set(xlabel="TW statistic of lambda_max")
    ax.legend(fontsize=7)
save(fig, "zoo_layers.png")

# %% [markdown]
# The population view: every model's flat vector as one sample, the 2,464 parameters as variables,
# each standardised (so a layer's larger init scale does not count as structure).  Shared directions
# across models show up as eigenvalues beyond the MP edge.

# %%
pop = spectra.population_spectrum(rows, center=True, standardize=True)
fig, ax = plt.subplots(figsize=(7, 4))
ax.hist(pop.eigenvalues, bins=80, density=True, alpha=0.6, label=f"{pop.n_models:,} models, {pop.n_params} params")
grid = np.linspace(max(pop.mp_lambda_minus * 0.9, 1e-4), pop.mp_lambda_plus * 1.05, 400)
ax.plot(grid, pop.mp_density(grid), "k", label=f"MP q={pop.q:.3f}, sigma^2={pop.mp_sigma2:.3f}")
ax.axvline(pop.mp_lambda_plus, color="r", linestyle=":", label=f"edge; {pop.n_spikes} spikes beyond")
ax.set(xlabel="eigenvalue of the correlation matrix", ylabel="density", title="population spectrum")
ax.legend(fontsize=8)
save(fig, "zoo_population.png")
print(f"population: q={pop.q:.3f}, sigma^2={pop.mp_sigma2:.4f}, spikes={pop.n_spikes}, TW={pop.tw_stat:.2f}")
