"""Weight-space augmentations for training on zoos: neuron permutation, noise, erasing.

Pure numpy over flat rows ``[B, P]`` and an :class:`~weightlake.arch.Architecture`:

* :func:`permute_neurons` reorders the hidden units of every layer that feeds another (conv
  output channels, linear output features) and the matching inputs of the next layer
  (whole channel blocks across a ``flatten``). Elementwise activations and pooling commute
  with such a reordering, so the permuted network computes the same function: same logits
  on every input, up to float rounding.
* :func:`add_noise` adds Gaussian noise, :func:`erase` zeroes each weight with probability ``p``.

:class:`Augment` bundles them for ``pairs.loader(augment=...)``: every batch draws from a
generator seeded with ``(seed, epoch, first position of the batch)``, so an epoch's
augmented batches are the same on every run and with any number of workers. The
permutation is shared by the three models of a pair by default (inputs and target move
together, so "trained on A union B" still names the target); noise and erasing touch the
inputs only, never the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from weightlake.errors import ArchitectureError, QueryError

if TYPE_CHECKING:
    from weightlake.arch import Architecture, Layer


def permutation_links(arch: Architecture) -> list[tuple[Layer, Layer, int]]:
    """``(producer, consumer, block)`` for every pair of consecutive layers whose hidden units
    can be permuted: the consumer's input ``i`` belongs to producer unit ``i // block``.

    Only a module list of conv2d and linear layers is a plain chain; a tensor list (batch norms,
    a ResNet's skip connections: no record says which tensor feeds which) is refused rather than
    permuted by guess.
    """
    from weightlake.arch import MATRIX_KINDS

    others = [f"{layer.name!r} ({layer.kind})" for layer in arch.layers if layer.kind not in MATRIX_KINDS]
    if arch.is_tensor_list or others:
        why = f"it has {', '.join(others[:3])} layers" if others else "it is a list of state_dict tensors"
        raise ArchitectureError(f"cannot permute the neurons of architecture {arch.name!r}: {why}, and only a "
                                "chain of conv2d and linear modules says which layer feeds which")
    links = []
    for prod, cons in zip(arch.layers[:-1], arch.layers[1:], strict=True):
        units, inputs = prod.weight_shape[0], cons.weight_shape[1]
        if inputs % units:
            raise ArchitectureError(f"layer {cons.name!r} takes {inputs} inputs, not a whole multiple of the "
                                    f"{units} units of {prod.name!r}: cannot permute them")
        links.append((prod, cons, inputs // units))
    return links


def _random_perms(rng: np.random.Generator, rows: int, units: int) -> np.ndarray:
    return np.argsort(rng.random((rows, units)), axis=1)


def permute_neurons(flat: np.ndarray, arch: Architecture, rng: np.random.Generator,
                    perms: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Each row of ``flat [B, P]`` with its hidden units permuted (a new array, same function).

    ``perms`` (layer name -> ``int [B, units]``) gives the permutations; missing ones are
    drawn from ``rng``. Row ``b`` of the result holds, at unit ``o`` of a producer layer,
    the old unit ``perm[b, o]``.
    """
    flat = np.asarray(flat)
    rows = flat.shape[0]
    perms = {} if perms is None else perms  # a dict given by the caller is filled in (shared permutations)
    out = flat.copy()
    incoming: dict[str, tuple[np.ndarray, int]] = {}
    for prod, cons, block in permutation_links(arch):
        perm = perms.setdefault(prod.name, _random_perms(rng, rows, prod.weight_shape[0]))
        incoming[cons.name] = (perm, block)
    batch = np.arange(rows)[:, None, None]
    for layer in arch.layers:
        units, rest = layer.weight_shape[0], layer.weight_size // layer.weight_shape[0]
        w = flat[:, layer.start:layer.bias_start].reshape(rows, units, rest)
        b = flat[:, layer.bias_start:layer.stop]
        if layer.name in perms:  # output units reordered
            w = w[batch, perms[layer.name][:, :, None], np.arange(rest)[None, None, :]]
            b = b[np.arange(rows)[:, None], perms[layer.name]]
        if layer.name in incoming:  # inputs follow the producer's new order, block by block
            perm, block = incoming[layer.name]
            per_input = rest // layer.weight_shape[1]  # kernel positions of a conv, 1 for linear
            src = (perm[:, :, None] * block + np.arange(block)[None, None, :]).reshape(rows, -1)  # [B, in]
            cols = (src[:, :, None] * per_input + np.arange(per_input)[None, None, :]).reshape(rows, 1, rest)
            w = np.take_along_axis(w, np.broadcast_to(cols, w.shape), axis=2)
        out[:, layer.start:layer.bias_start] = w.reshape(rows, -1)
        out[:, layer.bias_start:layer.stop] = b
    return out


def add_noise(flat: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``flat + sigma * N(0, 1)`` (float32 stays float32)."""
    return (flat + sigma * rng.standard_normal(flat.shape)).astype(flat.dtype, copy=False)


def erase(flat: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """Each weight set to 0 with probability ``p``."""
    return np.where(rng.random(flat.shape) < p, 0, flat).astype(flat.dtype, copy=False)


@dataclass(frozen=True)
class Augment:
    """Augmentations applied to each batch of ``pairs.loader(augment=Augment(...))``.

    Parameters
    ----------
    permute
        Permute hidden units (function-preserving).
    shared
        One permutation for the three models of a pair (default); else one each.
    noise
        Standard deviation of Gaussian noise added to the inputs (0: none).
    erase
        Probability that an input weight is zeroed (0: none).
    """

    permute: bool = False
    shared: bool = True
    noise: float = 0.0
    erase: float = 0.0

    def __post_init__(self) -> None:
        if self.noise < 0 or not 0 <= self.erase < 1:
            raise QueryError(f"noise must be >= 0 and erase in [0, 1), got noise={self.noise!r}, erase={self.erase!r}")

    @property
    def active(self) -> bool:
        return self.permute or self.noise > 0 or self.erase > 0

    def apply(self, x1: np.ndarray, x2: np.ndarray, y: np.ndarray, arch: Architecture,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The augmented ``(x1, x2, y)`` of one batch."""
        if self.permute:
            perms: dict[str, Any] | None = {} if self.shared else None
            x1 = permute_neurons(x1, arch, rng, perms)
            x2 = permute_neurons(x2, arch, rng, perms)
            y = permute_neurons(y, arch, rng, perms)
        for fn, amount in ((add_noise, self.noise), (erase, self.erase)):
            if amount > 0:
                x1, x2 = fn(x1, amount, rng), fn(x2, amount, rng)
        return x1, x2, y
