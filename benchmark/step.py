"""One training step and one evaluation pass, device- and precision-agnostic.

The nets of the paper's CIFAR-10 experiments are tiny (ResNet-56 is about 0.125 G mult-adds per
image, DESIGN "Facts that matter"), so on a GPU a step is bound by kernel launches and host
round-trips rather than arithmetic. Hence the rule of this module: nothing inside `TrainStep.step`
waits for the device (no `.item()`, no `float(tensor)`, no `if tensor:`). Loss, correct count and
sample count are summed in device tensors and read once per evaluation interval by `pop_metrics`.
A diverged run therefore shows up there as a NaN/inf `train_loss`, not as an exception mid-step.

The levers DESIGN names for small convs are all here: channels-last memory format, bf16/fp16
autocast, and `torch.compile` (with CUDA graphs on a GPU, see `compile_mode`).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import BenchmarkError

_AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
PRECISIONS = tuple(_AUTOCAST_DTYPES)


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def _sum_dtype(device: torch.device) -> torch.dtype:
    """Metric sums on the device: float64 keeps a whole epoch's loss sum exact enough; MPS has none."""
    return torch.float32 if device.type == "mps" else torch.float64


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device` (None = plain fp32), or a one-line error.

    bf16 autocast works on CPU and CUDA. fp16 needs a GradScaler to keep small gradients from
    underflowing, and torch's CPU autocast/GradScaler path for fp16 is neither fast nor what anyone
    reproduces the paper with, so fp16 is CUDA-only here.
    """
    if precision not in _AUTOCAST_DTYPES:
        raise BenchmarkError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise BenchmarkError(
            f"precision 'fp16' needs a CUDA device (got {device.type!r}); use 'bf16' or 'fp32' there"
        )
    return _AUTOCAST_DTYPES[precision]


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """Autocast to `dtype` on `device`, or nothing for plain fp32."""
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def compile_mode(device: torch.device) -> str | None:
    """The `torch.compile` mode used for `device`.

    CUDA: "reduce-overhead" captures forward and backward in CUDA graphs. A ResNet-20 step at batch
    128 is several hundred kernels of a few microseconds each, so launch overhead, not FLOPs, is the
    limit (paper-and-reproductions.md section 3: "bound by launch and memory overhead"); replaying
    one graph removes it. Its cost is static input buffers (a copy of x per step) and extra memory,
    both small for 32x32 inputs. `python -m benchmark profile --compile both` measures the effect.
    CPU: the default mode. There are no CUDA graphs, and "max-autotune-no-cudagraphs" only adds
    GEMM-template autotuning for convolutions that go to oneDNN anyway: measured on the 2-core
    machines, ResNet-20 channels-last at batch 128 ran 914 img/s with it against 937 with the
    default (noise), after a 9.7 s instead of 2.2 s warm-up (inductor's disk cache warm).
    """
    return "reduce-overhead" if device.type == "cuda" else None


def _forward_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy (what is differentiated) and the top-1 correct count of a batch.

    Kept as one function so that `torch.compile` fuses the loss and the argmax with the net.
    """
    with autocast(x.device, dtype):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    correct = (logits.argmax(dim=1) == y).sum()
    return loss, correct


class TrainStep:
    """Forward, cross-entropy, backward and optimizer step, with metrics kept on the device.

    The caller owns the learning-rate schedule: it writes plain floats into
    `optimizer.param_groups[i]["lr"]` before each `step` (no recompilation: the optimizer step
    is not compiled).

    `model` is moved to `device` (and to channels-last if asked) here, once; `optimizer` may have
    been built before that, since `Module.to` keeps the same Parameter objects.

    fp16 on CUDA uses a GradScaler. Note: `GradScaler.step` reads its inf check on the host (one
    sync per step) unless the optimizer does the unscale itself, i.e. `torch.optim.SGD(...,
    fused=True)`; bf16 needs no scaler and has no such sync.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        device: torch.device | str,
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self._dtype = autocast_dtype(precision, self.device)
        self._memory_format = memory_format(channels_last)
        self.model = model.to(self.device, memory_format=self._memory_format)
        # Train mode is set once, not per step (a recursive walk over the modules costs host time a
        # launch-bound GPU step cannot spare); `evaluate` restores it after switching to eval.
        self.model.train()
        self.optimizer = optimizer
        self._scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        self._mode = compile_mode(self.device) if compile else None
        if compile:
            # Dynamo caches compiled graphs per code object, shared by every TrainStep in the
            # process; after torch._dynamo.config.recompile_limit (8) different models it silently
            # runs eager (measured: the 9th model trained uncompiled). Trials run one after another
            # in a worker, so start from an empty cache; another live compiled TrainStep would only
            # recompile on its next step (time, not correctness).
            torch.compiler.reset()
        self._forward_loss: Callable[..., tuple[torch.Tensor, torch.Tensor]] = (
            torch.compile(_forward_loss, mode=self._mode) if compile else _forward_loss
        )
        self._loss_sum = torch.zeros((), dtype=_sum_dtype(self.device), device=self.device)
        self._correct = torch.zeros((), dtype=torch.int64, device=self.device)
        self._samples = 0  # batch sizes are known on the host: counting them needs no sync

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimisation step on the batch (x: N,C,H,W float; y: N int64). Never syncs."""
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self._memory_format)
        y = y.to(self.device, non_blocking=True)
        if self._mode == "reduce-overhead":
            # Tell CUDA-graph trees a new iteration starts, so last step's outputs may be reused.
            torch.compiler.cudagraph_mark_step_begin()
        loss, correct = self._forward_loss(self.model, x, y, self._dtype)
        self.optimizer.zero_grad(set_to_none=True)
        if self._scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self._scaler.scale(loss).backward()
            self._scaler.step(self.optimizer)
            self._scaler.update()
        self._loss_sum += loss.detach() * y.shape[0]
        self._correct += correct
        self._samples += y.shape[0]

    def pop_metrics(self) -> dict[str, float | int]:
        """Mean training loss and top-1 error (fraction) since the last call; one host sync.

        With no step since the last call, loss and error are NaN and samples is 0.
        """
        sums = torch.stack([self._loss_sum, self._correct.to(self._loss_sum.dtype)]).tolist()
        samples = self._samples
        self._loss_sum.zero_()
        self._correct.zero_()
        self._samples = 0
        if samples == 0:
            return {"train_loss": float("nan"), "train_error": float("nan"), "samples": 0}
        return {
            "train_loss": sums[0] / samples,
            "train_error": 1.0 - sums[1] / samples,
            "samples": samples,
        }


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str,
    precision: str = "fp32",
    channels_last: bool = False,
) -> dict[str, float]:
    """Mean cross-entropy, top-1 and top-5 error (fractions in [0, 1]) of `model` over `loader`.

    Runs in eval mode (BatchNorm uses its running statistics) under `torch.inference_mode`, sums on
    the device and syncs once at the end; the model's previous train/eval mode is restored. With
    fewer than 5 classes, top-5 error is the top-k error for k = number of classes (i.e. 0).
    """
    device = torch.device(device)
    dtype = autocast_dtype(precision, device)
    layout = memory_format(channels_last)
    if channels_last:
        model.to(memory_format=layout)  # a no-op when TrainStep already converted it
    loss_sum = torch.zeros((), dtype=_sum_dtype(device), device=device)
    wrong = torch.zeros(2, dtype=torch.int64, device=device)  # top-1, top-5
    samples = 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for x, y in loader:
                # (B, V, C, H, W): V crops per image, the paper's 10-crop testing (Section 3.4):
                # the softmax is averaged over the crops, and log(mean softmax) scores the image.
                views = x.shape[1] if x.dim() == 5 else 1
                x = x.flatten(0, 1) if views > 1 else x
                x = x.to(device, non_blocking=True).contiguous(memory_format=layout)
                y = y.to(device, non_blocking=True)
                with autocast(device, dtype):
                    logits = model(x)
                logits = logits.float()
                if views > 1:
                    logits = logits.view(-1, views, logits.shape[-1]).softmax(dim=-1).mean(dim=1).log()
                loss_sum += F.cross_entropy(logits, y, reduction="sum")
                k = min(5, logits.shape[1])
                top = logits.topk(k, dim=1).indices
                hit = top == y.unsqueeze(1)
                wrong[0] += (~hit[:, 0]).sum()
                wrong[1] += (~hit.any(dim=1)).sum()
                samples += y.shape[0]
    finally:
        model.train(was_training)
    if samples == 0:
        raise BenchmarkError("evaluate: the evaluation loader yielded no batches")
    loss, top1, top5 = torch.cat([loss_sum.view(1), wrong.to(loss_sum.dtype)]).tolist()
    return {"loss": loss / samples, "top1_error": top1 / samples, "top5_error": top5 / samples}
