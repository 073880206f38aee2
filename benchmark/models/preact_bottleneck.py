"""The deep pre-activation bottleneck ResNets of He, Zhang, Ren, Sun, "Identity Mappings in Deep
Residual Networks" (ECCV 2016): ResNet-164 and ResNet-1001 on CIFAR-10 (Tables 3 and 4).

Depth 9n+2: a 3x3 conv with 16 filters, three stages of n bottleneck units [1x1, c; 3x3, c; 1x1, 4c]
with c = 16/32/64 on 32/16/8-pixel maps (the appendix: a [3x3, 16; 3x3, 16] unit of ResNet-110
becomes [1x1, 16; 3x3, 16; 1x1, 64] in ResNet-164), global average pool, fc. Every unit is the
full pre-activation one of Fig. 4(e); "when reducing the feature map size we use projection
shortcuts [option B] for increasing dimensions, and when pre-activation is used, these projection
shortcuts are also with pre-activation" (appendix), the first unit's BN-ReLU is shared by both paths
and the last unit is followed by BN-ReLU. The authors' released code (KaimingHe/resnet-1k-layers)
strides in the first 1x1 conv, as the paper's own bottleneck does (``bottleneck_stride="1x1"``).

This is the paper's ``network.ResNet`` with ``preact=True``: the same blocks as ``resnet50``'s
pre-activation option, at CIFAR widths.
"""

from __future__ import annotations

from torch import nn

from benchmark import ModelError
from benchmark.models.cifar import WIDTHS
from benchmark.models.network import ResNet
from benchmark.models.options import ModelOptions, parse_relative_options
from benchmark.models.registry import ModelInfo, register_model


def preact_bottleneck_n(depth: int) -> int:
    """n for a 9n+2-layer bottleneck net (3 stages x n units x 3 convs, + the first conv and the fc)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 11 or (depth - 2) % 9:
        raise ModelError(
            f"pre-activation bottleneck depth {depth!r} is not 9n+2: depth must be 9n+2 (164, 1001, ...)"
        )
    return (depth - 2) // 9


def preact_bottleneck_resnet(depth: int, **options: object) -> nn.Module:
    """A 9n+2-layer pre-activation bottleneck ResNet for CIFAR (any n >= 1)."""
    n = preact_bottleneck_n(depth)
    parsed = parse_relative_options(_info(depth), options)
    resolved = ModelOptions(shortcut="B", preact=True, num_classes=parsed["num_classes"], bottleneck_stride="1x1")
    return ResNet(block="bottleneck", blocks_per_stage=(n, n, n), widths=WIDTHS, stem="cifar", options=resolved)


def _info(depth: int) -> ModelInfo:
    return ModelInfo(
        name=f"preact_resnet{depth}", family="cifar", kind="residual", depth=depth, default_shortcut=None,
        block="bottleneck", input_size=(3, 32, 32), num_classes=10, options=("num_classes",),
        architecture="preact_resnet", paper="he2016",
    )


@register_model(_info(164))
def preact_resnet164(**options: object) -> nn.Module:
    """Identity Mappings Tables 3-4: 1.7M parameters, 5.46% error (original unit: 5.93%)."""
    return preact_bottleneck_resnet(164, **options)


@register_model(_info(1001))
def preact_resnet1001(**options: object) -> nn.Module:
    """Identity Mappings Tables 3-4: 10.2M parameters, 4.92% error (4.89±0.14; batch 64: 4.62%)."""
    return preact_bottleneck_resnet(1001, **options)
