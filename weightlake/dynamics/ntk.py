"""The empirical neural tangent kernel of a torch module, and what its spectrum says.

For a network ``f(x; theta)`` with ``K`` outputs and inputs ``x_1 .. x_N`` the empirical NTK is

    Theta[n, m, k, l] = sum_p  d f_k(x_n) / d theta_p  *  d f_l(x_m) / d theta_p

(:func:`empirical_ntk`, full form ``[N, N, K, K]``), and its trace over the outputs
``sum_k Theta[n, m, k, k]`` is the trace form ``[N, N]``.  Jacobians come from
``torch.func.vmap(jacrev(functional_call))``, one input at a time, so the model may hold
batch-dependent layers only in eval mode.

Gradient descent on the squared loss ``1/2 sum (f - y)^2`` of the *linearised* model
``f_lin(theta) = f(theta_0) + J (theta - theta_0)`` moves the residual as
``r <- (I - lr * Theta) r`` with ``Theta = J J^T`` flattened to ``[N*K, N*K]``: it converges
for ``lr < 2 / lambda_max`` and diverges above (:func:`linearised_gd`).  The condition
number ``kappa = lambda_max / lambda_min`` is the paper's trainability figure (arXiv
1912.13053): the slowest mode needs about ``kappa`` steps at the largest stable rate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from weightlake.errors import WeightLakeError


class NTKError(WeightLakeError, ValueError):
    """Inputs or a model an empirical NTK cannot be taken on (no inputs; batch norm or dropout in training mode)."""


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def _refuse_training_mode(model: nn.Module) -> None:
    """Refuse batch norm or dropout in training mode: per-sample Jacobians of them are not defined
    (torch.func fails with 'attempted to call in-place operation' or 'called random operation')."""
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.dropout import _DropoutNd

    live = sorted({type(m).__name__ for m in model.modules() if m.training and isinstance(m, (_BatchNorm, _DropoutNd))})
    if live:
        raise NTKError(f"the model has {', '.join(live)} in training mode, whose output depends on the batch or on "
                       "chance: call model.eval() before taking its NTK")


def jacobians(model: nn.Module, x: torch.Tensor, chunk: int = 256) -> dict[str, torch.Tensor]:
    """Per-sample Jacobians of the outputs with respect to each parameter.

    Parameters
    ----------
    model
        Any module whose forward maps a batch ``[N, ...]`` to ``[N, K]`` (or ``[N]``).
    x
        The inputs, ``[N, ...]``.
    chunk
        Inputs per vmapped call (bounds memory).

    Returns
    -------
    dict
        Parameter name -> ``[N, K, numel]`` (float32).
    """
    from torch.func import functional_call, jacrev, vmap

    if len(x) == 0:
        raise NTKError(f"an NTK needs at least one input, got inputs of shape {tuple(x.shape)}")
    _refuse_training_mode(model)
    params = _params(model)

    def single(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, p, (xi.unsqueeze(0),))
        return out.reshape(-1)

    jac_fn = vmap(jacrev(single), in_dims=(None, 0))
    parts: list[dict[str, torch.Tensor]] = [jac_fn(params, x[s:s + chunk]) for s in range(0, len(x), chunk)]
    return {name: torch.cat([p[name] for p in parts]).flatten(2) for name in params}


def jacobian_matrix(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The Jacobian as one matrix ``[N*K, P]`` (rows output-major within each input; columns in
    ``named_parameters()`` order)."""
    jac = jacobians(model, x)
    j = torch.cat(list(jac.values()), dim=2)
    return j.reshape(-1, j.shape[2])


def empirical_ntk(model: nn.Module, x: torch.Tensor, trace: bool = False) -> torch.Tensor:
    """The empirical NTK of ``model`` on ``x``.

    Parameters
    ----------
    model
        A module mapping ``[N, ...]`` to ``[N, K]``; put it in eval mode first if it has
        dropout or batch norm.
    x
        Inputs ``[N, ...]``.
    trace
        ``False``: the full kernel ``[N, N, K, K]``; ``True``: its trace over outputs ``[N, N]``.

    Returns
    -------
    torch.Tensor
        float64, symmetric positive semi-definite (as a ``[N*K, N*K]`` matrix for the full form).
    """
    jac = jacobians(model, x)
    n = len(x)
    k = next(iter(jac.values())).shape[1]
    out = torch.zeros((n, n) if trace else (n, n, k, k), dtype=torch.float64)
    for j in jac.values():
        j = j.double()
        out += torch.einsum("nkp,mkp->nm", j, j) if trace else torch.einsum("nkp,mlp->nmkl", j, j)
    return out


def ntk_matrix(theta: torch.Tensor) -> torch.Tensor:
    """A full ``[N, N, K, K]`` kernel as the ``[N*K, N*K]`` matrix (index ``n*K + k``); a trace
    form ``[N, N]`` passes through."""
    if theta.ndim == 2:
        return theta
    n, _, k, _ = theta.shape
    return theta.permute(0, 2, 1, 3).reshape(n * k, n * k)


@dataclass(frozen=True)
class NTKSpectrum:
    """Extremes of an NTK's spectrum.

    ``lambda_min`` is the smallest eigenvalue above ``rtol * lambda_max``; ``kappa`` is
    ``lambda_max / lambda_min`` when the kernel has full rank and infinite when it is
    numerically ``singular`` (``rank < size``: some eigenvalue is at most ``rtol * lambda_max``),
    while ``kappa_range`` is the condition number on the kernel's range in either case.
    "Numerically singular" is a statement about that threshold, not about the network: more
    outputs than parameters makes a kernel singular, and so does a dead network, but so can a
    well-trained ReLU model whose kernel merely has a few eigenvalues below the threshold
    (read ``rank`` against ``size``).
    """

    size: int
    rank: int
    lambda_max: float
    lambda_min: float
    kappa: float
    kappa_range: float
    lr_bound: float
    """``2 / lambda_max``: the largest stable gradient-descent step on the linearised model."""
    trace: float
    singular: bool
    """Numerically singular: ``rank < size``, some eigenvalue at most ``rtol * lambda_max``."""
    rtol: float = 1e-10
    """The threshold ``singular`` and ``rank`` were judged by."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ntk_spectrum(theta: torch.Tensor, rtol: float = 1e-10) -> NTKSpectrum:
    """Spectrum summary of an NTK (full ``[N, N, K, K]`` or trace ``[N, N]``).

    Parameters
    ----------
    theta
        The kernel from :func:`empirical_ntk` (or an analytic one).
    rtol
        Eigenvalues at most ``rtol * lambda_max`` count as zero.

    Returns
    -------
    NTKSpectrum
    """
    mat = ntk_matrix(theta).double()
    eig = torch.linalg.eigvalsh((mat + mat.T) / 2)
    lam_max = float(eig[-1])
    positive = eig[eig > rtol * max(lam_max, 0.0)]
    lam_min = float(positive[0]) if len(positive) else 0.0
    kappa_range = lam_max / lam_min if lam_min > 0 else float("inf")
    return NTKSpectrum(size=len(eig), rank=len(positive), lambda_max=lam_max, lambda_min=lam_min,
                       kappa=kappa_range if len(positive) == len(eig) else float("inf"), kappa_range=kappa_range,
                       lr_bound=2.0 / lam_max if lam_max > 0 else float("inf"),
                       trace=float(eig.sum()), singular=len(positive) < len(eig), rtol=float(rtol))


def linearised_gd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int) -> torch.Tensor:
    """Full-batch gradient descent in parameter space on the linearised model.

    ``f_lin(theta) = f(theta_0) + J (theta - theta_0)`` with ``J`` the Jacobian at
    ``theta_0``; the loss is ``1/2 * sum((f_lin - y)^2)``, so each step is
    ``theta <- theta - lr * J^T (f_lin - y)``.

    Parameters
    ----------
    model
        The network at ``theta_0`` (not modified).
    x, y
        Inputs ``[N, ...]`` and targets ``[N, K]``.
    lr
        Step size; compare with :attr:`NTKSpectrum.lr_bound` of ``empirical_ntk(model, x)``.
    steps
        Number of steps.

    Returns
    -------
    torch.Tensor
        The loss before each step and after the last, ``[steps + 1]`` (float64).
    """
    j = jacobian_matrix(model, x).double()
    with torch.no_grad():
        f0 = model(x).reshape(-1).double()
    target = y.reshape(-1).double()
    delta = torch.zeros(j.shape[1], dtype=torch.float64)
    losses = []
    for _ in range(steps + 1):
        residual = f0 + j @ delta - target
        losses.append(0.5 * float(residual @ residual))
        delta -= lr * (j.T @ residual)
    return torch.tensor(losses, dtype=torch.float64)
