"""Checking the options a model is built with, so a typo is a one-line ModelError, not a silent
default: an unknown name, an unknown value, or an option the model does not have."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from benchmark import ModelError
from benchmark.models.registry import ModelInfo
from benchmark.models.shortcuts import OPTION_A_PADDINGS

# Section 3.3 of the paper: (A) zero-padding identity, (B) projections where dimensions increase,
# (C) projections on all shortcuts.
SHORTCUTS = ("A", "B", "C")
# Where a downsampling bottleneck puts its stride: "1x1" as the paper's Caffe models do (Table 1's
# FLOPs), "3x3" as torchvision and NVIDIA's "ResNet v1.5" do.
BOTTLENECK_STRIDES = ("1x1", "3x3")


@dataclass(frozen=True)
class ModelOptions:
    """Resolved options: what every block of one network is built with."""

    shortcut: str | None  # None for plain nets
    preact: bool
    num_classes: int
    bottleneck_stride: str | None  # None for nets of basic blocks
    option_a_padding: str = "after"  # where option A's zero channels go (shortcuts.OPTION_A_PADDINGS)


def option_names(*, residual: bool, bottleneck: bool) -> tuple[str, ...]:
    """The options a model takes: plain nets have no shortcut (and so no option A padding); only
    bottleneck nets a stride choice."""
    names = ("shortcut", "option_a_padding") if residual else ()
    names += ("preact", "num_classes")
    return names + (("bottleneck_stride",) if bottleneck else ())


def parse_options(info: ModelInfo, options: Mapping[str, object]) -> ModelOptions:
    """Validate ``options`` for the model ``info`` describes; an option given as None takes the
    model's default (from ``info``, the registry's record, so the two cannot disagree)."""
    model, allowed = info.name, info.options
    residual, bottleneck = info.kind == "residual", info.block == "bottleneck"
    given = {key: value for key, value in options.items() if value is not None}
    for key, value in given.items():
        if key not in allowed:
            raise ModelError(_not_taken(model, key, value, allowed, info.kind))

    shortcut = given.get("shortcut", info.default_shortcut) if residual else None
    if residual:
        _check_shortcut(model, shortcut)
    padding = given.get("option_a_padding", "after")
    if padding not in OPTION_A_PADDINGS:
        raise ModelError(f"unknown option_a_padding {padding!r} for {model}; expected 'after' (zero channels after the "
                         "identity's, this project's) or 'both' (split before and after, as akamaster's CIFAR code)")
    if padding != "after" and shortcut != "A":
        raise ModelError(f"option_a_padding={padding!r} places option A's zero channels, but {model} is built with "
                         f"shortcut={shortcut!r}")
    preact = given.get("preact", False)
    if not isinstance(preact, bool):
        raise ModelError(f"preact must be true or false for {model}, got {preact!r}")
    num_classes = given.get("num_classes", info.num_classes)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"num_classes must be a positive integer for {model}, got {num_classes!r}")
    stride = given.get("bottleneck_stride", "1x1") if bottleneck else None
    if bottleneck and stride not in BOTTLENECK_STRIDES:
        raise ModelError(
            f"unknown bottleneck_stride {stride!r} for {model}; expected '1x1' (the paper: "
            "stride in the first 1x1 conv) or '3x3' (torchvision's v1.5: stride in the 3x3 conv)"
        )
    return ModelOptions(shortcut, preact, num_classes, stride, padding)


def _not_taken(model: str, key: str, value: object, allowed: tuple[str, ...], kind: str = "plain") -> str:
    takes = f"{model} takes: {', '.join(allowed)}"
    if key == "shortcut" and kind == "plain":
        return f"plain nets have no shortcut: {model} does not take shortcut={value!r} ({takes})"
    if key == "shortcut":
        return f"{model} has the shortcuts its paper fixes, so shortcut={value!r} does not apply ({takes})"
    if key == "bottleneck_stride":
        return (
            f"{model} has no bottleneck blocks, so bottleneck_stride={value!r} does not apply "
            f"(only ImageNet resnet50/101/152 take it; {takes})"
        )
    return f"unknown option {key}={value!r} for {model}; {takes}"


def parse_relative_options(info: ModelInfo, options: Mapping[str, object], **defaults: object) -> dict[str, object]:
    """Validate the options of one of the paper's relatives (highway, wide, resnext, densenet,
    preact_bottleneck): num_classes, and where the model takes them a dropout rate, a gate bias and
    a shortcut option (for a gated net's carry path). An option given as None (or not given) takes
    ``defaults``, else the model's record (num_classes, default_shortcut), else no dropout.

    Returns every option ``info.options`` names, resolved.
    """
    model, allowed = info.name, info.options
    given = {key: value for key, value in options.items() if value is not None}
    for key, value in given.items():
        if key not in allowed:
            raise ModelError(_not_taken(model, key, value, allowed, info.kind))
    fallback = {"num_classes": info.num_classes, "shortcut": info.default_shortcut, "dropout": 0.0, **defaults}
    resolved = {key: given.get(key, fallback.get(key)) for key in allowed}
    if "num_classes" in resolved:
        value = resolved["num_classes"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelError(f"num_classes must be a positive integer for {model}, got {value!r}")
    if "dropout" in resolved:
        value = resolved["dropout"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ModelError(f"dropout must be a probability in [0, 1) for {model}, got {value!r}")
        resolved["dropout"] = float(value)
    if "gate_bias" in resolved:
        value = resolved["gate_bias"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ModelError(f"gate_bias must be a finite number for {model} (the paper uses a negative one), got {value!r}")
        resolved["gate_bias"] = float(value)
    if "shortcut" in resolved:
        _check_shortcut(model, resolved["shortcut"])
    return resolved


def _check_shortcut(model: str, shortcut: object) -> None:
    if shortcut not in SHORTCUTS:
        raise ModelError(
            f"unknown shortcut {shortcut!r} for {model}; expected 'A' (identity, zero-padding "
            "where dimensions increase), 'B' (projection where dimensions increase) or "
            "'C' (projection on every shortcut)"
        )
