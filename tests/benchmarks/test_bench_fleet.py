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

from benchmark.fleet.runner import run_suite
from benchmark.suite.spec import load_suite

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

GOAL = 0.20  # Ray's wall time at most 20% above the local executor's


def silent(line: str) -> None:
    """Console output off (a named function: Tune may pickle the callback that holds it)."""


def test_ray_overhead(benchmark, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "fleet8.yaml"
    path.write_text(SUITE)
    suite = load_suite(path)
    assert len(suite.trials()) == 8
    wall: dict[str, float] = {}

    def run(executor: str) -> None:
        start = time.perf_counter()
        statuses = run_suite(suite, results_root=tmp_path / executor, executor=executor, out=silent)
        wall[executor] = time.perf_counter() - start
        assert set(statuses.values()) == {"completed"}, statuses

    # pytest-benchmark times the Ray side; the local side runs in its (untimed) setup, just before.
    benchmark.pedantic(run, args=("ray",), setup=lambda: run("local"), rounds=1, iterations=1)
    overhead = wall["ray"] / wall["local"] - 1
    benchmark.extra_info.update(local_wall_s=wall["local"], ray_wall_s=wall["ray"], ray_overhead=overhead)
    print(f"\nfleet of 8 trials: local {wall['local']:.1f} s, ray {wall['ray']:.1f} s, "
          f"Ray overhead {100 * overhead:+.1f}% (goal <= +{100 * GOAL:.0f}%)")
    assert overhead <= GOAL, f"Ray took {100 * overhead:+.1f}% longer than the local executor (goal <= +{100 * GOAL:.0f}%)"


def test_two_node_cluster_start(benchmark) -> None:  # noqa: ANN001
    """What joining a two-node cluster costs against starting the private instance, side by side:
    each from nothing to a connected driver that sees its nodes, then stopped."""
    import os

    from benchmark.fleet.ray_cluster import connect

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from ray.cluster_utils import Cluster

    wall: dict[str, float] = {}

    def private() -> None:
        start = time.perf_counter()
        connection = connect(None, num_cpus=2)
        assert len(connection.nodes()) == 1
        wall["private"] = time.perf_counter() - start
        connection.close()

    def two_nodes() -> None:
        start = time.perf_counter()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        connection = connect(cluster.address)  # probed first, as `--ray-address` is
        assert len(connection.nodes()) == 2
        wall["two_nodes"] = time.perf_counter() - start
        connection.close()
        cluster.shutdown()

    benchmark.pedantic(two_nodes, setup=private, rounds=1, iterations=1)
    benchmark.extra_info.update(private_start_s=wall["private"], two_node_start_s=wall["two_nodes"])
    print(f"\nRay start: private instance {wall['private']:.1f} s, two-node cluster joined through "
          f"--ray-address {wall['two_nodes']:.1f} s ({wall['two_nodes'] / wall['private']:.1f}x)")
