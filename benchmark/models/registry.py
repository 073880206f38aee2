"""One name-keyed registry of model builders (timm's ``register_model`` / ``create_model`` shape).

The registry is the package's only global: each family module (``cifar``, ``imagenet``) registers
its named depths at import time, and everything else (the fleet, the CLI, the tests) goes through
``build_model`` / ``list_models`` / ``model_info``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from torch import nn

from benchmark import ModelError

Family = Literal["cifar", "imagenet"]
# How a layer's input reaches its output: not at all (plain), added (residual), through a learned
# gate (highway, Srivastava et al. 2015), or concatenated (dense, Huang et al. 2017).
Kind = Literal["plain", "residual", "highway", "dense"]
BlockKind = Literal["basic", "bottleneck", "highway", "dense"]
# The architecture a model belongs to, and so the paper whose numbers it is compared with
# (``benchmark.analysis.reference.relatives``): "resnet" is the paper's own (He et al. 2015).
Architecture = Literal["resnet", "highway", "preact_resnet", "wide_resnet", "resnext", "densenet"]
ARCHITECTURES: tuple[str, ...] = get_args(Architecture)
Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """What a registered name stands for, known without building the model."""

    name: str
    family: Family
    kind: Kind
    depth: int  # weighted layers, as the paper counts them (convs + fc)
    # "A" | "B"; None where build_model takes no shortcut option: plain nets have no shortcut, and
    # WRN, ResNeXt, DenseNet and the pre-activation bottleneck nets have the ones their paper fixes.
    default_shortcut: str | None
    block: BlockKind
    input_size: tuple[int, int, int]  # (C, H, W) the paper trains at
    num_classes: int
    options: tuple[str, ...]  # option names build_model accepts for this model
    # The relatives' structure (None where it does not apply), for `list` and the reports.
    architecture: Architecture = "resnet"
    paper: str = "he2015"  # key of the paper the architecture comes from (benchmark.analysis.reference)
    width: int | None = None  # WRN's widening factor k; ResNeXt's bottleneck width d (the "64d")
    cardinality: int | None = None  # ResNeXt: groups in the 3x3 conv (the "8x" of 8x64d)
    growth_rate: int | None = None  # DenseNet: k, feature maps each layer adds


@dataclass(frozen=True)
class _Entry:
    info: ModelInfo
    builder: Builder


_REGISTRY: dict[str, _Entry] = {}


def register_model(info: ModelInfo) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder(**options) -> nn.Module`` under ``info.name``.

    A duplicate name is a programming error (two builders would silently shadow each other).
    """

    def decorate(builder: Builder) -> Builder:
        if info.name in _REGISTRY:
            raise ModelError(f"model {info.name!r} is already registered")
        _REGISTRY[info.name] = _Entry(info, builder)
        return builder

    return decorate


def _entry(name: str) -> _Entry:
    if name in _REGISTRY:
        return _REGISTRY[name]
    names = list_models()
    close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else f"known models: {', '.join(names)}"
    raise ModelError(f"unknown model {name!r}; {hint}")


def build_model(name: str, **options: object) -> nn.Module:
    """Build the registered model ``name`` with He (MSRA) init; see ``model_info(name).options``.

    An option given as None means "the model's default", so callers can pass every axis of a
    trial (e.g. ``shortcut=None`` for a plain net) without special-casing the model.
    """
    return _entry(name).builder(**options)


def model_info(name: str) -> ModelInfo:
    return _entry(name).info


def list_models() -> list[str]:
    """Registered names: CIFAR before ImageNet, the paper's nets before their relatives (in the
    order of ``ARCHITECTURES``), plain before residual, shallow before deep, narrow before wide."""
    return sorted(_REGISTRY, key=_sort_key)


def _sort_key(name: str) -> tuple[bool, int, bool, str, int, int, int, int]:
    info = _REGISTRY[name].info
    return (info.family == "imagenet", ARCHITECTURES.index(info.architecture), info.kind == "residual",
            info.block if info.architecture != "resnet" else "", info.depth, info.width or 0,
            info.cardinality or 0, info.growth_rate or 0)
