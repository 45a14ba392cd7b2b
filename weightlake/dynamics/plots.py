"""Figures of the dynamics analyses, written as PNG with matplotlib's Agg canvas (no pyplot).

Every function takes the results of the pure functions (or a committed table) and a path,
draws one figure with titles that say what and how many, and returns the path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _figure(n_cols: int = 1, n_rows: int = 1, size: tuple[float, float] = (5.0, 3.8)) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * n_cols, size[1] * n_rows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(n_rows, n_cols, squeeze=False)


def _save(fig: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


KAPPA_CAP = 1e12
"""Phase-diagram condition numbers at or above this are drawn as capped: with float64 eigenvalues
resolved to about 1e-16 x lambda_max, a kappa beyond ~1e12 is round-off, not a measurement."""


def phase_diagram_figure(diagrams: dict[str, dict[str, np.ndarray]], n_inputs: int,
                         kappa_cap: float = KAPPA_CAP) -> Any:
    """The figure of :func:`plot_phase_diagram` (matplotlib ``Figure`` on an Agg canvas).

    kappa is drawn on ``[0, log10 kappa_cap]``; cells at or above the cap, or whose smallest
    eigenvalue is not positive in float64 (kappa infinite), are grey and called numerically
    singular in the title.  Both correlation panels share one colour range, ``[min(0, lowest), 1]``.
    """
    from matplotlib import colormaps

    fig, axes = _figure(len(diagrams), 2, size=(5.2, 3.8))
    corr_lo = min(0.0, *(float(np.nanmin(d["correlation"])) for d in diagrams.values()))
    top = float(np.log10(kappa_cap))
    for col, (act, d) in enumerate(diagrams.items()):
        extent = (d["depths"][0] - 0.5, d["depths"][-1] + 0.5, d["sigma_w2"][0], d["sigma_w2"][-1])
        capped = ~(np.isfinite(d["kappa"]) & (d["kappa"] < kappa_cap))
        kappa = np.where(capped, np.nan, np.log10(np.clip(np.nan_to_num(d["kappa"], posinf=1.0), 1.0, None)))
        panels = ((kappa, f"log10 kappa (NTK), capped at {top:g}", "magma", (0.0, top)),
                  (d["correlation"], "mean off-diagonal NTK correlation", "viridis", (corr_lo, 1.0)))
        for row, (grid, label, cmap, (lo, hi)) in enumerate(panels):
            ax = axes[row, col]
            im = ax.imshow(grid, origin="lower", aspect="auto", extent=extent, interpolation="nearest",
                           cmap=colormaps[cmap].with_extremes(bad="0.8"), vmin=lo, vmax=hi)
            fig.colorbar(im, ax=ax, label=label)
            note = (f"\ngrey: numerically singular (kappa >= {kappa_cap:.0e} or\nlambda_min <= 0 in float64; "
                    f"{int(capped.sum())} cells)" if row == 0 and capped.any() else "")
            ax.set(xlabel="depth L (hidden layers)", ylabel="sigma_w^2",
                   title=f"{act}: {label.split(' (')[0]}, {n_inputs} inputs{note}")
    return fig


def plot_phase_diagram(diagrams: dict[str, dict[str, np.ndarray]], path: str | Path, n_inputs: int,
                       kappa_cap: float = KAPPA_CAP) -> Path:
    """log10 kappa and mean NTK correlation over depth x sigma_w^2, one column per activation
    (see :func:`phase_diagram_figure`)."""
    return _save(phase_diagram_figure(diagrams, n_inputs, kappa_cap), path)


def plot_ntk_convergence(results: dict[str, dict[int, float]], path: str | Path, depth: int) -> Path:
    """Relative max error of empirical vs analytic NTK against width (log-log), per activation."""
    fig, axes = _figure()
    ax = axes[0, 0]
    for i, (act, errs) in enumerate(results.items()):
        widths = sorted(errs)
        ax.loglog(widths, [errs[w] for w in widths], "o-", color=_COLOURS[i], label=act)
    w = np.array(sorted(next(iter(results.values()))))
    ref = next(iter(results.values()))[int(w[0])]
    ax.loglog(w, ref * np.sqrt(w[0] / w), "k--", lw=1, label="~ 1/sqrt(width)")
    ax.set(xlabel="width", ylabel="||emp - analytic||_F / ||analytic||_F (mean of seeds)",
           title=f"empirical NTK -> analytic limit (depth {depth})")
    ax.legend()
    return _save(fig, path)


def kappa_vs_accuracy_figure(table: Any, zoo: str, form: str = "trace") -> Any:
    """The figure of :func:`plot_kappa_vs_accuracy`.

    Numerically singular kernels (kappa infinite: an eigenvalue at most ``rtol * lambda_max``)
    cannot be placed on the x axis; the title counts them and states ``rtol`` from the table's
    column (or says it is not recorded, for tables written before the column existed).
    """
    fig, axes = _figure(2, 1, size=(5.4, 4.4))
    rows = table.filter(table["form"] == form)
    acts = sorted(set(rows["activation"].to_list()))
    rtols = sorted(set(rows["rtol"].to_list())) if "rtol" in rows.columns else []
    threshold = f"eigenvalue <= {rtols[0]:g} lambda_max" if len(rtols) == 1 else "rtol not recorded"
    for col, state in enumerate(("init", "trained")):
        ax, part = axes[0, col], rows.filter(rows["state"] == state)
        n_inf = part.filter(~part["kappa"].is_finite()).height
        part = part.filter(part["kappa"].is_finite())
        for i, act in enumerate(acts):
            sub = part.filter(part["activation"] == act)
            ax.scatter(np.log10(sub["kappa"].to_numpy()), sub["accuracy"].to_numpy(), s=18, color=_COLOURS[i % 6],
                       label=act, alpha=0.8)
        ax.set(xlabel=f"log10 kappa ({form} NTK, {state})", ylabel="test accuracy of the trained model (%)",
               title=f"{zoo}: {state} NTK vs accuracy\nn={part['model_id'].n_unique()} models; "
                     f"{n_inf} more numerically singular\n({threshold}), not shown")
        ax.legend(fontsize=8)
    return fig


def plot_kappa_vs_accuracy(table: Any, path: str | Path, zoo: str, form: str = "trace") -> Path:
    """log10 kappa against accuracy, trained and at init, coloured by activation (``ntk`` + metadata)."""
    return _save(kappa_vs_accuracy_figure(table, zoo, form), path)


def plot_accuracy_runs(runs: Sequence[Any], path: str | Path, title: str) -> Path:
    """Train (dashed) and test (solid) accuracy per step of recorded runs."""
    fig, axes = _figure(size=(7.0, 4.0))
    ax = axes[0, 0]
    for i, run in enumerate(runs):
        ax.plot(run.eval_steps, run.train_acc, "--", color=_COLOURS[i], label=f"{run.label} train")
        ax.plot(run.eval_steps, run.test_acc, "-", color=_COLOURS[i], label=f"{run.label} test")
    ax.set(xlabel="optimizer step", ylabel="accuracy (%)", title=title, ylim=(0, 100))
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def plot_grad_spectra(runs: Sequence[Any], path: str | Path, names: Sequence[str], title: str) -> Path:
    """Power spectra of the watched weights' raw gradients, one panel per weight, runs overlaid."""
    from weightlake.dynamics.oscillation import grad_spectrum

    fig, axes = _figure(len(names), 1, size=(3.6, 3.4))
    for i, run in enumerate(runs):
        freqs, power = grad_spectrum(run.grads)
        for j in range(len(names)):
            axes[0, j].loglog(freqs[1:], power[1:, j], color=_COLOURS[i], lw=1.6 if i == 0 else 0.8,
                              alpha=0.6 if i == 0 else 0.9, label=run.label)
    for j, name in enumerate(names):
        axes[0, j].set(xlabel="frequency (cycles / step)", ylabel="power" if j == 0 else None, title=name)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def plot_transfer(path: str | Path) -> Path:
    """Gain |H(omega)| of the default EMA and MA filters."""
    from weightlake.dynamics.grokfast import ema_transfer, ma_transfer

    fig, axes = _figure()
    ax = axes[0, 0]
    freqs = np.logspace(-4, np.log10(0.5), 400)
    ax.semilogx(freqs, np.abs(ema_transfer(2 * np.pi * freqs)), label="EMA (alpha 0.98, lambda 2)")
    ax.semilogx(freqs, np.abs(ma_transfer(2 * np.pi * freqs)), label="MA (window 100, lambda 5)")
    ax.set(xlabel="frequency (cycles / step)", ylabel="gain |H|", title="Grokfast filters: steady-state gain")
    ax.legend()
    return _save(fig, path)


def plot_sparsity(table: Any, path: str | Path, zoo: str) -> Path:
    """Mean accuracy after zeroing k weights by method (``super_weight_sparsity`` table)."""
    import polars as pl

    fig, axes = _figure()
    ax = axes[0, 0]
    n = table["model_id"].n_unique()
    for i, method in enumerate(("super", "magnitude", "random")):
        part = table.filter(pl.col("method") == method).group_by("k").agg(pl.col("accuracy").mean()).sort("k")
        ax.plot(part["k"], part["accuracy"], "o-", color=_COLOURS[i], label=method)
    ax.axhline(float(table["base_accuracy"].mean()), color="k", ls=":", label="no weights zeroed")
    ax.set(xscale="log", xlabel="weights zeroed (k)", ylabel="mean probe accuracy (%)",
           title=f"{zoo}: enforced sparsity (n={n} models)")
    ax.legend()
    return _save(fig, path)


def plot_super_weight_drops(table: Any, path: str | Path, zoo: str) -> Path:
    """Accuracy drop of each layer's super weight against its magnitude rank in the layer."""
    fig, axes = _figure(size=(6.0, 4.0))
    ax = axes[0, 0]
    top = table.filter(table["rank"] == 1)
    for i, layer in enumerate(sorted(set(top["layer"].to_list()))):
        sub = top.filter(top["layer"] == layer)
        ax.scatter(sub["magnitude_rank"], sub["accuracy_drop"], s=20, color=_COLOURS[i % 6], label=layer)
    ax.set(xscale="log", xlabel="magnitude rank of |w| in its layer (1 = largest)",
           ylabel="accuracy drop when zeroed (points)",
           title=f"{zoo}: each layer's most harmful weight (n={top['model_id'].n_unique()} models)")
    ax.legend(fontsize=8)
    return _save(fig, path)


_LAYER_MARKERS = ("o", "s", "^", "D", "v", "P")


def _span(values: Sequence[np.ndarray], log: bool = False, floor: float | None = None) -> tuple[float, float]:
    flat = np.concatenate([np.ravel(v) for v in values])
    flat = flat[np.isfinite(flat) & ((flat > 0) if log else True)]
    lo, hi = (float(flat.min()), float(flat.max())) if flat.size else (0.0, 1.0)
    if log:
        return lo / 1.5, hi * 1.5
    lo = floor if floor is not None else lo
    return lo, hi + 0.05 * max(hi - lo, 1e-12)


def toy_runs_figure(runs: Sequence[Any], like: Sequence[Any] = (), sink_factor: float | None = None) -> Any:
    """The figure of :func:`plot_toy_runs`.

    Parameters
    ----------
    runs
        The :class:`~weightlake.dynamics.gated.ToyRun` objects to draw.
    like
        Further runs whose values also set the y ranges: draw two figures with the same ``like``
        (e.g. every run) and their axes can be compared side by side.
    sink_factor
        Draw the sink level, ``sink_factor`` x the uniform first-token mass (see
        :meth:`~weightlake.dynamics.gated.ToyRun.sink_layers`), on the sink panel.
    """
    fig, axes = _figure(2, 2, size=(6.0, 3.8))
    for i, run in enumerate(runs):
        colour, style = _COLOURS[i % 6], "-" if run.gate else "--"
        axes[0, 0].semilogy(run.loss, color=colour, lw=0.7, ls=style, label=run.label)
        for layer in range(run.sink.shape[1]):
            axes[0, 1].plot(run.eval_steps, run.sink[:, layer], marker=_LAYER_MARKERS[layer % 6], ms=3, color=colour,
                            ls=style, label=f"{run.label}, layer {layer}")
        axes[1, 0].plot(run.eval_steps, run.entropy.mean(1), marker="o", ms=3, color=colour, ls=style, label=run.label)
        if run.gate:
            axes[1, 1].plot(run.eval_steps, run.gate_score.mean(1), marker="o", ms=3, color=colour, label=run.label)
    every = [*runs, *like]
    if sink_factor is not None and runs:
        level = sink_factor * runs[0].uniform_sink
        axes[0, 1].axhline(level, color="k", lw=0.8, ls=":", label=f"sink level {level:.2f} ({sink_factor:g} x uniform)")
    axes[0, 0].set(xlabel="step", ylabel="training loss (log)", title="training loss",
                   ylim=_span([r.loss for r in every], log=True))
    axes[0, 1].set(xlabel="step", ylabel="attention on the first token", title="attention sink per layer (mean over heads)",
                   ylim=_span([r.sink for r in every], floor=0.0))
    axes[1, 0].set(xlabel="step", ylabel="entropy (nats)", title="attention entropy (mean over layers)",
                   ylim=_span([r.entropy.mean(1) for r in every], floor=0.0))
    axes[1, 1].set(xlabel="step", ylabel="mean sigmoid gate", title="gate score (gated runs)", ylim=(0, 1))
    for ax in axes.flat:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    return fig


def plot_toy_runs(runs: Sequence[Any], path: str | Path, like: Sequence[Any] = (),
                  sink_factor: float | None = None) -> Path:
    """Loss per step, first-token attention mass per layer, attention entropy and mean gate score per run
    (see :func:`toy_runs_figure`)."""
    return _save(toy_runs_figure(runs, like, sink_factor), path)


def plot_loss_curves(curves: dict[str, Any], path: str | Path, title: str,
                     ylabel: str = "loss 1/2 ||f_lin - y||^2 (log)") -> Path:
    """Loss curves (log scale) keyed by label, e.g. linearised GD at several learning rates."""
    fig, axes = _figure()
    for label, losses in curves.items():
        axes[0, 0].semilogy(np.asarray(losses), label=label)
    axes[0, 0].set(xlabel="gradient-descent step", ylabel=ylabel, title=title)
    axes[0, 0].legend()
    return _save(fig, path)
