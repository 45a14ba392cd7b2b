"""Super-weight scans: cached ablation equals brute force; a planted bottleneck weight is found."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weightlake.dynamics.superweights import (
    ablation_scan,
    activation_spikes,
    brute_force_scan,
    enforced_sparsity,
    magnitude_rank,
    scan_model,
    top_candidates,
)
from weightlake.zoo.cnn import build_cnn


@pytest.fixture(scope="module")
def probe():
    torch.manual_seed(0)
    model = build_cnn(activation="gelu")
    x = torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    y = model(x).argmax(1)
    y[::3] = (y[::3] + 1) % 10  # some errors, so zeroing can also help
    return model, x, y


@pytest.mark.parametrize("layer", ["fc1", "fc2", "conv3", "conv1"])
def test_cached_ablation_equals_brute_force(probe, layer):
    model, x, y = probe
    fast = ablation_scan(model, x, y, layer)
    every = np.arange(0, len(fast.weight), 1 if layer in ("fc2", "conv3") else 7)  # keeps the reference quick
    slow = brute_force_scan(model, x, y, layer, entries=every)
    np.testing.assert_array_equal(fast.accuracy[every], slow.accuracy[every])
    np.testing.assert_allclose(fast.loss[every], slow.loss[every], rtol=1e-5, atol=1e-6)
    assert fast.base_accuracy == slow.base_accuracy


def _bottleneck_model(cls: int, unit: int):
    torch.manual_seed(1)
    model = build_cnn(activation="relu")
    fc1, fc2 = model.module_list[9], model.module_list[11]
    with torch.no_grad():
        fc2.weight.zero_()  # every other class is decided by its bias alone: class 0 wins unless `cls` does
        fc2.bias.fill_(-10.0)
        fc2.bias[0] = 0.0
        fc2.weight[cls, unit] = 20.0
        fc1.weight[unit] = fc1.weight[unit].abs()
        fc1.bias[unit] = 0.1
    gen = torch.Generator().manual_seed(3)
    # images of very different brightness, so unit `unit` separates them with a wide margin
    x = torch.rand(200, 1, 28, 28, generator=gen) * torch.linspace(0.05, 3.0, 200)[:, None, None, None]
    with torch.no_grad():
        logits = model(x)
        others = torch.cat([logits[:, :cls], logits[:, cls + 1:]], 1).max(1).values
        margin = logits[:, cls] - fc2.bias[cls] - others
        fc2.bias[cls] = -float(margin.quantile(0.6))  # about 40 % of the images become class `cls`
    return model, x, model(x).argmax(1).detach()


def test_a_planted_bottleneck_weight_is_the_super_weight():
    model, x, y = _bottleneck_model(cls=4, unit=7)
    assert 0.2 < float((y == 4).float().mean()) < 0.6
    scans = scan_model(model, x, y)
    assert top_candidates(scans, 1) == [("fc2", 4 * 20 + 7)]
    assert scans["fc2"].drop[4 * 20 + 7] > 20


def test_proxy_sparsity_and_ranks(probe):
    model, x, y = probe
    spikes = activation_spikes(model, x)
    assert set(spikes) == {"conv1", "conv2", "conv3", "fc1", "fc2"}
    assert 0 <= spikes["fc1"]["proxy_index"] < 720 and 0 <= spikes["conv2"]["proxy_index"] < 1200
    assert magnitude_rank(np.array([0.1, -3.0, 2.0])).tolist() == [3, 1, 2]
    scans = scan_model(model, x, y, layers=["fc1", "fc2"])
    rows = enforced_sparsity(model, x, y, scans, ks=(1, 3), random_draws=2)
    assert {r["method"] for r in rows} == {"magnitude", "super", "random"} and len(rows) == 6
    worst = next(r for r in rows if r["method"] == "super" and r["k"] == 1)["accuracy"]
    assert worst == pytest.approx(scans[top_candidates(scans, 1)[0][0]].accuracy.min())
