"""Correlation heatmaps fit for a paper, drawn from the long tables of :mod:`~weightlake.analysis.correlations`.

Every figure says what it shows: zoo, group and ``n`` (distinct models unless told) in the
title, the method, and how cells were pooled.  Colours are scaled from the data (a symmetric
range ``+-max|r|`` of the cells drawn, printed on the colour bar), so a weak correlation is
not washed out by a fixed ``+-1``.  Cells whose Benjamini-Hochberg q-value is not below
``alpha`` are drawn grey; cells with no test at all (a constant column, a non-finite feature)
are hatched, and a metadata column that is constant within the group says so in its label.

When a parameter axis is wider than ``max_columns`` it is pooled in blocks.  The default
pooling is the *mean* ``r`` of the block (``pooling="mean"``): noise averages towards zero
instead of looking like structure; ``pooling="max_abs"`` keeps the entry of largest magnitude
and the title says so.  A pooled cell is grey when no member of its block has ``q < alpha``.

Each ``*_figure`` function returns a matplotlib ``Figure`` on an Agg canvas (no pyplot, no
global backend), so tests can read back its title, colour range and mask; each ``plot_*``
function saves one as PNG.  Figures:

- :func:`param_metadata_figure`: every parameter (x, layer boundaries drawn) x metadata (y).
- :func:`aggregate_figure`: per-layer aggregates (``conv1.l2_norm``, ...) x metadata, values printed.
- :func:`layer_metadata_figure`: layer x metadata, the share of the layer's parameters with ``q < alpha``.
- :func:`cross_zoo_figure`: one panel per zoo (or any facet), one shared colour scale.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from weightlake.arch import CNN_S, Architecture
from weightlake.errors import ArchitectureError

POOLINGS: tuple[str, ...] = ("mean", "max_abs")
NOT_GROUP: frozenset[str] = frozenset({"feature", "param", "layer", "against", "method", "r", "p", "q",
                                       "p_bonferroni", "n", "runs", "kind", "snapshot", "zoo"})
"""Columns of a correlations table that are not group keys."""
GREY = "0.82"
HATCH = "////"


@dataclass(frozen=True)
class Selection:
    """One (zoo, group, method) slice of a correlations table, with what its title must say."""

    table: Any
    zoo: str
    group: dict[str, Any]
    method: str
    n: str
    runs: str = ""
    """The training runs the ``n`` models come from, where some run counts several times (else empty)."""

    def header(self, units: str) -> str:
        group = ", ".join(f"{k}={v}" for k, v in self.group.items()) or "all models"
        runs = f" of {self.runs} runs (p-values take a run's checkpoints as independent)" if self.runs else ""
        return f"{self.zoo} | {group} | n={self.n} {units}{runs}"


def group_columns(table: Any) -> list[str]:
    """The group-key columns of a correlations table (those :func:`correlate` added for ``group_by``)."""
    return [c for c in table.columns if c not in NOT_GROUP]


def groups_of(table: Any) -> list[dict[str, Any]]:
    """Every distinct group of the table, as ``{column: value}`` (``[{}]`` without groups)."""
    keys = group_columns(table)
    if not keys:
        return [{}]
    return table.select(keys).unique(maintain_order=True).sort(keys).to_dicts()


def select(table: Any, *, method: str, kind: str | None = None, zoo: str | None = None,
           group: Mapping[str, Any] | None = None) -> Selection:
    """Rows of one method, kind (``param`` / ``aggregate``), zoo and group; refuses an ambiguous choice.

    Raises
    ------
    ArchitectureError
        No zoo named (and no ``zoo`` column), several zoos or groups and none chosen, or no rows.
    """
    import polars as pl

    part = table.filter(pl.col("method") == method)
    if kind is not None and "kind" in part.columns:
        part = part.filter(pl.col("kind") == kind)
    if kind == "param":
        part = part.filter(pl.col("param").is_not_null())
    elif kind == "aggregate":
        part = part.filter(pl.col("param").is_null())
    zoo = _choose_zoo(part, zoo)
    if "zoo" in part.columns:
        part = part.filter(pl.col("zoo") == zoo)
    found = groups_of(part)
    if group is None:
        if len(found) > 1:
            raise ArchitectureError(f"the table has {len(found)} groups {found[:4]}...; choose one with group=")
        group = found[0] if found else {}
    for key, val in group.items():
        if key not in part.columns:
            raise ArchitectureError(f"the table has no group column {key!r}; group columns: {group_columns(part)}")
        part = part.filter(pl.col(key) == val)
    if part.height == 0:
        raise ArchitectureError(f"no {kind or ''} rows for method {method!r}, zoo {zoo!r}, group {dict(group)}")
    ns = sorted(set(part["n"].to_list()))
    n = str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
    runs = sorted(set(part["runs"].drop_nulls().to_list())) if "runs" in part.columns else []
    several = bool(runs) and max(ns) > min(runs)  # checkpoints of one run among the n: the title must say it
    of_runs = (str(runs[0]) if len(runs) == 1 else f"{runs[0]}-{runs[-1]}") if several else ""
    return Selection(part, zoo, dict(group), method, n, of_runs)


def _choose_zoo(part: Any, zoo: str | None) -> str:
    if "zoo" not in part.columns:
        if zoo is None:
            raise ArchitectureError("name the zoo (zoo=...): the table has no zoo column and the title must say it")
        return zoo
    zoos = sorted(set(part["zoo"].to_list()))
    if zoo is None:
        if len(zoos) != 1:
            raise ArchitectureError(f"the table holds zoos {zoos}; choose one with zoo=")
        return zoos[0]
    return zoo


# -- grids -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grid:
    """Values ``[rows, cols]`` with q-values, row/column labels; NaN value = no test."""

    values: np.ndarray
    q: np.ndarray
    rows: list[str]
    cols: list[str]

    def significant(self, alpha: float) -> np.ndarray:
        return np.isfinite(self.values) & (self.q < alpha)

    def constant_rows(self) -> np.ndarray:
        return ~np.isfinite(self.values).any(axis=1)


def _grid(part: Any, row: str, col: str, rows: Sequence[Any], value: str = "r") -> Grid:
    cols = list(dict.fromkeys(part[col].to_list()))
    values = np.full((len(rows), len(cols)), np.nan)
    q = np.full(values.shape, np.nan)
    at = {v: i for i, v in enumerate(rows)}
    keep = [at.get(v, -1) for v in part[row].to_list()]
    mask = np.asarray(keep) >= 0
    ri = np.asarray(keep)[mask]
    ci = np.asarray([cols.index(a) for a in part[col].to_list()], dtype=np.int64)[mask]
    values[ri, ci] = part[value].to_numpy()[mask]
    q[ri, ci] = part["q"].to_numpy()[mask]
    return Grid(values, q, [str(r) for r in rows], [str(c) for c in cols])


def pool(values: np.ndarray, significant: np.ndarray, factor: int, pooling: str = "mean"
         ) -> tuple[np.ndarray, np.ndarray]:
    """Pool columns of ``values [k, F]`` in blocks of ``factor``: ``(pooled values, pooled significance)``.

    ``mean`` averages the finite members (NaN when none); ``max_abs`` keeps the member of
    largest magnitude.  A pooled cell is significant when any member is.
    """
    if pooling not in POOLINGS:
        raise ArchitectureError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
    if factor == 1:
        return values, significant
    k, f = values.shape
    w = -(-f // factor)
    padded = np.full((k, w * factor), np.nan)
    padded[:, :f] = values
    blocks = padded.reshape(k, w, factor)
    sig = np.zeros((k, w * factor), dtype=bool)
    sig[:, :f] = significant
    pooled_sig = np.asarray(sig.reshape(k, w, factor).any(axis=2))
    finite = np.isfinite(blocks)
    if pooling == "mean":
        count = finite.sum(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(count > 0, np.where(finite, blocks, 0.0).sum(axis=2) / count, np.nan)
        return out, pooled_sig
    magnitude = np.where(finite, np.abs(blocks), -1.0)
    out = np.take_along_axis(blocks, magnitude.argmax(axis=2)[..., None], axis=2)[..., 0]
    return out, pooled_sig


def symmetric_limit(values: np.ndarray) -> float:
    """``max |v|`` over finite values (1.0 when there are none, or all are zero)."""
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


# -- drawing -------------------------------------------------------------------------------------------
def _new_figure(size: tuple[float, float], panels: int = 1) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False, sharey=True)[0]
    return fig, list(axes)


def _draw(ax: Any, values: np.ndarray, significant: np.ndarray, *, limit: float, cmap: str = "RdBu_r",
          vmin: float | None = None, extent: tuple[float, float, float, float] | None = None) -> Any:
    """Three layers: hatched background (no test), grey (tested, not significant), colour (significant)."""
    from matplotlib.colors import ListedColormap

    ax.set_facecolor("white")
    ax.patch.set_hatch(HATCH)
    ax.patch.set_edgecolor("0.6")
    tested = np.isfinite(values)
    kw = {"aspect": "auto", "interpolation": "nearest", "extent": extent}
    ax.imshow(np.ma.masked_array(np.ones(values.shape), ~(tested & ~significant)),
              cmap=ListedColormap([GREY]), vmin=0, vmax=1, **kw)
    shown = np.ma.masked_array(values, ~(tested & significant))
    return ax.imshow(shown, cmap=cmap, vmin=-limit if vmin is None else vmin, vmax=limit, **kw)


def _legend(fig: Any, alpha: float, grey: bool = True) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(facecolor="white", edgecolor="0.6", hatch=HATCH, label="no test (constant or non-finite)")]
    if grey:
        handles.insert(0, Patch(facecolor=GREY, label=f"q >= {alpha:g} (Benjamini-Hochberg)"))
    fig.legend(handles=handles, loc="outside lower right", fontsize=7, frameon=False, ncol=len(handles))


def _row_labels(grid: Grid, why: str = "constant: no test") -> list[str]:
    const = grid.constant_rows()
    return [f"{r} ({why})" if c else r for r, c in zip(grid.rows, const, strict=True)]


def _mark_layers(ax: Any, marks: Sequence[int], names: Sequence[str]) -> None:
    for b in marks[1:-1]:
        ax.axvline(b, color="black", linewidth=0.8)
    centres = [(a + b) / 2 for a, b in zip(marks[:-1], marks[1:], strict=True)]
    labels = [f"{n}\n[{a}, {b})" for n, a, b in zip(names, marks[:-1], marks[1:], strict=True)]
    ax.set_xticks(centres, labels, fontsize=7)
    ax.set_xlabel("flat parameter index (layer block, weight then bias)")


def save(fig: Any, path: str | Path, dpi: int = 130) -> Path:
    """Write ``fig`` as PNG (parents created) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, bbox_inches="tight")
    return out


# -- parameters x metadata -------------------------------------------------------------------------------
def param_metadata_figure(table: Any, arch: Architecture = CNN_S, *, method: str = "pearson",
                          zoo: str | None = None, group: Mapping[str, Any] | None = None, alpha: float = 0.05,
                          pooling: str = "mean", max_columns: int = 1200, units: str = "distinct models",
                          title: str | None = None) -> Any:
    """Every parameter (x, flat order, layer boundaries named) against every metadata column (y).

    Parameters
    ----------
    table : polars.DataFrame
        From :func:`~weightlake.analysis.correlations.param_correlations` or the lake's ``correlations``.
    method : {"pearson", "spearman"}
    zoo, group : optional
        Which zoo and group to draw (required when the table holds several).
    alpha : float
        Cells with ``q >= alpha`` are grey.
    pooling : {"mean", "max_abs"}
        How blocks of parameters are pooled when there are more than ``max_columns``.
    units : str
        What ``n`` counts, for the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    sel = select(table, method=method, kind="param", zoo=zoo, group=group)
    grid = _grid(sel.table, "param", "against", list(range(arch.n_params)))
    grid = Grid(grid.values.T, grid.q.T, grid.cols, grid.rows)  # metadata down, parameters across
    factor = -(-arch.n_params // max_columns)
    values, sig = pool(grid.values, grid.significant(alpha), factor, pooling)
    limit = symmetric_limit(values[sig]) if sig.any() else symmetric_limit(values)
    fig, (ax,) = _new_figure((14, 2.6 + 0.3 * len(grid.rows)))
    image = _draw(ax, values, sig, limit=limit, extent=(0, arch.n_params, len(grid.rows), 0))
    fig.colorbar(image, ax=ax, label=f"{method} r (scale +-{limit:.2f}, max |r| shown)", pad=0.01)
    _mark_layers(ax, arch.boundaries, arch.layer_names)
    ax.set_yticks(np.arange(len(grid.rows)) + 0.5, _row_labels(grid), fontsize=7)
    ax.set_ylabel("metadata column")
    how = (f"{'mean r' if pooling == 'mean' else 'largest |r|'} of each {factor}-parameter block, coloured when "
           f"one of its parameters has q < {alpha:g}" if factor > 1 else f"one cell per parameter; grey: q >= {alpha:g}")
    ax.set_title(title or f"{sel.header(units)}\n{method} r, parameters x metadata; {how}", fontsize=10)
    _legend(fig, alpha)
    return fig


def plot_param_metadata_heatmap(table: Any, path: str | Path, arch: Architecture = CNN_S, **options: Any) -> Path:
    """:func:`param_metadata_figure` saved as PNG at ``path``."""
    return save(param_metadata_figure(table, arch, **options), path)


# -- aggregates x metadata -------------------------------------------------------------------------------
def _aggregate_rows(part: Any, arch: Architecture | None) -> list[str]:
    names = list(dict.fromkeys(part["feature"].to_list()))
    if arch is None:
        return names
    order = {n: i for i, n in enumerate(arch.layer_names)}
    return sorted(names, key=lambda f: (order.get(f.split(".", 1)[0], len(order)), names.index(f)))


def aggregate_figure(table: Any, arch: Architecture | None = CNN_S, *, method: str = "pearson",
                     zoo: str | None = None, group: Mapping[str, Any] | None = None, alpha: float = 0.05,
                     features: Sequence[str] | None = None, units: str = "distinct models",
                     annotate: bool | None = None, title: str | None = None) -> Any:
    """Per-layer aggregates (rows, in layer order) x metadata (columns), r printed in each tested cell.

    ``features`` restricts the rows (e.g. ``["conv1.l2_norm", "fc1.alpha"]``); ``annotate``
    prints values (default: when the grid has at most 1,500 cells).  A feature with no test
    (constant, or NaN such as ``alpha`` of a small layer) is labelled so.
    """
    sel = select(table, method=method, kind="aggregate", zoo=zoo, group=group)
    rows = list(features) if features is not None else _aggregate_rows(sel.table, arch)
    grid = _grid(sel.table, "feature", "against", rows)
    sig = grid.significant(alpha)
    limit = symmetric_limit(grid.values)
    fig, (ax,) = _new_figure((2.8 + 0.45 * len(grid.cols), 1.6 + 0.2 * len(rows)))
    image = _draw(ax, grid.values, sig, limit=limit)
    fig.colorbar(image, ax=ax, label=f"{method} r (scale +-{limit:.2f}, max |r|)", pad=0.01, shrink=0.6)
    if annotate if annotate is not None else grid.values.size <= 1500:
        _annotate(ax, grid.values, "{:.2f}", limit, sig)
    ax.set_xticks(np.arange(len(grid.cols)), _col_labels(grid), rotation=60, ha="right", fontsize=7)
    ax.set_yticks(np.arange(len(rows)), _row_labels(grid, "no test: constant or NaN"), fontsize=7)
    ax.set(xlabel="metadata column", ylabel="per-layer aggregate")
    ax.set_title(title or f"{sel.header(units)}\n{method} r, layer aggregates x metadata; grey: q >= {alpha:g}",
                 fontsize=9)
    _legend(fig, alpha)
    return fig


def _annotate(ax: Any, values: np.ndarray, fmt: str, limit: float, coloured: np.ndarray,
              texts: np.ndarray | None = None) -> None:
    """Print each finite value (or ``texts``) in its cell, white on the darkest colours."""
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            text = fmt.format(v) if texts is None else str(texts[i, j])
            ax.text(j, i, text, ha="center", va="center", fontsize=5,
                    color="white" if coloured[i, j] and abs(v) > 0.65 * limit else "black")


def _share_texts(grid: Grid) -> np.ndarray:
    hits = np.rint(np.nan_to_num(grid.values) * np.nan_to_num(grid.q) / 100).astype(int)
    return np.asarray([[f"{h}/{int(t)}" if np.isfinite(t) else "" for h, t in zip(hr, tr, strict=True)]
                       for hr, tr in zip(hits, grid.q, strict=True)], dtype=object)


def plot_aggregate_heatmap(table: Any, path: str | Path, arch: Architecture | None = CNN_S, **options: Any) -> Path:
    """:func:`aggregate_figure` saved as PNG at ``path``."""
    return save(aggregate_figure(table, arch, **options), path)


# -- layer x metadata -----------------------------------------------------------------------------------
def layer_shares(part: Any, arch: Architecture, alpha: float) -> Grid:
    """Percentage of each layer's tested parameters with ``q < alpha``, per metadata column (``[layers, k]``).

    A (layer, column) with no tested parameter is NaN; ``q`` of the grid holds the tested count.
    """
    import polars as pl

    stats = (part.with_columns(tested=pl.col("r").is_not_nan() & pl.col("r").is_not_null(),
                               hit=(pl.col("q") < alpha).fill_null(False))
             .group_by("layer", "against", maintain_order=True)
             .agg(pl.col("tested").sum().alias("tested"), (pl.col("hit") & pl.col("tested")).sum().alias("hits")))
    stats = stats.with_columns(share=pl.when(pl.col("tested") > 0)
                               .then(100.0 * pl.col("hits") / pl.col("tested")).otherwise(None).fill_null(np.nan),
                               q=pl.col("tested").cast(pl.Float64))
    return _grid(stats, "layer", "against", list(arch.layer_names), value="share")


def layer_metadata_figure(table: Any, arch: Architecture = CNN_S, *, method: str = "pearson",
                          zoo: str | None = None, group: Mapping[str, Any] | None = None, alpha: float = 0.05,
                          units: str = "distinct models", title: str | None = None) -> Any:
    """Layer (rows) x metadata (columns): the share of the layer's parameters with ``q < alpha``.

    Each cell prints significant / tested parameters; colours run from 0 to the largest share
    found (shown on the colour bar).  A column with no tested parameter in any layer is labelled constant.
    """
    sel = select(table, method=method, kind="param", zoo=zoo, group=group)
    grid = layer_shares(sel.table, arch, alpha)
    fig, (ax,) = _new_figure((3.0 + 0.5 * len(grid.cols), 2.4 + 0.35 * len(grid.rows)))
    top = symmetric_limit(grid.values)
    image = _draw(ax, grid.values, np.isfinite(grid.values), limit=top, vmin=0.0, cmap="Reds")
    fig.colorbar(image, ax=ax, label=f"% of parameters with q < {alpha:g} (scale 0-{top:.3g}%)", pad=0.01)
    _annotate(ax, grid.values, "", top, np.isfinite(grid.values), _share_texts(grid))
    ax.set_xticks(np.arange(len(grid.cols)), _col_labels(grid), rotation=60, ha="right", fontsize=7)
    ax.set_yticks(np.arange(len(grid.rows)), grid.rows, fontsize=8)
    ax.set(xlabel="metadata column", ylabel="layer")
    ax.set_title(title or f"{sel.header(units)}\n{method}: share of each layer's parameters significantly "
                 f"correlated (q < {alpha:g})", fontsize=9)
    _legend(fig, alpha, grey=False)
    return fig


def _col_labels(grid: Grid) -> list[str]:
    const = ~np.isfinite(grid.values).any(axis=0)
    return [f"{c} (constant)" if k else c for c, k in zip(grid.cols, const, strict=True)]


def plot_layer_metadata_heatmap(table: Any, path: str | Path, arch: Architecture = CNN_S, **options: Any) -> Path:
    """:func:`layer_metadata_figure` saved as PNG at ``path``."""
    return save(layer_metadata_figure(table, arch, **options), path)


# -- across zoos (or any facet) ----------------------------------------------------------------------------
def cross_zoo_figure(tables: Mapping[str, Any], arch: Architecture | None = CNN_S, *, kind: str = "aggregate",
                     method: str = "pearson", alpha: float = 0.05, features: Sequence[str] | None = None,
                     against: Sequence[str] | None = None, groups: Mapping[str, Mapping[str, Any]] | None = None,
                     units: str = "distinct models", title: str | None = None) -> Any:
    """One panel per zoo, side by side, on one colour scale: do the correlations generalise?

    Parameters
    ----------
    tables : mapping of panel label -> correlations table
        Usually zoo -> that zoo's table; any facet works (e.g. one table per init).
    kind : {"aggregate", "layer"}
        ``aggregate``: aggregate r per (feature, column) with the q mask; ``layer``: the share of
        each layer's parameters with ``q < alpha`` (as :func:`layer_metadata_figure`).
    features, against : optional
        Rows and columns to draw (default: those present in every panel, so panels compare like
        with like); a cell a panel lacks is hatched.
    groups : mapping of panel label -> group, optional
    """
    if kind not in ("aggregate", "layer"):
        raise ArchitectureError(f"kind must be 'aggregate' or 'layer', got {kind!r}")
    if not tables:
        raise ArchitectureError("no tables to compare")
    grids, headers, replicated = {}, {}, False
    for label, table in tables.items():
        zoo = label if "zoo" not in table.columns or label in set(table["zoo"].to_list()) else None
        sel = select(table, method=method, kind="param" if kind == "layer" else "aggregate", zoo=zoo,
                     group=(groups or {}).get(label))
        if kind == "layer":
            if arch is None:
                raise ArchitectureError("kind='layer' needs the architecture")
            grids[label] = layer_shares(sel.table, arch, alpha)
        else:
            grids[label] = _grid(sel.table, "feature", "against", features or _aggregate_rows(sel.table, arch))
        # one item a line: side by side, "zoo (activation=gelu)" ran into the next panel's title
        lines = [sel.zoo, *(f"{k}={v}" for k, v in sel.group.items()), f"n={sel.n}"]
        if sel.runs:
            lines.append(f"of {sel.runs} runs")
            replicated = True
        headers[label] = "\n".join(lines)
    rows = list(features) if features is not None else _common([g.rows for g in grids.values()])
    cols = list(against) if against is not None else _common([g.cols for g in grids.values()])
    if not rows or not cols:
        raise ArchitectureError(f"the panels share no rows or no columns: {[(g.rows, g.cols) for g in grids.values()]}")
    aligned = {label: _align(g, rows, cols) for label, g in grids.items()}
    height = max(4.0, 2.2 + 0.22 * len(rows))
    fig, axes = _new_figure((1.5 + len(aligned) * (0.5 * len(cols) + 0.6), height), len(aligned))
    stacked = np.concatenate([g.values.ravel() for g in aligned.values()])
    limit = symmetric_limit(stacked)
    for ax, (label, g) in zip(axes, aligned.items(), strict=True):
        if kind == "layer":
            image = _draw(ax, g.values, np.isfinite(g.values), limit=limit, vmin=0.0, cmap="Reds")
            _annotate(ax, g.values, "", limit, np.isfinite(g.values), _share_texts(g))
        else:
            image = _draw(ax, g.values, g.significant(alpha), limit=limit)
            if g.values.size <= 600:
                _annotate(ax, g.values, "{:.2f}", limit, g.significant(alpha))
        ax.set_xticks(np.arange(len(cols)), cols, rotation=60, ha="right", fontsize=7)
        ax.set_title(headers[label], fontsize=8)
    untested = ~np.any([np.isfinite(g.values).any(axis=1) for g in aligned.values()], axis=0)
    axes[0].set_yticks(np.arange(len(rows)), [f"{r} (no test)" if u else r for r, u in zip(rows, untested, strict=True)],
                       fontsize=7)
    axes[0].set_ylabel("layer" if kind == "layer" else "per-layer aggregate")
    what = (f"% of params with q < {alpha:g}" if kind == "layer" else f"{method} r")
    scale = f"0-{limit:.3g}%" if kind == "layer" else f"+-{limit:.2f}"
    fig.colorbar(image, ax=axes, label=f"{what}\n(shared scale {scale})", pad=0.01, shrink=0.8)
    zoos = ", ".join(aligned)
    runs = "\np-values take a run's checkpoints as independent (--per-run last: one per run)" if replicated else ""
    fig.suptitle(title or f"across {len(aligned)} panels ({zoos}); {method}; n in {units}; "
                 f"{'grey: q >= ' + format(alpha, 'g') if kind == 'aggregate' else what}{runs}", fontsize=9)
    _legend(fig, alpha, grey=kind == "aggregate")
    return fig


def _common(lists: Sequence[Sequence[str]]) -> list[str]:
    first = list(lists[0])
    return [x for x in first if all(x in other for other in lists[1:])]


def _align(grid: Grid, rows: Sequence[str], cols: Sequence[str]) -> Grid:
    values = np.full((len(rows), len(cols)), np.nan)
    q = np.full(values.shape, np.nan)
    ri = {r: i for i, r in enumerate(grid.rows)}
    ci = {c: j for j, c in enumerate(grid.cols)}
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            if r in ri and c in ci:
                values[i, j], q[i, j] = grid.values[ri[r], ci[c]], grid.q[ri[r], ci[c]]
    return Grid(values, q, list(rows), list(cols))


def plot_cross_zoo_heatmap(tables: Mapping[str, Any], path: str | Path, arch: Architecture | None = CNN_S,
                           **options: Any) -> Path:
    """:func:`cross_zoo_figure` saved as PNG at ``path``."""
    return save(cross_zoo_figure(tables, arch, **options), path)


# -- parameter x parameter -----------------------------------------------------------------------------
def pool_square(matrix: np.ndarray, factor: int) -> np.ndarray:
    """Mean of the finite entries of each ``factor x factor`` block (NaN when a block has none)."""
    if factor == 1:
        return matrix
    n = matrix.shape[0]
    w = -(-n // factor)
    padded = np.full((w * factor, w * factor), np.nan)
    padded[:n, :n] = matrix
    blocks = padded.reshape(w, factor, w, factor).transpose(0, 2, 1, 3).reshape(w, w, -1)
    finite = np.isfinite(blocks)
    count = finite.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(finite, blocks, 0.0).sum(axis=2) / count, np.nan)


def param_matrix_figure(matrix: Any, arch: Architecture = CNN_S, layer: str | None = None, *,
                        zoo: str | None = None, n: int | None = None, method: str = "pearson",
                        units: str = "distinct models", max_pixels: int = 1200, title: str | None = None) -> Any:
    """Parameter x parameter correlations (whole network, layer boundaries on both axes; or one layer).

    The diagonal (``r = 1`` by definition) is left out, so the colour scale ``+-max|r|`` comes
    from the off-diagonal entries; past ``max_pixels`` parameters, blocks are averaged.
    """
    matrix = np.array(matrix, dtype=np.float64)
    if layer is None:
        marks, names = list(arch.boundaries), list(arch.layer_names)
    else:
        spec = arch.layer(layer)
        marks, names = [0, spec.weight_size, spec.size], [f"{layer}.weight", f"{layer}.bias"]
    if matrix.shape != (marks[-1], marks[-1]):
        raise ArchitectureError(f"expected a {marks[-1]} x {marks[-1]} matrix, got {matrix.shape}")
    np.fill_diagonal(matrix, np.nan)
    factor = -(-marks[-1] // max_pixels)
    values = pool_square(matrix, factor)
    limit = symmetric_limit(values)
    fig, (ax,) = _new_figure((9, 8))
    size = marks[-1]
    image = _draw(ax, values, np.isfinite(values), limit=limit, extent=(0, size, size, 0))
    fig.colorbar(image, ax=ax, label=f"{method} r (scale +-{limit:.2f}, max |r| off the diagonal)", pad=0.01)
    _mark_layers(ax, marks, names)
    for b in marks[1:-1]:
        ax.axhline(b, color="black", linewidth=0.8)
    centres = [(a + b) / 2 for a, b in zip(marks[:-1], marks[1:], strict=True)]
    ax.set_yticks(centres, names, fontsize=7)
    ax.set_ylabel("flat parameter index")
    how = f"mean of each {factor}x{factor} block" if factor > 1 else "one cell per parameter pair"
    head = " | ".join(x for x in (zoo, layer or "all layers", f"n={n} {units}" if n is not None else None) if x)
    ax.set_title(title or f"{head}\n{method} r between parameters; {how}; diagonal left out", fontsize=10)
    _legend(fig, 0.05, grey=False)
    return fig


def plot_param_matrix_heatmap(matrix: Any, path: str | Path, arch: Architecture = CNN_S, layer: str | None = None,
                              **options: Any) -> Path:
    """:func:`param_matrix_figure` saved as PNG at ``path``."""
    return save(param_matrix_figure(matrix, arch, layer, **options), path)


# -- every figure of a table --------------------------------------------------------------------------------
MAX_GROUP_FIGURES = 12
"""Per-group figures are drawn for this many groups at most (the cross-group figure shows all)."""


def table_figures(table: Any, out: str | Path, arch: Architecture = CNN_S, *, zoo: str,
                  units: str = "distinct models", alpha: float = 0.05, pooling: str = "mean",
                  max_groups: int = MAX_GROUP_FIGURES,
                  progress: Callable[[int, int], Any] | None = None) -> list[Path]:
    """Every figure of one zoo's correlations table, as PNG files in ``out``.

    Per method and group: parameters x metadata and layer x metadata (parameter rows), aggregates
    x metadata (aggregate rows); with several groups, the groups side by side on one scale.
    Files are named ``{zoo}[-{key}={value}...]-{method}-{figure}.png``.  ``progress(done, total)``
    is called after each figure.
    """
    import polars as pl

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = table.filter(pl.col("zoo") == zoo) if "zoo" in table.columns else table.with_columns(zoo=pl.lit(zoo))
    kinds = _kinds(table)
    groups = groups_of(table)
    methods = table["method"].unique().sort().to_list()
    total = len(methods) * (len(groups[:max_groups]) * (2 * ("param" in kinds) + ("aggregate" in kinds))
                            + (len(groups) > 1))
    paths: list[Path] = []

    def add(path: Path) -> None:
        paths.append(path)
        if progress is not None:
            progress(len(paths), total)

    for method in methods:
        for group in groups[:max_groups]:
            stem = "-".join([zoo, *(f"{k}={v}" for k, v in group.items()), method])
            opts = {"method": method, "group": group, "units": units, "alpha": alpha}
            if "param" in kinds:
                add(plot_param_metadata_heatmap(table, out / f"{stem}-params-vs-metadata.png", arch,
                                                pooling=pooling, **opts))
                add(plot_layer_metadata_heatmap(table, out / f"{stem}-layers-vs-metadata.png", arch, **opts))
            if "aggregate" in kinds:
                add(plot_aggregate_heatmap(table, out / f"{stem}-aggregates-vs-metadata.png", arch, **opts))
        if len(groups) > 1:
            labels = {", ".join(f"{k}={v}" for k, v in g.items()): g for g in groups}
            add(plot_cross_zoo_heatmap(
                dict.fromkeys(labels, table), out / f"{zoo}-{method}-groups.png", arch,
                kind="aggregate" if "aggregate" in kinds else "layer", method=method, groups=labels, units=units,
                alpha=alpha))
    return paths


def _kinds(table: Any) -> set[str]:
    import polars as pl

    has_param = table.filter(pl.col("param").is_not_null()).height > 0
    has_aggregate = table.filter(pl.col("param").is_null()).height > 0
    return {k for k, present in (("param", has_param), ("aggregate", has_aggregate)) if present}
