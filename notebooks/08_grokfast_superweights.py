# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # The oscillations of CNN training, Grokfast filters, and super weights
#
# Part 1 follows Lee et al., *Grokfast: Accelerated Grokking by Amplifying Slow Gradients* (arXiv
# 2405.20233): treat each parameter's gradient over the steps as a signal, and add back an amplified
# low-pass copy of it (an EMA or a windowed mean, `weightlake.dynamics.grokfast`) between
# `backward()` and `step()`.  We record the per-step gradients of one weight per layer of the zoo CNN
# and their spectra, in a grokking-prone setting (200 training images of Fashion-MNIST, a scaled-up
# initialisation, strong weight decay), and compare baseline and filtered runs on the same seeds.
# The same filters are available to the zoo trainer: `weightlake zoo train --grad-filter ema|ma`.
#
# Part 2 follows Yu et al., *The Super Weight in Large Language Models* (arXiv 2411.07191) on the
# lake's CNN-s models: every single weight is zeroed in turn (exhaustively,
# `weightlake.dynamics.superweights`), the most harmful ones are compared with their magnitude and
# with the paper's activation-spike proxy, and zeroing the super weights is compared with zeroing
# the largest or random weights (enforced sparsity).

# %%
import os

LAKE = os.environ.get("WEIGHTLAKE_LAKE", "../lake")        # the demo lake, or yours
SHORT = os.environ.get("WEIGHTLAKE_NOTEBOOK_SHORT") == "1"  # small sizes for the test suite
IMAGES = "fashion-mnist"  # the dataset the lake's zoo was trained on (the zoo does not record it yet)
FIGURES = os.environ.get("WEIGHTLAKE_FIGURES", "figures")   # each figure is written here as PNG

# %%
import time

import polars as pl
import torch
from IPython.display import Image, display

import weightlake as wl
from weightlake.compute.superweights import compute_super_weights, none_stand_out
from weightlake.dynamics import plots
from weightlake.dynamics.oscillation import grokking_cnn, grokking_data, low_frequency_share, record_training

torch.set_num_threads(1)


def show(path):
    display(Image(filename=str(path)))


# %% [markdown]
# ## 1. The filters as signal processing
# Both filters pass a step-to-step oscillation almost unchanged and multiply the slow part of the
# gradient: by `1 + lambda` at zero frequency (3 for the EMA, 6 for the MA).

# %%
show(plots.plot_transfer(f"{FIGURES}/grokfast_transfer.png"))

# %% [markdown]
# ## 2. Baseline and filtered training on the same seeds
# 20 training images per class (200 in all), 2,000 test images, the zoo CNN with ReLU and
# kaiming-uniform weights multiplied by 1.5, AdamW (lr 1e-3, weight decay 1.0), batch 100.  The three
# runs share the initial weights and the mini-batch order.

# %%
STEPS = 60 if SHORT else 3000
train, test = grokking_data(IMAGES, per_class=20, n_test=300 if SHORT else 2000, seed=0)
runs, started = [], time.perf_counter()
for kind in (None, "ema", "ma"):
    model = grokking_cnn("relu", "kaiming_uniform", init_scale=1.5, seed=0)
    runs.append(record_training(model, train, test, steps=STEPS, lr=1e-3, weight_decay=1.0, batch_size=100,
                                grad_filter=kind, eval_every=max(STEPS // 30, 1), seed=0))
print(f"3 runs of {STEPS} steps in {time.perf_counter() - started:.0f} s")
title = f"Fashion-MNIST, {len(train[1])} train / {len(test[1])} test images, init x1.5, wd 1.0"
show(plots.plot_accuracy_runs(runs, f"{FIGURES}/grokfast_accuracy.png", title))

# %%
names = ["conv1", "conv2", "conv3", "fc1", "fc2"]
show(plots.plot_grad_spectra(runs, f"{FIGURES}/grokfast_grad_spectra.png", names,
                             "raw per-step gradients of one weight per layer"))

# %%
target = 60.0
summary = pl.DataFrame([{
    "run": r.label, "final_train": r.train_acc[-1], "final_test": r.test_acc[-1], "best_test": r.test_acc.max(),
    f"steps_to_{target:.0f}_test": r.steps_to(target), "steps_to_99_train": r.steps_to(99.0, "train"),
    **{f"low_freq_share_{n}": float(s) for n, s in zip(names, low_frequency_share(r.grads), strict=True)},
} for r in runs])
summary

# %% [markdown]
# `low_freq_share_*` is the fraction of each watched gradient's power below 0.01 cycles per step: the
# part the filters amplify.  The verdict below is computed from the table, not written in advance.

# %%
base = runs[0]
for r in runs[1:]:
    faster = r.steps_to(target) is not None and (base.steps_to(target) is None or r.steps_to(target) < base.steps_to(target))
    print(f"{r.label}: reaches {target:.0f}% test accuracy {'earlier' if faster else 'not earlier'} than the baseline; "
          f"final test accuracy {r.test_acc[-1]:.1f}% vs {base.test_acc[-1]:.1f}%")

# %% [markdown]
# ## 3. Super weights of the lake's models
# Each sampled model is scanned on probe images of its own classes (test split).  Nothing is
# committed here; `weightlake analyze super-weights --images fashion-mnist` writes the same rows as
# tables `super_weights` and `super_weight_sparsity`, and the named queries
# `super_weight_index_by_group`, `super_weight_is_largest`, `super_weight_persistence` and
# `super_weight_sparsity_summary` summarise them in SQL.

# %%
lake = wl.open_lake(LAKE)
zoo = lake.zoos[0]
started = time.perf_counter()
tables, chosen, dataset = compute_super_weights(lake, zoo, sample=2 if SHORT else None,
                                                probe_images_n=100 if SHORT else 500, images=IMAGES,
                                                top=3, ks=(1, 2, 5, 10, 20, 50), seed=0)
print(chosen.note, f"- {time.perf_counter() - started:.0f} s")
print(*none_stand_out(tables["super_weights"], 100 if SHORT else 500))  # models where no weight stands out
meta = lake.models(zoo).select("model_id", "activation", "init", "epoch", "class_mask").collect()
sw = tables["super_weights"].join(meta, on="model_id")
sw.filter(pl.col("model_rank") <= 3).sort("model_id", "model_rank").select(
    "model_id", "activation", "init", "epoch", "layer", "model_rank", "flat_index", "accuracy_drop", "costs_accuracy",
    "abs_weight", "magnitude_rank", "proxy_rank")

# %% [markdown]
# Is each layer's most harmful weight its largest one, and does the activation-spike proxy point at
# it (`proxy_rank` 1)?

# %%
show(plots.plot_super_weight_drops(sw, f"{FIGURES}/super_weight_drops.png", zoo))
sw.filter(pl.col("rank") == 1).group_by("layer").agg(
    pl.len().alias("models"), (pl.col("magnitude_rank") == 1).mean().alias("share_largest"),
    pl.col("magnitude_rank").median().alias("median_magnitude_rank"),
    (pl.col("proxy_rank") == 1).mean().alias("share_proxy_hits"), pl.col("proxy_rank").median(),
    pl.col("accuracy_drop").mean()).sort("layer")

# %% [markdown]
# Which flat index is most often the model's super weight, by activation and init, and does it stay
# put across the epoch bins of one run (same classes, activation and init)?

# %%
top1 = sw.filter(pl.col("model_rank") == 1)
by_group = (top1.group_by("activation", "init", "layer", "flat_index").agg(pl.len().alias("models"))
            .sort("models", descending=True).group_by("activation", "init", maintain_order=True).first()
            .sort("activation", "init"))
persistence = (top1.group_by("activation", "init", "class_mask")
               .agg(pl.len().alias("bins"), pl.col("flat_index").n_unique().alias("distinct_indices"))
               .filter(pl.col("bins") >= 2))
display(by_group)
persistence.group_by("activation", "init").agg(
    pl.len().alias("runs"), (pl.col("distinct_indices") == 1).mean().alias("share_persistent")).sort("activation")

# %% [markdown]
# Enforced sparsity: zeroing the k most harmful single weights (chosen one at a time, so their joint
# effect is not what the scan measured) against the k largest and k random weights.

# %%
show(plots.plot_sparsity(tables["super_weight_sparsity"], f"{FIGURES}/super_weight_sparsity.png", zoo))
tables["super_weight_sparsity"].group_by("k", "method").agg(pl.col("accuracy").mean(),
                                                           pl.col("base_accuracy").mean()).sort("k", "method")
