"""The fleet's live view on a terminal: one row per trial, redrawn in place (issue 13).

On a terminal, `rich.live` keeps a table of the trials (state, step, images/s, latest training and
test error) and the suite's progress and ETA at the bottom of the screen, redrawn as evaluations
and heartbeats (benchmark/training/heartbeat.py) arrive; the recorder's lines still print above it, as a
history. In logs and CI (stdout not a terminal) there is no live view: one line per evaluation, as
the recorder prints them.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol


@dataclass
class TrialProgress:
    """What the view shows of one trial; the recorder keeps it current."""

    trial_id: str
    max_steps: int
    status: str = "pending"
    step: int = 0
    images_per_s: float = math.nan
    train_error: float = math.nan
    eval_error: float = math.nan
    eval_split: str = "test"

    def evaluated(self, row: dict[str, Any], status: str) -> None:
        self.status, self.step = status, int(row["step"])
        self.images_per_s = float(row["images_per_s"])
        self.train_error, self.eval_error = float(row["train_error"]), float(row["eval_error"])
        self.eval_split = str(row.get("eval_split") or self.eval_split)

    def beat(self, row: dict[str, Any]) -> None:
        self.status, self.step, self.images_per_s = "running", int(row["step"]), float(row["images_per_s"])


class FleetView(Protocol):
    def update(self, trials: list[TrialProgress], suite: str) -> None: ...


class LiveView:
    """`with LiveView() as view:` shows a live table on the terminal for the block's duration."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = console or Console()
        # print() inside the block goes above the table (redirect_stdout), so the recorder's lines stay.
        self.live = Live(console=self.console, refresh_per_second=2, transient=False, redirect_stdout=True,
                         redirect_stderr=True)

    def __enter__(self) -> LiveView:
        self.live.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.live.stop()

    def update(self, trials: list[TrialProgress], suite: str) -> None:
        self.live.update(self.table(trials, suite), refresh=True)

    @staticmethod
    def table(trials: list[TrialProgress], suite: str) -> Any:
        from rich.table import Table

        table = Table(title=None, caption=suite.removeprefix("| "), caption_justify="left", expand=False)
        for column, justify in (("trial", "left"), ("state", "left"), ("step", "right"), ("images/s", "right"),
                                ("train error", "right"), ("test error", "right")):
            table.add_column(column, justify=justify, no_wrap=True)
        styles = {"running": "bold cyan", "completed": "green", "diverged": "yellow", "failed": "red"}
        for trial in trials:
            split = "" if trial.eval_split == "test" else f" ({trial.eval_split})"
            table.add_row(trial.trial_id, f"[{styles.get(trial.status, 'dim')}]{trial.status}[/]",
                          f"{trial.step:,}/{trial.max_steps:,}", _number(trial.images_per_s, "{:,.0f}"),
                          _number(trial.train_error, "{:.2f}%"), _number(trial.eval_error, "{:.2f}%") + split)
        return table


def _number(value: float, form: str) -> str:
    return "—" if math.isnan(value) else form.format(value)


def console_view(stream: Any = None) -> LiveView | None:
    """A live view when `stream` (stdout) is a terminal; None (lines only) in logs and pipes."""
    stream = stream or sys.stdout
    return LiveView() if hasattr(stream, "isatty") and stream.isatty() else None
