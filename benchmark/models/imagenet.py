"""The ImageNet nets of Table 1: conv1 7x7/64 stride 2, 3x3 max pool stride 2, stages conv2_x to
conv5_x with 64/128/256/512 filters (bottleneck outputs 4x that) on 56/28/14/7-pixel maps at
224x224, global average pool, 1000-way fc."""

from __future__ import annotations

from torch import nn

from benchmark import ModelError
from benchmark.models.network import ResNet
from benchmark.models.options import option_names, parse_options
from benchmark.models.registry import ModelInfo, register_model

# Table 1: the block type and the number of blocks in conv2_x, conv3_x, conv4_x, conv5_x.
TABLE_1: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
WIDTHS = (64, 128, 256, 512)


def default_shortcut(depth: int) -> str:
    """Option A for ResNet-18/34 (Table 2 compares them with plain nets at no extra parameters);
    option B for the bottleneck nets (Section 4.1: "we use option B for increasing dimensions")."""
    return "A" if TABLE_1[depth][0] == "basic" else "B"


def imagenet_resnet(depth: int, residual: bool, **options: object) -> nn.Module:
    """A Table 1 net of ``depth`` 18, 34, 50, 101 or 152 layers, residual or plain."""
    if depth not in TABLE_1:
        raise ModelError(f"ImageNet depth {depth!r} is not in Table 1; expected one of 18, 34, 50, 101, 152")
    block, blocks_per_stage = TABLE_1[depth]
    parsed = parse_options(_info(depth, residual), options)
    return ResNet(block=block, blocks_per_stage=blocks_per_stage, widths=WIDTHS, stem="imagenet", options=parsed)


def _info(depth: int, residual: bool) -> ModelInfo:
    block = TABLE_1[depth][0]
    return ModelInfo(
        name=f"{'resnet' if residual else 'plain'}{depth}",
        family="imagenet",
        kind="residual" if residual else "plain",
        depth=depth,
        default_shortcut=default_shortcut(depth) if residual else None,
        block=block,  # type: ignore[arg-type]
        input_size=(3, 224, 224),
        num_classes=1000,
        options=option_names(residual=residual, bottleneck=block == "bottleneck"),
    )


# Plain nets of Table 2 and Fig. 4 left.
@register_model(_info(18, residual=False))
def plain18(**options: object) -> nn.Module:
    """Table 2: 27.94% top-1 error (10-crop)."""
    return imagenet_resnet(18, residual=False, **options)


@register_model(_info(34, residual=False))
def plain34(**options: object) -> nn.Module:
    """Table 2: 28.54% top-1 error (10-crop): worse than plain-18, the degradation problem."""
    return imagenet_resnet(34, residual=False, **options)


# Residual nets of Tables 2-4.
@register_model(_info(18, residual=True))
def resnet18(**options: object) -> nn.Module:
    """Table 1: 1.8x10^9 FLOPs; Table 2: 27.88% top-1 (option A)."""
    return imagenet_resnet(18, residual=True, **options)


@register_model(_info(34, residual=True))
def resnet34(**options: object) -> nn.Module:
    """Table 1: 3.6x10^9 FLOPs; Table 3: 25.03/24.52/24.19% top-1 for options A/B/C."""
    return imagenet_resnet(34, residual=True, **options)


@register_model(_info(50, residual=True))
def resnet50(**options: object) -> nn.Module:
    """Table 1: 3.8x10^9 FLOPs; Table 3: 22.85% top-1 (option B)."""
    return imagenet_resnet(50, residual=True, **options)


@register_model(_info(101, residual=True))
def resnet101(**options: object) -> nn.Module:
    """Table 1: 7.6x10^9 FLOPs; Table 3: 21.75% top-1 (option B)."""
    return imagenet_resnet(101, residual=True, **options)


@register_model(_info(152, residual=True))
def resnet152(**options: object) -> nn.Module:
    """Table 1: 11.3x10^9 FLOPs; Table 3: 21.43% top-1 (option B)."""
    return imagenet_resnet(152, residual=True, **options)
