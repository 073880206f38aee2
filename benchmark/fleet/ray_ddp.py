"""A data-parallel trial (`resources.workers > 1`): a Ray Train `TorchTrainer` inside the Tune trial.

Ray's Train-Tune pattern (Train V2): the Tune trial function is a small driver that builds and fits
a `TorchTrainer`; the trainer starts `workers` processes, each with `resources.cpu/gpu/custom`, sets
up torch.distributed (NCCL on GPUs, gloo on CPUs) and runs `train_trial` in each with its rank
(benchmark/training/data_parallel.py). The driver holds no whole CPU (`preflight.driver_request`), so a
two-worker CPU trial fits a two-core machine.

Reports and checkpoints: every rank calls `ray.train.report` at every evaluation (it is a barrier);
rank 0 alone attaches the checkpoint. `TuneReportCallback` forwards rank 0's row to Tune, with the
checkpoint's location in `checkpoint_path` (the driver records it: benchmark/fleet/ray_executor.py).
A worker that dies (its node, its process) makes Train restart the worker group from the last
checkpoint (`FailureConfig`); if the Tune trial itself is retried, the trainer of the same name
finds its checkpoints in the same storage; a new run of the suite resumes from the location the
results folder recorded. Every rank restores the same checkpoint.

Heartbeats (the live view's steps between evaluations) are not sent from data-parallel trials:
Train requires every rank to report equally often, and a heartbeat is one rank's clock.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from benchmark.fleet.dataset import check_node_copy
from benchmark.fleet.ray_checkpoint import node_name, restore_from
from benchmark.suite.spec import Trial
from benchmark.training.checkpoint import write_payload
from benchmark.training.session import Accept, Restored

MAX_WORKER_FAILURES = 2  # restarts of the worker group per Tune attempt, each from the last checkpoint
CHECKPOINTS_KEPT = 2  # as a Tune trial's: the last, and the one before in case it cannot be read


class TrainWorkerSession:
    """`TrialSession` of one rank: every rank reports, rank 0 attaches the checkpoint."""

    def __init__(self, rank: int, resume_path: str | None, filesystem: Any, written_step: int | None = None) -> None:
        self.rank = rank
        self.node = node_name()
        self.resume_path = resume_path
        self.filesystem = filesystem
        self.written_step = written_step  # the results table's last step for this trial, at the run's start

    def restore(self, accept: Accept | None = None) -> Restored:
        import ray.train

        checkpoint = ray.train.get_checkpoint()  # this trainer's latest (a restarted worker group)
        if checkpoint is None and self.resume_path:  # the last run's, recorded in the results folder
            checkpoint = ray.train.Checkpoint(self.resume_path, filesystem=self.filesystem)
        # every rank reads the same checkpoints and falls back alike; none moves one the others read
        return restore_from(checkpoint, set_aside=False, accept=accept)

    def report(self, row: dict[str, Any], payload: dict[str, Any] | None = None) -> None:
        import ray.train

        if payload is None or self.rank != 0:
            ray.train.report(row)
            return
        with tempfile.TemporaryDirectory(prefix="trial-checkpoint-") as directory:
            write_payload(Path(directory), payload)
            ray.train.report(row, checkpoint=ray.train.Checkpoint.from_directory(directory))

    def heartbeat(self, row: dict[str, Any]) -> None:
        pass  # see the module's docstring


def worker_loop(config: dict[str, Any]) -> None:
    """One rank of the trial (Ray Train's `train_loop_per_worker`)."""
    import ray
    import ray.train

    from benchmark.hardware import default_cache_dir
    from benchmark.training.data_parallel import Replicas
    from benchmark.training.train import train_trial

    trial = Trial.model_validate(config["trial"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    if context.get_local_rank() == 0:  # one rank per node reads its ImageNet copy's listing
        check_node_copy(trial.data, config["data_fingerprint"], node_name())
    dataset = ray.get(config["arrays_ref"][0]) if config["arrays_ref"] else None  # the driver's one copy
    session = TrainWorkerSession(rank, config["resume_path"], config["filesystem"], config["written_step"])
    train_trial(trial, session, data=dataset, threads=max(1, int(trial.resources.cpu)),
                beton_dir=default_cache_dir() / "beton",
                replicas=Replicas(rank=rank, world_size=world_size, sync_bn=trial.sync_bn))


def run_data_parallel(trial: Trial, resume_path: str | None, written_step: int | None, arrays_ref: tuple[Any] | None,
                      filesystem: Any, storage_path: str, data_fingerprint: str) -> None:
    """Fit the trial's TorchTrainer from inside its Tune trial (the Tune session is this process's);
    `arrays_ref`: as `ray_trial.ray_trainable` gets it, passed on to the ranks unread."""
    import ray
    import ray.train
    from ray import tune
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    resources = trial.resources
    per_worker = {"CPU": resources.cpu, **({"GPU": resources.gpu} if resources.gpu else {}), **resources.custom}
    experiment = tune.get_context().get_experiment_name()
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={
            "trial": trial.model_dump(mode="json"),
            "resume_path": resume_path,
            "written_step": written_step,
            "data_fingerprint": data_fingerprint,
            "filesystem": filesystem,
            # CIFAR-10's arrays: the driver's one copy in the object store, read by every rank
            "arrays_ref": arrays_ref,
        },
        torch_config=TorchConfig(backend="nccl" if resources.gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=resources.workers, use_gpu=resources.gpu > 0,
                                               resources_per_worker=per_worker),
        run_config=ray.train.RunConfig(
            # Unique per Tune run and trial: a retry of this Tune trial reuses the name, and Train
            # restores its checkpoint manager (and so `get_checkpoint()`) from the same storage.
            name=f"{experiment}-{trial.trial_id}-ddp",
            storage_path=storage_path,
            storage_filesystem=filesystem,
            failure_config=ray.train.FailureConfig(max_failures=MAX_WORKER_FAILURES),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
            callbacks=[TuneReportCallback()],
        ),
    )
    trainer.fit()  # raises when the workers failed more often than FailureConfig allows: Tune retries the trial
