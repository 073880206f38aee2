"""A device's peak FLOP/s, which `profile` divides by: the datasheet's for known GPUs, a short
measured probe for a CPU, cached per machine and thread count."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from benchmark.hardware.cache import default_cache_dir
from benchmark.hardware.identity import Hardware

# Dense peak TFLOP/s per precision from the vendor datasheets (NVIDIA H100 Tensor Core GPU
# datasheet; H200 datasheet: same compute as H100 SXM; A100 datasheet). "tf32" is what fp32
# convolutions run at while TF32 is allowed. Matched in order against the device name; unknown
# GPUs get no peak (and `profile` no fraction of it).
GPU_PEAK_TFLOPS: tuple[tuple[tuple[str, ...], dict[str, float]], ...] = (
    (("H100", "NVL"), {"bf16": 835.0, "fp16": 835.0, "tf32": 417.5, "fp32": 60.0}),
    (("H100", "PCIe"), {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0, "fp32": 51.2}),
    (("H100",), {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}),  # SXM
    (("H200",), {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    (("A100",), {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}),
)


def peak_tflops(hardware: Hardware, precision: str, probe: bool = True,
                cache_dir: Path | None = None) -> float | None:
    """The device's peak TFLOP/s for `precision`: the datasheet's on known GPUs; on a CPU, the
    probe's (measured once per machine and thread count, then read from the cache; with
    `probe=False` only read, None when nothing is cached). None where there is no number."""
    if hardware.kind == "cuda":
        key = "tf32" if precision == "fp32" and "conv" in hardware.tf32 else precision
        for needles, table in GPU_PEAK_TFLOPS:
            if all(n in hardware.name for n in needles):
                return table.get(key)
        return None
    if hardware.kind != "cpu" or precision not in ("fp32", "bf16"):
        return None
    peaks = cached_cpu_peak(hardware, cache_dir) or (probe_and_cache(hardware, cache_dir) if probe else None)
    return peaks.get(precision) if peaks else None


def probe_cpu_peak(precision: str, seconds: float = 1.5) -> float:
    """TFLOP/s of the best of two dense kernels in `precision`'s dtype, on this process's threads.

    A CPU has no datasheet number we can trust for the machine we are lent (cores are shared,
    clocks vary), so its "peak" is the best rate, over repeated runs (at most `seconds` per
    kernel), of a 2048x2048 matmul and of a 3x3 convolution with 64 channels on 32x32
    channels-last maps (the widest conv of the paper's CIFAR nets). oneDNN ran ResNet-20's convs
    faster than the matmul alone on the development machines (direct brgemm kernels, not Winograd),
    hence the conv. The fraction then says how close the whole net gets to its best kernel here,
    not to the silicon's limit, and it is as noisy as the machine is shared.
    """
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    x = torch.randn(32, 64, 32, 32, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 64, 3, 3, dtype=dtype).contiguous(memory_format=torch.channels_last)
    kernels = (
        (partial(torch.mm, a, b), 2 * 2048**3),
        (partial(torch.nn.functional.conv2d, x, w, padding=1), 2 * 32 * 32 * 32 * 64 * 64 * 9),
    )
    best = 0.0
    with torch.inference_mode():
        for kernel, flops in kernels:
            kernel()  # first call: allocation and kernel selection
            spent = 0.0
            for _ in range(5):
                started = time.perf_counter()
                kernel()
                elapsed = time.perf_counter() - started
                best, spent = max(best, flops / elapsed), spent + elapsed
                if spent > seconds:
                    break
    return best / 1e12


def cache_key(hardware: Hardware) -> str:
    """What makes a CPU peak valid: the host, its CPU and cores, the kernels torch picks, the
    thread count and the torch version."""
    import torch

    text = "|".join([socket.gethostname(), hardware.cpu_model, str(hardware.cores), hardware.cpu_capability,
                     f"threads={hardware.threads}", torch.__version__, repr(hardware.kernel_env)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cache_file(cache_dir: Path | None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "hardware" / "cpu_peak.json"


def _read_cache(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # missing or damaged: measured again
    return data if isinstance(data, dict) else {}


def cached_cpu_peak(hardware: Hardware, cache_dir: Path | None = None) -> dict[str, float] | None:
    entry = _read_cache(_cache_file(cache_dir)).get(cache_key(hardware))
    if not isinstance(entry, dict):
        return None
    peaks = {k: entry[k] for k in ("fp32", "bf16") if isinstance(entry.get(k), (int, float))}
    return peaks or None


def probe_and_cache(hardware: Hardware, cache_dir: Path | None = None,
                    probe: Callable[[str], float] = probe_cpu_peak) -> dict[str, float]:
    """Measure the fp32 and bf16 peaks now (a few seconds, with `hardware.threads` threads) and
    store them for this machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(hardware.threads)
    try:
        peaks = {precision: probe(precision) for precision in ("fp32", "bf16")}
    finally:
        torch.set_num_threads(threads)
    path = _cache_file(cache_dir)
    cache = _read_cache(path)
    # The best rate seen on this machine: a probe taken while others loaded the cores reads low,
    # and a peak is a best case (`python -m benchmark hardware --probe` measures again).
    before = cached_cpu_peak(hardware, cache_dir) or {}
    peaks = {precision: max(rate, before.get(precision, 0.0)) for precision, rate in peaks.items()}
    cache[cache_key(hardware)] = {**peaks, "device": hardware.describe(),
                                  "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: measured again next time, nothing else lost
    return peaks
