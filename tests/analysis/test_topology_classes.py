"""Disentangling classes: Jaccard, Mantel, cross-validated AUC, class-set averaging, the baseline."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from weightlake.analysis import topology_classes as tc
from weightlake.arch import CNN_S

pytest.importorskip("sklearn")


def test_jaccard_distances():
    d = tc.jaccard_distances([[0, 1], [1, 2], [0, 1], [3, 4]])
    np.testing.assert_allclose(d[0], [0.0, 2 / 3, 0.0, 1.0])
    np.testing.assert_allclose(d, d.T)


def _dist(x: np.ndarray) -> np.ndarray:
    return np.abs(x[:, None] - x[None, :])


def test_mantel_finds_a_shared_structure_and_not_an_unrelated_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    r, p = tc.mantel(_dist(x), _dist(x + rng.normal(0, 0.1, 30)), permutations=199)
    assert r > 0.8 and p <= 0.01
    null = [tc.mantel(_dist(rng.normal(size=30)), _dist(rng.normal(size=30)), permutations=99, seed=s)[1]
            for s in range(30)]  # unrelated matrices: p-values about uniform
    assert np.mean(np.array(null) < 0.05) <= 0.2 and 0.3 < np.mean(null) < 0.7


def test_class_set_means_average_over_models_and_skip_self_pairs():
    d = np.array([[0, 1, 4], [1, 0, 6], [4, 6, 0]], dtype=float)
    means, sets = tc.class_set_means(d, [[0, 1], [1, 0], [2, 3]])
    assert sets == [(0, 1), (2, 3)]
    np.testing.assert_allclose(means, [[1.0, 5.0], [5.0, 0.0]])


def test_cv_auc_sees_an_informative_feature_across_unseen_class_sets():
    rng = np.random.default_rng(1)
    sets = [tuple(sorted(rng.choice(10, 3, replace=False))) for _ in range(40)]
    class_sets = [s for s in sets for _ in range(5)]
    groups = np.array([str(s) for s in class_sets])
    y = np.array([3 in s for s in class_sets], dtype=int)
    noise = rng.normal(size=(len(y), 6))
    auc, cv = tc.cv_auc(np.column_stack([noise, y + rng.normal(0, 0.5, len(y))]), y, groups)
    assert cv == "grouped" and auc > 0.9
    auc, cv = tc.cv_auc(noise, y, groups)
    assert 0.3 < auc < 0.7
    auc, cv = tc.cv_auc(noise[:3], np.array([1, 0, 0]), groups[:3])
    assert np.isnan(auc) and cv == "too_few"


def test_baseline_vectors_are_norms_and_singular_values():
    rng = np.random.default_rng(2)
    rows = rng.normal(size=(3, CNN_S.n_params))
    x, names = tc.baseline_vectors(rows, CNN_S)
    assert x.shape == (3, len(names))
    fc1 = CNN_S.layer_matrix(rows, "fc1")[1]
    col = names.index("fc1.sv[0]")
    assert x[1, col] == pytest.approx(np.linalg.norm(fc1, 2))
    assert x[1, names.index("fc1.frobenius")] == pytest.approx(np.linalg.norm(fc1))


def test_mantel_of_a_constant_triangle_is_untested_not_significant():
    """Disjoint class sets are all at Jaccard distance 1: the correlation is undefined. It gave
    (nan, 0.01) with 99 permutations, a 'significant' p-value, as no permuted NaN beats a NaN."""
    jac = tc.jaccard_distances([[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]])
    assert (jac[np.triu_indices(5, 1)] == 1.0).all()
    a = _dist(np.random.default_rng(0).normal(size=5))
    r, p = tc.mantel(a, jac, permutations=99)
    assert np.isnan(r) and np.isnan(p)


def test_disentangle_refuses_one_fold_and_no_permutations():
    from weightlake.analysis.topology import TopologyError

    for options, words in (({"folds": 1}, "folds must be at least 2"),
                           ({"permutations": 0}, "permutations must be at least 1")):
        with pytest.raises(TopologyError, match=words):
            tc.disentangle(None, [], np.zeros((0, CNN_S.n_params)), CNN_S, **options)  # type: ignore[arg-type]


def test_digit_aucs_are_null_where_too_few_models_hold_the_digit():
    """A digit only one model saw has no AUC: its rows held NaN (so ``max(auc)`` in SQL was NaN); null now."""
    rng = np.random.default_rng(3)
    class_sets = [(0, 1)] * 6 + [(0, 2)] * 6 + [(1, 2)] * 6 + [(1, 3)]  # digit 3: one model
    table = tc.digit_aucs({"x": rng.normal(size=(len(class_sets), 4))}, class_sets, folds=3)
    three = table.filter(pl.col("digit") == 3)
    assert three["cv"].to_list() == ["too_few"] and three["auc"].is_null().all()
    assert table.filter(pl.col("digit") != 3)["auc"].is_not_null().all()
    assert not table["auc"].is_nan().any()
