"""Model complexity as the paper counts it: parameters (Table 6) and forward multiply-adds per
image (Table 1's "FLOPs", which are multiply-adds of the conv and fc layers only; BN, ReLU,
pooling and the shortcut additions are not counted)."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """All parameters, BN's gamma and beta included (as Table 6's 0.27M for ResNet-20 does)."""
    return sum(parameter.numel() for parameter in model.parameters())


def count_multiply_adds(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Forward multiply-adds of conv and linear layers for one image of ``input_size`` (C, H, W).

    Counted with forward hooks on a one-image forward pass in eval mode, on the model's own
    device and dtype; a model built under ``torch.device("meta")`` is counted for free.
    """
    total = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            # Every output element is a dot product over (C_in / groups) x kH x kW inputs.
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        else:
            per_output = module.in_features
        total += output.numel() * per_output

    layers = [module for module in model.modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
    handles = [layer.register_forward_hook(count) for layer in layers]
    parameter = next(model.parameters())
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_size, device=parameter.device, dtype=parameter.dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total


@lru_cache(maxsize=None)
def named_complexity(name: str, shortcut: str | None = None, preact: bool = False) -> tuple[int, int]:
    """(parameters, forward mult-adds per image) of the registered model ``name`` as
    ``build_model(name, shortcut=..., preact=...)`` makes it (None/False: the model's defaults).

    Counted with every layer on the meta device (shapes only, no memory), and cached: ``list`` and
    the reports ask for the same 36 models again and again.
    """
    from benchmark.models.registry import build_model, model_info

    options: dict[str, object] = {"shortcut": shortcut} if shortcut else {}
    options |= {"preact": True} if preact else {}
    with torch.device("meta"):
        model = build_model(name, **options)
    return count_parameters(model), count_multiply_adds(model, model_info(name).input_size)
