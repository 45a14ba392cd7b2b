"""Training runs that record what oscillates: per-step gradients of chosen weights, and
train/test accuracy, with or without a Grokfast gradient filter.

:func:`record_training` trains a module on in-memory tensors for a fixed number of steps and
returns a :class:`RecordedRun`; :func:`grad_spectrum` takes the FFT of the recorded gradient
series.  :func:`grokking_cnn` and :func:`grokking_data` build the grokking-prone setting of
arXiv 2405.20233 for the zoo CNN: a small training subset, a large initialisation scale, and
weight decay (with AdamW).  Runs compared "on the same seeds" share the initial weights, the
data and the mini-batch order; only the filter differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from weightlake.dynamics.grokfast import attach_grad_filter


@dataclass
class RecordedRun:
    """One training run, step by step.

    ``grads[t, j]`` is the raw gradient (before any filter) of watched weight ``watch[j]``
    at step ``t``; accuracies are in percent at ``eval_steps`` (step ``t`` means after ``t``
    updates; step 0 is before training).
    """

    label: str
    watch: list[int]
    grads: np.ndarray
    loss: np.ndarray
    eval_steps: np.ndarray
    train_acc: np.ndarray
    test_acc: np.ndarray
    options: dict[str, Any] = field(default_factory=dict)

    def steps_to(self, target: float, which: str = "test") -> int | None:
        """First evaluated step whose accuracy reaches ``target`` percent (``None``: never)."""
        acc = self.test_acc if which == "test" else self.train_acc
        hit = np.flatnonzero(acc >= target)
        return int(self.eval_steps[hit[0]]) if hit.size else None


def default_watch(model: nn.Module) -> list[int]:
    """One weight per parameterised layer: the middle entry of each weight tensor (flat indices
    in ``parameters()`` order)."""
    out, start = [], 0
    for name, p in model.named_parameters():
        if name.endswith("weight"):
            out.append(start + p.numel() // 2)
        start += p.numel()
    return out


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return 100.0 * float((model(x).argmax(1) == y).float().mean())


def _optimizer(kind: str, params: Any, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def record_training(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                    *, steps: int, lr: float = 1e-3, weight_decay: float = 0.0, batch_size: int = 100,
                    grad_filter: str | None = None, filter_options: dict[str, Any] | None = None,
                    optimizer: str = "adamw", watch: Sequence[int] | None = None, eval_every: int = 10,
                    seed: int = 0, label: str | None = None) -> RecordedRun:
    """Train ``model`` in place for ``steps`` mini-batch steps and record the run.

    Parameters
    ----------
    model
        The module to train (modified).
    train, test
        ``(x, y)`` tensors; accuracy is evaluated on all of each.
    steps, lr, weight_decay, batch_size
        The schedule (cross-entropy loss).
    grad_filter, filter_options
        ``None``, ``"ema"`` or ``"ma"`` and its options (see :mod:`weightlake.dynamics.grokfast`).
    optimizer
        ``"adamw"`` or ``"sgd"``.
    watch
        Flat parameter indices whose gradients are recorded (default :func:`default_watch`).
    eval_every
        Evaluate accuracies every this many steps (and at step 0 and the end).
    seed
        Seeds the mini-batch order (the same seed gives the same batches whatever the filter).
    label
        Name of the run in plots (default: the filter name or ``"baseline"``).

    Returns
    -------
    RecordedRun
    """
    watch = list(default_watch(model) if watch is None else watch)
    params = list(model.parameters())
    opt = _optimizer(optimizer, params, lr, weight_decay)
    attach_grad_filter(opt, grad_filter, **(filter_options or {}))
    gen = torch.Generator().manual_seed(seed)
    (x, y), index = train, torch.as_tensor(watch, dtype=torch.long)
    grads, losses, evals = np.zeros((steps, len(watch)), np.float32), np.zeros(steps, np.float32), []
    order, at = torch.randperm(len(x), generator=gen), 0
    for step in range(steps):
        if step % eval_every == 0:
            evals.append((step, _accuracy(model.eval(), x, y), _accuracy(model, *test)))
        if at + batch_size > len(x):
            order, at = torch.randperm(len(x), generator=gen), 0
        idx, at = order[at:at + batch_size], at + batch_size
        model.train()
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        grads[step] = torch.cat([torch.zeros_like(p).reshape(-1) if p.grad is None else p.grad.reshape(-1)
                                 for p in params])[index].numpy()
        losses[step] = float(loss.detach())
        opt.step()
    evals.append((steps, _accuracy(model.eval(), x, y), _accuracy(model, *test)))
    ev = np.asarray(evals, dtype=np.float64)
    options = {"steps": steps, "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size,
               "grad_filter": grad_filter, "filter_options": filter_options or {}, "optimizer": optimizer,
               "seed": seed, "n_train": len(x), "n_test": len(test[0])}
    return RecordedRun(label or grad_filter or "baseline", watch, grads, losses, ev[:, 0].astype(np.int64),
                       ev[:, 1], ev[:, 2], options)


def grad_spectrum(grads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Power spectra of gradient series ``[T, W]`` (mean removed, Hann window).

    Returns
    -------
    (freqs, power)
        ``freqs`` in cycles per step ``[T // 2 + 1]``; ``power`` ``[T // 2 + 1, W]``.
    """
    g = np.asarray(grads, dtype=np.float64)
    g = (g - g.mean(0)) * np.hanning(len(g))[:, None]
    return np.fft.rfftfreq(len(g)), np.abs(np.fft.rfft(g, axis=0)) ** 2


def low_frequency_share(grads: np.ndarray, cutoff: float = 0.01) -> np.ndarray:
    """Fraction of each series' power (DC included) at frequencies below ``cutoff`` cycles/step."""
    g = np.asarray(grads, dtype=np.float64)
    power = np.abs(np.fft.rfft(g, axis=0)) ** 2
    freqs = np.fft.rfftfreq(len(g))
    return power[freqs < cutoff].sum(0) / power.sum(0)


def grokking_data(dataset: str, per_class: int, n_test: int, seed: int = 0,
                  classes: Sequence[int] = tuple(range(10))) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """A small training subset (``per_class`` images of each class) and ``n_test`` test images."""
    from weightlake.zoo.idx import load_dataset, select_classes
    from weightlake.zoo.train import to_tensors

    train = to_tensors(*select_classes(*load_dataset(dataset, "train"), classes, per_class=per_class, seed=seed))
    xt, yt = to_tensors(*select_classes(*load_dataset(dataset, "test"), classes))
    pick = torch.randperm(len(yt), generator=torch.Generator().manual_seed(seed))[:n_test]
    return train, (xt[pick], yt[pick])


def grokking_cnn(activation: str = "relu", init: str = "kaiming_uniform", init_scale: float = 8.0,
                 seed: int = 0) -> nn.Module:
    """The zoo CNN initialised as the trainer does, then every weight and bias multiplied by ``init_scale``."""
    from weightlake.zoo.cnn import build_cnn
    from weightlake.zoo.train import init_weights

    torch.manual_seed(seed)
    model = init_weights(build_cnn(activation=activation), init)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(init_scale)
    return model
