"""Throughput profiling: images/s, peak memory and the fraction of peak FLOP/s, per configuration.

For each model x batch size x precision x memory format x compilation x mode (train | infer), the
step runs `warmup` times, then `iters` timed times on one fixed synthetic batch already on the
device, so the number is the step alone (the loader is measured by tests/benchmarks). Rows are
appended to `<out>/throughput.csv` as they are measured (schema: docs/interfaces.md), so runs on
different machines build one table; the file is never rewritten.

Timing: CUDA events around the timed loop on a GPU, recorded on the measured device's stream (every
configuration runs with that device current, so `--device cuda:1` measures cuda:1); on a CPU the median of per-iteration
`time.perf_counter` times (CPU kernels run synchronously; the median resists other users' bursts). Peak memory: `torch.cuda.max_memory_allocated` on CUDA (tensors only, not the
caching allocator's reserve); on a CPU, the peak resident set size above the baseline taken just
before the configuration, sampled from /proc/self/statm every millisecond (after `malloc_trim` so
memory freed by earlier configurations is not counted as already resident). It is approximate.
"""

from __future__ import annotations

import csv
import ctypes
import dataclasses
import os
import shutil
import socket
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timezone
from functools import partial
from itertools import product
from pathlib import Path

import torch

from benchmark import ResultsError, hardware
from benchmark.hardware import IDENTITY_COLUMNS as HARDWARE_COLUMNS
from benchmark.models import build_model, count_multiply_adds, model_info
from benchmark.results.provenance import git_commit
from benchmark.suite.profile_grid import ProfileConfig, validate
from benchmark.training.step import TrainStep, autocast, autocast_dtype, compile_mode, memory_format

# The device's identity (benchmark/hardware/) and the software, the same in packing.csv.
IDENTITY_COLUMNS = (*HARDWARE_COLUMNS, "torch_version", "hostname", "git_commit")
COLUMNS = (
    "model", "mode", "batch_size", "precision", "channels_last", "compiled", "images_per_s",
    "peak_memory_mb", "flops_fraction", "device_peak_tflops", *IDENTITY_COLUMNS, "measured_at",
)
# A training step costs about 3x the forward pass (forward, then gradients w.r.t. activations and
# weights), the usual convention; DESIGN "Facts that matter".
TRAIN_FORWARD_RATIO = 3


def measurement_identity(device: torch.device) -> dict[str, str]:
    """The IDENTITY_COLUMNS of a row: the device (benchmark/hardware/) and the software."""
    return {**hardware.identify(device).columns(), "torch_version": torch.__version__,
            "hostname": socket.gethostname(), "git_commit": git_commit()}


def native_precisions(precisions: Sequence[str], device: torch.device, strict: bool = False) -> tuple[str, ...]:
    """`precisions` with bf16 replaced by fp32 where the CPU has no native bf16 (one line says so;
    `strict` raises instead), without repeats."""
    identity = hardware.identify(device)
    chosen: list[str] = []
    for precision in precisions:
        if precision == "bf16":
            precision, note = hardware.resolve_precision(precision, identity, strict)
            if note:
                print(note, flush=True)
        if precision not in chosen:
            chosen.append(precision)
    return tuple(chosen)


def skip_reason(device: torch.device, precision: str, compiled: bool) -> str | None:
    """Why a combination cannot run on this device, or None."""
    if precision == "fp16" and device.type != "cuda":
        return "fp16 needs a CUDA device (use bf16 on CPU)"
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "this GPU has no bf16 support"
    if compiled and device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        return "torch.compile on CPU needs a C++ compiler (none on PATH)"
    return None


@contextmanager
def peak_memory_mb(device: torch.device) -> Iterator[list[float]]:
    """Yields a one-element list that holds the peak memory in MiB once the block ends."""
    result = [float("nan")]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield result
        torch.cuda.synchronize(device)
        result[0] = torch.cuda.max_memory_allocated(device) / 2**20
        return
    _malloc_trim()
    page = os.sysconf("SC_PAGE_SIZE")
    baseline = _rss_pages()
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.001):
            peak[0] = max(peak[0], _rss_pages())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        stop.set()
        sampler.join()
    result[0] = max(peak[0], _rss_pages()) - baseline
    result[0] *= page / 2**20


def _rss_pages() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1])


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the baseline then includes freed-but-kept memory


def measure(
    model_name: str, mode: str, batch_size: int, precision: str, channels_last: bool,
    compiled: bool, warmup: int, iters: int, device: torch.device,
) -> tuple[float, float]:
    """Images/s and peak memory (MiB) of one configuration."""
    torch.compiler.reset()  # each configuration compiles afresh; no recompile limit carried over
    info = model_info(model_name)
    torch.manual_seed(0)
    model = build_model(model_name)
    x = torch.randn(batch_size, *info.input_size, device=device)
    y = torch.randint(0, _num_classes(model), (batch_size,), device=device)
    with peak_memory_mb(device) as memory:
        run = _train_runner(model, x, y, precision, channels_last, compiled, device) if mode == "train" \
            else _infer_runner(model, x, precision, channels_last, compiled, device)
        for _ in range(warmup):
            run()
        seconds = _seconds_per_iteration(run, iters, device)
    return batch_size / seconds, memory[0]


def _num_classes(model: torch.nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    return last.out_features


def timing_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The paper's optimizer (Section 4.2: SGD, momentum 0.9, weight decay 1e-4) for timing runs on
    made-up data: lr 0.01 keeps random labels from producing denormals or NaNs that would distort
    the timings. Used by the profile and by `benchmark.throughput.packing`."""
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)


def _train_runner(model, x, y, precision, channels_last, compiled, device):  # noqa: ANN001, ANN202
    step = TrainStep(model, timing_optimizer(model), device, precision, channels_last=channels_last, compile=compiled)
    return partial(step.step, x, y)


def _infer_runner(model, x, precision, channels_last, compiled, device):  # noqa: ANN001, ANN202
    layout = memory_format(channels_last)
    model = model.to(device, memory_format=layout).eval()
    forward = torch.compile(model, mode=compile_mode(device)) if compiled else model
    x = x.contiguous(memory_format=layout)
    dtype = autocast_dtype(precision, device)

    mark_step = compiled and compile_mode(device) == "reduce-overhead"

    def run() -> None:
        if mark_step:  # a new CUDA-graph iteration: last call's outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with torch.inference_mode(), autocast(device, dtype):
            forward(x)

    return run


def on_device(device: torch.device) -> AbstractContextManager:
    """Make a CUDA `device` the current one for the block (kernels launched without an explicit
    device, CUDA graphs, events and streams then belong to it); nothing on a CPU."""
    return torch.cuda.device(device) if device.type == "cuda" else nullcontext()


def _seconds_per_iteration(run, iters: int, device: torch.device) -> float:  # noqa: ANN001
    """CUDA: events on `device`'s current stream around all `iters` calls (the GPU runs ahead of the
    host), divided by `iters`. CPU: the median of per-call `perf_counter` times, since CPU kernels
    run synchronously and the median shrugs off bursts from other processes on shared cores."""
    if device.type == "cuda":
        stream = torch.cuda.current_stream(device)
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        for _ in range(iters):
            run()
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end) / 1000 / iters
    times = []
    for _ in range(iters):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run_profile(config: ProfileConfig, out: Path, device: torch.device, strict: bool = False) -> list[dict[str, str]]:
    """Measure every applicable combination, appending each row to `out`/throughput.csv as it comes.

    bf16 on a CPU without native bf16 is measured as fp32 instead, said in one line (with `strict`,
    an error): emulated bf16 is no path anyone should train on (benchmark/hardware/)."""
    validate(config)
    config = dataclasses.replace(config, precisions=native_precisions(config.precisions, device, strict))
    table = Path(out) / "throughput.csv"
    check_header(table, COLUMNS)
    ident = measurement_identity(device)
    # Fixed input shapes: let cuDNN pick the fastest conv algorithms (what a tuned GPU run does).
    cudnn_benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = device.type == "cuda"
    try:
        with on_device(device):
            _prime(device)
            return _measure_all(config, table, ident, device)
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark


def _measure_all(config: ProfileConfig, table: Path, ident: dict[str, str], device: torch.device) -> list[dict[str, str]]:
    with torch.device("meta"):  # shapes only: counting needs no weights (ResNet-152 or -1202 cost nothing)
        macs = {name: count_multiply_adds(build_model(name), model_info(name).input_size) for name in config.models}
    identity = hardware.identify(device)
    peaks: dict[str, float | None] = {}
    rows = []
    grid = product(config.models, config.batch_sizes, config.precisions, config.channels_last, config.compile)
    for name, batch_size, precision, channels_last, compiled in grid:
        if reason := skip_reason(device, precision, compiled):
            print(f"skip {name} {precision} compile={compiled}: {reason}")
            continue
        if precision not in peaks:
            peaks[precision] = hardware.peak_tflops(identity, precision)
        peak = peaks[precision]
        for mode in config.modes:
            images_per_s, memory = measure(
                name, mode, batch_size, precision, channels_last, compiled, config.warmup, config.iters, device
            )
            flops_per_image = 2 * macs[name] * (TRAIN_FORWARD_RATIO if mode == "train" else 1)
            row = {
                "model": name, "mode": mode, "batch_size": str(batch_size), "precision": precision,
                "channels_last": str(channels_last).lower(), "compiled": str(compiled).lower(),
                "images_per_s": f"{images_per_s:.1f}", "peak_memory_mb": f"{memory:.1f}",
                "flops_fraction": f"{images_per_s * flops_per_image / (peak * 1e12):.4f}" if peak else "",
                "device_peak_tflops": f"{peak:.3f}" if peak else "",
                "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                **ident,
            }
            append_row(table, row, COLUMNS)
            rows.append(row)
            print(f"  {name} {mode} bs={batch_size} {precision} channels_last={channels_last} "
                  f"compiled={compiled}: {images_per_s:.1f} img/s", flush=True)
    return rows


def _prime(device: torch.device) -> None:
    """One small conv forward/backward, so library start-up (oneDNN/cuDNN handles, thread pools)
    is not charged to the first configuration's time and memory."""
    conv = torch.nn.Conv2d(3, 8, 3, padding=1).to(device)
    conv(torch.randn(2, 3, 8, 8, device=device)).sum().backward()


def check_header(table: Path, columns: Sequence[str]) -> None:
    """An existing table must have `columns` as its header: it is appended to, never rewritten."""
    if not table.exists() or table.stat().st_size == 0:
        return
    with table.open(newline="") as f:
        header = next(csv.reader(f), [])
    if tuple(header) != tuple(columns):
        raise ResultsError(f"{table}: header does not match the {table.stem} schema in docs/interfaces.md")


def append_row(table: Path, row: dict[str, str], columns: Sequence[str]) -> None:
    """Append one row (and the header first, to a new table)."""
    table.parent.mkdir(parents=True, exist_ok=True)
    new = not table.exists() or table.stat().st_size == 0
    with table.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerow(row)


SUMMARY_COLUMNS = ("model", "mode", "batch_size", "precision", "channels_last", "compiled", "images_per_s",
                   "peak_memory_mb", "flops_fraction")


def format_table(rows: Sequence[dict[str, str]], columns: Sequence[str] = SUMMARY_COLUMNS) -> str:
    """A readable summary of measured rows."""
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(r[c].ljust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)
