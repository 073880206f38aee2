"""The Ray executor's overhead over the in-process executor, side by side in one run.

Goal (issue #4): on a suite of 8 short trials, Ray's wall time is at most 20% above the local
executor's. Both run the same suite file into separate results folders; Ray starts its private
local instance inside the measured time.

    .venv/bin/python -m pytest tests/benchmarks/test_bench_fleet.py --benchmark-only -s
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmark.fleet import run_suite
from benchmark.spec import load_suite

SUITE = """\
name: fleet8
data: {dataset: cifar10, source: synthetic, train_subset: 2000, eval_subset: 400}
loader: device
recipe: {name: cifar10_he2015, batch_size: 64, max_steps: 120}
grid: {model: [plain20, resnet20, plain32, resnet32]}
seeds: [0, 1]
resources: {cpu: 1}
eval_every: 40
eval_batch_size: 400
"""

WALL: dict[str, float] = {}


def silent(line: str) -> None:
    """Console output off (a named function: Tune may pickle the callback that holds it)."""


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_fleet_wall_time(benchmark, tmp_path: Path, executor: str) -> None:
    path = tmp_path / "fleet8.yaml"
    path.write_text(SUITE)
    suite = load_suite(path)
    assert len(suite.trials()) == 8

    def run() -> dict[str, str]:
        start = time.perf_counter()
        statuses = run_suite(suite, results_root=tmp_path / "results", executor=executor, out=silent)
        WALL[executor] = time.perf_counter() - start
        return statuses

    statuses = benchmark.pedantic(run, rounds=1, iterations=1)
    assert set(statuses.values()) == {"completed"}
    benchmark.extra_info["wall_s"] = WALL[executor]
    if len(WALL) == 2:
        overhead = WALL["ray"] / WALL["local"] - 1
        print(f"\nfleet of 8 trials: local {WALL['local']:.1f} s, ray {WALL['ray']:.1f} s, Ray overhead {100 * overhead:+.1f}% (goal <= +20%)")
        benchmark.extra_info["ray_overhead"] = overhead
