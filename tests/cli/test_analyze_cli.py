"""CLI: `weightlake analyze` options refused at parse time, before any work, with the range in --help."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import weightlake as wl
from weightlake.cli import main


@pytest.mark.parametrize("alpha", ["5", "1", "0", "-0.05"])
def test_correlation_figures_refuses_an_alpha_outside_0_1(lake_copy: Path, tmp_path: Path, alpha: str) -> None:
    """--alpha 5 was accepted: every cell 'significant' at a level that is no significance level."""
    before = wl.open_lake(lake_copy).snapshot
    result = CliRunner().invoke(main, ["analyze", "correlation-figures", "--alpha", alpha, "--plot",
                                       str(tmp_path / "figs"), "--lake", str(lake_copy)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Invalid value for '--alpha'" in result.output and "is not in the range 0<x<1" in result.output
    assert not (tmp_path / "figs").exists() and wl.open_lake(lake_copy).snapshot == before


def test_correlation_figures_takes_an_alpha_inside_0_1(lake_copy: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["analyze", "correlation-figures", "--alpha", "0.01", "--plot",
                                       str(tmp_path / "figs"), "--lake", str(lake_copy)])
    assert "--alpha" not in result.output and result.output.startswith("error:")  # past parsing: no correlations


@pytest.mark.parametrize(("degrees", "words"), [
    ("0,2", "degree 2 is not computed"),
    ("3", "degree 3 is not computed"),
    ("-1", "degree -1 is not computed"),
    ("0,0", "a degree is given twice"),
])
def test_topology_groups_refuses_degrees_it_does_not_compute(lake_copy: Path, degrees: str, words: str) -> None:
    """--degrees 0,2 was accepted and ran 683 s (H2 of a 100-point Rips complex) for a degree no table reads."""
    before = wl.open_lake(lake_copy).snapshot
    result = CliRunner().invoke(main, ["analyze", "topology-groups", f"--degrees={degrees}", "--lake", str(lake_copy)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"Invalid value for --degrees: {words}: each degree is one of 0, 1" in result.output
    assert wl.open_lake(lake_copy).snapshot == before


def test_analyze_help_says_the_ranges() -> None:
    text = CliRunner().invoke(main, ["analyze", "correlation-figures", "--help"]).output
    assert "0<x<1" in text
    text = " ".join(CliRunner().invoke(main, ["analyze", "topology-groups", "--help"]).output.split())
    assert "each 0 or 1" in text


def test_degrees_callback_keeps_the_supported_ones() -> None:
    from weightlake.cli.analyze import _degrees

    assert _degrees(None, None, "0,1") == [0, 1]  # type: ignore[arg-type]
    assert _degrees(None, None, "") == []  # type: ignore[arg-type]  # '' skips the measure


@pytest.mark.parametrize("args", [
    ["analyze", "correlations", "--against", "accuracy", "--features", "aggregates", "--plot", "{lake}/figs"],
    ["analyze", "topology-classes", "--plot", "{lake}/tables/figs"],
    ["analyze", "correlation-figures", "--plot", "{lake}"],
    ["zoo", "train", "--digits", "0-1", "--sizes", "2", "--out", "{lake}/checkpoints"],
])
def test_outputs_inside_the_lake_are_refused_before_any_work(lake_copy: Path, tree_state, args) -> None:
    """--plot and zoo train --out wrote figures and checkpoints into the lake's root, which changes only
    through commits (`gc` takes such files for strays), as sql -o, export and the pair files refuse to."""
    before = tree_state(lake_copy)
    argv = [a.format(lake=lake_copy) for a in args]
    result = CliRunner().invoke(main, [*argv, "--lake", str(lake_copy)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"error: refusing to write {argv[argv.index('--plot' if '--plot' in argv else '--out') + 1]!r}: it lies "
        f"inside the lake {str(lake_copy)!r}, which changes only through weightlake's own commands; write the "
        "result elsewhere")
    assert tree_state(lake_copy) == before


def test_zoo_train_checks_out_only_against_a_lake_that_exists(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """No lake at --lake: nothing to keep the tree out of, so the run goes on (here to the dataset check)."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["zoo", "train", "--dataset", str(tmp_path / "no-idx"), "--digits", "0-1",
                                       "--sizes", "2", "--out", str(tmp_path / "lake" / "ck")])
    assert "inside the lake" not in result.output and "Traceback" not in result.output
