"""Stand-ins for the GPU in the step's and the trial's tests: an injected fp16-style overflow,
fp16's GradScaler on the CPU, and compile mode "reduce-overhead" with a scripted skip counter."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class Overflow:
    """Makes the logits of chosen training steps infinite, as an fp16 overflow does: a forward
    hook on the last layer (after every BN, whose statistics it leaves alone). `steps` are
    0-based training forwards of each model it is attached to; "all" overflows every one."""

    def __init__(self, steps: set[int] | str) -> None:
        self.steps = steps

    def attach(self, model: nn.Module) -> nn.Module:
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        calls = iter(range(10**9))

        def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor | None:
            if module.training and (self.steps == "all" or next(calls) in self.steps):
                return output * float("inf")
            return None

        last.register_forward_hook(hook)
        return model


def cpu_grad_scaler(monkeypatch: pytest.MonkeyPatch) -> None:
    """fp16 is CUDA-only here; its GradScaler path runs on the CPU with a CPU scaler (fp32 math)."""
    from benchmark.training import step as step_module

    monkeypatch.setattr(step_module, "grad_scaler", lambda precision, device: torch.amp.GradScaler("cpu"))


def fake_cuda_graph_mode(monkeypatch: pytest.MonkeyPatch, skips: list[int]) -> list[str | None]:
    """Compile "reduce-overhead" on the CPU without compiling (torch.compile returns the function),
    with inductor's skip counter reading `skips` one value per call (the last repeats)."""
    from benchmark.training import step as step_module

    modes: list[str | None] = []

    def compile_stub(function, mode=None):  # noqa: ANN001, ANN202
        modes.append(mode)
        return function

    readings = iter(skips)
    last = [skips[-1]]
    monkeypatch.setattr(step_module, "compile_mode", lambda device: "reduce-overhead")
    monkeypatch.setattr(step_module.torch, "compile", compile_stub)
    monkeypatch.setattr(step_module, "cudagraph_skips", lambda: next(readings, last[0]))
    return modes
