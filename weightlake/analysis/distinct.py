"""Which rows of a zoo are distinct models: the population every analysis counts by default.

A zoo's table can hold one trained network several times: an early-stopped model is filed
again under each later epoch bin (``fallback`` rows), and the same vector can arrive twice
from two sources. Counting such rows as separate observations makes correlations look
significant and pins every parameter-vs-epoch correlation of a copied model to zero.

:func:`distinct_models` keeps one row per weight vector (``weights_hash``): the row that is
not a fallback copy when there is one, else the earliest epoch bin, ties to the lowest
``model_id``. It is a pure function over the metadata frame; analyses call it, record
``n`` distinct and print :meth:`DistinctSelection.note`, and offer an option to count
every row instead.

Distinct vectors are not always independent samples: the checkpoints of one training run at
several epochs are distinct models whose weights correlate near 1.  The selection counts the
runs (:func:`run_columns`) and its note says when some of them contribute several checkpoints;
which epoch to keep is the user's choice, so nothing is dropped for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from weightlake.errors import QueryError


@dataclass(frozen=True)
class DistinctSelection:
    """The outcome of :func:`distinct_models` over ``n_rows`` rows."""

    keep: np.ndarray
    """Boolean mask over the input rows, in input order: True for the row that stands for its model."""
    n_rows: int
    dropped_fallback: int
    """Rows dropped that were fallback copies (an early-stopped model filed under a later bin)."""
    dropped_repeated: int
    """Other rows dropped because an earlier row holds the same weight vector."""
    n_runs: int | None = None
    """Training runs the kept rows come from (None: the metadata does not say, see :func:`run_columns`)."""
    runs_several: int = 0
    """Runs of which several kept rows are checkpoints (other epochs of the same run)."""
    last_epoch: int | None = None
    """The latest epoch among the kept rows (the note's example of one epoch to select)."""

    @property
    def n_distinct(self) -> int:
        return int(self.keep.sum())

    @property
    def dropped(self) -> int:
        return self.n_rows - self.n_distinct

    def note(self, *, runs: bool = True) -> str:
        """One line for the user: how many distinct models, what was left out, and (``runs``) whether
        some are checkpoints of one run (:meth:`runs_note`)."""
        tail = self.runs_note() if runs else ""
        if not self.dropped:
            return f"{self.n_distinct} distinct models (no repeated weight vectors){tail}"
        return (f"{self.n_distinct} distinct models of {self.n_rows} rows: dropped {self.dropped_fallback} "
                f"fallback copies and {self.dropped_repeated} other repeated weight vectors "
                f"(pass all_rows=True / --all-rows to count every row){tail}")

    def runs_note(self) -> str:
        """``""``, or what a statistic over these models should know: some are checkpoints of one run.

        Two checkpoints of a run (its epochs 11 and 16) are distinct vectors but not independent
        samples (their weights correlate near 1), so a p-value over models counts them as more
        evidence than there is.
        """
        return _format_runs(self.n_runs, self.runs_several, self.last_epoch)

    def to_dict(self) -> dict[str, int | None]:
        return {"rows": self.n_rows, "distinct": self.n_distinct, "dropped_fallback": self.dropped_fallback,
                "dropped_repeated": self.dropped_repeated, "runs": self.n_runs, "runs_at_several_epochs": self.runs_several}


RUN_COLUMNS = ("init", "activation", "class_mask")
"""What identifies a training run in the CSV and checkpoint-folder zoos: one run per initialisation,
activation and class set, checkpointed at several epochs (``checkpoints/{label}/{activation}/...
checkpoint epoch {e}.pth``). Zoos that record runs (Model Zoos) have ``run_id`` instead."""


def run_columns(meta: pl.DataFrame) -> list[str] | None:
    """The columns naming each row's training run: ``run_id`` where recorded, else :data:`RUN_COLUMNS`
    (with ``zoo`` when present); None when the metadata has neither, or no ``epoch``."""
    zoo = ["zoo"] if "zoo" in meta.columns else []
    by_columns = "epoch" in meta.columns and all(c in meta.columns for c in RUN_COLUMNS)
    if "run_id" in meta.columns and meta["run_id"].null_count() < meta.height:
        # some rows without a run_id (a CSV zoo beside a Model Zoos one): they are told apart by
        # init, activation and class set, not taken for one run of a null id
        return [*zoo, "run_id", *RUN_COLUMNS] if meta["run_id"].null_count() and by_columns else [*zoo, "run_id"]
    if by_columns:
        return [*zoo, *RUN_COLUMNS]
    return None


def latest_per_run(meta: pl.DataFrame) -> np.ndarray:
    """Boolean mask over the rows of ``meta``: each training run's row at its latest epoch (ties to
    the lowest ``model_id``), for statistics that need one sample per run.

    Runs are those of :func:`run_columns`.  Apply it after :func:`distinct_models`, so that a
    fallback copy filed under a later epoch bin does not stand for its run.

    Raises
    ------
    QueryError
        When the metadata says nothing about runs (no ``run_id``, no init/activation/class set).
    """
    cols = run_columns(meta)
    if cols is None:
        raise QueryError("the models' metadata names no training runs (no run_id, nor init, activation, "
                         "class_mask and epoch): which rows are checkpoints of one run is not known")
    order = pl.DataFrame({"row": np.arange(meta.height)}).hstack(meta.select(*cols, "epoch", "model_id"))
    first = (order.sort("epoch", "model_id", descending=[True, False])
             .group_by(cols, maintain_order=True).agg(pl.col("row").first()))["row"].to_numpy()
    keep = np.zeros(meta.height, dtype=bool)
    keep[first] = True
    return keep


def runs_note(meta: pl.DataFrame) -> str:
    """:meth:`DistinctSelection.runs_note` for the rows of ``meta`` as they are (a selection already made)."""
    return _format_runs(*_runs(meta, np.ones(meta.height, dtype=bool)))


def _format_runs(n_runs: int | None, several: int, epoch: int | None) -> str:
    if not several:
        return ""
    return (f"; they are checkpoints of {n_runs} training runs, {several} of them at several epochs: "
            "a p-value over models takes those checkpoints for independent samples; one checkpoint per run "
            "(correlations `--per-run last`) or one epoch (correlations `--by epoch`, SQL "
            f"`WHERE epoch = {epoch}`) counts each run at most once (an early-stopped run only at the epoch "
            "it stopped)")


def _runs(meta: pl.DataFrame, keep: np.ndarray) -> tuple[int | None, int, int | None]:
    cols = run_columns(meta)
    if cols is None or meta.height == 0:
        return None, 0, None
    kept = meta.filter(pl.Series(keep)).select(*cols, "epoch")
    per_run = kept.group_by(cols).agg(pl.col("epoch").n_unique().alias("epochs"))
    last = kept["epoch"].max()
    return per_run.height, int((per_run["epochs"] > 1).sum()), None if last is None else int(last)


def distinct_models(meta: pl.DataFrame) -> DistinctSelection:
    """One row per weight vector of ``meta`` (needs ``model_id`` and ``weights_hash``; uses
    ``fallback`` and ``epoch`` when present).

    Rows whose ``weights_hash`` is null are each taken as their own model.

    Examples
    --------
    >>> meta = pl.DataFrame({"model_id": [0, 1, 2], "weights_hash": ["a", "a", "b"],
    ...                      "fallback": [False, True, False], "epoch": [11, 16, 11]})
    >>> distinct_models(meta).keep.tolist()
    [True, False, True]
    """
    n = meta.height
    if "weights_hash" not in meta.columns or n == 0:
        keep = np.ones(n, dtype=bool)
        return DistinctSelection(keep, n, 0, 0, *_runs(meta, keep))
    fallback = (meta["fallback"].fill_null(False) if "fallback" in meta.columns
                else pl.Series([False] * n))
    epoch = meta["epoch"].fill_null(0) if "epoch" in meta.columns else pl.Series([0] * n)
    frame = pl.DataFrame({
        "row": np.arange(n), "hash": meta["weights_hash"], "fallback": fallback, "epoch": epoch,
        "model_id": meta["model_id"],
    }).with_columns(pl.when(pl.col("hash").is_null()).then(pl.format("row:{}", "row"))
                    .otherwise(pl.col("hash")).alias("hash"))
    first = (frame.sort("fallback", "epoch", "model_id")
             .group_by("hash", maintain_order=True).agg(pl.col("row").first()))["row"].to_numpy()
    keep = np.zeros(n, dtype=bool)
    keep[first] = True
    dropped_fallback = int((~keep & fallback.to_numpy()).sum())
    return DistinctSelection(keep, n, dropped_fallback, int((~keep).sum()) - dropped_fallback, *_runs(meta, keep))
