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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl


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

    @property
    def n_distinct(self) -> int:
        return int(self.keep.sum())

    @property
    def dropped(self) -> int:
        return self.n_rows - self.n_distinct

    def note(self) -> str:
        """One line for the user: how many distinct models, and what was left out."""
        if not self.dropped:
            return f"{self.n_distinct} distinct models (no repeated weight vectors)"
        return (f"{self.n_distinct} distinct models of {self.n_rows} rows: dropped {self.dropped_fallback} "
                f"fallback copies and {self.dropped_repeated} other repeated weight vectors "
                "(pass all_rows=True / --all-rows to count every row)")

    def to_dict(self) -> dict[str, int]:
        return {"rows": self.n_rows, "distinct": self.n_distinct, "dropped_fallback": self.dropped_fallback,
                "dropped_repeated": self.dropped_repeated}


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
        return DistinctSelection(np.ones(n, dtype=bool), n, 0, 0)
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
    return DistinctSelection(keep, n, dropped_fallback, int((~keep).sum()) - dropped_fallback)
