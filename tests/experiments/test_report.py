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
    test_part = text.split("## scenario s, split test, checkpoints, 10 pairs, snapshot 3", 1)[1].split("\n## ", 1)[0]
    val_part = text.split("## scenario s, split val, checkpoints, 4 pairs, snapshot 3", 1)[1].split("\n## ", 1)[0]
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
