"""The Ray Tune executor: every pending trial as a Tune trial with the suite's resources.

A private local Ray instance by default (`ray.init(address="local")`, so a stray cluster on the
machine is never joined); an existing cluster through `--ray-address` or `RAY_ADDRESS`. Trials report
each evaluation with `tune.report`; a driver-side callback hands the rows to the fleet's recorder,
so the results folder has a single writer. Failed trials are retried from their checkpoint
(`FailureConfig`); the checkpoint path is on the driver's filesystem, so on a multi-node cluster
`results/` must be on storage every node shares.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from benchmark.fleet import FleetRecorder, trial_work
from benchmark.results import ResultsWriter
from benchmark.spec import Trial

MAX_FAILURES = 2  # retries per trial, each from its last checkpoint


def quiet_ray_environment() -> None:
    """Ray's settings for a private local instance: no usage statistics, no auth token, plain logs."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def init_ray(address: str | None = None, num_cpus: float | None = None, num_gpus: float | None = None) -> None:
    """Join `address` (or RAY_ADDRESS), else, or for address "local", start a private local instance;
    `num_cpus`/`num_gpus` limit what a local instance offers (None: everything the machine has)."""
    import ray

    if ray.is_initialized():
        return
    quiet_ray_environment()
    address = address or os.environ.get("RAY_ADDRESS")
    # Workers of a local instance inherit this environment: make the package importable for them
    # even when it runs from a checkout without being installed.
    package_root = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
    if address and address != "local":
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 logging_level="WARNING", log_to_driver=False, configure_logging=True)


def cluster_gpus(address: str | None = None) -> tuple[float, str]:
    """GPUs the cluster has in all, and a phrase naming the cluster for error messages."""
    import ray

    init_ray(address)
    where = f"the Ray cluster at {address or os.environ.get('RAY_ADDRESS')}" if (address or os.environ.get("RAY_ADDRESS")) else "the local Ray instance"
    return float(ray.cluster_resources().get("GPU", 0)), where


def tune_trainable(config: dict[str, Any]) -> None:
    """Tune's function trainable: one trial, each evaluation row passed to `tune.report`."""
    from ray import tune

    from benchmark.train import train_trial

    trial = Trial.model_validate(config["trial"])
    train_trial(
        trial,
        report=tune.report,
        checkpoint_path=Path(config["checkpoint_dir"]) / f"{trial.trial_id}.pt",
        threads=max(1, int(trial.resources.cpu)),
        beton_dir=Path(config["beton_dir"]),
    )


def trial_dirname(tune_trial: Any) -> str:
    return tune_trial.config["trial"]["trial_id"]


def _callback_class() -> type:
    """The Tune callback (driver side) feeding the fleet recorder; defined lazily so that importing
    this module does not import Ray."""
    from ray import tune

    class _Recorder(tune.Callback):
        def __init__(self, recorder: FleetRecorder) -> None:
            self.recorder = recorder

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.recorder.start(trial.config["trial"]["trial_id"])

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            self.recorder.result(trial.config["trial"]["trial_id"], result)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.recorder.failed(trial.config["trial"]["trial_id"], _error_text(trial))

    return _Recorder


def _error_text(tune_trial: Any) -> str:
    path = getattr(tune_trial, "error_file", None)
    if path and Path(path).exists():
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return "the trial raised an error (see the Ray logs)"


def run_ray(trials: list[Trial], recorder: FleetRecorder, writer: ResultsWriter, address: str | None = None) -> None:
    from ray import tune

    init_ray(address)
    resources = trials[0].resources  # one suite, one resource request per trial
    state = writer.state_dir.resolve()
    trainable = tune.with_resources(tune_trainable, {"cpu": resources.cpu, "gpu": resources.gpu})
    # Longest first (steps × depth): Tune starts trials in this order, so the deep nets do not end
    # up running alone on an otherwise idle machine at the end of the suite.
    ordered = sorted(trials, key=trial_work, reverse=True)
    param_space = {
        "trial": tune.grid_search([trial.model_dump(mode="json") for trial in ordered]),
        "checkpoint_dir": str(state / "checkpoints"),
        "beton_dir": str(state / "beton"),
    }
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(reuse_actors=True, trial_dirname_creator=trial_dirname, trial_name_creator=trial_dirname),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=str(state / "ray"),  # Tune needs an absolute path
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            callbacks=[_callback_class()(recorder)],
        ),
    )
    grid = tuner.fit()
    # A failed trial does not make fit() raise: make sure each one is recorded.
    for result in grid:
        trial_id = result.config["trial"]["trial_id"]
        if result.error is not None and writer.status(trial_id) != "failed":
            recorder.failed(trial_id, f"{type(result.error).__name__}: {result.error}")
