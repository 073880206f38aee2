"""The in-process executor: trials one after another in the driver, for debugging and tests.

Checkpoints live in the results folder (`_state/checkpoints/<trial_id>/`); the Ray executor's
storage options do not apply here.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

from benchmark import BenchmarkError, ResultsError
from benchmark.fleet.executor import FleetPlan
from benchmark.fleet.recorder import FleetRecorder
from benchmark.suite.spec import Trial
from benchmark.training.checkpoint import PAYLOAD_FILE
from benchmark.training.session import DirectorySession


class _LocalSession(DirectorySession):
    def __init__(self, trial_id: str, recorder: FleetRecorder, plan: FleetPlan) -> None:
        super().__init__(self._record, checkpoint_dir(plan.state_dir, trial_id),
                         heartbeat=partial(recorder.heartbeat, trial_id))
        self.trial_id = trial_id
        self.recorder = recorder
        self._saved = False

    def report(self, row: dict[str, Any], payload: dict[str, Any] | None = None) -> None:
        self._saved = payload is not None
        super().report(row, payload)

    def _record(self, row: dict[str, Any]) -> None:
        self.recorder.result(self.trial_id, row, checkpoint=str(self.directory) if self._saved else None)


def checkpoint_dir(state_dir: Path, trial_id: str) -> Path:
    return state_dir / "checkpoints" / trial_id


class LocalExecutor:
    storage = None  # checkpoints live in the results folder (`_state/checkpoints/`)

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def checkpoint_of(self, trial_id: str, run: dict[str, str]) -> str | None:
        directory = checkpoint_dir(self.state_dir, trial_id)
        return str(directory.resolve()) if (directory / PAYLOAD_FILE).is_file() else None

    def run(self, trials: list[Trial], recorder: FleetRecorder, plan: FleetPlan) -> None:
        from benchmark.training.backends import worker_environment
        from benchmark.training.train import train_trial

        os.environ.update(worker_environment())  # before any trial can create a cuBLAS handle in this process

        for trial in trials:
            recorder.start(trial.trial_id)
            try:
                train_trial(plan.dispatched(trial), _LocalSession(trial.trial_id, recorder, plan),
                            data=plan.data.arrays, beton_dir=plan.state_dir / "beton")
            except ResultsError:
                raise  # the writer itself failed (a full disk): stop the fleet, say where
            except BenchmarkError as exc:
                recorder.failed(trial.trial_id, str(exc))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # a crashing trial must not take the fleet down
                recorder.failed(trial.trial_id, f"{type(exc).__name__}: {exc}")
