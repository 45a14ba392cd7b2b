"""Build a torch module from an :class:`~weightlake.arch.Architecture`.

The module is a ``torch.nn.Module`` holding ``module_list`` (a ``ModuleList``), so its
``state_dict`` keys are exactly the architecture's (``module_list.0.weight`` ...), its
``parameters()`` order is the flat order, and checkpoints of the reference zoo load into it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from weightlake.arch import ACTIVATIONS, CNN_S, Architecture
from weightlake.errors import ArchitectureError

_ACTIVATION_MODULES = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leakyrelu": nn.LeakyReLU,
}


def activation_module(name: str) -> nn.Module:
    try:
        return _ACTIVATION_MODULES[name]()
    except KeyError:
        raise ArchitectureError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}") from None


class ZooCNN(nn.Module):
    """A sequential network of an architecture's modules, under the name ``module_list``."""

    def __init__(self, arch: Architecture = CNN_S, activation: str = "relu") -> None:
        super().__init__()
        self.arch, self.activation = arch, activation
        modules: list[nn.Module] = []
        for spec in arch.modules:
            a = spec.args
            if spec.kind == "conv2d":
                modules.append(nn.Conv2d(a["in_channels"], a["out_channels"], a["kernel_size"]))
            elif spec.kind == "linear":
                modules.append(nn.Linear(a["in_features"], a["out_features"]))
            elif spec.kind == "maxpool2d":
                modules.append(nn.MaxPool2d(a["kernel_size"], a["kernel_size"]))
            elif spec.kind == "activation":
                modules.append(activation_module(activation))
            elif spec.kind == "flatten":
                modules.append(nn.Flatten())
            else:  # an inferred architecture's gap: its module kind was never recorded
                from weightlake.errors import ArchitectureError

                raise ArchitectureError(f"architecture {arch.name!r} has a module of unknown kind ({spec.kind}) at "
                                        f"index {len(modules)}: it stores and analyses weights but cannot build a "
                                        "torch module; describe the architecture in full (--arch FILE.json)")
        self.module_list = nn.ModuleList(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.module_list:
            x = module(x)
        return x

    def flat(self) -> torch.Tensor:
        """The parameters as one flat vector in ``parameters()`` order (a copy)."""
        return torch.cat([p.detach().reshape(-1) for p in self.parameters()])

    def load_flat(self, flat: Any) -> ZooCNN:
        """Load a flat vector ``[P]`` (numpy or torch); returns ``self``."""
        flat_t = torch.as_tensor(flat, dtype=torch.float32)
        self.arch.check_flat(flat_t)
        self.load_state_dict({k: v.clone() for k, v in self.arch.flat_to_state_dict(flat_t).items()})
        return self


def build_cnn(arch: Architecture = CNN_S, activation: str = "relu", flat: Any | None = None) -> ZooCNN:
    """A ready module; with ``flat`` given, its parameters are loaded from it."""
    model = ZooCNN(arch, activation)
    if flat is not None:
        model.load_flat(flat)
    return model.eval()
