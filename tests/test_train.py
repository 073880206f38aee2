"""train_trial's rules: the learning-rate schedule, warm-up, divergence, checkpoint resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from step_support import Overflow, cpu_grad_scaler, fake_cuda_graph_mode

from benchmark.suite.recipes import CIFAR10_HE2015, IMAGENET_HE2015
from benchmark.suite.spec import load_suite
from benchmark.training.checkpoint import read_payload
from benchmark.training.schedule import LRSchedule
from benchmark.training.session import DirectorySession
from benchmark.training.train import train_trial


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
    assert last["step"] < 40 and last["nonfinite_steps"] > 0 and math.isnan(last["eval_error"])
    assert [row["status"] for row in rows][-1] == "diverged"


class Killed(Exception):
    pass


@pytest.mark.slow
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


def test_a_node_without_the_data_fails_its_trial_in_one_line_naming_the_node(tmp_path: Path) -> None:
    from benchmark import DataError

    suite = tmp_path / "imagenet.yaml"
    suite.write_text(f"""
data: {{dataset: imagenet, source: folder, split: val, root: {tmp_path / 'imagenet'}}}
loader: torch
recipe: {{name: imagenet_he2015, batch_size: 2, max_steps: 2}}
grid: {{model: [resnet18]}}
""")
    trial = load_suite(suite).trials()[0]  # the driver saw the folder; this node does not have it
    with pytest.raises(DataError, match=rf"^node node-7: .*{tmp_path / 'imagenet'}") as raised:
        train_trial(trial, DirectorySession(lambda row: None, node="node-7"), threads=1)
    assert "\n" not in str(raised.value)


# ----------------------------------------------------------- checkpoints on any device (issue 14.1)


def test_a_checkpoint_restores_its_cpu_state_on_any_map_location(tmp_path: Path) -> None:
    # On a GPU, `torch.load(map_location=device)` moved the saved CPU RNG state to the GPU and
    # `torch.set_rng_state` raised: every resume and retry of a GPU trial failed. The `meta` device
    # plays the GPU here: every tensor moves there, and what must stay on the CPU has to survive.
    import torch

    from benchmark.models import build_model
    from benchmark.training.checkpoint import PAYLOAD_FILE
    from benchmark.training.step import TrainStep
    from benchmark.training.train import _restore_state

    trial = load_suite(suite_file(tmp_path, "{name: cifar10_he2015, batch_size: 32, max_steps: 4}")).trials()[0]
    train_trial(trial, DirectorySession(lambda row: None, tmp_path / "ckpt"), threads=1)
    saved_rng = torch.get_rng_state()  # the checkpoint was written after the last step

    # plain types and tensors only (weights_only), every tensor moved to the "GPU"
    payload = torch.load(tmp_path / "ckpt" / PAYLOAD_FILE, map_location="meta", weights_only=True)
    assert payload["model"]["fc.weight"].device.type == "meta"
    assert all(isinstance(state, bytes) for state in payload["rng"].values())  # map_location leaves bytes alone
    assert payload["grad_scaler"] is None  # fp32: no scaler

    with torch.device("meta"):
        model = build_model(trial.model)
    trainer = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), "meta")
    schedule = LRSchedule.for_depth(trial.recipe, trial.depth)
    torch.manual_seed(12345)
    state = _restore_state(payload, trainer, schedule)
    assert state["step"] == 4
    assert torch.equal(torch.get_rng_state(), saved_rng)


def test_the_cuda_rng_state_travels_as_cpu_bytes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # torch.cuda.set_rng_state takes a CPU ByteTensor; the state is saved for the trial's own device.
    import torch

    from benchmark.training.train import restore_rng, rng_state

    cuda1 = torch.device("cuda", 1)
    generator_state = torch.arange(16, dtype=torch.uint8)
    restored: dict = {}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: generator_state.clone() if device == cuda1 else None)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.update(state=state, device=device))
    torch.save(rng_state(cuda1), tmp_path / "rng.pt")
    restore_rng(torch.load(tmp_path / "rng.pt", map_location="meta", weights_only=True), cuda1)
    assert restored["device"] == cuda1
    assert restored["state"].device.type == "cpu" and restored["state"].dtype == torch.uint8
    assert torch.equal(restored["state"], generator_state)


# ----------------------------------------------------------- divergence and fp16 (issue 14.2)


@pytest.fixture
def overflow(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Every model train_trial builds gets an `Overflow` hook (steps chosen by the test, none by
    default); the trial's GradScaler runs on the CPU."""
    import benchmark.models

    injector = Overflow(set())
    real_build = benchmark.models.build_model
    monkeypatch.setattr(benchmark.models, "build_model", lambda *a, **k: injector.attach(real_build(*a, **k)))
    cpu_grad_scaler(monkeypatch)
    return injector


def test_an_overflowing_fp16_step_does_not_end_the_trial(tmp_path: Path, overflow) -> None:  # noqa: ANN001
    import torch

    overflow.steps = {1}
    trial = load_suite(suite_file(tmp_path, "{name: cifar10_he2015, batch_size: 32, max_steps: 8}")).trials()[0]
    rows: list[dict] = []
    last = train_trial(trial, DirectorySession(rows.append, tmp_path / "ckpt"), threads=1)
    assert last["status"] == "completed" and last["step"] == 8
    assert [row["nonfinite_steps"] for row in rows] == [1, 1]  # counted over the trial
    assert all(math.isfinite(row["train_loss"]) and math.isfinite(row["eval_error"]) for row in rows)
    # the GradScaler's state is checkpointed: its scale was halved by the overflow
    assert read_payload(tmp_path / "ckpt")["grad_scaler"]["scale"] == 2.0**15


def test_a_trial_whose_steps_keep_overflowing_is_diverged(tmp_path: Path, overflow) -> None:  # noqa: ANN001
    overflow.steps = "all"  # the weights stay finite (every step skipped), but nothing trains
    trial = load_suite(suite_file(tmp_path, "{name: cifar10_he2015, batch_size: 32, max_steps: 8}")).trials()[0]
    last = train_trial(trial, DirectorySession(lambda row: None), threads=1)
    assert last["status"] == "diverged" and last["step"] == 4 and last["nonfinite_steps"] == 4


def test_without_a_scaler_one_overflowing_step_is_divergence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmark.models

    real_build = benchmark.models.build_model
    monkeypatch.setattr(benchmark.models, "build_model", lambda *a, **k: Overflow({1}).attach(real_build(*a, **k)))
    trial = load_suite(suite_file(tmp_path, "{name: cifar10_he2015, batch_size: 32, max_steps: 8}")).trials()[0]
    last = train_trial(trial, DirectorySession(lambda row: None), threads=1)
    assert last["status"] == "diverged" and last["step"] == 4
    assert last["nonfinite_steps"] == 3  # the overflow (step 2) and every step after it: NaN weights


@pytest.mark.parametrize(("finite", "nonfinite", "steps", "diverged"), [
    (True, 0, 500, False), (True, 1, 500, False), (True, 250, 500, False), (True, 251, 500, True),
    (False, 0, 500, True), (True, 0, 0, False),
])
def test_divergence_rule(finite: bool, nonfinite: int, steps: int, diverged: bool) -> None:
    from benchmark.training.train import MAX_NONFINITE_SHARE, judge_divergence

    assert MAX_NONFINITE_SHARE == 0.5
    assert judge_divergence(finite, nonfinite, steps) is diverged


def test_a_resumed_fp16_trial_keeps_its_grad_scale(tmp_path: Path, overflow) -> None:  # noqa: ANN001
    overflow.steps = {1}
    trial = load_suite(suite_file(tmp_path, "{name: cifar10_he2015, batch_size: 32, max_steps: 12}")).trials()[0]

    def dies_at_step_8(row: dict) -> None:
        if row["step"] == 8:
            raise Killed  # after the step-8 checkpoint

    with pytest.raises(Killed):
        train_trial(trial, DirectorySession(dies_at_step_8, tmp_path / "ckpt"), threads=1)
    overflow.steps = set()  # steps 9-12 run in a new process, without an overflow
    train_trial(trial, DirectorySession(lambda row: None, tmp_path / "ckpt"), threads=1)
    assert read_payload(tmp_path / "ckpt")["step"] == 12
    # a fresh scaler would have started again at 2**16
    assert read_payload(tmp_path / "ckpt")["grad_scaler"]["scale"] == 2.0**15


# ----------------------------------------------------------- stated settings, memory, CUDA graphs


def test_tf32_and_deterministic_hold_during_the_trial_and_are_recorded(tmp_path: Path) -> None:
    import torch

    path = suite_file(tmp_path, "{name: cifar10_he2015, batch_size: 32, max_steps: 4}")
    path.write_text(path.read_text() + "tf32: true\ndeterministic: true\n")
    trial = load_suite(path).trials()[0]
    assert trial.tf32 and trial.deterministic
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.are_deterministic_algorithms_enabled())
    seen: list[tuple] = []

    def report(row: dict) -> None:
        seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
                     torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                     torch.backends.cudnn.benchmark))
        assert row["tf32"] is True and row["deterministic"] is True

    train_trial(trial, DirectorySession(report), threads=1)
    assert seen == [(True, True, True, True, False)]
    after = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.are_deterministic_algorithms_enabled())
    assert after == before  # a reused worker's next trial starts from the process's own settings


def test_peak_memory_is_recorded_and_memory_released_even_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmark.training.train

    released: list[str] = []
    monkeypatch.setattr(benchmark.training.train, "release_memory", lambda device: released.append(device.type))
    trial = load_suite(suite_file(tmp_path, "{name: cifar10_he2015, batch_size: 32, max_steps: 4}")).trials()[0]
    row = train_trial(trial, DirectorySession(lambda row: None), threads=1)
    assert row["peak_memory_mb"] > 0 and released == ["cpu"]

    def fails(row: dict) -> None:
        raise Killed

    with pytest.raises(Killed):
        train_trial(trial, DirectorySession(fails), threads=1)
    assert released == ["cpu", "cpu"]


@pytest.mark.parametrize(("skips", "outcome"), [([0], "captured"), ([0, 1], "fallback")])
def test_the_trial_verifies_cuda_graphs_and_records_the_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, skips: list[int], outcome: str
) -> None:

    modes = fake_cuda_graph_mode(monkeypatch, skips)
    path = suite_file(tmp_path, "{name: cifar10_he2015, batch_size: 32, max_steps: 8}")
    path.write_text(path.read_text() + "compile: true\n")
    rows: list[dict] = []
    train_trial(load_suite(path).trials()[0], DirectorySession(rows.append), threads=1)
    # checked at the first evaluation (step 4, before the 5-step mark), and recorded in every row
    assert [row["cuda_graphs"] for row in rows] == [outcome, outcome]
    assert modes == (["reduce-overhead"] if outcome == "captured" else ["reduce-overhead", None])
