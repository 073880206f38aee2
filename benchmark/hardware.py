"""What a number was measured on, and what that hardware does fast (issue 13).

The same code ran ResNet-20 at 1,269 img/s in bf16 on a CPU with AVX-512 and native bf16, and at
19 img/s on an AVX2-only EPYC, where bf16 is emulated (12x slower than its fp32; DESIGN "Facts
that matter"). So every table records the device's identity, and the choices that depend on it
(the precision; the peak that `profile` divides by) are made here, from that identity:

- `identify(device)`: CPU model, cores, torch's CPU capability (`torch.backends.cpu.
  get_cpu_capability()`: the kernels ATen dispatches, DEFAULT/AVX2/AVX512/...), native bf16; for a
  GPU its name, memory, compute capability, driver, CUDA and whether TF32 is allowed;
- `peak_tflops(hardware, precision)`: the datasheet's dense peak for known GPUs; for a CPU a short
  measured probe (`probe_cpu_peak`), cached per machine and thread count;
- `fast_precision` / `resolve_precision`: bf16 only where the device computes it natively.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.errors import BenchmarkError

if TYPE_CHECKING:  # torch is imported where it is used: results.py reads this module's columns
    import torch

    from benchmark.spec import Suite

# The device columns of every table that holds measurements (throughput.csv, packing.csv); runs.csv
# holds RUN_HARDWARE_COLUMNS beside its readable `device` (and its `cuda_version`), with the peaks
# for both precisions since a trial's row is not per precision.
IDENTITY_COLUMNS = (
    "device_kind", "device_name", "cpu_model", "cores", "cpu_capability", "native_bf16",
    "device_memory_gb", "compute_capability", "driver", "cuda_version", "tf32",
)
RUN_HARDWARE_COLUMNS = (
    "cpu_model", "cores", "cpu_capability", "native_bf16", "device_memory_gb", "compute_capability",
    "driver", "peak_tflops_fp32", "peak_tflops_bf16",
)

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

# CPU flags (Linux /proc/cpuinfo) that mean bf16 arithmetic in hardware: x86 AVX512-BF16 (Cooper
# Lake, Sapphire Rapids, Zen 4 and later) or AMX-BF16; Arm's BF16 extension (Neoverse V1/N2 and later).
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}
# oneDNN's ISA caps (ONEDNN_MAX_CPU_ISA) at or above its first with bf16 instructions (oneDNN docs,
# "CPU dispatcher control"): below them, bf16 convolutions fall back to slow reference code.
ONEDNN_BF16_ISAS = {"ALL", "DEFAULT", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX",
                    "AVX512_CORE_AMX_FP16", "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512",
                    "AVX10_2_512_AMX_2"}
# Environment variables that change which kernels run, so a peak measured under one of them is
# not the peak of the other: ATen's dispatch level and oneDNN's (the convolutions') ISA cap.
KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


@dataclass(frozen=True)
class Hardware:
    """One device's identity. CPU-only fields are empty on a GPU and the other way round."""

    kind: str                   # "cpu" | "cuda"
    name: str                   # the CPU model, or the GPU's name
    cpu_model: str
    cores: int                  # CPU cores this process may use (its affinity mask)
    cpu_capability: str         # torch.backends.cpu.get_cpu_capability(): AVX2, AVX512, DEFAULT, ...
    native_bf16: bool           # bf16 computed in hardware, not emulated
    threads: int = 1            # torch's intra-op threads when identified
    memory_gb: float | None = None    # GPU memory
    compute_capability: str = ""      # GPU, e.g. "9.0"
    driver: str = ""                  # NVIDIA driver
    cuda_version: str = ""
    tf32: str = ""                    # GPU: which fp32 kernels may use TF32: "matmul+conv", "conv", "matmul", "off"
    kernel_env: tuple[tuple[str, str], ...] = field(default=())  # KERNEL_ENV variables that were set

    def describe(self) -> str:
        """One readable line, e.g. `cpu: AMD EPYC (2 cores, AVX512, native bf16, 1 thread)`."""
        if self.kind == "cuda":
            memory = f"{self.memory_gb:.0f} GB, " if self.memory_gb else ""
            return (f"cuda: {self.name} ({memory}compute {self.compute_capability}, driver {self.driver or '?'}, "
                    f"CUDA {self.cuda_version or '?'}, TF32 {self.tf32})")
        bf16 = "native bf16" if self.native_bf16 else "no native bf16"
        env = "".join(f", {k}={v}" for k, v in self.kernel_env)
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        return f"cpu: {self.name} ({self.cores} cores, {self.cpu_capability}, {bf16}, {threads}{env})"

    def columns(self) -> dict[str, str]:
        """The IDENTITY_COLUMNS of a table row, as text."""
        return {
            # kernels capped by environment variables are another device for the tables' purposes
            "device_kind": self.kind, "device_name": self.name + "".join(f" [{k}={v}]" for k, v in self.kernel_env),
            "cpu_model": self.cpu_model,
            "cores": str(self.cores), "cpu_capability": self.cpu_capability,
            "native_bf16": str(self.native_bf16).lower(),
            "device_memory_gb": f"{self.memory_gb:.1f}" if self.memory_gb else "",
            "compute_capability": self.compute_capability, "driver": self.driver,
            "cuda_version": self.cuda_version, "tf32": self.tf32,
        }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (x86 `flags`, Arm `Features` in /proc/cpuinfo); empty elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_cpu_bf16(flags: frozenset[str] | set[str], onednn_max_isa: str | None = None) -> bool:
    """Whether bf16 runs in hardware here: the CPU has bf16 instructions, and oneDNN (which runs the
    convolutions) may use them. Measured on the AVX-512 development machine, ResNet-20's bf16 step
    ran 9-19x slower than fp32 under `ONEDNN_MAX_CPU_ISA=AVX2` (oneDNN then has no bf16 kernel and
    falls back to reference code, as on the AVX2-only EPYC of issue 13), while
    `ATEN_CPU_CAPABILITY=avx2` alone left bf16 fast; so the oneDNN cap counts, torch's capability not.
    """
    if not NATIVE_BF16_FLAGS & set(flags):
        return False
    x86 = bool({"avx2", "avx512f", "sse2"} & set(flags))
    return not x86 or not onednn_max_isa or onednn_max_isa.upper() in ONEDNN_BF16_ISAS


def onednn_max_isa() -> str | None:
    return os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def nvidia_driver() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.splitlines()[0].strip() if out.strip() else ""


def tf32_state() -> str:
    """Which fp32 kernels may use TF32 right now (PyTorch's defaults: convolutions yes, matmuls no)."""
    import torch

    parts = [name for name, on in (("matmul", torch.backends.cuda.matmul.allow_tf32),
                                   ("conv", torch.backends.cudnn.allow_tf32)) if on]
    return "+".join(parts) or "off"


def identify(device: torch.device | str) -> Hardware:
    """The identity of `device` as this process sees it (threads and TF32 flags as set now)."""
    import torch

    device = torch.device(device)
    model = cpu_model()
    capability = torch.backends.cpu.get_cpu_capability()
    env = tuple((k, os.environ[k]) for k in KERNEL_ENV if os.environ.get(k))
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return Hardware(
            kind="cuda", name=props.name, cpu_model=model, cores=cores(), cpu_capability=capability,
            native_bf16=torch.cuda.is_bf16_supported(including_emulation=False), threads=torch.get_num_threads(),
            memory_gb=props.total_memory / 1e9, compute_capability=f"{props.major}.{props.minor}",
            driver=nvidia_driver(), cuda_version=torch.version.cuda or "", tf32=tf32_state(), kernel_env=env,
        )
    return Hardware(kind=device.type, name=model, cpu_model=model, cores=cores(), cpu_capability=capability,
                    native_bf16=native_cpu_bf16(cpu_flags(), onednn_max_isa()), threads=torch.get_num_threads(),
                    kernel_env=env)


# ------------------------------------------------------------------------------ the fast path


def fast_precision(hardware: Hardware) -> str:
    """The precision this device trains fastest in among those it computes natively: bf16 autocast
    where bf16 is native (1.4-1.7x fp32 for the CIFAR nets on the AVX-512 development machine, one
    thread), fp32 elsewhere (emulated bf16 ran 9-12x slower than fp32: README "Hardware")."""
    return "bf16" if hardware.native_bf16 else "fp32"


class PrecisionError(BenchmarkError):
    """A precision this device cannot run (or, with --strict, not natively)."""


def resolve_precision(requested: str, hardware: Hardware, strict: bool = False) -> tuple[str, str]:
    """(precision to use, a one-line note or "") for `requested` on `hardware`.

    `auto` is `fast_precision`. bf16 on a CPU without native bf16 becomes fp32 with a note (with
    `strict`, a PrecisionError instead). fp16 off CUDA and unknown names are errors naming them.
    """
    known = ("auto", "fp32", "bf16", "fp16")
    if requested not in known:
        raise PrecisionError(f"precision {requested!r}: expected one of {', '.join(known)}")
    if requested == "auto":
        return fast_precision(hardware), ""
    if requested == "fp16" and hardware.kind != "cuda":
        raise PrecisionError(f"precision 'fp16' needs a CUDA device; this is {hardware.describe()} (use fp32 or bf16)")
    if requested == "bf16" and hardware.kind == "cpu" and not hardware.native_bf16:
        why = (f"precision 'bf16': this CPU ({hardware.name}, {hardware.cpu_capability}) has no native bf16, "
               "where bf16 is emulated and runs several times slower than fp32")
        if strict:
            raise PrecisionError(f"{why} (--strict)")
        return "fp32", f"{why}; using fp32 instead (--strict makes this an error)"
    return requested, ""


# ------------------------------------------------------------------------------ peak FLOP/s


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
    if cache_dir is None:
        from benchmark.data.jpeg_npz import default_cache_dir

        cache_dir = default_cache_dir()
    return Path(cache_dir) / "hardware" / "cpu_peak.json"


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


def with_threads(hardware: Hardware, threads: int) -> Hardware:
    """The same device as a process with `threads` intra-op threads sees it (a trial's view)."""
    return replace(hardware, threads=threads)


def fit_suite_precision(suite: Suite, strict: bool = False) -> tuple[Suite, str]:
    """The suite with its precision made concrete for the hardware its trials will run on, and a
    one-line note when a request was changed ("" otherwise).

    CPU trials (resources.gpu == 0) are judged by this machine's CPU (the driver's: on a Ray
    cluster of other machines, each trial's row records its own node's hardware). GPU trials by
    this machine's GPU when it has one; without one, `auto` means bf16, which every GPU the
    paper-sized suites are written for (A100, H100) computes natively.
    """
    if suite.resources.gpu == 0:
        identity = identify("cpu")
    else:
        import torch

        if not torch.cuda.is_available():
            return (suite.model_copy(update={"precision": "bf16"}), "") if suite.precision == "auto" else (suite, "")
        identity = identify("cuda")
    precision, note = resolve_precision(suite.precision, identity, strict)
    return suite.model_copy(update={"precision": precision}), note
