# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Neural tangent kernels: trainability in miniature, then the zoo's CNNs
#
# After Xiao, Pennington and Schoenholz, *Disentangling Trainability and Generalization in Deep
# Neural Networks* (arXiv 1912.13053).  Part 1 uses the analytic NNGP/NTK recursions of infinitely
# wide fully connected networks (`weightlake.dynamics.kernels`, ReLU and erf closed forms) on real
# Fashion-MNIST images: how the NTK's condition number kappa and the correlation between inputs
# degenerate with depth, against the weight variance, and that the empirical NTK of finite wide
# MLPs converges to the analytic one.  Part 2 takes the empirical NTK (`weightlake.dynamics.ntk`,
# `torch.func`) of CNN-s models from the lake, trained and at a fresh draw of their initialisation,
# and asks whether kappa predicts which models train well.  Part 3 checks the learning-rate bound
# `2 / lambda_max` on one model's linearised training.

# %%
import os

LAKE = os.environ.get("WEIGHTLAKE_LAKE", "../lake")        # the demo lake, or yours
SHORT = os.environ.get("WEIGHTLAKE_NOTEBOOK_SHORT") == "1"  # small sizes for the test suite
IMAGES = "fashion-mnist"  # the dataset the lake's zoo was trained on (the zoo does not record it yet)
FIGURES = os.environ.get("WEIGHTLAKE_FIGURES", "figures")   # each figure is written here as PNG

# %%
import numpy as np
import polars as pl
import torch
from IPython.display import Image, display

import weightlake as wl
from weightlake.analysis.distinct import latest_per_run
from weightlake.compute._common import probe_images
from weightlake.compute.ntk import compute_ntk, kappa_predicts_accuracy, ntk_with_metadata
from weightlake.dynamics import kernels, plots
from weightlake.dynamics.ntk import empirical_ntk, linearised_gd, ntk_spectrum

torch.manual_seed(0)
pl.Config.set_tbl_rows(50)   # print every row and column of the tables below, not polars' first 10
pl.Config.set_tbl_cols(-1)
pl.Config.set_tbl_width_chars(250)


def show(path):
    display(Image(filename=str(path)))


# %% [markdown]
# ## 1. The phase diagram of wide fully connected networks
# Inputs: 8 Fashion-MNIST test images (one per class of the first 8), flattened and scaled to unit
# mean square.  For each weight variance `sigma_w^2` (bias variance 0.05) the recursions give the
# NTK after `L` hidden layers.  In the ordered phase (small `sigma_w^2`) all inputs become perfectly
# correlated with depth, the kernel tends to a constant matrix and kappa explodes: such networks
# cannot be trained by gradient descent at any learning rate.  For ReLU, `sigma_w^2 = 2` is the
# critical line; erf networks also have a chaotic phase, where correlations fall to zero instead and
# the kernel becomes diagonal (trainable, but memorising).
#
# The kappa panels are capped at 1e12: float64 eigenvalues are resolved to about 1e-16 of the largest,
# so larger condition numbers (the colour scale would otherwise run to about 16) are round-off.  Grey
# cells are *numerically* singular (kappa at or above the cap, or a smallest eigenvalue that is not
# positive in float64); the analytic kernel itself is not singular at finite depth.  Both correlation
# panels use one colour range.  kappa does not see the kernel's scale: for ReLU with `sigma_w^2 > 2`
# the panel shows a low kappa, but the kernel's entries grow without bound with depth there.
#
# The table lists, per weight variance, kappa at depth 1 and at the deepest depth, and `corr_last`:
# the mean off-diagonal correlation of the NTK (entries divided by the geometric mean of their two
# diagonal entries) at the deepest depth; 1 means every input looks the same to the kernel, 0 that
# the kernel is diagonal.

# %%
x_img, y_img = probe_images(IMAGES, range(8), 8, seed=0)
x = x_img.reshape(len(x_img), -1).double().numpy()
x = x / np.sqrt((x ** 2).mean(axis=1, keepdims=True))
depths = list(range(1, 31 if SHORT else 101, 1 if SHORT else 3))
grids = {"relu": np.linspace(1.0, 3.0, 9 if SHORT else 21), "erf": np.linspace(0.5, 4.0, 9 if SHORT else 21)}
diagrams = {act: kernels.phase_diagram(x, depths, grid, sigma_b2=0.05, activation=act) for act, grid in grids.items()}
show(plots.plot_phase_diagram(diagrams, f"{FIGURES}/ntk_phase_diagram.png", n_inputs=len(x)))

# %%
rows = []
for act, d in diagrams.items():
    for i, s in enumerate(d["sigma_w2"]):
        rows.append({"activation": act, "sigma_w2": round(float(s), 3), "kappa_depth_1": d["kappa"][i, 0],
                     f"kappa_depth_{d['depths'][-1]}": d["kappa"][i, -1], "corr_last": d["correlation"][i, -1]})
pl.DataFrame(rows).filter(pl.col("sigma_w2").is_in([1.0, 1.5, 2.0, 2.5, 3.0, 0.5, 4.0]))

# %% [markdown]
# ## 2. Finite wide MLPs converge to the analytic NTK
# The empirical NTK (trace form, one output) of seeded MLPs in the NTK parameterisation, depth 2,
# against the analytic kernel (relative Frobenius error, mean of three seeds); the error should
# fall roughly as `1 / sqrt(width)`.

# %%
widths = [32, 128, 512] if SHORT else [32, 128, 512, 2048, 4096]
errors = {act: kernels.ntk_convergence(x[:5, :196:2], widths, depth=2, sigma_w2=2.0, sigma_b2=0.1, activation=act)
          for act in ("relu", "erf")}
show(plots.plot_ntk_convergence(errors, f"{FIGURES}/ntk_convergence.png", depth=2))
errors

# %% [markdown]
# ## 3. Empirical NTK spectra of the lake's CNN-s models
# Each model is rebuilt from the lake; its NTK is taken on `K` probe images of its own classes (test
# split), full form over all ten logits and trace form.  `init` rows are a fresh draw of the same
# architecture, activation and initialisation (the zoo does not keep a model's starting weights).
# So an `init` kappa says nothing about the start of *that* model: within one (activation, init)
# group it is independent of the trained accuracy by construction, and only differences *between*
# groups can show up in the `init` rows below.
# Nothing is committed here; `weightlake analyze ntk --images fashion-mnist` writes the same rows as
# table `ntk`.
#
# The zoo holds several checkpoints of one training run (the same class set, activation and
# initialisation, saved at different epochs; the zoo records no run id, so these three columns are
# what identifies a run here).  Checkpoints of one run are nearly the same network and are not
# independent samples, so the population-level summary and test below use one checkpoint per run,
# its latest epoch (`per_run`); the split by epoch further down uses every checkpoint, one per run
# in each epoch.

# %%
lake = wl.open_lake(LAKE)
zoo = lake.zoos[0]
table, chosen, dataset = compute_ntk(lake, zoo, sample=8 if SHORT else 200, probe_images_k=10 if SHORT else 20,
                                     images=IMAGES, seed=0)
print(chosen.note)
ntk = ntk_with_metadata(lake, zoo, table)
models = lake.models(zoo).filter(pl.col("model_id").is_in(chosen.meta["model_id"].to_list())).collect()
latest = models.filter(pl.Series(latest_per_run(models)))  # a run: its run_id, else one init, activation and class set
per_run = ntk.filter(pl.col("model_id").is_in(latest["model_id"].to_list()))
print(f"{models.height} checkpoints of {latest.height} runs; one per run, its latest epoch: "
      f"n = {per_run['model_id'].n_unique()} models")
per_run.group_by("state", "form", "activation", "init").agg(
    pl.len().alias("models"), pl.col("kappa").log10().median().alias("median_log10_kappa"),
    pl.col("lr_bound").median(), pl.col("accuracy").mean()).sort("state", "form", "activation", "init")

# %%
show(plots.plot_kappa_vs_accuracy(per_run, f"{FIGURES}/ntk_kappa_vs_accuracy.png", zoo=f"{zoo}, one per run",
                                  form="trace"))
kappa_predicts_accuracy(per_run)

# %% [markdown]
# Which kernels are numerically singular (an eigenvalue at most `rtol` x `lambda_max`, `rtol` as
# printed), with their rank out of the kernel's size and the trained model's accuracy: a rank close
# to the size is a kernel with a few tiny eigenvalues, not a dead network (whose full kernel would
# have a rank near the number of logits).

# %%
(per_run.filter(pl.col("singular"))
 .group_by("state", "form", "activation", "rtol")
 .agg(models=pl.len(), size=pl.col("size").first(), rank_min=pl.col("rank").min(), rank_max=pl.col("rank").max(),
      accuracy_min=pl.col("accuracy").min(), accuracy_max=pl.col("accuracy").max())
 .sort("state", "form", "activation"))

# %% [markdown]
# What the data says is in the tables above: `spearman_rho` between `log10 kappa` and the trained
# model's test accuracy, per state (fresh init, trained) and kernel form, with `n` models (one
# checkpoint per run) and the p-value.  Kernels that are numerically singular have an infinite
# kappa and no place in a correlation of `log10 kappa`: they are left out and counted in
# `n_numerically_singular`, and the table just above says which activations they come from (so
# which models the correlation lost).  On a small lake these correlations rest on a handful of
# models; read `n` and `p` before reading `rho`.  A negative rho at `init` would be the paper's
# claim (worse-conditioned kernels train worse), with the caveat above: a fresh draw can only
# separate groups.  A correlation only among trained models says more about where training ended.
#
# The same test per epoch, on every checkpoint (each epoch holds at most one checkpoint per run):

# %%
by_epoch = kappa_predicts_accuracy(ntk.filter(pl.col("state") == "trained"), by=("epoch",))
by_epoch

# %% [markdown]
# ## 4. The learning-rate bound on a linearised model
# Gradient descent on `1/2 ||f_lin - y||^2` of the model linearised at its weights converges for
# `lr < 2 / lambda_max` of the full NTK and diverges above.

# %%
model_id = int(chosen.meta["model_id"][0])
model = lake.cnn(model_id)
xs, ys = probe_images(IMAGES, lake.model(model_id)["classes"], 8, seed=1)
spec = ntk_spectrum(empirical_ntk(model, xs))
target = torch.nn.functional.one_hot(ys, 10).float()
curves = {f"{f:.2f} x 2/lambda_max": linearised_gd(model, xs, target, f * spec.lr_bound, 60 if SHORT else 200)
          for f in (0.5, 0.95, 1.05)}
title = f"{zoo} model {model_id}: linearised GD\nlambda_max {spec.lambda_max:.3g}, kappa {spec.kappa:.3g}"
show(plots.plot_loss_curves(curves, f"{FIGURES}/ntk_lr_bound.png", title))
