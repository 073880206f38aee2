"""Highway networks: a learned gate instead of the identity shortcut.

Srivastava, Greff, Schmidhuber, "Training Very Deep Networks" (NIPS 2015): a highway layer computes
y = H(x)·T(x) + x·(1 − T(x)) with a transform gate T(x) = σ(W_T x + b_T), started with a negative
bias b_T so that each layer first carries its input (their Eqns. 2-3). Table 6 of the ResNet paper
compares its ResNets with two of their CIFAR-10 nets (19 layers, 2.3M parameters, 7.54%; 32 layers,
1.25M, 8.80%): ``highway19`` and ``highway32`` here.

``highway_resnet<depth>`` is the gated counterpart of the paper's CIFAR ResNets: the same stages,
widths, blocks and option-A shortcuts, with the identity replaced by He et al. 2016's "exclusive
gating" (Identity Mappings, Fig. 2(c), Table 1): y = ReLU(g(x)·F(x) + (1 − g(x))·x) with
g(x) = σ(W_g x + b_g), W_g a 1x1 conv. At equal depth it answers the paper's question of a gate
against an identity (Section 2, "Shortcut Connections": "When a gated shortcut is 'closed' ...").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark import ModelError
from benchmark.models.blocks import BasicBlock
from benchmark.models.cifar import WIDTHS, cifar_n
from benchmark.models.network import ResNet, init_weights
from benchmark.models.options import ModelOptions, parse_relative_options
from benchmark.models.registry import ModelInfo, register_model

# The transform-gate bias of the authors' released CIFAR-10 net (flukeskywalker/highway-networks,
# examples/highways/cifar10-19layers: transform_bias_filler -2.0).
SRIVASTAVA_GATE_BIAS = -2.0
# Identity Mappings, Section 3.1 and Table 1: for exclusive gating on ResNet-110 the best initial
# b_g of a search over 0..-10 was -6 (8.70%); 0 to -5 failed to converge (> 20% error).
EXCLUSIVE_GATING_BIAS = -6.0

# Highway nets of Table 6: (highway layers per stage, filters per stage). The 19-layer net is the
# authors' released CIFAR-10 network: a 3x3 conv and 4 highway layers of 32 filters, max pool, a conv
# and 5 highway layers of 80, max pool, a conv and 5 of 128, then a 1x1 conv to 100 maps, global
# average pooling and the classifier, with dropout 0.2 on the input and after each pooling. Their
# 32-layer net has no published layout: ours keeps that template with 9 highway layers per stage
# and filters 32/48/64, chosen to give the published 1.25M parameters.
TABLE_6: dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    19: ((4, 5, 5), (32, 80, 128)),
    32: ((9, 9, 9), (32, 48, 64)),
}
HEAD_CHANNELS = 100  # the released net's last conv: 1x1, 100 maps, before pooling


class HighwayLayer(nn.Module):
    """One highway layer (Srivastava et al. 2015, Eqn. 3): H and T are 3x3 convs with biases, as in
    the authors' Caffe layer; H is a ReLU layer, T a sigmoid gate whose bias starts at ``gate_bias``."""

    def __init__(self, channels: int, gate_bias: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)  # H
        self.gate = nn.Conv2d(channels, channels, 3, padding=1)  # T
        nn.init.zeros_(self.conv.bias)
        nn.init.constant_(self.gate.bias, gate_bias)  # init_weights touches conv weights only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        transform = F.relu(self.conv(x))
        gate = torch.sigmoid(self.gate(x))
        return x + gate * (transform - x)  # = H·T + x·(1 − T)


class HighwayNet(nn.Module):
    """The highway nets of Table 6: three stages of highway layers between max pools, each entered
    by a plain 3x3 conv + ReLU that sets its width; a 1x1 conv head, global average pool, fc.

    There is no BN in these nets (the authors' design); convs are He-initialised like ours.
    """

    def __init__(
        self,
        layers_per_stage: tuple[int, int, int],
        widths: tuple[int, int, int],
        *,
        num_classes: int,
        dropout: float,
        gate_bias: float,
    ) -> None:
        super().__init__()
        (n1, n2, n3), (w1, w2, w3) = layers_per_stage, widths
        self.dropout = nn.Dropout(dropout)
        self.conv1 = nn.Conv2d(3, w1, 3, padding=1)
        self.layer1 = nn.Sequential(*(HighwayLayer(w1, gate_bias) for _ in range(n1)))
        self.conv2 = nn.Conv2d(w1, w2, 3, padding=1)
        self.layer2 = nn.Sequential(*(HighwayLayer(w2, gate_bias) for _ in range(n2)))
        self.conv3 = nn.Conv2d(w2, w3, 3, padding=1)
        self.layer3 = nn.Sequential(*(HighwayLayer(w3, gate_bias) for _ in range(n3)))
        self.head = nn.Conv2d(w3, HEAD_CHANNELS, 1)
        self.fc = nn.Linear(HEAD_CHANNELS, num_classes)
        init_weights(self)
        for conv in (self.conv1, self.conv2, self.conv3, self.head):
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(F.relu(self.conv1(self.dropout(x))))
        x = self.layer2(F.relu(self.conv2(self.dropout(F.max_pool2d(x, 2)))))
        x = self.layer3(F.relu(self.conv3(self.dropout(F.max_pool2d(x, 2)))))
        x = F.adaptive_avg_pool2d(F.relu(self.head(x)), 1)
        return self.fc(self.dropout(torch.flatten(x, 1)))


class GatedBasicBlock(BasicBlock):
    """The basic block with exclusive gating (Identity Mappings, Fig. 2(c)): the residual branch
    F(x) is scaled by g(x) and the shortcut by 1 − g(x), then ReLU. g(x) = σ(W_g x + b_g) is a 1x1
    conv (strided like the block, to the block's width) with a bias that starts at ``gate_bias``.

    The shortcut keeps the paper's option A (zero-padding) or B/C where dimensions change.
    """

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        residual: bool = True,
        gate_bias: float = EXCLUSIVE_GATING_BIAS,
    ) -> None:
        if not residual:
            raise ValueError("a gated block always has its carry path")
        super().__init__(in_planes, planes, stride, downsample)
        self.gate = nn.Conv2d(in_planes, planes, 1, stride=stride)
        nn.init.constant_(self.gate.bias, gate_bias)  # init_weights touches conv weights only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        carry = x if self.downsample is None else self.downsample(x)
        gate = torch.sigmoid(self.gate(x))
        return self.relu(carry + gate * (out - carry))  # = g·F(x) + (1 − g)·x, then f = ReLU


def highway_net(depth: int, **options: object) -> nn.Module:
    """A highway net of Table 6: ``depth`` 19 or 32 layers (convs, highway layers and the fc)."""
    if depth not in TABLE_6:
        raise ModelError(f"highway depth {depth!r} is not in Table 6; expected 19 or 32")
    parsed = parse_relative_options(_net_info(depth), options, gate_bias=SRIVASTAVA_GATE_BIAS, dropout=0.2)
    layers, widths = TABLE_6[depth]
    return HighwayNet(layers, widths, num_classes=parsed["num_classes"], dropout=parsed["dropout"],
                      gate_bias=parsed["gate_bias"])


def highway_resnet(depth: int, **options: object) -> nn.Module:
    """The gated counterpart of ResNet-``depth`` (depth 6n+2): the same net, gates on its shortcuts."""
    n = cifar_n(depth)
    parsed = parse_relative_options(_resnet_info(depth), options, gate_bias=EXCLUSIVE_GATING_BIAS)
    resolved = ModelOptions(shortcut=parsed["shortcut"], preact=False, num_classes=parsed["num_classes"],
                            bottleneck_stride=None)
    return ResNet(block=GatedBasicBlock, blocks_per_stage=(n, n, n), widths=WIDTHS, stem="cifar",
                  options=resolved, block_options={"gate_bias": parsed["gate_bias"]})


def _net_info(depth: int) -> ModelInfo:
    return ModelInfo(
        name=f"highway{depth}", family="cifar", kind="highway", depth=depth, default_shortcut=None,
        block="highway", input_size=(3, 32, 32), num_classes=10, options=("gate_bias", "dropout", "num_classes"),
        architecture="highway", paper="srivastava2015",
    )


def _resnet_info(depth: int) -> ModelInfo:
    return ModelInfo(
        name=f"highway_resnet{depth}", family="cifar", kind="highway", depth=depth, default_shortcut="A",
        block="basic", input_size=(3, 32, 32), num_classes=10, options=("shortcut", "gate_bias", "num_classes"),
        architecture="highway", paper="he2016",
    )


@register_model(_net_info(19))
def highway19(**options: object) -> nn.Module:
    """Table 6 (from Srivastava et al. 2015): 19 layers, 2.3M parameters, 7.54% error (7.72±0.16)."""
    return highway_net(19, **options)


@register_model(_net_info(32))
def highway32(**options: object) -> nn.Module:
    """Table 6 (from Srivastava et al. 2015): 32 layers, 1.25M parameters, 8.80% error."""
    return highway_net(32, **options)


@register_model(_resnet_info(20))
def highway_resnet20(**options: object) -> nn.Module:
    """ResNet-20 with exclusive gating on every shortcut."""
    return highway_resnet(20, **options)


@register_model(_resnet_info(32))
def highway_resnet32(**options: object) -> nn.Module:
    """ResNet-32 with exclusive gating on every shortcut."""
    return highway_resnet(32, **options)


@register_model(_resnet_info(44))
def highway_resnet44(**options: object) -> nn.Module:
    """ResNet-44 with exclusive gating on every shortcut."""
    return highway_resnet(44, **options)


@register_model(_resnet_info(56))
def highway_resnet56(**options: object) -> nn.Module:
    """ResNet-56 with exclusive gating on every shortcut."""
    return highway_resnet(56, **options)


@register_model(_resnet_info(110))
def highway_resnet110(**options: object) -> nn.Module:
    """ResNet-110 with exclusive gating: Identity Mappings Table 1, 8.70% with b_g = -6 (ResNet-110: 6.61%)."""
    return highway_resnet(110, **options)
