"""Grokfast filters: the update formulas, their transfer functions, a toy they speed up, the trainer hook."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from weightlake.dynamics.grokfast import (
    EMAFilter,
    GradFilterError,
    MAFilter,
    attach_grad_filter,
    ema_transfer,
    ma_transfer,
)
from weightlake.dynamics.oscillation import grad_spectrum, low_frequency_share, record_training


def _run(filt, param, grads):
    out = []
    for g in grads:
        param.grad = torch.tensor([g], dtype=torch.float64)
        filt.apply()
        out.append(float(param.grad[0]))
    return np.asarray(out)


def test_ema_filter_follows_the_formula():
    p = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    gs = np.random.default_rng(0).standard_normal(50)
    out = _run(EMAFilter([p], alpha=0.9, lamb=2.0), p, gs)
    mu, expected = gs[0], []
    for i, g in enumerate(gs):
        mu = g if i == 0 else 0.9 * mu + 0.1 * g
        expected.append(g + 2.0 * mu)
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_ma_filter_follows_the_formula_after_warmup():
    p = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    gs = np.random.default_rng(1).standard_normal(40)
    out = _run(MAFilter([p], window=7, lamb=5.0), p, gs)
    np.testing.assert_allclose(out[:6], gs[:6])
    expected = [gs[t] + 5.0 * gs[t - 6:t + 1].mean() for t in range(6, 40)]
    np.testing.assert_allclose(out[6:], expected, rtol=1e-10)


@pytest.mark.parametrize("omega", [0.0, 0.01, 0.05, 0.3, 2.0])
@pytest.mark.parametrize("kind", ["ema", "ma"])
def test_steady_state_gain_is_the_transfer_function(kind, omega):
    p = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    t = np.arange(3000)
    signal = np.cos(omega * t + 0.4)
    filt = EMAFilter([p]) if kind == "ema" else MAFilter([p])
    out = _run(filt, p, signal)
    h = ema_transfer(omega) if kind == "ema" else ma_transfer(omega)
    expected = np.abs(h) * np.cos(omega * t + 0.4 + np.angle(h))
    np.testing.assert_allclose(out[1000:], expected[1000:], atol=1e-6)


def test_gain_amplifies_slow_and_passes_fast_components():
    assert abs(ema_transfer(0.0)) == pytest.approx(3.0) and abs(ma_transfer(0.0)) == pytest.approx(6.0)
    assert abs(ema_transfer(np.pi)) == pytest.approx(1 + 2 * 0.02 / 1.98)


def test_attach_runs_between_backward_and_step():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    filt = attach_grad_filter(opt, "ema", alpha=0.5, lamb=1.0)
    before = model.weight.detach().clone()
    model(torch.ones(1, 3)).sum().backward()
    raw = model.weight.grad.clone()
    opt.step()
    torch.testing.assert_close(model.weight.detach(), before - 2 * raw)  # g + 1.0 * mu with mu = g
    assert filt is not None and attach_grad_filter(opt, None) is None
    with pytest.raises(GradFilterError, match="unknown gradient filter"):
        attach_grad_filter(opt, "fft")


def _blobs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (400,), generator=g)
    x = torch.randn(400, 10, generator=g) + (2 * y[:, None] - 1) * torch.linspace(0.2, 1.0, 10)
    return x, y


@pytest.mark.slow
def test_filtered_run_reaches_the_target_in_fewer_steps():
    train, test = _blobs(0), _blobs(1)
    runs = {}
    for kind in (None, "ema"):
        torch.manual_seed(3)
        model = nn.Sequential(nn.Linear(10, 2))
        runs[kind] = record_training(model, train, test, steps=400, lr=0.002, batch_size=16, optimizer="sgd",
                                     grad_filter=kind, eval_every=5, seed=4)
    base, ema = runs[None].steps_to(90.0), runs["ema"].steps_to(90.0)
    assert ema is not None and base is not None and ema < base
    assert runs[None].grads.shape == (400, 1)


def test_spectrum_finds_the_oscillation():
    t = np.arange(512)
    series = np.stack([np.sin(2 * np.pi * 0.125 * t), 0.01 * t], axis=1)
    freqs, power = grad_spectrum(series)
    assert freqs[np.argmax(power[:, 0])] == pytest.approx(0.125)
    share = low_frequency_share(series, cutoff=0.01)
    assert share[1] > 0.9 and share[0] < 0.05
