"""Architectures inferred from state_dicts: CNN-s recognised, conv/linear stacks described, the rest refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from weightlake.arch import CNN_S, Architecture, infer_architecture
from weightlake.errors import ArchitectureError


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 8, 3), nn.Flatten(),
                         nn.Linear(8 * 5 * 5, 32), nn.Tanh(), nn.Linear(32, 10))


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_cnn_s_is_recognised_by_name():
    assert infer_architecture(CNN_S.param_shapes()) is CNN_S


def test_a_conv_linear_stack_round_trips():
    net = _net()
    arch = infer_architecture(_shapes(net))
    assert arch.name.startswith("inferred-") and arch.layer_names == ("conv1", "conv2", "fc1", "fc2")
    assert arch.n_params == sum(p.numel() for p in net.parameters())
    assert [m.kind for m in arch.modules] == ["conv2d", "opaque", "opaque", "conv2d", "opaque", "linear", "opaque",
                                              "linear"]
    flat = arch.state_dict_to_flat(net.state_dict())
    torch.testing.assert_close(flat, torch.cat([p.detach().reshape(-1) for p in net.parameters()]))
    back = arch.flat_to_state_dict(flat)
    assert all(torch.equal(back[k], v) for k, v in net.state_dict().items())
    assert Architecture.from_dict(arch.to_dict()) == arch  # stored in the manifest as data
    assert infer_architecture(_shapes(_net())).name == arch.name  # same shapes, same name


def test_an_inferred_architecture_does_not_pretend_to_build_a_module():
    from weightlake.zoo.cnn import build_cnn

    arch = infer_architecture(_shapes(_net()))
    with pytest.raises(ArchitectureError, match="unknown kind"):
        build_cnn(arch, "relu", np.zeros(arch.n_params, dtype=np.float32))


@pytest.mark.parametrize(("module", "match"), [
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.LayerNorm(4)), r"'1\.weight'.*vector weight"),
    (nn.Sequential(nn.Conv1d(3, 4, 3)), r"'0\.weight'.*3-D weight"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, affine=False)), r"no 'weight'"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)), "vector weight"),
    (nn.MultiheadAttention(8, 2), "in_proj_weight"),
])
def test_other_state_dicts_are_refused_with_the_key(module, match):
    with pytest.raises(ArchitectureError, match=match):
        infer_architecture(_shapes(module))


def test_a_bias_of_the_wrong_length_is_refused_with_its_key():
    shapes = {"a.weight": (4, 3, 3, 3), "a.bias": (5,)}
    with pytest.raises(ArchitectureError, match="'a.bias' has shape"):
        infer_architecture(shapes)


def test_batch_norm_and_non_square_kernels_are_tensor_lists():
    net = nn.Sequential(nn.Conv2d(3, 4, (3, 1), bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 8, 2))
    arch = infer_architecture(_shapes(net))
    assert arch.is_tensor_list and arch.layer_names == ("0", "1", "3")
    assert [layer.kind for layer in arch.layers] == ["conv2d", "batchnorm", "linear"]
    assert arch.matrix_layer_names == ("0", "3") and arch.layer("0").matrix_shape == (4, 9)
    assert arch.n_trainable == sum(p.numel() for p in net.parameters())
    assert arch.n_params == sum(v.numel() for v in net.state_dict().values())
    assert arch.tensor("1.num_batches_tracked").dtype == "int64" and not arch.tensor("1.running_var").trainable
