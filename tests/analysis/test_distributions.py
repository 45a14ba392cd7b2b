"""Distribution distances: Wasserstein, KL/JS, and the POT neuron-cloud metrics, against references."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import scipy.stats as st
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs
from scipy.spatial.distance import jensenshannon

from weightlake.analysis import distributions as D
from weightlake.arch import CNN_S
from weightlake.errors import QueryError

P = CNN_S.n_params


@pytest.fixture(scope="module")
def zoo() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.normal(0, 0.1, (6, P)), rng.normal(0.02, 0.12, (6, P))


# -- Wasserstein between value distributions ---------------------------------------------------


def test_w1_matches_scipy(zoo):
    pred, ref = zoo
    expected = [st.wasserstein_distance(p, r) for p, r in zip(pred, ref, strict=True)]
    np.testing.assert_allclose(D.wasserstein_1(pred, ref), expected, rtol=1e-10)
    f32 = D.wasserstein_1(pred.astype(np.float32), ref.astype(np.float32))
    np.testing.assert_allclose(f32, expected, rtol=1e-5)


def test_w2_matches_pot(zoo):
    pred, ref = zoo
    expected = [np.sqrt(ot.wasserstein_1d(p, r, p=2)) for p, r in zip(pred, ref, strict=True)]
    np.testing.assert_allclose(D.wasserstein_2(pred, ref), expected, rtol=1e-10)


@pytest.mark.parametrize("m, k", [(7, 3), (10, 4), (5, 12), (1, 6)])
def test_unequal_sizes_match_scipy_and_pot(m, k):
    rng = np.random.default_rng(m * 100 + k)
    a, b = rng.normal(size=(4, m)), rng.normal(size=(4, k))
    w1 = [st.wasserstein_distance(x, y) for x, y in zip(a, b, strict=True)]
    w2 = [np.sqrt(ot.wasserstein_1d(x, y, p=2)) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(D.wasserstein_1(a, b), w1, rtol=1e-10)
    np.testing.assert_allclose(D.wasserstein_2(a, b), w2, rtol=1e-10)
    grad_in = torch.tensor(a, requires_grad=True)
    D.wasserstein_2(grad_in, torch.tensor(b)).sum().backward()
    assert torch.isfinite(grad_in.grad).all()


def test_presorted_rows_give_the_same_result(zoo):
    pred, ref = zoo
    full = D.wasserstein_1(pred, ref)
    np.testing.assert_array_equal(D.wasserstein_1(D.sort_rows(pred), D.sort_rows(ref), presorted=True), full)
    np.testing.assert_array_equal(D.wasserstein_1(pred, D.sort_rows(ref), presorted="ref"), full)
    assert D.sort_rows(pred.astype(np.float32)).dtype == np.float32


def test_wasserstein_ignores_positions(zoo):
    pred, ref = zoo
    shuffled = np.random.default_rng(0).permuted(pred, axis=1)
    np.testing.assert_allclose(D.wasserstein_1(shuffled, ref), D.wasserstein_1(pred, ref), rtol=1e-12)
    with pytest.raises(QueryError):
        D.wasserstein_p(pred, ref, p=0.5)


finite = hs.floats(-10, 10, allow_nan=False, allow_infinity=False)
vectors = hs.lists(finite, min_size=1, max_size=40).map(np.array)


@settings(max_examples=60, deadline=None)
@given(vectors, vectors)
def test_w1_is_symmetric_and_nonnegative(a, b):
    ab, ba = D.wasserstein_1(a, b), D.wasserstein_1(b, a)
    assert ab >= 0
    assert ab == pytest.approx(ba, rel=1e-9, abs=1e-12)
    assert D.wasserstein_1(a, a) == 0
    assert ab == pytest.approx(st.wasserstein_distance(a, b), rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(vectors, vectors, vectors)
def test_w1_triangle_inequality(a, b, c):
    assert D.wasserstein_1(a, c) <= D.wasserstein_1(a, b) + D.wasserstein_1(b, c) + 1e-9


@settings(max_examples=40, deadline=None)
@given(vectors, vectors)
def test_w1_below_w2(a, b):
    assert D.wasserstein_1(a, b) <= D.wasserstein_2(a, b) + 1e-9


# -- KL and Jensen-Shannon ---------------------------------------------------------------------


def test_histograms_match_numpy(zoo):
    pred, ref = zoo
    p_pred, p_ref = D.value_histograms(pred, ref, bins=32, alpha=0.5)
    for i in range(len(pred)):
        lo, hi = min(pred[i].min(), ref[i].min()), max(pred[i].max(), ref[i].max())
        for got, row in ((p_pred[i], pred[i]), (p_ref[i], ref[i])):
            counts = np.histogram(row, bins=32, range=(lo, hi))[0] + 0.5
            np.testing.assert_allclose(got, counts / counts.sum(), rtol=1e-12)


def test_kl_and_js_match_scipy_on_histograms(zoo):
    pred, ref = zoo
    p_pred, p_ref = D.value_histograms(pred, ref)
    np.testing.assert_allclose(D.kl_divergence(pred, ref), [st.entropy(r, p) for p, r in zip(p_pred, p_ref, strict=True)],
                               rtol=1e-10)
    np.testing.assert_allclose(D.js_divergence(pred, ref),
                               [jensenshannon(p, r) ** 2 for p, r in zip(p_pred, p_ref, strict=True)], rtol=1e-8)


def test_kl_and_js_softmax_mode_match_scipy(zoo):
    pred, ref = zoo
    soft = lambda x: np.exp(x - x.max()) / np.exp(x - x.max()).sum()  # noqa: E731
    kl = [st.entropy(soft(r / 0.5), soft(p / 0.5)) for p, r in zip(pred, ref, strict=True)]
    js = [jensenshannon(soft(p), soft(r)) ** 2 for p, r in zip(pred, ref, strict=True)]
    np.testing.assert_allclose(D.kl_divergence(pred, ref, mode="softmax", temperature=0.5), kl, rtol=1e-9)
    np.testing.assert_allclose(D.js_divergence(pred, ref, mode="softmax"), js, rtol=1e-8)


def test_kl_is_never_computed_on_raw_negative_weights():
    pred, ref = np.array([-0.5, -0.1, 0.2, 0.3]), np.array([-0.4, -0.2, 0.1, 0.5])
    for mode in ("hist", "softmax"):
        assert np.isfinite(D.kl_divergence(pred, ref, mode=mode)) and D.kl_divergence(pred, ref, mode=mode) > 0
        assert 0 < D.js_divergence(pred, ref, mode=mode) <= np.log(2)


def test_fixed_value_range_and_parameter_checks(zoo):
    pred, ref = zoo
    out = D.kl_divergence(pred, ref, value_range=(-0.2, 0.2), bins=16)
    assert out.shape == (6,) and np.isfinite(out).all()
    with pytest.raises(QueryError):
        D.kl_divergence(pred, ref, mode="raw")
    with pytest.raises(QueryError):
        D.js_divergence(pred, ref, value_range=(1.0, 0.0))


def test_hist_mode_on_tensors_returns_a_tensor(zoo):
    pred, ref = zoo
    out = D.js_divergence(torch.from_numpy(pred), torch.from_numpy(ref))
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), D.js_divergence(pred, ref))


def test_nonfinite_rows_give_nan():
    a = np.array([[0.1, np.nan, 0.3], [0.1, 0.2, 0.3]])
    out = D.kl_divergence(a, np.array([0.1, 0.2, 0.4]))
    assert np.isnan(out[0]) and np.isfinite(out[1])


# -- neuron clouds -----------------------------------------------------------------------------


def test_layer_point_cloud_is_units_by_incoming_weights(zoo):
    pred, _ = zoo
    cloud = D.layer_point_cloud(pred, "fc1")
    assert cloud.shape == (6, 20, 36)
    np.testing.assert_array_equal(cloud[2, 3], pred[2, 1514 + 3 * 36:1514 + 4 * 36])
    assert D.layer_point_cloud(pred, "conv2").shape == (6, 6, 200)
    with_bias = D.layer_point_cloud(pred[0], "fc2", include_bias=True)
    assert with_bias.shape == (1, 10, 21) and with_bias[0, 4, -1] == pred[0, 2254 + 200 + 4]


def test_sliced_matches_pot_with_the_same_seed(zoo):
    pred, ref = zoo
    for layer in ("conv1", "fc1"):
        got = D.sliced_wasserstein(pred, ref, layer=layer, seed=11, n_projections=30)
        expected = [ot.sliced_wasserstein_distance(D.layer_point_cloud(p, layer)[0], D.layer_point_cloud(r, layer)[0],
                                                   n_projections=30, seed=11) for p, r in zip(pred, ref, strict=True)]
        np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_sliced_is_zero_for_permuted_units(zoo):
    pred, _ = zoo
    cloud = D.layer_point_cloud(pred, "fc1")
    permuted = pred.copy()
    permuted[:, 1514:2234] = cloud[:, ::-1].reshape(6, -1)
    np.testing.assert_allclose(D.sliced_wasserstein(pred, permuted, layer="fc1"), 0, atol=1e-12)
    assert (np.abs(pred - permuted).max(1) > 0).all()  # the vectors differ, the clouds do not


def test_sinkhorn_matches_pot(zoo):
    pred, ref = zoo
    got = D.sinkhorn(pred[:3], ref[:3], layer="fc2", tol=1e-10)
    for i in range(3):
        a, b = D.layer_point_cloud(pred[i], "fc2")[0], D.layer_point_cloud(ref[i], "fc2")[0]
        cost = ot.dist(a, b)
        mass = np.full(10, 0.1)
        expected = ot.sinkhorn2(mass, mass, cost, 0.1 * cost.mean(), method="sinkhorn_log", stopThr=1e-12)
        assert got[i] == pytest.approx(float(expected), rel=1e-6)


def test_gromov_wasserstein_matches_pot_and_ignores_permutations(zoo):
    pred, ref = zoo
    got = D.gromov_wasserstein(pred[:2], ref[:2], layer="conv3")
    for i in range(2):
        ca = ot.dist(D.layer_point_cloud(pred[i], "conv3")[0], metric="euclidean")
        cb = ot.dist(D.layer_point_cloud(ref[i], "conv3")[0], metric="euclidean")
        mass = np.full(4, 0.25)
        assert got[i] == pytest.approx(ot.gromov.gromov_wasserstein2(ca, cb, mass, mass), rel=1e-9)
    assert D.gromov_wasserstein(pred[0], pred[0], layer="conv3") == pytest.approx(0, abs=1e-12)


def test_cloud_metrics_average_over_layers(zoo):
    pred, ref = zoo
    per = [D.sliced_wasserstein(pred, ref, layer=name) for name in CNN_S.layer_names]
    np.testing.assert_allclose(D.sliced_wasserstein(pred, ref), np.mean(per, 0))
    assert np.ndim(D.sliced_wasserstein(pred[0], ref[0])) == 0
