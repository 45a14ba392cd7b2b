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
from dataclasses import dataclass, field, replace
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
MATRIX_KINDS = ("conv2d", "linear")
"""Layer kinds whose weight is a matrix (conv kernels flattened ``out x in*kh*kw``): the ones spectra cover."""
ROLES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
"""Roles of a state_dict tensor.  ``weight`` and ``bias`` are trainable parameters; the rest are
batch-norm state (buffers): kept in the state vector so a state_dict round-trips, never trained."""
TRAINABLE_ROLES = ("weight", "bias")
EXACT_INT_LIMIT = 2**24
"""Integers up to this magnitude are exact in float32: an integer buffer beyond it is refused."""
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
class TensorSpec:
    """One state_dict tensor of an architecture: where it sits in the state vector and what it is.

    ``module`` is the owning module's path (``layer1.0.bn1``), ``kind`` its kind (``conv2d``,
    ``linear``, ``batchnorm``), ``role`` one of :data:`ROLES`, ``dtype`` the dtype a state_dict
    carries (``int64`` for ``num_batches_tracked``; every value is stored as float32, exact).
    """

    key: str
    shape: tuple[int, ...]
    role: str
    module: str
    kind: str
    dtype: str = "float32"
    start: int = 0

    @property
    def size(self) -> int:
        return _prod(self.shape)

    @property
    def stop(self) -> int:
        return self.start + self.size

    @property
    def trainable(self) -> bool:
        return self.role in TRAINABLE_ROLES

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "shape": list(self.shape), "role": self.role,
                               "module": self.module, "kind": self.kind}
        if self.dtype != "float32":
            out["dtype"] = self.dtype
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        spec = cls(key=str(data["key"]), shape=tuple(int(d) for d in data["shape"]), role=str(data["role"]),
                   module=str(data["module"]), kind=str(data["kind"]), dtype=str(data.get("dtype", "float32")))
        if spec.role not in ROLES:
            raise ArchitectureError(f"tensor {spec.key!r} has unknown role {spec.role!r}; expected one of {ROLES}")
        return spec


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
    weight_key: str | None = None
    """state_dict key of the weight (tensor architectures; module lists derive it from the index)."""
    bias_key: str | None = None

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
        """The state_dict keys of weight and bias (the bias key is ``""`` for a layer without one)."""
        if self.weight_key is not None:
            return self.weight_key, self.bias_key or ""
        head = f"{prefix}.{self.module_index}" if prefix else str(self.module_index)  # a bare nn.Sequential
        return f"{head}.weight", f"{head}.bias"


@dataclass(frozen=True)
class Architecture:
    """A network as data.  Build one with :func:`get_architecture`, :func:`infer_architecture` or :meth:`from_dict`.

    Two forms: a *module list* (``modules``: the zoo CNN, inferred conv/linear stacks; keys
    ``<prefix>.<index>.weight``), or a *tensor list* (``tensor_specs``: any state_dict, e.g. a
    ResNet, each tensor with its key, shape, role and owning module).  Both expose the same
    :attr:`tensors` (state vector order) and :attr:`layers` (modules with a weight).
    """

    name: str
    modules: tuple[ModuleSpec, ...] = ()
    input_shape: tuple[int, ...] = (1, 28, 28)
    state_dict_prefix: str = "module_list"
    tensor_specs: tuple[TensorSpec, ...] = ()
    """The tensor list of a tensor architecture (empty for a module list); offsets are assigned here."""
    layers: tuple[Layer, ...] = field(init=False, repr=False, compare=False)
    tensors: tuple[TensorSpec, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "modules", tuple(self.modules))
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        if self.tensor_specs:
            if self.modules:
                raise ArchitectureError("an architecture is either a module list or a tensor list, not both")
            tensors = _place_tensors(self.tensor_specs)
            object.__setattr__(self, "tensor_specs", tensors)
            object.__setattr__(self, "layers", _tensor_layers(tensors))
        else:
            layers = _parse_layers(self.modules)
            object.__setattr__(self, "layers", layers)
            tensors = _module_tensors(layers, self.state_dict_prefix)
        object.__setattr__(self, "tensors", tensors)
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ArchitectureError(f"layer names must be unique, got {names}")
        keys = [t.key for t in tensors]
        if len(set(keys)) != len(keys):
            raise ArchitectureError(f"state_dict keys must be unique, got {keys}")

    # -- shape facts -------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        """Length of the state vector (every stored tensor, batch-norm statistics included)."""
        return self.tensors[-1].stop if self.tensors else 0

    @property
    def n_trainable(self) -> int:
        """Trainable parameters (weights and biases; batch-norm statistics excluded)."""
        return sum(t.size for t in self.tensors if t.trainable)

    @property
    def is_tensor_list(self) -> bool:
        return bool(self.tensor_specs)

    @property
    def boundaries(self) -> tuple[int, ...]:
        """Layer block boundaries, biases included: ``[0, ..., n_params]`` (module lists)."""
        return (0, *(layer.stop for layer in self.layers))

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    @property
    def matrix_layers(self) -> tuple[Layer, ...]:
        """Layers whose weight is a matrix (conv2d, linear): the ones spectra cover."""
        return tuple(layer for layer in self.layers if layer.kind in MATRIX_KINDS)

    @property
    def matrix_layer_names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.matrix_layers)

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].weight_shape[0]

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise NoSuchTableError(f"architecture {self.name!r} has no layer {name!r}; layers: {self.layer_names}")

    def tensor(self, key: str) -> TensorSpec:
        for t in self.tensors:
            if t.key == key:
                return t
        raise NoSuchTableError(f"architecture {self.name!r} has no tensor {key!r}")

    def state_dict_keys(self) -> list[str]:
        return [t.key for t in self.tensors]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """state_dict key -> shape, in state vector order."""
        return {t.key: t.shape for t in self.tensors}

    def trainable_mask(self) -> Any:
        """bool array ``[P]``: True at trainable parameters (weights, biases), False at batch-norm state."""
        import numpy as np

        out = np.zeros(self.n_params, dtype=bool)
        for t in self.tensors:
            out[t.start:t.stop] = t.trainable
        return out

    def locate(self, name: str) -> tuple[int, int, tuple[int, ...]]:
        """Flat ``(start, stop, shape)`` of a tensor key, a layer's weight (``"fc1"``, ``"fc1.weight"``)
        or bias (``"fc1.bias"``); see :meth:`select`."""
        for t in self.tensors:
            if t.key == name:
                return t.start, t.stop, t.shape
        layer_name, part = name, ""
        if name not in self.layer_names:
            layer_name, _, part = name.rpartition(".")
        if part not in ("", "weight", "bias") or layer_name not in self.layer_names:
            raise NoSuchTableError(f"architecture {self.name!r} has no layer or tensor {name!r}; layers: "
                                   f"{self.layer_names[:12]}{' ...' if len(self.layers) > 12 else ''} (a layer's "
                                   "weight by its name, its bias as '<layer>.bias', or any state_dict key)")
        layer = self.layer(layer_name)
        if part == "bias":
            if not layer.bias_size:
                raise NoSuchTableError(f"layer {layer_name!r} of architecture {self.name!r} has no bias")
            return layer.bias_start, layer.stop, layer.bias_shape
        return layer.start, layer.bias_start, layer.weight_shape

    def csv_columns(self) -> list[str]:
        """Weight column names of the CSV zoo: ``weight i`` / ``bias i`` with the flat index
        (a tensor list: ``<role> i`` for every stored value, batch-norm statistics included)."""
        if self.is_tensor_list:
            return [f"{t.role} {i}" for t in self.tensors for i in range(t.start, t.stop)]
        cols: list[str] = []
        for layer in self.layers:
            cols += [f"weight {i}" for i in range(layer.start, layer.bias_start)]
            cols += [f"bias {i}" for i in range(layer.bias_start, layer.stop)]
        return cols

    def param_layer_index(self) -> Any:
        """int array ``[P]``: index into :attr:`layers` of each flat parameter (-1: batch-norm statistics)."""
        import numpy as np

        out = np.full(self.n_params, -1, dtype=np.int16)
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
        """Flat ``[P]`` (or rows ``[n, P]``) -> ``{key: tensor}`` (views, leading ``n`` kept; float32
        values: cast ``int64`` buffers with :attr:`TensorSpec.dtype`, as ``Lake.state_dict`` does)."""
        self.check_flat(flat)
        lead = tuple(flat.shape[:-1])
        return {t.key: flat[..., t.start:t.stop].reshape((*lead, *t.shape)) for t in self.tensors}

    def state_dict_to_flat(self, state_dict: Mapping[str, Any], *, where: str = "state_dict") -> Any:
        """``{key: tensor}`` -> flat vector in state vector order (a new array).

        Raises :class:`ArchitectureError` naming the missing, unexpected or misshapen keys, and
        an integer buffer (``num_batches_tracked``) whose value float32 cannot hold exactly.
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
        for t in self.tensors:
            value = sd[t.key]
            if tuple(value.shape) != t.shape:
                raise ArchitectureError(
                    f"{where}: {t.key!r} has shape {tuple(value.shape)}, architecture {self.name!r} expects {t.shape}")
            if t.dtype != "float32":
                _check_exact_int(value, t.key, where)
            parts.append(value.reshape(-1))
        return _concat(parts)

    def flat_to_layers(self, flat: Any) -> dict[str, Any]:
        """Flat -> ``{layer: weight}`` plus ``{layer.bias: bias}``, each with its natural shape."""
        out: dict[str, Any] = {}
        for layer in self.layers:
            out[layer.name] = self.select(flat, layer.name)
            if layer.bias_size:
                out[f"{layer.name}.bias"] = self.select(flat, f"{layer.name}.bias")
        return out

    def layers_to_flat(self, tensors: Mapping[str, Any]) -> Any:
        """Inverse of :meth:`flat_to_layers` (module lists: every tensor is a layer's weight or bias)."""
        sd = {}
        for layer in self.layers:
            wkey, bkey = layer.keys(self.state_dict_prefix)
            sd[wkey] = tensors[layer.name]
            if layer.bias_size:
                sd[bkey] = tensors[f"{layer.name}.bias"]
        return self.state_dict_to_flat(sd)

    def select(self, flat: Any, name: str) -> Any:
        """One layer's weight (``"fc1"``), bias (``"fc1.bias"``) or any tensor by state_dict key, as a view."""
        start, stop, shape = self.locate(name)
        lead = tuple(flat.shape[:-1])
        return flat[..., start:stop].reshape((*lead, *shape))

    def weight_to_matrix(self, layer: str | Layer, weight: Any) -> Any:
        """Weight ``[..., out, in, kh, kw]`` or ``[..., out, in]`` -> matrix ``[..., out, in*kh*kw]``."""
        spec = self.matrix_layer(layer) if isinstance(layer, str) else layer
        lead = tuple(weight.shape[: weight.ndim - len(spec.weight_shape)])
        return weight.reshape(*lead, *spec.matrix_shape)

    def matrix_to_weight(self, layer: str | Layer, matrix: Any) -> Any:
        spec = self.matrix_layer(layer) if isinstance(layer, str) else layer
        lead = tuple(matrix.shape[:-2])
        return matrix.reshape(*lead, *spec.weight_shape)

    def layer_matrix(self, flat: Any, name: str) -> Any:
        """Flat rows -> one layer's weight matrix ``[n, out, in*kh*kw]`` (a view)."""
        layer = self.matrix_layer(name)
        return self.weight_to_matrix(layer, self.select(flat, layer.name))

    def matrix_layer(self, name: str) -> Layer:
        """The conv2d/linear layer named ``name`` (or whose weight key is ``name``).

        Raises
        ------
        ArchitectureError
            For a layer whose weight is not a matrix (batch norm: a vector), with the reason.
        """
        for layer in self.layers:
            if name in (layer.name, layer.weight_key, f"{layer.name}.weight"):
                if layer.kind not in MATRIX_KINDS:
                    raise ArchitectureError(f"layer {layer.name!r} is a {layer.kind} layer: its weight is a vector "
                                            f"of {layer.weight_size} values, not a matrix")
                return layer
        return self.layer(name)  # raises, naming the layers

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        if self.is_tensor_list:
            return {"name": self.name, "input_shape": list(self.input_shape),
                    "tensors": [t.to_dict() for t in self.tensors]}
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "state_dict_prefix": self.state_dict_prefix,
            "modules": [m.to_dict() for m in self.modules],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Architecture:
        try:
            if "tensors" in data:
                return cls(name=data["name"], input_shape=tuple(data.get("input_shape", ())),
                           tensor_specs=tuple(TensorSpec.from_dict(t) for t in data["tensors"]))
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


def _module_tensors(layers: Sequence[Layer], prefix: str) -> tuple[TensorSpec, ...]:
    out: list[TensorSpec] = []
    for layer in layers:
        wkey, bkey = layer.keys(prefix)
        out.append(TensorSpec(wkey, layer.weight_shape, "weight", layer.name, layer.kind, start=layer.start))
        out.append(TensorSpec(bkey, layer.bias_shape, "bias", layer.name, layer.kind, start=layer.bias_start))
    return tuple(out)


def _place_tensors(specs: Sequence[TensorSpec]) -> tuple[TensorSpec, ...]:
    """The specs with offsets in the given order (the state vector is their concatenation)."""
    out, offset = [], 0
    for spec in specs:
        out.append(replace(spec, start=offset))
        offset += spec.size
    return tuple(out)


def _tensor_layers(tensors: Sequence[TensorSpec]) -> tuple[Layer, ...]:
    """A layer per module holding a weight; its bias must follow the weight (as torch orders them)."""
    by_module: dict[str, dict[str, TensorSpec]] = {}
    for t in tensors:
        by_module.setdefault(t.module, {})[t.role] = t
    layers = []
    for index, (module, parts) in enumerate(by_module.items()):
        weight, bias = parts.get("weight"), parts.get("bias")
        if weight is None:
            raise ArchitectureError(f"module {module!r} has tensors {sorted(parts)} but no weight")
        if bias is not None and bias.start != weight.stop:
            raise ArchitectureError(f"module {module!r}: its bias {bias.key!r} does not follow its weight")
        layers.append(Layer(name=module, kind=weight.kind, module_index=index, weight_shape=weight.shape,
                            bias_shape=bias.shape if bias is not None else (0,), start=weight.start,
                            weight_key=weight.key, bias_key=bias.key if bias is not None else None))
    return tuple(layers)


def _check_exact_int(value: Any, key: str, where: str) -> None:
    """An integer buffer must hold integers float32 represents exactly (``|v| <= 2**24``)."""
    import numpy as np

    arr = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    if arr.dtype.kind not in "iub":
        raise ArchitectureError(f"{where}: {key!r} is {arr.dtype}, expected an integer buffer")
    if arr.size and np.abs(arr.astype(np.int64)).max() > EXACT_INT_LIMIT:
        raise ArchitectureError(f"{where}: {key!r} holds {int(np.abs(arr).max())}, beyond {EXACT_INT_LIMIT} "
                                "(float32 storage would not keep it exactly)")


def _prod(shape: Sequence[int]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


def _concat(parts: list[Any]) -> Any:
    first = parts[0]
    if type(first).__module__.startswith("torch"):
        import torch

        if any(p.dtype != parts[0].dtype for p in parts):  # integer buffers: stored as float32 values
            return torch.cat([p.detach().reshape(-1).to(torch.float32) for p in parts])
        return torch.cat([p.detach().reshape(-1) for p in parts])
    import numpy as np

    arrays = [np.asarray(p).reshape(-1) for p in parts]
    if any(a.dtype != arrays[0].dtype for a in arrays):
        return np.concatenate([a.astype(np.float32, copy=False) for a in arrays])
    return np.concatenate(arrays)


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
    """An architecture from a state_dict's keys and shapes (in state_dict order).

    * CNN-s when they are exactly its own.
    * A module list when keys are ``<prefix>.<index>.weight`` / ``.bias`` of one prefix with a
      bias each, square-kernel conv2d and linear layers (named ``conv1``, ``fc1`` ...); indices
      between them become ``opaque`` modules (pooling and activations leave no trace).
    * Otherwise a tensor list (any naming, e.g. a ResNet): each key is ``<module>.<role>``; a
      module with a 4-D weight is a conv2d, 2-D a linear layer (bias optional), and one with
      ``running_mean`` and ``running_var`` a batch norm (its weight, bias, statistics and
      ``num_batches_tracked`` are stored; the statistics have their roles, so analyses can
      take trainable tensors only).  Layers keep their module paths as names.

    The name is ``inferred-<digest of the description>``, so two zoos of one shape share it.

    Raises
    ------
    ArchitectureError
        Naming the key whose module kind cannot be told from a state_dict (a vector weight
        without running statistics, a 3-D or 5-D weight, a bias of the wrong length, a
        key with another role).
    """
    given = {k.removeprefix("_orig_mod."): tuple(int(d) for d in v) for k, v in shapes.items()}
    if given == CNN_S.param_shapes():
        return CNN_S
    if not given:
        raise ArchitectureError(f"{where}: an empty state_dict has no architecture")
    modules = _module_list(given, where)
    if modules is not None:
        prefix, specs = modules
        return Architecture(name=_digest_name([m.to_dict() for m in specs]), modules=specs, input_shape=(),
                            state_dict_prefix=prefix)
    specs_t = _tensor_list(given, where)
    return Architecture(name=_digest_name([t.to_dict() for t in specs_t]), input_shape=(), tensor_specs=specs_t)


def _digest_name(body: Any) -> str:
    import hashlib

    return f"inferred-{hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]}"


def _module_list(given: Mapping[str, tuple[int, ...]], where: str) -> tuple[str, tuple[ModuleSpec, ...]] | None:
    """The module-list form, or None when the keys are not ``<prefix>.<index>.weight/.bias`` conv/linear pairs."""
    parsed: dict[int, dict[str, tuple[int, ...]]] = {}
    prefixes = set()
    for key, shape in given.items():
        head, _, part = key.rpartition(".")
        prefix, _, index = head.rpartition(".")
        if part not in ("weight", "bias") or not index.isdigit():
            return None
        prefixes.add(prefix)
        parsed.setdefault(int(index), {})[part] = shape
    if len(prefixes) != 1:
        return None
    for parts in parsed.values():
        weight, bias = parts.get("weight"), parts.get("bias")
        if weight is None or bias is None or bias != weight[:1] or not (
                len(weight) == 2 or len(weight) == 4 and weight[2] == weight[3]):
            return None
    modules: list[ModuleSpec] = []
    counts = {"conv2d": 0, "linear": 0}
    for index in range(max(parsed) + 1):
        modules.append(_infer_module(parsed[index], counts) if index in parsed else ModuleSpec("opaque"))
    return prefixes.pop(), tuple(modules)


def _infer_module(parts: Mapping[str, tuple[int, ...]], counts: dict[str, int]) -> ModuleSpec:
    weight = parts["weight"]
    if len(weight) == 4:
        counts["conv2d"] += 1
        return ModuleSpec("conv2d", f"conv{counts['conv2d']}",
                          {"in_channels": weight[1], "out_channels": weight[0], "kernel_size": weight[2]})
    counts["linear"] += 1
    return ModuleSpec("linear", f"fc{counts['linear']}", {"in_features": weight[1], "out_features": weight[0]})


def _tensor_list(given: Mapping[str, tuple[int, ...]], where: str) -> tuple[TensorSpec, ...]:
    grouped: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {}
    for key, shape in given.items():
        module, _, role = key.rpartition(".")
        if not module or role not in ROLES:
            raise ArchitectureError(
                f"{where}: cannot infer an architecture from key {key!r}: understood are <module>.weight/.bias of "
                "conv2d, linear and batch-norm modules and a batch norm's running_mean, running_var, "
                "num_batches_tracked")
        grouped.setdefault(module, {})[role] = (key, shape)
    kinds = {module: _module_kind(parts, where) for module, parts in grouped.items()}
    out = []
    for key, shape in given.items():
        module, _, role = key.rpartition(".")
        out.append(TensorSpec(key, shape, role, module, kinds[module],
                              "int64" if role == "num_batches_tracked" else "float32"))
    return tuple(out)


def _module_kind(parts: Mapping[str, tuple[str, tuple[int, ...]]], where: str) -> str:
    """conv2d, linear or batchnorm from one module's tensors; refuses what a state_dict cannot tell."""
    def key(role: str) -> str:
        return parts[role][0]

    weight = parts["weight"][1] if "weight" in parts else None
    if "running_mean" in parts or "running_var" in parts:
        for role in ("running_mean", "running_var", "weight", "bias"):
            if role not in parts:
                some = key(next(iter(parts)))
                raise ArchitectureError(f"{where}: module of {some!r} has batch-norm statistics but no {role!r}: only "
                                        "affine batch norms with both running statistics are understood")
        width = parts["running_mean"][1]
        for role in ("running_var", "weight", "bias"):
            if parts[role][1] != width or len(width) != 1:
                raise ArchitectureError(f"{where}: {key(role)!r} has shape {parts[role][1]}, its batch norm's "
                                        f"running_mean has {width}")
        if "num_batches_tracked" in parts and parts["num_batches_tracked"][1] != ():
            raise ArchitectureError(f"{where}: {key('num_batches_tracked')!r} has shape "
                                    f"{parts['num_batches_tracked'][1]}, expected a scalar")
        return "batchnorm"
    if "num_batches_tracked" in parts:
        raise ArchitectureError(f"{where}: {key('num_batches_tracked')!r} without running statistics beside it")
    if weight is None:
        raise ArchitectureError(f"{where}: {key(next(iter(parts)))!r} has no weight beside it")
    if len(weight) not in (2, 4):
        what = ("a vector weight without running statistics (LayerNorm, GroupNorm or a batch norm tracking none "
                "cannot be told apart from a state_dict)" if len(weight) == 1
                else f"a {len(weight)}-D weight is not a conv2d (4-D) or linear (2-D) layer")
        raise ArchitectureError(f"{where}: {key('weight')!r} has shape {weight}: {what}")
    if "bias" in parts and parts["bias"][1] != weight[:1]:
        raise ArchitectureError(f"{where}: {key('bias')!r} has shape {parts['bias'][1]}, its weight "
                                f"{key('weight')!r} has {weight[0]} outputs")
    return "conv2d" if len(weight) == 4 else "linear"


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


def same_layout(a: Architecture, b: Architecture) -> bool:
    """Whether flat vectors of ``a`` and ``b`` line up value for value: the same tensors (shape,
    role, kind) in the same order, whatever the names (an inferred copy of CNN-s lines up with it).

    Rows of two zoos may be stacked, or compared position by position, only when this holds.
    """
    if a == b:
        return True
    return [(t.shape, t.role, t.kind) for t in a.tensors] == [(t.shape, t.role, t.kind) for t in b.tensors]


def describe_zoos(archs: Mapping[str, Architecture]) -> str:
    """``zoo 'a' (cnn-s, 2,464 parameters), zoo 'b' (cnn-m, 3,766 parameters)``: for messages refusing a mix."""
    return ", ".join(f"zoo {zoo!r} ({arch.name}, {arch.n_params:,} parameters)" for zoo, arch in archs.items())
