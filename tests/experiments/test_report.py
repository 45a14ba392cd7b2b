"""The Markdown + PNG report over the evaluations table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from weightlake.errors import NoSuchTableError
from weightlake.experiments.report import markdown_table, render_markdown, write_report
from weightlake.experiments.tracking import ingest_tracking, write_tracking_csv

P = 2464


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tracking files: one whose predictions vary, one collapsed to a single vector."""
    tmp = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    gt = np.repeat((rng.standard_normal((3, P)) * 0.1).astype(np.float32), 4, axis=0)
    fn = (gt + rng.standard_normal(gt.shape) * 0.01).astype(np.float32)
    varied = (gt + rng.standard_normal(gt.shape) * 0.05).astype(np.float32)
    write_tracking_csv(tmp / "Exp" / "mse" / "Tracking" / "AE epoch mse 2.csv", gt, varied, fn)
    write_tracking_csv(tmp / "Exp" / "w1" / "Tracking" / "AE epoch w1 4.csv", gt, np.tile(varied[0], (12, 1)), fn)
    ingest_tracking(tmp / "lake", tmp / "Exp", scenario="type1-m0")
    return tmp / "lake"


def test_report_tables_and_plots(lake: Path, tmp_path: Path) -> None:
    result = write_report(lake, tmp_path / "out" / "report.md")
    text = result.path.read_text()
    assert result.n_sources == 2 and len(result.plots) == 3
    for plot in result.plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({plot.relative_to(result.path.parent)})" in text
    assert "## Predicted vs ground truth (PD vs GT)" in text and "## Predicted vs fine-tuned (PD vs FN)" in text
    header = next(line for line in text.splitlines() if line.startswith("| checkpoint | mse | mae"))
    assert "| w1 |" in header and "| sliced_w |" in header
    assert "mse/Tracking/AE epoch mse 2.csv" in text and "w1/Tracking/AE epoch w1 4.csv" in text
    assert "**" in text  # the best of two sources is marked
    assert "### pd `mse` per layer" in text and "| conv1 |" in text
    assert "Collapse and variety" in text and "pred collapsed" in text  # the NaN's reason is shown
    summary = text.split("## Summary", 1)[1].split("##", 1)[0]
    assert summary.count("| yes |") == 1  # one collapsed source


def test_report_filters_and_errors(lake: Path, tmp_path: Path) -> None:
    result = write_report(lake, tmp_path / "r.md", scenario="type1-m0", plots=False)
    assert result.plots == [] and not (tmp_path / "r_plots").exists()
    with pytest.raises(NoSuchTableError, match="no evaluations for scenario 'other'"):
        write_report(lake, tmp_path / "r.md", scenario="other")
    from weightlake.lake import open_lake

    open_lake(tmp_path / "empty", create=True)
    with pytest.raises(NoSuchTableError, match="weightlake experiments evaluate"):
        write_report(tmp_path / "empty", tmp_path / "e.md")


def test_markdown_helpers() -> None:
    frame = pl.DataFrame({"checkpoint": ["a|b", "c"], "pd_mse": [0.5, 0.25], "pd_cosine": [0.9, float("nan")],
                          "collapsed": [True, None]})
    table = markdown_table(frame, ["checkpoint", "pd_mse", "pd_cosine", "collapsed"], bold_best=True)
    lines = table.splitlines()
    assert lines[0] == "| checkpoint | pd_mse | pd_cosine | collapsed |" and lines[1] == "|---|---|---|---|"
    assert lines[2] == "| a\\|b | 0.5 | **0.9** | yes |"  # cosine: higher is better
    assert lines[3] == "| c | **0.25** | NaN |  |"
    text = render_markdown(frame.with_columns(source_kind=pl.lit("checkpoint")), snapshot=3)
    assert text.startswith("# Merging-model evaluations") and "snapshot 3" in text


def test_paths_shortened_to_what_tells_them_apart() -> None:
    from weightlake.experiments.report import shorten_paths

    long = "overlapping 0 [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] 11 gelu"
    assert shorten_paths([f"{long}/sinkhorn/AE epoch sinkhorn 0.pth", f"{long}/mse/AE epoch mse 3.pth"]) == [
        "sinkhorn/AE epoch sinkhorn 0.pth", "mse/AE epoch mse 3.pth"]
    assert shorten_paths(["x/same/h4/A.pth", "x/same/h8/A.pth"]) == ["h4/A.pth", "h8/A.pth"]
    assert shorten_paths(["e/a/same/c.pth", "e/b/same/d.pth"]) == ["a/.../c.pth", "b/.../d.pth"]
    assert shorten_paths(["a/b.pth", "a/b.csv"]) == ["b.pth", "b.csv"]
    assert shorten_paths([]) == []


def test_best_marked_only_among_rows_scored_on_the_same_pairs() -> None:
    frame = pl.DataFrame({"checkpoint": ["exp/run/a.pth", "exp/run/b.pth", "exp/run/c.pth"],
                          "source_kind": ["checkpoint"] * 3, "scenario": ["s", "s", "s"],
                          "split": ["test", "test", "val"], "n_pairs": [10, 10, 4], "snapshot": [3, 3, 3],
                          "pd_mse": [0.5, 0.25, 0.1]})
    text = render_markdown(frame, snapshot=3)
    test_part = text.split("## scenario s, split test, checkpoints, 10 pairs of snapshot 3", 1)[1].split("\n## ", 1)[0]
    val_part = text.split("## scenario s, split val, checkpoints, 4 pairs of snapshot 3", 1)[1].split("\n## ", 1)[0]
    assert "| b.pth | **0.25** |" in test_part and "| a.pth | 0.5 |" in test_part  # c (0.1) is on other pairs
    assert "c.pth" not in test_part
    assert "| c.pth | 0.1 |" in val_part  # a single row: nothing to mark
    assert "## Sources" in text and "| a.pth | exp/run/a.pth |" in text


def test_report_of_an_earlier_snapshot(lake: Path, tmp_path: Path) -> None:
    """`experiments report --snapshot N`: the evaluations as a snapshot held them (a scenario declared again
    drops its checkpoint rows; the note names the snapshot that keeps them)."""
    import shutil

    from click.testing import CliRunner

    from weightlake.cli import main
    from weightlake.lake import open_lake

    root = tmp_path / "lake"
    shutil.copytree(lake, root)
    earlier = open_lake(root).snapshot
    gt = np.random.default_rng(1).standard_normal((4, P)).astype(np.float32)
    ingest_tracking(root, write_tracking_csv(tmp_path / "Tracking" / "AE epoch mae 1.csv", gt, gt * 0.5, gt),
                    scenario="type1-m0")
    assert write_report(root, tmp_path / "now.md", plots=False).n_sources == 3
    out = CliRunner().invoke(main, ["experiments", "report", "-o", str(tmp_path / "r.md"), "--no-plots",
                                    "--snapshot", str(earlier), "--lake", str(root)])
    assert out.exit_code == 0 and f"(2 sources, snapshot {earlier})" in out.output, out.output
    assert f"lake snapshot {earlier};" in (tmp_path / "r.md").read_text()
    gone = CliRunner().invoke(main, ["experiments", "report", "-o", str(tmp_path / "g.md"), "--snapshot", "9",
                                     "--lake", str(root)])
    assert gone.exit_code == 1 and "no snapshot version 9" in gone.output and not (tmp_path / "g.md").exists()


def _scored(**metrics: list) -> pl.DataFrame:
    """Two checkpoints and two baselines, all on the same pairs."""
    return pl.DataFrame({"checkpoint": ["exp/r/a.pth", "exp/r/b.pth", "baseline: zeros", "baseline: inputs_mean"],
                         "source_kind": ["checkpoint", "checkpoint", "baseline", "baseline"],
                         "scenario": ["s"] * 4, "split": ["test"] * 4, "n_pairs": [10] * 4, "snapshot": [2] * 4,
                         "limit_pairs": [None] * 4, "pair_seed": [0] * 4,
                         "baseline_note": [None, None, "every weight 0", "(A + B) / 2"], **metrics},
                        schema_overrides={"limit_pairs": pl.Int64})


def test_ties_for_best_are_all_bold() -> None:
    frame = pl.DataFrame({"checkpoint": ["a", "b", "c"], "pd_saturation_share": [0.0, 0.0, 0.5]})
    lines = markdown_table(frame, ["checkpoint", "pd_saturation_share"], bold_best=True).splitlines()
    assert lines[2:] == ["| a | **0** |", "| b | **0** |", "| c | 0.5 |"]


def test_baselines_are_reference_rows_never_best_and_a_line_says_when_they_win() -> None:
    frame = _scored(pd_mse=[0.07, 0.1, 0.04, 0.05], pd_w1=[0.04, 0.09, 0.15, 0.05], pd_mape=[5.0, 6.0, 1.0, 2.0],
                    accuracy_note=["argmax over all logits"] * 4)
    text = render_markdown(frame, snapshot=3)
    assert "2 evaluated sources and 2 baseline rows; report of lake snapshot 3;" in text
    section = text.split("## scenario s, split test, checkpoints, 10 pairs of snapshot 2", 1)[1]
    table = section.split("### Predicted vs ground truth (PD vs GT)", 1)[1].split("\n\n", 2)[1]
    assert table.splitlines()[0] == "| checkpoint | mse | mape (ratio) | w1 |"
    assert "| a.pth | **0.07** | **5** | **0.04** |" in table  # best among checkpoints, though baselines beat two
    assert "| *baseline: zeros* | 0.04 | 1 | 0.15 |" in table and "| *baseline: inputs_mean* | 0.05 | 2 | 0.05 |" in table
    assert "**No checkpoint beats the best baseline on 2 of the 3 metrics**: mse, mape." in section
    assert "`baseline: zeros`: every weight 0" in text
    assert "Scorer: argmax over all logits." in text  # the accuracy's definition is where accuracy is shown
    summary = text.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert "| *baseline: zeros* | baseline |" in summary


def test_no_line_without_baselines_and_one_when_checkpoints_win() -> None:
    from weightlake.experiments.report import baseline_line

    frame = _scored(pd_mse=[0.01, 0.1, 0.04, 0.05])
    assert baseline_line(frame, ["pd_mse"]) == ("On each of the 1 metrics with a baseline value, some checkpoint "
                                                "beats every baseline.")
    assert baseline_line(frame.head(2), ["pd_mse"]) is None
    tie = _scored(pd_mse=[0.04, 0.1, 0.04, 0.05])  # a tie does not beat
    assert baseline_line(tie, ["pd_mse"]).startswith("**No checkpoint beats the best baseline on any of the 1")


def test_ranked_last_counts_among_checkpoints_only() -> None:
    from weightlake.experiments.report import ranked_last

    frame = _scored(pd_mse=[0.07, 0.1, 0.9, 0.05], pd_cosine=[0.1, 0.2, float("nan"), 0.3],
                    pd_w1=[0.2, 0.1, 0.0, 0.0])
    assert ranked_last(frame, "exp/r/b.pth", ["pd_mse", "pd_cosine", "pd_w1"]) == (["pd_mse"], 3)
    assert ranked_last(frame, "exp/r/a.pth", ["pd_mse", "pd_cosine", "pd_w1"]) == (["pd_cosine", "pd_w1"], 3)


def _figure(monkeypatch: pytest.MonkeyPatch, plot, frame: pl.DataFrame, tmp_path: Path):
    from weightlake.experiments import report

    seen = []
    real = report._save

    def keep(fig, path, title=None, **kw):
        seen.append(fig)
        fig.canvas.draw()
        return real(fig, path, title, **kw)

    monkeypatch.setattr(report, "_save", keep)
    assert plot(frame, tmp_path / "p.png") is not None
    return seen[0]


def test_key_metric_panels_are_labelled_and_show_the_same_rows(monkeypatch, tmp_path: Path) -> None:
    from weightlake.experiments.report import plot_key_metrics

    frame = _scored(pd_mse=[0.07, 0.1, 0.04, 0.05], pd_cosine=[0.1, 0.2, float("nan"), 0.3])
    fig = _figure(monkeypatch, plot_key_metrics, frame, tmp_path)
    axes = fig.axes
    assert [ax.get_xlabel() for ax in axes] == ["mean squared error, mean over pairs",
                                                "cosine similarity, mean over pairs"]
    assert axes[0].get_ylim() == axes[1].get_ylim() == (3.5, -0.5)  # the NaN bar does not shift a panel's rows
    assert [t.get_style() for t in axes[0].get_yticklabels()] == ["normal", "normal", "italic", "italic"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["checkpoint", "baseline (reference, same pairs)",
                                                                  "best baseline"]
    assert axes[0].lines[0].get_xdata()[0] == 0.04  # the best baseline's line


def test_layer_plot_keeps_its_axes_wide(monkeypatch, tmp_path: Path) -> None:
    from weightlake.experiments.report import plot_layers

    long = "exp/r/a checkpoint with a long name, as the user's are.pth"
    frame = _scored(pd_mse_conv1=[0.1, 0.2, 0.3, 0.4], pd_mse_fc1=[0.2, 0.3, 0.4, 0.5]).with_columns(
        checkpoint=pl.Series([long, "exp/r/b.pth", "baseline: zeros", "baseline: inputs_mean"]))
    fig = _figure(monkeypatch, plot_layers, frame, tmp_path)
    fig.tight_layout()
    assert fig.axes[0].get_position().width > 0.75  # a legend beside the axes squeezed them to about half
    assert [line.get_linestyle() for line in fig.axes[0].lines] == ["-", "-", "--", ":"]


def test_plot_labels_name_the_pairs_when_the_rows_are_on_several_sets() -> None:
    from weightlake.experiments.report import _plot_labels

    one = _scored(pd_mse=[0.07, 0.1, 0.04, 0.05])
    assert _plot_labels(one)["checkpoint"].equals(one["checkpoint"])
    two = pl.concat([one, one.with_columns(snapshot=pl.lit(5, dtype=pl.Int64))])
    labels = _plot_labels(two)["checkpoint"].to_list()
    assert labels[0] == "exp/r/a.pth [10 pairs of snapshot 2]" and labels[4] == "exp/r/a.pth [10 pairs of snapshot 5]"
    assert len(set(labels)) == len(labels)


def test_metric_ranks_leave_a_tied_column_uncoloured() -> None:
    """A column where every row tied (saturation_share 0 everywhere) was drawn as every row worst."""
    from weightlake.experiments.report import metric_ranks

    frame = pl.DataFrame({"pd_mse": [0.3, 0.1, 0.2, None], "pd_saturation_share": [0.0, 0.0, 0.0, 0.0],
                          "pd_cosine": [0.9, 0.9, 0.1, 0.5]})
    ranks = metric_ranks(frame, ["pd_mse", "pd_saturation_share", "pd_cosine"])
    np.testing.assert_allclose(ranks[:3, 0], [1.0, 0.0, 0.5])
    assert np.isnan(ranks[3, 0])
    assert np.isnan(ranks[:, 1]).all()  # tied: no rank, grey
    np.testing.assert_allclose(ranks[:, 2], [1 / 6, 1 / 6, 1.0, 2 / 3])  # higher is better; the two 0.9 share rank 1.5
