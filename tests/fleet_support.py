"""What the fleet tests share: a tiny suite, the tables, waiting on a running driver, processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.results.tables import METRIC_COLUMNS, RUN_COLUMNS

REPO = Path(__file__).resolve().parent.parent

TINY = """\
name: tiny
data: {{dataset: cifar10, source: synthetic, train_subset: 512, eval_subset: 256}}
loader: device
recipe: {{name: cifar10_he2015, batch_size: 32, max_steps: {steps}, lr: 0.05}}
grid: {{model: [{models}]}}
seeds: [0]
resources: {resources}
eval_every: {every}
eval_batch_size: 256
"""


def tiny_suite(tmp_path: Path, models: str = "plain20, resnet20", steps: int = 30, every: int = 10,
               resources: str = "{cpu: 1}") -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(models=models, steps=steps, every=every, resources=resources))
    return path


def read_tables(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_csv(folder / "runs.csv"), pd.read_csv(folder / "metrics.csv")


def check_complete(runs: pd.DataFrame, metrics: pd.DataFrame, steps: int, every: int) -> None:
    """Every trial completed, with exactly one row per evaluation step: none missing, none twice."""
    assert list(runs.columns) == list(RUN_COLUMNS)
    # Every recipe field reaches the runs table (the writer drops keys it has no column for).
    recipe_columns = [c for c in runs.columns if c.startswith("recipe_")]
    assert {"recipe_warmup_max_steps", "recipe_plateau_patience", "recipe_lr_milestone_fractions"} <= set(recipe_columns)
    # every field is written; fractions are empty for a recipe whose drops are given in steps
    assert runs[[c for c in recipe_columns if c != "recipe_lr_milestone_fractions"]].notna().all().all()
    assert list(metrics.columns) == list(METRIC_COLUMNS)
    assert set(runs["status"]) == {"completed"}, runs[["trial_id", "status", "error"]]
    assert not metrics.duplicated(["trial_id", "step"]).any()
    for trial_id, rows in metrics.groupby("trial_id"):
        assert list(rows["step"]) == list(range(every, steps + 1, every)), trial_id
    assert (runs["data_source"] == "synthetic").all()
    for column in ("git_commit", "code_version", "data_fingerprint", "node", "torch_version"):
        assert runs[column].notna().all(), column
    assert (runs["recipe_max_steps"] == steps).all() and (runs["recipe_batch_size"] == 32).all()
    # The stated numerics, the trial's peak memory and the CUDA-graph outcome reach the runs table.
    assert (runs["tf32"] == False).all() and (runs["deterministic"] == False).all()  # noqa: E712
    assert (runs["peak_memory_mb"] > 0).all() and (runs["nonfinite_steps"] == 0).all()
    assert (runs["cuda_graphs"] == "off").all()


def run_command(suite: Path, results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "benchmark", "run", str(suite), "--results", str(results), "--no-report", *extra]


def start_driver(command: list[str], cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A `run` in its own process group (so a test can signal it and everything it started)."""
    return subprocess.Popen(command, cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str] | None = None, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the driver ended early:\n{process.stdout.read() if process.stdout else ''}")
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def rows_of(folder: Path, trial_id: str) -> int:
    path = folder / "metrics.csv"
    if not path.exists():
        return 0
    try:
        return int((pd.read_csv(path)["trial_id"] == trial_id).sum())
    except (pd.errors.EmptyDataError, KeyError):
        return 0


def recorded_step(folder: Path, trial_id: str) -> int:
    """The step whose checkpoint runs.csv records for `trial_id` (0 before any). The recorder appends
    an evaluation's metrics row first and records its checkpoint after, so a driver killed between
    the two resumes from the checkpoint before: wait on this, not on the rows, to know where it resumes."""
    path = folder / "runs.csv"
    if not path.exists():
        return 0
    try:
        runs = pd.read_csv(path)
    except (pd.errors.EmptyDataError, KeyError):
        return 0
    row = runs[(runs["trial_id"] == trial_id) & runs["checkpoint"].notna()]
    return int(row["steps"].iloc[0]) if len(row) else 0


def process_table() -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, start time)} of every live process (zombies excluded)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            if fields[0] != "Z":
                table[int(entry)] = (int(fields[1]), fields[19])
    return table


def descendants(pid: int) -> dict[int, str]:
    """{pid: start time} of every live descendant of `pid`."""
    table = process_table()
    found: dict[int, str] = {}
    stack = [pid]
    while stack:
        parent = stack.pop()
        for child, (ppid, started) in table.items():
            if ppid == parent and child not in found:
                found[child] = started
                stack.append(child)
    return found


def still_alive(processes: dict[int, str]) -> dict[int, str]:
    table = process_table()
    return {pid: started for pid, started in processes.items() if pid in table and table[pid][1] == started}


@contextmanager
def local_cluster(head: dict[str, Any], workers: list[dict[str, Any]]) -> Iterator[tuple[Any, list[Any]]]:
    """A genuine multi-node Ray cluster on this machine (`ray.cluster_utils.Cluster`: a head and
    worker nodes, each a raylet of its own with its own resources), reached through its address as a
    user's cluster would be; yields it and its worker nodes, in the order of `workers`. Tests share
    one per module (starting one costs about 5 s on 2 cores): a test that removes or adds nodes puts
    the cluster back as it found it."""
    from ray.cluster_utils import Cluster

    from benchmark.fleet.ray_cluster import quiet_ray_environment

    quiet_ray_environment()  # the settings every run of ours starts Ray with

    # A node that dies is declared dead after 3 missed health checks a second apart (Ray's default:
    # 5 missed, 3 s apart): the node-loss tests wait seconds, not half a minute, for Ray to notice.
    health = {"health_check_period_ms": 1000, "health_check_timeout_ms": 1000, "health_check_failure_threshold": 3}
    cluster = Cluster(initialize_head=True, head_node_args={"include_dashboard": False, "_system_config": health, **head})
    nodes = [cluster.add_node(**node) for node in workers]
    cluster.wait_for_nodes()
    try:
        yield cluster, nodes
    finally:
        cluster.shutdown()


def replace_node(cluster: Any, node: Any, **node_args: Any) -> Any:
    """Kill `node` at once (no graceful shutdown: a machine that dies) and add a fresh one like it,
    as an autoscaler would; returns the new node."""
    cluster.remove_node(node, allow_graceful=False)
    return cluster.add_node(**node_args)
