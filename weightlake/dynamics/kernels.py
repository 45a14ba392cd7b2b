"""Analytic NNGP and NTK kernels of infinitely wide fully connected networks.

A network in the NTK parameterisation, with ``L`` hidden layers of width ``n``::

    h^1 = sigma_w / sqrt(d) * W^0 x + sigma_b * b^0
    h^{l+1} = sigma_w / sqrt(n) * W^l phi(h^l) + sigma_b * b^l      (l = 1 .. L)

(all ``W, b ~ N(0, 1)``; the output is ``h^{L+1}``) has, as ``n -> infinity``, the NNGP kernel
``K`` and the NTK ``Theta`` given by the recursions

    K^1 = sigma_w^2 x.x'/d + sigma_b^2,          Theta^1 = K^1
    K^{l+1} = sigma_w^2 E[phi(u) phi(v)] + sigma_b^2
    Theta^{l+1} = K^{l+1} + sigma_w^2 E[phi'(u) phi'(v)] Theta^l

with ``(u, v) ~ N(0, K^l restricted to (x, x'))``.  ReLU (the arc-cosine kernel) and erf have
closed forms for both expectations (:func:`relu_expectations`, :func:`erf_expectations`).
:func:`wide_mlp` builds the finite network; its empirical NTK
(:func:`~weightlake.dynamics.ntk.empirical_ntk`, per output) converges to ``Theta^{L+1}``.

With depth the kernel degenerates (arXiv 1912.13053): in the ordered phase every pair of
inputs becomes perfectly correlated (the NTK tends to a constant matrix, kappa grows without
bound); in the chaotic phase correlations fall to a fixed point below one.
:func:`phase_diagram` tabulates kappa and the mean off-diagonal correlation over depth and
``sigma_w^2``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from weightlake.errors import WeightLakeError

Expectations = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class KernelError(WeightLakeError, ValueError):
    """Bad arguments to an analytic kernel (unknown activation, non-positive variance)."""


def relu_expectations(k11: np.ndarray, k22: np.ndarray, k12: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``E[relu(u) relu(v)]`` and ``E[step(u) step(v)]`` for ``(u, v)`` with covariances ``k``.

    Arc-cosine kernel of degree 1 and 0: with ``cos t = k12 / sqrt(k11 k22)``,
    ``sqrt(k11 k22) (sin t + (pi - t) cos t) / (2 pi)`` and ``(pi - t) / (2 pi)``.
    """
    norm = np.sqrt(k11 * k22)
    t = np.arccos(np.clip(k12 / norm, -1.0, 1.0))
    return norm * (np.sin(t) + (math.pi - t) * np.cos(t)) / (2 * math.pi), (math.pi - t) / (2 * math.pi)


def erf_expectations(k11: np.ndarray, k22: np.ndarray, k12: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``E[erf(u) erf(v)]`` and ``E[erf'(u) erf'(v)]``.

    ``(2/pi) arcsin(2 k12 / sqrt((1 + 2 k11)(1 + 2 k22)))`` and
    ``(4/pi) / sqrt((1 + 2 k11)(1 + 2 k22) - 4 k12^2)``.
    """
    a, b = 1 + 2 * k11, 1 + 2 * k22
    phi = (2 / math.pi) * np.arcsin(np.clip(2 * k12 / np.sqrt(a * b), -1.0, 1.0))
    return phi, (4 / math.pi) / np.sqrt(a * b - 4 * k12 ** 2)


EXPECTATIONS: dict[str, Expectations] = {"relu": relu_expectations, "erf": erf_expectations}


def _expectations(activation: str) -> Expectations:
    try:
        return EXPECTATIONS[activation]
    except KeyError:
        raise KernelError(f"no closed form for activation {activation!r}; expected one of {sorted(EXPECTATIONS)}") \
            from None


def analytic_kernels(x: np.ndarray, depth: int, sigma_w2: float, sigma_b2: float = 0.0, activation: str = "relu",
                     every_layer: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """NNGP kernel and NTK of the infinitely wide network on inputs ``x``.

    Parameters
    ----------
    x
        Inputs ``[N, d]``.
    depth
        Number of hidden layers ``L`` (the network has ``L + 1`` weight matrices).
    sigma_w2, sigma_b2
        Weight and bias variances.
    activation
        ``"relu"`` or ``"erf"``.
    every_layer
        Return the kernels of every layer ``1 .. L+1`` stacked ``[L+1, N, N]``.

    Returns
    -------
    (K, Theta)
        float64 ``[N, N]`` each (or stacked per layer).
    """
    if depth < 0 or sigma_w2 <= 0 or sigma_b2 < 0:
        raise KernelError(f"expected depth >= 0, sigma_w2 > 0, sigma_b2 >= 0; got {depth!r}, {sigma_w2!r}, "
                          f"{sigma_b2!r}")
    expect = _expectations(activation)
    x = np.asarray(x, dtype=np.float64)
    k = sigma_w2 * (x @ x.T) / x.shape[1] + sigma_b2
    theta = k.copy()
    ks, thetas = [k], [theta]
    for _ in range(depth):
        diag = np.diag(k)
        e_phi, e_dphi = expect(diag[:, None], diag[None, :], k)
        k = sigma_w2 * e_phi + sigma_b2
        theta = k + sigma_w2 * e_dphi * theta
        ks.append(k)
        thetas.append(theta)
    if every_layer:
        return np.stack(ks), np.stack(thetas)
    return k, theta


class _Erf(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(x)


class WideMLP(nn.Module):
    """A fully connected network in the NTK parameterisation (see the module notes)."""

    def __init__(self, d_in: int, width: int, depth: int, d_out: int = 1, sigma_w2: float = 2.0,
                 sigma_b2: float = 0.0, activation: str = "relu") -> None:
        super().__init__()
        _expectations(activation)
        sizes = [d_in, *[width] * depth, d_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        for layer in self.linears():
            nn.init.normal_(layer.weight)
            nn.init.normal_(layer.bias)
        self.sigma_w, self.sigma_b = math.sqrt(sigma_w2), math.sqrt(sigma_b2)
        self.phi: nn.Module = nn.ReLU() if activation == "relu" else _Erf()

    def linears(self) -> list[nn.Linear]:
        return [layer for layer in self.layers if isinstance(layer, nn.Linear)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.linears()):
            if i:
                x = self.phi(x)
            x = self.sigma_w / math.sqrt(layer.in_features) * (x @ layer.weight.T) + self.sigma_b * layer.bias
        return x


def wide_mlp(d_in: int, width: int, depth: int, *, sigma_w2: float = 2.0, sigma_b2: float = 0.0,
             activation: str = "relu", d_out: int = 1, seed: int = 0) -> WideMLP:
    """A seeded :class:`WideMLP` whose empirical NTK approaches :func:`analytic_kernels` as ``width`` grows."""
    torch.manual_seed(seed)
    return WideMLP(d_in, width, depth, d_out, sigma_w2, sigma_b2, activation).eval()


def kernel_summary(theta: np.ndarray) -> dict[str, float]:
    """Condition number, extreme eigenvalues and mean off-diagonal correlation of a kernel ``[N, N]``."""
    eig = np.linalg.eigvalsh((theta + theta.T) / 2)
    d = np.sqrt(np.diag(theta))
    corr = theta / np.outer(d, d)
    off = corr[~np.eye(len(theta), dtype=bool)]
    lam_min = eig[0]
    return {"lambda_max": float(eig[-1]), "lambda_min": float(lam_min),
            "kappa": float(eig[-1] / lam_min) if lam_min > 0 else float("inf"),
            "mean_correlation": float(off.mean()) if off.size else 1.0}


def phase_diagram(x: np.ndarray, depths: Sequence[int], sigma_w2s: Sequence[float], sigma_b2: float = 0.05,
                  activation: str = "relu") -> dict[str, np.ndarray]:
    """NTK kappa and mean off-diagonal correlation over a grid of depth x ``sigma_w^2``.

    Returns
    -------
    dict
        ``depths``, ``sigma_w2``, and ``kappa`` / ``correlation`` / ``nngp_correlation`` arrays
        ``[len(sigma_w2s), len(depths)]``.
    """
    depths = sorted(int(d) for d in depths)
    kappa = np.full((len(sigma_w2s), len(depths)), np.nan)
    corr, nngp_corr = kappa.copy(), kappa.copy()
    for i, s in enumerate(sigma_w2s):
        ks, thetas = analytic_kernels(x, depths[-1], s, sigma_b2, activation, every_layer=True)
        for j, depth in enumerate(depths):
            summary = kernel_summary(thetas[depth])
            kappa[i, j], corr[i, j] = summary["kappa"], summary["mean_correlation"]
            nngp_corr[i, j] = kernel_summary(ks[depth])["mean_correlation"]
    return {"depths": np.asarray(depths), "sigma_w2": np.asarray(sigma_w2s, dtype=np.float64), "kappa": kappa,
            "correlation": corr, "nngp_correlation": nngp_corr}


def ntk_convergence(x: np.ndarray, widths: Sequence[int], depth: int = 2, sigma_w2: float = 2.0,
                    sigma_b2: float = 0.1, activation: str = "relu", seeds: Sequence[int] = (0, 1, 2)) -> dict[int, float]:
    """Relative Frobenius error ``||Theta_emp - Theta|| / ||Theta||`` of seeded wide MLPs' empirical
    NTK (one output) against :func:`analytic_kernels`, per width, averaged over ``seeds``."""
    from weightlake.dynamics.ntk import empirical_ntk

    _, theta = analytic_kernels(x, depth, sigma_w2, sigma_b2, activation)
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    out = {}
    for width in widths:
        errs = []
        for seed in seeds:
            model = wide_mlp(xt.shape[1], int(width), depth, sigma_w2=sigma_w2, sigma_b2=sigma_b2,
                             activation=activation, seed=seed)
            emp = empirical_ntk(model, xt, trace=True).numpy()
            errs.append(np.linalg.norm(emp - theta) / np.linalg.norm(theta))
        out[int(width)] = float(np.mean(errs))
    return out
