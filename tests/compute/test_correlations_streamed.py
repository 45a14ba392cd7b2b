"""analyze correlations streams the zoo under the memory budget and gives the in-memory table."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import weightlake as wl
from weightlake.compute.analyses import analyze_correlations, param_slices
from weightlake.storage.budget import BudgetWarning

AGAINST = ["accuracy", "epoch", "activation"]


def _in_memory_reference(root: Path, by: list[str]) -> pl.DataFrame:
    """The table as the whole zoo in memory gives it: the pure functions over every distinct model at once."""
    from weightlake.analysis import correlations as corr
    from weightlake.analysis.distinct import distinct_models

    lake = wl.open_lake(root)
    ids, rows = lake.zoo_weights("mnist-cnn-s")
    meta = lake.models("mnist-cnn-s").collect()
    meta = meta[[meta["model_id"].to_list().index(int(i)) for i in ids]]
    keep = np.asarray(distinct_models(meta).keep, dtype=bool)
    rows, meta = rows[keep], meta.filter(pl.Series(keep))
    frame = meta.select(*dict.fromkeys([*AGAINST, *by]))
    opts = {"columns": AGAINST, "methods": ["pearson", "spearman"], "group_by": by or None}
    arch = lake.arch("mnist-cnn-s")
    return pl.concat([corr.param_correlations(rows, frame, arch, **opts).with_columns(kind=pl.lit("param")),
                      corr.aggregate_correlations(rows, frame, arch, **opts).with_columns(kind=pl.lit("aggregate"))],
                     how="diagonal_relaxed")


@pytest.mark.parametrize("by", [[], ["activation"]])
def test_streamed_correlations_equal_the_in_memory_table(lake_copy: Path, by: list[str], assert_same_table) -> None:
    want = _in_memory_reference(lake_copy, by)
    lake = wl.open_lake(lake_copy, memory="1MB")
    assert len(param_slices(lake.arch().n_params, 432, lake.memory)) > 5 and lake.block_rows() < 432  # many column passes, each over several blocks
    with warnings.catch_warnings():
        warnings.simplefilter("error", BudgetWarning)  # the zoo is never decoded whole
        steps: list[tuple[int, int]] = []
        report = analyze_correlations(lake_copy, zoo="mnist-cnn-s", against=AGAINST, by=["layer", *by],
                                      memory="1MB", progress=lambda d, t: steps.append((d, t)))
    assert steps[-1][0] == steps[-1][1] > 5 and len(steps) == steps[-1][1]  # column passes, then aggregates
    got = wl.open_lake(lake_copy).table("correlations").collect().drop("snapshot", "zoo", "runs")
    assert report.rows == got.height == want.height
    assert_same_table(got, want.select(got.columns))
    # the q-values are per whole family, not per slice: the smallest p of the family has q = p * m
    fam = got.filter((pl.col("kind") == "param") & (pl.col("method") == "pearson") & pl.col("p").is_not_nan())
    if by:
        fam = fam.filter(pl.col("activation") == fam["activation"][0])
    smallest = fam.sort("p").row(0, named=True)
    assert smallest["p_bonferroni"] == pytest.approx(min(1.0, smallest["p"] * fam.height), rel=1e-12)


def test_plot_under_a_small_budget_says_it_sampled(lake_copy: Path, tmp_path: Path) -> None:
    report = analyze_correlations(lake_copy, zoo="mnist-cnn-s", against=["accuracy"], features="params",
                                  methods=["pearson"], plot_dir=tmp_path / "plots", memory="1MB")
    assert any("seeded sample of" in n and "of the 391 models" in n for n in report.notes), report.notes
    assert any(p.endswith("param-x-param.png") for p in report.plots)
    assert all(Path(p).stat().st_size > 0 for p in report.plots)


def test_progress_counts_each_figure(lake_copy: Path, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    report = analyze_correlations(lake_copy, zoo="mnist-cnn-s", against=["accuracy"], by=["activation"],
                                  methods=["pearson"], plot_dir=tmp_path / "plots", progress=lambda d, t: calls.append((d, t)))
    done, total = zip(*calls, strict=True)
    assert list(done) == sorted(done) and done[-1] == total[-1]  # forwards, ending complete
    figures = [c for c in calls if c[1] == total[-1]]
    assert len(figures) >= len(report.plots)  # a step per figure, not one for all of them
