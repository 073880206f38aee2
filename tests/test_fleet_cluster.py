"""The fleet on a genuine multi-node Ray cluster on this machine (`ray.cluster_utils.Cluster`: a
head and worker nodes, each a raylet of its own with its own resources), joined through
`--ray-address` as a user's cluster would be."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fleet_support import (check_complete, local_cluster, read_tables, rows_of, run_command, start_driver, tiny_suite,
                           wait_for)

from benchmark.__main__ import main

SLOT_NODE = {"num_cpus": 1, "resources": {"slot": 1}}
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fleet_cluster")]  # one pytest-xdist worker runs them, on one cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Any, list[Any]]]:
    """A head that runs no trial (no CPU, no `slot`), two worker nodes offering one trial `slot`
    each (yielded with the cluster), and a node with one GPU in Ray's books (logical: there is no
    CUDA here) for the tests of GPU placement, which slot trials never reach. Shared by the module's
    tests: one that kills a slot node replaces it in the list."""
    gpu_node = {"num_cpus": 1, "num_gpus": 1}
    with local_cluster(head={"num_cpus": 0}, workers=[SLOT_NODE, SLOT_NODE, gpu_node]) as (cluster, nodes):
        yield cluster, nodes[:2]


def test_a_suite_runs_on_both_nodes_of_a_cluster(tmp_path: Path, cluster) -> None:
    cluster, nodes = cluster
    suite = tiny_suite(tmp_path, steps=20, every=10, resources="{cpu: 1, custom: {slot: 1}}")
    assert main(["run", str(suite), "--ray-address", cluster.address, "--results", str(tmp_path / "results"), "--no-report"]) == 0
    runs, metrics = read_tables(tmp_path / "results" / "tiny")
    check_complete(runs, metrics, steps=20, every=10)
    node_ids = {node.node_id[:8] for node in nodes}
    assert {name.split("/")[1] for name in runs["node"]} == node_ids  # one trial on each worker node


def test_a_killed_node_s_trial_resumes_on_the_other_node_from_its_checkpoint(tmp_path: Path, cluster) -> None:
    cluster, nodes = cluster
    suite = tiny_suite(tmp_path, models="resnet20", steps=30, every=5, resources="{cpu: 1, custom: {slot: 1}}")
    results = tmp_path / "results"
    driver = start_driver(run_command(suite, results, "--ray-address", cluster.address))
    wait_for(lambda: rows_of(results / "tiny", "resnet20-A-s0") >= 3, driver)
    first_node = pd.read_csv(results / "tiny" / "runs.csv")["node"].iloc[0].split("/")[1]
    victim = next(node for node in nodes if node.node_id.startswith(first_node))
    survivor = next(node for node in nodes if node is not victim).node_id[:8]
    checkpointed = rows_of(results / "tiny", "resnet20-A-s0") * 5
    cluster.remove_node(victim, allow_graceful=False)  # the node dies mid-trial
    nodes[:] = [node for node in nodes if node is not victim]
    try:
        output, _ = driver.communicate(timeout=900)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        nodes.append(cluster.add_node(**SLOT_NODE))  # the next tests find two slot nodes again
    assert driver.returncode == 0, output
    runs, metrics = read_tables(results / "tiny")
    check_complete(runs, metrics, steps=30, every=5)  # no duplicate and no missing (trial, step)
    assert runs["node"].iloc[0].endswith(survivor)
    # resumed from its last stored checkpoint: nothing before it was trained again
    assert runs["start_step"].iloc[0] >= checkpointed


def test_four_quarter_gpu_trials_run_at_once_on_a_one_gpu_node(tmp_path: Path, cluster) -> None:
    cluster, _ = cluster  # its GPU node: a GPU in Ray's books, no CUDA on the machine
    from benchmark.fleet.runner import run_suite
    from benchmark.suite.spec import load_suite

    barrier = tmp_path / "barrier"
    barrier.mkdir()

    def placed_together(config: dict, arrays_ref: object = None, filesystem: object = None) -> None:
        # Each trial checks in, then waits until all four have: only trials running at once pass.
        import ray

        trial_id = config["trial"]["trial_id"]
        (barrier / trial_id).write_text(str(ray.get_gpu_ids()))
        deadline = time.monotonic() + 120
        while len(list(barrier.iterdir())) < 4:
            if time.monotonic() > deadline:
                raise TimeoutError("the four trials did not run at once")
            time.sleep(0.2)

    suite = load_suite(tiny_suite(tmp_path, models="resnet20", resources="{cpu: 0.25, gpu: 0.25}"), ["seeds=[0, 1, 2, 3]"])
    statuses = run_suite(suite, results_root=tmp_path / "results", ray_address=cluster.address, trainable=placed_together,
                         out=lambda line: None)
    assert sorted(p.name for p in barrier.iterdir()) == sorted(statuses)
    assert all(p.read_text() == "[0]" for p in barrier.iterdir())  # all four share GPU 0


def test_trials_that_fit_no_node_are_refused_before_anything_starts(tmp_path: Path, cluster, capsys) -> None:
    cluster, _ = cluster  # its GPU node: a GPU in Ray's books, no CUDA on the machine
    results = tmp_path / "results"
    for resources, message in (("{cpu: 1, gpu: 2}", "2 GPUs per trial, but a trial is one process on one device"),
                               ("{cpu: 2}", "a trial asks for CPU 2 (largest node: 1), and no node of the Ray cluster"),
                               ("{cpu: 1, gpu: 1, custom: {slot: 1}}", "a trial asks for CPU 1, GPU 1, slot 1, and no node")):
        suite = tiny_suite(tmp_path, resources=resources)
        assert main(["run", str(suite), "--ray-address", cluster.address, "--results", str(results)]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and message in error, error
    assert not results.exists()


def test_a_node_without_the_gpu_it_was_promised_fails_its_trial_in_one_line(tmp_path: Path, cluster, capsys) -> None:
    cluster, _ = cluster  # its GPU node: a GPU in Ray's books, no CUDA on the machine
    suite = tiny_suite(tmp_path, resources="{cpu: 0.5, gpu: 0.5}")
    assert main(["run", str(suite), "--ray-address", cluster.address, "--results", str(tmp_path / "r"), "--no-report"]) == 1
    runs = pd.read_csv(tmp_path / "r" / "tiny" / "runs.csv")
    assert list(runs["status"]) == ["failed", "failed"]  # both recorded: the fleet went on after the first
    assert runs["error"].str.contains(r"node \S+/[0-9a-f]{8}: trial \S+ asks for resources.gpu=0.5 but CUDA is not available").all()
