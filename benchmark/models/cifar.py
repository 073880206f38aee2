"""The CIFAR-10 nets of Section 4.2: depth 6n+2, three stages of 2n 3x3 layers with 16/32/64
filters on 32/16/8-pixel maps, global average pool, 10-way fc; option A shortcuts (Table 6)."""

from __future__ import annotations

from torch import nn

from benchmark import ModelError
from benchmark.models.network import ResNet
from benchmark.models.options import option_names, parse_options
from benchmark.models.registry import ModelInfo, register_model

# Section 4.2: "the numbers of filters are {16, 32, 64} respectively".
WIDTHS = (16, 32, 64)


def cifar_n(depth: int) -> int:
    """n for a 6n+2-layer net (3 stages x n blocks x 2 convs, + the first conv and the fc)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ModelError(
            f"CIFAR depth {depth!r} is not 6n+2: depth must be 6n+2 (20, 32, 44, 56, 110, 1202, ...)"
        )
    return (depth - 2) // 6


def cifar_resnet(n: int, residual: bool, **options: object) -> nn.Module:
    """A 6n+2-layer CIFAR net, residual (option A by default) or plain; any n >= 1."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ModelError(f"n must be a positive integer (depth 6n+2), got {n!r}")
    parsed = parse_options(_info(6 * n + 2, residual), options)
    return ResNet(block="basic", blocks_per_stage=(n, n, n), widths=WIDTHS, stem="cifar", options=parsed)


def _info(depth: int, residual: bool) -> ModelInfo:
    return ModelInfo(
        name=f"{'resnet' if residual else 'plain'}{depth}",
        family="cifar",
        kind="residual" if residual else "plain",
        depth=depth,
        default_shortcut="A" if residual else None,
        block="basic",
        input_size=(3, 32, 32),
        num_classes=10,
        options=option_names(residual=residual, bottleneck=False),
    )


# Plain nets: Fig. 6 left (the degradation problem); the paper gives them only as curves.
@register_model(_info(20, residual=False))
def plain20(**options: object) -> nn.Module:
    return cifar_resnet(3, residual=False, **options)


@register_model(_info(32, residual=False))
def plain32(**options: object) -> nn.Module:
    return cifar_resnet(5, residual=False, **options)


@register_model(_info(44, residual=False))
def plain44(**options: object) -> nn.Module:
    return cifar_resnet(7, residual=False, **options)


@register_model(_info(56, residual=False))
def plain56(**options: object) -> nn.Module:
    return cifar_resnet(9, residual=False, **options)


@register_model(_info(110, residual=False))
def plain110(**options: object) -> nn.Module:
    return cifar_resnet(18, residual=False, **options)


# Residual nets: Table 6 and Fig. 6 middle/right.
@register_model(_info(20, residual=True))
def resnet20(**options: object) -> nn.Module:
    """Table 6: 0.27M parameters, 8.75% error."""
    return cifar_resnet(3, residual=True, **options)


@register_model(_info(32, residual=True))
def resnet32(**options: object) -> nn.Module:
    """Table 6: 0.46M parameters, 7.51% error."""
    return cifar_resnet(5, residual=True, **options)


@register_model(_info(44, residual=True))
def resnet44(**options: object) -> nn.Module:
    """Table 6: 0.66M parameters, 7.17% error."""
    return cifar_resnet(7, residual=True, **options)


@register_model(_info(56, residual=True))
def resnet56(**options: object) -> nn.Module:
    """Table 6: 0.85M parameters, 6.97% error."""
    return cifar_resnet(9, residual=True, **options)


@register_model(_info(110, residual=True))
def resnet110(**options: object) -> nn.Module:
    """Table 6: 1.7M parameters, 6.43% error (best of 5; 6.61±0.16). Needs the lr 0.01 warm-up."""
    return cifar_resnet(18, residual=True, **options)


@register_model(_info(1202, residual=True))
def resnet1202(**options: object) -> nn.Module:
    """Table 6: 19.4M parameters, 7.93% error (Section 4.2: overfits, no optimisation difficulty)."""
    return cifar_resnet(200, residual=True, **options)
