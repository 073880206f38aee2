"""ResNeXt for CIFAR (Xie, Girshick, Dollár, Tu, He, "Aggregated Residual Transformations for Deep
Neural Networks", CVPR 2017): the paper's bottleneck with its 3x3 conv split into C groups.

Their appendix A: a 3x3 conv with 64 filters, three stages of three bottleneck blocks on 32/16/8-pixel
maps, global average pool, fc: 9x3 + 2 = 29 layers. A block of template C x d (e.g. 8x64d) is
[1x1, C·d; 3x3 grouped (C groups), C·d; 1x1, 256] in stage 1, every width doubling with each stage
("Width is increased by 2x when the stage changes", Sec. 3.1) and outputs 256/512/1024. Blocks are
post-activation (conv-BN-ReLU, ReLU after the addition, as the ResNet paper's); the stride is in the
grouped 3x3 conv and shortcuts are projections (option B) where dimensions change, as in their
code (facebookresearch/ResNeXt, built on fb.resnet.torch). Attribute names are torchvision's
(``conv1``, ``bn1``, ``conv2`` grouped, ``conv3``, ``downsample``), as in its ``resnext50_32x4d``.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark import ModelError
from benchmark.models.blocks import conv1x1
from benchmark.models.network import ResNet
from benchmark.models.options import ModelOptions, parse_relative_options
from benchmark.models.registry import ModelInfo, register_model

# Appendix A: the first layer has 64 filters; the stages' "planes" are 64/128/256 (outputs 4x that).
WIDTHS = (64, 128, 256)


class ResNeXtBottleneck(nn.Module):
    """Fig. 3(c): 1x1 reduce to C·d, 3x3 grouped conv with C groups, 1x1 restore to 4x ``planes``.

    The group width d scales with the stage: d · planes / 64 (``base_width`` is d in stage 1).
    """

    expansion = 4

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        residual: bool = True,
        cardinality: int,
        base_width: int,
    ) -> None:
        super().__init__()
        if not residual:
            raise ValueError("ResNeXt blocks are residual")
        inner = cardinality * (base_width * planes // 64)
        self.conv1 = conv1x1(in_planes, inner)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, inner, 3, stride=stride, padding=1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = conv1x1(inner, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def resnext_n(depth: int) -> int:
    """Blocks per stage of a ResNeXt-``depth`` for CIFAR (depth = 9n + 2; 29 in the paper)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 11 or (depth - 2) % 9:
        raise ModelError(f"ResNeXt depth {depth!r} is not 9n+2: depth must be 9n+2 (11, 20, 29, 38, ...)")
    return (depth - 2) // 9


def resnext(depth: int, cardinality: int, base_width: int, **options: object) -> nn.Module:
    """ResNeXt-``depth``, ``cardinality`` x ``base_width``d, for CIFAR."""
    n = resnext_n(depth)
    for label, value in (("cardinality", cardinality), ("bottleneck width d", base_width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelError(f"ResNeXt {label} {value!r} is not a positive integer: the paper uses 8x64d and 16x64d")
    parsed = parse_relative_options(_info(depth, cardinality, base_width), options)
    resolved = ModelOptions(shortcut="B", preact=False, num_classes=parsed["num_classes"], bottleneck_stride=None)
    return ResNet(block=ResNeXtBottleneck, blocks_per_stage=(n, n, n), widths=WIDTHS, stem="cifar",
                  options=resolved, block_options={"cardinality": cardinality, "base_width": base_width})


def _info(depth: int, cardinality: int, base_width: int) -> ModelInfo:
    return ModelInfo(
        name=f"resnext{depth}_{cardinality}x{base_width}d", family="cifar", kind="residual", depth=depth,
        default_shortcut=None, block="bottleneck", input_size=(3, 32, 32), num_classes=10,
        options=("num_classes",), architecture="resnext", paper="xie2017", width=base_width,
        cardinality=cardinality,
    )


@register_model(_info(29, 8, 64))
def resnext29_8x64d(**options: object) -> nn.Module:
    """ResNeXt Table 7: 34.4M parameters, 3.65% error (mean of 10 runs)."""
    return resnext(29, 8, 64, **options)


@register_model(_info(29, 16, 64))
def resnext29_16x64d(**options: object) -> nn.Module:
    """ResNeXt Table 7: 68.1M parameters, 3.58% error (mean of 10 runs)."""
    return resnext(29, 16, 64, **options)
