"""The merging model: a double-encoder transformer that predicts merged weights.

Given the flat weights ``x1`` and ``x2`` of two zoo models trained on class sets A and
B, :class:`TransformerAE` predicts the flat weights of a model trained on A union B::

    y = Decoder(tanh(Dense(sum_over_tokens(Encoder1(x1) || Encoder2(x2)))))

The structure and the ``state_dict`` names follow section 4 of the user's technical
report ("TransformerAE"), so the user's checkpoints load without renaming wherever the
report fixes a name:

==============================  ===================================================
state_dict key (``*`` = any)    module
==============================  ===================================================
``enc_1.embed.neuron_{s}``      token embedder: one ``Linear(s, d_model)`` per token
                                size ``s`` (report: ``EmbedderNeuronGroup``; its two
                                linears are printed as ``neuron_1l`` / ``neuron_12``,
                                which :mod:`weightlake.experiments.infer` maps here by
                                shape)
``enc_*.layers.{i}.norm_1``     pre-norm before attention (``alpha``, ``bias``)
``enc_*.layers.{i}.attn``       ``q_linear``, ``k_linear``, ``v_linear``, ``out``
                                (and ``gate`` when gated attention is on)
``enc_*.layers.{i}.norm_2``     pre-norm before the feed-forward block
``enc_*.layers.{i}.ff``         ``linear_1`` (d_model -> d_ff), ``linear_2``
``enc_*.norm``                  final norm of each encoder
``vec2neck``                    ``Linear(2 * d_model, neck)``, then tanh
``dec.embed.neurons.{t}``       ``Neck2Seq``: one ``Linear(neck, d_model)`` per token
``dec.layers.{i}`` / dec.norm   as in the encoders
``dec.lay.linear``              ``Seq2Vec``: ``Linear(seq_len * d_model, P)``
                                (``output_head="flat"``, the report's)
``dec.lay.heads.{t}``           per-token heads ``Linear(d_model, token_sizes[t])``
                                (``output_head="per_token"``, much smaller)
==============================  ===================================================

The sinusoidal positional table is a non-persistent buffer, as in the report (where it
is a plain attribute), so it is not in the ``state_dict``.  ``Norm`` is the report's
layer norm: ``alpha * (x - mean) / (std + eps) + bias`` with the unbiased std.

Two departures from the printed code, both forced by it not running as printed: the
neck's input width is ``2 * d_model`` (the report writes ``2 * d_ff``, which only works
because its runs use ``d_ff == d_model``) and each decoder layer's output replaces
``x`` (the printed ``x = x + layer(x)`` adds a tuple).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from weightlake.errors import ArchitectureError
from weightlake.serve.tokens import TOKEN_SIZES, parse_token_sizes, to_tokens, token_groups

OUTPUT_HEADS: tuple[str, ...] = ("flat", "per_token")
GATES: tuple[str, ...] = ("elementwise", "headwise")


@dataclass(frozen=True)
class MergerConfig:
    """Hyperparameters of a :class:`TransformerAE`.

    ``n_layers`` is the report's ``N`` (the same for both encoders and the decoder),
    ``n_heads`` its ``heads``, ``seq_len`` its ``max_seq_len``.  ``output_head`` picks
    the decoder's last layer: ``"flat"`` (the report's ``Seq2Vec``) or ``"per_token"``.
    """

    d_model: int
    n_heads: int
    d_ff: int
    n_layers: int
    neck: int
    seq_len: int = 50
    token_sizes: tuple[int, ...] = TOKEN_SIZES
    dropout: float = 0.0
    gated_attention: bool = False
    output_head: str = "flat"
    gate: str = "elementwise"
    """With ``gated_attention``: ``"elementwise"`` (one gate per head dimension) or ``"headwise"`` (one per head)."""

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "d_ff", "n_layers", "neck", "seq_len"):
            _check_positive_int(name, getattr(self, name))
        object.__setattr__(self, "token_sizes", parse_token_sizes(self.token_sizes))
        if self.d_model % self.n_heads:
            raise ArchitectureError(f"n_heads={self.n_heads!r} does not divide d_model={self.d_model!r}")
        if len(self.token_sizes) != self.seq_len:
            raise ArchitectureError(
                f"seq_len={self.seq_len!r} but token_sizes has {len(self.token_sizes)} entries; they must agree"
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ArchitectureError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.gate not in GATES:
            raise ArchitectureError(f"gate must be one of {GATES}, got {self.gate!r}")
        if self.output_head not in OUTPUT_HEADS:
            raise ArchitectureError(f"output_head must be one of {OUTPUT_HEADS}, got {self.output_head!r}")
        object.__setattr__(self, "dropout", float(self.dropout))
        object.__setattr__(self, "gated_attention", bool(self.gated_attention))

    @property
    def n_values(self) -> int:
        """Length of the flat vectors read and predicted (2,464 by default)."""
        return sum(self.token_sizes)

    @property
    def d_head(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.n_heads

    def summary(self) -> str:
        """One short line, e.g. ``d_model=960 heads=4 d_ff=960 N=4 neck=512 tokens=26x80+24x16 flat``."""
        runs = "+".join(f"{g.count}x{g.size}" for g in token_groups(self.token_sizes))
        gated = (" gated" + ("-headwise" if self.gate == "headwise" else "")) if self.gated_attention else ""
        return (f"d_model={self.d_model} heads={self.n_heads} d_ff={self.d_ff} N={self.n_layers} "
                f"neck={self.neck} tokens={runs} {self.output_head}{gated}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; ``MergerConfig.from_dict(c.to_dict()) == c``."""
        out = asdict(self)
        out["token_sizes"] = list(self.token_sizes)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MergerConfig:
        """Build from :meth:`to_dict` output.

        Raises
        ------
        ArchitectureError
            On unknown keys or missing required keys.
        """
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ArchitectureError(f"unknown MergerConfig keys {unknown!r}; expected a subset of {sorted(known)!r}")
        try:
            return cls(**{**data, "token_sizes": tuple(data.get("token_sizes", TOKEN_SIZES))})
        except TypeError as exc:
            raise ArchitectureError(f"incomplete MergerConfig {dict(data)!r}: {exc}") from exc


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ArchitectureError(f"{name} must be a positive int, got {value!r}")


class Norm(nn.Module):
    """The report's layer norm: ``alpha * (x - mean) / (std + eps) + bias`` (unbiased std)."""

    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=-1, keepdim=True)
        return self.alpha * centred / (x.std(dim=-1, keepdim=True) + self.eps) + self.bias


def sinusoidal_table(seq_len: int, d_model: int) -> torch.Tensor:
    """The classic sin/cos positional table ``[1, seq_len, d_model]`` (sin on even columns)."""
    position = torch.arange(seq_len, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(seq_len, d_model)
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term[: d_model // 2])
    return table.unsqueeze(0)


class PositionalEncoder(nn.Module):
    """Scale tokens by ``sqrt(d_model)`` and add the sinusoidal table (not in the state_dict)."""

    pe: torch.Tensor

    def __init__(self, d_model: int, seq_len: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.register_buffer("pe", sinusoidal_table(seq_len, d_model), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * math.sqrt(self.d_model) + self.pe[:, : x.size(1)]


class MultiHeadAttention(nn.Module):
    """Self-attention with the report's projections, optional output gate and entropy monitor.

    With ``gated=True`` a ``gate`` linear computes ``sigmoid(x W_g)`` from the layer input
    and multiplies each head's attention output elementwise before ``out``; with
    ``gate="headwise"`` it computes one score per head that scales the whole head.  While
    :attr:`monitor` is on, attention probabilities are computed explicitly (instead of by
    ``scaled_dot_product_attention``) and :attr:`last_entropy` holds the mean entropy per
    head ``[n_heads]`` (nats, mean over batch and query positions) of the last forward,
    :attr:`last_sink` the mean attention on the first key (queries after the first) and
    :attr:`last_gate` the mean gate score per head.  ``causal=True`` masks future keys.
    """

    def __init__(self, n_heads: int, d_model: int, dropout: float = 0.0, gated: bool = False,
                 gate: str = "elementwise", causal: bool = False) -> None:
        super().__init__()
        self.h, self.d_k, self.d_model = n_heads, d_model // n_heads, d_model
        self.q_linear = nn.Linear(d_model, d_model)
        self.v_linear = nn.Linear(d_model, d_model)
        self.k_linear = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(d_model, d_model)
        self.gate = nn.Linear(d_model, n_heads if gate == "headwise" else d_model, bias=False) if gated else None
        self.causal, self.monitor = causal, False
        self.last_entropy: torch.Tensor | None = None
        self.last_sink: torch.Tensor | None = None
        self.last_gate: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq = x.shape[:2]
        q, k, v = (self._split(lin(x)) for lin in (self.q_linear, self.k_linear, self.v_linear))
        heads = self._attend_monitored(q, k, v) if self.monitor else self._attend(q, k, v)
        heads = heads.transpose(1, 2)  # [B, S, h, d_k]
        if self.gate is not None:
            scores = torch.sigmoid(self.gate(x)).view(batch, seq, self.h, -1)
            if self.monitor:
                self.last_gate = scores.detach().mean(dim=(0, 1, 3))
            heads = heads * scores
        return self.out(heads.reshape(batch, seq, self.d_model))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], -1, self.h, self.d_k).transpose(1, 2)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        p = self.dropout.p if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=self.causal)

    def _attend_monitored(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        logits = q @ k.transpose(-2, -1) / math.sqrt(self.d_k)
        if self.causal:
            future = torch.ones(logits.shape[-2:], dtype=torch.bool, device=logits.device).triu(1)
            logits = logits.masked_fill(future, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        self.last_entropy = torch.special.entr(probs.detach()).sum(-1).mean(dim=(0, 2))
        self.last_sink = probs.detach()[:, :, 1:, 0].mean(dim=(0, 2)) if probs.shape[-2] > 1 else None
        return self.dropout(probs) @ v


class FeedForward(nn.Module):
    """``linear_2(dropout(relu(linear_1(x))))``."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(d_model, d_ff)
        self.dropout = nn.Dropout(dropout)
        self.linear_2 = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.dropout(F.relu(self.linear_1(x))))


class EncoderLayer(nn.Module):
    """Pre-norm block: ``x + attn(norm_1(x))``, then ``x + ff(norm_2(x))``."""

    def __init__(self, config: MergerConfig) -> None:
        super().__init__()
        d, drop = config.d_model, config.dropout
        self.norm_1 = Norm(d)
        self.norm_2 = Norm(d)
        self.attn = MultiHeadAttention(config.n_heads, d, drop, gated=config.gated_attention, gate=config.gate)
        self.ff = FeedForward(d, config.d_ff, drop)
        self.dropout_1 = nn.Dropout(drop)
        self.dropout_2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout_1(self.attn(self.norm_1(x)))
        return x + self.dropout_2(self.ff(self.norm_2(x)))


class EmbedderNeuronGroup(nn.Module):
    """Embed each token with the ``Linear(size, d_model)`` of its size (``neuron_{size}``)."""

    def __init__(self, config: MergerConfig) -> None:
        super().__init__()
        self.token_sizes = config.token_sizes
        for size in sorted(set(config.token_sizes)):
            self.add_module(embedder_name(size), nn.Linear(size, config.d_model))

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        blocks = to_tokens(flat, self.token_sizes)
        embedded = [self.get_submodule(embedder_name(b.shape[-1]))(b) for b in blocks]
        return torch.cat(embedded, dim=1)


def embedder_name(size: int) -> str:
    """Attribute name of the embedder linear for tokens of ``size`` values."""
    return f"neuron_{size}"


def _layers(config: MergerConfig) -> nn.ModuleList:
    return nn.ModuleList(EncoderLayer(config) for _ in range(config.n_layers))


class EncoderNeuronGroup(nn.Module):
    """Embed, add positions, run ``n_layers`` blocks, normalise: ``[B, P] -> [B, S, d_model]``."""

    def __init__(self, config: MergerConfig) -> None:
        super().__init__()
        self.embed = EmbedderNeuronGroup(config)
        self.pe = PositionalEncoder(config.d_model, config.seq_len)
        self.layers = _layers(config)
        self.norm = Norm(config.d_model)

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        x = self.pe(self.embed(flat))
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class Neck2Seq(nn.Module):
    """One ``Linear(neck, d_model)`` per token: ``[B, neck] -> [B, S, d_model]``."""

    def __init__(self, config: MergerConfig) -> None:
        super().__init__()
        self.neurons = nn.ModuleList(nn.Linear(config.neck, config.d_model) for _ in range(config.seq_len))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.stack([neuron(z) for neuron in self.neurons], dim=1)


class Seq2Vec(nn.Module):
    """The report's output layer: flatten the sequence, one ``Linear(S * d_model, P)``."""

    def __init__(self, config: MergerConfig) -> None:
        super().__init__()
        self.linear = nn.Linear(config.seq_len * config.d_model, config.n_values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.reshape(x.shape[0], -1))


class TokenHeads(nn.Module):
    """Per-token output heads: token ``t`` becomes ``token_sizes[t]`` values."""

    def __init__(self, config: MergerConfig) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(config.d_model, size) for size in config.token_sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(x[:, t]) for t, head in enumerate(self.heads)], dim=-1)


class DecoderNeuronGroup(nn.Module):
    """Expand the neck to tokens, add positions, run ``n_layers`` blocks, emit ``[B, P]``."""

    def __init__(self, config: MergerConfig) -> None:
        super().__init__()
        self.embed = Neck2Seq(config)
        self.pe = PositionalEncoder(config.d_model, config.seq_len)
        self.layers = _layers(config)
        self.norm = Norm(config.d_model)
        self.lay = Seq2Vec(config) if config.output_head == "flat" else TokenHeads(config)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.pe(self.embed(z))
        for layer in self.layers:
            x = layer(x)
        return self.lay(self.norm(x))


class TransformerAE(nn.Module):
    """The double-encoder merging model: ``model(x1, x2) -> y``, all ``[B, P]`` float32.

    Parameters
    ----------
    config
        Hyperparameters; see :class:`MergerConfig`.

    Notes
    -----
    Weights with more than one dimension are Xavier-uniform initialised, as in the report.
    Call :meth:`monitor_attention` to record attention entropies; read them with
    :meth:`attention_entropy`.
    """

    def __init__(self, config: MergerConfig) -> None:
        super().__init__()
        self.config = config
        self.enc_1 = EncoderNeuronGroup(config)
        self.enc_2 = EncoderNeuronGroup(config)
        self.dec = DecoderNeuronGroup(config)
        self.vec2neck = nn.Linear(2 * config.d_model, config.neck)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def encode(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """The neck ``[B, neck]``: tanh of the dense layer over the summed, concatenated tokens."""
        tokens = torch.cat([self.enc_1(x1), self.enc_2(x2)], dim=2)
        return torch.tanh(self.vec2neck(tokens.sum(dim=1)))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.dec(self.encode(x1, x2))

    def monitor_attention(self, enabled: bool = True) -> TransformerAE:
        """Turn the attention-entropy monitor on or off for every layer; returns ``self``."""
        for module in self.modules():
            if isinstance(module, MultiHeadAttention):
                module.monitor = enabled
                module.last_entropy = None
        return self

    def attention_entropy(self) -> dict[str, torch.Tensor]:
        """Mean attention entropy of the last monitored forward, ``[n_layers, n_heads]`` per stack.

        Keys are ``"enc_1"``, ``"enc_2"`` and ``"dec"``; values are in nats (the maximum is
        ``log(seq_len)``, uniform attention).  Stacks without a monitored forward are left out.
        """
        out: dict[str, torch.Tensor] = {}
        for name, stack in (("enc_1", self.enc_1), ("enc_2", self.enc_2), ("dec", self.dec)):
            values = [m.last_entropy for m in stack.modules() if isinstance(m, MultiHeadAttention)]
            kept = [v for v in values if v is not None]
            if kept and len(kept) == len(values):
                out[name] = torch.stack(kept)
        return out


def build_merger(config: MergerConfig, state_dict: Mapping[str, torch.Tensor] | None = None) -> TransformerAE:
    """A :class:`TransformerAE`, loaded from ``state_dict`` (strictly) when given, in eval mode.

    Raises
    ------
    ArchitectureError
        If ``state_dict`` does not fit ``config`` (missing or unexpected keys, wrong shapes).
    """
    model = TransformerAE(config)
    if state_dict is not None:
        check_state_dict(config, state_dict)
        model.load_state_dict(state_dict)
    return model.eval()


def expected_shapes(config: MergerConfig) -> dict[str, tuple[int, ...]]:
    """``state_dict`` key -> shape for ``config``, computed on the meta device (no memory)."""
    with torch.device("meta"):
        model = TransformerAE(config)
    return {key: tuple(t.shape) for key, t in model.state_dict().items()}


def count_parameters(config: MergerConfig) -> int:
    """Number of trainable parameters of a model with ``config``."""
    return sum(math.prod(shape) for shape in expected_shapes(config).values())


def check_state_dict(config: MergerConfig, state_dict: Mapping[str, Any], where: str = "state_dict") -> None:
    """Check keys and shapes of ``state_dict`` against ``config``.

    Raises
    ------
    ArchitectureError
        Naming up to five missing keys, unexpected keys and shape mismatches.
    """
    expected = expected_shapes(config)
    problems = _key_problems(expected, state_dict)
    if problems:
        raise ArchitectureError(f"{where} does not fit the model ({config.summary()}): " + "; ".join(problems))


def _key_problems(expected: Mapping[str, tuple[int, ...]], state_dict: Mapping[str, Any]) -> list[str]:
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k}: expected {expected[k]}, got {tuple(state_dict[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != expected[k]
    ]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
        if items:
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            problems.append(f"{label} {items[:5]!r}{more}")
    return problems

