"""`python -m benchmark gpu-check` on a CPU: its verdicts from recorded numbers, the table it
appends, its behaviour without CUDA or without Ray, and its training runs at toy size."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark.__main__ import main
from benchmark.throughput.gpu_check import (
    COLUMNS, PACKING_GOAL, SPEEDUP_GOAL, TOLERANCES, GpuCheckConfig, Outcome, exit_status, judge_ddp, judge_packing,
    judge_precision, judge_profile, judge_resume, judge_speedup, run_checks, summary,
)
from benchmark.throughput.gpu_runs import PrecisionRun

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
FALLING = [2.7 - 0.08 * i for i in range(30)]  # a reference loss curve: 2.70 down to 0.38


def run(label: str, compiled: bool, losses: list[float], bn: list[float], cuda_graphs: str = "off") -> PrecisionRun:
    return PrecisionRun(label, compiled, losses, torch.tensor(bn, dtype=torch.float64), cuda_graphs, 1.0)


REFERENCE = run("fp32", False, FALLING, [0.5, -0.2, 1.3, 0.9])


def statuses(outcomes: list[Outcome]) -> dict[str, str]:
    return {o.metric.split(" vs")[0]: o.status for o in outcomes}


# ------------------------------------------------------------------ verdicts from recorded numbers


def test_the_reference_must_train() -> None:
    assert statuses(judge_precision(REFERENCE, REFERENCE, CUDA)) == {"mean loss of the last 10 steps": "pass"}
    flat = run("fp32", False, [2.3] * 30, [0.5, -0.2, 1.3, 0.9])
    assert judge_precision(flat, flat, CUDA)[0].status == "fail"


@pytest.mark.parametrize(("label", "loss_scale", "bn", "graphs", "expected"), [
    # bf16 within its 5%: loss 2% off, BN statistics 1% off, graphs captured
    ("bf16", 1.02, [0.505, -0.202, 1.31, 0.91], "captured",
     {"loss rel. diff": "pass", "BN statistics rel. diff": "pass", "CUDA graphs": "pass"}),
    # compiled fp32 allows 1% on the loss: 2% fails
    ("fp32", 1.02, [0.5, -0.2, 1.3, 0.9], "captured",
     {"loss rel. diff": "fail", "BN statistics rel. diff": "pass", "CUDA graphs": "pass"}),
    # BN statistics never updated (a CUDA graph writing a copy): still at init (0 mean, 1 variance)
    ("tf32", 1.0, [0.0, 0.0, 1.0, 1.0], "captured",
     {"loss rel. diff": "pass", "BN statistics rel. diff": "fail", "CUDA graphs": "pass"}),
    # graphs skipped: the run fell back, which gpu-check does not accept
    ("fp16", 1.0, [0.5, -0.2, 1.3, 0.9], "fallback",
     {"loss rel. diff": "pass", "BN statistics rel. diff": "pass", "CUDA graphs": "fail"}),
    # a NaN loss fails whatever the bound
    ("fp16", math.nan, [0.5, -0.2, 1.3, 0.9], "captured",
     {"loss rel. diff": "fail", "BN statistics rel. diff": "pass", "CUDA graphs": "pass"}),
])
def test_precision_verdicts(label: str, loss_scale: float, bn: list[float], graphs: str, expected: dict) -> None:
    compiled = run(label, True, [loss * loss_scale for loss in FALLING], bn, graphs)
    outcomes = judge_precision(compiled, REFERENCE, CUDA)
    assert statuses(outcomes) == expected
    assert outcomes[0].bound == TOLERANCES[label][0] and outcomes[1].bound == TOLERANCES[label][1]


def test_fp16_states_its_loss_scale_and_skipped_steps() -> None:
    # The scale halves at every skipped step (overflowing gradients) and doubles after 2,000 good ones.
    fp16 = PrecisionRun("fp16", True, FALLING, torch.tensor([0.5, -0.2, 1.3, 0.9], dtype=torch.float64), "captured",
                        1.0, scales=[65536.0, 32768.0, 16384.0] + [16384.0] * 27)
    assert fp16.skipped_steps == 2
    loss = judge_precision(fp16, REFERENCE, CUDA)[0]
    assert loss.detail.endswith("GradScaler scale 16384 at the end, 2 of 30 steps skipped")
    bf16 = judge_precision(run("bf16", True, FALLING, [0.5, -0.2, 1.3, 0.9]), REFERENCE, CUDA)[0]
    assert "GradScaler" not in bf16.detail


def test_the_duration_is_a_measurement_with_its_goal_not_a_failure(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # A first run on a GPU compiles every graph cold and may take longer than the goal: that is
    # reported, and the exit status stays that of the checks of the CUDA paths.
    import benchmark.throughput.gpu_check as gpu_check

    monkeypatch.setattr(gpu_check, "DURATION_GOAL_S", -1.0)
    checks = {"packing": (recorded(judge_packing(PACKING_ROWS)), "packing", ())}
    outcomes = run_checks(["packing"], CPU, tmp_path, checks=checks, say=lambda line: None)
    duration = outcomes[-1]
    assert (duration.check, duration.status, duration.comparison, duration.bound) == ("duration", "measured", "<=", -1.0)
    assert duration.detail.startswith("goal: under 8 minutes, not met")
    assert exit_status(outcomes) == 0
    assert "MEASURED" in summary(outcomes)
    assert read(tmp_path / "checks.csv")[-1]["status"] == "measured"


def test_an_eager_run_or_a_cpu_run_has_no_cuda_graph_verdict() -> None:
    eager = run("bf16", False, FALLING, [0.5, -0.2, 1.3, 0.9])
    assert "CUDA graphs" not in statuses(judge_precision(eager, REFERENCE, CUDA))
    compiled_on_cpu = run("bf16", True, FALLING, [0.5, -0.2, 1.3, 0.9])
    assert "CUDA graphs" not in statuses(judge_precision(compiled_on_cpu, REFERENCE, CPU))


def test_resume_verdicts() -> None:
    straight = {"step": 60, "start_step": 0, "status": "completed", "train_loss": 0.41237, "eval_error": 12.25}
    resumed = {**straight, "start_step": 30}
    assert exit_status(judge_resume(straight, resumed)) == 0
    off = judge_resume(straight, {**resumed, "train_loss": 0.4125, "eval_error": 12.5})
    assert [o.status for o in off] == ["pass", "fail", "fail"]
    assert off[0].case == "resumed from step 30 to 60"
    assert judge_resume(straight, {**resumed, "status": "diverged"})[0].status == "fail"
    assert judge_resume(straight, straight)[0].status == "fail"  # it never resumed: proves nothing


PACKING_ROWS = [  # as a GPU run of `packing` writes them (columns that matter here)
    {"trials": "1", "images_per_s_total": "21000.0", "speedup_vs_one": "1.000"},
    {"trials": "4", "images_per_s_total": "63000.0", "speedup_vs_one": "3.000"},
]


def test_packing_verdicts() -> None:
    [outcome] = judge_packing(PACKING_ROWS)
    assert (outcome.status, outcome.value, outcome.bound) == ("pass", 3.0, PACKING_GOAL)
    assert "63000.0 img/s in all against 21000" in outcome.detail
    slow = [PACKING_ROWS[0], {**PACKING_ROWS[1], "speedup_vs_one": "1.800"}]
    assert judge_packing(slow)[0].status == "fail"
    assert judge_packing(PACKING_ROWS[:1])[0].status == "fail"


def test_profile_verdicts_name_what_was_not_measured() -> None:
    rows = [{"model": "resnet20", "mode": mode, "images_per_s": "48000.0", "peak_memory_mb": "900.0",
             "flops_fraction": "0.0123"} for mode in ("train", "infer")]
    outcomes = judge_profile(rows, ["resnet20", "resnet50"])
    assert [(o.case, o.status) for o in outcomes] == [
        ("resnet20 train", "pass"), ("resnet20 infer", "pass"), ("resnet50 train", "fail"), ("resnet50 infer", "fail")]
    assert outcomes[0].detail == "peak 900.0 MiB, 1.2% of peak FLOP/s" and outcomes[2].detail == "not measured"


def test_speedup_verdicts() -> None:
    result = {"model": "resnet56", "fast_precision": "bf16", "speedup": 4.6, "fast_images_per_s": 46000.0,
              "baseline_images_per_s": 10000.0, "compile_warmup_s": 41.0}
    assert judge_speedup(result)[0].status == "pass" and judge_speedup(result)[0].bound == SPEEDUP_GOAL
    assert judge_speedup({**result, "speedup": 3.2})[0].status == "fail"


def test_ddp_verdicts() -> None:
    [equal] = judge_ddp({"before": 0.68, "after": 0.0}, ranks=2, steps=10)
    assert (equal.status, equal.case, equal.bound) == ("pass", "2 ranks, 10 steps", 0.0)
    assert judge_ddp({"before": 0.68, "after": 3e-7}, ranks=2, steps=10)[0].status == "fail"  # ranks drifted apart
    started_equal = judge_ddp({"before": 0.0, "after": 0.0}, ranks=2, steps=10)[0]
    assert started_equal.status == "fail" and "proves nothing" in started_equal.detail


def test_ddp_is_skipped_with_fewer_gpus_than_ranks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmark.throughput.gpu_check import check_ddp

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # as on the one-GPU machines
    [skipped] = check_ddp(CUDA, tmp_path, GpuCheckConfig())
    assert (skipped.check, skipped.status, skipped.detail) == ("ddp", "skip", "needs 2 GPUs, this machine has 1")


# ------------------------------------------------------------------ the run: table, skips, failures


def recorded(outcomes: list[Outcome]):  # noqa: ANN201
    return lambda device, out, config: outcomes


def broken(device, out, config):  # noqa: ANN001, ANN201
    raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore lines")


def read(table: Path) -> list[dict[str, str]]:
    with table.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        return list(reader)


def test_outcomes_are_appended_with_provenance_and_failures_set_the_exit_status(tmp_path: Path) -> None:
    checks = {
        "packing": (recorded(judge_packing(PACKING_ROWS)), "packing", ()),
        "speedup": (broken, "speedup", ()),
        "fleet": (recorded([]), "needs a module nobody has", ("no_such_module_for_gpu_check",)),
    }
    lines: list[str] = []
    outcomes = run_checks(["packing", "speedup", "fleet"], CPU, tmp_path, checks=checks, say=lines.append)
    assert [(o.check, o.status) for o in outcomes] == [
        ("packing", "pass"), ("speedup", "fail"), ("fleet", "skip"), ("duration", "measured")]
    assert outcomes[1].detail == "RuntimeError: CUDA error: an illegal memory access was encountered"
    assert "no_such_module_for_gpu_check" in outcomes[2].detail and "device-wheels" in outcomes[2].detail
    assert exit_status(outcomes) == 1 and exit_status(outcomes[:1] + outcomes[2:]) == 0
    rows = read(tmp_path / "checks.csv")
    assert [r["check"] for r in rows] == ["packing", "speedup", "fleet", "duration"]
    assert rows[0]["value"] == "3" and rows[0]["comparison"] == ">=" and rows[0]["bound"] == "2.5"
    assert all(r["git_commit"] and r["hostname"] and r["device_kind"] == "cpu" and r["run_started_at"] for r in rows)
    assert len({r["run_started_at"] for r in rows}) == 1
    table = summary(outcomes)
    assert "FAIL" in table and "SKIP" in table and ">= 2.5" in table
    assert table.splitlines()[-1].startswith("gpu-check: 1 passed, 1 failed, 1 skipped, 1 measured against a goal")
    # a second run appends under the same header
    run_checks(["packing"], CPU, tmp_path, checks=checks, say=lines.append)
    assert len(read(tmp_path / "checks.csv")) == 5  # no duration row for a subset of the checks


def test_without_cuda_it_says_so_and_lists_the_checks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["gpu-check", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("gpu-check: no CUDA device here")
    assert [line.split()[0] for line in out[1:]] == ["precision", "resume", "packing", "profile", "speedup", "ddp"]
    assert "needs ray, pydantic" in out[3]
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("cuda_build", "init_error", "reason"), [
    (None, None, "this torch (2.14.1+cpu) is a CPU-only build; install a CUDA build of torch"),
    ("13.0", "Found no NVIDIA driver on your system. Please check ...", "CUDA does not start: Found no NVIDIA driver"),
    ("13.0", None, "no CUDA device is visible (CUDA_VISIBLE_DEVICES='')"),
])
def test_require_cuda_fails_naming_why_no_gpu_is_usable(
    cuda_build: str | None, init_error: str | None, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def init() -> None:
        if init_error:
            raise RuntimeError(init_error)

    monkeypatch.setattr(torch.version, "cuda", cuda_build)
    monkeypatch.setattr(torch, "__version__", "2.14.1+cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "init", init)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert main(["gpu-check", "--require-cuda", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"gpu-check: --require-cuda: no usable GPU: {reason}") and err.count("\n") == 1
    assert main(["gpu-check", "--out", str(tmp_path)]) == 0  # without the flag: a CPU machine, nothing to check
    assert reason in capsys.readouterr().out.splitlines()[0]
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("device", ["cuda:1", "cpu", "gpu", "cuda:x"])
def test_a_device_that_is_not_a_gpu_here_is_one_line_and_writes_nothing(
    device: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on a machine with one GPU: only cuda and cuda:0 name it.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main(["gpu-check", "--device", device, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --device {device!r}: expected cuda or cuda:N" + (" with N < 1\n" if device in ("cuda:1", "cpu") else "\n")
    assert not any(tmp_path.iterdir())


WITHOUT_PYDANTIC_OR_RAY = """
import sys

class Absent:  # a bare GPU machine: torch, but neither pydantic nor Ray
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pydantic", "ray"):
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, Absent())
from benchmark.__main__ import main
sys.exit(main(["gpu-check"]))
"""


def test_the_command_starts_without_pydantic_or_ray() -> None:
    # The CLI imports every command's module; none may import the suite schema (pydantic) at the top.
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", WITHOUT_PYDANTIC_OR_RAY], cwd=repo, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    if not torch.cuda.is_available():
        assert done.stdout.startswith("gpu-check: no CUDA device here")


# ------------------------------------------------------------------ its training runs, at toy size on the CPU


def test_the_precision_check_runs_on_the_cpu(tmp_path: Path) -> None:
    from benchmark.throughput.gpu_check import check_precision

    config = GpuCheckConfig(precisions=("fp32", "bf16"), compiled=(False,), precision_steps=3)
    outcomes = check_precision(CPU, tmp_path, config)
    assert [(o.case, o.metric.split(" vs")[0]) for o in outcomes] == [
        ("fp32 eager (reference)", "mean loss of the last 10 steps"),
        ("bf16 eager", "loss rel. diff"), ("bf16 eager", "BN statistics rel. diff")]
    assert all(o.value is not None and math.isfinite(o.value) for o in outcomes)
    assert outcomes[0].status == "pass"  # three steps at lr 0.01 already lower the loss


@pytest.mark.slow
def test_the_resume_check_runs_on_the_cpu(tmp_path: Path) -> None:
    from benchmark.throughput.gpu_check import check_resume

    outcomes = check_resume(CPU, tmp_path, GpuCheckConfig(resume_steps=4, resume_batch_size=32))
    assert [o.status for o in outcomes] == ["pass"] * 3, outcomes
    assert outcomes[0].case == "resumed from step 2 to 4"
    assert outcomes[1].value == 0.0  # a CPU trial with one thread resumes exactly


def test_the_speedup_measurement_runs_on_the_cpu() -> None:
    from benchmark.data import load_cifar10
    from benchmark.throughput.speedup import measure_epoch_speedup

    data = load_cifar10("synthetic", synthetic_size=640)
    result = measure_epoch_speedup("resnet20", data, CPU, precision="fp32", steps=2, warmup=1, rounds=1,
                                   baseline_workers=0, compile=False)
    assert result["speedup"] > 0 and result["baseline_images_per_s"] > 0 and result["data_source"] == "synthetic"
    assert judge_speedup(result)[0].value == result["speedup"]


@pytest.mark.slow
def test_the_ddp_check_runs_on_the_cpu_with_gloo(tmp_path: Path) -> None:
    # The GPU check's path with its other backend: 2 processes, gloo instead of NCCL, ranks on the CPU.
    from benchmark.throughput.gpu_check import check_ddp

    [outcome] = check_ddp(CPU, tmp_path, GpuCheckConfig(ddp_steps=2))
    assert (outcome.status, outcome.value) == ("pass", 0.0), outcome
    assert "apart as built" in outcome.detail  # a pass needs ranks that started with different weights
