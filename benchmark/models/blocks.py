"""Building blocks: basic (two 3x3 convs) and bottleneck (1x1, 3x3, 1x1), each in the paper's
post-activation form and in the pre-activation form of He et al. 2016, "Identity Mappings in Deep
Residual Networks" (ECCV), Fig. 4(e).

``residual=False`` gives the plain net's block (Section 3.3, "Plain Network"): the same stack of
layers without the shortcut, so a plain net has exactly the layers and parameters of its
option-A twin. ``downsample`` is the block's shortcut (see ``shortcuts``); None is the identity.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.models.shortcuts import ProjectionShortcut


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    # No bias: every conv is followed by BN, whose beta makes a bias redundant (Section 3.4).
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def _check_shortcut(residual: bool, downsample: nn.Module | None) -> None:
    if not residual and downsample is not None:
        raise ValueError("plain blocks have no shortcut")


class BasicBlock(nn.Module):
    """Fig. 5 left: 3x3 conv-BN-ReLU, 3x3 conv-BN, add the shortcut, ReLU (Eqn. 1: y = F(x) + x).

    BN comes right after each conv and before the activation (Section 3.4).
    """

    expansion = 1

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        residual: bool = True,
    ) -> None:
        super().__init__()
        _check_shortcut(residual, downsample)
        self.residual = residual
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(nn.Module):
    """Fig. 5 right: 1x1 (reduce) - 3x3 - 1x1 (restore, 4x wider), each followed by BN, for the
    50/101/152-layer nets (Section 4.1, "Deeper Bottleneck Architectures").

    ``stride_in`` places a downsampling block's stride: "1x1" in the first 1x1 conv, as the
    paper's models do (and Table 1's FLOPs count), or "3x3" as torchvision's "v1.5" does.
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
        stride_in: str = "1x1",
    ) -> None:
        super().__init__()
        _check_shortcut(residual, downsample)
        self.residual = residual
        stride1, stride3 = (stride, 1) if stride_in == "1x1" else (1, stride)
        self.conv1 = conv1x1(in_planes, planes, stride1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class PreActBasicBlock(nn.Module):
    """Identity Mappings, Fig. 4(e): BN-ReLU-3x3 conv, BN-ReLU-3x3 conv, add; no ReLU after the
    addition, so the shortcut path stays a clean identity from block to block.

    A projection shortcut (options B/C) reads the pre-activated input, sharing the first BN-ReLU,
    as the authors' pre-activation code does; an identity or option-A shortcut reads x itself.
    """

    expansion = 1

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        residual: bool = True,
    ) -> None:
        super().__init__()
        _check_shortcut(residual, downsample)
        self.residual = residual
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        shortcut = _preact_shortcut(self.downsample, x, out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + shortcut if self.residual else out


class PreActBottleneck(nn.Module):
    """Identity Mappings, Fig. 4(e) with the bottleneck of Fig. 5 right: BN-ReLU-1x1,
    BN-ReLU-3x3, BN-ReLU-1x1 (4x wider), add."""

    expansion = 4

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        residual: bool = True,
        stride_in: str = "1x1",
    ) -> None:
        super().__init__()
        _check_shortcut(residual, downsample)
        self.residual = residual
        stride1, stride3 = (stride, 1) if stride_in == "1x1" else (1, stride)
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv1x1(in_planes, planes, stride1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride3)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        shortcut = _preact_shortcut(self.downsample, x, out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + shortcut if self.residual else out


def _preact_shortcut(downsample: nn.Module | None, x: torch.Tensor, activated: torch.Tensor) -> torch.Tensor:
    if downsample is None:
        return x
    # A projection feeds on the activated input; option A stays an identity of x.
    return downsample(activated) if isinstance(downsample, ProjectionShortcut) else downsample(x)


def block_type(block: str, preact: bool) -> type[nn.Module]:
    """The block class for ``block`` ("basic" | "bottleneck") in post- or pre-activation form."""
    if block == "basic":
        return PreActBasicBlock if preact else BasicBlock
    if block == "bottleneck":
        return PreActBottleneck if preact else Bottleneck
    raise ValueError(f"unknown block {block!r}")

