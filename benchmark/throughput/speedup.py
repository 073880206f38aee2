"""The epoch speedup (issue #6): this project's training path against the usual PyTorch loop.

- The baseline: the usual PyTorch CIFAR reproduction (akamaster/pytorch_resnet_cifar10's trainer:
  a torch DataLoader with torchvision transforms, an eager fp32 loop that reads the loss and the
  accuracy with `.item()` every step), fed by `build_loaders(..., loader="torch")`.
- The fast path: `build_loaders(..., loader="device")` (the dataset as one tensor, crop and flip as
  batched tensor ops) + `TrainStep(channels_last=True, compile=True)` in the given precision.

A whole epoch takes minutes on 2 CPU cores, so each side runs `steps` steps of batch 128 after its
warm-up (worker start-up for the baseline, compilation for the fast path, reported but not timed),
in alternating rounds so that load from other users of the machine hits both sides alike.
`tests/benchmarks/test_bench_step.py` (goals: ResNet-20 >= 1.5x on a CPU, ResNet-56 >= 4x on a
GPU) and `python -m benchmark gpu-check` both measure with `EpochComparison`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice

import torch
import torch.nn.functional as F

from benchmark import BenchmarkError
from benchmark.data import CifarData, build_loaders
from benchmark.models import build_model
from benchmark.training.step import TrainStep

BATCH = 128  # the paper's CIFAR-10 batch (Section 4.2)
EPOCH_IMAGES = 50_000


@contextmanager
def cudnn_autotune(device: torch.device) -> Iterator[None]:
    """Both sides let cuDNN pick its fastest kernels on a GPU, as akamaster's trainer and
    `train_trial` do; TF32 stays at PyTorch's defaults, which the usual loop runs with."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = device.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    # Section 4.2: SGD, lr 0.1, momentum 0.9, weight decay 1e-4.
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)


def baseline_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   batches: Iterator[tuple[torch.Tensor, torch.Tensor]], count: int) -> int:
    """akamaster's `train()`: eager fp32, loss and top-1 read on the host every step; returns images."""
    model.train()
    losses, correct, seen = 0.0, 0, 0
    for images, target in islice(batches, count):
        output = model(images)
        loss = F.cross_entropy(output, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses += loss.item() * images.size(0)
        correct += (output.argmax(1) == target).sum().item()
        seen += images.size(0)
    return seen


class EpochComparison:
    """Both sides of the comparison for one model, measured round by round.

    Call `warm_up()` once, then `baseline_round()` and `fast_round()` alternately; `result()` gives
    both rates, their ratio and the compile time. Each round times itself (`time.perf_counter`,
    ended by a host sync: the baseline syncs every step, the fast path once per round as the
    trainer does per evaluation interval).
    """

    def __init__(self, model_name: str, data: CifarData, device: torch.device, precision: str = "bf16",
                 steps: int = 10, warmup: int = 5, baseline_workers: int = 2, compile: bool = True) -> None:
        self.model_name, self.data, self.device, self.precision = model_name, data, device, precision
        self.steps, self.warmup, self.baseline_workers = steps, warmup, baseline_workers
        torch.manual_seed(0)
        self.base_model = build_model(model_name).to(device)
        self.base_optimizer = sgd(self.base_model)
        torch.manual_seed(0)
        fast_model = build_model(model_name)
        self.fast = TrainStep(fast_model, sgd(fast_model), device, precision=precision, channels_last=True, compile=compile)
        fast_loader, _ = build_loaders(data, loader="device", batch_size=BATCH, device=device, seed=0)
        self._fast_batches = fast_loader.endless()
        self.compile_s = 0.0
        self.baseline_s: list[float] = []
        self.fast_s: list[float] = []

    def warm_up(self) -> None:
        """The fast path's warm-up steps (compilation: forward, then backward), timed as `compile_s`."""
        started = time.perf_counter()
        for x, y in islice(self._fast_batches, self.warmup):
            self.fast.step(x, y)
        self.fast.pop_metrics()
        self.compile_s = time.perf_counter() - started

    def baseline_round(self) -> None:
        # A fresh DataLoader per round: worker start-up and the first batches are its warm-up.
        train_loader, _ = build_loaders(self.data, loader="torch", batch_size=BATCH, device=self.device, seed=0,
                                        num_workers=self.baseline_workers)
        batches = iter(train_loader.epoch(0))
        baseline_steps(self.base_model, self.base_optimizer, batches, self.warmup)
        started = time.perf_counter()
        seen = baseline_steps(self.base_model, self.base_optimizer, batches, self.steps)
        self.baseline_s.append(time.perf_counter() - started)
        if seen != self.steps * BATCH:
            raise BenchmarkError(f"epoch speedup: {len(self.data.y_train)} training images are fewer than the "
                                 f"{self.warmup + self.steps} batches of {BATCH} a baseline round needs")
        del batches  # stop the workers before the fast side runs

    def fast_round(self) -> None:
        started = time.perf_counter()
        for x, y in islice(self._fast_batches, self.steps):
            self.fast.step(x, y)
        self.fast.pop_metrics()  # one host sync per round, as the trainer does per eval interval
        self.fast_s.append(time.perf_counter() - started)

    def result(self) -> dict[str, float | str]:
        baseline_rate = BATCH * self.steps * len(self.baseline_s) / sum(self.baseline_s)
        fast_rate = BATCH * self.steps * len(self.fast_s) / sum(self.fast_s)
        # The first epoch also pays for compilation; later epochs do not.
        first_epoch = (EPOCH_IMAGES / baseline_rate) / (self.compile_s + EPOCH_IMAGES / fast_rate)
        return {
            "model": self.model_name, "data_source": self.data.source, "fast_precision": self.precision,
            "baseline_images_per_s": round(baseline_rate, 1), "fast_images_per_s": round(fast_rate, 1),
            "speedup": round(fast_rate / baseline_rate, 3), "compile_warmup_s": round(self.compile_s, 1),
            "first_epoch_speedup": round(first_epoch, 2),
        }


def measure_epoch_speedup(model_name: str, data: CifarData, device: torch.device, precision: str = "bf16",
                          steps: int = 10, warmup: int = 5, rounds: int = 4, baseline_workers: int = 2,
                          compile: bool = True) -> dict[str, float | str]:
    """`rounds` alternating rounds of both sides after the fast path's warm-up; `EpochComparison.result()`."""
    comparison = EpochComparison(model_name, data, device, precision, steps, warmup, baseline_workers, compile)
    comparison.warm_up()
    for _ in range(rounds):
        comparison.baseline_round()
        comparison.fast_round()
    return comparison.result()
