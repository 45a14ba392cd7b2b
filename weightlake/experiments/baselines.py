"""Reference predictions scored beside the checkpoints: what a trivial predictor achieves.

A checkpoint's metrics cannot be read alone: an MSE of 0.07 is good or bad only next to
what a predictor that learned nothing gets on the same pairs.  :func:`evaluate_baselines`
makes one prediction per evaluated pair for each baseline and scores it with
:func:`~weightlake.experiments.evaluate.score_predictions`, the path every checkpoint takes:
the same pairs, the same metrics, the same rebuilt-CNN images and scorer.

===============  ==============================================================================
``zeros``        every weight 0
``train_mean``   the mean target over the scenario's ``train`` pairs (a target counted once per
                 pair it is the target of): the constant an MSE-trained model would learn if it
                 ignored its inputs
``inputs_mean``  ``(A + B) / 2``, the average of each pair's two input models
===============  ==============================================================================

Table written (partitioned by ``scenario``): ``evaluation_baselines``, one row per baseline x
set of evaluated pairs, with the columns of ``evaluations`` (``pd_<column>`` means, collapse,
``pd_accuracy`` / ``gt_accuracy``...) and ``source_kind = 'baseline'``, ``baseline`` (its name),
``checkpoint = 'baseline: <name>'``, ``baseline_note``.  A set of pairs is identified by
:data:`PAIRSET`; its baselines are replaced when it is evaluated again and dropped when no
checkpoint row of ``evaluations`` is left on it.  ``evaluations`` itself holds only sources.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from weightlake.arch import Architecture
from weightlake.experiments.evaluate import (
    PARTITION,
    _AccuracyScorer,
    _Pairs,
    complete_families,
    partition_rows,
    rows_frame,
    score_predictions,
)

if TYPE_CHECKING:
    from weightlake.lake import Lake
    from weightlake.storage.transaction import Transaction

EVALUATION_BASELINES = "evaluation_baselines"

BASELINES: dict[str, str] = {
    "zeros": "every weight 0",
    "train_mean": "the mean target of the scenario's train pairs, the same vector for every pair",
    "inputs_mean": "(A + B) / 2, the average of each pair's two input models",
}
"""Baseline name -> what it predicts (its ``baseline_note``)."""

PAIRSET: tuple[str, ...] = ("scenario", "split", "snapshot", "n_pairs", "limit_pairs", "pair_seed")
"""Rows of ``evaluations`` and ``evaluation_baselines`` agreeing on these were scored on the same pairs."""

_CHUNK = 4096


def train_mean(lake: Lake, scenario: str, zoo: str) -> tuple[np.ndarray | None, str | None]:
    """The mean target (float32 ``[P]``) of the scenario's train pairs, or None and why not."""
    from weightlake.serve.pairset import PairSet

    train = PairSet.open(lake, scenario, "train")
    if not len(train):
        return None, f"scenario {scenario!r} has no train pairs"
    if train.zoo != zoo:
        return None, f"the train pairs are of zoo {train.zoo!r}, the evaluated pairs of {zoo!r}"
    rows, counts = np.unique(train.zoo_rows()[:, 2], return_counts=True)
    source = lake.row_source(zoo)
    total = np.zeros(lake.arch(zoo).n_params, dtype=np.float64)
    for start in range(0, len(rows), _CHUNK):
        block = source.take(rows[start:start + _CHUNK]).astype(np.float64)
        total += counts[start:start + _CHUNK] @ block
    return (total / counts.sum()).astype(np.float32), None


def baseline_predictions(pairs: _Pairs, out: np.ndarray, mean: np.ndarray | None) -> Iterator[str]:
    """Fill ``out`` (``float32 [n, P]``, one row per pair) with each baseline in turn; yield its name.

    ``train_mean`` is skipped when ``mean`` is None.
    """
    out[:] = 0.0
    yield "zeros"
    if mean is not None:
        out[:] = mean
        yield "train_mean"
    for start in range(0, len(pairs.positions), _CHUNK):
        batch = pairs.dataset[pairs.positions[start:start + _CHUNK]]
        x1, x2 = batch["x1"].numpy(), batch["x2"].numpy()
        out[start:start + len(x1)] = (x1 + x2) / 2
    yield "inputs_mean"


def evaluate_baselines(lake: Lake, pairs: _Pairs, buffer: np.ndarray, arch: Architecture, scorer: _AccuracyScorer,
                       context: dict[str, Any], metrics: list[str] | None = None,
                       include_slow: bool = False) -> list[dict[str, Any]]:
    """One ``evaluation_baselines`` row per baseline, scored as a checkpoint is on ``pairs``.

    ``context`` holds the pair set's columns (:data:`PAIRSET`, ``zoo``...) as for the
    checkpoint rows; ``buffer`` (``float32 [n, P]``) is overwritten.
    """
    mean, why = train_mean(lake, context["scenario"], pairs.zoo)
    in_sample = context["split"] in (None, "train")
    rows = []
    for name in baseline_predictions(pairs, buffer, mean):
        note = BASELINES[name]
        if name == "train_mean" and in_sample:
            note += "; the evaluated pairs are among the train pairs, so this is fitted on them (in-sample)"
        row: dict[str, Any] = {"source_kind": "baseline", "baseline": name, "checkpoint": f"baseline: {name}",
                               "baseline_note": note}
        score_predictions(row, buffer, pairs, arch, scorer, metrics, include_slow)
        rows.append({**row, **context})
    if why is not None:
        rows.append({"source_kind": "baseline", "baseline": "train_mean", "checkpoint": "baseline: train_mean",
                     "baseline_note": BASELINES["train_mean"], "error": f"not computed: {why}", **context})
    return rows


def stage_baselines(tx: Transaction, rows: Sequence[dict[str, Any]], evaluations: pl.DataFrame | None) -> None:
    """Stage ``rows`` into ``evaluation_baselines``, in the scenario partitions they belong to.

    Rows of the parent snapshot on the same pair set and baseline are replaced; those whose
    pair set no longer has a checkpoint row in ``evaluations`` (the table as staged) are dropped.
    """
    from weightlake.lake import Lake

    if not rows:
        return
    new = complete_families(rows_frame(rows))
    scenarios = new["scenario"].unique().to_list()
    frames = [new]
    parent = Lake(tx.store.location, tx.parent)
    old = partition_rows(parent, EVALUATION_BASELINES, scenarios)  # partitions may differ in columns
    if old.height:
        key = [*PAIRSET, "baseline"]
        old = old.join(new.select(key).unique().with_columns(pl.col(k).cast(old.schema[k]) for k in key),
                       on=key, how="anti", nulls_equal=True)
        if evaluations is not None and old.height:
            alive = evaluations.filter(pl.col("source_kind") == "checkpoint").select(PAIRSET).unique()
            old = old.join(alive.with_columns(pl.col(k).cast(old.schema[k]) for k in PAIRSET), on=list(PAIRSET),
                           how="semi", nulls_equal=True)
        frames.insert(0, old)
    merged = pl.concat(frames, how="diagonal_relaxed")
    tx.put_table(EVALUATION_BASELINES, merged, partition_by=PARTITION, properties={"partition_by": list(PARTITION)})


def load_baselines(lake: Lake) -> pl.DataFrame | None:
    """Every ``evaluation_baselines`` row at the lake's snapshot, or None when it has none."""
    from weightlake.query import run_sql

    if EVALUATION_BASELINES not in lake.manifest.tables or not lake.manifest.tables[EVALUATION_BASELINES].files:
        return None
    return run_sql(lake, f"SELECT * FROM {EVALUATION_BASELINES}")
