# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Zoos for the other initialisations, in the `Merged zoo.csv` format
#
# `Merged zoo.csv` holds one CNN zoo trained with kaiming-uniform initialisation: per row the class
# subset (`label`), a digit one-hot, an activation one-hot, the 2,464 flat parameters (`weight i` /
# `bias i`), `Accuracy` and the `epoch` bin. The other five initialisations are wanted in the same
# format, so the code that reads `Merged zoo.csv` reads them unchanged. Two ways in:
#
# 1. **from existing checkpoint folders** (`{label}/{activation}/{init}/*.pth`, or without the init level):
#    `weightlake ingest checkpoints checkpoints/ --zoo Z` reads them safely (no pickled code runs);
# 2. **from the trainer**: `weightlake zoo train` trains the missing models on real images, writing the
#    same folder layout, which then goes through step 1.
#
# Then `weightlake export csv --zoo Z --where "init = 'xavier_normal'" -o "Merged_zoo_xavier_normal.csv"`
# writes one file per initialisation. This notebook does all three and checks the files read back exactly.

# %%
import os

LAKE = os.environ.get("WEIGHTLAKE_LAKE", "../lake")        # the demo lake, or yours (read only here)
SHORT = os.environ.get("WEIGHTLAKE_NOTEBOOK_SHORT") == "1"  # small sizes for the test suite
CHECKPOINTS = None   # your checkpoint folder (None: the trainer writes one below)
OUT = "zoos"         # where the CSV files go
INITS = ("xavier_uniform", "xavier_normal", "uniform", "normal", "kaiming_normal")  # the five missing ones

# %%
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

import weightlake as wl
from weightlake.arch import CNN_S, class_subsets
from weightlake.ingest.checkpoints import ingest_checkpoints
from weightlake.ingest.csv_zoo import csv_columns, export_csv, ingest_csv
from weightlake.zoo.train import train_zoo

work = Path(tempfile.mkdtemp())
out = work / "zoos" if SHORT else Path(OUT)
columns = csv_columns(CNN_S)
print(f"{len(columns)} columns: {columns[:12]} ... {columns[17:19]} ... {columns[-3:]}")

# %% [markdown]
# ## 1. The checkpoint folders, from the trainer when there are none
# The trainer follows the reference recipe (Fashion-MNIST here, which Debian ships; pass a folder of
# MNIST IDX files for MNIST), measures accuracy on held-out *test* images of the model's own classes,
# and saves a checkpoint at the epochs of the zoo's bins (epochs count from 0, so the bin-16 checkpoint
# needs 17 epochs). Short mode trains a handful of models for two epochs on a subsample; the full run
# trains every subset of digits 0-3 (11 subsets x 2 activations x 5 initialisations = 110 models) for
# up to 17 epochs with the reference recipe (lr 0.05). A model joins the zoo only with a checkpoint above
# 60 % accuracy; the table after training says, per initialisation, how many did (`uniform` and `normal`
# weights mostly stay at chance level at this learning rate) and how many stopped early.

# %%
if CHECKPOINTS is None:
    CHECKPOINTS = work / "checkpoints"
    inits = INITS[:2] if SHORT else INITS
    subsets = [(0, 1), (2, 3)] if SHORT else class_subsets(range(4), range(2, 5))
    activations = ("relu",) if SHORT else ("relu", "gelu")
    recipe = (dict(epochs_max=2, subsample=100, checkpoint_epochs=(0, 1), min_accuracy=-1.0) if SHORT
              else dict(epochs_max=17, subsample=600, checkpoint_epochs=(11, 16)))
    assert max(recipe["checkpoint_epochs"]) < recipe["epochs_max"], "epochs count from 0: train one more"
    trained = train_zoo("fashion-mnist", CHECKPOINTS, subsets, activations, inits, layout="b", workers=1, **recipe)
    print(f"trained {trained.trained} models ({trained.seconds:.0f} s) -> {CHECKPOINTS}")
    runs = pl.DataFrame([{"init": r.init, "member": bool(r.checkpoints), "early_stopped": r.early_stopped,
                          "accuracy": r.final_accuracy} for r in trained.results])
    print(runs.group_by("init").agg(trained=pl.len(), zoo_members=pl.col("member").sum(),
                                    early_stopped=pl.col("early_stopped").sum(),
                                    median_final_accuracy=pl.col("accuracy").median().round(1)).sort("init"))
sorted(str(p.relative_to(CHECKPOINTS)) for p in Path(CHECKPOINTS).rglob("*.pth"))[:6]

# %% [markdown]
# ## 2. Ingest the checkpoint folders into a lake
# One atomic commit; files that cannot be read are listed in a rejects file, never half-ingested.
# Epoch bins come from the trainer's record (or `bins=` for old folders). As in `Merged zoo.csv`, a model
# that stopped early is filed again under every later bin; those rows are flagged `fallback` and counted
# apart below (`trained_to_bin` are models whose own checkpoint fills the bin; the mean accuracy is theirs).

# %%
root = work / "lake"
report = ingest_checkpoints(root, CHECKPOINTS, zoo="other-inits", rejects_path=work / "rejects.csv", workers=1)
print("\n".join(report.lines()))
lake = wl.open_lake(root)
lake.sql("SELECT init, activation, epoch, count(*) FILTER (WHERE NOT fallback) AS trained_to_bin, "
         "count(*) FILTER (WHERE fallback) AS fallback, "
         "round(avg(accuracy) FILTER (WHERE NOT fallback), 1) AS mean_accuracy FROM models GROUP BY ALL ORDER BY ALL")

# %% [markdown]
# ## 3. One `Merged zoo.csv`-format file per initialisation
# Every row of the zoo goes out, fallback rows included (the format has no column for them; the
# reference file repeats early-stopped models the same way), so each line says how many are copies.

# %%
files = {}
out.mkdir(parents=True, exist_ok=True)
for init in lake.models("other-inits").select("init").unique().collect()["init"].sort().to_list():
    files[init] = out / f"Merged_zoo_{init}.csv"
    n = export_csv(lake, files[init], zoo="other-inits", where="init = $init", params={"init": init})
    copies = lake.sql("SELECT count(*) FILTER (WHERE fallback) AS n FROM models WHERE zoo = 'other-inits' "
                      "AND init = $init", params={"init": init})["n"][0]
    print(f"{n:5d} rows ({copies} fallback) -> {files[init]} ({files[init].stat().st_size / 1e6:.1f} MB)")

# %% [markdown]
# ## 4. Check: the same columns as `Merged zoo.csv`, and the weights read back bit for bit
# The header is the reference's; a plain CSV reader sees the label as a list repr and the one-hots as
# numbers; ingesting a written file again gives back exactly the vectors the lake holds.

# %%
first = next(iter(files.values()))
frame = pl.read_csv(first, infer_schema_length=0)
assert frame.columns == columns, "header differs from Merged zoo.csv"
print(frame.select("label", "0", "1", "2", "3", "relu", "gelu", "weight 0", "bias 2463", "Accuracy", "epoch").head())

check = work / "check-lake"
bins = sorted(lake.models("other-inits").select("epoch").unique().collect()["epoch"].to_list())
for init, path in files.items():  # the zoo's epoch bins: a short run trains other ones than the CSV zoo's 11-36
    ingest_csv(check, path, zoo="check", init=init, epoch_bins=bins)
a_ids, a_rows = wl.open_lake(root).zoo_weights("other-inits")
b_ids, b_rows = wl.open_lake(check).zoo_weights("check")
same = len(a_ids) == len(b_ids) and {r.tobytes() for r in np.asarray(a_rows)} == {r.tobytes() for r in np.asarray(b_rows)}
print(f"{len(a_ids)} models in the lake, {len(b_ids)} read back from the CSV files; identical bits: {same}")
assert same

# %% [markdown]
# ## 5. The same for a lake you already have
# A lake built from your own checkpoint folders exports the same way: one file per initialisation it holds.

# %%
if Path(LAKE, "_current").exists():
    yours = wl.open_lake(LAKE)
    print(yours.sql("SELECT zoo, init, count(*) AS models FROM models GROUP BY ALL ORDER BY ALL"))
