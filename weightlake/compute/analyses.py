"""Analysis results as lake tables (spectra, correlations): compute over a pinned snapshot, commit atomically.

The functions here are thin: they read weights and metadata from one snapshot, call the
pure array functions of :mod:`~weightlake.analysis.spectra` and
:mod:`~weightlake.analysis.correlations`, and commit the result as a derived table
(partitioned by zoo, so re-running replaces that zoo's results) that records the snapshot
and parameters that produced it.  SQL sees the tables as views (``spectra``,
``correlations``); polars reads them through :class:`LakeAnalysis`.

Both count distinct models by default
(:func:`~weightlake.analysis.distinct.distinct_models`: one row per weight vector,
fallback copies of early-stopped models dropped), record the selection in the table's
params (``models``: rows, distinct, dropped) and say what they dropped in the report's
``notes``; ``all_rows=True`` analyses every row as before.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from weightlake._util import non_finite_rows
from weightlake.errors import QueryError


@dataclass
class AnalysisReport:
    table: str
    zoo: str
    rows: int
    snapshot: int | None
    seconds: float
    plots: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    n_models: int | None = None
    """Models (weight rows) the analysis used: distinct ones unless ``all_rows``."""

    def __str__(self) -> str:
        text = (f"table {self.table!r}: {self.rows} rows for zoo {self.zoo!r} "
                f"(snapshot {self.snapshot}, {self.seconds:.1f} s)")
        return text + "".join(f"\n   {n}" for n in self.notes) + "".join(f"\n   plot: {p}" for p in self.plots)


def _zoo_rows(lake: Any, zoo: str | None) -> tuple[str, np.ndarray, np.ndarray, pl.DataFrame]:
    zoo, ids, meta = _zoo_meta(lake, zoo)
    _, rows = lake.zoo_weights(zoo)
    refuse_non_finite(zoo, ids, rows)
    return zoo, ids, rows, meta


def refuse_non_finite(zoo: str, ids: np.ndarray, rows: np.ndarray, *, layer: str | None = None) -> None:
    """Refuse weight rows holding a NaN or an infinity, naming the models (one float32 sum per row).

    A lake written before ingestion refused them can hold such rows; an analysis over them
    fails deep inside a decomposition or gives NaN for the model, so it is refused up front.
    ``layer`` names the layer when ``rows`` hold one layer's weights (a per-layer read).
    """
    bad = non_finite_rows(rows)
    if len(bad):
        shown = ", ".join(str(int(ids[i])) for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
        where = f" in layer {layer!r}" if layer else ""
        raise QueryError(f"zoo {zoo!r}: {len(bad)} models have non-finite weights{where} (model_id {shown}); "
                         "`weightlake verify` counts them, and an analysis over them would give no numbers")


def _zoo_meta(lake: Any, zoo: str | None) -> tuple[str, np.ndarray, pl.DataFrame]:
    """A zoo's model ids in weight-row order and its metadata aligned with them (no weights read)."""
    zoo = zoo or lake._only_zoo()
    ids = lake.zoo_ids(zoo)
    meta = lake.models(zoo).collect()
    order = {mid: i for i, mid in enumerate(meta["model_id"].to_list())}
    meta = meta[[order[int(i)] for i in ids]]  # align metadata with weight rows
    return zoo, ids, meta


def _selection(meta: pl.DataFrame, all_rows: bool) -> tuple[np.ndarray, dict[str, Any], str]:
    """Which rows an analysis uses: ``(keep mask, params entry, note)``; distinct models unless ``all_rows``."""
    from weightlake.analysis.distinct import distinct_models

    selection = distinct_models(meta)
    if all_rows:
        note = (f"all {selection.n_rows} rows counted (all_rows): {selection.note(runs=False).split(' (pass')[0]}"
                f"{selection.runs_note()}")
        return (np.ones(meta.height, dtype=bool), {**selection.to_dict(), "all_rows": True, "used": selection.n_rows},
                note)
    used = {**selection.to_dict(), "all_rows": False, "used": selection.n_distinct}
    return np.asarray(selection.keep, dtype=bool), used, selection.note()


def _select_models(ids: np.ndarray, rows: np.ndarray, meta: pl.DataFrame,
                   all_rows: bool) -> tuple[np.ndarray, np.ndarray, pl.DataFrame, dict[str, Any], str]:
    """Distinct models of the zoo (or every row): ``(ids, rows, meta, params entry, note)``."""
    keep, used, note = _selection(meta, all_rows)
    if all_rows:
        return ids, rows, meta, used, note
    return ids[keep], rows[keep], meta.filter(pl.Series(keep)), used, note


def _commit(lake_root: Path, table: str, df: pl.DataFrame, zoo: str, params: dict[str, Any], snapshot: int, *,
            partition_by: Sequence[str] = ("zoo",), key: str | None = None,
            reads: Sequence[tuple[str, str, str]] = ()) -> int:
    """Commit ``df`` as the ``zoo`` part of ``table`` (column ``zoo`` added), ``params`` recorded under ``key``.

    ``partition_by`` (default the zoo) names the columns whose partitions a re-run replaces;
    a table of a scenario's pairs partitions by ``("scenario", "split")`` and records its
    params under the scenario's name.  ``reads``: the table partitions the analysis read
    besides the zoo, as ``(table, column, value)`` (see :func:`check_inputs_unchanged`).
    """
    from weightlake.storage.transaction import transaction

    key = key or zoo
    with transaction(Path(lake_root)) as tx:
        check_inputs_unchanged(tx, snapshot, zoo, reads)
        df, params = _keep_other_layers(tx, table, df, zoo, key, params)
        tx.put_table(table, df.with_columns(zoo=pl.lit(zoo)), partition_by=tuple(partition_by),
                     properties={"partition_by": list(partition_by), f"params:{key}": json.dumps(params)})
        return tx.commit({"op": f"analyze-{table}", "zoo": zoo,
                          "summary": f"{table}: {df.height} rows for {key} from snapshot {snapshot}"}).version


def check_inputs_unchanged(tx: Any, snapshot: int, zoo: str, parts: Sequence[tuple[str, str, str]] = ()) -> None:
    """Record what an analysis of ``snapshot`` read (the zoo, and ``parts``: ``(table, column, value)``
    partitions such as the scenario's pairs) and refuse to commit it when the lake moved and changed them.

    Was: any commit between the read and the commit (a ``scenario declare`` beside an
    ``analyze spectra``, or a spectra run of another zoo) threw the finished analysis away ("the
    lake moved ... run it again"). The table the analysis writes is not among its reads: a
    change of another partition of it merges at the commit, one of the same partition collides.
    A race at the commit itself is checked the same way (:meth:`Transaction.read`).
    """
    tx.read(zoos=[zoo], parts=[(table, (f"tables/{table}/{column}={value}/",)) for table, column, value in parts])
    if tx.parent.version == snapshot:
        return
    changed = tx.stale_reads(tx.parent, tx.store.version(snapshot))
    if changed:
        raise QueryError(f"the lake moved from snapshot {snapshot} to {tx.parent.version} during the analysis and "
                         f"{', '.join(changed)} changed; run it again")


def _keep_other_layers(tx: Any, table: str, df: pl.DataFrame, zoo: str, key: str,
                       params: dict[str, Any]) -> tuple[pl.DataFrame, dict[str, Any]]:
    """A run over some layers (``params["layers"]``) keeps the zoo's rows of the other layers.

    A re-run with ``--layers fc1`` replaced the whole zoo part of the table, so the other
    layers' rows vanished without a word.  They are kept when they were computed with the same
    settings (params equal apart from ``layers``, the same columns); otherwise the run is
    refused, naming the layers it would drop.
    """
    from weightlake.lake import Lake

    entry = tx.parent.tables.get(table)
    if not params.get("layers") or "layer" not in df.columns or entry is None or key != zoo:
        return df, params
    old = Lake(tx.store.location, tx.parent).table(table).filter(pl.col("zoo") == zoo).collect()
    others = old.filter(~pl.col("layer").is_in(df["layer"].unique().to_list())) if "layer" in old.columns else old
    if not others.height:
        return df, params
    before = json.loads(entry.properties.get(f"params:{key}", "null")) or {}
    per_layer = {"layers", "skipped", "betti_grids", "layers_kept"}  # entries that follow the layers a run covered

    def settings(p: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in p.items() if k not in per_layer}

    same = settings(before) == settings(params) and set(others.columns) - {"zoo"} == set(df.columns)
    dropped = sorted(others["layer"].unique().to_list()) if "layer" in others.columns else []
    if not same:
        raise QueryError(f"table {table!r} holds layers {dropped} of zoo {zoo!r}, computed with other settings (or "
                         f"over other models) than this run over {sorted(df['layer'].unique().to_list())}; name "
                         f"them too (--layers {','.join(dict.fromkeys([*dropped, *df['layer'].to_list()]))}) or run "
                         "without --layers, so no layer's rows are dropped")
    order = list(dict.fromkeys([*old["layer"].to_list(), *df["layer"].to_list()]))  # the earlier run's layer order
    rank = pl.col("layer").replace_strict(order, list(range(len(order))), return_dtype=pl.Int32)
    merged = (pl.concat([others.select(df.columns), df], how="vertical_relaxed")
              .sort(pl.col("model_id"), rank, maintain_order=True))
    out = {**params, "layers": list(dict.fromkeys(merged["layer"].to_list())), "layers_kept": dropped}
    if isinstance(before.get("betti_grids"), dict) and isinstance(params.get("betti_grids"), dict):
        out["betti_grids"] = {**{k: v for k, v in before["betti_grids"].items() if k in dropped},
                              **params["betti_grids"]}
    if "skipped" in before or "skipped" in params:
        out["skipped"] = sorted(set(before.get("skipped") or []) | set(params.get("skipped") or []))
    return merged, out


CONVENTIONS = {"weightlake": "spectra", "weightwatcher": "spectra_weightwatcher"}
"""Spectra conventions -> the table each one commits (they differ in columns, so they never share one)."""


def analyze_spectra(lake_root: Path | str, *, zoo: str | None = None, layers: Sequence[str] | None = None,
                    population: bool = False, all_rows: bool = False, convention: str = "weightlake",
                    progress: Callable[[int, int], Any] | None = None,
                    memory: str | int | None = None) -> AnalysisReport:
    """Per-layer random-matrix spectra -> table ``spectra`` (one row per model x layer).

    Distinct models only by default (a fallback copy has its original's spectrum, and
    summaries over the table would count it again); ``all_rows=True`` gives every row.
    ``progress(done, total)`` is called with models done after each block of
    :data:`SPECTRA_BLOCK` models.

    ``convention="weightwatcher"`` computes WeightWatcher 0.7.7's figures instead (see
    :mod:`weightlake.analysis.spectra_ww`) into table ``spectra_weightwatcher``.

    Weights are streamed in blocks under the memory budget ``memory`` (default
    ``$WEIGHTLAKE_MEMORY``, see :mod:`weightlake.storage.budget`); only the result table
    grows with the zoo.  The table equals the in-memory computation's row for row.
    """
    from weightlake.analysis.spectra import zoo_spectra
    from weightlake.analysis.spectra_ww import WW_VERSION, zoo_spectra_ww
    from weightlake.lake import open_lake

    if convention not in CONVENTIONS:
        raise QueryError(f"unknown spectra convention {convention!r}; expected one of {sorted(CONVENTIONS)}")
    started = time.perf_counter()
    lake = open_lake(lake_root, memory=memory)
    zoo, _, meta = _zoo_meta(lake, zoo)
    if convention == "weightlake":
        from weightlake.compute.layer_spectra import analyze_layer_spectra, per_layer

        if per_layer(lake, zoo):  # a tensors-layout zoo: each layer read alone
            return analyze_layer_spectra(lake_root, zoo=zoo, layers=layers, all_rows=all_rows, progress=progress,
                                         memory=memory)
    keep, models, note = _selection(meta, all_rows)
    compute = zoo_spectra if convention == "weightlake" else (
        lambda r, arch, block, layers: zoo_spectra_ww(r, arch, layers=layers))
    table = _spectra_streamed(compute, lake, zoo, keep, layers, progress)
    table = table.with_columns(layer=pl.col("layer").cast(pl.String), snapshot=pl.lit(lake.snapshot, dtype=pl.Int64))
    table = table.select("model_id", "layer", pl.exclude("model_id", "layer"))
    params: dict[str, Any] = {"layers": list(layers or []), "models": models}
    from weightlake.analysis.spectra import skipped_layers

    if skipped_layers(lake.arch(zoo), layers):
        params["skipped"] = skipped_layers(lake.arch(zoo), layers)
    if convention == "weightwatcher":
        params["convention"] = f"weightwatcher {WW_VERSION}"
    name = CONVENTIONS[convention]
    version = _commit(Path(lake_root), name, table, zoo, params, lake.snapshot)
    return AnalysisReport(name, zoo, table.height, version, time.perf_counter() - started,
                          notes=[note, *_no_alpha_note(table)], n_models=int(keep.sum()))


def _no_alpha_note(table: pl.DataFrame) -> list[str]:
    """The layers whose every row has no power-law alpha, with the reason (``alpha_note``); else nothing."""
    if "alpha" not in table.columns or "alpha_note" not in table.columns or not table.height:
        return []
    none = (table.group_by("layer", maintain_order=True)
            .agg(pl.col("alpha").is_null().all().alias("none"), pl.col("alpha_note").drop_nulls().first())
            .filter("none"))
    if not none.height:
        return []
    reasons = "; ".join(f"{r['layer']}: {r['alpha_note']}" for r in none.iter_rows(named=True))
    return [f"alpha is null for layers {none['layer'].to_list()} (no power-law fit: {reasons})"]


SPECTRA_BLOCK = 2048
"""Models per :func:`~weightlake.analysis.spectra.zoo_spectra` call in :func:`analyze_spectra` (a progress step);
each call decomposes them in blocks of a quarter of that, so its worker threads still share the work."""


def _spectra_streamed(compute: Callable[..., pl.DataFrame], lake: Any, zoo: str, keep: np.ndarray,
                      layers: Sequence[str] | None, progress: Callable[[int, int], Any] | None) -> pl.DataFrame:
    """Spectra of the kept rows, reading the zoo in budget-sized blocks (:meth:`Lake.iter_weights`); the
    table's parts wait on disk until the last block is done (:class:`~weightlake.compute.spill.SpilledParts`)."""
    from weightlake.compute.spill import SpilledParts

    at, done, total = 0, 0, int(keep.sum())
    arch = lake.arch(zoo)
    with SpilledParts() as parts:
        for ids, block in lake.iter_weights(zoo):
            mask = keep[at:at + len(ids)]
            at += len(ids)
            rows, ids = (block, ids) if mask.all() else (block[mask], ids[mask])
            refuse_non_finite(zoo, ids, rows)
            for start in range(0, len(rows), SPECTRA_BLOCK):
                part = compute(rows[start:start + SPECTRA_BLOCK], arch, block=SPECTRA_BLOCK // 4, layers=layers)
                parts.add(part.with_columns(model_id=pl.Series(ids[start:start + SPECTRA_BLOCK])[part["row"]])
                          .drop("row"))
                done += len(rows[start:start + SPECTRA_BLOCK])
                if progress is not None:
                    progress(done, total)
        if not len(parts):  # an empty selection: the pure function gives the schema
            parts.add(compute(np.empty((0, arch.n_params), dtype=np.float32), arch, block=1, layers=layers)
                      .with_columns(model_id=pl.lit(None, dtype=pl.Int64)).drop("row"))
        return parts.collect()


def analyze_correlations(lake_root: Path | str, *, zoo: str | None = None,
                         against: Sequence[str] = ("accuracy", "epoch", "activation", "init", "classes", "n_classes"),
                         by: Sequence[str] = (), features: str = "both", methods: Sequence[str] = ("pearson", "spearman"),
                         plot_dir: Path | str | None = None, all_rows: bool = False, per_run: str = "all",
                         progress: Callable[[int, int], Any] | None = None,
                         memory: str | int | None = None) -> AnalysisReport:
    """Parameters and per-layer aggregates against metadata -> table ``correlations``.

    ``per_run``: ``"all"`` (default) correlates every distinct checkpoint, so a run checkpointed
    at several epochs counts several times: its checkpoints are not independent samples, and
    the p-values take them as such.  Column ``runs`` says, on every row, how many training
    runs the test's ``n`` models come from (``n > runs``: p-values overstated), and the
    figures say it.  ``"last"`` keeps each run's latest distinct checkpoint, so every run counts
    once and the p-values hold (``epoch`` is then the epoch each run's last checkpoint has).

    ``by`` names metadata columns to group by (``layer`` is accepted and is always a result
    column).  With ``plot_dir``, heatmaps are written there as PNG (parameters x metadata with
    layer boundaries, and the parameter x parameter matrix of the whole network).  Distinct
    models only by default (each test's ``n`` counts them); ``all_rows=True`` counts every
    row, fallback copies included.  ``progress(done, total)`` counts the steps (passes over
    the zoo, the aggregate statistics, plots) as they finish.

    Weights are streamed (:meth:`Lake.iter_weights`) under the memory budget ``memory``
    (default ``$WEIGHTLAKE_MEMORY``): the per-model aggregates are computed block by block
    and correlated once; the parameters are correlated in column slices of at most half
    the budget (one pass over the zoo per slice), whose q-values and Bonferroni
    adjustments are then taken over each whole family, so the table equals the one the
    whole zoo in memory gives.
    """
    from weightlake.lake import open_lake

    started = time.perf_counter()
    lake = open_lake(lake_root, memory=memory)
    plan = correlation_plan(lake, zoo, against, by, features, methods, all_rows, per_run)
    slices = param_slices(plan.arch.n_params, plan.n_used, lake.memory) if plan.params else []
    total = len(slices) + plan.aggregates + bool(plot_dir)
    step = _Steps(progress, max(total, 1))
    parts, aggregates, whole = [], [], None
    for i, (lo, hi) in enumerate(slices or ([(0, 0)] if plan.aggregates else [])):
        x, aggs = _stream_pass(lake, plan, lo, hi, with_aggregates=plan.aggregates and i == 0)
        aggregates.extend(aggs)
        if hi > lo:
            parts.append(param_slice_correlations(x, plan, lo, hi))
            whole = x if (lo, hi) == (0, plan.arch.n_params) else None
            step()
    table = assemble_correlations(plan, parts, aggregates)
    if plan.aggregates:
        step()
    table = table.with_columns(snapshot=pl.lit(lake.snapshot, dtype=pl.Int64))
    units = "rows (all_rows)" if all_rows else "distinct models"  # the figures take the runs from column `runs`
    notes = [plan.note]
    plots: list[str] = []
    if plot_dir:
        rows, sample_note = _plot_rows(lake, plan, whole)
        notes += [sample_note] if sample_note else []
        # one step per figure: the plot stage's count is known once the table is
        plots = _correlation_plots(table, rows, plan.arch, Path(plot_dir), plan.zoo, units, step.within())
    version = _commit(Path(lake_root), "correlations", table, plan.zoo, plan.params_entry(), lake.snapshot)
    return AnalysisReport("correlations", plan.zoo, table.height, version, time.perf_counter() - started, plots,
                          notes=notes, n_models=plan.n_selected)


@dataclass
class CorrelationPlan:
    """What :func:`analyze_correlations` correlates: the zoo, the rows used, the metadata frame and options."""

    zoo: str
    arch: Any
    mask: np.ndarray
    """Over the zoo's weight rows (:meth:`Lake.zoo_ids` order): rows correlated."""
    frame: pl.DataFrame
    options: dict[str, Any]
    params: bool
    aggregates: bool
    note: str
    record: dict[str, Any]
    n_selected: int
    run_counts: pl.DataFrame | None = None
    """Training runs among each group's rows (column ``runs`` and the group columns); None when unknown."""

    @property
    def n_used(self) -> int:
        return int(self.mask.sum())

    def params_entry(self) -> dict[str, Any]:
        return self.record


def correlation_plan(lake: Any, zoo: str | None, against: Sequence[str], by: Sequence[str], features: str,
                     methods: Sequence[str], all_rows: bool, per_run: str = "all") -> CorrelationPlan:
    """Check the options against the zoo's metadata and choose the rows (distinct models with an accuracy;
    with ``per_run="last"`` each run's latest one)."""
    from weightlake.analysis.distinct import run_columns

    if per_run not in PER_RUN:
        raise QueryError(f"per_run must be one of {list(PER_RUN)}, got {per_run!r}")
    zoo, _, meta = _zoo_meta(lake, zoo)
    keep, models, note = _selection(meta, all_rows)
    group_by = [b for b in by if b != "layer"]
    missing = [c for c in [*against, *group_by] if c not in meta.columns]
    if missing:
        raise QueryError(f"unknown metadata column(s) {missing}; models have {meta.columns}")
    if features not in ("params", "aggregates", "both"):
        raise QueryError(f"features must be 'params', 'aggregates' or 'both', got {features!r}")
    runs = run_columns(meta)
    selected = int(keep.sum())
    record = {"against": list(against), "by": list(by), "features": features, "methods": list(methods),
              "models": models, "per_run": per_run}
    no_accuracy = int(meta["accuracy"].filter(pl.Series(keep)).null_count()) if "accuracy" in against else 0
    if no_accuracy:  # left out of every column's tests, not only accuracy's: said, and recorded
        keep = keep & meta["accuracy"].is_not_null().to_numpy()
        record["no_accuracy_left_out"] = no_accuracy
        note += (f"; {no_accuracy} of the {selected} have no accuracy and are left out of every correlation "
                 f"(n counts {selected - no_accuracy})")
    if per_run == "last":  # after the models without accuracy left: a run keeps its latest one that has one
        if runs is None:
            raise QueryError(f"per_run='last': zoo {zoo!r} records no training runs (neither run_id nor init, "
                             "activation, classes and epoch), so there is no run to take one checkpoint of")
        before = int(keep.sum())
        keep = keep & _last_of_each_run(meta, keep, runs)
        note += (f"; one checkpoint per run (per_run='last': each run's latest, {int(keep.sum())} of the "
                 f"{before}), so each run counts once")
    frame = meta.filter(pl.Series(keep)).select(*dict.fromkeys([*against, *group_by]))
    run_counts = _runs_per_group(meta.filter(pl.Series(keep)), runs, group_by)
    return CorrelationPlan(zoo, lake.arch(zoo), keep, frame,
                           {"columns": list(against), "methods": list(methods), "group_by": group_by or None},
                           features in ("params", "both"), features in ("aggregates", "both"), note, record,
                           int(keep.sum()) if per_run == "last" else selected, run_counts)


PER_RUN = ("all", "last")
"""``analyze correlations --per-run``: every distinct checkpoint, or each training run's latest one."""


def _last_of_each_run(meta: pl.DataFrame, keep: np.ndarray, runs: Sequence[str]) -> np.ndarray:
    """Over ``meta``'s rows: true for the kept row of the latest epoch of each run (ties: the lowest model_id)."""
    kept = meta.with_row_index("_row").filter(pl.Series(keep))
    last = (kept.sort(["epoch", "model_id"], descending=[True, False], nulls_last=True)
            .unique(subset=list(runs), keep="first", maintain_order=True))
    out = np.zeros(meta.height, dtype=bool)
    out[last["_row"].to_numpy()] = True
    return out


def _runs_per_group(used: pl.DataFrame, runs: Sequence[str] | None, group_by: Sequence[str]) -> pl.DataFrame | None:
    """Training runs among the used rows, per group (column ``runs``, with the group columns); None without runs."""
    if runs is None:
        return None
    key = pl.struct(list(runs))
    if not group_by:
        return pl.DataFrame({"runs": [used.select(key.n_unique()).item() if used.height else 0]})
    return used.group_by(list(group_by)).agg(runs=key.n_unique())


def param_slices(n_params: int, n_rows: int, memory: int) -> list[tuple[int, int]]:
    """Column ranges ``[lo, hi)`` of the parameters, each ``[n_rows, hi - lo]`` float32 within half of ``memory``."""
    width = max(1, min(n_params, memory // 2 // max(1, 4 * n_rows)))
    return [(lo, min(lo + width, n_params)) for lo in range(0, n_params, width)]


def _stream_pass(lake: Any, plan: CorrelationPlan, lo: int, hi: int,
                 with_aggregates: bool) -> tuple[np.ndarray, list[pl.DataFrame]]:
    """One pass over the zoo: the used rows' parameters ``lo:hi`` and (first pass) their aggregates per block.
    The first pass (``lo == 0``) refuses rows holding a NaN or an infinity (:func:`refuse_non_finite`)."""
    from weightlake.analysis.correlations import layer_aggregates

    x = np.empty((plan.n_used, hi - lo), dtype=np.float32)
    aggs, at, fill = [], 0, 0
    for ids, block in lake.iter_weights(plan.zoo):
        mask = plan.mask[at:at + len(ids)]
        at += len(ids)
        rows = block if mask.all() else block[mask]
        if lo == 0:
            refuse_non_finite(plan.zoo, ids[mask], rows)
        x[fill:fill + len(rows)] = rows[:, lo:hi]
        fill += len(rows)
        if with_aggregates and len(rows):
            aggs.append(layer_aggregates(rows, plan.arch))
    return x, aggs


def param_slice_correlations(x: np.ndarray, plan: CorrelationPlan, lo: int, hi: int) -> pl.DataFrame:
    """:func:`~weightlake.analysis.correlations.correlate` of parameters ``lo:hi`` (``x``, the used rows) with
    the metadata, labelled as :func:`~weightlake.analysis.correlations.param_correlations` labels them;
    q-values and Bonferroni are per slice until :func:`assemble_correlations` redoes them per family."""
    from weightlake.analysis.correlations import correlate

    arch = plan.arch
    layer_of = np.asarray(arch.layer_names, dtype=object)[arch.param_layer_index()]
    return correlate(x, plan.frame, feature_names=arch.csv_columns()[lo:hi], layers=list(layer_of[lo:hi]),
                     params=list(range(lo, hi)), **plan.options)


def assemble_correlations(plan: CorrelationPlan, param_parts: Sequence[pl.DataFrame],
                          aggregate_blocks: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """The ``correlations`` table from parameter slices (in column order) and per-block aggregates (in row order).

    The aggregates are correlated here, once, over all rows; the slices' q-values and
    Bonferroni p-values are recomputed over each family (group x method, every parameter),
    as one call over all parameters computes them.
    """
    from weightlake.analysis.correlations import correlate

    parts = []
    if plan.params:
        parts.append(_adjust_families([p for p in param_parts if p.height], plan).with_columns(kind=pl.lit("param")))
    if plan.aggregates:
        aggs = pl.concat(aggregate_blocks) if aggregate_blocks else _empty_aggregates(plan.arch)
        layers = [c.split(".", 1)[0] for c in aggs.columns]
        parts.append(correlate(aggs, plan.frame, layers=layers, **plan.options).with_columns(kind=pl.lit("aggregate")))
    table = _with_runs(pl.concat(parts, how="diagonal_relaxed"), plan)
    # no test (a constant or non-finite column): null, not NaN, so `avg(r)` in SQL skips it
    return table.with_columns(pl.col(c).fill_nan(None) for c in ("r", "p", "q", "p_bonferroni") if c in table.columns)


def _with_runs(table: pl.DataFrame, plan: CorrelationPlan) -> pl.DataFrame:
    """Column ``runs``: the training runs among each test's rows (null when the zoo records none)."""
    by = plan.options["group_by"] or []
    if plan.run_counts is None:
        return table.with_columns(runs=pl.lit(None, dtype=pl.Int64))
    counts = plan.run_counts.with_columns(pl.col("runs").cast(pl.Int64))
    if not by:
        return table.with_columns(runs=pl.lit(counts["runs"][0], dtype=pl.Int64))
    counts = counts.with_columns(pl.col(c).cast(table.schema[c]) for c in by if c in table.columns)
    return table.join(counts, on=by, how="left", nulls_equal=True, maintain_order="left")


def _adjust_families(parts: Sequence[pl.DataFrame], plan: CorrelationPlan) -> pl.DataFrame:
    from weightlake.analysis.correlations import bh_qvalues, bonferroni

    if len(parts) == 1:
        return parts[0]
    if not parts:
        return pl.DataFrame()
    keys = [*(plan.options["group_by"] or []), "method"]
    split = [p.partition_by(keys, maintain_order=True, as_dict=True) for p in parts]
    families = []
    for key in split[0]:
        family = pl.concat([s[key] for s in split])
        p = family["p"].to_numpy()
        families.append(family.with_columns(q=pl.Series(bh_qvalues(p)), p_bonferroni=pl.Series(bonferroni(p))))
    return pl.concat(families)


def _empty_aggregates(arch: Any) -> pl.DataFrame:
    from weightlake.analysis.correlations import layer_aggregates

    return layer_aggregates(np.zeros((1, arch.n_params), dtype=np.float32), arch).clear()


def _plot_rows(lake: Any, plan: CorrelationPlan, whole: np.ndarray | None) -> tuple[np.ndarray, str]:
    """Rows for the parameter x parameter figure: all used rows, or a seeded sample that fits half the budget."""
    if whole is not None:
        return whole, ""
    fit = max(2, lake.memory // 2 // (4 * plan.arch.n_params))
    mask = plan.mask.copy()
    if fit < plan.n_used:
        used = np.flatnonzero(mask)
        mask[:] = False
        mask[np.sort(np.random.default_rng(0).choice(used, size=fit, replace=False))] = True
    sample = CorrelationPlan(**{**plan.__dict__, "mask": mask})
    x, _ = _stream_pass(lake, sample, 0, plan.arch.n_params, with_aggregates=False)
    if fit >= plan.n_used:
        return x, ""
    return x, (f"parameter x parameter figure from a seeded sample of {fit} of the {plan.n_used} models "
               "(the zoo exceeds half the memory budget)")


class _Steps:
    """``progress(done, total)`` one step at a time."""

    def __init__(self, progress: Callable[[int, int], Any] | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)

    def within(self) -> Callable[[int, int], None]:
        """Progress of the last stage in parts: ``(done, total)`` of its own replace its one step."""
        base = self.done

        def part(done: int, total: int) -> None:
            self.done, self.total = base + done, base + total
            if self.progress is not None:
                self.progress(self.done, self.total)

        return part


def _correlation_plots(table: pl.DataFrame, rows: np.ndarray, arch: Any, out: Path, zoo: str,
                       units: str = "distinct models",
                       progress: Callable[[int, int], Any] | None = None) -> list[str]:
    """The figures of :func:`~weightlake.analysis.heatmaps.table_figures`, then the parameter x parameter
    matrix; ``progress(done, total)`` after each figure."""
    from weightlake.analysis import correlations as corr
    from weightlake.analysis import heatmaps as hm

    def figure(done: int, total: int) -> None:  # the parameter matrix is one figure more
        if progress is not None:
            progress(done, total + 1)

    paths = hm.table_figures(table, out, arch, zoo=zoo, units=units, progress=figure)
    matrix = corr.param_correlation_matrix(rows, arch)
    paths.append(hm.plot_param_matrix_heatmap(matrix, out / f"{zoo}-param-x-param.png", arch, zoo=zoo,
                                              n=len(rows), units=units))
    if progress is not None:
        progress(len(paths), len(paths))
    return [str(p) for p in paths]


class LakeAnalysis:
    """Analysis tables and on-the-fly computations for one pinned lake handle (``lake.analysis``)."""

    def __init__(self, lake: Any) -> None:
        self.lake = lake

    def spectra(self, zoo: str | None = None, with_metadata: bool = True) -> pl.LazyFrame:
        """The committed ``spectra`` table (joined with model metadata by default)."""
        return self._table("spectra", zoo, with_metadata)

    def correlations(self, zoo: str | None = None) -> pl.LazyFrame:
        return self._table("correlations", zoo, with_metadata=False)

    def _table(self, name: str, zoo: str | None, with_metadata: bool) -> pl.LazyFrame:
        lf = self.lake.table(name)
        if zoo:
            lf = lf.filter(pl.col("zoo") == zoo)
        if with_metadata:
            meta = self.lake.models(zoo).select("model_id", "init", "activation", "epoch", "classes",
                                                "n_classes", "accuracy")
            lf = lf.join(meta, on="model_id", how="left")
        return lf

    def compute_spectra(self, zoo: str | None = None, all_rows: bool = False) -> pl.DataFrame:
        """Spectra without committing (for a quick look); distinct models unless ``all_rows``."""
        from weightlake.analysis.spectra import zoo_spectra

        zoo, ids, rows, meta = _zoo_rows(self.lake, zoo)
        ids, rows, _, _, _ = _select_models(ids, rows, meta, all_rows)
        table = zoo_spectra(rows, self.lake.arch(zoo))
        return table.with_columns(model_id=pl.Series(ids)[table["row"]]).drop("row")

    def metrics(self, pred_ids: Sequence[int], ref_ids: Sequence[int], per_layer: bool = True,
                include_slow: bool = False) -> pl.DataFrame:
        """Every registered metric between two lists of models, as a polars frame.

        The models may come from several zoos whose vectors line up (one architecture); ids of
        zoos of other architectures are refused (:class:`~weightlake.errors.ArchitectureError`).
        """
        from weightlake.analysis.metrics import compute_all

        zoos = self.lake.zoos_of([*pred_ids, *ref_ids])
        self.lake.check_aligned(zoos, "the predicted and reference ids")
        pred, ref = self.lake.weights_numpy(pred_ids), self.lake.weights_numpy(ref_ids)
        arch = self.lake.arch(zoos[0]) if zoos else self.lake.arch()
        cols = compute_all(pred, ref, arch, per_layer=per_layer, include_slow=include_slow)
        return pl.DataFrame({"pred_id": list(pred_ids), "ref_id": list(ref_ids), **cols})
