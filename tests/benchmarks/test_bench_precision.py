"""Is the CPU fast path the fast one on this machine? (issue 13)

    .venv/bin/python -m pytest tests/benchmarks/test_bench_precision.py --benchmark-only -s
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python -m pytest tests/benchmarks/test_bench_precision.py --benchmark-only -s

The training step alone (batch 128 in memory, one thread, as a CPU suite's trial runs) in fp32 and
bf16 autocast, each contiguous and channels-last, side by side: ROUNDS alternating rounds of STEPS
steps of every configuration, so that other users' load hits all alike, and the median step of each.
Asserted: the precision `benchmark.hardware.fast_precision` picks for this machine (bf16 where bf16
is native, else fp32) trains at least as fast as the other one, channels-last. The second command
imitates a CPU without AVX-512 on an AVX-512 one (ATen's and oneDNN's kernels capped to AVX2;
`hardware.identify` then reports no native bf16), where emulated bf16 was 12-19x slower than fp32.
Channels-last against contiguous is printed, not asserted (a few percent on an AVX2 machine).
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from benchmark.hardware import fast_precision, identify
from benchmark.models import build_model
from benchmark.training.step import TrainStep

BATCH = 128
ROUNDS = 3
STEPS = 2
CONFIGS = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]


@pytest.mark.parametrize("model_name", ["resnet20", "resnet56"])
def test_the_chosen_precision_is_the_faster_one_here(benchmark, model_name: str) -> None:  # noqa: ANN001
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        machine = identify("cpu")
        chosen = fast_precision(machine)
        x, y = torch.randn(BATCH, 3, 32, 32), torch.randint(0, 10, (BATCH,))
        steps = {}
        for precision, channels_last in CONFIGS:
            torch.manual_seed(0)
            model = build_model(model_name)
            step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), "cpu", precision,
                             channels_last=channels_last)
            step.step(x, y)  # allocation, kernel selection
            steps[(precision, channels_last)] = step
        times: dict[tuple[str, bool], list[float]] = {config: [] for config in CONFIGS}

        def other_configs() -> None:
            for config in CONFIGS:
                if config != (chosen, True):
                    for _ in range(STEPS):
                        started = time.perf_counter()
                        steps[config].step(x, y)
                        times[config].append(time.perf_counter() - started)

        def chosen_steps() -> None:
            for _ in range(STEPS):
                started = time.perf_counter()
                steps[(chosen, True)].step(x, y)
                times[(chosen, True)].append(time.perf_counter() - started)

        benchmark.group = f"training step, {model_name}, 1 thread, {machine.describe()}"
        benchmark.pedantic(chosen_steps, setup=other_configs, rounds=ROUNDS, iterations=1)
    finally:
        torch.set_num_threads(threads)
    rates = {config: BATCH / statistics.median(t) for config, t in times.items()}
    other = "fp32" if chosen == "bf16" else "bf16"
    print(f"\n{model_name} on {machine.describe()}: "
          + ", ".join(f"{p}{' channels-last' if cl else ''} {rate:.0f} img/s" for (p, cl), rate in rates.items())
          + f"; chosen {chosen}: {rates[(chosen, True)] / rates[(other, True)]:.2f}x {other}")
    benchmark.extra_info.update(device=machine.describe(), chosen=chosen,
                                **{f"{p}{'_channels_last' if cl else ''}": round(r, 1) for (p, cl), r in rates.items()})
    assert rates[(chosen, True)] >= rates[(other, True)], f"{chosen} is not the faster precision on {machine.describe()}"
