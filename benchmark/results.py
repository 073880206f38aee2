"""Tidy result tables, written as they happen.

`results/<suite>/` holds:
- `metrics.csv`: one row per trial × evaluation point, raw numbers only, append-only (a killed run
  loses at most the evaluation interval in progress);
- `runs.csv`: one row per trial (axes, seed, status, final metrics, effective recipe, provenance),
  replaced atomically whenever a trial changes state;
- `trials/<trial_id>.json`: each trial's full effective configuration and provenance;
- `_state/`: checkpoints and executor scratch space (machine-local, not committed).

Both tables read with one pandas call: ``pd.read_csv("results/degradation/metrics.csv")``.
Only the process that drives the fleet writes here, so there is one writer per folder.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from benchmark.recipes import RECIPE_COLUMNS

METRIC_COLUMNS = (
    "trial_id", "step", "epoch", "lr", "train_loss", "train_error", "eval_loss", "eval_error",
    "eval_top5_error", "eval_split", "images_per_s", "wall_s",
)

RUN_COLUMNS = (
    "trial_id", "suite", "model", "family", "kind", "depth", "shortcut", "preact", "seed", "status",
    "steps", "final_train_error", "final_eval_error", "final_eval_top5_error", "final_eval_loss",
    "eval_split", "eval_ten_crop", "images_per_s", "wall_s", "peak_memory_mb", "nonfinite_steps", "dataset",
    "data_source", "split", "loader", "precision", "channels_last", "compile", "tf32", "deterministic", "cuda_graphs",
    *RECIPE_COLUMNS, "device",
    "git_commit", "torch_version", "torchvision_version", "numpy_version", "ray_version", "ffcv_version",
    "cuda_version", "python_version", "hostname", "started_at", "finished_at", "error",
)

FINISHED = ("completed", "diverged")  # a rerun of the suite does not train these again


def atomic_write_text(path: Path, text: str) -> None:
    """Write a whole file so that readers see the old or the new version, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


class ResultsWriter:
    """The one writer of a suite's results folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.metrics_path = self.folder / "metrics.csv"
        self.runs_path = self.folder / "runs.csv"
        self.runs: dict[str, dict[str, Any]] = read_runs(self.runs_path)
        self.last_step: dict[str, int] = _last_steps(self.metrics_path)

    @property
    def state_dir(self) -> Path:
        return self.folder / "_state"

    def checkpoint_path(self, trial_id: str) -> Path:
        return self.state_dir / "checkpoints" / f"{trial_id}.pt"

    def add_metrics(self, trial_id: str, row: dict[str, Any]) -> bool:
        """Append one evaluation row; a step already written (a resumed trial re-reporting) is skipped."""
        step = int(row["step"])
        if step <= self.last_step.get(trial_id, -1):
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        new_file = not self.metrics_path.exists()
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if new_file:
            writer.writerow(METRIC_COLUMNS)
        writer.writerow([_cell({**row, "trial_id": trial_id}.get(column)) for column in METRIC_COLUMNS])
        with open(self.metrics_path, "a", newline="") as handle:
            handle.write(buffer.getvalue())  # one write per row: a crash leaves whole rows only
            handle.flush()
        self.last_step[trial_id] = step
        return True

    def update_run(self, trial_id: str, **fields: Any) -> None:
        row = self.runs.setdefault(trial_id, {"trial_id": trial_id})
        row.update(fields)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=RUN_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for run in self.runs.values():
            writer.writerow({key: _cell(value) for key, value in run.items()})
        atomic_write_text(self.runs_path, buffer.getvalue())

    def write_trial_config(self, trial_id: str, config: dict[str, Any]) -> None:
        atomic_write_text(self.folder / "trials" / f"{trial_id}.json", json.dumps(config, indent=2, sort_keys=True) + "\n")

    def trial_config(self, trial_id: str) -> dict[str, Any] | None:
        path = self.folder / "trials" / f"{trial_id}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def status(self, trial_id: str) -> str:
        return str(self.runs.get(trial_id, {}).get("status", ""))


def read_runs(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    with open(path, newline="") as handle:
        return {row["trial_id"]: dict(row) for row in csv.DictReader(handle)}


def _last_steps(path: Path) -> dict[str, int]:
    """The last step written per trial; a torn last line (a crash mid-write) is cut off first."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)
    last: dict[str, int] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            last[row["trial_id"]] = max(last.get(row["trial_id"], -1), int(row["step"]))
    return last
