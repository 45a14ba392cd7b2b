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
