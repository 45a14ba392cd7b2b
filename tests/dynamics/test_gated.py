"""The gated-attention toy: gated models park less attention on the first token; the head-wise gate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weightlake.dynamics.gated import (
    ToyRun,
    ToyTransformer,
    attention_stats,
    toy_batch,
    train_toy,
    uniform_first_token_mass,
)
from weightlake.errors import ArchitectureError
from weightlake.experiments.merger import MergerConfig, MultiHeadAttention, TransformerAE


def test_headwise_gate_has_one_score_per_head():
    torch.manual_seed(0)
    attn = MultiHeadAttention(4, 16, gated=True, gate="headwise")
    assert attn.gate is not None and attn.gate.weight.shape == (4, 16)
    x = torch.randn(2, 5, 16)
    attn.monitor = True
    out = attn(x)
    assert out.shape == (2, 5, 16) and attn.last_gate is not None and attn.last_gate.shape == (4,)
    assert attn.last_sink is not None and attn.last_sink.shape == (4,)
    with torch.no_grad():  # a zero gate weight gives every head the score 1/2
        attn.gate.weight.zero_()
        attn.gate.bias = None
    attn(x)
    torch.testing.assert_close(attn.last_gate, torch.full((4,), 0.5))


def test_merger_accepts_the_headwise_gate_and_refuses_unknown_ones():
    config = MergerConfig(16, 2, 16, 1, 8, gated_attention=True, gate="headwise")
    model = TransformerAE(config)
    assert model.state_dict()["enc_1.layers.0.attn.gate.weight"].shape == (2, 16)
    assert MergerConfig.from_dict(config.to_dict()) == config and "headwise" in config.summary()
    with pytest.raises(ArchitectureError, match="gate must be"):
        MergerConfig(16, 2, 16, 1, 8, gate="channel")


def test_causal_monitored_attention_matches_sdpa():
    torch.manual_seed(1)
    attn = MultiHeadAttention(2, 8, causal=True)
    x = torch.randn(3, 6, 8)
    plain = attn(x)
    attn.monitor = True
    torch.testing.assert_close(attn(x), plain, rtol=1e-5, atol=1e-6)


def test_toy_task_targets():
    tokens, target = toy_batch(4, seq_len=10, lag=2, gen=torch.Generator().manual_seed(0))
    assert (tokens[:, 0] == 0).all() and (target[:, :3] == -100).all()
    trig = tokens == 1
    assert torch.equal(target[:, 3:][trig[:, 3:]], tokens[:, 1:-2][trig[:, 3:]])
    stats = attention_stats(ToyTransformer(), tokens)
    assert stats["sink"].shape == (2,) and stats["sink_heads"].shape == (2, 4)


@pytest.fixture
def one_thread():
    """Small models train fastest on one thread; two threads on a busy 2-core machine fight."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_gated_toy_parks_less_attention_on_the_first_token(one_thread):
    ungated = train_toy(None, lr=0.03, steps=300, eval_every=100)
    gated = train_toy("elementwise", lr=0.03, steps=300, eval_every=100)
    assert gated.sink[-1].mean() < ungated.sink[-1].mean()
    assert gated.gate_score[-1].min() < 0.5


def _run_with_sink(sink: list[list[float]], positions: int = 33) -> ToyRun:
    n = len(sink)
    return ToyRun("r", None, 1e-3, np.ones(10), np.ones(10), np.arange(n), np.array(sink), np.ones((n, 2)),
                  np.full((n, 2), np.nan), {"positions": positions})


def test_a_sink_is_a_layer_whose_first_token_mass_stays_above_a_stated_multiple_of_uniform():
    uniform = uniform_first_token_mass(33)
    assert uniform == pytest.approx(np.mean([1 / i for i in range(2, 34)]))
    # layer 0 climbs and stays; layer 1 touches the level once and falls back
    run = _run_with_sink([[0.1, 0.1], [0.5, 0.4], [0.6, 0.1], [0.6, 0.1], [0.7, 0.1]])
    assert run.uniform_sink == uniform and run.sink_layers() == [0]
    assert run.sink_layers(factor=10.0) == []
    with pytest.raises(KeyError, match="positions"):
        ToyRun("r", None, 1e-3, np.ones(1), np.ones(1), np.arange(1), np.ones((1, 1)), np.ones((1, 1)),
               np.ones((1, 1))).sink_layers()


def test_train_toy_records_the_probe_length_its_sink_is_measured_on():
    run = train_toy(None, 3e-3, 4, eval_every=2)
    assert run.options["positions"] == 33 and run.uniform_sink == uniform_first_token_mass(33)
