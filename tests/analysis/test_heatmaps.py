"""Correlation figures: their content (title, colour range, q mask, pooling, labels), not their pixels."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from weightlake.analysis import correlations as C
from weightlake.analysis import heatmaps as H
from weightlake.arch import ACTIVATIONS, CNN_S
from weightlake.cli import main
from weightlake.errors import ArchitectureError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def zoo(n: int = 120, seed: int = 0) -> tuple[np.ndarray, pl.DataFrame]:
    """Random weights where parameter 0 drives accuracy and fc2's first weight follows the class count."""
    rng = np.random.default_rng(seed)
    rows = (rng.standard_normal((n, CNN_S.n_params)) * 0.1).astype(np.float32)
    labels = [sorted(rng.choice(10, int(rng.integers(2, 7)), replace=False).tolist()) for _ in range(n)]
    acc = rng.uniform(50, 100, n) + 300 * rows[:, 0]
    rows[:, 2254] += np.array([0.05 * len(c) for c in labels], dtype=np.float32)
    meta = pl.DataFrame({"accuracy": acc, "activation": np.array(ACTIVATIONS[:2])[rng.integers(0, 2, n)],
                         "label": [str(c) for c in labels], "const": np.full(n, 3.0)})
    return rows, meta


@pytest.fixture(scope="module")
def tables() -> dict[str, pl.DataFrame]:
    rows, meta = zoo()
    rows_b, meta_b = zoo(100, seed=5)
    return {"params": C.param_correlations(rows, meta, methods=("pearson",)),
            "aggs": C.aggregate_correlations(rows, meta, methods=("pearson",), spectral=False),
            "aggs_b": C.aggregate_correlations(rows_b, meta_b, methods=("pearson",), spectral=False),
            "params_b": C.param_correlations(rows_b, meta_b, methods=("pearson",)),
            "grouped": C.aggregate_correlations(rows, meta, methods=("pearson",), spectral=False,
                                                group_by="activation"),
            "matrix": C.param_correlation_matrix(rows)}


def _colour_image(ax):
    return ax.images[-1]  # drawn last: the significant cells in colour; grey and hatching lie beneath


def test_pool_mean_is_the_default_and_max_abs_is_kept_on_request() -> None:
    values = np.array([[0.9, -0.1, -0.2, np.nan, 0.3, np.nan]])
    sig = np.array([[True, False, False, False, False, False]])
    mean, msig = H.pool(values, sig, 3)
    np.testing.assert_allclose(mean, [[0.2, 0.3]])
    np.testing.assert_array_equal(msig, [[True, False]])
    peak, _ = H.pool(values, sig, 3, "max_abs")
    np.testing.assert_allclose(peak, [[0.9, 0.3]])
    assert np.isnan(H.pool(np.full((1, 4), np.nan), np.zeros((1, 4), bool), 2)[0]).all()
    with pytest.raises(ArchitectureError, match="unknown pooling"):
        H.pool(values, sig, 2, "median")


def test_param_figure_title_scale_and_mask(tables) -> None:
    table = tables["params"]
    fig = H.param_metadata_figure(table, zoo="zoo-x", alpha=0.05)
    ax = fig.axes[0]
    title = ax.get_title()
    assert "zoo-x" in title and "n=120 distinct models" in title and "all models" in title
    assert "mean r of each 3-parameter block, coloured when one of its parameters has q < 0.05" in title
    image = _colour_image(ax)
    shown = image.get_array()
    against = list(dict.fromkeys(table["against"].to_list()))
    # the expected grid, pooled the same way from the table itself
    r = np.full((len(against), CNN_S.n_params), np.nan)
    q = np.full(r.shape, np.nan)
    for row in table.iter_rows(named=True):
        r[against.index(row["against"]), row["param"]] = row["r"]
        q[against.index(row["against"]), row["param"]] = row["q"]
    pooled, sig = H.pool(r, np.isfinite(r) & (q < 0.05), 3)
    np.testing.assert_array_equal(np.ma.getmaskarray(shown), ~(sig & np.isfinite(pooled)))
    assert not shown.mask[against.index("accuracy"), 0]  # parameter 0 drives accuracy
    assert not shown.mask[against.index("label count"), 2254 // 3]
    assert shown.mask.mean() > 0.99  # the rest is noise: grey
    limit = np.abs(pooled[sig]).max()
    assert image.norm.vmin == pytest.approx(-limit) and image.norm.vmax == pytest.approx(limit)
    assert limit < 0.9  # scaled from the data, not fixed at +-1
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "const (constant: no test)" in labels and "accuracy" in labels
    assert "largest |r| of each 3-parameter block" in H.param_metadata_figure(
        table, zoo="zoo-x", pooling="max_abs").axes[0].get_title()


def test_param_figure_refuses_without_a_zoo_or_with_a_bad_group(tables) -> None:
    with pytest.raises(ArchitectureError, match="name the zoo"):
        H.param_metadata_figure(tables["params"])
    with pytest.raises(ArchitectureError, match="no group column"):
        H.param_metadata_figure(tables["params"], zoo="z", group={"init": "x"})


def test_aggregate_figure_groups_values_and_labels(tables) -> None:
    grouped = tables["grouped"]
    with pytest.raises(ArchitectureError, match="2 groups"):
        H.aggregate_figure(grouped, zoo="z")
    fig = H.aggregate_figure(grouped, zoo="z", group={"activation": "relu"}, alpha=0.05)
    ax = fig.axes[0]
    n_relu = grouped.filter(pl.col("activation") == "relu")["n"][0]
    assert f"activation=relu | n={n_relu} distinct models" in ax.get_title()
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert rows[0].startswith("conv1.") and rows[-1] == "all.l2_norm"
    cols = [t.get_text() for t in ax.get_xticklabels()]
    assert "const (constant)" in cols
    part = grouped.filter((pl.col("activation") == "relu") & (pl.col("feature") == "fc2.abs_max")
                          & (pl.col("against") == "label count"))
    texts = {t.get_text() for t in ax.texts}
    assert f"{part['r'][0]:.2f}" in texts  # values printed in their cells
    image = _colour_image(ax)
    values = grouped.filter(pl.col("activation") == "relu")["r"].to_numpy()
    assert image.norm.vmax == pytest.approx(np.nanmax(np.abs(values)))
    sig = (grouped.filter(pl.col("activation") == "relu")["q"] < 0.05).sum()
    assert (~np.ma.getmaskarray(image.get_array())).sum() == sig


def test_layer_figure_counts_significant_parameters(tables) -> None:
    table = tables["params"]
    fig = H.layer_metadata_figure(table, zoo="zoo-x", alpha=0.05)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CNN_S.layer_names)
    cols = [t.get_text() for t in ax.get_xticklabels()]
    grid = _colour_image(ax).get_array()
    hits = table.filter((pl.col("layer") == "conv1") & (pl.col("against") == "accuracy") & (pl.col("q") < 0.05))
    assert grid[0, cols.index("accuracy")] == pytest.approx(100 * hits.height / 208)
    assert f"{hits.height}/208" in {t.get_text() for t in ax.texts}
    assert np.ma.getmaskarray(grid)[:, cols.index("const (constant)")].all()
    assert "share of each layer's parameters" in ax.get_title()


def test_cross_zoo_figure_shares_one_scale(tables) -> None:
    fig = H.cross_zoo_figure({"zoo-a": tables["aggs"], "zoo-b": tables["aggs_b"]})
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["zoo-a\nn=120", "zoo-b\nn=100"]
    norms = {(_colour_image(ax).norm.vmin, _colour_image(ax).norm.vmax) for ax in panels}
    assert len(norms) == 1
    both = np.concatenate([tables["aggs"]["r"].to_numpy(), tables["aggs_b"]["r"].to_numpy()])
    assert norms.pop()[1] == pytest.approx(np.nanmax(np.abs(both)))
    assert "across 2 panels (zoo-a, zoo-b)" in fig._suptitle.get_text()
    layers = H.cross_zoo_figure({"zoo-a": tables["params"], "zoo-b": tables["params_b"]}, kind="layer")
    assert "% of params with q < 0.05" in layers._suptitle.get_text()
    with pytest.raises(ArchitectureError, match="kind must be"):
        H.cross_zoo_figure({"zoo-a": tables["aggs"]}, kind="pixels")


def test_param_matrix_leaves_out_the_diagonal(tables, tmp_path: Path) -> None:
    fig = H.param_matrix_figure(tables["matrix"], zoo="zoo-x", n=120)
    ax = fig.axes[0]
    image = _colour_image(ax)
    assert image.norm.vmax < 0.9  # off-diagonal scale; the diagonal's r = 1 would pin it to 1
    assert "zoo-x | all layers | n=120 distinct models" in ax.get_title()
    assert "mean of each 3x3 block" in ax.get_title()
    with pytest.raises(ArchitectureError, match="2464 x 2464"):
        H.param_matrix_figure(np.zeros((3, 3)))
    # the forwarders in correlations still write PNGs
    out = C.plot_param_matrix_heatmap(C.param_correlation_matrix(zoo(40)[0], layer="fc2"), tmp_path / "fc2.png",
                                      layer="fc2")
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_layer_boundaries_drawn_where_the_arch_says(tables) -> None:
    ax = H.param_metadata_figure(tables["params"], zoo="z").axes[0]
    # parameter i occupies [i, i + 1), so a boundary b sits between parameters b - 1 and b
    lines = sorted(line.get_xdata()[0] for line in ax.get_lines())
    assert lines == [208, 1414, 1514, 2254]
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == list(CNN_S.layer_names)


def test_cli_draws_every_figure_and_across_zoos(analysed_lake_dir: Path, tmp_path: Path) -> None:
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

    root = tmp_path / "lake"
    shutil.copytree(analysed_lake_dir, root)
    write_synthetic_csv(tmp_path / "b.csv", labels=all_labels(range(4), range(2, 4)), seed=9)
    ingest_csv(root, tmp_path / "b.csv", zoo="zoo-b", init="xavier_normal")
    out = tmp_path / "plots"
    run = CliRunner().invoke(main, ["analyze", "correlations", "--zoo", "zoo-b", "--against", "accuracy,epoch",
                                    "--by", "activation", "--methods", "pearson", "--plot", str(out), "--lake",
                                    str(root)])
    assert run.exit_code == 0, run.output
    names = {p.name for p in out.glob("*.png")}
    acts = sorted({n.split("-")[2].split("=")[1] for n in names if "activation=" in n})
    assert len(acts) > 1
    for act in acts:
        for kind in ("params", "layers", "aggregates"):
            assert f"zoo-b-activation={act}-pearson-{kind}-vs-metadata.png" in names
    assert {"zoo-b-pearson-groups.png", "zoo-b-param-x-param.png"} <= names
    run = CliRunner().invoke(main, ["analyze", "correlations", "--zoo", "zoo-b", "--against", "accuracy,epoch",
                                    "--methods", "pearson", "--lake", str(root)])
    assert run.exit_code == 0, run.output
    figs = tmp_path / "figs"
    run = CliRunner().invoke(main, ["analyze", "correlation-figures", "--zoo", "mnist-cnn-s", "--zoo", "zoo-b",
                                    "--methods", "pearson", "--plot", str(figs), "--lake", str(root)])
    assert run.exit_code == 0, run.output
    cross = figs / "cross-zoo-mnist-cnn-s+zoo-b-pearson-aggregates.png"
    assert cross.read_bytes()[:8] == PNG_MAGIC and (figs / "cross-zoo-mnist-cnn-s+zoo-b-pearson-layers.png").is_file()
    run = CliRunner().invoke(main, ["analyze", "correlation-figures", "--zoo", "nope", "--plot", str(figs),
                                    "--lake", str(root)])
    assert run.exit_code == 1 and "no committed correlations for zoo(s) ['nope']" in run.output
    assert "Traceback" not in run.output
