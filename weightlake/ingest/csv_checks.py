"""Checks of CSV zoo values that parse but that the zoo cannot take: an epoch outside its bins,
an accuracy whose scale (percentage or fraction) disagrees with the zoo's.

Both work on a batch's metadata after :func:`~weightlake.ingest.csv_zoo._validate` and give
``(row, column, reason)`` for each row they refuse; the ingest treats them as every other bad
row (``--on-error``).

Epoch bins (``zoo-formats.md`` section 2): the ``epoch`` column is the epoch bin, 11, 16, 21,
26, 31 or 36; a zoo with other bins (its own trainer's, exported to CSV) passes them.

Accuracy scale (section 2: a percentage): a value above 1 can only be a percentage, 0 is the
same on both scales, but one in (0, 1] is a fraction or a percentage under 1 % (far below chance
for 2-10 classes).  So such a value is refused while the zoo's or the file's other accuracies
are percentages; a file whose every nonzero accuracy is in (0, 1] is refused whole (fractions
written where percentages belong); and percentages are refused for a zoo that holds fractions
only.  Nothing is converted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from weightlake.arch import EPOCH_BINS
from weightlake.errors import IngestError

Problem = tuple[int, str, str]
"""``(row, column, reason)`` of one refused row."""


def parse_epoch_bins(bins: Sequence[int] | None) -> tuple[int, ...]:
    """``bins`` as sorted distinct non-negative ints (default :data:`~weightlake.arch.EPOCH_BINS`).

    Raises
    ------
    IngestError
        An empty list, or a value that is not a non-negative integer.
    """
    if bins is None:
        return EPOCH_BINS
    values = list(bins)
    if not values or any(isinstance(b, bool) or not isinstance(b, int | np.integer) or b < 0 for b in values):
        raise IngestError(f"epoch bins must be non-negative integers, e.g. [11, 16, 21], got {bins!r}")
    return tuple(sorted({int(b) for b in values}))


def epoch_bin_problems(meta: pl.DataFrame, ok: np.ndarray, bins: tuple[int, ...], given: bool) -> list[Problem]:
    """Rows (among ``ok``) whose epoch is not one of ``bins``; ``given``: the caller passed the bins."""
    epoch = meta["epoch"].to_numpy()
    off = np.flatnonzero(ok & ~np.isin(epoch, bins))
    if not len(off):
        return []
    rows = meta["source_row"].to_numpy()
    whose = "the given epoch bins" if given else "the CSV zoo's epoch bins"
    hint = "" if given else "; a zoo with other bins: pass them (--epoch-bins, epoch_bins=...)"
    return [(int(rows[i]), "epoch", f"epoch {int(epoch[i])} is not one of {whose} {list(bins)}{hint}") for i in off]


@dataclass
class AccuracyScale:
    """What the accuracies seen so far say about their scale (module docstring).

    ``percent``: where the first accuracy above 1 is (``"row 7"``, ``"model 12"``) and its value;
    ``fractions_only``: the same for a zoo holding only accuracies in (0, 1]; ``pending``: rows of
    (0, 1] seen before any percentage, refused by :meth:`late` once one is found.
    """

    path: str
    zoo: str
    percent: tuple[str, float] | None = None
    fractions_only: tuple[str, float] | None = None
    pending: list[tuple[int, float]] = field(default_factory=list)

    @classmethod
    def of_zoo(cls, path: str, zoo: str, models: pl.DataFrame | None) -> AccuracyScale:
        """Start from the zoo's accuracies (``models`` with ``model_id`` and ``accuracy``; None: a new zoo)."""
        scale = cls(path, zoo)
        if models is None or not models.height:
            return scale
        big = models.filter(pl.col("accuracy") > 1).head(1)
        small = models.filter((pl.col("accuracy") > 0) & (pl.col("accuracy") <= 1)).head(1)
        if big.height:
            scale.percent = (f"model {big['model_id'][0]}", float(big["accuracy"][0]))
        elif small.height:
            scale.fractions_only = (f"model {small['model_id'][0]}", float(small["accuracy"][0]))
        return scale

    def problems(self, meta: pl.DataFrame, ok: np.ndarray) -> list[Problem]:
        """Rows (among ``ok``) whose accuracy is in (0, 1] while a percentage is known; others are kept pending."""
        acc, rows = meta["accuracy"].to_numpy(), meta["source_row"].to_numpy()
        ok = ok & np.isfinite(acc)
        big = np.flatnonzero(ok & (acc > 1))
        if len(big):
            i = int(big[0])
            if self.fractions_only is not None:
                where, value = self.fractions_only
                raise IngestError(f"zoo {self.zoo!r} holds accuracies as fractions of 1 ({where}: {value!r}), this "
                                  f"file gives percentages ({acc[i]!r}): one zoo would mix two scales; ingest it into "
                                  "another --zoo", path=self.path, row=int(rows[i]), column="Accuracy")
            if self.percent is None:
                self.percent = (f"row {int(rows[i])}", float(acc[i]))
        small = np.flatnonzero(ok & (acc > 0) & (acc <= 1))
        if self.percent is None:
            self.pending += [(int(rows[i]), float(acc[i])) for i in small]
            return []
        return [(int(rows[i]), "Accuracy", self._reason(float(acc[i]))) for i in small]

    def late(self) -> list[Problem]:
        """The pending rows, once the whole file is read: refused if a percentage came later.

        Raises
        ------
        IngestError
            When no accuracy of the file or the zoo is above 1: the whole column reads as fractions.
        """
        if not self.pending:
            return []
        if self.percent is None:
            row, value = self.pending[0]
            raise IngestError(f"every nonzero accuracy of the file is between 0 and 1 ({len(self.pending)} rows, first "
                              f"{value!r}): the CSV zoo format holds percentages 0..100 (e.g. 98.64); if the Accuracy "
                              "column holds fractions, multiply it by 100", path=self.path, row=row, column="Accuracy")
        return [(row, "Accuracy", self._reason(value)) for row, value in self.pending]

    def _reason(self, value: float) -> str:
        where, pct = self.percent or ("", 0.0)
        return (f"accuracy {value!r} reads as a fraction of 1, while the CSV zoo format and this zoo's other "
                f"accuracies are percentages ({where}: {pct!r}); write it as a percentage ({value * 100:.10g} if it "
                "is a fraction)")


def zoo_accuracies(manifest: Any, root: Any, zoo: str) -> pl.DataFrame | None:
    """``model_id`` and ``accuracy`` of the zoo's models at ``manifest`` (None if it has none)."""
    from weightlake.lake import Lake

    entry = manifest.zoos.get(zoo)
    if entry is None or not entry.model_files:
        return None
    return Lake(root, manifest).models(zoo).select("model_id", "accuracy").collect()
