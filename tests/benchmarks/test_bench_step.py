"""Training-step and training-"epoch" speed on this machine's device: the GPU if there is one, else
the CPU (issue #6).

    .venv/bin/python -m pytest tests/benchmarks/test_bench_step.py --benchmark-only -s

1. `test_train_step`: the step alone (batch 128 already in memory) for ResNet-20: eager fp32,
   channels-last, channels-last + torch.compile. DESIGN "Facts that matter" measured about
   490 / 595 / 690 img/s on these 2-core machines.
2. `test_epoch_speedup`: the goal of the issue, measured side by side in one run: a CIFAR-10
   training stretch (loader plus steps) with
   - the baseline: the usual PyTorch CIFAR reproduction (akamaster/pytorch_resnet_cifar10's
     trainer: a torch DataLoader with torchvision transforms, an eager fp32 loop that reads the loss
     and accuracy with `.item()` every step), fed by `build_loaders(..., loader="torch")`;
   - the fast path: `build_loaders(..., loader="device")` (the dataset as one tensor, crop and flip
     as batched tensor ops) + `TrainStep(channels_last=True, compile=True)`.
   A whole epoch takes minutes on 2 cores, so each side runs STEPS steps of batch 128 after its
   warm-up (worker start-up for the baseline, compilation for the fast path, both reported but not
   timed), in ROUNDS alternating rounds so that load from other users of the machine hits both
   sides alike. The goals, asserted: on a CPU, ResNet-20 >= 1.5x (ResNet-56 is reported alongside:
   its step costs 3x more, so the loader's share, and the gain, are smaller); on a GPU, ResNet-56
   >= 4x, where the fast path (CUDA graphs through compile mode "reduce-overhead") removes the
   launch and host-sync overhead that bounds the eager loop (DESIGN "Facts that matter").

pytest-benchmark times the fast side (the benchmarked function); the baseline side runs in the
round's `setup` (untimed by pytest-benchmark) and is timed here with `time.perf_counter`. Both
rates, the ratio and the compile time go to `extra_info` (see `--benchmark-json`) and are printed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import islice

import pytest
import torch
import torch.nn.functional as F

from benchmark.data import build_loaders, load_cifar10
from benchmark.errors import DataError
from benchmark.hardware import fast_precision, identify
from benchmark.models import build_model
from benchmark.step import TrainStep

BATCH = 128          # the paper's CIFAR-10 batch (Section 4.2)
STEP_WARMUP = 5      # eager steps before timing the step alone
STEP_ROUNDS = 15
STEPS = 10           # timed steps per side per round of the epoch comparison
ROUNDS = 4           # -> 40 timed steps of each side
EPOCH_WARMUP = 5     # untimed steps of each side before its timed ones (compile happens here)
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ON_GPU = DEVICE.type == "cuda"
# The baseline's DataLoader workers: akamaster's default (4) where a GPU machine has the cores for
# it; on the 2-core CPU machines, one per core.
BASELINE_WORKERS = 4 if ON_GPU else 2
if ON_GPU:  # a GPU step is ~100x faster: more steps per round for a stable rate
    STEPS, EPOCH_WARMUP = 50, 20


@pytest.fixture(autouse=True, scope="module")
def cudnn_autotune():  # noqa: ANN201
    """Both sides let cuDNN pick its fastest kernels, as akamaster's trainer and `train_trial` do."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = ON_GPU
    yield
    torch.backends.cudnn.benchmark = before


def sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    # Section 4.2: SGD, lr 0.1, momentum 0.9, weight decay 1e-4.
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)


@pytest.mark.parametrize(
    ("channels_last", "compile"), [(False, False), (True, False), (True, True)],
    ids=["eager", "channels_last", "channels_last+compile"],
)
def test_train_step(benchmark, channels_last: bool, compile: bool) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = build_model("resnet20")
    step = TrainStep(model, sgd(model), DEVICE, channels_last=channels_last, compile=compile)
    x, y = torch.randn(BATCH, 3, 32, 32, device=DEVICE), torch.randint(0, 10, (BATCH,), device=DEVICE)
    started = time.perf_counter()
    for _ in range(STEP_WARMUP):
        step.step(x, y)
    warmup_s = time.perf_counter() - started
    benchmark.group = f"train step, resnet20, batch 128, {DEVICE.type} fp32"
    run_step = step.step if not ON_GPU else lambda x, y: (step.step(x, y), torch.cuda.synchronize())
    benchmark.pedantic(run_step, args=(x, y), rounds=STEP_ROUNDS, iterations=1)
    assert step.pop_metrics()["samples"] == BATCH * (STEP_WARMUP + STEP_ROUNDS)
    images_per_s = BATCH / benchmark.stats.stats.median
    benchmark.extra_info.update(images_per_s=round(images_per_s, 1), warmup_s=round(warmup_s, 1))
    print(f"\nresnet20 step channels_last={channels_last} compile={compile}: {images_per_s:.0f} img/s "
          f"(median of {STEP_ROUNDS}; warm-up {warmup_s:.1f} s)")


@pytest.fixture(scope="module")
def cifar():  # noqa: ANN201
    """The real JPEG CIFAR-10 (decoded once, cached by the data module), else synthetic."""
    try:
        return load_cifar10("jpeg75")
    except DataError as exc:
        print(f"\njpeg75 CIFAR-10 unavailable ({exc}); using synthetic images of the same shape")
        return load_cifar10("synthetic", synthetic_size=BATCH * 100)


def baseline_batches(cifar) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # noqa: ANN001
    train_loader, _ = build_loaders(cifar, loader="torch", batch_size=BATCH, device=DEVICE, seed=0,
                                    num_workers=BASELINE_WORKERS)
    return iter(train_loader.epoch(0))


def baseline_steps(model, optimizer, batches, count: int) -> None:  # noqa: ANN001
    """akamaster's `train()`: eager fp32, loss and top-1 read on the host every step."""
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
    assert seen == count * BATCH


# The goals (issue #6: >= 1.5x for ResNet-20 on a CPU, >= 4x for ResNet-56 on a GPU) are asserted on
# the fast step this machine would actually train with (issue 13): channels-last, torch.compile and
# the precision `benchmark.hardware` picks for it, bf16 autocast where bf16 is native, else fp32 (on
# a CPU that emulates bf16 its bf16 row is still measured and printed, never asserted). On the
# AVX-512 development machine that is bf16; its fp32 row lands at 1.48-1.54x there.
GOALS = {"cpu": {"resnet20": 1.5}, "cuda": {"resnet56": 4.0}}[DEVICE.type]
MACHINE_PRECISION = fast_precision(identify(DEVICE))


@pytest.mark.parametrize(("model_name", "precision"), [
    ("resnet20", "fp32"), ("resnet20", "bf16"), ("resnet56", "fp32"), ("resnet56", "bf16")])
def test_epoch_speedup(benchmark, cifar, model_name: str, precision: str) -> None:  # noqa: ANN001
    goal = GOALS.get(model_name) if precision == MACHINE_PRECISION else None
    torch.manual_seed(0)
    base_model = build_model(model_name).to(DEVICE)
    base_optimizer = sgd(base_model)
    torch.manual_seed(0)
    fast_model = build_model(model_name)
    fast = TrainStep(fast_model, sgd(fast_model), DEVICE, precision=precision, channels_last=True, compile=True)
    fast_loader, _ = build_loaders(cifar, loader="device", batch_size=BATCH, device=DEVICE, seed=0)
    fast_batches = iter(fast_loader.epoch(0))

    started = time.perf_counter()
    for x, y in islice(fast_batches, EPOCH_WARMUP):  # compiles forward, then backward
        fast.step(x, y)
    fast.pop_metrics()
    compile_s = time.perf_counter() - started

    baseline_s: list[float] = []

    def run_baseline_round() -> None:
        # A fresh DataLoader per round: worker start-up and the first batches are warm-up.
        batches = baseline_batches(cifar)
        baseline_steps(base_model, base_optimizer, batches, EPOCH_WARMUP)
        started = time.perf_counter()
        baseline_steps(base_model, base_optimizer, batches, STEPS)
        baseline_s.append(time.perf_counter() - started)
        del batches  # stop the workers before the fast side runs

    def run_fast_round() -> None:
        for x, y in islice(fast_batches, STEPS):
            fast.step(x, y)
        fast.pop_metrics()  # one host sync per round, as the trainer does per eval interval

    benchmark.group = f"training stretch, {model_name}, batch 128, {DEVICE.type}, fast path {precision}"
    benchmark.pedantic(run_fast_round, setup=run_baseline_round, rounds=ROUNDS, iterations=1)

    baseline_rate = BATCH * STEPS * ROUNDS / sum(baseline_s)
    fast_rate = BATCH * STEPS * ROUNDS / (benchmark.stats.stats.mean * ROUNDS)
    ratio = fast_rate / baseline_rate
    epoch_steps = 50_000 // BATCH
    # The first epoch also pays for compilation; later epochs do not.
    first_epoch_ratio = (epoch_steps * BATCH / baseline_rate) / (compile_s + epoch_steps * BATCH / fast_rate)
    benchmark.extra_info.update(
        data_source=cifar.source, fast_precision=precision, baseline_images_per_s=round(baseline_rate, 1),
        fast_images_per_s=round(fast_rate, 1), speedup=round(ratio, 2), compile_warmup_s=round(compile_s, 1),
        first_epoch_speedup=round(first_epoch_ratio, 2),
    )
    print(f"\n{model_name} on {cifar.source}: baseline (eager fp32, DataLoader) {baseline_rate:.0f} img/s, "
          f"fast ({precision}, channels-last, compiled, device loader) {fast_rate:.0f} img/s, "
          f"speedup {ratio:.2f}x (goal {goal or 'none'}); compile warm-up {compile_s:.0f} s, "
          f"first epoch incl. compile {first_epoch_ratio:.2f}x")
    if goal is not None:
        assert ratio >= goal, f"{model_name}: fast path only {ratio:.2f}x the baseline (goal {goal}x)"
