"""DenseNet-BC for CIFAR (Huang, Liu, van der Maaten, Weinberger, "Densely Connected Convolutional
Networks", CVPR 2017): every layer receives the concatenated feature maps of all earlier layers of
its block, x_l = H_l([x_0, ..., x_{l-1}]) (their Eqn. 2), instead of their sum.

Section 3, "Implementation Details", for CIFAR: a 3x3 conv with 2k filters (k the growth rate), three
dense blocks of equal size on 32/16/8-pixel maps, a transition between blocks, global average pool,
fc. A BC layer is BN-ReLU-1x1 conv (4k maps)-BN-ReLU-3x3 conv (k maps) ("B": bottleneck); a
transition is BN-ReLU-1x1 conv to ⌊θm⌋ maps with θ = 0.5 ("C": compression), then 2x2 average
pooling; the last block ends with BN-ReLU, as in the authors' code (liuzhuang13/DenseNet). With two
convs per layer, L = 6n + 4 for n layers per block (100 -> 16, 190 -> 31, 250 -> 41). Dropout after
each conv is the paper's option for training without augmentation; off by default.

State-dict keys are torchvision's (``features.denseblock1.denselayer1.norm1.weight``, ...,
``features.transition1.conv.weight``, ``features.norm5``, ``classifier``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark import ModelError
from benchmark.models.blocks import conv1x1, conv3x3
from benchmark.models.network import init_weights
from benchmark.models.options import parse_relative_options
from benchmark.models.registry import ModelInfo, register_model

COMPRESSION = 0.5  # θ of DenseNet-C (Section 3, "Compression")
BOTTLENECK_FACTOR = 4  # "we let each 1x1 convolution produce 4k feature-maps"


class DenseLayer(nn.Module):
    """H_l of DenseNet-B: BN-ReLU-Conv(1x1, 4k)-BN-ReLU-Conv(3x3, k), new maps concatenated on."""

    def __init__(self, in_channels: int, growth_rate: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = conv1x1(in_channels, BOTTLENECK_FACTOR * growth_rate)
        self.norm2 = nn.BatchNorm2d(BOTTLENECK_FACTOR * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(BOTTLENECK_FACTOR * growth_rate, growth_rate)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu1(self.norm1(x)))
        if self.dropout:
            out = F.dropout(out, self.dropout, self.training)
        out = self.conv2(self.relu2(self.norm2(out)))
        if self.dropout:
            out = F.dropout(out, self.dropout, self.training)
        return torch.cat([x, out], 1)


class Transition(nn.Sequential):
    """Between dense blocks: BN-ReLU-Conv(1x1, ⌊θm⌋)-AvgPool(2x2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(in_channels))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", conv1x1(in_channels, out_channels))
        self.add_module("pool", nn.AvgPool2d(2))


class DenseNetBC(nn.Module):
    """DenseNet-BC with ``n`` layers per block and growth rate ``growth_rate``."""

    def __init__(self, n: int, growth_rate: int, *, num_classes: int, dropout: float) -> None:
        super().__init__()
        channels = 2 * growth_rate
        self.features = nn.Sequential()
        self.features.add_module("conv0", conv3x3(3, channels))
        for block in range(1, 4):
            layers = nn.Sequential()
            for index in range(n):
                layers.add_module(f"denselayer{index + 1}", DenseLayer(channels + index * growth_rate, growth_rate, dropout))
            self.features.add_module(f"denseblock{block}", layers)
            channels += n * growth_rate
            if block < 3:
                compressed = int(COMPRESSION * channels)
                self.features.add_module(f"transition{block}", Transition(channels, compressed))
                channels = compressed
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.features(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def densenet_bc_n(depth: int) -> int:
    """Layers per dense block of DenseNet-BC-``depth`` (depth = 6n + 4)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ModelError(
            f"DenseNet-BC depth {depth!r} is not 6n+4: with bottleneck layers depth must be 6n+4 (40, 100, 190, 250, ...)"
        )
    return (depth - 4) // 6


def densenet_bc(depth: int, growth_rate: int, **options: object) -> nn.Module:
    """DenseNet-BC (L=``depth``, k=``growth_rate``) for CIFAR."""
    n = densenet_bc_n(depth)
    if isinstance(growth_rate, bool) or not isinstance(growth_rate, int) or growth_rate < 1:
        raise ModelError(f"DenseNet growth rate {growth_rate!r} is not a positive integer: the paper uses k = 12, 24, 40")
    parsed = parse_relative_options(_info(depth, growth_rate), options)
    return DenseNetBC(n, growth_rate, num_classes=parsed["num_classes"], dropout=parsed["dropout"])


def _info(depth: int, growth_rate: int) -> ModelInfo:
    return ModelInfo(
        name=f"densenet_bc{depth}_{growth_rate}", family="cifar", kind="dense", depth=depth, default_shortcut=None,
        block="dense", input_size=(3, 32, 32), num_classes=10, options=("dropout", "num_classes"),
        architecture="densenet", paper="huang2017", growth_rate=growth_rate,
    )


@register_model(_info(100, 12))
def densenet_bc100_12(**options: object) -> nn.Module:
    """DenseNet Table 2: 0.8M parameters, 4.51% error on C10+."""
    return densenet_bc(100, 12, **options)


@register_model(_info(190, 40))
def densenet_bc190_40(**options: object) -> nn.Module:
    """DenseNet Table 2: 25.6M parameters, 3.46% error on C10+ (the paper's best)."""
    return densenet_bc(190, 40, **options)


@register_model(_info(250, 24))
def densenet_bc250_24(**options: object) -> nn.Module:
    """DenseNet Table 2: 15.3M parameters, 3.62% error on C10+."""
    return densenet_bc(250, 24, **options)
