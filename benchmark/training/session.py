"""What a running trial talks to: where its rows go and where its checkpoints live.

`train_trial` reports one row per evaluation, each with the checkpoint of that step, and asks once,
at its start, for the checkpoint to resume from. Executors differ only in this session:
`DirectorySession` (here) keeps checkpoints in a local directory and hands rows to a callable (the
in-process executor and the tests); the Ray executor's session reports through `tune.report` and
restores through `tune.get_checkpoint()`, so checkpoints live in Ray's storage and a retry on
another node finds them (`benchmark/fleet/ray_trial.py`).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from benchmark.training.checkpoint import PAYLOAD_FILE, CheckpointError, read_payload, write_payload

# Checks that a readable checkpoint fits the trial before anything is loaded from it (a
# `CheckpointError` if not: another model, other shapes); such a checkpoint is set aside like an
# unreadable one.
Accept = Callable[[dict[str, Any]], None]
# Marks a row a resumed trial reports again from its checkpoint's curve (see `written_step`): the
# fleet's recorder skips one its table already has (a retry within a run knows them all).
REPLAYED = "replayed"


@dataclass(frozen=True)
class Restored:
    """The checkpoint a trial resumes from (None: start at step 0), and what happened on the way:
    a checkpoint that could not be read is set aside and named here, and the trial starts clean."""

    payload: dict[str, Any] | None
    note: str = ""


class TrialSession(Protocol):
    node: str  # which machine (and Ray node) runs the trial, recorded in its rows
    # The last step whose row the results table holds, where the driver knows it (None: unknown).
    # A trial resumed from a later checkpoint than the table's (a driver killed while its trial ran
    # on) reports the rows in between again from the checkpoint's curve.
    written_step: int | None

    def restore(self, accept: Accept | None = None) -> Restored: ...

    def report(self, row: dict[str, Any], payload: dict[str, Any] | None = None) -> None:
        """Record one evaluation row; `payload` is the checkpoint of the same step (None: no new one)."""
        ...

    def heartbeat(self, row: dict[str, Any]) -> None:
        """Show the trial's step and images/s between evaluations (benchmark/training/heartbeat.py); not a row."""
        ...


def set_aside(directory: Path) -> Path:
    """Rename an unreadable checkpoint directory out of the way, keeping it for inspection."""
    target = directory.with_name(f"{directory.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
    directory.rename(target)
    return target


class DirectorySession:
    """Checkpoints in `directory` (None: no checkpoints), rows to `report`, heartbeats to
    `heartbeat` (None: dropped)."""

    def __init__(self, report: Callable[[dict[str, Any]], None], directory: Path | None = None, node: str | None = None,
                 heartbeat: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._report = report
        self._heartbeat = heartbeat
        self.directory = Path(directory) if directory is not None else None
        self.node = node or socket.gethostname()
        self.written_step: int | None = None  # rows are recorded as they are reported: none to report again

    def restore(self, accept: Accept | None = None) -> Restored:
        if self.directory is None or not self.directory.exists():
            return Restored(None)
        try:
            payload = read_payload(self.directory)
            if accept is not None:
                try:
                    accept(payload)
                except CheckpointError as exc:
                    raise CheckpointError(f"{self.directory / PAYLOAD_FILE}: {exc}") from None
            return Restored(payload)
        except CheckpointError as exc:
            moved = set_aside(self.directory)
            return Restored(None, f"{exc}; set aside as {moved}; the trial restarts from step 0")

    def report(self, row: dict[str, Any], payload: dict[str, Any] | None = None) -> None:
        # Checkpoint first: a crash between the two leaves a checkpoint one row ahead of the table,
        # and the resumed trial re-reports that row (never a row without its checkpoint).
        if payload is not None and self.directory is not None:
            write_payload(self.directory, payload)
        self._report(row)

    def heartbeat(self, row: dict[str, Any]) -> None:
        if self._heartbeat is not None:
            self._heartbeat(row)
