"""Live progress (issue 13): trial heartbeats, the live view in a pseudo-terminal, one line per
evaluation in plain logs, and the TensorBoard curves the recorder writes."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from benchmark.__main__ import main
from benchmark.fleet.curves import TrainingCurves
from benchmark.fleet.progress import LiveView, TrialProgress, console_view
from benchmark.fleet.recorder import FleetRecorder
from benchmark.results.tables import ResultsWriter
from benchmark.suite.spec import load_suite
from benchmark.training.heartbeat import Heartbeat
from benchmark.training.session import DirectorySession
from benchmark.training.train import train_trial

REPO = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[")
TINY = """\
name: tiny
data: {dataset: cifar10, source: synthetic, train_subset: 256, eval_subset: 64}
loader: device
recipe: {name: cifar10_he2015, batch_size: 32, max_steps: 8, lr: 0.05}
grid: {model: [MODELS]}
seeds: [0]
resources: {cpu: 1}
eval_every: 4
eval_batch_size: 64
"""


def tiny_suite(tmp_path: Path, models: str = "resnet20") -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.replace("MODELS", models))
    return path


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_heartbeat_carries_step_and_speed_every_interval_and_nothing_else() -> None:
    beats: list[dict] = []
    clock = Clock()
    heartbeat = Heartbeat(DirectorySession(lambda row: None, heartbeat=beats.append), fields={"attempt": "a1"},
                          every_s=10.0, clock=clock)
    for step in range(1, 5):  # 4 steps of 128 images in 8 s: not yet
        clock.now += 2.0
        heartbeat.step(step, 128)
    assert beats == []
    clock.now += 2.0
    heartbeat.step(5, 128)  # 5 x 128 images in 10 s
    assert beats == [{"attempt": "a1", "step": 5, "images_per_s": pytest.approx(64.0)}]
    clock.now += 30.0  # an evaluation: not training time
    heartbeat.restart()
    clock.now += 5.0
    heartbeat.step(6, 128)
    assert len(beats) == 1


@pytest.mark.parametrize("step_s", [0.05, 1.0, 4.0])  # ResNet-20 fast; ResNet-56 on one slow, loaded thread
def test_the_first_beat_comes_within_30_s_of_the_first_training_step(step_s: float) -> None:
    """Issue 13: the live view's first update within 30 s of the first step, whatever a step costs
    (below the interval): the default interval counts from before the first step."""
    beats: list[dict] = []
    clock = Clock()
    heartbeat = Heartbeat(DirectorySession(lambda row: None, heartbeat=beats.append), clock=clock)  # as train_trial
    first_step_at, step = clock.now, 0
    while not beats:
        clock.now += step_s
        step += 1
        heartbeat.step(step, 128)
    assert clock.now - first_step_at <= 30.0 and beats[0]["step"] == step


def test_train_trial_beats_between_evaluations_without_adding_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("benchmark.training.train.Heartbeat", partial(Heartbeat, every_s=0.0))  # a beat every step
    trial = load_suite(tiny_suite(tmp_path)).trials()[0]
    rows: list[dict] = []
    beats: list[dict] = []
    train_trial(trial, DirectorySession(rows.append, heartbeat=beats.append), threads=1)
    assert [row["step"] for row in rows] == [4, 8]  # one row per evaluation, as without heartbeats
    assert [beat["step"] for beat in beats] == list(range(1, 9))
    assert all(beat["images_per_s"] > 0 and beat["attempt"] == rows[0]["attempt"] for beat in beats)


class RecordingView:
    def __init__(self) -> None:
        self.updates: list[tuple[list[TrialProgress], str]] = []

    def update(self, trials: list[TrialProgress], suite: str) -> None:
        self.updates.append(([TrialProgress(**vars(t)) for t in trials], suite))


def test_the_recorder_shows_heartbeats_and_writes_no_row_for_them(tmp_path: Path) -> None:
    suite = load_suite(tiny_suite(tmp_path, "plain20, resnet20"))
    writer = ResultsWriter(tmp_path / "results")
    view = RecordingView()
    recorder = FleetRecorder(writer, suite.trials(), out=lambda line: None, view=view)
    recorder.start("plain20-s0")
    recorder.heartbeat("plain20-s0", {"step": 3, "images_per_s": 250.0, "attempt": "a1"})
    shown, progress = view.updates[-1]
    assert (shown[0].status, shown[0].step, shown[0].images_per_s) == ("running", 3, 250.0)
    assert shown[1].status == "pending" and "ETA" in progress and "0/2 trials" in progress
    assert not (tmp_path / "results" / "metrics.csv").exists()  # metrics.csv: one row per evaluation only
    recorder.close()


@pytest.mark.slow
def test_the_live_view_runs_in_a_pseudo_terminal(tmp_path: Path) -> None:
    """A real terminal: `run` draws the trial table in place (cursor movement), with every column."""
    primary, secondary = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "LINES": "40", "RAY_USAGE_STATS_ENABLED": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmark", "run", str(tiny_suite(tmp_path)), "--executor", "local",
         "--results", str(tmp_path / "results"), "--no-report"],
        cwd=REPO, stdin=secondary, stdout=secondary, stderr=secondary, env=env, close_fds=True)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert process.wait(timeout=600) == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert ANSI.search(screen)  # drawn with terminal control sequences
    for header in ("trial", "state", "step", "images/s", "train error", "test error"):
        assert header in screen
    assert "resnet20-A-s0" in screen and "8/8" in screen and "completed" in screen and "ETA" in screen
    assert "suite tiny: 1 completed" in screen


def test_plain_logs_get_one_line_per_evaluation_and_no_control_sequences(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert console_view() is None  # pytest's captured stdout is not a terminal
    assert main(["run", str(tiny_suite(tmp_path)), "--executor", "local", "--results", str(tmp_path / "results"),
                 "--no-report"]) == 0
    out = capsys.readouterr().out
    assert not ANSI.search(out)
    evaluations = [line for line in out.splitlines() if line.startswith("resnet20-A-s0") and " step " in line]
    assert len(evaluations) == 2 and "step      8/8" in evaluations[-1] and "ETA" in evaluations[-1]


def test_training_curves_are_tensorboard_runs_per_trial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(["run", str(tiny_suite(tmp_path, "plain20, resnet20")), "--executor", "local",
                 "--results", str(tmp_path / "results"), "--no-report"]) == 0
    metrics = pd.read_csv(tmp_path / "results" / "tiny" / "metrics.csv")
    for trial_id, rows in metrics.groupby("trial_id"):
        events = EventAccumulator(str(tmp_path / "results" / "tiny" / "tensorboard" / trial_id))
        events.Reload()
        assert {"error/train", "error/test", "loss/train", "lr", "images_per_s"} <= set(events.Tags()["scalars"])
        train = events.Scalars("error/train")
        assert [e.step for e in train] == list(rows["step"])
        assert [e.value for e in train] == pytest.approx(list(rows["train_error"]), rel=1e-6)


def test_a_resumed_attempt_replaces_the_later_points_of_the_earlier_one(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    # Event files of one second are ordered by a process-wide counter compared as text: bring it
    # to ...9 so that the two attempts' files are ...9 and ...10 (seen failing under pytest-xdist).
    while True:
        SummaryWriter(log_dir=str(tmp_path / "other")).close()
        counter = max(int(p.name.rsplit(".", 1)[1]) for p in (tmp_path / "other").iterdir())
        if len(str(counter + 2)) > len(str(counter + 1)):
            break  # the attempts' files will be ...9 and ...10 (or ...99 and ...100)
    curves = TrainingCurves(tmp_path)
    curves.start_attempt("t", 0)
    for step, error in ((10, 80.0), (20, 70.0), (30, 60.0)):
        curves.add("t", {"step": step, "train_error": error, "eval_error": error, "eval_split": "test"})
    curves.start_attempt("t", 10)  # a retry resumed from the checkpoint of step 10
    for step, error in ((20, 71.0), (30, 61.0)):
        curves.add("t", {"step": step, "train_error": error, "eval_error": error, "eval_split": "test"})
    curves.close()
    events = EventAccumulator(str(tmp_path / "tensorboard" / "t"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("error/train")] == [(10, 80.0), (20, 71.0), (30, 61.0)]


def test_the_live_table_names_every_column() -> None:
    from rich.console import Console

    console = Console(width=120, record=True, force_terminal=False)
    trial = TrialProgress("resnet56-A-s0", 2100)
    trial.evaluated({"step": 300, "images_per_s": 281.4, "train_error": 61.25, "eval_error": 63.4, "eval_split": "val"},
                    "running")
    console.print(LiveView.table([trial, TrialProgress("plain20-s0", 2100)], "| suite 0/2 trials, 7% done, ETA 21m10s"))
    text = console.export_text()
    assert "resnet56-A-s0" in text and "300/2,100" in text and "281" in text and "61.25%" in text
    assert "63.40% (val)" in text and "pending" in text and "ETA 21m10s" in text


def test_the_recorder_pickles_without_its_view_and_open_writers(tmp_path: Path) -> None:
    """Ray Tune saves its stopper, which holds the recorder, with the experiment state."""
    import pickle

    suite = load_suite(tiny_suite(tmp_path))
    recorder = FleetRecorder(ResultsWriter(tmp_path / "results"), suite.trials(), view=LiveView())
    recorder.curves.add("resnet20-A-s0", {"step": 4, "train_error": 50.0})
    copy = pickle.loads(pickle.dumps(recorder))
    assert copy.view is None and copy.shown["resnet20-A-s0"].max_steps == 8
    recorder.close()


@pytest.mark.slow
def test_heartbeats_cross_ray_tune_to_the_view_and_never_into_the_tables(tmp_path: Path) -> None:
    from benchmark.fleet.runner import run_suite

    def beating_trainable(config: dict, arrays_ref: object = None, filesystem: object = None) -> None:
        # The fleet's Ray trial with a heartbeat after every step, set inside the Ray worker (a
        # function defined here travels by value; the test module is not importable there).
        from functools import partial

        import benchmark.training.train
        from benchmark.fleet.ray_trial import ray_trainable
        from benchmark.training.heartbeat import Heartbeat

        benchmark.training.train.Heartbeat = partial(Heartbeat, every_s=0.0)
        ray_trainable(config, arrays_ref, filesystem)

    view = RecordingView()
    suite = load_suite(tiny_suite(tmp_path))
    statuses = run_suite(suite, results_root=tmp_path / "results", trainable=beating_trainable, view=view,
                         out=lambda line: None)
    assert statuses == {"resnet20-A-s0": "completed"}
    beats = [trials[0] for trials, _ in view.updates if trials[0].status == "running" and trials[0].step % 4]
    assert beats and all(t.images_per_s > 0 for t in beats)  # steps between evaluations: heartbeats
    metrics = pd.read_csv(tmp_path / "results" / "tiny" / "metrics.csv")
    assert list(metrics["step"]) == [4, 8]
    # `tensorboard --logdir results/tiny` shows the recorder's curves only: Tune's own TensorBoard
    # logger (which would also chart the heartbeats, under _state/ray/) is off.
    folder = tmp_path / "results" / "tiny"
    events = [p.relative_to(folder).parts[:2] for p in folder.rglob("events.out.tfevents*")]
    assert events == [("tensorboard", "resnet20-A-s0")]
