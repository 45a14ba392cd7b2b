"""A Markdown report of every evaluated checkpoint and tracking file, with PNG plots.

:func:`write_report` reads the ``evaluations`` table at one snapshot and writes:

* a summary table (one row per source: config, loss, epoch, pairs, collapse, accuracy),
* a table of every whole-vector metric for each comparison present (PD vs GT, FN vs GT,
  PD vs FN), the best value of each column in bold,
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
from weightlake.experiments.evaluate import COMPARISONS, EVALUATIONS

if TYPE_CHECKING:
    from weightlake.lake import Lake

TITLES: dict[str, str] = {"pd": "Predicted vs ground truth (PD vs GT)", "fn": "Fine-tuned vs ground truth (FN vs GT)",
                          "pdfn": "Predicted vs fine-tuned (PD vs FN)"}
KEY_METRICS: tuple[str, ...] = ("mse", "w1", "cosine", "kl")
"""Metrics shown per layer and plotted per source."""

_SUMMARY = ("checkpoint", "source_kind", "scenario", "split", "loss", "epoch", "config", "heads_source", "n_pairs",
            "collapsed",
            "pd_partial_collapse", "pd_top_row_share", "pd_accuracy", "gt_accuracy", "error")


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
    registered metric column is bold (lowest, or highest for ``higher_is_better`` metrics)."""
    columns = [c for c in columns if c in frame.columns]
    best = _best_rows(frame, columns) if bold_best and frame.height > 1 else {}
    head = list(headers) if headers is not None else columns
    lines = ["| " + " | ".join(_fmt(h) for h in head) + " |", "|" + "---|" * len(columns)]
    for i, row in enumerate(frame.select(columns).iter_rows()):
        cells = [f"**{_fmt(v)}**" if best.get(c) == i else _fmt(v) for c, v in zip(columns, row, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _best_rows(frame: pl.DataFrame, columns: Sequence[str]) -> dict[str, int]:
    out = {}
    for col in columns:
        spec = METRICS.get(col.split("_", 1)[1]) if "_" in col else None
        if spec is None or frame[col].dtype != pl.Float64:
            continue
        values = frame[col].fill_nan(None)
        if values.is_null().all():
            continue
        out[col] = int((values.arg_max() if spec.higher_is_better else values.arg_min()) or 0)
    return out


def _config(frame: pl.DataFrame) -> pl.DataFrame:
    if "d_model" not in frame.columns:
        return frame.with_columns(config=pl.lit(None, dtype=pl.String))
    text = pl.format("d{} h{} ff{} N{} neck{}", *(pl.col(c) for c in ("d_model", "n_heads", "d_ff", "n_layers", "neck")))
    return frame.with_columns(config=pl.when(pl.col("d_model").is_not_null()).then(text))


def render_markdown(frame: pl.DataFrame, *, title: str = "Merging-model evaluations", plots: Sequence[Path] = (),
                    relative_to: Path | None = None, snapshot: int | None = None) -> str:
    """The report's Markdown for ``frame`` (rows of ``evaluations``), linking ``plots``."""
    frame = _config(short_labels(frame))
    parts = [f"# {title}", "",
             f"{frame.height} evaluated sources; lake snapshot {snapshot if snapshot is not None else '?'}; "
             f"generated {datetime.now(UTC).isoformat(timespec='seconds')}.", "",
             "Each metric is the mean over pairs (NaN pairs left out) of "
             "`weightlake.analysis.metrics.compute_all`. Checkpoints are named by the part of their path "
             "that tells them apart (the full paths are listed under Sources).", "",
             *_assumed_warning(frame), "## Summary", "", markdown_table(frame, _SUMMARY)]
    parts += _configurations(frame)
    for heading, group in scored_groups(frame):
        parts += ["", f"## {heading}", "", "Bold marks the best value among the rows of this section only: "
                  "they were scored on the same pairs."]
        for prefix in COMPARISONS:
            cols = whole_metrics(group, prefix)
            if not cols:
                continue
            rows = group.filter(pl.any_horizontal(pl.col(cols).is_not_null()))
            headers = ["checkpoint", *(c.split("_", 1)[1] for c in cols)]
            parts += ["", f"### {TITLES[prefix]}", "", markdown_table(rows, ["checkpoint", *cols], bold_best=True,
                                                                       headers=headers)]
            parts += _layer_tables(rows, prefix)
    parts += _variety(frame)
    parts += _sources(frame)
    if plots:
        parts += ["", "## Plots", ""]
        parts += [f"![{p.stem}]({p.relative_to(relative_to) if relative_to else p})" for p in plots]
    return "\n".join(parts) + "\n"


PAIR_KEYS: tuple[str, ...] = ("scenario", "split", "source_kind", "n_pairs", "snapshot")
"""Rows agreeing on these were scored on the same pairs (tracking files on their own rows)."""


def scored_groups(frame: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
    """``(heading, rows)`` per set of rows scored on the same pairs (see :data:`PAIR_KEYS`)."""
    keys = [k for k in PAIR_KEYS if k in frame.columns]
    if not keys:
        return [("All sources", frame)]
    out = []
    for part in frame.partition_by(keys, maintain_order=True):
        row = part.row(0, named=True)
        words = [f"scenario {row['scenario']}" if "scenario" in row else None,
                 f"split {row['split'] or 'all'}" if "split" in row else None,
                 f"{row['source_kind']}s" if row.get("source_kind") else None,
                 f"{row['n_pairs']} pairs" if row.get("n_pairs") is not None else None,
                 f"snapshot {row['snapshot']}" if row.get("snapshot") is not None else None]
        out.append((", ".join(w for w in words if w), part))
    return out


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
    if "source_path" not in frame.columns or frame["source_path"].equals(frame["checkpoint"]):
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
    """Horizontal bars of the key PD metrics per source (one panel per metric)."""
    cols = [f"pd_{m}" for m in KEY_METRICS if f"pd_{m}" in frame.columns and frame[f"pd_{m}"].is_not_null().any()]
    if not cols:
        return None
    plt = _pyplot()
    labels = frame["checkpoint"].to_list()
    fig, axes = plt.subplots(1, len(cols), figsize=(4 * len(cols), 0.4 * len(labels) + 1.5), squeeze=False)
    for ax, col in zip(axes[0], cols, strict=True):
        values = [v if v is not None else float("nan") for v in frame[col].to_list()]
        ax.barh(range(len(labels)), values, color="tab:blue")
        ax.set_yticks(range(len(labels)), labels if ax is axes[0][0] else [""] * len(labels), fontsize=7)
        ax.invert_yaxis()
        better = "higher" if METRICS[col[3:]].higher_is_better else "lower"
        ax.set_title(f"{col[3:]}, predicted vs target\n({better} is better)", fontsize=9)
        ax.locator_params(axis="x", nbins=4)
        ax.tick_params(axis="x", labelsize=7)
    return _save(fig, path, caption(frame))


def plot_rank_heatmap(frame: pl.DataFrame, path: Path) -> Path | None:
    """Sources x whole-vector PD metrics, coloured by rank (0 best, 1 worst) within each metric."""
    import numpy as np

    cols = whole_metrics(frame, "pd")
    if not cols or frame.height < 1:
        return None
    plt = _pyplot()
    ranks = np.full((frame.height, len(cols)), np.nan)
    for j, col in enumerate(cols):
        values = frame[col].cast(pl.Float64).fill_nan(None)
        sign = -1.0 if METRICS[col[3:]].higher_is_better else 1.0
        ranked = (values * sign).rank("average").to_numpy().astype(float)
        ranks[:, j] = (ranked - 1) / max(np.nanmax(ranked) - 1, 1) if np.isfinite(ranked).any() else np.nan
    fig, ax = plt.subplots(figsize=(0.45 * len(cols) + 3, 0.35 * frame.height + 2))
    image = ax.imshow(ranks, cmap="viridis_r", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(cols)), [c[3:] for c in cols], rotation=90, fontsize=7)
    ax.set_yticks(range(frame.height), frame["checkpoint"].to_list(), fontsize=7)
    fig.colorbar(image, ax=ax, label="rank within metric (0 = best)")
    return _save(fig, path, caption(frame))


def plot_layers(frame: pl.DataFrame, path: Path, metric: str = "mse") -> Path | None:
    """One line per source: the PD metric per layer (log scale when every value is positive)."""
    cols = layer_columns(frame, "pd", metric)
    if not cols or frame.height < 1:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in frame.select("checkpoint", *cols).iter_rows():
        ax.plot(range(len(cols)), [v if v is not None else float("nan") for v in row[1:]], marker="o", label=row[0])
    ax.set_xticks(range(len(cols)), [c.rsplit("_", 1)[1] for c in cols])
    ax.set_xlabel("layer")
    ax.set_ylabel(f"{metric}, predicted vs target")
    if all(v is not None and v > 0 for c in cols for v in frame[c].to_list()):
        ax.set_yscale("log")
    if frame.height <= 12:  # beside the axes: inside, it covered points
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return _save(fig, path, caption(frame))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def caption(frame: pl.DataFrame) -> str:
    """What a plot's rows were scored on: each set of pairs (see :func:`scored_groups`) and its sources."""
    groups = scored_groups(frame)
    text = "; ".join(f"{heading} ({part.height} sources)" for heading, part in groups[:3])
    more = f"; +{len(groups) - 3} more" if len(groups) > 3 else ""
    warn = " - rows scored on different pairs, compare within a set" if len(groups) > 1 else ""
    return text + more + warn


def _save(fig: Any, path: Path, title: str | None = None) -> Path:
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # a legend beside the axes stays in the picture
    plt.close(fig)
    return path


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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    if plots:
        folder = out.with_name(f"{out.stem}_plots")
        ok = short_labels(frame.filter(pl.col("error").is_null()) if "error" in frame.columns else frame)
        for fn, name in ((plot_key_metrics, "key_metrics.png"), (plot_rank_heatmap, "rank_heatmap.png"),
                         (plot_layers, "layers_mse.png")):
            made += [p for p in [fn(ok, folder / name)] if p is not None]
    out.write_text(render_markdown(frame, plots=made, relative_to=out.parent, snapshot=lake.snapshot))
    return ReportResult(out, made, frame.height, lake.snapshot)
