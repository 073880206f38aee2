"""Data-parallel trials (two gloo workers under Ray Train) on a genuine two-node Ray cluster on this
machine: CIFAR-10 through the device loader, resumed after a worker's node dies, and ImageNet
through FFCV on a tiny generated tree; and a killed driver's data-parallel trial resumed on a
private instance."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fleet_support import (REPO, check_complete, local_cluster, read_tables, recorded_step, replace_node, rows_of,
                           run_command, start_driver, tiny_suite, wait_for)

from benchmark.__main__ import main
from benchmark.fleet.ray_cluster import DRIVER_RESOURCE


WORKER_NODE = {"num_cpus": 1}
on_the_cluster = pytest.mark.xdist_group("data_parallel_cluster")  # one pytest-xdist worker runs them, on one cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Any, list[Any]]]:
    """A head that runs only trials' drivers (the driver resource, no CPU) and two one-CPU nodes
    (yielded with the cluster). Shared by the module's tests: one that kills a node replaces it."""
    with local_cluster(head={"num_cpus": 0, "resources": {DRIVER_RESOURCE: 100}}, workers=[WORKER_NODE] * 2) as shared:
        yield shared


@pytest.mark.slow
@on_the_cluster
def test_a_two_worker_trial_resumes_after_a_worker_node_dies(tmp_path: Path, cluster) -> None:
    cluster, nodes = cluster
    suite = tiny_suite(tmp_path, models="resnet20", steps=20, every=5, resources="{workers: 2, cpu: 1}")
    results = tmp_path / "results"
    driver = start_driver(run_command(suite, results, "--ray-address", cluster.address))
    try:
        wait_for(lambda: rows_of(results / "tiny", "resnet20-A-s0") >= 2, driver)
        checkpointed = rows_of(results / "tiny", "resnet20-A-s0") * 5
        # one rank's node dies mid-trial, and a replacement joins (as an autoscaler would bring one)
        nodes[0] = replace_node(cluster, nodes[0], **WORKER_NODE)
        output, _ = driver.communicate(timeout=900)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 0, output
    runs, metrics = read_tables(results / "tiny")
    check_complete(runs, metrics, steps=20, every=5)  # no row lost, none twice
    # the worker group restarted from the last stored checkpoint, not from step 0
    assert runs["start_step"].iloc[0] >= checkpointed - 5 > 0
    assert runs["checkpoint"].iloc[0].startswith("run-") and "-ddp/" in runs["checkpoint"].iloc[0]


@pytest.mark.slow
@on_the_cluster
@pytest.mark.ffcv
def test_a_two_worker_imagenet_trial_through_ffcv(tmp_path: Path, cluster) -> None:
    pytest.importorskip("ffcv")
    from tests.test_fleet_imagenet import FFCV_SUITE, _tiny_tree

    cluster, _ = cluster
    root = _tiny_tree(tmp_path / "imagenet")
    assert main(["data", "write-beton", "--dataset", "imagenet", "--root", str(root), "--workers", "1"]) == 0
    suite = tmp_path / "imagenet_ffcv.yaml"
    suite.write_text(FFCV_SUITE.format(root=root).replace("max_steps: 2}", "max_steps: 4}")
                     + "resources: {workers: 2, cpu: 1}\n")
    assert main(["run", str(suite), "--ray-address", cluster.address, "--results", str(tmp_path / "results"),
                 "--no-report"]) == 0
    runs = pd.read_csv(tmp_path / "results" / "imagenet_ffcv" / "runs.csv")
    metrics = pd.read_csv(tmp_path / "results" / "imagenet_ffcv" / "metrics.csv")
    assert list(runs["status"]) == ["completed"] and runs["loader"].iloc[0] == "ffcv"
    assert list(metrics["step"]) == [2, 4] and metrics["eval_top5_error"].between(0, 100).all()


@pytest.mark.slow
def test_a_killed_run_s_data_parallel_trial_resumes_from_its_recorded_checkpoint(tmp_path: Path) -> None:
    """The driver is SIGKILLed: the next `run` resumes the two-worker trial from the checkpoint
    location the results folder recorded (rank 0 wrote it; both ranks restore it). On a private
    instance, as `run` starts one by default."""
    suite = tiny_suite(tmp_path, models="resnet20", steps=20, every=5, resources="{workers: 2, cpu: 1}")
    results = tmp_path / "results"
    driver = start_driver(run_command(suite, results))
    try:
        wait_for(lambda: recorded_step(results / "tiny", "resnet20-A-s0") >= 10, driver)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    recorded = pd.read_csv(results / "tiny" / "runs.csv")["checkpoint"].iloc[0]
    rerun = subprocess.run(run_command(suite, results), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    runs, metrics = read_tables(results / "tiny")
    check_complete(runs, metrics, steps=20, every=5)
    assert "-ddp/checkpoint" in recorded and runs["start_step"].iloc[0] >= 10, rerun.stdout  # not from step 0
