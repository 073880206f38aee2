"""A trial as it runs inside a Ray Tune worker, on whichever node Tune placed it.

Reports go through `tune.report(row, checkpoint=...)`: Tune persists the checkpoint to the run's
storage and hands the row to the driver's recorder. A retry (on this node or another) resumes from
`tune.get_checkpoint()`; a new run of the suite resumes from the checkpoint location the driver
recorded (`resume`), read from the same storage.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from benchmark import BenchmarkError
from benchmark.fleet.dataset import check_node_copy
from benchmark.fleet.ray_checkpoint import node_name, restore_from
from benchmark.suite.spec import Trial
from benchmark.training.checkpoint import write_payload
from benchmark.training.session import Accept, Restored

HEARTBEAT = "heartbeat"  # marks a heartbeat among the trial's Tune reports


class RaySession:
    def __init__(self, resume_path: str | None, filesystem: Any, written_step: int | None = None) -> None:
        self.node = node_name()
        self.resume_path = resume_path
        self.filesystem = filesystem
        self.written_step = written_step  # the results table's last step for this trial, at the run's start

    def restore(self, accept: Accept | None = None) -> Restored:
        from ray import tune

        checkpoint = tune.get_checkpoint()  # a retry within this run
        if checkpoint is None and self.resume_path:  # a new run resuming the last one's checkpoint
            checkpoint = tune.Checkpoint(self.resume_path, filesystem=self.filesystem)
        return restore_from(checkpoint, set_aside=True, accept=accept)

    def heartbeat(self, row: dict[str, Any]) -> None:
        from ray import tune

        tune.report({**row, HEARTBEAT: True})  # the driver's callback shows it and writes no row

    def report(self, row: dict[str, Any], payload: dict[str, Any] | None = None) -> None:
        from ray import tune

        if payload is None:
            tune.report(row)
            return
        with tempfile.TemporaryDirectory(prefix="trial-checkpoint-") as directory:
            write_payload(Path(directory), payload)
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(directory))  # persisted before it returns


def ray_trainable(config: dict[str, Any], arrays_ref: tuple[Any] | None = None, filesystem: Any = None) -> None:
    """Tune's function trainable: one trial. `arrays_ref` ((the object store's reference to CIFAR-10's
    arrays,), or None for ImageNet) and `filesystem` (the checkpoint storage) come through
    `tune.with_parameters` (benchmark/fleet/ray_executor.py)."""
    import ray

    from benchmark.hardware import default_cache_dir
    from benchmark.results.provenance import package_hash
    from benchmark.training.train import train_trial

    trial = Trial.model_validate(config["trial"])
    session = RaySession(config["resume"].get(trial.trial_id), filesystem, config["written"].get(trial.trial_id))
    shipped = package_hash()
    if shipped != config["package_hash"]:  # py_modules should make this impossible; say so if it happens
        raise BenchmarkError(f"node {session.node}: runs benchmark code {shipped}, but the driver's is "
                             f"{config['package_hash']}; the job's runtime_env did not reach this node")
    if trial.resources.workers > 1:  # data-parallel: a Ray Train TorchTrainer driven from this trial
        from benchmark.fleet.ray_ddp import run_data_parallel

        # its workers check their nodes' data; this process only drives them, wherever it runs
        run_data_parallel(trial, session.resume_path, session.written_step, arrays_ref, filesystem, config["storage_path"],
                          config["data_fingerprint"])
        return
    check_node_copy(trial.data, config["data_fingerprint"], session.node)  # an ImageNet folder: this node's copy is the driver's
    train_trial(trial, session, data=ray.get(arrays_ref[0]) if arrays_ref else None, threads=max(1, int(trial.resources.cpu)),
                beton_dir=default_cache_dir() / "beton")  # betons are named by the data's hash: a node-local cache
