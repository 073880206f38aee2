"""Tidy result tables, written as they happen.

`results/<suite>/` holds:
- `metrics.csv`: one row per trial × evaluation point, raw numbers only, append-only (a killed run
  loses at most the evaluation interval in progress);
- `runs.csv`: one row per trial (axes, seed, status, final metrics, effective recipe, provenance),
  replaced atomically whenever a trial changes state;
- `trials/<trial_id>.json`: each trial's full effective configuration and provenance;
- `weights/<trial_id>.safetensors` and `.json`: a completed trial's final weights and model card
  (`benchmark/results/weights.py`), committed with the tables (a size rule keeps large nets out);
- `discarded_metrics.csv`: rows taken out of `metrics.csv`, with the reason (an earlier attempt's
  rows that a retry did not continue, lines cut by a crash mid-write); kept, never silently lost;
- `_state/`: checkpoints, the run lock and executor scratch space (machine-local, not committed).

Both tables read with one pandas call: ``pd.read_csv("results/degradation/metrics.csv")``.
Only the process that drives the fleet writes here, so there is one writer per folder (the
fleet's lock, `benchmark/fleet/lock.py`, refuses a second one).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmark import ResultsError
from benchmark.hardware import RUN_HARDWARE_COLUMNS
from benchmark.suite.recipes import RECIPE_COLUMNS

METRIC_COLUMNS = (
    "trial_id", "step", "epoch", "lr", "train_loss", "train_error", "eval_loss", "eval_error",
    "eval_top5_error", "eval_split", "images_per_s", "wall_s",
)

RUN_COLUMNS = (
    "trial_id", "suite", "model", "family", "kind", "depth", "shortcut", "preact", "seed", "status",
    "steps", "start_step", "final_train_error", "final_eval_error", "final_eval_top5_error", "final_eval_loss",
    "eval_split", "eval_ten_crop", "images_per_s", "wall_s", "peak_memory_mb", "nonfinite_steps", "dataset",
    "data_source", "data_fingerprint", "split", "train_subset", "eval_subset", "loader", "precision", "channels_last", "compile", "tf32",
    "deterministic", "cuda_graphs", "eval_every", *RECIPE_COLUMNS, "recipe_changes", "device", *RUN_HARDWARE_COLUMNS, "node",
    "git_commit", "code_version", "allowed_changes", "torch_version", "torchvision_version", "numpy_version",
    "ray_version", "ffcv_version", "cuda_version", "python_version", "hostname", "storage", "checkpoint",
    "started_at", "finished_at", "error",
)

# `results/evaluations.csv` (beside the suites' folders), append-only: one row per `python -m benchmark
# evaluate` of a weights file (benchmark/analysis/evaluation.py). Errors are percentages; `suite` and
# `trial_id` are the model card's, empty for weights trained elsewhere.
EVALUATION_COLUMNS = (
    "evaluated_at", "model", "family", "shortcut", "option_a_padding", "preact", "bottleneck_stride",
    "weights", "weights_sha256", "weights_format", "weights_layout", "suite", "trial_id",
    "dataset", "data_source", "data_fingerprint", "eval_split", "images", "crops", "normalisation", "mean_image",
    "precision", "channels_last", "batch_size", "top1_error", "top5_error", "loss",
    "device", *RUN_HARDWARE_COLUMNS, "git_commit", "code_version", "torch_version", "torchvision_version",
    "numpy_version", "cuda_version", "python_version", "hostname",
)

STATUSES = ("pending", "running", "interrupted", "completed", "diverged", "failed")
FINISHED = ("completed", "diverged")  # a rerun of the suite does not train these again
DISCARDED_COLUMNS = ("discarded_at_reason", *METRIC_COLUMNS)


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """A full disk (or quota) is one line naming where space ran out; the tables stay readable
    (every write is atomic or a whole appended row) and the run resumes once space is freed."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ResultsError(f"{path}: no space left on the device while writing ({free_space(path.parent)} free "
                               "there); free some space and run the same command again (it resumes)") from None
        raise


def free_space(folder: Path) -> str:
    """The space left to an unprivileged writer in `folder` (or the nearest existing parent), e.g. "12 KB"."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        stat = os.statvfs(folder)
    except OSError:
        return "unknown space"
    free = float(stat.f_bavail * stat.f_frsize)
    for unit in ("bytes", "KB", "MB", "GB"):
        if free < 1024 or unit == "GB":
            return f"{free:.0f} {unit}" if unit == "bytes" else f"{free:.1f} {unit}"
        free /= 1024
    return f"{free:.1f} GB"


def new_file_mode() -> int:
    """The mode `open()` gives a new file (0o666 less the umask): every result file gets it, the
    ones written through a temporary file (mkstemp makes them 0600) as the ones appended to."""
    try:
        with open("/proc/self/status") as status:  # Linux: read without changing it
            umask = next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0o022)  # elsewhere: the only way to read it is to set it, then put it back
        os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: Path, text: str) -> None:
    """Write a whole file so that readers see the old or the new version, never half of one."""
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, new_file_mode())
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


def _csv_text(columns: tuple[str, ...], rows: list[list[Any]], header: bool = True) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(columns)
    writer.writerows([[_cell(v) for v in row] for row in rows])
    return buffer.getvalue()


def _append(path: Path, columns: tuple[str, ...], rows: list[list[Any]]) -> None:
    """Append whole rows with one write (a crash leaves whole rows, or one torn last line)."""
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        text = _csv_text(columns, rows, header=not path.exists() or path.stat().st_size == 0)
        with open(path, "a", newline="") as handle:
            handle.write(text)
            handle.flush()


def append_evaluation(path: Path, row: dict[str, Any]) -> None:
    """Append one evaluation row to `path` (results/evaluations.csv), a whole row in one write.
    A file whose header is not `EVALUATION_COLUMNS` is refused rather than appended to."""
    if path.exists() and path.stat().st_size:
        with open(path, newline="") as handle:
            header = handle.readline().rstrip("\r\n")
        if header != ",".join(EVALUATION_COLUMNS):
            raise ResultsError(f"{path}: not an evaluations table (header {header[:80]!r}); move it aside or name "
                               "another file with --out")
    _append(path, EVALUATION_COLUMNS, [[_cell(row.get(column)) for column in EVALUATION_COLUMNS]])


class ResultsWriter:
    """The one writer of a suite's results folder."""

    def __init__(self, folder: Path, out: Callable[[str], None] = print) -> None:
        self.folder = Path(folder)
        self.metrics_path = self.folder / "metrics.csv"
        self.runs_path = self.folder / "runs.csv"
        self.discarded_path = self.folder / "discarded_metrics.csv"
        self.runs: dict[str, dict[str, Any]] = read_runs(self.runs_path)
        rows, damaged = read_metric_rows(self.metrics_path)
        if damaged:  # keep every whole row; the damaged lines go aside, named, not silently lost
            self._rewrite_metrics(rows)
            _append(self.discarded_path, DISCARDED_COLUMNS, [[f"damaged line {n}: {text[:200]}"] for n, text in damaged])
            out(f"{self.metrics_path}: {len(damaged)} damaged line(s) (cut by a crash mid-write?) "
                f"moved to {self.discarded_path.name}; {len(rows)} whole rows kept")
        self.rows_by_trial: dict[str, list[list[str]]] = {}
        for row in rows:
            self.rows_by_trial.setdefault(row[0], []).append(row)
        self.last_step: dict[str, int] = {t: max(int(r[1]) for r in rs) for t, rs in self.rows_by_trial.items()}

    @property
    def state_dir(self) -> Path:
        return self.folder / "_state"

    def add_metrics(self, trial_id: str, row: dict[str, Any]) -> bool:
        """Append one evaluation row; a step already written (a resumed trial re-reporting) is skipped."""
        step = int(row["step"])
        if step <= self.last_step.get(trial_id, -1):
            return False
        values = [_cell({**row, "trial_id": trial_id}.get(column)) for column in METRIC_COLUMNS]
        _append(self.metrics_path, METRIC_COLUMNS, [values])
        self.rows_by_trial.setdefault(trial_id, []).append([str(v) for v in values])
        self.last_step[trial_id] = step
        return True

    def set_aside_rows(self, trial_id: str, after_step: int, reason: str) -> int:
        """Move the trial's rows with step > `after_step` to `discarded_metrics.csv`; returns how many."""
        rows = self.rows_by_trial.get(trial_id, [])
        moved = [r for r in rows if int(r[1]) > after_step]
        if not moved:
            return 0
        _append(self.discarded_path, DISCARDED_COLUMNS, [[reason, *r] for r in moved])
        self.rows_by_trial[trial_id] = [r for r in rows if int(r[1]) <= after_step]
        self._rewrite_metrics([r for rs in self.rows_by_trial.values() for r in rs])
        kept = self.rows_by_trial[trial_id]
        self.last_step[trial_id] = max((int(r[1]) for r in kept), default=-1)
        return len(moved)

    def _rewrite_metrics(self, rows: list[list[str]]) -> None:
        atomic_write_text(self.metrics_path, _csv_text(METRIC_COLUMNS, rows))

    def update_run(self, trial_id: str, **fields: Any) -> None:
        self.update_runs({trial_id: fields})

    def update_runs(self, changes: dict[str, dict[str, Any]]) -> None:
        """Change several trials' rows with one rewrite of runs.csv."""
        for trial_id, fields in changes.items():
            self.runs.setdefault(trial_id, {"trial_id": trial_id}).update(fields)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=RUN_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for run in self.runs.values():
            writer.writerow({key: _cell(value) for key, value in run.items()})
        atomic_write_text(self.runs_path, buffer.getvalue())

    def write_trial_config(self, trial_id: str, config: dict[str, Any]) -> None:
        atomic_write_text(self.folder / "trials" / f"{trial_id}.json", json.dumps(config, indent=2, sort_keys=True) + "\n")

    def trial_config(self, trial_id: str) -> dict[str, Any] | None:
        return read_trial_config(self.folder, trial_id)

    def status(self, trial_id: str) -> str:
        return str(self.runs.get(trial_id, {}).get("status", ""))


def read_trial_config(folder: Path, trial_id: str) -> dict[str, Any] | None:
    """`trials/<trial_id>.json` of a results folder (None when it has none)."""
    path = Path(folder) / "trials" / f"{trial_id}.json"
    if not path.exists():
        return None
    try:
        config = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not a trial configuration (invalid JSON: {exc})") from None
    if not isinstance(config, dict):
        raise ResultsError(f"{path}: not a trial configuration (expected a JSON object)")
    return config


def read_runs(path: Path) -> dict[str, dict[str, Any]]:
    """The runs table by trial id; a file that is not one is a one-line `ResultsError`."""
    if not path.exists():
        return {}
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in ("trial_id", "status") if c not in header]
            if missing:
                raise ResultsError(f"{path}: not a runs table (no {', '.join(repr(c) for c in missing)} column); "
                                   "move it aside, or use --results DIR for a new folder")
            runs = {}
            for number, row in enumerate(reader, start=2):
                if not row.get("trial_id") or None in row or row.get("status") not in STATUSES:
                    raise ResultsError(f"{path}: line {number} is not a runs-table row "
                                       f"(expected a trial_id and a status in {', '.join(STATUSES)})")
                runs[row["trial_id"]] = dict(row)
            return runs
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ResultsError(f"{path}: not a runs table ({exc})") from None


def read_metric_rows(path: Path) -> tuple[list[list[str]], list[tuple[int, str]]]:
    """The whole rows of metrics.csv, and the damaged lines (number, text) among them.

    Line by line rather than through a CSV parser: a line cut mid-write can leave an open quote
    that would swallow every row after it. A whole row has every column and a numeric step.
    """
    if not path.exists():
        return [], []
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise ResultsError(f"{path}: not a metrics table ({exc})") from None
    lines = text.splitlines()
    torn = bool(text) and not text.endswith("\n")  # the last row's write never finished
    if not lines or lines[0].split(",") != list(METRIC_COLUMNS):
        if not lines or not lines[0].strip():
            return [], []
        raise ResultsError(f"{path}: not a metrics table (header {lines[0][:80]!r}, expected {','.join(METRIC_COLUMNS)}); "
                           "move it aside, or use --results DIR for a new folder")
    rows, damaged = [], []
    for number, line in enumerate(lines[1:], start=2):
        fields = next(csv.reader([line]), [])
        whole = not (torn and number == len(lines))
        if whole and len(fields) == len(METRIC_COLUMNS) and fields[0] and _is_int(fields[1]):
            rows.append(fields)
        elif line.strip():
            damaged.append((number, line))
    return rows, damaged


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
