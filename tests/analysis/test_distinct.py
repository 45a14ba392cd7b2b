"""Distinct models: one row per weight vector, fallback copies dropped first."""

from __future__ import annotations

import polars as pl

from weightlake.analysis.distinct import distinct_models


def test_fallback_copies_and_repeats_are_dropped_and_counted() -> None:
    meta = pl.DataFrame({
        "model_id": [0, 1, 2, 3, 4, 5],
        "weights_hash": ["a", "a", "a", "b", "c", "c"],
        "fallback": [False, True, True, False, False, False],
        "epoch": [16, 21, 26, 11, 16, 11],
    })
    sel = distinct_models(meta)
    assert sel.keep.tolist() == [True, False, False, True, False, True]  # 'c': the earlier epoch bin stays
    assert (sel.n_rows, sel.n_distinct, sel.dropped_fallback, sel.dropped_repeated) == (6, 3, 2, 1)
    assert "3 distinct models of 6 rows" in sel.note()


def test_a_model_only_present_as_fallback_is_kept_once() -> None:
    meta = pl.DataFrame({"model_id": [7, 8], "weights_hash": ["s", "s"], "fallback": [True, True],
                         "epoch": [26, 21]})
    assert distinct_models(meta).keep.tolist() == [False, True]


def test_null_hashes_are_each_their_own_model() -> None:
    meta = pl.DataFrame({"model_id": [0, 1], "weights_hash": [None, None]}, schema={
        "model_id": pl.Int64, "weights_hash": pl.String})
    sel = distinct_models(meta)
    assert sel.keep.tolist() == [True, True] and sel.note().startswith("2 distinct models")
