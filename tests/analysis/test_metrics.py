"""Row metrics: agreement with numpy/scipy/torch references, layers, registry, degenerate rows."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.spatial.distance as ssd
import scipy.stats as st
import torch

from weightlake.analysis import metrics as M
from weightlake.arch import CNN_S
from weightlake.errors import ArchitectureError, NoSuchTableError, QueryError

P = CNN_S.n_params


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    ref = rng.normal(0, 0.1, (12, P))
    pred = ref + rng.normal(0, 0.05, (12, P))
    return pred, ref


# -- references --------------------------------------------------------------------------------


def test_mse_mae_match_numpy_and_torch(pair):
    pred, ref = pair
    np.testing.assert_allclose(M.mse(pred, ref), ((pred - ref) ** 2).mean(1), rtol=1e-12)
    np.testing.assert_allclose(M.mae(pred, ref), np.abs(pred - ref).mean(1), rtol=1e-12)
    tp, tr = torch.from_numpy(pred), torch.from_numpy(ref)
    torch_mse = torch.nn.functional.mse_loss(tp, tr, reduction="none").mean(1)
    torch_mae = torch.nn.functional.l1_loss(tp, tr, reduction="none").mean(1)
    np.testing.assert_allclose(M.mse(tp, tr).numpy(), torch_mse.numpy(), rtol=1e-12)
    np.testing.assert_allclose(M.mae(tp, tr).numpy(), torch_mae.numpy(), rtol=1e-12)


def test_float32_input_gives_float64_result(pair):
    pred, ref = (x.astype(np.float32) for x in pair)
    out = M.mse(pred, ref)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, ((pred.astype(float) - ref) ** 2).mean(1), rtol=1e-6)


def test_cosine_matches_scipy(pair):
    pred, ref = pair
    expected = [1 - ssd.cosine(p, r) for p, r in zip(pred, ref, strict=True)]
    np.testing.assert_allclose(M.cosine_similarity(pred, ref), expected, rtol=1e-10)


def test_pearson_matches_scipy(pair):
    pred, ref = pair
    expected = [st.pearsonr(p, r).statistic for p, r in zip(pred, ref, strict=True)]
    np.testing.assert_allclose(M.pearson(pred, ref), expected, rtol=1e-10)


def test_mape_divides_by_the_reference_with_a_floor():
    ref = np.array([[1.0, -2.0, 0.0, 1e-5]])
    pred = np.array([[1.5, -1.0, 0.01, 0.0]])
    expected = np.mean([0.5 / 1.0, 1.0 / 2.0, 0.01 / 1e-3, 1e-5 / 1e-3])
    np.testing.assert_allclose(M.mape(pred, ref), [expected])
    # scaling the prediction up never lowers the error (the bug was dividing by pred)
    assert M.mape(10 * pred, ref)[0] > M.mape(pred, ref)[0]
    np.testing.assert_allclose(M.mape(pred, ref, eps=1e-2), [np.mean([0.5, 0.5, 1.0, 1e-3])])


def test_quantile_loss():
    ref, pred = np.array([0.0, 0.0]), np.array([1.0, -1.0])  # one over, one under by 1
    assert M.quantile_loss(pred, ref, tau=0.9) == pytest.approx((0.1 + 0.9) / 2)
    assert M.quantile_loss(pred, ref, tau=0.5) == pytest.approx(M.mae(pred, ref) / 2)
    with pytest.raises(QueryError):
        M.quantile_loss(pred, ref, tau=1.5)


def test_norms_and_norm_differences(pair):
    pred, ref = pair
    np.testing.assert_allclose(M.l2_norm(pred), np.linalg.norm(pred, axis=1))
    np.testing.assert_allclose(M.l1_norm(pred), np.abs(pred).sum(1))
    n_p, n_r = np.linalg.norm(pred, axis=1), np.linalg.norm(ref, axis=1)
    np.testing.assert_allclose(M.norm_diff(pred, ref), np.abs(n_p - n_r))
    np.testing.assert_allclose(M.norm_diff(pred, ref, signed=True), n_p - n_r)
    np.testing.assert_allclose(M.log_norm_diff(pred, ref), np.abs(np.log(n_p / n_r)))
    np.testing.assert_allclose(M.l1_norm_diff(pred, ref), np.abs(np.abs(pred).sum(1) - np.abs(ref).sum(1)))
    assert M.log_norm_diff(2 * ref[0], ref[0]) == pytest.approx(np.log(2))


def test_fft_diff():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 64)), rng.normal(size=(3, 64))
    expected = ((np.abs(np.fft.rfft(a, norm="ortho")) - np.abs(np.fft.rfft(b, norm="ortho"))) ** 2).mean(1)
    np.testing.assert_allclose(M.fft_diff(a, b), expected)
    np.testing.assert_allclose(M.fft_diff(a, np.roll(a, 5, axis=1)), 0, atol=1e-12)  # phase is ignored


def test_nmse_and_layer_nmse(pair):
    pred, ref = pair
    np.testing.assert_allclose(M.nmse(pred, ref), ((pred - ref) ** 2).mean(1) / ref.var(1))
    np.testing.assert_allclose(M.nmse(np.broadcast_to(ref.mean(1, keepdims=True), ref.shape), ref), 1.0)
    blocks = [(layer.start, layer.stop) for layer in CNN_S.layers]
    expected = np.mean([((pred[:, i:j] - ref[:, i:j]) ** 2).mean(1) / ref[:, i:j].var(1) for i, j in blocks], 0)
    np.testing.assert_allclose(M.layer_nmse(pred, ref), expected)


def test_saturation_share():
    x = np.array([[0.0, 0.995, -1.0, 0.5], [0.1, 0.2, 0.3, 0.4]])
    np.testing.assert_allclose(M.saturation_share(x), [0.5, 0.0])
    np.testing.assert_allclose(M.saturation_share(x, threshold=0.45), [0.75, 0.0])


# -- shapes and broadcasting -------------------------------------------------------------------


def test_vector_against_rows_and_scalar_for_two_vectors(pair):
    pred, ref = pair
    np.testing.assert_allclose(M.mse(pred, ref[0]), ((pred - ref[0]) ** 2).mean(1))
    value = M.mse(pred[0], ref[0])
    assert np.ndim(value) == 0 and value == pytest.approx(((pred[0] - ref[0]) ** 2).mean())
    assert M.mse(torch.from_numpy(pred[0]), ref[0]).ndim == 0


def test_blocks_and_threads_do_not_change_results(pair):
    from weightlake.analysis._rows import apply_rows

    pred, ref = np.tile(pair[0], (50, 1)), np.tile(pair[1], (50, 1))
    one = apply_rows(M._pearson, pred, ref, workers=1, block_rows=10_000)
    many = apply_rows(M._pearson, pred, ref, workers=3, block_rows=7)
    np.testing.assert_array_equal(one, many)


def test_shape_mismatch_is_a_clear_error(pair):
    pred, ref = pair
    with pytest.raises(ArchitectureError, match="rows"):
        M.mse(pred[:3], ref[:5])
    with pytest.raises(ArchitectureError, match="same length"):
        M.mse(pred[:, :10], ref[:, :11])


# -- torch losses ------------------------------------------------------------------------------


DIFFERENTIABLE = sorted(name for name, spec in M.METRICS.items() if spec.differentiable)


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_differentiable_metrics_give_torch_gradients(name, pair):
    pred_np, ref_np = pair
    pred = torch.tensor(pred_np[:4], requires_grad=True)
    ref = torch.tensor(ref_np[:4])
    value = M.METRICS[name].evaluate(pred, ref)
    assert isinstance(value, torch.Tensor) and value.shape == (4,)
    value.mean().backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    np.testing.assert_allclose(value.detach().numpy(), M.METRICS[name].evaluate(pred_np[:4], ref_np[:4]),
                               rtol=1e-9, atol=1e-12)


def test_mse_as_a_training_loss_decreases():
    torch.manual_seed(0)
    target = torch.randn(8, 32)
    pred = torch.zeros(8, 32, requires_grad=True)
    opt = torch.optim.SGD([pred], lr=20.0)
    first = None
    for _ in range(20):
        opt.zero_grad()
        loss = M.mse(pred, target).mean() + 0.1 * M.wasserstein_1(pred, target).mean()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.2 * first


def test_torch_and_numpy_mix(pair):
    pred, ref = pair
    out = M.cosine_similarity(torch.from_numpy(pred), ref)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), M.cosine_similarity(pred, ref))


# -- layers ------------------------------------------------------------------------------------


def test_per_layer_uses_the_layer_blocks(pair):
    assert CNN_S.boundaries == (0, 208, 1414, 1514, 2254, 2464)
    pred, ref = pair
    out = M.per_layer("mae", pred, ref)
    assert list(out) == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    for (name, values), i, j in zip(out.items(), CNN_S.boundaries[:-1], CNN_S.boundaries[1:], strict=True):
        np.testing.assert_allclose(values, np.abs(pred[:, i:j] - ref[:, i:j]).mean(1), err_msg=name)


def test_per_layer_accepts_any_row_function(pair):
    pred, ref = pair
    out = M.per_layer(lambda p, r: np.abs(p - r).max(-1), pred, ref)
    np.testing.assert_allclose(out["conv3"], np.abs(pred[:, 1414:1514] - ref[:, 1414:1514]).max(1))
    with pytest.raises(ArchitectureError):
        M.per_layer("mse", pred[:, :100], ref[:, :100])
    with pytest.raises(NoSuchTableError):
        M.per_layer("no_such_metric", pred, ref)


def test_ar_mse_ratio_is_relative_to_the_whole_vector(pair):
    pred, ref = pair
    ratios = M.ar_mse_ratio(pred, ref)
    whole = M.mse(pred, ref)
    for layer in CNN_S.layers:
        np.testing.assert_allclose(ratios[layer.name], M.mse(pred[:, layer.start:layer.stop],
                                                             ref[:, layer.start:layer.stop]) / whole)
    weighted = sum(ratios[layer.name] * layer.size / P for layer in CNN_S.layers)
    np.testing.assert_allclose(weighted, 1.0)
    assert np.isnan(M.ar_mse_ratio(ref, ref)["fc1"]).all()


# -- degenerate inputs -------------------------------------------------------------------------


def test_degenerate_rows_give_documented_values():
    const, zero, normal = np.full(P, 0.3), np.zeros(P), np.linspace(-1, 1, P)
    assert np.isnan(M.pearson(const, normal)) and np.isnan(M.pearson(normal, const))
    assert np.isnan(M.cosine_similarity(zero, normal))
    assert np.isnan(M.log_norm_diff(zero, normal)) and np.isnan(M.log_norm_diff(zero, zero))
    assert np.isnan(M.nmse(normal, const)) and np.isnan(M.layer_nmse(normal, const))
    assert M.norm_diff(zero, zero) == 0 and M.mse(zero, zero) == 0 and M.mape(zero, zero) == 0
    assert M.wasserstein_1(const, const) == 0
    assert M.wasserstein_1(const, zero) == pytest.approx(0.3)
    assert M.kl_divergence(const, const) == 0 and M.js_divergence(zero, zero) == 0
    assert np.isfinite(M.kl_divergence(const, zero)) and np.isfinite(M.js_divergence(const, normal))
    assert M.pearson(normal, normal) == pytest.approx(1.0)


def test_every_metric_survives_degenerate_rows():
    rows = np.stack([np.zeros(P), np.full(P, 0.3), np.full(P, -0.3), np.linspace(-1, 1, P)])
    out = M.compute_all(rows, rows[::-1], include_slow=True)
    assert all(v.shape == (4,) for v in out.values())
    assert np.isfinite(out["mse"]).all() and np.isfinite(out["w1"]).all() and np.isfinite(out["kl"]).all()


def test_identical_rows(pair):
    _, ref = pair
    out = M.compute_all(ref, ref)
    for name in ("mse", "mae", "mape", "w1", "w2", "kl", "js", "fft_diff", "l2_norm_diff", "sliced_w"):
        np.testing.assert_allclose(out[name], 0, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(out["pearson"], 1)
    np.testing.assert_allclose(out["cosine"], 1)


# -- registry and compute_all -----------------------------------------------------------------


def test_registry_entries_are_consistent():
    required = {"mse", "mae", "mape", "cosine", "pearson", "l1_norm_diff", "l2_norm_diff", "log_norm_diff",
                "w1", "w2", "kl", "js", "sliced_w", "sinkhorn", "gromov_w", "fft_diff", "layer_nmse",
                "quantile_loss", "saturation_share"}
    assert required <= set(M.METRICS)
    for name, spec in M.METRICS.items():
        assert spec.name == name and name.isidentifier()
        assert spec.summary, name
        assert spec.to_dict()["name"] == name
    assert M.METRICS["cosine"].higher_is_better and not M.METRICS["mse"].higher_is_better
    assert M.METRICS["gromov_w"].slow and not M.METRICS["layer_nmse"].per_layer


def test_compute_all_columns(pair):
    pred, ref = pair
    out = M.compute_all(pred, ref)
    assert "mse" in out and "mse_fc1" in out and "w1_conv2" in out and "ar_mse_ratio_fc2" in out
    assert "sinkhorn" not in out and "gromov_w" not in out and "layer_nmse_fc1" not in out
    assert all(v.dtype == np.float64 and v.shape == (len(pred),) for v in out.values())
    np.testing.assert_allclose(out["mse_fc1"], M.mse(pred[:, 1514:2254], ref[:, 1514:2254]))
    np.testing.assert_allclose(out["sliced_w"], np.mean([out[f"sliced_w_{n}"] for n in CNN_S.layer_names], 0))
    np.testing.assert_allclose(out["saturation_share"], M.saturation_share(pred))
    only = M.compute_all(pred, ref, per_layer=False, metrics=["mse", "w1"])
    assert list(only) == ["mse", "w1"]


def test_compute_all_slow_metrics_for_a_few_rows(pair):
    pred, ref = pair
    out = M.compute_all(pred[:2], ref[:2], include_slow=True, metrics=["sinkhorn", "gromov_w"])
    assert set(out) == {f"{m}{s}" for m in ("sinkhorn", "gromov_w") for s in ["", *(f"_{n}" for n in CNN_S.layer_names)]}
    assert all(np.isfinite(v).all() and (v >= 0).all() for v in out.values())
