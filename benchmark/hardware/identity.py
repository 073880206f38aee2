"""What a number was measured on: the device's identity (issue 13).

The same code ran ResNet-20 at 1,269 img/s in bf16 on a CPU with AVX-512 and native bf16, and at
19 img/s on an AVX2-only EPYC, where bf16 is emulated (12x slower than its fp32; DESIGN "Facts
that matter"). So every table records the device's identity: `identify(device)` gives the CPU
model, cores, torch's CPU capability (`torch.backends.cpu.get_cpu_capability()`: the kernels ATen
dispatches, DEFAULT/AVX2/AVX512/...) and native bf16; for a GPU its name, memory, compute
capability, driver, CUDA and whether TF32 is allowed. The choices that depend on it live beside
it: the precision (`precision.py`) and the peak that `profile` divides by (`peak.py`).
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: the results tables read this module's columns
    import torch


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


def with_threads(hardware: Hardware, threads: int) -> Hardware:
    """The same device as a process with `threads` intra-op threads sees it (a trial's view)."""
    return replace(hardware, threads=threads)

