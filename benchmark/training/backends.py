"""Process-wide torch settings a trial states, and the device memory it leaves behind.

A Ray actor runs trial after trial in one process (`reuse_actors`), so anything process-wide is
set for each trial and put back after it, and what one trial cached on the device is released
before the next one starts:

- numerics: TF32 for fp32 matmuls and convolutions, and deterministic kernels (the suite fields
  `tf32` and `deterministic`, recorded in every trial's row);
- memory: the trial's peak, and the release of cached CUDA blocks and compiled graphs at its end
  (with four trials per GPU, one actor's leftover cache starves its neighbours).
"""

from __future__ import annotations

import gc
import os
import re
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# cuBLAS picks reduction orders per workspace; torch requires one of its two fixed workspace
# configurations before `torch.use_deterministic_algorithms(True)` allows cuBLAS calls
# (https://docs.nvidia.com/cuda/cublas/#results-reproducibility).
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"


def worker_environment() -> dict[str, str]:
    """What a trial process needs in its environment from its start: cuBLAS reads
    CUBLAS_WORKSPACE_CONFIG when the process first creates a cuBLAS handle, so a deterministic
    trial in a reused worker (or after another trial in-process) would otherwise run on the
    workspace an earlier trial's cuBLAS took. Every trial gets the fixed workspace (8 buffers of
    4 MiB), deterministic or not, unless the user's environment names one."""
    return {"CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC_WORKSPACE)}


@contextmanager
def numerics(device: torch.device, tf32: bool, deterministic: bool) -> Iterator[None]:
    """Run the block with TF32 on or off and with deterministic kernels or not; restore after.

    TF32 (a 10-bit mantissa inside fp32 matmuls and convolutions, on Ampere and newer GPUs) is
    off unless asked: PyTorch's defaults differ for the two (cuBLAS off, cuDNN on), and `precision:
    fp32` should mean IEEE fp32 as the paper trained. Elsewhere the flags have no effect.
    Deterministic: cuDNN's deterministic kernels, no autotuning (`cudnn.benchmark` picks kernels by
    timing, which differs between runs), `torch.use_deterministic_algorithms(True)` (an op
    without a deterministic kernel raises) and the cuBLAS workspace it requires. Without it, CUDA
    trials autotune (input shapes are fixed, so the fastest kernels are worth finding once).
    """
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark, cudnn.deterministic,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    saved_workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    matmul.allow_tf32 = cudnn.allow_tf32 = tf32
    cudnn.deterministic = deterministic
    cudnn.benchmark = device.type == "cuda" and not deterministic
    if deterministic:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_DETERMINISTIC_WORKSPACE
    torch.use_deterministic_algorithms(deterministic)
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark, cudnn.deterministic = saved[:4]
        torch.use_deterministic_algorithms(saved[4], warn_only=saved[5])
        if saved_workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved_workspace


def reset_peak_memory(device: torch.device) -> None:
    """Start counting the peak that `peak_memory_mb` reports from now."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: writing 5 to clear_refs resets the process's peak resident set size (VmHWM)
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass  # then `peak_memory_mb` reports the process's peak since it started


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory since `reset_peak_memory`, in MiB.

    CUDA: `torch.cuda.max_memory_allocated` (tensors, not the caching allocator's reserve). CPU:
    the whole process's peak resident set size (VmHWM: the dataset, the libraries and the
    trial's tensors), or `ru_maxrss` (the peak since the process started) where VmHWM is missing.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as handle:
            match = re.search(r"^VmHWM:\s+(\d+) kB", handle.read(), re.MULTILINE)
        if match:
            return int(match.group(1)) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def release_memory(device: torch.device) -> None:
    """Free what the finished trial left in this process: compiled graphs (and on CUDA their
    CUDA-graph memory pools), unreachable tensors, then the allocator's cached blocks."""
    if "torch._dynamo" in sys.modules:  # else nothing was compiled (and importing it costs seconds)
        torch.compiler.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
