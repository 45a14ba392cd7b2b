"""Dynamics figures: what the colour scales, ranges and titles promise."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl

from weightlake.dynamics import plots
from weightlake.dynamics.gated import ToyRun


def _diagram(kappa: list[list[float]], corr: list[list[float]]) -> dict[str, np.ndarray]:
    return {"depths": np.array([1, 2, 3]), "sigma_w2": np.array([1.0, 2.0]), "kappa": np.array(kappa),
            "correlation": np.array(corr)}


def test_phase_diagram_caps_round_off_kappas_and_shares_the_correlation_range():
    diagrams = {"relu": _diagram([[10.0, 1e16, float("inf")], [30.0, 1e3, 1e5]], [[0.3, 0.9, 1.0], [0.28, 0.5, 0.6]]),
                "erf": _diagram([[10.0, 20.0, 30.0], [1.0, 2.0, 3.0]], [[0.0, 0.5, 1.0], [0.1, 0.2, 0.3]])}
    fig = plots.phase_diagram_figure(diagrams, n_inputs=8)
    images = [ax.images[0] for ax in fig.axes if ax.images]  # row-major: kappa row, then correlation row
    kappa_relu, kappa_erf, corr_relu, corr_erf = images
    assert kappa_relu.get_clim() == (0.0, 12.0) == kappa_erf.get_clim()
    assert int(np.ma.getmaskarray(np.ma.masked_invalid(kappa_relu.get_array())).sum()) == 2  # 1e16 and inf
    assert corr_relu.get_clim() == corr_erf.get_clim() == (0.0, 1.0)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert "numerically singular" in titles[0] and "2 cells" in titles[0] and "singular" not in titles[1]


def test_kappa_figure_states_the_threshold_it_calls_numerically_singular():
    table = pl.DataFrame({"model_id": [0, 1, 0, 1], "state": ["init", "init", "trained", "trained"],
                          "form": ["trace"] * 4, "activation": ["relu"] * 4, "kappa": [10.0, float("inf"), 20.0, 30.0],
                          "accuracy": [90.0, 80.0, 90.0, 80.0], "rtol": [1e-10] * 4})
    fig = plots.kappa_vs_accuracy_figure(table, zoo="z")
    init_title = fig.axes[0].get_title()
    assert "1 more numerically singular" in init_title and "(eigenvalue <= 1e-10 lambda_max)" in init_title
    assert "n=1 models" in init_title
    assert "rtol not recorded" in plots.kappa_vs_accuracy_figure(table.drop("rtol"), zoo="z").axes[0].get_title()


def _toy(label: str, gate: str | None, scale: float) -> ToyRun:
    steps = np.arange(4)
    return ToyRun(label, gate, 1e-3, np.linspace(1, 0.1, 10) * scale, np.ones(10), steps,
                  np.array([[0.1, 0.1], [0.2, 0.1], [0.5, 0.1], [0.6 * scale, 0.1]]), np.ones((4, 2)) * scale,
                  np.full((4, 2), 0.5 if gate else np.nan), {"positions": 33})


def test_toy_figures_draw_without_warnings_and_share_ranges_with_like():
    small, large = [_toy("a", None, 1.0), _toy("b", "headwise", 1.0)], [_toy("c", None, 1.5)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "o-" together with ls= warned twice per run
        first = plots.toy_runs_figure(small, like=large, sink_factor=3.0)
        second = plots.toy_runs_figure(large, like=small, sink_factor=3.0)
    for a, b in zip(first.axes[:4], second.axes[:4], strict=True):
        assert a.get_ylim() == b.get_ylim()
    sink_panel = first.axes[1]
    assert len(sink_panel.lines) == 2 * 2 + 1  # one curve per run and layer, and the sink level
    assert "sink level 0.29 (3 x uniform)" in sink_panel.get_legend_handles_labels()[1]
