"""The network both families share: a stem, stages of blocks, global average pool, fc.

Attribute names follow torchvision's ``ResNet`` (conv1, bn1, relu, maxpool, layer1..layerK,
avgpool, fc; blocks hold conv/bn pairs and ``downsample``), so option-B ImageNet state dicts
are interchangeable with torchvision's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from benchmark.models.blocks import block_type, conv3x3
from benchmark.models.options import ModelOptions
from benchmark.models.shortcuts import make_shortcut


def make_stage(
    block: type[nn.Module],
    in_planes: int,
    planes: int,
    n: int,
    stride: int,
    options: ModelOptions,
    block_options: Mapping[str, object] | None = None,
) -> nn.Sequential:
    """One stage of ``n`` blocks at one feature-map size. Its first block subsamples with a
    stride-2 conv (Section 3.3: "if the feature map size is halved, the number of filters is
    doubled") and is the only one whose shortcut may change dimensions. ``block_options`` go to
    every block (a relative's gate bias or cardinality)."""
    residual = options.shortcut is not None
    extra = {} if options.bottleneck_stride is None else {"stride_in": options.bottleneck_stride}
    extra.update(block_options or {})
    out_planes = planes * block.expansion
    blocks = []
    for index in range(n):
        block_in, block_stride = (in_planes, stride) if index == 0 else (out_planes, 1)
        shortcut = make_shortcut(options.shortcut, block_in, out_planes, block_stride, options.option_a_padding)
        blocks.append(block(block_in, planes, block_stride, shortcut, residual=residual, **extra))
    return nn.Sequential(*blocks)


class ResNet(nn.Module):
    """A plain or residual net of ``blocks_per_stage`` blocks with ``widths`` filters per stage.

    ``stem="cifar"`` is Section 4.2's first layer, a 3x3 conv with 16 filters at 32x32;
    ``stem="imagenet"`` is Table 1's conv1 (7x7, 64, stride 2) + 3x3 max pool, stride 2. The
    first stage keeps the stem's resolution; every later one halves it.

    ``block`` names one of the paper's blocks ("basic" | "bottleneck", see ``block_type``) or is
    a block class of a relative with the same constructor (the highway-gated basic block, the
    ResNeXt bottleneck), which ``block_options`` configure.
    """

    def __init__(
        self,
        *,
        block: str | type[nn.Module],
        blocks_per_stage: Sequence[int],
        widths: Sequence[int],
        stem: str,
        options: ModelOptions,
        block_options: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__()
        block_cls = block if isinstance(block, type) else block_type(block, options.preact)
        if stem == "cifar":
            self.conv1 = conv3x3(3, widths[0])
            self.maxpool = None
        elif stem == "imagenet":
            self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            raise ValueError(f"unknown stem {stem!r}")
        # Pre-activation CIFAR nets go straight from conv1 into the first block's BN-ReLU
        # (Identity Mappings, Section 5); everywhere else conv1 is followed by BN-ReLU.
        self.bn1 = None if options.preact and stem == "cifar" else nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)

        self.stage_names: tuple[str, ...] = tuple(f"layer{i + 1}" for i in range(len(widths)))
        in_planes = widths[0]
        for index, (name, planes, n) in enumerate(zip(self.stage_names, widths, blocks_per_stage)):
            stride = 1 if index == 0 else 2
            self.add_module(name, make_stage(block_cls, in_planes, planes, n, stride, options, block_options))
            in_planes = planes * block_cls.expansion
        # Pre-activation blocks end on an addition, so the net ends with BN-ReLU before pooling.
        self.bn_final = nn.BatchNorm2d(in_planes) if options.preact else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, options.num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if self.bn1 is not None:
            x = self.relu(self.bn1(x))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        if self.bn_final is not None:
            x = self.relu(self.bn_final(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def init_weights(model: nn.Module) -> None:
    """He (MSRA) init for convs, as the paper (Section 3.4) takes from He et al. 2015 ("Delving
    Deep into Rectifiers"); BN starts as the identity (gamma 1, beta 0); the fc keeps PyTorch's
    default, as torchvision does (the paper does not say)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
