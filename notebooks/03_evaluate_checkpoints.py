# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Evaluating every merging-model checkpoint
#
# An experiments folder holds checkpoints of the merging model trained with different losses *and*
# different hyperparameters (hidden size, attention heads, feed-forward and neck widths), so their
# `model_state_dict`s have different keys and shapes. Here every `.pth` under the folder is found,
# its configuration inferred from the tensor shapes (heads from a sidecar JSON, the run folder's
# name such as `run_h4`, or `--heads`; never guessed), the model rebuilt and run over a scenario's
# test pairs, and its predicted weights compared with the ground truth on every metric (whole vector
# and per layer), checked for collapse, and a few predicted CNNs rebuilt and scored on held-out images.
# Three trivial predictions are scored the same way on the same pairs and images, as references:
# all zeros, the mean train target, and the average `(A + B) / 2` of the two input models.
# The results are committed as the lake tables `evaluations` (the checkpoints) and
# `evaluation_baselines` (the references, `source_kind = 'baseline'`) and rendered as a Markdown report.
#
# From the shell: `weightlake experiments scan Experiments/`, then
# `weightlake experiments evaluate Experiments/ --scenario S --split test`, then
# `weightlake experiments report --out report.md`. Tracking CSVs with fine-tuned weights:
# `weightlake experiments ingest-tracking Experiments/ --scenario S`.

# %%
import os

LAKE = os.environ.get("WEIGHTLAKE_LAKE", "../lake")        # the demo lake, or yours
SHORT = os.environ.get("WEIGHTLAKE_NOTEBOOK_SHORT") == "1"  # small sizes for the test suite
EXPERIMENTS = None     # your experiments folder of .pth files (None: a few trained here, see section 1)
SCENARIO = None        # a scenario of the lake with test pairs (None: the first one found)
SPLIT = "test"
SCRATCH = SHORT        # True: commit into a copy of LAKE (the test lake is read-only)

# %%
import shutil
import tempfile
from pathlib import Path

import polars as pl
import torch
from IPython.display import Image, Markdown, display

import weightlake as wl
from weightlake.demo import DemoConfig, pair_lake
from weightlake.experiments.evaluate import evaluate_checkpoints
from weightlake.experiments.merger import MergerConfig, build_merger
from weightlake.experiments.report import (
    load_evaluations,
    ranked_last,
    unbeaten_by_checkpoints,
    whole_metrics,
    with_baselines,
    write_report,
)
from weightlake.experiments.scan import scan_experiments
from weightlake.experiments.training import save_checkpoint, train_steps

work = Path(tempfile.mkdtemp())
root = work / "lake" if SCRATCH else Path(LAKE)
if SCRATCH:
    shutil.copytree(LAKE, root)
lake = wl.open_lake(root)
with_pairs = (lake.sql("SELECT scenario, count(*) AS n FROM pairs WHERE split = $s GROUP BY 1 ORDER BY 1",
                       {"s": SPLIT}) if "pairs" in lake.tables else pl.DataFrame({"scenario": []}))
if SCENARIO is None and with_pairs.height:
    SCENARIO = with_pairs["scenario"][0]
if SCENARIO is None:  # a zoo pairs only where the union of two class sets is in it: train one that does
    root = work / "paired-lake"
    small = DemoConfig(digits=(0, 1, 2), sizes=(2, 3), activations=("relu",), inits=("kaiming_uniform",),
                       epochs_max=2, bins=(1,), subsample=40, checkpoint_epochs=(1,), min_accuracy=-1.0)
    SCENARIO = pair_lake(root, work / "paired-zoo", config=small, echo=lambda line: None)
    lake = wl.open_lake(root)
print(f"scenario {SCENARIO!r}: {len(lake.pairs(SCENARIO, SPLIT))} {SPLIT} pairs, "
      f"{len(lake.pairs(SCENARIO, 'train'))} train pairs in {root}")

# %% [markdown]
# ## 1. The checkpoints
# Without a folder of your own, a few merging models with *different hyperparameters* are trained
# here for a few steps on the scenario's train pairs and saved as the user's training code saves them
# (`{"epoch", "model_state_dict"}`), in run folders whose names give the head count, next to the
# untrained `AE epoch initial original -1.pth`. They are poor models; the point is the machinery.
# They go to `Experiments/` beside the notebook (a temporary folder in short mode): the lake keys an
# evaluation by the checkpoint's path, so running the notebook again replaces its rows instead of
# adding a second set under a new temporary path.

# %%
if EXPERIMENTS is None:
    EXPERIMENTS = work / "Experiments" if SHORT else Path("Experiments").resolve()
    train = lake.pairs(SCENARIO, "train")
    configs = [MergerConfig(16, 2, 16, 1, 8), MergerConfig(32, 4, 32, 1, 16), MergerConfig(16, 1, 32, 2, 8)]
    for i, config in enumerate(configs if not SHORT else configs[:2]):
        torch.manual_seed(i)
        model = build_merger(config)
        run = EXPERIMENTS / f"mse_h{config.n_heads}_d{config.d_model}"
        if i == 0:
            save_checkpoint(model, run / "AE epoch initial original -1.pth", epoch=-1)
        for epoch in (1, 2):
            train_steps(model, train.loader(batch_size=36, seed=0, epoch=epoch), lr=1e-3, source="train")
            save_checkpoint(model, run / f"AE epoch mse {epoch}.pth", epoch=epoch)
sorted(str(p.relative_to(EXPERIMENTS)) for p in Path(EXPERIMENTS).rglob("*.pth"))

# %% [markdown]
# ## 2. What each checkpoint is: configuration inferred from its shapes

# %%
found = scan_experiments(EXPERIMENTS)
pl.DataFrame([{"file": str(Path(f.path).relative_to(EXPERIMENTS)), "kind": f.kind,
               "d_model": f.config.d_model if f.config else None, "heads": f.config.n_heads if f.config else None,
               "heads_from": f.heads_source, "d_ff": f.config.d_ff if f.config else None,
               "layers": f.config.n_layers if f.config else None, "neck": f.config.neck if f.config else None,
               "params": f.n_params, "error": f.error} for f in found])

# %% [markdown]
# ## 3. Evaluate them all on the scenario's test pairs
# One model in memory at a time; the same pairs for every checkpoint; every fast metric (add
# `include_slow=True` for Sinkhorn and Gromov-Wasserstein). Predicted CNNs are scored on the images
# the zoo recorded at ingest. The baselines follow on the same pairs: a checkpoint's numbers mean
# something only next to theirs.

# %%
report = evaluate_checkpoints(root, EXPERIMENTS, SCENARIO, SPLIT, accuracy_models=2 if SHORT else 8,
                              accuracy_images_per_class=100 if SHORT else 500)
print("\n".join(report.lines()))

# %% [markdown]
# Sorted by MSE to the target weights. `epoch` is the file's own `epoch` entry (the number in its name
# when it has none: `AE epoch initial original -1.pth` is epoch -1, the untrained start). `collapsed`
# means every test pair got the same predicted vector; `top_row_share` is the share of pairs that got
# the most common one, and `partial` marks a share past the collapse threshold. A model that predicts
# nearly one vector for every pair can still rank first on MSE and W1 (one vector near the mean target is
# a good guess for all of them: the `train_mean` baseline is exactly that), so read those columns with
# `top_row_share` and the predicted CNNs' accuracy `pd_acc` (percent on held-out images, over
# `accuracy_models` pairs), beside `gt_acc`, the accuracy of the same pairs' true target CNNs on the same
# images with the same scorer (`accuracy_note` says how it scores). The baseline rows (`kind = baseline`)
# are scored the same way; the all-zeros CNN gives every class the same logit and the argmax of a tie
# is class 0, so its `pd_acc` is what always answering class 0 scores on these images.

# %%
rows = wl.open_lake(root).sql(
    "SELECT source_kind AS kind, checkpoint, coalesce(saved_epoch, epoch) AS epoch, d_model, n_heads, "
    "round(pd_mse, 6) AS mse, round(pd_nmse, 3) AS nmse, round(pd_w1, 6) AS w1, round(pd_cosine, 4) AS cosine, "
    "collapsed, pd_partial_collapse AS partial, round(pd_top_row_share, 2) AS top_row_share, "
    "round(pd_accuracy, 1) AS pd_acc, round(gt_accuracy, 1) AS gt_acc, accuracy_models, accuracy_note "
    "FROM (SELECT * FROM evaluations UNION ALL BY NAME SELECT * FROM evaluation_baselines) "
    "WHERE scenario = $s AND split = $split AND snapshot = $snap AND n_pairs = $n "
    "ORDER BY kind DESC, pd_mse", {"s": SCENARIO, "split": SPLIT, "snap": report.pairs_snapshot, "n": report.n_pairs})
with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=100, tbl_width_chars=250):
    display(rows)

# %% [markdown]
# ## 4. The report: one Markdown table per set of pairs, the best checkpoint values marked, the
# baselines below them as reference rows (never marked), plus the plots

# %%
result = write_report(root, work / "report.md", scenario=SCENARIO)
display(Markdown(result.path.read_text()))
for plot in result.plots:
    display(Image(filename=plot))

# %% [markdown]
# The plots, in order: the four headline metrics per checkpoint (predicted against target weights:
# lower is better, except cosine), the baselines as grey hatched bars and the best of them as a dashed
# line; every metric's rank among checkpoints and baselines together (0 = best, so a row that stays
# yellow across the columns wins on all of them, and a column that disagrees with its neighbours is a
# metric that orders the rows differently; grey cells are NaN, e.g. the cosine of the zero vector); and
# the MSE per layer on a log scale, baselines dashed, which shows which layers a checkpoint gets wrong.
#
# What the numbers say depends on the checkpoints and the lake, so it is counted here rather than
# written down: how the checkpoints compare with the baselines, and where the untrained start ranks.
# The checkpoints trained here are a few Adam steps old; they show the machinery, not a result.

# %%
now = wl.open_lake(root)
scored = with_baselines(now, load_evaluations(now, SCENARIO, SPLIT), SCENARIO, SPLIT).filter(
    (pl.col("snapshot") == report.pairs_snapshot) & (pl.col("n_pairs") == report.n_pairs)
    & pl.col("error").is_null())
metrics = whole_metrics(scored, "pd")
unbeaten, compared = unbeaten_by_checkpoints(scored, metrics)
print(f"no checkpoint beats the best baseline on {len(unbeaten)} of the {compared} metrics with a baseline value"
      + (f": {', '.join(m[3:] for m in unbeaten)}" if unbeaten else ""))
checkpoints = scored.filter(pl.col("source_kind") == "checkpoint")
for start in checkpoints.filter(pl.col("epoch") == -1)["checkpoint"].to_list():
    last, n = ranked_last(scored, start, metrics)
    others = [m[3:] for m in metrics if m not in last]
    print(f"the untrained start {start!r} ranks last among the {checkpoints.height} checkpoints on {len(last)} of "
          f"{n} metrics" + (f"; not on {', '.join(others)}" if others else ""))
