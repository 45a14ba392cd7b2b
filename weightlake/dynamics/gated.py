"""A toy causal transformer, gated or not, to watch attention sinks and loss spikes (arXiv 2505.06708).

The model stacks pre-norm blocks built from the merging model's own parts
(:class:`~weightlake.experiments.merger.MultiHeadAttention` with ``causal=True``, ``Norm``,
``FeedForward``), so the gate under test is exactly the one the merging model uses:
``gate=None`` (plain softmax attention), ``"elementwise"`` (a sigmoid per head dimension,
computed from the block's normed input, on the attention output) or ``"headwise"`` (one
sigmoid per head).

The task (:func:`toy_batch`): sequences ``BOS t_1 ... t_S`` of random tokens; the target at
position ``i`` is ``t_i`` itself unless ``t_i`` is the trigger token, when it is ``t_{i-lag}``.
Most positions need no attention at all, so an ungated head must park its attention
somewhere harmless: the first token (an attention sink).  A gated head can instead close its
gate.  :func:`train_toy` records per step the loss and gradient norm, and every few steps
the first-token attention mass, the attention entropy and the mean gate score of each layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from weightlake.experiments.merger import FeedForward, MultiHeadAttention, Norm

BOS = 0


class _Block(nn.Module):
    attn: MultiHeadAttention

    def __init__(self, d_model: int, n_heads: int, gate: str | None) -> None:
        super().__init__()
        self.norm_1, self.norm_2 = Norm(d_model), Norm(d_model)
        self.attn = MultiHeadAttention(n_heads, d_model, gated=gate is not None, gate=gate or "elementwise",
                                       causal=True)
        self.ff = FeedForward(d_model, 4 * d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_1(x))
        return x + self.ff(self.norm_2(x))


class ToyTransformer(nn.Module):
    """Token + learned position embeddings, ``n_layers`` causal pre-norm blocks, a norm and a readout."""

    def __init__(self, vocab: int = 16, seq_len: int = 33, d_model: int = 32, n_heads: int = 4, n_layers: int = 2,
                 gate: str | None = None) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.randn(seq_len, d_model) * 0.02)
        self.blocks = nn.ModuleList(_Block(d_model, n_heads, gate) for _ in range(n_layers))
        self.norm = Norm(d_model)
        self.readout = nn.Linear(d_model, vocab)
        self.gate = gate

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.readout(self.norm(x))

    def attention_modules(self) -> list[MultiHeadAttention]:
        return [b.attn for b in self.blocks if isinstance(b, _Block)]


def toy_batch(batch: int, seq_len: int = 32, vocab: int = 16, lag: int = 3, trigger: int = 1,
              gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``[batch, seq_len + 1]`` (BOS first) and targets (``-100`` where nothing is asked)."""
    body = torch.randint(1, vocab, (batch, seq_len), generator=gen)
    tokens = torch.cat([torch.full((batch, 1), BOS), body], dim=1)
    target = tokens.clone()
    lagged = torch.roll(tokens, lag, dims=1)
    is_trigger = tokens == trigger
    target[is_trigger] = lagged[is_trigger]
    target[:, : lag + 1] = -100  # BOS and positions without a lagged token
    return tokens, target


@torch.no_grad()
def attention_stats(model: ToyTransformer, tokens: torch.Tensor) -> dict[str, np.ndarray]:
    """Per layer: mean first-token attention mass, attention entropy (nats) and gate score (NaN ungated),
    each averaged over heads: arrays ``[n_layers]``; ``sink_heads`` is ``[n_layers, n_heads]``."""
    mods = model.attention_modules()
    for m in mods:
        m.monitor = True
    try:
        model.eval()(tokens)
        sink = torch.stack([m.last_sink for m in mods if m.last_sink is not None]).numpy()
        entropy = np.array([float(m.last_entropy.mean()) for m in mods if m.last_entropy is not None])
        gate = np.array([float(m.last_gate.mean()) if m.last_gate is not None else np.nan for m in mods])
    finally:
        for m in mods:
            m.monitor = False
    return {"sink": sink.mean(1), "sink_heads": sink, "entropy": entropy, "gate": gate}


def uniform_first_token_mass(positions: int) -> float:
    """First-token attention mass of uniform causal attention over ``positions`` tokens, averaged
    over the queries after the first (as ``sink`` is): the mean of ``1/2 ... 1/positions``."""
    if positions < 2:
        raise ValueError(f"positions must be at least 2 (a query after the first), got {positions!r}")
    return float(np.mean(1.0 / np.arange(2, positions + 1)))


@dataclass
class ToyRun:
    """One toy training run: per-step ``loss`` and ``grad_norm``; per evaluation ``sink``,
    ``entropy``, ``gate`` ``[n_evals, n_layers]`` at ``eval_steps``; ``options["positions"]`` is the
    probe's sequence length (BOS included)."""

    label: str
    gate: str | None
    lr: float
    loss: np.ndarray
    grad_norm: np.ndarray
    eval_steps: np.ndarray
    sink: np.ndarray
    entropy: np.ndarray
    gate_score: np.ndarray
    options: dict[str, Any] = field(default_factory=dict)

    def spikes(self, factor: float = 2.0, window: int = 20) -> int:
        """Steps whose loss exceeds ``factor`` times the median of the previous ``window`` steps."""
        loss = self.loss
        return int(sum(loss[t] > factor * np.median(loss[t - window:t]) for t in range(window, len(loss))))

    @property
    def uniform_sink(self) -> float:
        """The first-token mass uniform attention would give on this run's probe."""
        if "positions" not in self.options:
            raise KeyError("this run does not record its probe's length (options['positions'])")
        return uniform_first_token_mass(int(self.options["positions"]))

    def sink_layers(self, factor: float = 3.0, last: int = 3) -> list[int]:
        """Layers with an attention sink: first-token mass (mean over heads) at least ``factor`` times
        :attr:`uniform_sink` at each of the last ``last`` evaluations (it climbed, and it stays)."""
        tail = self.sink[-last:]
        return [int(i) for i in np.flatnonzero((tail >= factor * self.uniform_sink).all(axis=0))]


def train_toy(gate: str | None, lr: float, steps: int, *, seed: int = 0, batch: int = 64, eval_every: int = 25,
              **model_options: Any) -> ToyRun:
    """Train a :class:`ToyTransformer` with Adam (no clipping, no warm-up: spikes are the point).

    The same ``seed`` gives the same initial embeddings/blocks and the same batches for every
    ``gate`` (the gate's own weights come from a separate generator).
    """
    torch.manual_seed(seed)
    model = ToyTransformer(gate=None, **model_options)
    if gate is not None:  # same base weights as the ungated model, plus gates
        base = model.state_dict()
        torch.manual_seed(seed + 1)
        model = ToyTransformer(gate=gate, **model_options)
        model.load_state_dict(base, strict=False)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen, probe_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 99)
    probe = toy_batch(256, gen=probe_gen)[0]
    losses, norms, evals = np.zeros(steps), np.zeros(steps), []
    for step in range(steps):
        if step % eval_every == 0:
            evals.append((step, attention_stats(model, probe)))
        model.train()
        tokens, target = toy_batch(batch, gen=gen)
        loss = nn.functional.cross_entropy(model(tokens).flatten(0, 1), target.flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        norms[step] = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()
                                                                   if p.grad is not None])))
        losses[step] = float(loss.detach())
        opt.step()
    evals.append((steps, attention_stats(model, probe)))
    label = f"{gate or 'ungated'}, lr {lr:g}"
    return ToyRun(label, gate, lr, losses, norms, np.array([s for s, _ in evals]),
                  np.stack([e["sink"] for _, e in evals]), np.stack([e["entropy"] for _, e in evals]),
                  np.stack([e["gate"] for _, e in evals]), {"steps": steps, "seed": seed, "batch": batch,
                                                            "positions": int(probe.shape[1]), **model_options})
