# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Gated attention on a toy transformer: loss spikes and attention sinks
#
# After Qiu et al., *Gated Attention for Large Language Models* (arXiv 2505.06708): a sigmoid gate on
# the attention output, computed from the block's normed input, removes the attention sink (heads
# parking their attention on the first token) and makes training tolerate larger learning rates.
# The merging model (`weightlake.experiments.merger`) has the gate (`gated_attention=True`,
# `gate="elementwise"` or `"headwise"`); here the same attention module drives a small causal
# transformer (`weightlake.dynamics.gated`) on a task where most positions need no attention at all:
# the target is the current token unless it is the trigger token, when it is the token three
# positions back.  Each configuration trains from the same initial weights on the same batches, at a
# normal and a too-large Adam learning rate, without warm-up or clipping.

# %%
import os

LAKE = os.environ.get("WEIGHTLAKE_LAKE", "../lake")        # the demo lake, or yours (not read here)
SHORT = os.environ.get("WEIGHTLAKE_NOTEBOOK_SHORT") == "1"  # small sizes for the test suite
FIGURES = os.environ.get("WEIGHTLAKE_FIGURES", "figures")   # each figure is written here as PNG

# %%
import time

import polars as pl
import torch
from IPython.display import Image, display

from weightlake.dynamics import plots
from weightlake.dynamics.gated import train_toy

torch.set_num_threads(1)
pl.Config.set_tbl_cols(-1)  # print every column of the summary, not polars' first few
pl.Config.set_tbl_width_chars(250)
STEPS = 150 if SHORT else 1500
LRS = {"normal": 3e-3, "too large": 3e-2}
GATES = (None, "elementwise", "headwise")
SINK_FACTOR = 3.0  # a layer has a sink when its first-token mass stays >= this x the uniform level

# %%
runs, started = [], time.perf_counter()
for lr in LRS.values():
    for gate in GATES:
        runs.append(train_toy(gate, lr, STEPS, seed=0, eval_every=max(STEPS // 10, 1)))
print(f"{len(runs)} runs of {STEPS} steps in {time.perf_counter() - started:.0f} s")

# %% [markdown]
# Two figures of the same four panels, with the same y ranges: first the three configurations at the
# normal rate (3e-3), then at the too-large one (3e-2); dashed is the ungated model.  The top right
# panel shows the first-token attention mass of each layer (mean over heads).  With uniform causal
# attention over the 33 positions this mass is about 0.10 (the mean of 1/2 ... 1/33; the runs start
# there).  We call a layer a **sink** when its mass is at least `SINK_FACTOR` = 3 times that level
# (the dotted line, about 0.29) at each of the last three evaluations: it climbed, and it stays.
# The bottom right panel shows the mean gate score of the gated runs.

# %%
for part, name in ((runs[:3], "normal"), (runs[3:], "large")):
    path = plots.plot_toy_runs(part, f"{FIGURES}/gated_toy_{name}_lr.png", like=runs, sink_factor=SINK_FACTOR)
    display(Image(filename=str(path)))

# %% [markdown]
# Per run: the final loss (mean of the last 20 steps), loss spikes (steps whose loss exceeds twice
# the median of the 20 before), the largest gradient norm after the first tenth of the steps (the
# first steps, from the shared initial weights, have the largest norms of every run), and at the end
# of training the attention mass on the first token (queries after the first, mean over heads), the
# mean gate score and the attention entropy (nats) per layer, and `sink_layers`: the layers that
# meet the sink definition above.

# %%
summary = pl.DataFrame([{
    "run": r.label, "final_loss": float(r.loss[-20:].mean()), "spikes": r.spikes(),
    "max_grad_norm_late": float(r.grad_norm[STEPS // 10:].max()),
    **{f"sink_layer{i}": float(v) for i, v in enumerate(r.sink[-1])},
    **{f"gate_layer{i}": float(v) for i, v in enumerate(r.gate_score[-1])},
    **{f"entropy_layer{i}": float(v) for i, v in enumerate(r.entropy[-1])},
    "sink_layers": str(r.sink_layers(SINK_FACTOR)),
} for r in runs])
summary

# %% [markdown]
# The verdicts below are computed from the runs above, not written in advance: per learning rate,
# which configurations formed a sink (by the definition above), how much each gated run lowered
# the first-token mass of the ungated run's sink layers, and which spiked more than the ungated run.
# Everything here rests on **one seed** (one initialisation, one batch order per configuration):
# it shows what can happen, not how often; rerun with other seeds before drawing a conclusion.
# The short mode of the test suite trains too briefly for either effect; read the full run.

# %%
uniform = runs[0].uniform_sink
print(f"uniform first-token mass {uniform:.3f}; sink level {SINK_FACTOR:g} x uniform = {SINK_FACTOR * uniform:.3f}; "
      f"{STEPS} steps, seed 0")
for name, lr in LRS.items():
    group = [r for r in runs if r.lr == lr]
    base = next(r for r in group if r.gate is None)
    print(f"\nlr {lr:g} ({name}):")
    for r in group:
        layers = r.sink_layers(SINK_FACTOR)
        mass = ", ".join(f"layer {i} {v:.3f}" for i, v in enumerate(r.sink[-1]))
        verdict = f"sink in layer(s) {layers}" if layers else "no sink"
        than = "" if r is base else f" ({'more' if r.spikes() > base.spikes() else 'not more'} than ungated)"
        print(f"  {r.label:<22} {verdict:<22} first-token mass {mass}; spikes {r.spikes()}{than}; "
              f"final loss {float(r.loss[-20:].mean()):.2g}")
        for i in base.sink_layers(SINK_FACTOR) if r.gate else ():
            print(f"    ungated sink layer {i}: {base.sink[-1, i]:.3f} -> {r.sink[-1, i]:.3f} with the {r.gate} gate")
