"""A trial's sign of life between evaluations: its step and speed, for the live view (issue 13).

An evaluation interval of a 56-layer net on one CPU thread takes minutes, and the evaluation row
was the only thing a trial reported, so a fleet showed nothing for minutes after it started. Every
HEARTBEAT_S seconds of training, the trial sends its step and images/s through its session's
`heartbeat` (no metrics, no checkpoint; the recorder shows it and writes nothing to metrics.csv).

It costs one clock read per step and reads nothing from the device, so it keeps the training
step's rule (benchmark/training/step.py: no host sync inside the step): images/s is counted from batch
sizes the host already knows. On a GPU, whose steps run ahead of the host, that is the rate at
which steps are queued, which the bounded queue keeps close to the rate they run at.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

HEARTBEAT_S = 10.0  # the first one 10 s into training: the view moves well within 30 s


class HeartbeatSink(Protocol):
    def heartbeat(self, row: dict[str, Any]) -> None: ...


class Heartbeat:
    def __init__(self, session: HeartbeatSink, fields: dict[str, Any] | None = None, every_s: float = HEARTBEAT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.session = session
        self.fields = dict(fields or {})  # sent with every beat (the trial's attempt)
        self.every_s = every_s
        self.clock = clock
        self.restart()

    def restart(self) -> None:
        """Start a new measuring window (after an evaluation, whose time is not training)."""
        self.since = self.clock()
        self.samples = 0

    def step(self, step: int, samples: int) -> None:
        """Count one training step of `samples` images; beat when HEARTBEAT_S have passed."""
        self.samples += samples
        now = self.clock()
        if now - self.since >= self.every_s:
            self.session.heartbeat({**self.fields, "step": step, "images_per_s": self.samples / (now - self.since)})
            self.restart()
