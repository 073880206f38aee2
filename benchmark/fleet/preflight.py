"""Checks before anything starts: each one a single line naming what is wrong, nothing written.

- the loader's extra is installed;
- every trial fits on one node (Tune would leave a trial that fits no node pending forever) and
  how many trials can run at once;
- the results folder's own checkpoint storage is reachable from every node;
- a results folder continues only the configuration, code, data and checkpoint storage that made it.
"""

from __future__ import annotations

import math
from typing import Any

from benchmark import SuiteError
from benchmark.fleet.ray_cluster import DRIVER_RESOURCE, ClusterError, Node
from benchmark.fleet.storage import same_storage
from benchmark.results.tables import FINISHED, ResultsWriter
from benchmark.suite.spec import Resources, Suite, Trial


def check_loader(suite: Suite) -> None:
    if suite.loader == "ffcv":
        try:
            import ffcv  # noqa: F401
        except ImportError:
            raise SuiteError(
                "loader: 'ffcv' needs the ffcv extra: apt-get install pkg-config libturbojpeg0-dev libopencv-dev, "
                f"then pip install '.[ffcv]' (after torch); or choose loader: {'torch' if suite.data.dataset == 'imagenet' else 'device'}"
            ) from None


def check_precision(suite: Suite) -> None:
    if suite.precision == "fp16" and suite.resources.gpu == 0:
        raise SuiteError("precision: fp16 needs a GPU (resources.gpu > 0); use fp32 or bf16 on the CPU")


def trial_request(resources: Resources) -> dict[str, float]:
    """A trial's request in Ray's resource names."""
    return {"CPU": resources.cpu, "GPU": resources.gpu, **resources.custom}


def fits(request: dict[str, float], node: Node) -> int:
    """How many trials of `request` the node can hold at once."""
    counts = [math.floor(node.resources.get(name, 0.0) / amount + 1e-9) for name, amount in request.items() if amount > 0]
    return min(counts) if counts else 0


def check_placement(resources: Resources, nodes: list[Node], where: str) -> int:
    """Refuse a trial that fits no single node (a data-parallel one: whose workers the cluster
    cannot place); returns how many trials fit at once in all."""
    request = trial_request(resources)  # a data-parallel trial's: per worker
    unit = "worker" if resources.workers > 1 else "trial"
    if resources.gpu > 1:
        raise SuiteError(f"resources.gpu: {resources.gpu:g} GPUs per {unit}, but a {unit} is one process on one "
                         "device; use gpu <= 1 (fractions share a GPU), and resources.workers for data-parallel ranks")
    at_once = sum(fits(request, node) for node in nodes)
    if at_once == 0:
        largest = {name: max((n.resources.get(name, 0.0) for n in nodes), default=0.0) for name in request}
        short = [f"{name} {amount:g} (largest node: {largest[name]:g})" for name, amount in request.items()
                 if amount > largest[name]]
        what = ", ".join(short) or ", ".join(f"{k} {v:g}" for k, v in request.items() if v)
        hint = "; use --set resources.gpu=0 to train on the CPU" if resources.gpu > 0 else ""
        raise ClusterError(f"resources: a {unit} asks for {what}, and no node of {where} has that much{hint}")
    if resources.workers == 1:
        return at_once
    return _data_parallel_at_once(resources, request, nodes, where)


# A data-parallel trial's Tune trial only drives its workers (benchmark/fleet/ray_ddp.py). It asks
# for one unit of DRIVER_RESOURCE where nodes offer it (the private instance and clusters started
# with `--resources '{"benchmark_driver": 100}'`), else for DRIVER_CPU: never a whole CPU, so the
# workers' CPUs stay free (Ray's guidance for a Train driver inside Tune).
DRIVER_CPU = 0.01


def driver_request(nodes: list[Node]) -> dict[str, float]:
    if any(node.resources.get(DRIVER_RESOURCE, 0.0) >= 1 for node in nodes):
        return {DRIVER_RESOURCE: 1.0}
    return {"CPU": DRIVER_CPU}


def _data_parallel_at_once(resources: Resources, request: dict[str, float], nodes: list[Node], where: str) -> int:
    """How many data-parallel trials (a driver and `workers` workers each) the cluster holds at
    once; a ClusterError if not one. Drivers on CPU are counted against every node (Ray may put
    them all on one), so the count never promises more than Ray can place."""
    driver = driver_request(nodes)
    slots = sum(fits(request, node) for node in nodes)
    drivers = sum(fits(driver, node) for node in nodes)
    for k in range(min(slots // resources.workers, drivers), 0, -1):
        reserve = k * driver.get("CPU", 0.0)
        left = [Node(n.node_id, {**n.resources, "CPU": n.resources.get("CPU", 0.0) - reserve}) for n in nodes]
        if sum(fits(request, node) for node in left) >= k * resources.workers:
            return k
    worker = ", ".join(f"{name} {amount:g}" for name, amount in request.items() if amount)
    driver_note = (f", besides its driver's {DRIVER_CPU:g} CPU (declare a {DRIVER_RESOURCE!r} resource on the nodes "
                   "to keep drivers off the CPUs)") if "CPU" in driver else ""
    raise ClusterError(f"resources.workers: a trial asks for {resources.workers} workers of {worker}, but {where} "
                       f"can place {slots} such worker(s) at once{driver_note}")


def check_storage_reaches(nodes: list[Node], driver_address: str, where: str) -> None:
    """The results folder's own storage (the default) is on the driver's disk: a trial placed on
    another machine could not write its checkpoints there (Ray's storage check fails it after
    retries). Refuse before any trial starts when a node of the cluster is on another machine than
    the driver (`driver_address`, its IP address as Ray sees it)."""
    elsewhere = sorted({node.address for node in nodes if node.address != driver_address})
    if elsewhere:
        raise ClusterError(f"storage: {where} has nodes on other machines ({', '.join(elsewhere[:3])}), and the default "
                           "checkpoint storage is the results folder on this one; pass --storage with a path every "
                           "node sees or an s3:// URI")


def check_resumable(writer: ResultsWriter, trials: list[Trial], run_fields: dict[str, Any], allow_changes: bool) -> str:
    """A results folder continues only the configuration that made it, and, unless
    `allow_changes`, only with the same code and data; returns what changed ("" if nothing)."""
    for trial in trials:
        stored = writer.trial_config(trial.trial_id)
        if stored is None:
            continue
        current = trial.model_dump(mode="json")
        try:  # through today's schema, so that a field added since (with its default) is no change
            before = Trial.model_validate(stored.get("trial", {})).model_dump(mode="json")
        except ValueError:
            before = stored.get("trial", {})
        diff = sorted(_diff_keys(before, current))
        if diff:
            raise SuiteError(
                f"{writer.folder}: trial {trial.trial_id} was run with a different configuration "
                f"(differs in {', '.join(diff[:4])}); use --results DIR for a new folder or delete the old one"
            )
    storage = run_fields.get("storage")
    changes = _storage_changes(writer, trials, storage, allow_changes) if storage else []
    for column, label in (("code_version", "code"), ("data_fingerprint", "data")):
        recorded = sorted({row.get(column, "") for row in writer.runs.values()} - {"", None})
        other = [value for value in recorded if value != run_fields[column]]
        if other:
            changes.append(f"{label} {', '.join(other)} -> {run_fields[column]}")
    if changes and not allow_changes:
        raise SuiteError(f"{writer.folder}: the trials there ran with other {' and '.join(c.split()[0] for c in changes)} "
                         f"({'; '.join(changes)}); rerun with --allow-changes to continue anyway (it is recorded), "
                         "or use --results DIR for a new folder")
    return "; ".join(changes)


def _storage_changes(writer: ResultsWriter, trials: list[Trial], storage: str, allow_changes: bool) -> list[str]:
    """Unfinished trials whose checkpoints are in another storage than this run's: refused in one
    line (their checkpoints would be lost to them, and their rows set aside), unless `allow_changes`,
    which restarts them from step 0 in the new storage; returns the change to record."""
    moved = sorted({run.get("storage") or "" for trial in trials
                    if (run := writer.runs.get(trial.trial_id)) and run.get("checkpoint")
                    and run.get("status") not in FINISHED and not same_storage(run.get("storage") or "", storage)})
    if not moved:
        return []
    if not allow_changes:
        raise SuiteError(f"{writer.folder}: unfinished trials there have their checkpoints in storage {moved[0]}, but this "
                         f"run's storage is {storage}; pass --storage {moved[0]} to resume them, or rerun with "
                         "--allow-changes to restart them from step 0 in the new storage")
    return [f"storage {', '.join(moved)} -> {storage}"]


def _diff_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = set(old) | set(new)
        return [d for k in sorted(keys) for d in _diff_keys(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]
