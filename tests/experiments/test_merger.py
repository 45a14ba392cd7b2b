"""The merging model and its token view: round trips, shapes, gradients, monitor."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from weightlake.arch import CNN_S
from weightlake.errors import ArchitectureError
from weightlake.experiments.merger import (
    MergerConfig,
    TransformerAE,
    build_merger,
    check_state_dict,
    count_parameters,
)
from weightlake.serve.tokens import (
    TOKEN_SIZES,
    from_padded,
    from_tokens,
    to_padded,
    to_tokens,
    token_groups,
    token_mask,
)

P = sum(TOKEN_SIZES)
REPORT = MergerConfig(d_model=960, n_heads=4, d_ff=960, n_layers=4, neck=512, dropout=0.07)
"""The report's production run (section 4.1): its model summary counts 210,546,336 parameters."""

CONFIGS = [
    MergerConfig(d_model=16, n_heads=2, d_ff=32, n_layers=1, neck=8),
    MergerConfig(d_model=24, n_heads=3, d_ff=24, n_layers=2, neck=12, gated_attention=True),
    MergerConfig(d_model=32, n_heads=4, d_ff=64, n_layers=1, neck=16, output_head="per_token"),
    MergerConfig(d_model=8, n_heads=8, d_ff=16, n_layers=3, neck=4, gated_attention=True, output_head="per_token"),
]


floats32 = st.floats(width=32, allow_nan=True, allow_infinity=True)


def _bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x).view(np.uint32)


# -- tokens --------------------------------------------------------------------------

def test_default_tokens_cover_the_zoo_cnn() -> None:
    assert P == CNN_S.n_params == 2464
    assert [(g.size, g.count) for g in token_groups()] == [(80, 26), (16, 24)]


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(0, 3), st.just(P)), elements=floats32))
def test_tokens_round_trip_numpy(flat: np.ndarray) -> None:
    t80, t16 = to_tokens(flat)
    assert t80.shape == (flat.shape[0], 26, 80) and t16.shape == (flat.shape[0], 24, 16)
    assert np.array_equal(_bits(from_tokens(t80, t16)), _bits(flat))
    assert np.array_equal(_bits(from_padded(to_padded(flat))), _bits(flat))


@settings(max_examples=25, deadline=None)
@given(arrays(np.float32, st.just((2, P)), elements=floats32))
def test_tokens_round_trip_torch(flat: np.ndarray) -> None:
    x = torch.from_numpy(flat)
    blocks = to_tokens(x)
    assert torch.equal(from_tokens(*blocks).view(torch.int32), x.view(torch.int32))
    assert torch.equal(from_padded(to_padded(x)).view(torch.int32), x.view(torch.int32))
    assert torch.equal(blocks[0][1, 3].view(torch.int32), x[1, 3 * 80:4 * 80].view(torch.int32))  # values 240..319


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=12), st.integers(0, 3), st.data())
def test_tokens_round_trip_any_sizes(sizes: list[int], batch: int, data: st.DataObject) -> None:
    flat = data.draw(arrays(np.float32, (batch, sum(sizes)), elements=floats32))
    assert np.array_equal(_bits(from_tokens(*to_tokens(flat, sizes))), _bits(flat))
    padded = to_padded(flat, sizes)
    assert padded.shape == (batch, len(sizes), max(sizes))
    assert not np.asarray(padded)[..., ~np.array(token_mask(sizes))].any()
    assert np.array_equal(_bits(from_padded(padded, sizes)), _bits(flat))


def test_tokens_one_vector_and_bad_length() -> None:
    x = np.arange(P, dtype=np.float32)
    t80, t16 = to_tokens(x)
    assert t80.shape == (26, 80) and t16[0, 0] == 26 * 80
    with pytest.raises(ArchitectureError, match="2464"):
        to_tokens(np.zeros((2, P - 1), np.float32))


# -- config --------------------------------------------------------------------------

@pytest.mark.parametrize("config", CONFIGS + [REPORT])
def test_config_round_trip(config: MergerConfig) -> None:
    assert MergerConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"n_heads": 3}, "does not divide"),
        ({"seq_len": 49}, "seq_len"),
        ({"output_head": "conv"}, "output_head"),
        ({"neck": 0}, "neck"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_config_rejects_bad_values(changes: dict, match: str) -> None:
    base = {"d_model": 16, "n_heads": 2, "d_ff": 32, "n_layers": 1, "neck": 8}
    with pytest.raises(ArchitectureError, match=match):
        MergerConfig(**{**base, **changes})


def test_config_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ArchitectureError, match="unknown"):
        MergerConfig.from_dict({**CONFIGS[0].to_dict(), "heads": 2})


def test_report_parameter_count_matches_its_model_summary() -> None:
    assert count_parameters(REPORT) == 210_546_336


# -- model ---------------------------------------------------------------------------

@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"d{c.d_model}h{c.n_heads}g{int(c.gated_attention)}{c.output_head}")
def test_forward_shapes(config: MergerConfig) -> None:
    torch.manual_seed(0)
    model = build_merger(config)
    x1, x2 = torch.randn(3, P), torch.randn(3, P)
    y = model(x1, x2)
    assert y.shape == (3, P) and y.dtype == torch.float32
    assert model.encode(x1, x2).shape == (3, config.neck)
    assert model.encode(x1, x2).abs().max() <= 1.0  # tanh neck
    check_state_dict(config, model.state_dict())


@pytest.mark.parametrize("config", [CONFIGS[1], CONFIGS[3]], ids=["gated-flat", "gated-per_token"])
def test_gradients_reach_every_parameter(config: MergerConfig) -> None:
    torch.manual_seed(1)
    model = TransformerAE(config).train()
    x1, x2, target = torch.randn(4, P), torch.randn(4, P), torch.randn(4, P)
    torch.nn.functional.mse_loss(model(x1, x2), target).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_gate_changes_the_output() -> None:
    config = CONFIGS[1]
    torch.manual_seed(2)
    model = build_merger(config)
    x = torch.randn(2, P)
    before = model(x, x)
    with torch.no_grad():
        for layer in model.enc_1.layers:
            layer.attn.gate.weight.fill_(-30.0)  # gates near zero: attention contributes ~nothing
    assert not torch.allclose(before, model(x, x))


def test_state_dict_names_follow_the_report() -> None:
    keys = set(build_merger(CONFIGS[1]).state_dict())
    for key in ("enc_1.embed.neuron_80.weight", "enc_2.embed.neuron_16.bias", "enc_1.layers.1.attn.q_linear.weight",
                "enc_2.layers.0.attn.gate.weight", "dec.layers.1.ff.linear_2.bias", "dec.layers.0.norm_1.alpha",
                "enc_1.norm.bias", "vec2neck.weight", "dec.embed.neurons.49.weight", "dec.lay.linear.weight"):
        assert key in keys, key
    assert not any("pe" in k.split(".") for k in keys)  # positional table is not saved


def test_attention_entropy_monitor() -> None:
    config = CONFIGS[1]
    torch.manual_seed(3)
    model = build_merger(config)
    x1, x2 = torch.randn(2, P), torch.randn(2, P)
    plain = model(x1, x2)
    assert model.attention_entropy() == {}  # off by default
    monitored = model.monitor_attention()(x1, x2)
    entropy = model.attention_entropy()
    assert set(entropy) == {"enc_1", "enc_2", "dec"}
    for values in entropy.values():
        assert values.shape == (config.n_layers, config.n_heads)
        assert (values >= 0).all() and (values <= math.log(config.seq_len) + 1e-4).all()
    assert torch.allclose(plain, monitored, atol=1e-5)
    model.monitor_attention(False)
    assert model.attention_entropy() == {}


def test_dropout_only_in_training() -> None:
    config = MergerConfig(d_model=16, n_heads=2, d_ff=32, n_layers=1, neck=8, dropout=0.3)
    torch.manual_seed(4)
    model = build_merger(config)
    x = torch.randn(2, P)
    assert torch.equal(model(x, x), model(x, x))
    model.train()
    assert not torch.equal(model(x, x), model(x, x))
