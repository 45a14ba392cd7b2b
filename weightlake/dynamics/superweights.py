"""Super weights (arXiv 2411.07191): single scalar weights whose zeroing hurts most.

For a sequential zoo CNN (``model.module_list``), :func:`ablation_scan` measures, for every
entry of one layer's weight, the accuracy and loss after setting that entry to zero, from
one cached forward pass: a layer's output is linear in its weight, so zeroing ``W[o, ...]``
changes only output unit/channel ``o``, by ``-W[o, ...]`` times the matching input values
(for a conv, the shifted input patch).  Only the rest of the network (the *tail*) runs per
ablation, batched over many ablations at once.  :func:`brute_force_scan` is the reference
(zero, forward, restore).

:func:`activation_spikes` is the paper's proxy: per layer, the largest ``|input|`` and
``|output|`` over the probe images, and the weight that connects the two spiking units.
:func:`enforced_sparsity` zeroes ``k`` weights chosen by magnitude, by the scan, or at random.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from weightlake.errors import ArchitectureError

_BUDGET = 6_000_000
"""Floats of perturbed layer outputs held at once (about 24 MB)."""


@dataclass(frozen=True)
class Scan:
    """Single-weight ablations of one layer: ``accuracy[j]`` / ``loss[j]`` after zeroing flat
    entry ``j`` of the layer's weight (row-major), and the unablated ``base_*`` figures."""

    layer: str
    weight: np.ndarray
    accuracy: np.ndarray
    loss: np.ndarray
    base_accuracy: float
    base_loss: float

    @property
    def drop(self) -> np.ndarray:
        """Accuracy drop in percentage points (positive hurts)."""
        return self.base_accuracy - self.accuracy

    def ranking(self) -> np.ndarray:
        """Entries by harm: largest accuracy drop first, ties by loss increase."""
        return np.lexsort((-self.loss, -self.drop))


def _split(model: Any, layer: str) -> tuple[Any, list[nn.Module], list[nn.Module]]:
    arch = getattr(model, "arch", None)
    modules = list(getattr(model, "module_list", []))
    if arch is None or not modules:
        raise ArchitectureError("super-weight scans need a zoo CNN (a module with .arch and .module_list)")
    index = arch.layer(layer).module_index
    return modules[index], modules[:index], modules[index + 1:]


def _run(modules: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for m in modules:
        x = m(x)
    return x


def _score(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy (percent) and mean cross-entropy over the last-but-one axis of ``[c, N, K]``."""
    acc = 100.0 * (logits.argmax(-1) == y).double().mean(-1)
    ce = nn.functional.cross_entropy(logits.permute(0, 2, 1), y.expand(len(logits), -1), reduction="none")
    return acc, ce.double().mean(-1)


def _contribution(layer: Any, a: torch.Tensor, entries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Output unit of each weight entry and the change of that unit when the entry is zeroed.

    Returns ``(o [c], delta [c, N, ...unit shape])``.
    """
    w = layer.weight
    if isinstance(layer, nn.Linear):
        o, i = entries // w.shape[1], entries % w.shape[1]
        return o, -(w.reshape(-1)[entries][:, None] * a[:, i].T)
    if isinstance(layer, nn.Conv2d) and layer.stride == (1, 1) and layer.padding == (0, 0) and layer.groups == 1:
        c_in, kh, kw = w.shape[1:]
        o, rest = entries // (c_in * kh * kw), entries % (c_in * kh * kw)
        c, p, q = rest // (kh * kw), (rest // kw) % kh, rest % kw
        h_out, w_out = a.shape[2] - kh + 1, a.shape[3] - kw + 1
        rows = torch.arange(h_out)[None, :] + p[:, None]           # [c, H']
        cols = torch.arange(w_out)[None, :] + q[:, None]           # [c, W']
        patch = a[:, c]                                            # [N, c, H, W]
        patch = patch.gather(2, rows[None, :, :, None].expand(len(a), -1, -1, a.shape[3]))
        patch = patch.gather(3, cols[None, :, None, :].expand(len(a), -1, h_out, -1))
        return o, -(w.reshape(-1)[entries][:, None, None, None] * patch.permute(1, 0, 2, 3))
    raise ArchitectureError(f"cannot scan a {type(layer).__name__} layer (linear and plain conv2d only)")


@torch.no_grad()
def ablation_scan(model: Any, x: torch.Tensor, y: torch.Tensor, layer: str) -> Scan:
    """Accuracy and loss after zeroing each single weight of ``layer``, from one cached forward pass.

    Parameters
    ----------
    model
        A zoo CNN (:class:`~weightlake.zoo.cnn.ZooCNN`), in eval mode.
    x, y
        Probe images ``[N, 1, 28, 28]`` and labels ``[N]``.
    layer
        Layer name (``"conv1"`` ... ``"fc2"``).

    Returns
    -------
    Scan
    """
    module, head, tail = _split(model.eval(), layer)
    a = _run(head, x)
    out = module(a)
    base_acc, base_loss = _score(_run(tail, out)[None], y)
    n_entries = module.weight.numel()
    chunk = max(1, _BUDGET // max(out[0].numel() * len(x), 1))
    acc, loss = np.empty(n_entries), np.empty(n_entries)
    for start in range(0, n_entries, chunk):
        entries = torch.arange(start, min(start + chunk, n_entries))
        o, delta = _contribution(module, a, entries)
        perturbed = out.unsqueeze(0).repeat(len(entries), *[1] * out.ndim)   # [c, N, units...]
        perturbed[torch.arange(len(entries)), :, o] += delta
        logits = _run(tail, perturbed.flatten(0, 1)).reshape(len(entries), len(x), -1)
        a_c, l_c = _score(logits, y)
        acc[start:start + len(entries)], loss[start:start + len(entries)] = a_c.numpy(), l_c.numpy()
    return Scan(layer, module.weight.detach().reshape(-1).numpy().copy(), acc, loss, float(base_acc[0]),
                float(base_loss[0]))


@torch.no_grad()
def brute_force_scan(model: Any, x: torch.Tensor, y: torch.Tensor, layer: str,
                     entries: Sequence[int] | None = None) -> Scan:
    """The reference for :func:`ablation_scan`: zero each entry (or the given ones; the others
    are NaN), run the whole model, restore."""
    module, _, _ = _split(model.eval(), layer)
    flat = module.weight.data.view(-1)
    base_acc, base_loss = _score(model(x)[None], y)
    acc, loss = np.full(flat.numel(), np.nan), np.full(flat.numel(), np.nan)
    for j in (range(flat.numel()) if entries is None else entries):
        keep = flat[j].item()
        flat[j] = 0.0
        a_j, l_j = _score(model(x)[None], y)
        acc[j], loss[j] = float(a_j[0]), float(l_j[0])
        flat[j] = keep
    return Scan(layer, flat.numpy().copy(), acc, loss, float(base_acc[0]), float(base_loss[0]))


def scan_model(model: Any, x: torch.Tensor, y: torch.Tensor,
               layers: Sequence[str] | None = None) -> dict[str, Scan]:
    """:func:`ablation_scan` of every layer (or the given ones)."""
    names = layers or model.arch.layer_names
    return {name: ablation_scan(model, x, y, name) for name in names}


def magnitude_rank(weight: np.ndarray) -> np.ndarray:
    """Rank of each entry by ``|w|`` within its layer (1 = largest)."""
    order = np.argsort(-np.abs(weight), kind="stable")
    rank = np.empty(len(weight), dtype=np.int64)
    rank[order] = np.arange(1, len(weight) + 1)
    return rank


@torch.no_grad()
def activation_spikes(model: Any, x: torch.Tensor) -> dict[str, dict[str, int | float]]:
    """The paper's proxy per layer: where ``|input|`` and ``|output|`` peak over the probe images.

    Returns, per layer, ``max_in`` / ``max_out`` (the peaks), ``in_unit`` / ``out_unit`` (input
    feature or channel and output unit or channel at the peaks) and ``proxy_index``: the
    weight entry linking them (for a conv, the largest ``|w|`` of that kernel slice).
    """
    out: dict[str, dict[str, int | float]] = {}
    h = x
    layers = {model.arch.layer(n).module_index: n for n in model.arch.layer_names}
    for index, module in enumerate(model.module_list):
        nxt = module(h)
        if index in layers:
            a_in, a_out = h.abs().transpose(0, 1).flatten(1), nxt.abs().transpose(0, 1).flatten(1)
            i_unit, o_unit = int(a_in.max(1).values.argmax()), int(a_out.max(1).values.argmax())
            w = module.weight.detach()
            if w.ndim == 4:
                block = w[o_unit, i_unit].abs().reshape(-1)
                proxy = (o_unit * w.shape[1] + i_unit) * block.numel() + int(block.argmax())
            else:
                proxy = o_unit * w.shape[1] + i_unit
            out[layers[index]] = {"max_in": float(a_in.max()), "max_out": float(a_out.max()), "in_unit": i_unit,
                                  "out_unit": o_unit, "proxy_index": proxy}
        h = nxt
    return out


def top_candidates(scans: dict[str, Scan], k: int) -> list[tuple[str, int]]:
    """The ``k`` most harmful single weights across layers, as ``(layer, entry)``."""
    items = [(-s.drop[j], -s.loss[j], name, int(j)) for name, s in scans.items() for j in range(len(s.weight))]
    items.sort()
    return [(name, j) for _, _, name, j in items[:k]]


@torch.no_grad()
def accuracy_without(model: Any, x: torch.Tensor, y: torch.Tensor, entries: Sequence[tuple[str, int]]) -> float:
    """Accuracy (percent) with the given ``(layer, entry)`` weights zeroed (the model is restored)."""
    saved = []
    for name, j in entries:
        flat = model.module_list[model.arch.layer(name).module_index].weight.data.view(-1)
        saved.append((flat, j, flat[j].item()))
        flat[j] = 0.0
    try:
        return float(_score(model.eval()(x)[None], y)[0][0])
    finally:
        for flat, j, value in reversed(saved):
            flat[j] = value


def enforced_sparsity(model: Any, x: torch.Tensor, y: torch.Tensor, scans: dict[str, Scan],
                      ks: Sequence[int] = (1, 2, 5, 10, 20, 50), random_draws: int = 5,
                      seed: int = 0) -> list[dict[str, Any]]:
    """Accuracy after zeroing ``k`` weights: the top-``k`` by ``|w|`` (over all scanned layers), the
    ``k`` most harmful single weights of the scan, and ``k`` random ones (mean of ``random_draws``)."""
    entries = [(name, j) for name, s in scans.items() for j in range(len(s.weight))]
    magnitude = np.argsort(-np.abs(np.concatenate([s.weight for s in scans.values()])), kind="stable")
    rng = np.random.default_rng(seed)
    rows = []
    for k in ks:
        rows.append({"k": k, "method": "magnitude", "accuracy": accuracy_without(
            model, x, y, [entries[i] for i in magnitude[:k]])})
        rows.append({"k": k, "method": "super", "accuracy": accuracy_without(model, x, y, top_candidates(scans, k))})
        draws = [accuracy_without(model, x, y, [entries[i] for i in rng.choice(len(entries), k, replace=False)])
                 for _ in range(random_draws)]
        rows.append({"k": k, "method": "random", "accuracy": float(np.mean(draws))})
    return rows
