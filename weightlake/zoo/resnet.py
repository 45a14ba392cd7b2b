"""ResNet state_dicts in torchvision's layout, for tests and benchmarks (torchvision is not a dependency).

:func:`resnet_shapes` gives the keys and shapes of a basic-block ResNet in torchvision's
order (``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``layerK.0.downsample.0/1`` ... ``fc``);
``resnet_shapes()`` is resnet18's (11,689,512 trainable parameters).  :func:`build_resnet`
is the same network as a torch module (its ``state_dict`` has exactly these keys), and
:func:`random_state_dict` draws weights at the scale of each layer's fan-in, with batch-norm
statistics and ``num_batches_tracked`` as a trained model's checkpoint carries them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

RESNET18_WIDTHS = (64, 128, 256, 512)
RESNET18_BLOCKS = (2, 2, 2, 2)


def resnet_shapes(widths: Sequence[int] = RESNET18_WIDTHS, blocks: Sequence[int] = RESNET18_BLOCKS, *,
                  in_channels: int = 3, num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """state_dict key -> shape of a basic-block ResNet, in torchvision's order."""
    out: dict[str, tuple[int, ...]] = {"conv1.weight": (widths[0], in_channels, 7, 7)}
    out.update(_bn("bn1", widths[0]))
    inplanes = widths[0]
    for stage, (width, count) in enumerate(zip(widths, blocks, strict=True), 1):
        for b in range(count):
            head = f"layer{stage}.{b}"
            stride = 2 if stage > 1 and b == 0 else 1
            out[f"{head}.conv1.weight"] = (width, inplanes, 3, 3)
            out.update(_bn(f"{head}.bn1", width))
            out[f"{head}.conv2.weight"] = (width, width, 3, 3)
            out.update(_bn(f"{head}.bn2", width))
            if stride != 1 or inplanes != width:
                out[f"{head}.downsample.0.weight"] = (width, inplanes, 1, 1)
                out.update(_bn(f"{head}.downsample.1", width))
            inplanes = width
    out["fc.weight"] = (num_classes, inplanes)
    out["fc.bias"] = (num_classes,)
    return out


def _bn(name: str, width: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (width,), f"{name}.bias": (width,), f"{name}.running_mean": (width,),
            f"{name}.running_var": (width,), f"{name}.num_batches_tracked": ()}


def random_state_dict(shapes: dict[str, tuple[int, ...]], rng: np.random.Generator,
                      batches: int = 1000) -> dict[str, np.ndarray]:
    """Weights for ``shapes``: Kaiming-uniform at each fan-in, batch norms near 1/0, positive variances."""
    out: dict[str, np.ndarray] = {}
    for key, shape in shapes.items():
        role = key.rsplit(".", 1)[-1]
        if role == "num_batches_tracked":
            out[key] = np.array(batches, dtype=np.int64)
        elif role == "running_var":
            out[key] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        elif len(shape) == 1:
            centre = 1.0 if role == "weight" else 0.0
            out[key] = (centre + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            bound = float(np.sqrt(6.0 / max(1, int(np.prod(shape[1:])))))
            out[key] = rng.uniform(-bound, bound, shape).astype(np.float32)
    return out


def build_resnet(widths: Sequence[int] = RESNET18_WIDTHS, blocks: Sequence[int] = RESNET18_BLOCKS, *,
                 in_channels: int = 3, num_classes: int = 1000) -> Any:
    """The basic-block ResNet as a torch module (torchvision's structure and key names)."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self, inplanes: int, width: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, width, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU()
            self.downsample = None
            if stride != 1 or inplanes != width:
                self.downsample = nn.Sequential(nn.Conv2d(inplanes, width, 1, stride, bias=False),
                                                nn.BatchNorm2d(width))

        def forward(self, x: Any) -> Any:
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    class ResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(widths[0])
            self.relu = nn.ReLU()
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            inplanes = widths[0]
            for stage, (width, count) in enumerate(zip(widths, blocks, strict=True), 1):
                stage_blocks = []
                for b in range(count):
                    stage_blocks.append(Block(inplanes, width, 2 if stage > 1 and b == 0 else 1))
                    inplanes = width
                setattr(self, f"layer{stage}", nn.Sequential(*stage_blocks))
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(inplanes, num_classes)
            self.stages = len(widths)

        def forward(self, x: Any) -> Any:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            for stage in range(1, self.stages + 1):
                x = getattr(self, f"layer{stage}")(x)
            return self.fc(self.avgpool(x).flatten(1))

    return ResNet()
