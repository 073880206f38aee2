"""Training-step and training-"epoch" speed on this machine's device: the GPU if there is one, else
the CPU (issue #6).

    .venv/bin/python -m pytest tests/benchmarks/test_bench_step.py --benchmark-only -s

1. `test_train_step`: the step alone (batch 128 already in memory) for ResNet-20: eager fp32,
   channels-last, channels-last + torch.compile. DESIGN "Facts that matter" measured about
   490 / 595 / 690 img/s on these 2-core machines.
2. `test_epoch_speedup`: the goal of the issue, measured side by side in one run by
   `benchmark.throughput.speedup.EpochComparison` (also used by `python -m benchmark gpu-check`): the usual
   PyTorch CIFAR loop (akamaster's trainer: torch DataLoader + torchvision transforms, eager fp32,
   `.item()` every step) against the device loader + `TrainStep(channels_last=True, compile=True)`,
   STEPS steps per side per round after each side's warm-up, in ROUNDS alternating rounds. The
   goals, asserted: on a CPU, ResNet-20 >= 1.5x (ResNet-56 is reported alongside: its step costs 3x
   more, so the loader's share, and the gain, are smaller); on a GPU, ResNet-56 >= 4x, where the
   fast path (CUDA graphs through compile mode "reduce-overhead") removes the launch and host-sync
   overhead that bounds the eager loop (DESIGN "Facts that matter").

pytest-benchmark times the fast side (the benchmarked function); the baseline side runs in the
round's `setup` (untimed by pytest-benchmark). Each side also times itself inside
`EpochComparison`, and the rates, the ratio and the compile time it reports go to `extra_info`
(see `--benchmark-json`) and are printed.
"""

from __future__ import annotations

import time

import pytest
import torch

from benchmark import DataError
from benchmark.data import load_cifar10
from benchmark.hardware import fast_precision, identify
from benchmark.models import build_model
from benchmark.throughput.speedup import BATCH, EpochComparison, cudnn_autotune, sgd
from benchmark.training.step import TrainStep

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
def autotune():  # noqa: ANN201
    with cudnn_autotune(DEVICE):
        yield


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
    comparison = EpochComparison(model_name, cifar, DEVICE, precision=precision, steps=STEPS, warmup=EPOCH_WARMUP,
                                 baseline_workers=BASELINE_WORKERS)
    comparison.warm_up()  # compiles forward, then backward
    benchmark.group = f"training stretch, {model_name}, batch 128, {DEVICE.type}, fast path {precision}"
    benchmark.pedantic(comparison.fast_round, setup=comparison.baseline_round, rounds=ROUNDS, iterations=1)
    result = comparison.result()
    benchmark.extra_info.update(result)
    ratio = result["speedup"]
    print(f"\n{model_name} on {cifar.source}: baseline (eager fp32, DataLoader) {result['baseline_images_per_s']:.0f} img/s, "
          f"fast ({precision}, channels-last, compiled, device loader) {result['fast_images_per_s']:.0f} img/s, "
          f"speedup {ratio:.2f}x (goal {goal or 'none'}); compile warm-up {result['compile_warmup_s']:.0f} s, "
          f"first epoch incl. compile {result['first_epoch_speedup']:.2f}x")
    if goal is not None:
        assert ratio >= goal, f"{model_name}: fast path only {ratio:.2f}x the baseline (goal {goal}x)"
