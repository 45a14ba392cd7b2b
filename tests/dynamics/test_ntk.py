"""Empirical NTK against autograd, its spectrum against GD on the linearised model, and the
wide-MLP limit against the analytic recursions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weightlake.dynamics.kernels import KernelError, analytic_kernels, phase_diagram, wide_mlp
from weightlake.dynamics.ntk import empirical_ntk, linearised_gd, ntk_matrix, ntk_spectrum
from weightlake.zoo.cnn import build_cnn


@pytest.fixture()
def cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_cnn(activation="tanh")


@pytest.fixture()
def images() -> torch.Tensor:
    return torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def _autograd_ntk(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Sum over parameters of per-sample gradient products, one backward per (input, output)."""
    n, k = len(x), model(x[:1]).shape[1]
    grads = torch.zeros(n, k, sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    for i in range(n):
        for o in range(k):
            model.zero_grad()
            model(x[i:i + 1])[0, o].backward()
            grads[i, o] = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double()
    return torch.einsum("nkp,mlp->nmkl", grads, grads)


def test_ntk_is_the_sum_of_per_sample_gradient_products(cnn, images):
    theta = empirical_ntk(cnn, images)
    reference = _autograd_ntk(cnn, images)
    assert theta.shape == (6, 6, 10, 10)
    torch.testing.assert_close(theta, reference, rtol=1e-4, atol=1e-4 * float(reference.abs().max()))
    trace = empirical_ntk(cnn, images, trace=True)
    torch.testing.assert_close(trace, torch.einsum("nmkk->nm", reference), rtol=1e-4,
                               atol=1e-4 * float(trace.abs().max()))


def test_spectrum_of_a_singular_kernel_reports_its_rank():
    j = torch.randn(12, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    spec = ntk_spectrum(j @ j.T)
    assert spec.rank == 5 and spec.singular and spec.kappa == float("inf") and np.isfinite(spec.kappa_range)
    eig = torch.linalg.eigvalsh(j.T @ j)
    assert spec.lambda_max == pytest.approx(float(eig[-1])) and spec.lambda_min == pytest.approx(float(eig[0]))
    assert spec.lr_bound == pytest.approx(2 / float(eig[-1]))


def test_spectrum_records_the_threshold_it_called_singular():
    """A full-rank kernel whose smallest eigenvalue sits under ``rtol * lambda_max`` is only numerically
    singular: the row says by which threshold, so a reader can tell it from a dead network."""
    theta = torch.diag(torch.tensor([1.0, 0.5, 1e-8], dtype=torch.float64))
    spec = ntk_spectrum(theta, rtol=1e-6)
    assert spec.singular and spec.rank == 2 and spec.rtol == 1e-6 and spec.to_dict()["rtol"] == 1e-6
    assert not ntk_spectrum(theta, rtol=1e-10).singular


def test_gd_on_the_linearised_model_converges_below_the_bound_and_diverges_above(cnn, images):
    x = images[:4]
    spec = ntk_spectrum(empirical_ntk(cnn, x))
    y = torch.zeros(4, 10)
    below = linearised_gd(cnn, x, y, lr=0.95 * spec.lr_bound, steps=200)
    above = linearised_gd(cnn, x, y, lr=1.05 * spec.lr_bound, steps=200)
    assert below[-1] < below[0] and bool(torch.all(below[1:] <= below[0] * 1.0001))
    assert above[-1] > 100 * above[0]


def test_full_kernel_flattens_output_major_within_each_input(cnn, images):
    theta = empirical_ntk(cnn, images[:3])
    mat = ntk_matrix(theta)
    assert mat[1 * 10 + 4, 2 * 10 + 7] == theta[1, 2, 4, 7]


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_wide_mlp_ntk_converges_to_the_analytic_kernel(activation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True) / np.sqrt(8)
    _, theta = analytic_kernels(x, depth=2, sigma_w2=2.0, sigma_b2=0.1, activation=activation)
    errors = []
    for width in (64, 2048):
        model = wide_mlp(8, width, 2, sigma_w2=2.0, sigma_b2=0.1, activation=activation, seed=3)
        emp = empirical_ntk(model, torch.tensor(x, dtype=torch.float32), trace=True).numpy()
        errors.append(np.abs(emp - theta).max() / np.abs(theta).max())
    assert errors[1] < 0.1 and errors[1] < errors[0] / 2


def test_analytic_kernels_degenerate_with_depth_in_the_ordered_phase_only():
    x = np.random.default_rng(1).standard_normal((6, 10))
    ordered = phase_diagram(x, depths=[1, 10, 50], sigma_w2s=[1.0, 1.5], sigma_b2=0.05, activation="relu")
    assert np.all(np.diff(ordered["correlation"], axis=1) > 0)  # inputs become indistinguishable
    assert np.all(ordered["correlation"][:, -1] > 0.99)
    assert np.all(ordered["kappa"][:, -1] > 100 * ordered["kappa"][:, 0])
    chaotic = phase_diagram(x, depths=[1, 50], sigma_w2s=[4.0], sigma_b2=0.05, activation="erf")
    assert abs(chaotic["correlation"][0, -1]) < 0.1 and chaotic["kappa"][0, -1] < 10


def test_unknown_activation_is_refused():
    with pytest.raises(KernelError, match="no closed form"):
        analytic_kernels(np.ones((2, 2)), 1, 1.0, activation="gelu")
