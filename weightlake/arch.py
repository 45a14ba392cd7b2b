"""Architectures as data: layer names, shapes, flat offsets, state_dict keys, CSV names.

Nothing outside this module knows that the zoo CNN has 2,464 parameters or where its
layer boundaries lie: everything else asks an :class:`Architecture`.  An architecture is
a plain sequence of module specs (``conv2d``, ``maxpool2d``, ``activation``, ``flatten``,
``linear``); the parameterised ones become :class:`Layer` objects with flat offsets in
``parameters()`` order (each layer's weight, then its bias, row-major).

Conversions, and the laws they keep (tested with Hypothesis):

* ``state_dict_to_flat(flat_to_state_dict(x)) == x``
* ``layers_to_flat(flat_to_layers(x)) == x``
* ``matrix_to_weight(layer, weight_to_matrix(layer, w)) == w``

All conversions work on numpy arrays and torch tensors alike, on one vector ``[P]`` or a
block of rows ``[n, P]``, and return views where the memory layout allows it.

This module does no I/O and imports neither torch nor numpy at call sites that do not
need them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from weightlake.errors import ArchitectureError, NoSuchTableError

ACTIVATIONS: tuple[str, ...] = ("gelu", "relu", "silu", "tanh", "sigmoid", "leakyrelu")
"""Activation names in the CSV zoo's column order."""

SCENARIO_ACTIVATIONS: tuple[str, ...] = ("gelu", "relu", "silu", "leakyrelu", "sigmoid", "tanh")
"""Activation names in the key order of scenario files (key ``i`` is ``SCENARIO_ACTIVATIONS[i]``)."""

INITS: tuple[str, ...] = (
    "xavier_uniform", "xavier_normal", "uniform", "normal", "kaiming_normal", "kaiming_uniform",
)
EPOCH_BINS: tuple[int, ...] = (11, 16, 21, 26, 31, 36)
"""Epoch bins of the reference zoo; scenario epoch key ``i`` is ``EPOCH_BINS[i]``."""

def class_subsets(digits: Iterable[int], sizes: Iterable[int]) -> list[tuple[int, ...]]:
    """Every sorted subset of ``digits`` whose size is in ``sizes``, by size then lexicographically.

    ``class_subsets(range(3), [2])`` is ``[(0, 1), (0, 2), (1, 2)]``; digits 0-9 with sizes
    2-10 give the reference zoo's 1,013 labels.
    """
    pool = sorted({int(d) for d in digits})
    return [c for size in sorted({int(s) for s in sizes}) for c in itertools.combinations(pool, size)]


_PARAM_KINDS = ("conv2d", "linear")
_MODULE_KINDS = ("conv2d", "linear", "maxpool2d", "activation", "flatten", "opaque")
"""``opaque``: a parameterless module whose kind nothing recorded (inferred architectures fill gaps
between parameterised modules with it); an architecture holding one stores and analyses
weights but cannot build a torch module."""


@dataclass(frozen=True)
class ModuleSpec:
    """One entry of an architecture's module list.

    ``conv2d`` takes ``in_channels``, ``out_channels``, ``kernel_size``; ``linear`` takes
    ``in_features``, ``out_features``; ``maxpool2d`` takes ``kernel_size`` (stride equal);
    ``activation``, ``flatten`` and ``opaque`` take nothing.  ``name`` names a parameterised module.
    """

    kind: str
    name: str | None = None
    args: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in _MODULE_KINDS:
            raise ArchitectureError(f"unknown module kind {self.kind!r}; expected one of {_MODULE_KINDS}")
        if self.kind in _PARAM_KINDS and not self.name:
            raise ArchitectureError(f"a {self.kind} module needs a name")
        object.__setattr__(self, "args", dict(self.args))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.name:
            out["name"] = self.name
        if self.args:
            out["args"] = dict(self.args)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModuleSpec:
        return cls(kind=data["kind"], name=data.get("name"), args=data.get("args", {}))


@dataclass(frozen=True)
class Layer:
    """A parameterised layer: where its weight and bias sit in the flat vector."""

    name: str
    kind: str
    module_index: int
    weight_shape: tuple[int, ...]
    bias_shape: tuple[int, ...]
    start: int
    """Flat offset of the weight's first value."""

    @property
    def weight_size(self) -> int:
        return _prod(self.weight_shape)

    @property
    def bias_size(self) -> int:
        return _prod(self.bias_shape)

    @property
    def bias_start(self) -> int:
        return self.start + self.weight_size

    @property
    def stop(self) -> int:
        """Flat offset one past the bias: the layer's block is ``[start, stop)``."""
        return self.bias_start + self.bias_size

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def matrix_shape(self) -> tuple[int, int]:
        """The weight as a 2-D matrix: ``out x in*kh*kw`` for conv, ``out x in`` for linear."""
        return self.weight_shape[0], self.weight_size // self.weight_shape[0]

    def keys(self, prefix: str) -> tuple[str, str]:
        """The state_dict keys of weight and bias."""
        head = f"{prefix}.{self.module_index}" if prefix else str(self.module_index)  # a bare nn.Sequential
        return f"{head}.weight", f"{head}.bias"


@dataclass(frozen=True)
class Architecture:
    """A network as data.  Build one with :func:`get_architecture` or :meth:`from_dict`."""

    name: str
    modules: tuple[ModuleSpec, ...]
    input_shape: tuple[int, ...] = (1, 28, 28)
    state_dict_prefix: str = "module_list"
    layers: tuple[Layer, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "modules", tuple(self.modules))
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "layers", _parse_layers(self.modules))
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ArchitectureError(f"layer names must be unique, got {names}")

    # -- shape facts -------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return self.layers[-1].stop if self.layers else 0

    @property
    def boundaries(self) -> tuple[int, ...]:
        """Layer block boundaries, biases included: ``[0, ..., n_params]``."""
        return (0, *(layer.stop for layer in self.layers))

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].weight_shape[0]

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise NoSuchTableError(f"architecture {self.name!r} has no layer {name!r}; layers: {self.layer_names}")

    def state_dict_keys(self) -> list[str]:
        return [key for layer in self.layers for key in layer.keys(self.state_dict_prefix)]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """state_dict key -> shape, in ``parameters()`` order."""
        out: dict[str, tuple[int, ...]] = {}
        for layer in self.layers:
            wkey, bkey = layer.keys(self.state_dict_prefix)
            out[wkey], out[bkey] = layer.weight_shape, layer.bias_shape
        return out

    def csv_columns(self) -> list[str]:
        """Weight column names of the CSV zoo: ``weight i`` / ``bias i`` with the flat index."""
        cols: list[str] = []
        for layer in self.layers:
            cols += [f"weight {i}" for i in range(layer.start, layer.bias_start)]
            cols += [f"bias {i}" for i in range(layer.bias_start, layer.stop)]
        return cols

    def param_layer_index(self) -> Any:
        """int array ``[P]``: index into :attr:`layers` of each flat parameter."""
        import numpy as np

        out = np.empty(self.n_params, dtype=np.int16)
        for i, layer in enumerate(self.layers):
            out[layer.start:layer.stop] = i
        return out

    # -- conversions ---------------------------------------------------------------------
    def check_flat(self, flat: Any) -> None:
        if flat.shape[-1] != self.n_params or flat.ndim not in (1, 2):
            raise ArchitectureError(
                f"expected a flat vector [{self.n_params}] or rows [n, {self.n_params}] for "
                f"architecture {self.name!r}, got shape {tuple(flat.shape)}")

    def flat_to_state_dict(self, flat: Any) -> dict[str, Any]:
        """Flat ``[P]`` (or rows ``[n, P]``) -> ``{key: tensor}`` (views, leading ``n`` kept)."""
        self.check_flat(flat)
        lead = tuple(flat.shape[:-1])
        out: dict[str, Any] = {}
        for layer in self.layers:
            wkey, bkey = layer.keys(self.state_dict_prefix)
            out[wkey] = flat[..., layer.start:layer.bias_start].reshape(*lead, *layer.weight_shape)
            out[bkey] = flat[..., layer.bias_start:layer.stop].reshape(*lead, *layer.bias_shape)
        return out

    def state_dict_to_flat(self, state_dict: Mapping[str, Any], *, where: str = "state_dict") -> Any:
        """``{key: tensor}`` -> flat vector in ``parameters()`` order (a new array).

        Raises :class:`ArchitectureError` naming the missing, unexpected or misshapen keys.
        Keys may carry a ``_orig_mod.`` prefix (compiled models).
        """
        sd = {k.removeprefix("_orig_mod."): v for k, v in state_dict.items()}
        expected = self.param_shapes()
        missing = [k for k in expected if k not in sd]
        unknown = [k for k in sd if k not in expected]
        if missing or unknown:
            raise ArchitectureError(
                f"{where} does not match architecture {self.name!r}: "
                + "; ".join(p for p in (f"missing keys {missing}" if missing else "",
                                        f"unexpected keys {unknown}" if unknown else "") if p))
        parts = []
        for key, shape in expected.items():
            value = sd[key]
            if tuple(value.shape) != shape:
                raise ArchitectureError(
                    f"{where}: {key!r} has shape {tuple(value.shape)}, architecture {self.name!r} expects {shape}")
            parts.append(value.reshape(-1))
        return _concat(parts)

    def flat_to_layers(self, flat: Any) -> dict[str, Any]:
        """Flat -> ``{layer: weight}`` plus ``{layer.bias: bias}``, each with its natural shape."""
        sd = self.flat_to_state_dict(flat)
        out: dict[str, Any] = {}
        for layer in self.layers:
            wkey, bkey = layer.keys(self.state_dict_prefix)
            out[layer.name], out[f"{layer.name}.bias"] = sd[wkey], sd[bkey]
        return out

    def layers_to_flat(self, tensors: Mapping[str, Any]) -> Any:
        """Inverse of :meth:`flat_to_layers`."""
        sd = {}
        for layer in self.layers:
            wkey, bkey = layer.keys(self.state_dict_prefix)
            sd[wkey], sd[bkey] = tensors[layer.name], tensors[f"{layer.name}.bias"]
        return self.state_dict_to_flat(sd)

    def select(self, flat: Any, name: str) -> Any:
        """One layer's weight (``"fc1"``) or bias (``"fc1.bias"``) from flat rows, as a view."""
        layer_name, _, part = name.partition(".")
        layer = self.layer(layer_name)
        lead = tuple(flat.shape[:-1])
        if part == "bias":
            return flat[..., layer.bias_start:layer.stop].reshape(*lead, *layer.bias_shape)
        if part not in ("", "weight"):
            raise ArchitectureError(f"expected {layer_name!r}, {layer_name + '.weight'!r} or "
                                    f"{layer_name + '.bias'!r}, got {name!r}")
        return flat[..., layer.start:layer.bias_start].reshape(*lead, *layer.weight_shape)

    def weight_to_matrix(self, layer: str | Layer, weight: Any) -> Any:
        """Weight ``[..., out, in, kh, kw]`` or ``[..., out, in]`` -> matrix ``[..., out, in*kh*kw]``."""
        spec = self.layer(layer) if isinstance(layer, str) else layer
        lead = tuple(weight.shape[: weight.ndim - len(spec.weight_shape)])
        return weight.reshape(*lead, *spec.matrix_shape)

    def matrix_to_weight(self, layer: str | Layer, matrix: Any) -> Any:
        spec = self.layer(layer) if isinstance(layer, str) else layer
        lead = tuple(matrix.shape[:-2])
        return matrix.reshape(*lead, *spec.weight_shape)

    def layer_matrix(self, flat: Any, name: str) -> Any:
        """Flat rows -> one layer's weight matrix ``[n, out, in*kh*kw]`` (a view)."""
        return self.weight_to_matrix(name, self.select(flat, name))

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "state_dict_prefix": self.state_dict_prefix,
            "modules": [m.to_dict() for m in self.modules],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Architecture:
        try:
            return cls(
                name=data["name"],
                modules=tuple(ModuleSpec.from_dict(m) for m in data["modules"]),
                input_shape=tuple(data.get("input_shape", (1, 28, 28))),
                state_dict_prefix=data.get("state_dict_prefix", "module_list"),
            )
        except KeyError as exc:
            raise ArchitectureError(f"architecture description lacks {exc.args[0]!r}: {dict(data)!r}") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _parse_layers(modules: Sequence[ModuleSpec]) -> tuple[Layer, ...]:
    layers: list[Layer] = []
    offset = 0
    for index, module in enumerate(modules):
        if module.kind == "conv2d":
            a = module.args
            k = a["kernel_size"]
            weight: tuple[int, ...] = (a["out_channels"], a["in_channels"], k, k)
            bias: tuple[int, ...] = (a["out_channels"],)
        elif module.kind == "linear":
            weight, bias = (module.args["out_features"], module.args["in_features"]), (module.args["out_features"],)
        else:
            continue
        layer = Layer(name=str(module.name), kind=module.kind, module_index=index,
                      weight_shape=weight, bias_shape=bias, start=offset)
        layers.append(layer)
        offset = layer.stop
    return tuple(layers)


def _prod(shape: Sequence[int]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


def _concat(parts: list[Any]) -> Any:
    first = parts[0]
    if type(first).__module__.startswith("torch"):
        import torch

        return torch.cat([p.detach().reshape(-1) for p in parts])
    import numpy as np

    return np.concatenate([np.asarray(p).reshape(-1) for p in parts])


CNN_S = Architecture(
    name="cnn-s",
    modules=(
        ModuleSpec("conv2d", "conv1", {"in_channels": 1, "out_channels": 8, "kernel_size": 5}),
        ModuleSpec("maxpool2d", args={"kernel_size": 2}),
        ModuleSpec("activation"),
        ModuleSpec("conv2d", "conv2", {"in_channels": 8, "out_channels": 6, "kernel_size": 5}),
        ModuleSpec("maxpool2d", args={"kernel_size": 2}),
        ModuleSpec("activation"),
        ModuleSpec("conv2d", "conv3", {"in_channels": 6, "out_channels": 4, "kernel_size": 2}),
        ModuleSpec("activation"),
        ModuleSpec("flatten"),
        ModuleSpec("linear", "fc1", {"in_features": 36, "out_features": 20}),
        ModuleSpec("activation"),
        ModuleSpec("linear", "fc2", {"in_features": 20, "out_features": 10}),
    ),
)
"""The 2,464-parameter zoo CNN of the spec (the small CNN of the public Model Zoos dataset)."""

_BUILTIN = {CNN_S.name: CNN_S}


def infer_architecture(shapes: Mapping[str, Sequence[int]], *, where: str = "state_dict") -> Architecture:
    """An architecture from a state_dict's keys and shapes: CNN-s when they are exactly its own.

    Otherwise keys must be ``<prefix>.<index>.weight`` / ``.bias`` of one prefix: a weight
    ``[out, in, k, k]`` is a conv2d, ``[out, in]`` a linear layer (named ``conv1``, ``fc1`` ...
    in order); indices between them become ``opaque`` modules (pooling and activations leave
    no trace in a state_dict).  The name is ``inferred-<digest of the layer list>``, so two
    zoos of one shape share it.

    Raises
    ------
    ArchitectureError
        For a key of another form (batch-norm statistics, non-square kernels, a missing bias).
    """
    import hashlib

    given = {k.removeprefix("_orig_mod."): tuple(int(d) for d in v) for k, v in shapes.items()}
    if given == CNN_S.param_shapes():
        return CNN_S
    parsed: dict[int, dict[str, tuple[int, ...]]] = {}
    prefixes = set()
    for key, shape in given.items():
        head, _, part = key.rpartition(".")
        prefix, _, index = head.rpartition(".")
        if part not in ("weight", "bias") or not index.isdigit():
            raise ArchitectureError(f"{where}: cannot infer an architecture from key {key!r}: only "
                                    "'<prefix>.<index>.weight/.bias' of conv2d and linear layers are understood")
        prefixes.add(prefix)
        parsed.setdefault(int(index), {})[part] = shape
    if len(prefixes) != 1:
        raise ArchitectureError(f"{where}: keys under several prefixes {sorted(prefixes)}; expected one module list")
    modules: list[ModuleSpec] = []
    counts = {"conv2d": 0, "linear": 0}
    for index in range(max(parsed) + 1):
        if index not in parsed:
            modules.append(ModuleSpec("opaque"))
            continue
        modules.append(_infer_module(parsed[index], index, counts, where))
    body = json.dumps([m.to_dict() for m in modules], sort_keys=True).encode()
    return Architecture(name=f"inferred-{hashlib.sha256(body).hexdigest()[:8]}", modules=tuple(modules),
                        input_shape=(), state_dict_prefix=prefixes.pop())


def _infer_module(parts: Mapping[str, tuple[int, ...]], index: int, counts: dict[str, int], where: str) -> ModuleSpec:
    weight, bias = parts.get("weight"), parts.get("bias")
    if weight is None or bias is None or bias != weight[:1]:
        raise ArchitectureError(f"{where}: module {index} has weight {weight} and bias {bias}; inference needs "
                                "both, the bias of shape [out]")
    if len(weight) == 4 and weight[2] == weight[3]:
        counts["conv2d"] += 1
        return ModuleSpec("conv2d", f"conv{counts['conv2d']}",
                          {"in_channels": weight[1], "out_channels": weight[0], "kernel_size": weight[2]})
    if len(weight) == 2:
        counts["linear"] += 1
        return ModuleSpec("linear", f"fc{counts['linear']}", {"in_features": weight[1], "out_features": weight[0]})
    raise ArchitectureError(f"{where}: module {index} has a weight of shape {weight}: not a square-kernel conv2d "
                            "or a linear layer")


def get_architecture(name_or_dict: str | Mapping[str, Any]) -> Architecture:
    """A built-in architecture by name, or one described as a dict (as stored in a lake)."""
    if isinstance(name_or_dict, str):
        try:
            return _BUILTIN[name_or_dict]
        except KeyError:
            raise NoSuchTableError(
                f"unknown architecture {name_or_dict!r}; built in: {sorted(_BUILTIN)} "
                "(other architectures can be given as a JSON description)") from None
    return Architecture.from_dict(name_or_dict)
