"""The fleet's single writer: trial reports become table rows, TensorBoard curves and a console view.

Only the driver process writes the results folder; executors call this recorder from wherever
their trials' reports arrive (in-process, or a Ray Tune callback on the driver).

One curve per trial: every row names the attempt that produced it (one run of `train_trial`) and
the step that attempt started from. When a new attempt begins, rows of earlier attempts past its
start step are set aside (`discarded_metrics.csv`), so a retry that resumed from an older
checkpoint, or restarted clean without one, never splices two curves into one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from benchmark.fleet.curves import TrainingCurves
from benchmark.fleet.final_weights import keep_final_weights
from benchmark.fleet.progress import FleetView, TrialProgress
from benchmark.fleet.storage import Storage
from benchmark.results.tables import FINISHED, RUN_COLUMNS, ResultsWriter
from benchmark.suite.spec import Trial
from benchmark.training.session import REPLAYED


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def print_line(line: str) -> None:
    """The console view: flushed at once, so that progress shows up in logs and pipes too."""
    print(line, flush=True)


class FleetRecorder:
    """Turns trial reports into table rows and a live console view (state, step, errors, ETA)."""

    def __init__(self, writer: ResultsWriter, trials: list[Trial], out: Callable[[str], None] = print_line,
                 run_fields: dict[str, Any] | None = None, view: FleetView | None = None,
                 storage: Storage | None = None) -> None:
        self.writer = writer
        self.storage = storage  # the executor's checkpoint storage, credentials and all: final weights are read there
        self.trials = {trial.trial_id: trial for trial in trials}
        self.out = out
        self.view = view  # the live view on a terminal (benchmark/fleet/progress.py); None: lines only
        self.run_fields = dict(run_fields or {})  # what the driver knows of every trial it runs (code version, storage)
        self.started = time.monotonic()
        self.steps_at_start = {t.trial_id: self._written_step(t.trial_id) for t in trials}
        self.current_step = dict(self.steps_at_start)
        self.attempts: dict[str, str] = {}
        self.shown = {t.trial_id: TrialProgress(t.trial_id, t.recipe.max_steps, writer.status(t.trial_id) or "pending",
                                                self.current_step[t.trial_id]) for t in trials}
        self.curves = TrainingCurves(writer.folder)  # TensorBoard event files, beside the tables
        self._show()

    def __getstate__(self) -> dict[str, Any]:
        # Ray Tune pickles its stopper, which reaches this recorder, into its experiment state: the
        # terminal's live view lives only in this process.
        return {**self.__dict__, "view": None}

    def _written_step(self, trial_id: str) -> int:
        return max(self.writer.last_step.get(trial_id, 0), 0)

    def start(self, trial_id: str) -> None:
        self.writer.update_run(trial_id, status="running", error="",
                               started_at=self.writer.runs.get(trial_id, {}).get("started_at") or now(),
                               **self.run_fields)
        self.shown[trial_id].status = "running"
        self._show()

    def heartbeat(self, trial_id: str, row: dict[str, Any]) -> None:
        """A trial's step and images/s between evaluations (benchmark/training/heartbeat.py): shown, not written."""
        self.current_step[trial_id] = int(row["step"])
        self.shown[trial_id].beat(row)
        self._show()

    def _show(self) -> None:
        if self.view is not None:
            self.view.update(list(self.shown.values()), self.progress())

    def close(self) -> None:
        self.curves.close()

    def result(self, trial_id: str, row: dict[str, Any], checkpoint: str | None = None) -> None:
        """One evaluation row; `checkpoint`: where the checkpoint of this row's step lives, if known.
        A row a resumed trial reports again from its checkpoint's curve (`replayed`) that the table
        already has is skipped: it would only repeat a console line and a TensorBoard point."""
        if row.get(REPLAYED) and int(row["step"]) <= self.writer.last_step.get(trial_id, -1):
            return
        trial = self.trials[trial_id]
        self._new_attempt(trial_id, row)
        self.writer.add_metrics(trial_id, row)
        self.curves.add(trial_id, row)
        self.current_step[trial_id] = int(row["step"])
        # The row's own runs-table columns (status, data source, node, provenance, images/s, wall
        # time), then the latest evaluation as the trial's final metrics.
        fields = {key: row[key] for key in RUN_COLUMNS if key in row and key not in ("trial_id", "checkpoint")}
        status = fields.setdefault("status", "running")
        fields.update(
            steps=int(row["step"]),
            final_train_error=row["train_error"],
            final_eval_error=row["eval_error"],
            final_eval_top5_error=row["eval_top5_error"],
            final_eval_loss=row["eval_loss"],
        )
        if status in FINISHED:
            fields["finished_at"] = now()
        if checkpoint is not None:
            fields["checkpoint"] = checkpoint
        self.writer.update_run(trial_id, **fields)
        if checkpoint is not None:  # the checkpoint of this very row: a completed trial's final weights
            keep_final_weights(self.writer, trial_id, self.out, self.storage)
        if row.get("note"):
            self.out(f"{trial_id:<22} note: {row['note']}")
        self.out(
            f"{trial_id:<22} {status:<9} step {int(row['step']):>6}/{trial.recipe.max_steps:<6} "
            f"train {row['train_error']:6.2f}%  {row.get('eval_split', 'eval')} {row['eval_error']:6.2f}%  "
            f"{row['images_per_s']:7.0f} img/s   {self.progress()}"
        )
        self.shown[trial_id].evaluated(row, status)
        self._show()

    def _new_attempt(self, trial_id: str, row: dict[str, Any]) -> None:
        """On the first row of an attempt, set aside earlier attempts' rows past its start step."""
        attempt = row.get("attempt")
        if attempt is None or self.attempts.get(trial_id) == attempt:
            return
        self.attempts[trial_id] = attempt
        start = int(row.get("start_step", 0))
        self.curves.start_attempt(trial_id, start)
        moved = self.writer.set_aside_rows(trial_id, after_step=start, reason=f"attempt {attempt} resumed from step {start}")
        if moved:
            where = f"step {start}" if start else "step 0 (no checkpoint to resume from)"
            self.out(f"{trial_id:<22} restarted from {where}: {moved} later rows of an earlier attempt "
                     f"moved to {self.writer.discarded_path.name}")

    def checkpoint(self, trial_id: str, location: str) -> None:
        """Where the trial's latest checkpoint lives (a later run resumes from it). Ray hands it over
        after the row it belongs to: a completed trial's is its final weights."""
        self.writer.update_run(trial_id, checkpoint=location)
        keep_final_weights(self.writer, trial_id, self.out, self.storage)

    def failed(self, trial_id: str, message: str) -> None:
        lines = message.strip().splitlines()
        error = lines[-1][:500] if lines else "failed"  # a traceback's last line says what went wrong
        self.writer.update_run(trial_id, status="failed", error=error, finished_at=now())
        self.out(f"{trial_id:<22} failed: {error}   {self.progress()}")
        self.shown[trial_id].status = "failed"
        self._show()

    def interrupted(self) -> list[str]:
        """Mark every trial still running as `interrupted` (resumed by the next run)."""
        stopped = [i for i in self.trials if self.writer.status(i) == "running"]
        for trial_id in stopped:
            self.writer.update_run(trial_id, status="interrupted")
        return stopped

    def progress(self) -> str:
        def work(steps: dict[str, int]) -> float:
            return sum(trial_work(t, steps[i]) for i, t in self.trials.items())

        total = work({i: t.recipe.max_steps for i, t in self.trials.items()})
        done = work(self.current_step)
        finished = sum(1 for i in self.trials if self.writer.status(i) in FINISHED + ("failed",))
        new_work = done - work(self.steps_at_start)
        elapsed = time.monotonic() - self.started
        eta = duration((total - done) * elapsed / new_work) if new_work > 0 else "?"
        return f"| suite {finished}/{len(self.trials)} trials, {100 * done / max(total, 1):.0f}% done, ETA {eta}"


def trial_work(trial: Trial, steps: int | None = None) -> int:
    """Relative cost of `steps` training steps of `trial` (default: all of them): steps × depth,
    since a step of a 56-layer net costs about 56/20 of a 20-layer one (Table 6's nets differ only
    in depth). The ETA weighs trials by it; the Ray executor starts the costliest first."""
    max_steps = trial.recipe.max_steps
    return min(max_steps if steps is None else steps, max_steps) * trial.depth


def duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
