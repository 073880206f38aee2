"""Training curves as TensorBoard event files, live: `tensorboard --logdir results/<suite>`.

Written by the fleet's recorder on the driver (the results folder's single writer), one run per
trial under `results/<suite>/tensorboard/<trial_id>/`, one point per evaluation: training and test
error (the two curves of Figure 6, tags `error/train` and `error/test`, or `error/val` on the 45k/5k
split), the losses, the learning rate and images/s. metrics.csv holds the same numbers and stays
the record; these files are for watching a run (they are not committed).

A trial that resumes from an earlier step starts its run with TensorBoard's `purge_step`, which
hides the earlier attempt's points past that step, as metrics.csv sets those rows aside. That works
only if TensorBoard reads the new attempt's event file after the old one: it reads them in order of
name, `events.out.tfevents.<second>.<host>.<pid>.<counter>`, and two files of the same second are
ordered by a process-wide counter compared as text ("...10" before "...9"). So a new attempt's file
is opened in a later second than the files already there (seen: a retry within the same second
showed the earlier attempt's points).

A full disk is the tables' one line (`results.tables.writing`), not a traceback from TensorBoard.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from benchmark import ResultsError
from benchmark.results.tables import writing

CURVES_DIR = "tensorboard"


class TrainingCurves:
    def __init__(self, results_folder: Path) -> None:
        self.folder = Path(results_folder) / CURVES_DIR
        self._writers: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Ray Tune saves its stopper, which reaches the recorder and so this object, with its
        # experiment state: open writers (a thread, a lock) stay behind and reopen when next used.
        return {"folder": self.folder, "_writers": {}}

    def start_attempt(self, trial_id: str, start_step: int) -> None:
        """A new attempt of the trial begins at `start_step`: later points of earlier ones are hidden."""
        with writing(self.folder / trial_id):
            self._close(trial_id)
        seconds = [int(path.name.split(".")[3]) for path in (self.folder / trial_id).glob("events.out.tfevents.*")]
        if seconds and max(seconds) >= int(time.time()):
            time.sleep(max(seconds) + 1 - time.time())  # at most a second, once per resumed attempt
        with writing(self.folder / trial_id):
            self._writers[trial_id] = self._open(trial_id, purge_step=start_step + 1)

    def add(self, trial_id: str, row: dict[str, Any]) -> None:
        """One evaluation row: its scalars at its step, flushed so that TensorBoard shows it now."""
        with writing(self.folder / trial_id):
            writer = self._writers.get(trial_id) or self._writers.setdefault(trial_id, self._open(trial_id))
            step = int(row["step"])
            split = row.get("eval_split") or "test"
            for tag, key in (("error/train", "train_error"), (f"error/{split}", "eval_error"),
                             ("loss/train", "train_loss"), (f"loss/{split}", "eval_loss"),
                             ("lr", "lr"), ("images_per_s", "images_per_s")):
                value = row.get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    writer.add_scalar(tag, float(value), step)
            writer.flush()

    def close(self) -> None:
        for trial_id in list(self._writers):
            try:
                with writing(self.folder / trial_id):
                    self._close(trial_id)
            except ResultsError:
                pass  # the run is ending; the tables, not these event files, are the record

    def _open(self, trial_id: str, purge_step: int | None = None) -> Any:
        from torch.utils.tensorboard import SummaryWriter  # imported at the first point: tensorboard is slow to import

        return SummaryWriter(log_dir=str(self.folder / trial_id), purge_step=purge_step)

    def _close(self, trial_id: str) -> None:
        writer = self._writers.pop(trial_id, None)
        if writer is not None:
            writer.close()
