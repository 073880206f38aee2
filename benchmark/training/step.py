"""One training step and one evaluation pass, device- and precision-agnostic.

The nets of the paper's CIFAR-10 experiments are tiny (ResNet-56 is about 0.125 G mult-adds per
image, DESIGN "Facts that matter"), so on a GPU a step is bound by kernel launches and host
round-trips rather than arithmetic. Hence the rule of this module: nothing inside `TrainStep.step`
waits for the device (no `.item()`, no `float(tensor)`, no `if tensor:`). Loss, correct count and
the count of steps whose loss was not finite are summed in device tensors and read once per
evaluation interval by `pop_metrics`. A step with a NaN/inf loss is therefore counted, not raised;
whether the run has diverged is the caller's judgement (`benchmark.training.train.judge_divergence`), made
from those counts and `state_is_finite`.

The levers DESIGN names for small convs are all here: channels-last memory format, bf16/fp16
autocast, and `torch.compile` (with CUDA graphs on a GPU, see `compile_mode`, verified after the
first steps by `TrainStep.verify_cuda_graphs`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchmark import BenchmarkError
from benchmark.hardware import PRECISIONS

# One autocast dtype per precision name the hardware module knows (benchmark/hardware/precision.py).
_AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
log = logging.getLogger(__name__)

# The per-step sums `_forward_loss` returns, in this order: loss x batch size over the steps whose
# loss was finite, top-1 correct, the samples of those finite steps, and the non-finite steps.
_LOSS_SUM, _CORRECT, _FINITE_SAMPLES, _NONFINITE_STEPS = range(4)


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


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """The loss scaler fp16 needs (its 5-bit exponent underflows small gradients), else None.

    A step whose scaled gradients overflow is skipped by the scaler, which then halves the scale:
    one such step is routine, not divergence.
    """
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def _forward_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy (what is differentiated) and the batch's metric sums (float32, ordered
    as `_LOSS_SUM` ...): a non-finite loss adds to the non-finite count, not to the loss sum.

    Kept as one function so that `torch.compile` fuses the loss, the argmax and the sums with the
    net, leaving one accumulation per step outside the graph.
    """
    with autocast(x.device, dtype):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    finite = torch.isfinite(loss.detach())
    batch = y.shape[0]
    correct = (logits.argmax(dim=1) == y).sum()
    sums = torch.stack([
        torch.where(finite, loss.detach() * batch, 0.0),
        correct.float(),
        finite.float() * batch,
        (~finite).float(),
    ])
    return loss, sums


class TrainStep:
    """Forward, cross-entropy, backward and optimizer step, with metrics kept on the device.

    The caller owns the learning-rate schedule: it writes plain floats into
    `optimizer.param_groups[i]["lr"]` before each `step` (no recompilation: the optimizer step
    is not compiled).

    `model` is moved to `device` (and to channels-last if asked) here, once; `optimizer` may have
    been built before that, since `Module.to` keeps the same Parameter objects.

    fp16 on CUDA uses a GradScaler (`grad_scaler`); its state travels with checkpoints through
    `scaler_state_dict`. Note: `GradScaler.step` reads its inf check on the host (one sync per
    step) unless the optimizer does the unscale itself, i.e. `torch.optim.SGD(..., fused=True)`;
    bf16 needs no scaler and has no such sync.

    With compile on CUDA (mode "reduce-overhead"), `verify_cuda_graphs` checks after the first
    steps that the graphs were captured and update the model's own BN buffers, and falls back to
    the compiled step without CUDA graphs if not; `cuda_graphs` says which: "off" (eager, or no
    CUDA), "unchecked", "captured" or "fallback".
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        device: torch.device | str,
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool = False,
        wrap: Callable[[nn.Module], nn.Module] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self._dtype = autocast_dtype(precision, self.device)
        self._memory_format = memory_format(channels_last)
        self.model = model.to(self.device, memory_format=self._memory_format)
        # Train mode is set once, not per step (a recursive walk over the modules costs host time a
        # launch-bound GPU step cannot spare); `evaluate` restores it after switching to eval.
        self.model.train()
        # What the step runs: the model, or a data-parallel wrapper of it (`wrap`, benchmark/training/data_parallel.py:
        # DDP, after the move to the device). `model` stays the plain module: checkpoints, evaluation
        # and BN checks use it, and evaluation then runs no collective.
        self._net = wrap(self.model) if wrap is not None else self.model
        self.optimizer = optimizer
        self._scaler = grad_scaler(precision, self.device)
        self._mode = compile_mode(self.device) if compile else None
        if self._net is not self.model and self._mode == "reduce-overhead":
            # DDP's gradient all-reduce runs between backward kernels; a CUDA graph cannot capture
            # it safely, so data-parallel trials compile in the default mode, without CUDA graphs.
            self._mode = None
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
        self._sums = torch.zeros(4, dtype=_sum_dtype(self.device), device=self.device)
        self._samples = self._steps = 0  # known on the host: counting them needs no sync
        self._steps_run = 0
        self.cuda_graphs = "unchecked" if self.uses_cuda_graphs else "off"
        # What CUDA graphs are checked against, taken at the first step (after any checkpoint was
        # loaded): the skips counted so far, and BN's step counters (a device copy: no sync).
        self._graph_baseline: tuple[int, torch.Tensor] | None = None

    @property
    def uses_cuda_graphs(self) -> bool:
        return self._mode == "reduce-overhead"

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimisation step on the batch (x: N,C,H,W float; y: N int64). Never syncs."""
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self._memory_format)
        y = y.to(self.device, non_blocking=True)
        if self._mode == "reduce-overhead":
            if self._graph_baseline is None:
                self._graph_baseline = (cudagraph_skips(), bn_step_counts(self.model))
            # Tell CUDA-graph trees a new iteration starts, so last step's outputs may be reused.
            torch.compiler.cudagraph_mark_step_begin()
        loss, sums = self._forward_loss(self._net, x, y, self._dtype)
        self.optimizer.zero_grad(set_to_none=True)
        if self._scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self._scaler.scale(loss).backward()
            self._scaler.step(self.optimizer)
            self._scaler.update()
        self._sums += sums
        self._samples += y.shape[0]
        self._steps += 1
        self._steps_run += 1

    def pop_metrics(self) -> dict[str, float | int]:
        """The metrics since the last call; one host sync. `train_loss` is the mean over the steps
        whose loss was finite (NaN if none was), `train_error` the top-1 error (fraction) over all
        `samples`; `loss_samples` counts the samples the loss averages, `nonfinite_steps` the
        `steps` whose loss was NaN or infinite.
        """
        sums = self._sums.tolist()
        samples, steps = self._samples, self._steps
        self._sums.zero_()
        self._samples = self._steps = 0
        loss_samples = int(sums[_FINITE_SAMPLES])
        return {
            "train_loss": sums[_LOSS_SUM] / loss_samples if loss_samples else float("nan"),
            "train_error": 1.0 - sums[_CORRECT] / samples if samples else float("nan"),
            "samples": samples,
            "loss_samples": loss_samples,
            "steps": steps,
            "nonfinite_steps": int(sums[_NONFINITE_STEPS]),
        }

    def scaler_state_dict(self) -> dict[str, float | int] | None:
        """The GradScaler's state (plain floats and ints: the scale and its growth tracker), or
        None without one; a resumed fp16 trial continues with the scale it had."""
        return self._scaler.state_dict() if self._scaler is not None else None

    def load_scaler_state_dict(self, state: dict[str, float | int] | None) -> None:
        if self._scaler is not None and state:
            self._scaler.load_state_dict(state)

    def verify_cuda_graphs(self) -> str:
        """Check, once, that CUDA graphs were captured and advance BN's own statistics; on a problem,
        log it and fall back to the compiled step without CUDA graphs. Reads the device (call it
        between steps, after a few of them). Returns `cuda_graphs`."""
        if self.cuda_graphs != "unchecked" or self._graph_baseline is None:
            return self.cuda_graphs  # nothing to check, checked already, or no step yet
        skips, tracked = self._graph_baseline
        problem = cuda_graph_problem(cudagraph_skips() - skips, tracked.tolist(), bn_step_counts(self.model).tolist(),
                                     self._steps_run)
        if problem is None:
            self.cuda_graphs = "captured"
            return self.cuda_graphs
        log.warning("CUDA graphs off for this trial, compiled step kept: %s", problem)
        torch.compiler.reset()
        self._mode = None
        self._forward_loss = torch.compile(_forward_loss, mode=None)
        self.cuda_graphs = "fallback"
        return self.cuda_graphs


def cudagraph_skips() -> int:
    """How many compiled graphs inductor has declined to run as CUDA graphs in this process (its
    `cudagraph_skips` counter; torch logs each skip's reason as a warning)."""
    from torch._dynamo.utils import counters

    return int(counters["inductor"]["cudagraph_skips"])


def bn_step_counts(model: nn.Module) -> torch.Tensor:
    """Each BatchNorm layer's `num_batches_tracked`, copied into one device tensor (no sync)."""
    counts = [m.num_batches_tracked for m in model.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.num_batches_tracked is not None]
    return torch.stack(counts) if counts else torch.zeros(0, dtype=torch.int64)


def cuda_graph_problem(new_skips: int, tracked_before: list[int], tracked_after: list[int], steps: int) -> str | None:
    """Why the CUDA graphs of a compiled step cannot be trusted, or None.

    Two ways they fail silently: inductor skips a graph (it then runs without one, slower but
    correct), or a graph updates a copy of BN's running statistics, which would leave the model's
    own buffers stale and corrupt every evaluation; then `num_batches_tracked` does not advance
    by one per training step.
    """
    if new_skips > 0:
        return f"inductor skipped {new_skips} CUDA graph(s) (its warnings above say why)"
    stale = [(before, after) for before, after in zip(tracked_before, tracked_after) if after - before != steps]
    if stale:
        before, after = stale[0]
        return (f"BatchNorm's num_batches_tracked advanced by {after - before} instead of {steps} in "
                f"{len(stale)} of {len(tracked_before)} layers: the graphs update a copy of its statistics")
    return None


def state_is_finite(model: nn.Module) -> bool:
    """Whether every parameter and floating-point buffer (BN's running statistics) is finite.

    One host sync. A NaN weight never recovers: every later step is NaN too. (A skipped fp16
    step leaves the weights as they were, so they stay finite.)
    """
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()) if tensors else True


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str,
    precision: str = "fp32",
    channels_last: bool = False,
) -> dict[str, float]:
    """Mean cross-entropy, top-1 and top-5 error (fractions in [0, 1]) of `model` over `loader`, and
    the number of images (`samples`: data-parallel ranks add up their shares).

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
    return {"loss": loss / samples, "top1_error": top1 / samples, "top5_error": top5 / samples, "samples": samples}
