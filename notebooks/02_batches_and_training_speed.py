# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Epoch batches as tensors, and how fast training reads them
#
# The training batches of an epoch follow the pair queries of a scenario (two input models on class
# sets A and B, the target trained on A union B). Here they are written once as plain tensor files,
# `.pt` (read with `torch.load(weights_only=True)`, no pickled code) and `.h5` (h5py), each holding
# every batch of one shuffled epoch with the model ids, accuracies and pair rows beside them, so a
# `TensorDataset` is one line. Then a miniature training run of the merging model times three ways
# of feeding it: the live pair loader, a `TensorDataset` over the `.pt` file, and the batches
# materialised in the lake (Zarr), splitting each step into waiting-for-data and computing.
#
# The same from the shell:
# `weightlake pairs materialize SCENARIO --split train --format pt --out batches/` (or `--format h5`,
# or no `--format` for the lake's own Zarr batches).

# %%
import os

LAKE = os.environ.get("WEIGHTLAKE_LAKE", "../lake")        # the demo lake, or yours
SHORT = os.environ.get("WEIGHTLAKE_NOTEBOOK_SHORT") == "1"  # small sizes for the test suite
SCENARIO = None        # a scenario of the lake with train pairs (None: the first one found)
OUT = "batches"        # folder for the .pt / .h5 files
SCRATCH = SHORT        # True: materialise into a copy of LAKE (the test lake is read-only)

# %%
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import polars as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

import weightlake as wl
from weightlake.demo import DemoConfig, pair_lake
from weightlake.experiments.merger import MergerConfig, build_merger, count_parameters
from weightlake.experiments.training import compare_sources
from weightlake.serve.batches import materialize
from weightlake.serve.files import export_batches, read_batches

work = Path(tempfile.mkdtemp())
root = work / "lake" if SCRATCH else Path(LAKE)
if SCRATCH:
    shutil.copytree(LAKE, root)
lake = wl.open_lake(root)
with_pairs = (lake.sql("SELECT scenario, count(*) AS n FROM pairs WHERE split = 'train' GROUP BY 1 ORDER BY 1")
              if "pairs" in lake.tables else pl.DataFrame({"scenario": [], "n": []}))
print(with_pairs)

# %% [markdown]
# A zoo pairs only where the union of two class sets is itself in the zoo. If this lake has no pairs
# (the test suite's lake has two disjoint class sets whose union was never trained), a small zoo that
# does pair is trained on Fashion-MNIST and paired here, with the library's trainer.

# %%
if SCENARIO is None and with_pairs.height:
    SCENARIO = with_pairs["scenario"][0]
if SCENARIO is None:
    root = work / "paired-lake"
    small = DemoConfig(digits=(0, 1, 2), sizes=(2, 3), activations=("relu",), inits=("kaiming_uniform",),
                       epochs_max=2, bins=(1,), subsample=40, checkpoint_epochs=(1,), min_accuracy=-1.0)
    SCENARIO = pair_lake(root, work / "paired-zoo", config=small, echo=lambda line: None)
    lake = wl.open_lake(root)
pairs = lake.pairs(SCENARIO, "train")
print(f"scenario {SCENARIO!r}: {len(pairs)} train pairs in {root}")

# %% [markdown]
# ## 1. One epoch of batches as `.pt` and `.h5`
# Batches of 36 pairs (the user's batch size), epoch 0 shuffled by `(seed, epoch)`. The last partial
# batch is padded; `valid` marks the real rows.

# %%
BATCH, EPOCHS = 36, 1 if SHORT else 3
out = Path(work if SHORT else OUT)
reports = {fmt: export_batches(lake, SCENARIO, "train", out / fmt, fmt=fmt, batch_size=BATCH, epochs=EPOCHS,
                               overwrite=True)  # a rerun of the notebook replaces its own files
           for fmt in ("pt", "h5")}
for fmt, rep in reports.items():
    print(f"{fmt}: {rep.n_batches} batches, {rep.bytes / 1e6:.2f} MB -> {rep.files}")

# %%
d = torch.load(reports["pt"].files[0], weights_only=True)  # plain tensors and strings: no code is unpickled
print({k: (tuple(v.shape), v.dtype) for k, v in d.items() if k != "meta"})
print(d["meta"])
dataset = TensorDataset(d["x"][d["valid"]], d["ids"][d["valid"]], d["acc"][d["valid"]])
print(f"TensorDataset of {len(dataset)} pairs; one item: x {tuple(dataset[0][0].shape)} (a, b, target)")

# %% [markdown]
# The files hold exactly what the live loader serves for the same seed and epoch, and the `.h5`
# holds the same arrays as the `.pt`:

# %%
first = next(iter(pairs.loader(batch_size=BATCH, shuffle=True, seed=0, epoch=0)))
n = int(d["valid"][0].sum())
same_as_loader = (torch.equal(d["x"][0, :n, 0], first["x1"]) and torch.equal(d["x"][0, :n, 2], first["y"])
                  and torch.equal(d["ids"][0, :n, 2], first["target_id"]))
h5_arrays, h5_meta = read_batches(reports["h5"].files[0])
same_as_pt = all((h5_arrays[k] == d[k].numpy()).all() for k in ("x", "ids", "rows", "valid"))
print(f"first .pt batch == loader batch: {same_as_loader}; .h5 == .pt: {same_as_pt}")
assert same_as_loader and same_as_pt

# %% [markdown]
# ## 2. The same epochs materialised in the lake (Zarr, committed with the snapshot)

# %%
mat = materialize(root, SCENARIO, "train", batch_size=BATCH, epochs=EPOCHS)
print(f"{mat.n_batches} batches, {mat.bytes / 1e6:.2f} MB at {mat.path} (snapshot {mat.snapshot})")
lake = wl.open_lake(root)

# %% [markdown]
# ## 3. A miniature training run: who feeds the model faster?
# Every source trains a copy of the same merging model from the same initial weights for the same
# number of steps of the same batches (epoch 0, batch 36; MSE to the target weights). Sources
# alternate round by round and the best round of each is kept, since the machine is shared.
# `data_s` is time spent waiting for batches, `step_s` forward + backward + Adam.

# %%
config = MergerConfig(16, 2, 16, 1, 8) if SHORT else MergerConfig(d_model=64, n_heads=4, d_ff=128, n_layers=2, neck=64)
torch.manual_seed(0)
model = build_merger(config)
print(f"merging model: {count_parameters(config):,} parameters (d_model {config.d_model}, {config.n_heads} heads, "
      f"d_ff {config.d_ff}, {config.n_layers} layers, neck {config.neck})")
x_valid = d["x"][d["valid"]]
sources = {
    "pairs.loader (live queries)": lambda: pairs.loader(batch_size=BATCH, shuffle=True, seed=0, epoch=0),
    "TensorDataset (.pt)": lambda: DataLoader(TensorDataset(x_valid), batch_size=BATCH, shuffle=False),
    "lake.batches (Zarr)": lambda: lake.batches(SCENARIO, "train", epoch=0),
}
steps = max(1, min(len(pairs) // BATCH, 3 if SHORT else 50))
started = time.perf_counter()
speed = compare_sources(model, sources, steps=steps, rounds=2 if SHORT else 3)
print(f"{time.perf_counter() - started:.1f} s in all; load {os.getloadavg()[0]:.1f}")
with pl.Config(tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=40):
    print(speed)

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
names = speed["source"].to_list()
data_ms = (speed["data_s"] / speed["steps"] * 1e3).to_list()
step_ms = (speed["step_s"] / speed["steps"] * 1e3).to_list()
axes[0].barh(names, data_ms, color="tab:orange")
axes[0].set(xlabel="waiting for the batch (ms per batch)", title="data loading")
axes[1].barh(names, data_ms, color="tab:orange", label="waiting for data")
axes[1].barh(names, step_ms, left=data_ms, color="tab:blue", label="forward + backward + Adam")
axes[1].set(xlabel="wall time (ms per batch)", title="one training step")
axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
axes[1].set_yticklabels([])
fig.suptitle(f"scenario {SCENARIO}: {len(pairs)} train pairs, {steps} steps of batch {BATCH} (best of "
             f"{speed['rounds'][0]} rounds); merging model {count_parameters(config):,} parameters")
fig.tight_layout()
fig.savefig(out / "training_speed.png", dpi=110)
plt.show()

# %% [markdown]
# All three sources serve the same shuffled epoch 0 (the `TensorDataset` holds the file's valid rows
# in batch order), so from the same initial weights the losses agree step for step: a check that
# the sources feed the same data, not only the same shapes. The data share is what a faster
# source can save; with a model this small on CPU, compute dominates once batches are in memory.
# The left panel is the comparison between sources; in the right one, differences in the blue part
# are run-to-run noise of the same computation (every source trains the same steps), so `pairs_per_s`
# in the table ranks the sources only where their data wait differs by more than that noise.
