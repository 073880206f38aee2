"""train_trial's rules: the learning-rate schedule, warm-up, divergence, checkpoint resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmark.recipes import CIFAR10_HE2015, IMAGENET_HE2015
from benchmark.schedule import LRSchedule
from benchmark.session import DirectorySession
from benchmark.spec import load_suite
from benchmark.train import train_trial


def test_resnet110_warms_up_until_training_error_below_80_percent() -> None:
    schedule = LRSchedule.for_depth(CIFAR10_HE2015, depth=110)
    assert schedule.lr(0) == pytest.approx(0.01)
    schedule.observe_train_error(step=200, train_error=85.0)
    assert schedule.lr(200) == pytest.approx(0.01)
    schedule.observe_train_error(step=400, train_error=79.0)  # Section 4.2: "below 80%" -> back to 0.1
    assert schedule.lr(400) == pytest.approx(0.1)
    assert LRSchedule.for_depth(CIFAR10_HE2015, depth=56).lr(0) == pytest.approx(0.1)


def test_plateau_schedule_divides_by_ten_after_patience() -> None:
    schedule = LRSchedule.for_depth(IMAGENET_HE2015, depth=34)
    for error in (60.0, 50.0, 45.0):  # improving
        schedule.observe_eval_error(error)
    assert schedule.lr(0) == pytest.approx(0.1)
    for error in (45.05, 44.99, 45.2):  # three evaluations without 0.1 points of progress
        schedule.observe_eval_error(error)
    assert schedule.lr(0) == pytest.approx(0.01)
    restored = LRSchedule.for_depth(IMAGENET_HE2015, depth=34)
    restored.load_state_dict(schedule.state_dict())
    assert restored == schedule


def suite_file(tmp_path: Path, recipe: str, models: str = "plain20") -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(f"""
data: {{dataset: cifar10, source: synthetic, train_subset: 256, eval_subset: 64}}
recipe: {recipe}
grid: {{model: [{models}]}}
eval_every: 4
eval_batch_size: 64
""")
    return path


def test_nan_loss_ends_the_trial_as_diverged_not_raised(tmp_path: Path) -> None:
    trial = load_suite(suite_file(tmp_path, "{name: cifar10_he2015, batch_size: 32, max_steps: 40, lr: 1.0e+8}")).trials()[0]
    rows: list[dict] = []
    last = train_trial(trial, DirectorySession(rows.append, tmp_path / "ckpt"), threads=1)
    assert last["status"] == "diverged"
    assert last["step"] < 40 and not math.isfinite(last["train_loss"])
    assert [row["status"] for row in rows][-1] == "diverged"


class Killed(Exception):
    pass


def test_checkpoint_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    trial = load_suite(suite_file(tmp_path, "{name: cifar10_he2015, batch_size: 32, max_steps: 12}")).trials()[0]
    straight: list[dict] = []
    train_trial(trial, DirectorySession(straight.append), threads=1)
    assert [row["step"] for row in straight] == [4, 8, 12]

    def dies_at_step_8(row: dict) -> None:
        if row["step"] == 8:
            raise Killed  # killed after the step-8 checkpoint was written, before its row was recorded
        interrupted.append(row)

    interrupted: list[dict] = []
    with pytest.raises(Killed):
        train_trial(trial, DirectorySession(dies_at_step_8, tmp_path / "ckpt"), threads=1)
    resumed: list[dict] = []
    train_trial(trial, DirectorySession(resumed.append, tmp_path / "ckpt"), threads=1)
    # the checkpointed row the table never got is re-emitted under the new attempt, then training goes on
    assert [row["step"] for row in resumed] == [8, 12]
    assert {row["attempt"] for row in resumed} != {row["attempt"] for row in interrupted}
    assert [row["start_step"] for row in resumed] == [8, 8] and interrupted[0]["start_step"] == 0
    for got, want in zip(resumed, straight[1:]):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-4)
        assert got["eval_error"] == pytest.approx(want["eval_error"], abs=1e-6)
    # a finished trial only re-reports its last row
    again: list[dict] = []
    assert train_trial(trial, DirectorySession(again.append, tmp_path / "ckpt"), threads=1)["status"] == "completed"
    assert [row["step"] for row in again] == [12]


@pytest.mark.parametrize(("until_error", "max_warmup", "lrs"), [
    (0.001, 8, [0.01, 0.01, 0.1, 0.1]),   # never that low in 8 steps: warm-up ends at warmup_max_steps
    (100.0, 1000, [0.01, 0.1, 0.1, 0.1]),  # below 100% at the first check (step 4): ends there
])
def test_warm_up_inside_a_trial(tmp_path: Path, until_error: float, max_warmup: int, lrs: list[float]) -> None:
    # Section 4.2's ResNet-110 warm-up (lr 0.01 until the training error is below 80%), here turned
    # on for plain-20 and checked every 4 steps, through train_trial's own loop.
    recipe = (f"{{name: cifar10_he2015, batch_size: 32, max_steps: 16, warmup_min_depth: 20, "
              f"warmup_check_every: 4, warmup_until_train_error: {until_error}, warmup_max_steps: {max_warmup}}}")
    trial = load_suite(suite_file(tmp_path, recipe)).trials()[0]
    rows: list[dict] = []
    train_trial(trial, DirectorySession(rows.append), threads=1)
    assert [row["step"] for row in rows] == [4, 8, 12, 16]
    assert [row["lr"] for row in rows] == pytest.approx(lrs)
    # The warm-up checks read the step's metrics too; each row still reports its whole interval.
    assert all(0 <= row["train_error"] <= 100 and math.isfinite(row["train_loss"]) for row in rows)
