"""Distance metrics between the models of each pair of a scenario -> table ``pair_metrics``.

A scenario's pair table (``pairs``) names three models per pair: inputs ``a`` and ``b`` and
the ``target``.  For every pair this run compares the three couples, each as ``(pred,
ref)`` of the registered metrics (:data:`weightlake.analysis.metrics.METRICS`, the same
functions as the ``wl_*`` SQL functions; asymmetric ones such as ``mape`` or ``kl`` read
"pred against ref"):

========  ======  ======
couple    pred    ref
========  ======  ======
a_b       a       b
a_target  a       target
b_target  b       target
========  ======  ======

One row per pair x couple x metric (long, so every scenario's runs share one schema
whatever metrics they chose): ``scenario``, ``split``, ``pair_id``, ``couple``,
``pred_id``, ``ref_id``, ``metric``, ``layer`` (null for the whole vector; with
``per_layer`` a row per layer too), ``value``.  The table is partitioned by scenario and
split, so re-running one split replaces that split only.  Pairs are the unit here (the scenario decided which models
pair up, fallback targets included), so no distinct-model filter applies; the params
record how many pairs and distinct models were compared.

Pairs are processed in blocks of :data:`PAIR_BLOCK`: a block reads the rows of the models
it names (only the chunks they touch) and calls
:func:`~weightlake.analysis.metrics.compute_all` per couple; ``--dask`` runs the same block
function on the workers (:mod:`weightlake.compute.dask_runs`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from weightlake.compute.analyses import AnalysisReport, _commit, refuse_non_finite
from weightlake.errors import QueryError
from weightlake.storage.snapshot import Segment
from weightlake.storage.store import Store

COUPLES: tuple[tuple[str, int, int], ...] = (("a_b", 0, 1), ("a_target", 0, 2), ("b_target", 1, 2))
"""``(name, pred column, ref column)`` of the pair's id triple ``(a_id, b_id, target_id)``."""

PAIR_BLOCK = 2048
"""Pairs per block (a progress step; a Dask task)."""


@dataclass(frozen=True)
class PairMetricOptions:
    """Which metrics a run computes (names of :data:`~weightlake.analysis.metrics.METRICS`, None for all)."""

    metrics: tuple[str, ...] | None = None
    per_layer: bool = False
    include_slow: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": list(self.metrics) if self.metrics else "all", "per_layer": self.per_layer,
                "include_slow": self.include_slow}


@dataclass
class PairPlan:
    """The pairs of one run: ids ``[N, 3]``, their pair ids and splits, the zoo, its architecture and segments."""

    scenario: str
    split: str | None
    zoo: str
    ids: np.ndarray
    pair_id: np.ndarray
    splits: np.ndarray
    arch: Any
    segments: tuple[Segment, ...]
    fallback_pairs: int = 0
    """Pairs whose target is not a model trained to the pair's epoch (``pairs.fallback``)."""

    def blocks(self, size: int = PAIR_BLOCK) -> list[slice]:
        return [slice(i, min(i + size, len(self.ids))) for i in range(0, len(self.ids), size)]


def pair_plan(lake: Any, scenario: str, split: str | None, options: PairMetricOptions) -> PairPlan:
    """The scenario's pairs (one split or all) at the lake's snapshot; unknown metric names are refused."""
    from weightlake.analysis.metrics import METRICS
    from weightlake.serve.pairset import PairSet

    unknown = sorted(set(options.metrics or ()) - set(METRICS) - {"ar_mse_ratio"})
    if unknown:
        raise QueryError(f"unknown metric(s) {unknown}; registered: {sorted(METRICS)}")
    pairs = PairSet.open(lake, scenario, split)
    frame = pairs.to_polars()
    if frame.height == 0:
        raise QueryError(f"scenario {scenario!r} has no pairs{f' in split {split!r}' if split else ''} "
                         f"at snapshot {lake.snapshot}")
    return PairPlan(scenario, split, pairs.zoo, pairs.ids, pairs.pair_id, frame["split"].to_numpy(),
                    lake.arch(pairs.zoo), tuple(lake.manifest.zoo(pairs.zoo).segments),
                    int(frame["fallback"].sum() or 0))


def pair_block_metrics(location: Store, segments: Sequence[Segment], ids: np.ndarray, arch: Any,
                       options: PairMetricOptions, weights: np.ndarray | None = None,
                       zoo_ids: np.ndarray | None = None, *, zoo: str) -> dict[str, np.ndarray]:
    """The metric columns of one block of pairs (``ids [n, 3]``), couple after couple (``3n`` rows).

    Rows come from ``weights`` (the zoo decoded, with its ``zoo_ids``) when given, else
    from the store: only the chunks these models touch, checked
    (:func:`weightlake.storage.remote.rows_by_id`).  A model of zoo ``zoo`` holding a NaN
    or an infinity is refused by id (its every metric would be NaN).  A Dask task's body.
    """
    from weightlake.analysis.metrics import compute_all
    from weightlake.storage.remote import rows_by_id

    unique, inverse = np.unique(ids, return_inverse=True)
    if weights is not None and zoo_ids is not None:
        rows = weights[np.searchsorted(zoo_ids, unique)]
    else:
        rows = rows_by_id(location, segments, unique)
    refuse_non_finite(zoo, unique, rows)
    inverse = inverse.reshape(ids.shape)
    parts = [compute_all(rows[inverse[:, p]], rows[inverse[:, r]], arch, per_layer=options.per_layer,
                         include_slow=options.include_slow,
                         metrics=list(options.metrics) if options.metrics else None)
             for _, p, r in COUPLES]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


KEYS = ("scenario", "split", "pair_id", "couple", "pred_id", "ref_id")


def pair_frame(plan: PairPlan, block: slice, columns: dict[str, np.ndarray]) -> pl.DataFrame:
    """The rows of one block, long: keys of each pair x couple x metric (and layer), then ``value``."""
    n = block.stop - block.start
    ids = plan.ids[block]
    wide = pl.DataFrame({
        "scenario": pl.repeat(plan.scenario, 3 * n, dtype=pl.String, eager=True),
        "split": pl.Series(np.tile(plan.splits[block], 3), dtype=pl.String),
        "pair_id": pl.Series(np.tile(plan.pair_id[block], 3), dtype=pl.Int64),
        "couple": pl.Series(np.repeat([c for c, _, _ in COUPLES], n), dtype=pl.String),
        "pred_id": pl.Series(np.concatenate([ids[:, p] for _, p, _ in COUPLES]), dtype=pl.Int64),
        "ref_id": pl.Series(np.concatenate([ids[:, r] for _, _, r in COUPLES]), dtype=pl.Int64),
        **{k: pl.Series(v, dtype=pl.Float64) for k, v in columns.items()},
    })
    names = _column_names(list(columns), plan.arch.layer_names)
    return (wide.unpivot(index=list(KEYS), variable_name="column", value_name="value")
            .join(names, on="column", how="left").select(*KEYS, "metric", "layer", "value"))


def _column_names(columns: Sequence[str], layers: Sequence[str]) -> pl.DataFrame:
    """``compute_all``'s column names (``<metric>``, ``<metric>_<layer>``) split into metric and layer."""
    from weightlake.analysis.metrics import METRICS

    rows = []
    for col in columns:
        layer = None if col in METRICS else next((x for x in layers if col.endswith(f"_{x}")), None)
        rows.append((col, col[:-len(layer) - 1] if layer else col, layer))
    return pl.DataFrame(rows, schema={"column": pl.String, "metric": pl.String, "layer": pl.String}, orient="row")


def analyze_pair_metrics(lake_root: Path | str, *, scenario: str, split: str | None = None,
                         metrics: Sequence[str] | None = None, per_layer: bool = False, include_slow: bool = False,
                         progress: Callable[[int, int], Any] | None = None,
                         memory: str | int | None = None) -> AnalysisReport:
    """Metrics between the models of each pair of ``scenario`` -> table ``pair_metrics`` (see the module).

    Parameters
    ----------
    lake_root : path or URL of the lake
    scenario : a declared scenario
    split : ``"train"``, ``"val"``, ``"test"`` or None (all splits)
    metrics : registered metric names (default: all but the slow ones)
    per_layer : also one column per metric and layer
    include_slow : also Sinkhorn and Gromov-Wasserstein (seconds per pair)
    progress : ``progress(pairs done, pairs)`` after each block
    memory : the memory budget; a zoo within it is decoded once, a larger one read per block

    Returns
    -------
    AnalysisReport
        Rows = 3 x pairs x metric columns; ``n_models`` = distinct models the pairs name.
    """
    from weightlake.lake import open_lake

    started = time.perf_counter()
    options = PairMetricOptions(tuple(metrics) if metrics else None, per_layer, include_slow)
    lake = open_lake(lake_root, memory=memory)
    plan = pair_plan(lake, scenario, split, options)
    zoo_ids, weights = lake.zoo_weights(plan.zoo) if lake.fits(plan.zoo) else (None, None)
    parts = []
    for block in plan.blocks():
        columns = pair_block_metrics(lake.location, plan.segments, plan.ids[block], plan.arch, options,
                                     weights=weights, zoo_ids=zoo_ids, zoo=plan.zoo)
        parts.append(pair_frame(plan, block, columns))
        if progress is not None:
            progress(block.stop, len(plan.ids))
    return commit_pair_metrics(lake_root, lake, plan, options, parts, started, "local")


def commit_pair_metrics(lake_root: Path | str, lake: Any, plan: PairPlan, options: PairMetricOptions,
                        parts: Sequence[pl.DataFrame], started: float, engine: str) -> AnalysisReport:
    """Sort the blocks' rows (split, pair, couple), commit them under the scenario, report."""
    order = {c: i for i, (c, _, _) in enumerate(COUPLES)}
    table = (pl.concat(parts).with_columns(_c=pl.col("couple").replace_strict(order, return_dtype=pl.Int8))
             .sort("pair_id", "_c", maintain_order=True).drop("_c")
             .with_columns(snapshot=pl.lit(lake.snapshot, dtype=pl.Int64)))
    n_models = int(np.unique(plan.ids).size)
    params = {**options.to_dict(), "split": plan.split or "all", "pairs": len(plan.ids), "distinct_models": n_models,
              "fallback_pairs": plan.fallback_pairs, "engine": engine}
    version = _commit(Path(lake_root), "pair_metrics", table, plan.zoo, params, lake.snapshot,
                      partition_by=("scenario", "split"), key=plan.scenario,
                      reads=(("pairs", "scenario", plan.scenario), ("scenarios", "scenario", plan.scenario)))
    note = (f"{len(plan.ids)} pairs of scenario {plan.scenario!r} ({plan.split or 'all splits'}) naming "
            f"{n_models} distinct models; 3 couples each (a_b, a_target, b_target)")
    notes = [note]
    if plan.fallback_pairs:  # included, as the scenario pairs them, but said: their target is an earlier model
        notes.append(f"{plan.fallback_pairs} of them have a fallback target (an earlier or early-stopped model, "
                     "pairs.fallback): included; join pairs and filter NOT fallback to leave them out")
    return AnalysisReport("pair_metrics", plan.zoo, table.height, version, time.perf_counter() - started,
                          notes=notes, n_models=n_models)
