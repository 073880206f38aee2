"""One name-keyed registry of model builders (timm's ``register_model`` / ``create_model`` shape).

The registry is the package's only global: each family module (``cifar``, ``imagenet``) registers
its named depths at import time, and everything else (the fleet, the CLI, the tests) goes through
``build_model`` / ``list_models`` / ``model_info``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import nn

from benchmark.errors import ModelError

Family = Literal["cifar", "imagenet"]
Kind = Literal["plain", "residual"]
BlockKind = Literal["basic", "bottleneck"]
Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """What a registered name stands for, known without building the model."""

    name: str
    family: Family
    kind: Kind
    depth: int  # weighted layers, as the paper counts them (convs + fc)
    default_shortcut: str | None  # "A" | "B"; None for plain nets, which have no shortcut
    block: BlockKind
    input_size: tuple[int, int, int]  # (C, H, W) the paper trains at
    num_classes: int
    options: tuple[str, ...]  # option names build_model accepts for this model


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
    """Registered names: CIFAR before ImageNet, plain before residual, shallow before deep."""
    return sorted(_REGISTRY, key=_sort_key)


def _sort_key(name: str) -> tuple[bool, bool, int]:
    info = _REGISTRY[name].info
    return info.family == "imagenet", info.kind == "residual", info.depth
