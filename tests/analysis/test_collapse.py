"""Degenerate rows, collapse reports and statistics that need variety across rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as st
import torch

from weightlake.analysis.collapse import (
    CollapseReport,
    across_rows_pearson,
    collapse_report,
    degenerate_rows,
)
from weightlake.errors import QueryError


@pytest.fixture(scope="module")
def healthy() -> np.ndarray:
    return np.random.default_rng(5).normal(0, 0.1, (200, 64)).astype(np.float32)


@pytest.fixture(scope="module")
def collapsed(healthy) -> np.ndarray:
    rows = np.repeat(healthy[:1], 1000, axis=0)
    rows[:3] = healthy[1:4]  # 997 of 1000 rows are one vector
    return rows


def test_degenerate_rows_flags():
    x = np.stack([np.zeros(10), np.full(10, 2.0), np.arange(10.0), np.r_[np.arange(9.0), np.nan],
                  np.r_[np.zeros(5), np.ones(5)]])
    flags = degenerate_rows(x, min_unique=3)
    assert flags["zero_norm"].tolist() == [True, False, False, False, False]
    assert flags["constant"].tolist() == [True, True, False, False, False]
    assert flags["nonfinite"].tolist() == [False, False, False, True, False]
    assert flags["few_unique"].tolist() == [True, True, False, False, True]
    assert flags["n_unique"].tolist() == [1, 1, 10, 10, 2]
    assert flags["any"].tolist() == [True, True, False, True, True]


def test_collapse_report_on_a_collapsed_set(collapsed):
    report = collapse_report(collapsed)
    assert report.collapsed and report.n_rows == 1000 and report.n_distinct_rows == 4
    assert report.top_row_share == pytest.approx(0.997)
    assert report.unique_value_share == pytest.approx(len(np.unique(collapsed[:4])) / collapsed.size)
    assert "99.70%" in report.reason
    assert CollapseReport.from_dict(report.to_dict()) == report


def test_collapse_report_on_a_healthy_set(healthy):
    report = collapse_report(healthy)
    assert not report.collapsed
    assert report.n_distinct_rows == 200 and report.top_row_share == pytest.approx(1 / 200)
    assert report.unique_value_share == pytest.approx(np.unique(healthy).size / healthy.size)


def test_one_vector_regardless_of_input(healthy):
    report = collapse_report(torch.from_numpy(np.repeat(healthy[:1], 50, axis=0)))
    assert report.collapsed and report.n_distinct_rows == 1 and "regardless of input" in report.reason


def test_atol_merges_near_identical_rows(healthy):
    noisy = np.repeat(healthy[:1], 500, axis=0) + np.random.default_rng(0).normal(0, 1e-9, (500, 64)).astype(np.float32)
    noisy[0] = healthy[7]
    assert not collapse_report(noisy).collapsed
    report = collapse_report(noisy, atol=1e-4)
    assert report.collapsed and report.top_row_share == pytest.approx(499 / 500)


def test_negative_zero_equals_zero():
    rows = np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, 1.0]])
    assert collapse_report(rows).n_distinct_rows == 1


def test_edge_cases_do_not_crash():
    empty = collapse_report(np.zeros((0, 5)))
    assert empty.n_rows == 0 and not empty.collapsed and math.isnan(empty.top_row_share)
    single = collapse_report(np.ones((1, 5)))
    assert not single.collapsed and single.n_distinct_rows == 1
    with pytest.raises(QueryError):
        collapse_report(np.ones((3, 5)), threshold=0)


def test_across_rows_pearson_matches_scipy(healthy):
    rng = np.random.default_rng(1)
    ref = healthy.astype(np.float64)
    pred = ref + rng.normal(0, 0.1, ref.shape)
    pred[:, 5] = 0.3  # a constant parameter is left out
    result = across_rows_pearson(pred, ref)
    cols = [j for j in range(64) if j != 5]
    expected = np.mean([st.pearsonr(pred[:, j], ref[:, j]).statistic for j in cols])
    assert result.value == pytest.approx(expected, rel=1e-9)
    assert result.n_used == 63 and result.reason == ""


def test_across_rows_pearson_is_nan_with_a_reason_when_collapsed(collapsed):
    ref = np.random.default_rng(2).normal(size=collapsed.shape)
    result = across_rows_pearson(collapsed, ref)
    assert math.isnan(result.value) and result.reason.startswith("pred collapsed")
    few = across_rows_pearson(collapsed[:2], ref[:2])
    assert math.isnan(few.value) and "at least 3" in few.reason


def test_partial_collapse_is_reported_with_its_share(healthy):
    """71 % of inputs on one output vector was 'not collapsed' with no flag (threshold 99 %)."""
    rows = np.repeat(healthy[:1], 100, axis=0)
    rows[71:] = healthy[1:30]  # 71 of 100 rows are one vector, the rest distinct
    report = collapse_report(rows)
    assert not report.collapsed and report.partial and report.status == "partial"
    assert report.top_row_share == pytest.approx(0.71)
    assert "partial collapse" in report.reason and "71.00%" in report.reason
    assert CollapseReport.from_dict(report.to_dict()) == report
    assert collapse_report(healthy).status == "varied" and not collapse_report(healthy).partial
    assert collapse_report(np.repeat(healthy[:1], 10, axis=0)).status == "collapsed"
    assert not collapse_report(rows, partial_threshold=0.8).partial  # the threshold is a parameter
    with pytest.raises(QueryError):
        collapse_report(rows, partial_threshold=0.995)
