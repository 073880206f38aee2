"""The Ray Tune executor: every pending trial as a Tune trial with the suite's resources.

Trials report each evaluation with `tune.report` (benchmark/fleet/ray_trial.py); a driver-side
callback hands the rows to the fleet's recorder, so the results folder has a single writer.
Checkpoints are persisted by Tune to the run's storage; a failed trial is retried from its last
one (`FailureConfig`), on whichever node has room. CIFAR-10's arrays go to the object store once,
put by the driver, and every trial reads that copy; trials get it as `arrays_ref`, a one-element
tuple holding the reference (`tune.with_parameters` puts each value into the object store, and Ray
refuses to put a bare reference); a data-parallel trial hands the reference on to its ranks unread,
rather than putting the arrays again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.fs

from benchmark import ResultsError
from benchmark.fleet.executor import FleetPlan
from benchmark.fleet.preflight import DRIVER_CPU, trial_request
from benchmark.fleet.ray_checkpoint import checkpoints_beside
from benchmark.fleet.ray_trial import HEARTBEAT
from benchmark.fleet.recorder import FleetRecorder, trial_work
from benchmark.fleet.storage import Storage, same_storage
from benchmark.results.tables import free_space
from benchmark.suite.spec import Trial
from benchmark.training.checkpoint import PAYLOAD_FILE

MAX_FAILURES = 2  # retries per trial, each from its last checkpoint
CHECKPOINTS_KEPT = 2  # per trial: the last, and one before it in case the last is unreadable (ray_checkpoint.py)


class RayExecutor:
    def __init__(self, storage: Storage, label: str, max_concurrent: int, trainable: Callable[..., None] | None = None,
                 driver: dict[str, float] | None = None) -> None:
        self.storage = storage
        self.label = label  # the storage as runs.csv records it (storage.DEFAULT_STORAGE: the results folder's own)
        self.max_concurrent = max_concurrent
        self.driver = driver or {"CPU": DRIVER_CPU}  # a data-parallel trial's own request (preflight.driver_request)
        self.trainable = trainable  # a seam for tests of placement; default: the trial itself

    def checkpoint_of(self, trial_id: str, run: dict[str, str]) -> str | None:
        """The recorded checkpoint; if it is gone, the newest one of the same trial beside it. A
        data-parallel trial's workers run on for a moment after the driver is killed, and Train,
        keeping CHECKPOINTS_KEPT, may rotate the recorded one out; the trial then reports the rows
        the table missed from the newer checkpoint (benchmark/training/train.py)."""
        location = run.get("checkpoint") or ""
        if not location or not same_storage(run.get("storage") or "", self.label):
            return None
        if self.storage.has_file(f"{location}/{PAYLOAD_FILE}"):
            return location
        for path in checkpoints_beside(self.storage.filesystem, self.storage.join(location)):
            relative = self.storage.relative(path)
            if relative is not None and self.storage.has_file(f"{relative}/{PAYLOAD_FILE}"):
                return relative
        return None

    def run(self, trials: list[Trial], recorder: FleetRecorder, plan: FleetPlan) -> None:
        import ray
        from ray import tune
        from ray.tune.logger import JsonLoggerCallback

        from benchmark.fleet.ray_trial import ray_trainable

        resources = trials[0].resources  # one suite, one resource request per trial
        # A data-parallel trial's Tune trial is only the driver of its workers, which Ray Train places.
        request = {k.lower() if k in ("CPU", "GPU") else k: v
                   for k, v in (self.driver if resources.workers > 1 else trial_request(resources)).items()}
        arrays_ref = (ray.put(plan.data.arrays),) if plan.data.arrays is not None else None  # see the docstring
        trainable = tune.with_resources(
            tune.with_parameters(self.trainable or ray_trainable, arrays_ref=arrays_ref, filesystem=self.storage.filesystem),
            request,
        )
        # Longest first (steps × depth): Tune starts trials in this order, so the deep nets do not end
        # up running alone on an otherwise idle cluster at the end of the suite.
        ordered = sorted(trials, key=trial_work, reverse=True)
        param_space = {
            "trial": tune.grid_search([plan.dispatched(trial).model_dump(mode="json") for trial in ordered]),
            "resume": {trial_id: self.storage.join(location) for trial_id, location in plan.resume.items()},
            "written": {trial_id: plan.written.get(trial_id, 0) for trial_id in plan.resume},
            "package_hash": plan.package_hash,
            "data_fingerprint": plan.data.fingerprint,  # each trial checks its node's ImageNet copy against it
            "storage_path": self.storage.path,
        }
        callback = _callback_class()(recorder, self.storage)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(reuse_actors=True, trial_dirname_creator=trial_dirname,
                                        trial_name_creator=trial_dirname, max_concurrent_trials=self.max_concurrent),
            run_config=tune.RunConfig(
                name=f"run-{time.strftime('%Y%m%d-%H%M%S')}",  # one folder per run: its checkpoints never overwrite an earlier run's
                storage_path=self.storage.path,
                storage_filesystem=self.storage.filesystem,
                verbose=0,
                stop=callback.stopper(),
                failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
                # result.json: Tune's ResultGrid reads it after fit() (and warns when it is missing);
                # its other automatic loggers are off (ray_cluster.quiet_ray_environment)
                callbacks=[callback, JsonLoggerCallback()],
            ),
        )
        with _quiet_full_disk():  # a full disk is our one line (the callback's), not Ray's tracebacks
            grid = tuner.fit()
        if callback.fatal is not None:  # the writer could not write (a full disk): stop, say where
            raise callback.fatal
        # A failed trial does not make fit() raise: make sure each one is recorded.
        for result in grid:
            trial_id = result.config["trial"]["trial_id"]
            if result.error is not None and recorder.writer.status(trial_id) != "failed":
                recorder.failed(trial_id, f"{type(result.error).__name__}: {result.error}")


def trial_dirname(tune_trial: Any) -> str:
    return tune_trial.config["trial"]["trial_id"]


def _callback_class() -> type:
    """The Tune callback (driver side) feeding the fleet recorder; defined lazily so that importing
    this module does not import Ray."""
    from ray import tune

    class _Recorder(tune.Callback):
        def __init__(self, recorder: FleetRecorder, storage: Storage) -> None:
            self.recorder = recorder
            self.storage = storage
            self.fatal: ResultsError | None = None

        def _guarded(self, write: Callable[[], None]) -> None:
            # Tune swallows some callback exceptions (on_checkpoint's) and dies on others: keep a
            # writer's failure, stop every trial (the stopper below), and raise it after fit().
            if self.fatal is not None:
                return
            try:
                write()
            except ResultsError as exc:
                self.fatal = exc

        def stopper(self) -> tune.Stopper:
            callback = self

            class _StopAll(tune.Stopper):
                def __call__(self, trial_id: str, result: dict) -> bool:
                    return callback.fatal is not None

                def stop_all(self) -> bool:
                    return callback.fatal is not None

            return _StopAll()

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._guarded(lambda: self.recorder.start(trial_id_of(trial)))

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            if result.get(HEARTBEAT):
                self._guarded(lambda: self.recorder.heartbeat(trial_id_of(trial), result))
                return
            self._guarded(lambda: self.recorder.result(trial_id_of(trial), result))
            # A data-parallel trial's checkpoint is persisted by Ray Train, which tells Tune where
            # (TuneReportCallback's `checkpoint_path`); Tune's on_checkpoint does not see it.
            if result.get(CHECKPOINT_PATH):
                self._checkpointed(trial, result[CHECKPOINT_PATH])

        def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
            self._checkpointed(trial, checkpoint.path)

        def _checkpointed(self, trial: Any, path: str) -> None:
            location = self.storage.relative(path)
            if location is not None:
                self._guarded(lambda: self.recorder.checkpoint(trial_id_of(trial), location))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            error = _error_text(trial)
            if self.fatal is None and is_disk_full(error):  # the trial could not write its checkpoint: stop all
                where = self.storage.path if isinstance(self.storage.filesystem, pyarrow.fs.LocalFileSystem) else self.storage.uri
                self.fatal = ResultsError(f"{where}: no space left on the device while a trial wrote its checkpoint "
                                          f"({free_space(Path(where))} free there); free some space and run the same "
                                          "command again (it resumes)")
                return
            self._guarded(lambda: self.recorder.failed(trial_id_of(trial), error))

    return _Recorder


CHECKPOINT_PATH = "checkpoint_path"  # ray.tune.integration.ray_train.CHECKPOINT_PATH_KEY


def trial_id_of(tune_trial: Any) -> str:
    return tune_trial.config["trial"]["trial_id"]


def is_disk_full(error: str) -> bool:
    return "No space left on device" in error or "[Errno 28]" in error or "Disk quota exceeded" in error


class _QuietFullDisk(logging.Filter):
    """Drops Ray's log records about a full disk (ENOSPC or a quota): a traceback per trial attempt,
    per failed save of Tune's experiment state, per unretrieved task error."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (is_disk_full(record.getMessage()) or (error is not None and is_disk_full(str(error))))


@contextmanager
def _quiet_full_disk() -> Iterator[None]:
    """Ray's loggers write through their own handlers (and the root's): filter each while Tune runs."""
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict)
                                      if name == "ray" or name.startswith("ray."))]
    handlers = {handler for logger in loggers for handler in logger.handlers}
    quiet = _QuietFullDisk()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


def _error_text(tune_trial: Any) -> str:
    path = getattr(tune_trial, "error_file", None)
    if path and Path(path).exists():
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return "the trial raised an error (see the Ray logs)"
