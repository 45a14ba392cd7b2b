"""Gradient filters that amplify the slow component of the gradient (arXiv 2405.20233).

Called between ``loss.backward()`` and ``optimizer.step()``, a filter rewrites every
parameter's ``.grad`` in place:

* :class:`EMAFilter` (defaults ``alpha = 0.98``, ``lamb = 2``)::

      mu <- alpha * mu + (1 - alpha) * g        (mu starts at the first gradient)
      g  <- g + lamb * mu

* :class:`MAFilter` (defaults ``window = 100``, ``lamb = 5``): ``g <- g + lamb * mean of the
  last `window` gradients`` (the current one included); with ``warmup`` the gradient passes
  unchanged until the window is full.

As linear filters of the gradient sequence their steady-state gains at angular frequency
``omega`` (radians per step) are ``|H(omega)|`` of :func:`ema_transfer` and
:func:`ma_transfer`: ``1 + lamb`` at ``omega = 0`` and about ``1`` at high frequency, so a
slowly drifting component is amplified while a step-to-step oscillation passes unchanged.

:func:`attach_grad_filter` runs a filter as an optimizer step pre-hook, so a training
loop needs no change besides that one call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from weightlake.errors import WeightLakeError

GRAD_FILTERS: tuple[str, ...] = ("ema", "ma")


class GradFilterError(WeightLakeError, ValueError):
    """An unknown filter name or an out-of-range filter parameter."""


class EMAFilter:
    """Exponential-moving-average gradient filter (Grokfast-EMA).

    Parameters
    ----------
    params
        The parameters whose ``.grad`` is filtered (a module's ``parameters()``).
    alpha
        Momentum of the average, in ``[0, 1)``.
    lamb
        Amplification of the average added to the gradient.
    """

    def __init__(self, params: Iterable[nn.Parameter], alpha: float = 0.98, lamb: float = 2.0) -> None:
        if not 0.0 <= alpha < 1.0:
            raise GradFilterError(f"alpha must be in [0, 1), got {alpha!r}")
        self.params, self.alpha, self.lamb = list(params), float(alpha), float(lamb)
        self.mu: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def apply(self) -> None:
        """Filter every parameter's gradient in place (parameters without a gradient are skipped)."""
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            mu = self.mu.get(i)
            if mu is None:
                self.mu[i] = mu = p.grad.detach().clone()
            else:
                mu.mul_(self.alpha).add_(p.grad, alpha=1.0 - self.alpha)
            p.grad.add_(mu, alpha=self.lamb)

    def transfer(self, omega: np.ndarray) -> np.ndarray:
        return ema_transfer(omega, self.alpha, self.lamb)


class MAFilter:
    """Windowed moving-average gradient filter (Grokfast-MA).

    Parameters
    ----------
    params
        The parameters whose ``.grad`` is filtered.
    window
        Number of recent gradients averaged (the current one included).
    lamb
        Amplification of the average added to the gradient.
    warmup
        Leave gradients unchanged until ``window`` gradients have been seen.
    """

    def __init__(self, params: Iterable[nn.Parameter], window: int = 100, lamb: float = 5.0,
                 warmup: bool = True) -> None:
        if int(window) < 1:
            raise GradFilterError(f"window must be a positive number of steps, got {window!r}")
        self.params, self.window, self.lamb, self.warmup = list(params), int(window), float(lamb), bool(warmup)
        self.history: dict[int, deque[torch.Tensor]] = {}
        self.sums: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def apply(self) -> None:
        """Filter every parameter's gradient in place."""
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            queue = self.history.setdefault(i, deque())
            total = self.sums.setdefault(i, torch.zeros_like(p.grad))
            queue.append(p.grad.detach().clone())
            total.add_(queue[-1])
            if len(queue) > self.window:
                total.sub_(queue.popleft())
            if len(queue) == self.window or not self.warmup:
                p.grad.add_(total, alpha=self.lamb / len(queue))

    def transfer(self, omega: np.ndarray) -> np.ndarray:
        return ma_transfer(omega, self.window, self.lamb)


def ema_transfer(omega: Any, alpha: float = 0.98, lamb: float = 2.0) -> np.ndarray:
    """``H(omega) = 1 + lamb (1 - alpha) / (1 - alpha e^{-i omega})`` of :class:`EMAFilter` (complex)."""
    z = np.exp(-1j * np.asarray(omega, dtype=np.float64))
    return 1.0 + lamb * (1.0 - alpha) / (1.0 - alpha * z)


def ma_transfer(omega: Any, window: int = 100, lamb: float = 5.0) -> np.ndarray:
    """``H(omega) = 1 + (lamb / w) sum_{k<w} e^{-i omega k}`` of :class:`MAFilter` (complex)."""
    omega = np.asarray(omega, dtype=np.float64)
    k = np.arange(int(window))
    return 1.0 + (lamb / window) * np.exp(-1j * np.multiply.outer(omega, k)).sum(-1)


def make_grad_filter(kind: str, params: Iterable[nn.Parameter], **options: Any) -> EMAFilter | MAFilter:
    """``"ema"`` -> :class:`EMAFilter`, ``"ma"`` -> :class:`MAFilter` (options passed on).

    Raises
    ------
    GradFilterError
        On any other name.
    """
    if kind == "ema":
        return EMAFilter(params, **options)
    if kind == "ma":
        return MAFilter(params, **options)
    raise GradFilterError(f"unknown gradient filter {kind!r}; expected one of {GRAD_FILTERS}")


def attach_grad_filter(optimizer: torch.optim.Optimizer, kind: str | None, **options: Any) -> EMAFilter | MAFilter | None:
    """Run a gradient filter over the optimizer's parameters before each ``step()``.

    Registered as a step pre-hook, so ``backward(); step()`` loops need no change.
    ``kind=None`` attaches nothing and returns ``None``.
    """
    if kind is None:
        return None
    params = [p for group in optimizer.param_groups for p in group["params"]]
    filt = make_grad_filter(kind, params, **options)
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: filt.apply())
    return filt
