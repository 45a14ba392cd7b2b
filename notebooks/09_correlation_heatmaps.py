# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Correlation heatmaps: weights against metadata, across layers and zoos
#
# Which weights, and which per-layer summaries of them, move with a model's accuracy, epoch,
# activation, initialisation or class set? And does a pattern seen in one zoo hold in another zoo,
# and in every layer? This notebook commits the `correlations` table of each zoo
# (`weightlake analyze correlations`) and draws from it:
#
# 1. every parameter x metadata column (layer boundaries drawn), Pearson and Spearman;
# 2. layer x metadata: the share of each layer's parameters significantly correlated;
# 3. per-layer aggregates (norms, means, spectral figures) x metadata, r printed in each cell;
# 4. groups side by side (here: the initialisations, the user's "zoos"), then zoos side by side.
#
# How to read them: colours are scaled from the data, `+-max|r|` printed on the colour bar (a
# weak r stays visible); grey cells are tested but not significant (Benjamini-Hochberg q >= 0.05
# within one method and group); hatched cells had no test (a constant column). Parameter blocks
# are *averaged* when the axis is wider than the figure, and the title says so. `n` counts
# distinct models (fallback copies of early-stopped models are dropped; the report says how many).

# %%
import os

LAKE = os.environ.get("WEIGHTLAKE_LAKE", "../lake")        # the demo lake, or yours
SHORT = os.environ.get("WEIGHTLAKE_NOTEBOOK_SHORT") == "1"  # small sizes for the test suite
FIGURES = os.environ.get("WEIGHTLAKE_FIGURES", "figures/09")  # where the PNG files go
SCRATCH = SHORT  # True: commit into a copy of LAKE (the test lake is read-only); False: into LAKE itself

# %%
import shutil
import tempfile
from pathlib import Path

import polars as pl
from IPython.display import Image, display

import weightlake as wl
from weightlake.compute.analyses import analyze_correlations
from weightlake.compute.figures import correlation_figures

work = Path(tempfile.mkdtemp()) / "lake" if SCRATCH else Path(LAKE)
if SCRATCH:
    shutil.copytree(LAKE, work)
out = Path(FIGURES)
lake = wl.open_lake(work)
zoos = lake.zoos
print(f"lake {work} (snapshot {lake.snapshot}): zoos {zoos}")
lake.sql("SELECT zoo, init, activation, count(*) FILTER (WHERE NOT fallback) AS models, "
         "count(*) FILTER (WHERE fallback) AS fallback_rows, "
         "round(avg(accuracy) FILTER (WHERE NOT fallback), 2) AS mean_accuracy FROM models GROUP BY ALL ORDER BY ALL")

# %% [markdown]
# The table counts models apart from their fallback rows (early-stopped models filed again under later
# epoch bins), which the correlations drop; its mean accuracy is over the models.

# %% [markdown]
# ## 1. One zoo, every parameter and every per-layer aggregate
# `features="both"` correlates every flat parameter and the per-layer aggregates; text columns
# become one-hots (`activation=relu`), class sets become per-class presence (`classes has 3`) plus
# a count. The report says how many rows were dropped as copies, and whether the distinct models
# include several checkpoints of one training run (the same init, activation and classes at two
# epochs): those are distinct vectors but not independent samples, so a pooled p-value counts
# such a run more than once. Grouping by epoch (`by=["epoch"]`, as section 2 groups by init)
# counts each run once per group.

# %%
AGAINST = ["accuracy", "epoch", "activation", "init", "classes", "n_classes"]
METHODS = ["pearson"] if SHORT else ["pearson", "spearman"]
zoo = zoos[0]
report = analyze_correlations(work, zoo=zoo, against=AGAINST, features="both", methods=METHODS,
                              plot_dir=out / "whole")
print(report)
figures = {Path(p).name: Path(p) for p in report.plots}
sorted(figures)

# %%
display(Image(filename=figures[f"{zoo}-pearson-params-vs-metadata.png"]))

# %% [markdown]
# The layer x metadata figure counts, per layer, how many of its parameters pass the q threshold
# (each cell prints `significant / tested`): where in the network a metadata column leaves a trace.

# %%
display(Image(filename=figures[f"{zoo}-pearson-layers-vs-metadata.png"]))

# %%
display(Image(filename=figures[f"{zoo}-pearson-aggregates-vs-metadata.png"]))

# %% [markdown]
# The strongest significant correlates of accuracy per layer, straight from the committed table
# with SQL (the named query `top_accuracy_correlates` gives the first six columns; `weightlake
# query run` runs it). `r_with_init` is the largest |r| of the same feature with an init one-hot:
# pooled over initialisations, a feature that mostly tells the inits apart correlates with
# accuracy whenever the inits differ in accuracy. Read such rows against section 2, where the
# test runs within each init.

# %%
top = wl.open_lake(work).sql("""
    SELECT a.layer, a.kind, a.feature, round(a.r, 3) AS r, a.q, a.n,
           (SELECT round(max(abs(g.r)), 3) FROM correlations g
            WHERE g.zoo = a.zoo AND g.method = a.method AND g.kind = a.kind AND g.feature = a.feature
              AND g.layer IS NOT DISTINCT FROM a.layer AND g.param IS NOT DISTINCT FROM a.param
              AND g.against LIKE 'init=%') AS r_with_init
    FROM correlations a
    WHERE a.zoo = $zoo AND a.against = 'accuracy' AND a.method = 'pearson' AND a.q < 0.05
      AND a.layer IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY a.layer ORDER BY abs(a.r) DESC) <= 3
    ORDER BY a.layer, abs(a.r) DESC""", {"zoo": zoo})
with pl.Config(tbl_rows=-1, tbl_cols=-1):
    display(top)
if top.height:
    by_init = top.filter(pl.col("r_with_init") > 0.9).height
    print(f"{by_init} of these {top.height} correlates of accuracy tell the inits apart (|r| > 0.9 with an init)")

# %% [markdown]
# ## 2. Does it generalise? Groups side by side
# The user's zoos are one CNN trained under different initialisations. Correlating *within* each
# initialisation (`by=["init"]`) and drawing the groups on one shared colour scale shows whether a
# pattern holds in each of them or only in the pooled population (where init itself can drive it).
# Each group is its own multiple-testing family, with its own n.

# %%
by = "init" if lake.models(zoo).select(pl.col("init").n_unique()).collect().item() > 1 else "activation"
grouped = analyze_correlations(work, zoo=zoo, against=[c for c in AGAINST if c != by], by=[by],
                               features="aggregates" if SHORT else "both", methods=["pearson"],
                               plot_dir=out / f"by-{by}")
print(grouped)
group_figures = {Path(p).name: Path(p) for p in grouped.plots}
display(Image(filename=group_figures[f"{zoo}-pearson-groups.png"]))

# %% [markdown]
# ## 3. Across zoos
# With two or more zoos of one architecture in the lake, `correlation_figures` draws the zoos side
# by side (aggregates, and layer shares) from their committed tables, on one scale. The command is
# `weightlake analyze correlation-figures --zoo A --zoo B --plot figures/`. Zoos are compared on the
# rows and columns they share.

# %%
for other in zoos[1:]:
    print(analyze_correlations(work, zoo=other, against=AGAINST, features="both", methods=METHODS))
if len(zoos) > 1:
    whole = analyze_correlations(work, zoo=zoo, against=AGAINST, features="both", methods=METHODS)
    paths = correlation_figures(work, out / "cross", zoos=zoos, methods=["pearson"])
    for path in paths:
        if path.name.startswith("cross-zoo"):
            display(Image(filename=path))
else:
    print(f"this lake holds one zoo ({zoo}); section 2 compares its groups instead")

# %% [markdown]
# ## Notes
# - With few models per group (the test lake has 12 per initialisation) almost nothing passes the
#   q threshold: the figures are grey by design, not by accident. `n` is in every title.
# - `pooling="max_abs"` (`--pooling max_abs`) keeps the strongest entry of each parameter block
#   instead of the mean; its title says so. It makes single strong weights visible and noise look
#   like structure, so it is not the default.
