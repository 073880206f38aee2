"""Wide Residual Networks, WRN-d-k (Zagoruyko & Komodakis, BMVC 2016): the pre-activation CIFAR
ResNet made k times wider and much shallower.

Their Table 1: conv1 [3x3, 16]; conv2 [3x3, 16k; 3x3, 16k] x N on 32x32; conv3 [3x3, 32k] x N on
16x16; conv4 [3x3, 64k] x N on 8x8; BN-ReLU, average pool, fc. Depth d = 6N + 4. Each block is
BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 plus the shortcut; where the width or the map size
changes, the shortcut is a 1x1 conv (no BN) of the block's pre-activated input, as in the authors'
code (szagoruyko/wide-residual-networks). Dropout between the convs is their Section 2's option
("dropout in residual block", 0.3 on CIFAR); off by default, as in their Table 5.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark import ModelError
from benchmark.models.blocks import conv1x1, conv3x3
from benchmark.models.network import init_weights
from benchmark.models.options import parse_relative_options
from benchmark.models.registry import ModelInfo, register_model


class WideBasicBlock(nn.Module):
    """A pre-activation basic block with optional dropout between its two 3x3 convs."""

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.dropout = nn.Dropout(dropout) if dropout else None
        self.conv2 = conv3x3(planes, planes)
        self.relu = nn.ReLU(inplace=True)
        changes = stride != 1 or in_planes != planes
        self.downsample = conv1x1(in_planes, planes, stride) if changes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(activated)
        out = self.relu(self.bn2(self.conv1(activated)))
        if self.dropout is not None:
            out = self.dropout(out)
        return self.conv2(out) + shortcut


class WideResNet(nn.Module):
    """WRN-d-k. Attribute names follow ``network.ResNet`` (conv1, layer1..3, bn_final, fc)."""

    def __init__(self, depth: int, widen: int, *, num_classes: int, dropout: float) -> None:
        super().__init__()
        n = wrn_n(depth)
        self.conv1 = conv3x3(3, 16)
        self.layer1 = _stage(16, 16 * widen, n, 1, dropout)
        self.layer2 = _stage(16 * widen, 32 * widen, n, 2, dropout)
        self.layer3 = _stage(32 * widen, 64 * widen, n, 2, dropout)
        self.bn_final = nn.BatchNorm2d(64 * widen)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64 * widen, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = self.avgpool(self.relu(self.bn_final(x)))
        return self.fc(torch.flatten(x, 1))


def _stage(in_planes: int, planes: int, n: int, stride: int, dropout: float) -> nn.Sequential:
    """n blocks; the first one changes the width (and with stride 2 halves the map)."""
    return nn.Sequential(*(WideBasicBlock(in_planes if i == 0 else planes, planes, stride if i == 0 else 1, dropout)
                           for i in range(n)))


def wrn_n(depth: int) -> int:
    """N, the blocks per stage of WRN-``depth`` (depth = 6N + 4)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ModelError(f"WRN depth {depth!r} is not 6n+4: depth must be 6n+4 (10, 16, 22, 28, 40, ...)")
    return (depth - 4) // 6


def wide_resnet(depth: int, widen: int, **options: object) -> nn.Module:
    """WRN-``depth``-``widen``: any depth 6n+4 and widening factor k >= 1."""
    wrn_n(depth)
    if isinstance(widen, bool) or not isinstance(widen, int) or widen < 1:
        raise ModelError(f"WRN widening factor {widen!r} is not a positive integer: k must be 1, 2, 4, 8, 10, ...")
    parsed = parse_relative_options(_info(depth, widen), options)
    return WideResNet(depth, widen, num_classes=parsed["num_classes"], dropout=parsed["dropout"])


def _info(depth: int, widen: int) -> ModelInfo:
    return ModelInfo(
        name=f"wrn{depth}_{widen}", family="cifar", kind="residual", depth=depth, default_shortcut=None,
        block="basic", input_size=(3, 32, 32), num_classes=10, options=("dropout", "num_classes"),
        architecture="wide_resnet", paper="zagoruyko2016", width=widen,
    )


@register_model(_info(16, 4))
def wrn16_4(**options: object) -> nn.Module:
    """WRN Table 6: 2.7M parameters, 5.02% error (5.24% with dropout)."""
    return wide_resnet(16, 4, **options)


@register_model(_info(16, 8))
def wrn16_8(**options: object) -> nn.Module:
    """WRN Table 5: 11.0M parameters, 4.27% error."""
    return wide_resnet(16, 8, **options)


@register_model(_info(28, 10))
def wrn28_10(**options: object) -> nn.Module:
    """WRN Tables 5-6: 36.5M parameters, 4.00% error (3.89% with dropout 0.3)."""
    return wide_resnet(28, 10, **options)


@register_model(_info(40, 4))
def wrn40_4(**options: object) -> nn.Module:
    """WRN Table 5: 8.9M parameters, 4.53% error (ResNet-1001's accuracy at 1/25 of the depth)."""
    return wide_resnet(40, 4, **options)
