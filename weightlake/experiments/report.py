"""A Markdown report of every evaluated checkpoint and tracking file, with PNG plots.

:func:`write_report` reads the ``evaluations`` table at one snapshot and writes:

* a summary table (one row per source: config, loss, epoch, pairs, collapse, accuracy),
* a table of every whole-vector metric for each comparison present (PD vs GT, FN vs GT,
  PD vs FN), the best checkpoint value of each column in bold (every row that ties), and below the
  checkpoints the baselines scored on the same pairs (``evaluation_baselines``, in italics, never
  bold) with one line naming the metrics on which no checkpoint beats the best baseline,
* per-layer tables for a few key metrics, and the variety statistics with their reasons,
* PNG plots next to the Markdown file (``<stem>_plots/``): key metrics per source,
  a rank heatmap of sources x metrics, and per-layer curves.

:func:`render_markdown` does the text part from a frame without touching the disk, so
a notebook can show it.  matplotlib is imported inside the plotting functions (Agg
backend), so importing this module stays cheap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import polars as pl

from weightlake.analysis.collapse import PARTIAL_COLLAPSE_SHARE
from weightlake.analysis.metrics import METRICS
from weightlake.errors import NoSuchTableError
from weightlake.experiments.baselines import PAIRSET
from weightlake.experiments.evaluate import COMPARISONS, EVALUATIONS

if TYPE_CHECKING:
    from weightlake.lake import Lake

TITLES: dict[str, str] = {"pd": "Predicted vs ground truth (PD vs GT)", "fn": "Fine-tuned vs ground truth (FN vs GT)",
                          "pdfn": "Predicted vs fine-tuned (PD vs FN)"}
KEY_METRICS: tuple[str, ...] = ("mse", "w1", "cosine", "kl")
"""Metrics shown per layer and plotted per source."""

_SUMMARY = ("checkpoint", "source_kind", "scenario", "split", "loss", "epoch", "config", "heads_source", "n_pairs",
            "collapsed",
            "pd_partial_collapse", "pd_top_row_share", "pd_accuracy", "gt_accuracy", "accuracy_models", "error")

BASELINE = "baseline"
"""``source_kind`` of the reference rows (:mod:`weightlake.experiments.baselines`)."""

HEADERS: dict[str, str] = {"mape": "mape (ratio)"}
"""Table headers of metrics whose values need their unit: mape is a ratio (1 = 100 %)."""

LABELS: dict[str, str] = {"mse": "mean squared error", "w1": "Wasserstein-1 distance", "cosine": "cosine similarity",
                          "kl": "KL divergence (histograms)"}
"""Axis labels of the key metrics (values are means over pairs)."""


@dataclass
class ReportResult:
    """Where :func:`write_report` wrote, and what it covered."""

    path: Path
    plots: list[Path] = field(default_factory=list)
    n_sources: int = 0
    snapshot: int | None = None

    def lines(self) -> list[str]:
        out = [f"wrote {self.path} ({self.n_sources} sources, snapshot {self.snapshot})"]
        out += [f"  plot {p}" for p in self.plots]
        return out


def load_evaluations(lake: Lake, scenario: str | None = None, split: str | None = None) -> pl.DataFrame:
    """The ``evaluations`` rows (optionally one scenario / split), ordered by scenario and source.

    Raises
    ------
    NoSuchTableError
        The lake has no evaluations yet.
    """
    if EVALUATIONS not in lake.manifest.tables:
        raise NoSuchTableError(f"the lake has no {EVALUATIONS!r} table at snapshot {lake.snapshot}; run "
                               "`weightlake experiments evaluate` or `weightlake experiments ingest-tracking` first")
    from weightlake.query import run_sql

    frame = run_sql(lake, f"SELECT * FROM {EVALUATIONS}")
    if scenario is not None:
        frame = frame.filter(pl.col("scenario") == scenario)
    if split is not None:
        frame = frame.filter(pl.col("split") == split)
    return frame.sort("scenario", "split", "source_kind", "checkpoint", nulls_last=True)


def with_baselines(lake: Lake, frame: pl.DataFrame, scenario: str | None = None,
                   split: str | None = None) -> pl.DataFrame:
    """``frame`` (rows of ``evaluations``) followed by the ``evaluation_baselines`` rows of the same
    scenario / split filter, ``source_kind = 'baseline'``."""
    from weightlake.experiments.baselines import load_baselines

    refs = load_baselines(lake)
    if refs is None:
        return frame
    if scenario is not None:
        refs = refs.filter(pl.col("scenario") == scenario)
    if split is not None:
        refs = refs.filter(pl.col("split") == split)
    return pl.concat([frame, refs.sort("scenario", "split", "checkpoint")], how="diagonal_relaxed")


def split_baselines(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(sources, baselines)``: the rows of ``frame`` that are not references, and those that are."""
    if "source_kind" not in frame.columns:
        return frame, frame.clear()
    is_ref = pl.col("source_kind").eq(BASELINE).fill_null(False)
    return frame.filter(~is_ref), frame.filter(is_ref)


def _reference_mask(frame: pl.DataFrame) -> list[bool]:
    if "source_kind" not in frame.columns:
        return [False] * frame.height
    return frame["source_kind"].eq(BASELINE).fill_null(False).to_list()


def whole_metrics(frame: pl.DataFrame, prefix: str) -> list[str]:
    """The whole-vector metric columns of one comparison present in ``frame``, in registry order."""
    names = [f"{prefix}_{m}" for m in METRICS if f"{prefix}_{m}" in frame.columns]
    return [c for c in names if frame[c].is_not_null().any()]


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pl.DataFrame, columns: Sequence[str], *, bold_best: bool = False,
                   headers: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table of ``columns``; with ``bold_best`` the best value of each
    registered metric column is bold (lowest, or highest for ``higher_is_better`` metrics), in
    every row that ties for it.  Baseline rows (``source_kind = 'baseline'``) are references:
    their first cell is in italics and their values are never bold nor compete for best."""
    columns = [c for c in columns if c in frame.columns]
    refs = _reference_mask(frame)
    best = _best_rows(frame, columns, refs) if bold_best and refs.count(False) > 1 else {}
    head = list(headers) if headers is not None else columns
    lines = ["| " + " | ".join(_fmt(h) for h in head) + " |", "|" + "---|" * len(columns)]
    for i, row in enumerate(frame.select(columns).iter_rows()):
        cells = [f"**{_fmt(v)}**" if i in best.get(c, ()) else _fmt(v) for c, v in zip(columns, row, strict=True)]
        if refs[i] and cells and cells[0]:
            cells[0] = f"*{cells[0]}*"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _best_rows(frame: pl.DataFrame, columns: Sequence[str], refs: Sequence[bool]) -> dict[str, set[int]]:
    out = {}
    for col in columns:
        spec = METRICS.get(col.split("_", 1)[1]) if "_" in col else None
        if spec is None or frame[col].dtype != pl.Float64:
            continue
        values = [None if v is None or math.isnan(v) or ref else v for v, ref in zip(frame[col], refs, strict=True)]
        finite = [v for v in values if v is not None]
        if finite:
            best = max(finite) if spec.higher_is_better else min(finite)
            out[col] = {i for i, v in enumerate(values) if v == best}
    return out


def unbeaten_by_checkpoints(frame: pl.DataFrame, columns: Sequence[str]) -> tuple[list[str], int]:
    """The metric columns on which no checkpoint beats the best baseline of ``frame`` (strictly; a tie
    does not beat), and how many columns had both a checkpoint and a baseline value to compare."""
    refs = _reference_mask(frame)
    unbeaten, compared = [], 0
    for col in columns:
        spec = METRICS.get(col.split("_", 1)[1]) if "_" in col else None
        if spec is None:
            continue
        sign = -1.0 if spec.higher_is_better else 1.0
        values = [(sign * v, ref) for v, ref in zip(frame[col], refs, strict=True) if v is not None and not math.isnan(v)]
        ours, theirs = [v for v, r in values if not r], [v for v, r in values if r]
        if ours and theirs:
            compared += 1
            if min(ours) >= min(theirs):
                unbeaten.append(col)
    return unbeaten, compared


def ranked_last(frame: pl.DataFrame, checkpoint: str, columns: Sequence[str]) -> tuple[list[str], int]:
    """The metric columns on which ``checkpoint`` is the worst of the checkpoints of ``frame`` (ties for
    worst included; baselines left out), and how many columns it has a value on."""
    refs = _reference_mask(frame)
    labels = frame["checkpoint"].to_list()
    last, compared = [], 0
    for col in columns:
        spec = METRICS.get(col.split("_", 1)[1]) if "_" in col else None
        if spec is None:
            continue
        sign = -1.0 if spec.higher_is_better else 1.0
        values = {i: sign * v for i, v in enumerate(frame[col]) if not refs[i] and v is not None and not math.isnan(v)}
        mine = [v for i, v in values.items() if labels[i] == checkpoint]
        if mine and len(values) > 1:
            compared += 1
            if mine[0] >= max(values.values()):
                last.append(col)
    return last, compared


def baseline_line(frame: pl.DataFrame, columns: Sequence[str]) -> str | None:
    """One plain sentence: on how many metrics no checkpoint beats the best baseline (None without baselines)."""
    unbeaten, compared = unbeaten_by_checkpoints(frame, columns)
    if not compared:
        return None
    names = ", ".join(c.split("_", 1)[1] for c in unbeaten)
    if not unbeaten:
        return f"On each of the {compared} metrics with a baseline value, some checkpoint beats every baseline."
    if len(unbeaten) == compared:
        return f"**No checkpoint beats the best baseline on any of the {compared} metrics** ({names})."
    return f"**No checkpoint beats the best baseline on {len(unbeaten)} of the {compared} metrics**: {names}."


def _config(frame: pl.DataFrame) -> pl.DataFrame:
    if "d_model" not in frame.columns:
        return frame.with_columns(config=pl.lit(None, dtype=pl.String))
    text = pl.format("d{} h{} ff{} N{} neck{}", *(pl.col(c) for c in ("d_model", "n_heads", "d_ff", "n_layers", "neck")))
    return frame.with_columns(config=pl.when(pl.col("d_model").is_not_null()).then(text))


def render_markdown(frame: pl.DataFrame, *, title: str = "Merging-model evaluations", plots: Sequence[Path] = (),
                    relative_to: Path | None = None, snapshot: int | None = None) -> str:
    """The report's Markdown for ``frame`` (rows of ``evaluations``, and of ``evaluation_baselines``
    with ``source_kind = 'baseline'``), linking ``plots``."""
    sources, refs = split_baselines(frame)
    sources = _config(short_labels(sources))
    frame = pl.concat([sources, _config(refs)], how="diagonal_relaxed") if refs.height else sources
    kept = f" and {refs.height} baseline rows" if refs.height else ""
    parts = [f"# {title}", "",
             f"{sources.height} evaluated sources{kept}; report of lake snapshot "
             f"{snapshot if snapshot is not None else '?'}; generated {datetime.now(UTC).isoformat(timespec='seconds')}. "
             "Each section names the snapshot its pairs were read at (\"pairs of snapshot N\").", "",
             "Each metric is the mean over pairs (NaN pairs left out) of "
             "`weightlake.analysis.metrics.compute_all`. Checkpoints are named by the part of their path "
             "that tells them apart (the full paths are listed under Sources).", "",
             *_baseline_legend(refs), *_assumed_warning(sources), "## Summary", "", markdown_table(frame, _SUMMARY),
             *_accuracy_notes(frame)]
    parts += _configurations(sources)
    for heading, group in scored_groups(frame):
        parts += ["", f"## {heading}", "", "Bold marks the best checkpoint value among the rows of this section "
                  "only (they were scored on the same pairs), in every row that ties for it."
                  + (" Baselines (italics) are references, never bold." if _reference_mask(group).count(True) else "")]
        for prefix in COMPARISONS:
            cols = whole_metrics(group, prefix)
            if not cols:
                continue
            rows = group.filter(pl.any_horizontal(pl.col(cols).is_not_null()))
            headers = ["checkpoint", *(HEADERS.get(c.split("_", 1)[1], c.split("_", 1)[1]) for c in cols)]
            parts += ["", f"### {TITLES[prefix]}", "", markdown_table(rows, ["checkpoint", *cols], bold_best=True,
                                                                       headers=headers)]
            line = baseline_line(rows, cols)
            parts += ["", line] if line else []
            parts += _layer_tables(rows, prefix)
    parts += _variety(sources)
    parts += _sources(sources)
    if plots:
        parts += ["", "## Plots", ""]
        parts += [f"![{p.stem}]({p.relative_to(relative_to) if relative_to else p})" for p in plots]
    return "\n".join(parts) + "\n"


PAIR_KEYS: tuple[str, ...] = ("scenario", "split", "source_kind", "n_pairs", "snapshot", "limit_pairs", "pair_seed")
"""Rows agreeing on these were scored on the same pairs (tracking files on their own rows)."""


def scored_groups(frame: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
    """``(heading, rows)`` per set of sources scored on the same pairs (see :data:`PAIR_KEYS`), each
    followed by the baseline rows scored on those pairs (:data:`~weightlake.experiments.baselines.PAIRSET`)."""
    sources, refs = split_baselines(frame)
    keys = [k for k in PAIR_KEYS if k in sources.columns]
    if not keys:
        return [("All sources", frame)]
    on = [k for k in PAIRSET if k in sources.columns and k in refs.columns]
    out = []
    for part in sources.partition_by(keys, maintain_order=True):
        row = part.row(0, named=True)
        words = [f"scenario {row['scenario']}" if "scenario" in row else None,
                 f"split {row['split'] or 'all'}" if "split" in row else None,
                 f"{row['source_kind']}s" if row.get("source_kind") else None,
                 (f"{row['n_pairs']} pairs" + (f" of snapshot {row['snapshot']}" if row.get("snapshot") is not None
                                               else "")) if row.get("n_pairs") is not None else None]
        if refs.height and on and row.get("source_kind") == "checkpoint":
            mine = refs.join(part.select(on).unique().with_columns(pl.col(k).cast(refs.schema[k]) for k in on),
                             on=on, how="semi", nulls_equal=True)
            part = pl.concat([part, mine], how="diagonal_relaxed")
        out.append((", ".join(w for w in words if w), part))
    return out


def _baseline_legend(refs: pl.DataFrame) -> list[str]:
    if not refs.height:
        return []
    notes = refs.unique("checkpoint", maintain_order=True).select("checkpoint", "baseline_note").iter_rows()
    return ["Baselines are reference rows, not checkpoints: trivial predictions scored on the same pairs with the "
            "same metrics and the same rebuilt-CNN images (" + "; ".join(f"`{c}`: {n}" for c, n in notes) + ").", ""]


def _accuracy_notes(frame: pl.DataFrame) -> list[str]:
    if "accuracy_note" not in frame.columns:
        return []
    notes = [n for n in frame["accuracy_note"].unique(maintain_order=True).to_list() if n]
    if not notes:
        return []
    return ["", "`pd_accuracy`: percent of held-out images the rebuilt predicted CNNs classify right, mean over "
            "`accuracy_models` pairs; `gt_accuracy`: the same pairs' target CNNs on the same images with the same "
            "scorer. Scorer: " + "; ".join(notes) + "."]


def shorten_paths(paths: Sequence[str]) -> list[str]:
    """The part of each path that tells it apart: leading folders common to all dropped, and a
    folder the same at the same depth in all replaced by ``...``; file names are kept whole.

    Distinct paths stay distinct; a single path keeps only its file name.
    """
    split = [PurePosixPath(str(p).replace("\\", "/")).parts for p in paths]
    if not split:
        return []
    dirs = [p[:-1] for p in split]
    lead = 0
    while all(len(d) > lead for d in dirs) and len({d[lead] for d in dirs}) == 1:
        lead += 1
    same_depth = len({len(d) for d in dirs}) == 1
    out = []
    for d, p in zip(dirs, split, strict=True):
        middle = [part if not same_depth or len({o[i] for o in dirs}) > 1 else "..."
                  for i, part in enumerate(d) if i >= lead]
        while middle and middle[0] == "...":
            middle.pop(0)
        out.append("/".join([*_squeeze(middle), p[-1]]))
    return out if len(set(out)) == len(set(map(str, paths))) else [str(p) for p in paths]


def _squeeze(parts: list[str]) -> list[str]:
    out: list[str] = []
    for part in parts:
        if not (part == "..." and out and out[-1] == "..."):
            out.append(part)
    return out


def short_labels(frame: pl.DataFrame) -> pl.DataFrame:
    """``checkpoint`` shortened by :func:`shorten_paths`, the original kept as ``source_path``."""
    if "checkpoint" not in frame.columns or frame.height == 0:
        return frame
    full = [str(c) for c in frame["checkpoint"].to_list()]
    return frame.with_columns(source_path=pl.Series(full), checkpoint=pl.Series(shorten_paths(full)))


def _sources(frame: pl.DataFrame) -> list[str]:
    if frame.height == 0 or "source_path" not in frame.columns or frame["source_path"].equals(frame["checkpoint"]):
        return []
    return ["", "## Sources", "", markdown_table(frame.unique("checkpoint", maintain_order=True),
                                                 ["checkpoint", "source_path"])]


_CONFIG_TABLE = ("checkpoint", "heads_source", "n_heads", "d_model", "d_ff", "n_layers", "neck", "seq_len",
                 "gated_attention", "output_head", "dropout", "n_params")


def _assumed_warning(frame: pl.DataFrame) -> list[str]:
    if "heads_source" not in frame.columns:
        return []
    assumed = frame.filter(pl.col("heads_source") == "assumed")["checkpoint"].to_list()
    refused = frame.filter(pl.col("heads_source") == "unknown")["checkpoint"].to_list()
    out = []
    if assumed:
        out += [f"**heads_from=assumed: {len(assumed)} sources ran with a head count nothing records "
                f"(`--assume-heads`): {', '.join(assumed)}. Their metrics hold only if that guess is right.**", ""]
    if refused:
        out += [f"Refused for want of a head count (no metrics): {', '.join(refused)}.", ""]
    return out


def _configurations(frame: pl.DataFrame) -> list[str]:
    """Every inferred hyperparameter and where the head count came from, one row per checkpoint."""
    if "d_model" not in frame.columns or not frame["d_model"].is_not_null().any():
        return []
    rows = frame.filter(pl.col("d_model").is_not_null())
    return ["", "## Inferred configurations", "",
            "Read from tensor shapes (gating: presence of `attn.gate`; output head: `dec.lay.heads.*` or "
            "`dec.lay.linear`); heads from `heads_source` (option, sidecar, run_dir_name, or assumed); dropout "
            "from a sidecar, else 0.", "", markdown_table(rows, _CONFIG_TABLE)]


def layer_columns(frame: pl.DataFrame, prefix: str, metric: str) -> list[str]:
    """``<prefix>_<metric>_<layer>`` columns with values, in file order (``pd_mse_conv1``, ...)."""
    rx = re.compile(rf"^{prefix}_{re.escape(metric)}_([a-z][a-z0-9]*)$")
    return [c for c in frame.columns if (m := rx.match(c)) and f"{metric}_{m.group(1)}" not in METRICS
            and frame[c].is_not_null().any()]


def _layer_tables(frame: pl.DataFrame, prefix: str) -> list[str]:
    out: list[str] = []
    for metric in KEY_METRICS:
        cols = layer_columns(frame, prefix, metric)
        if cols:
            headers = ["checkpoint", *(c.rsplit("_", 1)[1] for c in cols)]
            out += ["", f"#### {prefix} `{metric}` per layer", "",
                    markdown_table(frame, ["checkpoint", *cols], headers=headers)]
    return out


def _variety(frame: pl.DataFrame) -> list[str]:
    cols = ["checkpoint", "collapsed", "pd_partial_collapse", "pd_top_row_share", "pd_unique_value_share", "pd_distinct_rows",
            "pd_across_rows_pearson", "pd_across_rows_pearson_reason", "pd_silhouette", "pd_silhouette_reason",
            "gt_silhouette", "fn_collapsed"]
    if "collapsed" not in frame.columns:
        return []
    return ["", "## Collapse and variety", "",
            "A source is collapsed when over 99 % of its predicted rows are one vector; statistics that need "
            "variety across rows are then NaN, with the reason. It is partially collapsed when over "
            f"{PARTIAL_COLLAPSE_SHARE:.0%} (and at most 99 %) are one vector (`pd_top_row_share` is the share).", "", markdown_table(frame, cols)]


# -- plots ---------------------------------------------------------------------------------------
def plot_key_metrics(frame: pl.DataFrame, path: Path) -> Path | None:
    """Horizontal bars of the key PD metrics per source (one panel per metric); baselines (grey,
    hatched, below the checkpoints) are references, and a dashed line marks the best baseline."""
    cols = [f"pd_{m}" for m in KEY_METRICS if f"pd_{m}" in frame.columns and frame[f"pd_{m}"].is_not_null().any()]
    if not cols:
        return None
    plt = _pyplot()
    labels, refs = frame["checkpoint"].to_list(), _reference_mask(frame)
    fig, axes = plt.subplots(1, len(cols), figsize=(4 * len(cols), 0.4 * len(labels) + 1.8), squeeze=False)
    for ax, col in zip(axes[0], cols, strict=True):
        values = [v if v is not None else float("nan") for v in frame[col].to_list()]
        bars = ax.barh(range(len(labels)), values, color=["0.7" if r else "tab:blue" for r in refs])
        for i, (bar, ref) in enumerate(zip(bars, refs, strict=True)):
            bar.set_hatch("//" if ref else "")
            if math.isnan(values[i]):
                ax.text(0, i, " NaN", va="center", fontsize=7, color="0.3")
        spec = METRICS[col[3:]]
        ref_values = [v for v, r in zip(values, refs, strict=True) if r and not math.isnan(v)]
        if ref_values:
            ax.axvline(max(ref_values) if spec.higher_is_better else min(ref_values), color="0.3", ls="--", lw=1,
                       label="best baseline")
        ax.set_yticks(range(len(labels)), labels if ax is axes[0][0] else [""] * len(labels), fontsize=7)
        for tick, ref in zip(ax.get_yticklabels(), refs, strict=True):
            tick.set_style("italic" if ref else "normal")
        ax.set_ylim(len(labels) - 0.5, -0.5)  # every panel the same rows (a NaN bar would shift autoscaling)
        better = "higher" if spec.higher_is_better else "lower"
        ax.set_title(f"{col[3:]}, predicted vs target\n({better} is better)", fontsize=9)
        ax.set_xlabel(f"{LABELS.get(col[3:], col[3:])}, mean over pairs", fontsize=8)
        ax.locator_params(axis="x", nbins=4)
        ax.tick_params(axis="x", labelsize=7)
    if any(refs):
        from matplotlib.patches import Patch

        handles = [Patch(color="tab:blue", label="checkpoint"),
                   Patch(facecolor="0.7", hatch="//", label="baseline (reference, same pairs)"),
                   plt.Line2D([], [], color="0.3", ls="--", lw=1, label="best baseline")]
        fig.suptitle(caption(frame), fontsize=8)
        fig.tight_layout()
        fig.legend(handles=handles, loc="upper center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, 0.0))
        return _save(fig, path, tight=False)
    return _save(fig, path, caption(frame))


def metric_ranks(frame: pl.DataFrame, cols: Sequence[str]) -> Any:
    """``float [rows, len(cols)]``: each row's rank within each ``pd_<metric>`` column, 0 best to 1 worst
    (ties share their mean rank); NaN where the value is missing, and for a column of one value or of
    every row tied (was: drawn as every row worst)."""
    import numpy as np

    ranks = np.full((frame.height, len(cols)), np.nan)
    for j, col in enumerate(cols):
        values = frame[col].cast(pl.Float64).fill_nan(None)
        sign = -1.0 if METRICS[col[3:]].higher_is_better else 1.0
        ranked = (values * sign).rank("average").to_numpy().astype(float)
        valid = np.isfinite(ranked)
        if valid.sum() < 2 or values.drop_nulls().n_unique() < 2:
            continue
        ranks[:, j] = (ranked - 1) / (valid.sum() - 1)
    return ranks


def plot_rank_heatmap(frame: pl.DataFrame, path: Path) -> Path | None:
    """Sources x whole-vector PD metrics, coloured by rank (0 best, 1 worst) within each metric, among
    every row shown: baselines (below the line, in italics) are ranked with the checkpoints."""

    cols = whole_metrics(frame, "pd")
    if not cols or frame.height < 1:
        return None
    plt = _pyplot()
    ranks = metric_ranks(frame, cols)
    fig, ax = plt.subplots(figsize=(0.45 * len(cols) + 3, 0.35 * frame.height + 2))
    cmap = plt.get_cmap("viridis_r").with_extremes(bad="0.85")
    image = ax.imshow(ranks, cmap=cmap, vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(cols)), [c[3:] for c in cols], rotation=90, fontsize=7)
    ax.set_yticks(range(frame.height), frame["checkpoint"].to_list(), fontsize=7)
    refs = _reference_mask(frame)
    for tick, ref in zip(ax.get_yticklabels(), refs, strict=True):
        tick.set_style("italic" if ref else "normal")
    if any(refs) and not all(refs):
        ax.axhline(refs.index(True) - 0.5, color="white", lw=3)
    among = "checkpoints and baselines" if any(refs) else "rows"
    fig.colorbar(image, ax=ax, label=f"rank within metric among {among}\n(0 = best; grey = NaN, or every row tied)")
    return _save(fig, path, caption(frame))


def plot_layers(frame: pl.DataFrame, path: Path, metric: str = "mse") -> Path | None:
    """One line per source: the PD metric per layer (log scale when every value is positive)."""
    cols = layer_columns(frame, "pd", metric)
    if not cols or frame.height < 1:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    refs = _reference_mask(frame)
    for row, ref in zip(frame.select("checkpoint", *cols).iter_rows(), refs, strict=True):
        k = refs[:len(ax.lines)].count(True) if ref else 0  # baselines: grey, told apart by marker and dash
        style = {"color": "0.35", "ls": ("--", ":", "-.")[k % 3], "marker": "s^D"[k % 3], "mfc": "white"} \
            if ref else {"marker": "o"}
        ax.plot(range(len(cols)), [v if v is not None else float("nan") for v in row[1:]], label=row[0], **style)
    ax.set_xticks(range(len(cols)), [c.rsplit("_", 1)[1] for c in cols])
    ax.set_xlabel("layer")
    ax.set_ylabel(f"{metric}, predicted vs target (mean over pairs)")
    if all(v is not None and v > 0 for c in cols for v in frame[c].to_list()):
        ax.set_yscale("log")
    if frame.height > 24:
        return _save(fig, path, caption(frame))
    # below the axes: inside it covered points, beside them it squeezed the axes. Laid out before the
    # legend exists, so tight_layout does not shrink the axes for it; the saved bounding box holds it.
    fig.suptitle(caption(frame), fontsize=8)
    fig.tight_layout()
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    return _save(fig, path, tight=False)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def caption(frame: pl.DataFrame) -> str:
    """What a plot's rows were scored on: each set of pairs (see :func:`scored_groups`) and its sources."""
    groups = scored_groups(frame)
    text = "; ".join(f"{heading} ({_counts(part)})" for heading, part in groups[:3])
    more = f"; +{len(groups) - 3} more" if len(groups) > 3 else ""
    warn = " - rows scored on different pairs, compare within a set" if len(groups) > 1 else ""
    return text + more + warn


def _counts(part: pl.DataFrame) -> str:
    refs = _reference_mask(part).count(True)
    return f"{part.height - refs} sources" + (f", {refs} baselines" if refs else "")


def _save(fig: Any, path: Path, title: str | None = None, *, tight: bool = True) -> Path:
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:  # a figure-level legend placed by hand would be overlapped by tight_layout
        fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # a legend beside the axes stays in the picture
    plt.close(fig)
    return path


def _plot_labels(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows of several sets of pairs: each label names its set, else the same checkpoint scored on two
    sets (or two sets' baselines) would be two bars with one name."""
    if len(scored_groups(frame)) < 2 or not {"n_pairs", "snapshot"} <= set(frame.columns):
        return frame
    tag = pl.format(" [{} pairs of snapshot {}]", pl.col("n_pairs"), pl.col("snapshot"))
    return frame.with_columns(checkpoint=pl.concat_str(pl.col("checkpoint"), tag.fill_null("")))


def write_report(lake_root: str | Path | None, out: str | Path, *, scenario: str | None = None,
                 split: str | None = None, plots: bool = True, snapshot: int | None = None) -> ReportResult:
    """Write the Markdown report (and PNG plots in ``<stem>_plots/``) of the lake's evaluations
    (at snapshot ``snapshot``, default the newest).

    Raises
    ------
    NoSuchTableError
        The lake has no evaluations (or none for ``scenario`` / ``split``), or no such snapshot.
    """
    from weightlake.lake import open_lake

    lake = open_lake(lake_root)
    lake = lake if snapshot is None else lake.at(snapshot)
    frame = load_evaluations(lake, scenario, split)
    if frame.height == 0:
        raise NoSuchTableError(f"no evaluations for scenario {scenario!r} split {split!r} at snapshot {lake.snapshot}")
    n_sources = frame.height
    frame = with_baselines(lake, frame, scenario, split)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    if plots:
        folder = out.with_name(f"{out.stem}_plots")
        usable = frame.filter(pl.col("error").is_null()) if "error" in frame.columns else frame
        sources, refs = split_baselines(usable)
        ok = _plot_labels(pl.concat([short_labels(sources), refs], how="diagonal_relaxed"))
        for fn, name in ((plot_key_metrics, "key_metrics.png"), (plot_rank_heatmap, "rank_heatmap.png"),
                         (plot_layers, "layers_mse.png")):
            made += [p for p in [fn(ok, folder / name)] if p is not None]
    out.write_text(render_markdown(frame, plots=made, relative_to=out.parent, snapshot=lake.snapshot))
    return ReportResult(out, made, n_sources, lake.snapshot)
