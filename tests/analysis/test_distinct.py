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


def test_checkpoints_of_one_run_are_counted_as_runs_and_said() -> None:
    """Was: 67 distinct models of 34 runs (33 at epochs 11 and 16, r = 0.998 between the two)
    went into every p-value as 67 independent samples without a word."""
    meta = pl.DataFrame({
        "model_id": [0, 1, 2, 3, 4], "zoo": ["z"] * 5, "weights_hash": ["a", "b", "c", "d", "d"],
        "init": ["k"] * 5, "activation": ["gelu", "gelu", "relu", "relu", "relu"],
        "class_mask": [3, 3, 3, 5, 5], "epoch": [11, 16, 11, 11, 16], "fallback": [False, False, False, False, True],
    })
    sel = distinct_models(meta)
    # runs: (gelu, 3) at 11 and 16; (relu, 3) at 11; (relu, 5) at 11 (its epoch-16 row is a fallback copy)
    assert (sel.n_runs, sel.runs_several, sel.last_epoch) == (3, 1, 16)
    assert "checkpoints of 3 training runs, 1 of them at several epochs" in sel.note()
    assert "`WHERE epoch = 16`" in sel.note() and "runs" not in sel.note(runs=False)
    assert sel.to_dict()["runs_at_several_epochs"] == 1
    one_epoch = distinct_models(meta.filter(pl.col("epoch") == 11))
    assert one_epoch.n_runs == 3 and one_epoch.runs_several == 0 and "runs" not in one_epoch.note()
    # a zoo that records runs (Model Zoos) is counted by run_id
    zoo = meta.with_columns(run_id=pl.Series(["r1", "r1", "r1", "r2", "r2"]))
    assert distinct_models(zoo).n_runs == 2 and distinct_models(zoo).runs_several == 1
    # metadata that says nothing about runs: nothing is claimed
    bare = meta.select("model_id", "weights_hash", "epoch")
    assert distinct_models(bare).n_runs is None and "runs" not in distinct_models(bare).note()


def test_latest_per_run_keeps_one_checkpoint_of_each_run() -> None:
    import numpy as np
    import pytest

    from weightlake.analysis.distinct import latest_per_run
    from weightlake.errors import QueryError

    meta = pl.DataFrame({
        "model_id": [0, 1, 2, 3, 4], "init": ["k"] * 5, "activation": ["gelu", "gelu", "relu", "relu", "relu"],
        "class_mask": [3, 3, 3, 5, 5], "epoch": [16, 11, 11, 16, 16],
    })
    assert latest_per_run(meta).tolist() == [True, False, True, True, False]  # a tie: the lowest model_id
    assert latest_per_run(meta.with_columns(run_id=pl.lit("one"))).tolist() == [True, False, False, False, False]
    assert np.array_equal(latest_per_run(meta.filter(pl.col("epoch") == 11)), [True, True])
    with pytest.raises(QueryError, match="names no training runs"):
        latest_per_run(meta.select("model_id", "epoch"))


def test_rows_without_a_run_id_beside_rows_with_one_are_told_apart_by_their_run_columns() -> None:
    """Three CSV runs (run_id null) beside one Model Zoos run: grouped by run_id alone, the three were one run."""
    import polars as pl

    from weightlake.analysis.distinct import run_columns

    meta = pl.DataFrame({"model_id": [0, 1, 2, 3, 4], "run_id": [None, None, None, "r1", "r1"],
                         "init": ["a"] * 5, "activation": ["relu"] * 5, "class_mask": [3, 5, 6, None, None],
                         "epoch": [11, 11, 11, 1, 2]})
    cols = run_columns(meta)
    assert meta.group_by(cols).len().height == 4
    assert run_columns(meta.filter(pl.col("run_id").is_not_null())) == ["run_id"]
