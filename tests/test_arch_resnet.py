"""ResNet architectures as data: inferred from a torch ResNet's state_dict, every tensor with its role,
state_dicts round-tripped exactly (batch-norm statistics and num_batches_tracked included)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weightlake.arch import Architecture, get_architecture, infer_architecture
from weightlake.errors import ArchitectureError
from weightlake.zoo.resnet import build_resnet, random_state_dict, resnet_shapes

NARROW = dict(widths=(4, 8, 8, 16), blocks=(2, 2, 2, 2), num_classes=10)


def _trained_like(net: torch.nn.Module) -> torch.nn.Module:
    """A forward pass in train mode moves the running statistics and counts batches, as training does."""
    torch.manual_seed(0)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(4, 3, 32, 32))
    return net


def test_resnet18_shapes_are_torchvisions():
    shapes = resnet_shapes()
    trainable = sum(int(np.prod(s)) for k, s in shapes.items() if k.rsplit(".", 1)[-1] in ("weight", "bias"))
    assert trainable == 11_689_512  # torchvision resnet18
    assert len(shapes) == 122 and list(shapes)[:3] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert shapes["layer4.1.conv2.weight"] == (512, 512, 3, 3) and shapes["layer2.0.downsample.0.weight"] == (128, 64, 1, 1)
    net = build_resnet()
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == shapes  # same keys, same order


def test_a_resnet_is_inferred_with_roles_and_kinds():
    net = build_resnet(**NARROW)
    arch = infer_architecture({k: tuple(v.shape) for k, v in net.state_dict().items()})
    assert arch.is_tensor_list and arch.name.startswith("inferred-")
    assert arch.n_trainable == sum(p.numel() for p in net.parameters())
    assert arch.n_params == sum(v.numel() for v in net.state_dict().values())
    kinds = {layer.name: layer.kind for layer in arch.layers}
    assert kinds["conv1"] == "conv2d" and kinds["bn1"] == "batchnorm" and kinds["fc"] == "linear"
    assert kinds["layer2.0.downsample.0"] == "conv2d" and kinds["layer2.0.downsample.1"] == "batchnorm"
    assert len(arch.matrix_layers) == 21  # 20 convs (17 + 3 downsample) and fc
    roles = {t.key: t.role for t in arch.tensors}
    assert roles["layer1.0.bn1.running_var"] == "running_var" and roles["fc.bias"] == "bias"
    mask = arch.trainable_mask()
    assert mask.sum() == arch.n_trainable
    t = arch.tensor("bn1.running_mean")
    assert not mask[t.start:t.stop].any()
    assert Architecture.from_dict(arch.to_dict()) == arch and get_architecture(arch.to_dict()).tensors == arch.tensors


def test_state_dict_round_trips_exactly_buffers_included():
    net = _trained_like(build_resnet(**NARROW))
    sd = net.state_dict()
    assert int(sd["bn1.num_batches_tracked"]) == 3
    arch = infer_architecture({k: tuple(v.shape) for k, v in sd.items()})
    flat = arch.state_dict_to_flat(sd)
    assert flat.dtype == torch.float32 and flat.shape == (arch.n_params,)
    back = arch.flat_to_state_dict(flat)
    for key, value in sd.items():
        got = back[key].to(getattr(torch, arch.tensor(key).dtype))
        assert got.dtype == value.dtype and torch.equal(got, value), key
    fresh = build_resnet(**NARROW)
    fresh.load_state_dict({k: back[k].to(sd[k].dtype) for k in sd})
    fresh.eval(), net.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(fresh(x), net(x))
    assert arch.select(flat, "layer1.0.bn1.running_mean").shape == (NARROW["widths"][0],)
    assert arch.layer_matrix(flat[None], "layer1.0.conv1.weight").shape == (1, 4, 36)
    with pytest.raises(ArchitectureError, match="batchnorm layer"):
        arch.layer_matrix(flat[None], "layer1.0.bn1")


def test_numpy_state_dicts_and_a_count_float32_cannot_hold():
    shapes = resnet_shapes(**NARROW)
    arch = infer_architecture(shapes)
    sd = random_state_dict(shapes, np.random.default_rng(0), batches=12345)
    flat = arch.state_dict_to_flat(sd)
    assert flat.dtype == np.float32 and flat[arch.tensor("bn1.num_batches_tracked").start] == 12345
    sd["bn1.num_batches_tracked"] = np.array(2**24 + 1, dtype=np.int64)
    with pytest.raises(ArchitectureError, match="'bn1.num_batches_tracked' holds 16777217"):
        arch.state_dict_to_flat(sd)
