"""`python -m benchmark gpu-check`: every CUDA path of the project, checked on one GPU in minutes.

The checks, in the order they run (`CHECKS`):
- precision: ResNet-20, 30 steps from the same weights on the same synthetic batches in fp32,
  TF32, bf16 and fp16, each eager and compiled, against eager fp32: the mean loss of the last 10
  steps and BN's running statistics within `TOLERANCES`; every compiled run must have captured
  its CUDA graphs and advanced BN's own statistics (`TrainStep.verify_cuda_graphs`).
- resume: a trial (fp16, deterministic kernels) killed after its first checkpoint and resumed on
  CUDA, against the same trial run straight: the same last row (`RESUME_TOLERANCE`).
- packing: 4 ResNet-20 trials sharing the GPU through Ray's fractional resources against one
  alone (`benchmark.throughput.packing`): total images/s >= `PACKING_GOAL` x one trial's.
- profile: ResNet-20/56/110 and ResNet-18/50, training and inference, bf16, channels-last,
  compiled (`benchmark.throughput.profile`): every configuration measured.
- speedup: ResNet-56's training path against the eager DataLoader loop (`benchmark.throughput.speedup`,
  as tests/benchmarks/test_bench_step.py): >= `SPEEDUP_GOAL` x.
- ddp: on a machine with 2 GPUs or more, ResNet-20 trained by 2 ranks through DDP over NCCL (a
  data-parallel trial's path, `benchmark.training.data_parallel`): the ranks' parameters equal at the end.
  Skipped, saying so, with fewer GPUs.

Everything is synthetic (no dataset, no network). Each outcome is one row of
`<out>/checks.csv` (append-only, with provenance); the profile and packing append their own
`throughput.csv` and `packing.csv` there. A check whose dependency is missing (Ray and pydantic
are not on a bare GPU machine: docs/hardware-and-gpu.md, GPU) is skipped with the reason; one that raises fails
with its error, and the others still run. Exit status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from benchmark import BenchmarkError
from benchmark.throughput.profile import append_row, check_header, format_table, measurement_identity, on_device

# The precision check's bounds against eager fp32, as (loss, BN statistics) relative differences.
# Calibrated on a CPU (ResNet-20, 30 steps at lr 0.01): compiled fp32 came within 0.06% (loss) and
# 0.4% (BN), bf16 autocast within 1.6% and 0.7%; about 3x that, scaled to each format's mantissa
# (TF32 and fp16 keep 10 bits, bf16 7), leaves room for a GPU's kernels and still catches a
# broken path (BN statistics not updated are ~100% off; a NaN fails outright).
TOLERANCES = {"fp32": (0.01, 0.02), "tf32": (0.03, 0.03), "bf16": (0.05, 0.05), "fp16": (0.05, 0.05)}
LAST_STEPS = 10
# Resume: deterministic kernels make the resumed trial's numbers equal to the straight run's; the
# bounds only absorb float printing (loss: relative; error: percentage points).
RESUME_TOLERANCE = {"train_loss": 1e-4, "eval_error": 0.01}
PACKING_GOAL = 2.5   # 4 trials sharing a GPU against 1 alone (docs/hardware-and-gpu.md, GPU)
SPEEDUP_GOAL = 4.0   # ResNet-56 on a GPU (issue #6)
DURATION_GOAL_S = 480
# DDP: NCCL's all-reduce leaves every rank the same gradient bits, and each rank applies the same SGD
# update to the same weights, so any difference between ranks is a fault, not rounding.
DDP_TOLERANCE = 0.0

COLUMNS = (
    "run_started_at", "check", "case", "metric", "value", "comparison", "bound", "status", "detail",
    "check_seconds", "device_kind", "device_name", "driver", "cuda_version", "torch_version", "cpu_model",
    "cores", "hostname", "git_commit", "measured_at",
)
SUMMARY_COLUMNS = ("check", "case", "metric", "value", "goal", "status", "detail")


@dataclasses.dataclass(frozen=True)
class GpuCheckConfig:
    """The sizes of the checks; the defaults are the GPU check's (tests shrink them on a CPU)."""

    precisions: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16")
    compiled: tuple[bool, ...] = (False, True)
    precision_steps: int = 30
    resume_steps: int = 60          # evaluations (and checkpoints) at half and at the end
    resume_batch_size: int = 128
    packing_steps: int = 100
    packing_warmup: int = 20
    packing_rounds: int = 1
    profile_models: tuple[str, ...] = ("resnet20", "resnet56", "resnet110", "resnet18", "resnet50")
    profile_warmup: int = 10
    profile_iters: int = 30
    speedup_model: str = "resnet56"
    speedup_steps: int = 50
    speedup_warmup: int = 20
    speedup_rounds: int = 4
    speedup_images: int = 12_800
    ddp_ranks: int = 2
    ddp_steps: int = 10


@dataclasses.dataclass
class Outcome:
    """One judged number (or fact) of a check."""

    check: str
    case: str
    metric: str
    value: float | None = None
    comparison: str = ""          # "<=" | ">=" | "" (a fact: `detail` says it)
    bound: float | None = None
    status: str = "pass"          # pass | fail | skip | measured (a number with a goal, never a failure)
    detail: str = ""


def judged(check: str, case: str, metric: str, value: float, comparison: str, bound: float, detail: str = "") -> Outcome:
    """An outcome that passes when `value comparison bound` holds (never for NaN)."""
    ok = value <= bound if comparison == "<=" else value >= bound
    return Outcome(check, case, metric, value, comparison, bound, "pass" if ok and math.isfinite(value) else "fail", detail)


# ------------------------------------------------------------------------------------ judges


def judge_precision(run: Any, reference: Any, device: torch.device) -> list[Outcome]:
    """A `gpu_runs.PrecisionRun` against the eager fp32 one: loss, BN statistics, CUDA graphs."""
    case = f"{run.label} {'compiled' if run.compiled else 'eager'}"
    final, ref_final = _mean(run.losses[-LAST_STEPS:]), _mean(reference.losses[-LAST_STEPS:])
    if run is reference:  # the reference must itself train: its last steps below its first
        return [judged("precision", case + " (reference)", f"mean loss of the last {LAST_STEPS} steps", final,
                       "<=", run.losses[0], "must fall below the first step's loss")]
    loss_bound, bn_bound = TOLERANCES[run.label]
    bn_diff = float((run.bn_stats - reference.bn_stats).norm() / reference.bn_stats.norm())
    # fp16's loss scale and skipped steps: a tolerance failure with many skipped steps is the
    # scaler's doing (each skipped step is an update not made), not the kernels'.
    scaler = (f"; GradScaler scale {run.scales[-1]:g} at the end, {run.skipped_steps} of {len(run.losses)} steps "
              "skipped" if run.scales else "")
    outcomes = [
        judged("precision", case, "loss rel. diff vs eager fp32", abs(final - ref_final) / abs(ref_final), "<=", loss_bound,
               f"mean loss of the last {LAST_STEPS} steps {final:.4f} vs {ref_final:.4f}{scaler}"),
        judged("precision", case, "BN statistics rel. diff vs eager fp32", bn_diff, "<=", bn_bound),
    ]
    if run.compiled and device.type == "cuda":
        outcomes.append(Outcome("precision", case, "CUDA graphs", status="pass" if run.cuda_graphs == "captured" else "fail",
                                detail=run.cuda_graphs))
    return outcomes


def judge_resume(straight: dict[str, Any], resumed: dict[str, Any]) -> list[Outcome]:
    """The last rows of a trial run straight and of the same trial killed after a checkpoint and
    resumed (its row's `start_step`: where the resumed attempt began)."""
    case = f"resumed from step {resumed.get('start_step', 0)} to {resumed['step']}"
    finished = resumed["status"] == straight["status"] == "completed" and resumed.get("start_step", 0) > 0
    outcomes = [Outcome("resume", case, "resumed and completed", status="pass" if finished else "fail",
                        detail=f"straight {straight['status']}, resumed {resumed['status']} from step {resumed.get('start_step', 0)}")]
    loss_diff = abs(resumed["train_loss"] - straight["train_loss"]) / abs(straight["train_loss"])
    outcomes.append(judged("resume", case, "train loss rel. diff vs straight run", loss_diff, "<=", RESUME_TOLERANCE["train_loss"]))
    outcomes.append(judged("resume", case, "eval error diff (points)", abs(resumed["eval_error"] - straight["eval_error"]),
                           "<=", RESUME_TOLERANCE["eval_error"]))
    return outcomes


def judge_packing(rows: Sequence[dict[str, str]]) -> list[Outcome]:
    """packing.csv rows of one run: the speedup of 4 trials sharing the device over 1 alone."""
    four = [r for r in rows if r["trials"] == "4"]
    if not four:
        return [Outcome("packing", "4 trials vs 1", "speedup", status="fail", detail="no row for 4 trials")]
    row = four[0]
    return [judged("packing", "4 trials vs 1", "total images/s speedup", float(row["speedup_vs_one"]), ">=", PACKING_GOAL,
                   f"{row['images_per_s_total']} img/s in all against {float(row['images_per_s_total']) / float(row['speedup_vs_one']):.0f}")]


def judge_profile(rows: Sequence[dict[str, str]], models: Sequence[str]) -> list[Outcome]:
    """One outcome per (model, mode): measured, with a positive, finite images/s."""
    outcomes = []
    for model in models:
        for mode in ("train", "infer"):
            found = [r for r in rows if r["model"] == model and r["mode"] == mode]
            if not found:
                outcomes.append(Outcome("profile", f"{model} {mode}", "images/s", status="fail", detail="not measured"))
                continue
            row = found[0]
            detail = f"peak {row['peak_memory_mb']} MiB" + (f", {float(row['flops_fraction']):.1%} of peak FLOP/s" if row["flops_fraction"] else "")
            outcomes.append(judged("profile", f"{model} {mode}", "images/s", float(row["images_per_s"]), ">=", 1.0, detail))
    return outcomes


def judge_speedup(result: dict[str, Any]) -> list[Outcome]:
    return [judged("speedup", f"{result['model']} {result['fast_precision']} vs eager DataLoader loop", "speedup",
                   float(result["speedup"]), ">=", SPEEDUP_GOAL,
                   f"{result['fast_images_per_s']} against {result['baseline_images_per_s']} img/s; "
                   f"compile {result['compile_warmup_s']} s")]


def judge_ddp(result: dict[str, float], ranks: int, steps: int) -> list[Outcome]:
    """`gpu_runs.ddp_run`'s differences between the ranks' parameters: none after the steps, and
    some before (ranks that started equal would prove nothing about DDP's broadcast)."""
    case = f"{ranks} ranks, {steps} steps"
    outcome = judged("ddp", case, "max parameter difference from rank 0", result["after"], "<=", DDP_TOLERANCE,
                     f"{result['before']:.3g} apart as built, each rank from its own seed")
    if not result["before"] > 0:
        outcome.status, outcome.detail = "fail", "the ranks started with equal weights: the check proves nothing"
    return [outcome]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


# ------------------------------------------------------------------------------------ checks


def check_precision(device: torch.device, out: Path, config: GpuCheckConfig) -> list[Outcome]:
    from benchmark.throughput.gpu_runs import fixed_batches, initial_weights, precision_run

    batches = fixed_batches(device, config.precision_steps)
    weights = initial_weights()
    reference = precision_run("fp32", False, batches, weights, device)
    outcomes = judge_precision(reference, reference, device)
    for label in config.precisions:
        for compiled in config.compiled:
            if (label, compiled) != ("fp32", False):
                outcomes += judge_precision(precision_run(label, compiled, batches, weights, device), reference, device)
    return outcomes


def check_resume(device: torch.device, out: Path, config: GpuCheckConfig) -> list[Outcome]:
    from benchmark.throughput.gpu_runs import resume_run, resume_trial

    trial = resume_trial(device, max_steps=config.resume_steps, eval_every=config.resume_steps // 2,
                         batch_size=config.resume_batch_size)
    return judge_resume(*resume_run(trial))


def check_packing(device: torch.device, out: Path, config: GpuCheckConfig) -> list[Outcome]:
    from benchmark.throughput.packing import PackingConfig, run_packing

    packing = PackingConfig(model="resnet20", trials=(1, 4), steps=config.packing_steps, warmup=config.packing_warmup,
                            rounds=config.packing_rounds)
    return judge_packing(run_packing(packing, out, device))


def check_profile(device: torch.device, out: Path, config: GpuCheckConfig) -> list[Outcome]:
    from benchmark.suite.profile_grid import ProfileConfig
    from benchmark.throughput.profile import run_profile

    profile = ProfileConfig(models=config.profile_models, batch_sizes=(128,), precisions=("bf16",), channels_last=(True,),
                            compile=(True,), warmup=config.profile_warmup, iters=config.profile_iters)
    return judge_profile(run_profile(profile, out, device), config.profile_models)


def check_speedup(device: torch.device, out: Path, config: GpuCheckConfig) -> list[Outcome]:
    from benchmark.data import load_cifar10
    from benchmark.throughput.speedup import cudnn_autotune, measure_epoch_speedup

    data = load_cifar10("synthetic", synthetic_size=config.speedup_images)
    with cudnn_autotune(device):
        result = measure_epoch_speedup(config.speedup_model, data, device, precision="bf16", steps=config.speedup_steps,
                                       warmup=config.speedup_warmup, rounds=config.speedup_rounds, baseline_workers=4)
    return judge_speedup(result)


def check_ddp(device: torch.device, out: Path, config: GpuCheckConfig) -> list[Outcome]:
    from benchmark.throughput.gpu_runs import ddp_run

    case = f"{config.ddp_ranks} ranks, {config.ddp_steps} steps"
    if device.type == "cuda" and torch.cuda.device_count() < config.ddp_ranks:
        return [Outcome("ddp", case, "", status="skip",
                        detail=f"needs {config.ddp_ranks} GPUs, this machine has {torch.cuda.device_count()}")]
    # Ranks on cuda:0..ranks-1 whatever --device names (NCCL needs one GPU per rank); on a CPU (the
    # tests) gloo processes.
    result = ddp_run(config.ddp_ranks, device.type, steps=config.ddp_steps)
    return judge_ddp(result, config.ddp_ranks, config.ddp_steps)


Check = Callable[[torch.device, Path, GpuCheckConfig], list[Outcome]]
# name: (run, what it checks, the modules it needs beyond torch)
CHECKS: dict[str, tuple[Check, str, tuple[str, ...]]] = {
    "precision": (check_precision, "ResNet-20, 30 steps in fp32, TF32, bf16 and fp16, eager and compiled, against eager "
                  "fp32 (loss and BN statistics within stated tolerances; CUDA graphs captured)", ()),
    "resume": (check_resume, "a trial killed after a checkpoint and resumed on CUDA equals the uninterrupted one", ("pydantic",)),
    "packing": (check_packing, f"4 ResNet-20 trials sharing the GPU through Ray: >= {PACKING_GOAL}x one alone", ("ray", "pydantic")),
    "profile": (check_profile, "ResNet-20/56/110 and ResNet-18/50, train and infer, bf16, channels-last, compiled", ()),
    "speedup": (check_speedup, f"ResNet-56's training path against the eager DataLoader loop: >= {SPEEDUP_GOAL}x", ()),
    "ddp": (check_ddp, "2 ranks training ResNet-20 through DDP over NCCL end with equal parameters (skipped with "
            "fewer than 2 GPUs)", ()),
}


def missing_modules(names: Sequence[str]) -> list[str]:
    return [name for name in names if importlib.util.find_spec(name) is None]


def run_checks(names: Sequence[str], device: torch.device, out: Path, config: GpuCheckConfig = GpuCheckConfig(),
               checks: dict[str, tuple[Check, str, tuple[str, ...]]] = CHECKS,
               say: Callable[[str], None] = print) -> list[Outcome]:
    """Run the named checks in order, appending each one's outcomes to `<out>/checks.csv` as it ends."""
    table = Path(out) / "checks.csv"
    check_header(table, COLUMNS)
    ident = measurement_identity(device)
    run_started = _now()
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    for name in names:
        run, _, needs = checks[name]
        say(f"gpu-check: {name} ...")
        check_started = time.perf_counter()
        if missing := missing_modules(needs):
            found = [Outcome(name, "", "", status="skip",
                             detail=f"needs {', '.join(missing)}, not installed here (docs/hardware-and-gpu.md: the device-wheels kit)")]
        else:
            try:
                with on_device(device):
                    found = run(device, Path(out), config)
            except Exception as exc:  # one broken check must not hide the others' results
                lines = str(exc).strip().splitlines()
                found = [Outcome(name, "", "", status="fail", detail=f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300])]
        seconds = time.perf_counter() - check_started
        _append(table, found, seconds, run_started, ident)
        outcomes += found
    if list(names) == list(checks):  # the time goal holds for the whole check only
        # Reported against its goal, never a failure: a first run compiles every graph cold, and
        # how long that takes says nothing about whether the CUDA paths are right.
        elapsed = time.perf_counter() - started
        met = "met" if elapsed <= DURATION_GOAL_S else "not met (a first, cold-compiling run may take longer)"
        total = Outcome("duration", "all checks", "seconds", elapsed, "<=", DURATION_GOAL_S, "measured",
                        f"goal: under 8 minutes, {met}")
        _append(table, [total], elapsed, run_started, ident)
        outcomes.append(total)
    return outcomes


def _append(table: Path, outcomes: Sequence[Outcome], seconds: float, run_started: str, ident: dict[str, str]) -> None:
    for outcome in outcomes:
        row = {
            "run_started_at": run_started, "check": outcome.check, "case": outcome.case, "metric": outcome.metric,
            "value": "" if outcome.value is None else f"{outcome.value:.6g}", "comparison": outcome.comparison,
            "bound": "" if outcome.bound is None else f"{outcome.bound:g}", "status": outcome.status,
            "detail": outcome.detail, "check_seconds": f"{seconds:.1f}", "measured_at": _now(),
            **{c: ident.get(c, "") for c in COLUMNS if c in ident},
        }
        append_row(table, row, COLUMNS)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def summary(outcomes: Sequence[Outcome]) -> str:
    """The pass/fail table with the measured numbers, and a last line with the counts."""
    rows = [{
        "check": o.check, "case": o.case, "metric": o.metric,
        "value": "" if o.value is None else f"{o.value:.4g}",
        "goal": f"{o.comparison} {o.bound:g}" if o.bound is not None else "",
        "status": o.status.upper(), "detail": o.detail,
    } for o in outcomes]
    counts = {status: sum(o.status == status for o in outcomes) for status in ("pass", "fail", "skip", "measured")}
    last = f"gpu-check: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped"
    if counts["measured"]:
        last += f", {counts['measured']} measured against a goal"
    if counts["skip"]:
        last += " (skipped checks prove nothing: each says what it needs)"
    return (format_table(rows, SUMMARY_COLUMNS) + "\n" if rows else "") + last


def exit_status(outcomes: Sequence[Outcome]) -> int:
    return 1 if any(o.status == "fail" for o in outcomes) else 0


# ------------------------------------------------------------------------------------ CLI


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gpu-check",
        help="check every CUDA path on one GPU in minutes (precision, resume, packing, profile, speedup, ddp)",
        description="Run the GPU checks on synthetic data, print a pass/fail table with the measured numbers and "
        "append them to <out>/checks.csv; exit 1 if any check fails. Without CUDA: say so and list the checks.",
    )
    parser.add_argument("--checks", nargs="+", choices=tuple(CHECKS), default=list(CHECKS), metavar="CHECK",
                        help=f"which checks to run (default: all: {' '.join(CHECKS)})")
    parser.add_argument("--device", default="cuda", help="the GPU to check: cuda (the current one) or cuda:N")
    parser.add_argument("--out", type=Path, default=Path("results/gpu-check"))
    parser.add_argument("--require-cuda", action="store_true",
                        help="exit 1, saying why, when no GPU is usable (on a GPU machine: a CPU-only torch, no driver "
                        "or no visible device must not pass as 'nothing to check')")
    parser.set_defaults(func=main)


def cuda_unusable_reason() -> str | None:
    """Why CUDA cannot be used here, or None when it can: a CPU-only torch build, no driver, no device."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build; install a CUDA build of torch"
    if torch.cuda.is_available():
        return None
    try:
        torch.cuda.init()  # raises with the runtime's own reason, e.g. "Found no NVIDIA driver on your system"
    except Exception as exc:  # noqa: BLE001 - any failure to start CUDA is the answer sought
        lines = str(exc).strip().splitlines()
        return f"CUDA does not start: {lines[0] if lines else type(exc).__name__}"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "no CUDA device is visible" + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else "")


def main(args: argparse.Namespace) -> int:
    if (reason := cuda_unusable_reason()) is not None:
        if args.require_cuda:
            print(f"gpu-check: --require-cuda: no usable GPU: {reason}", file=sys.stderr)
            return 1
        print(f"gpu-check: no CUDA device here ({reason}); nothing was checked. On a GPU it checks:")
        for name in args.checks:
            _, what, needs = CHECKS[name]
            print(f"  {name:<10} {what}" + (f" (needs {', '.join(needs)})" if needs else ""))
        return 0
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise BenchmarkError(f"--device {args.device!r}: expected cuda or cuda:N") from None
    if device.type != "cuda" or (device.index or 0) >= torch.cuda.device_count():
        raise BenchmarkError(f"--device {args.device!r}: expected cuda or cuda:N with N < {torch.cuda.device_count()}")
    outcomes = run_checks(args.checks, device, args.out)
    print(summary(outcomes))
    print(f"results appended to {args.out / 'checks.csv'}")
    return exit_status(outcomes)
