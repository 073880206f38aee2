"""What every executor is given, and the interface they share.

An executor runs a list of trials and hands every report to the recorder (the single writer).
`LocalExecutor` (local.py) runs them in this process, one after another; `RayExecutor`
(ray_executor.py) runs them as Ray Tune trials on a local instance or a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from benchmark.fleet.dataset import SuiteData
from benchmark.fleet.recorder import FleetRecorder
from benchmark.fleet.storage import Storage
from benchmark.suite.spec import Trial


@dataclass(frozen=True, eq=False)
class FleetPlan:
    """The driver's decisions for one run of a suite."""

    state_dir: Path           # the results folder's machine-local state (_state/)
    data: SuiteData           # resolved once; every trial gets exactly this
    package_hash: str         # the code every trial must run (benchmark.results.provenance.package_hash)
    resume: dict[str, str] = field(default_factory=dict)  # trial_id -> checkpoint location to resume from
    written: dict[str, int] = field(default_factory=dict)  # trial_id -> last step in metrics.csv (resumed trials)

    def dispatched(self, trial: Trial) -> Trial:
        """The trial as it runs: with the resolved data (concrete source, absolute root)."""
        return trial.model_copy(update={"data": self.data.spec})


class Executor(Protocol):
    storage: Storage | None  # where its checkpoints live, credentials and all (None: in the results folder)

    def checkpoint_of(self, trial_id: str, run: dict[str, str]) -> str | None:
        """Where the trial's checkpoint to resume from lies, if one is still there (`run`: its runs-table row)."""
        ...

    def run(self, trials: list[Trial], recorder: FleetRecorder, plan: FleetPlan) -> None:
        """Run `trials` (all unfinished) to their end, reporting through `recorder`."""
        ...
