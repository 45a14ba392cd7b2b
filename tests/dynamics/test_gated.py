"""The gated-attention toy: gated models park less attention on the first token; the head-wise gate."""

from __future__ import annotations

import pytest
import torch

from weightlake.dynamics.gated import ToyTransformer, attention_stats, toy_batch, train_toy
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
