"""Process-wide numerics a trial states (TF32, deterministic kernels) and the memory it leaves:
the settings a CUDA trial gets, checked on the CPU (setting torch's flags needs no GPU)."""

from __future__ import annotations

import os

import pytest
import torch

from benchmark.training.backends import (CUBLAS_DETERMINISTIC_WORKSPACE, numerics, peak_memory_mb, release_memory,
                                         reset_peak_memory)

CUDA = torch.device("cuda")


def flags() -> tuple:
    return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic, torch.are_deterministic_algorithms_enabled(),
            os.environ.get("CUBLAS_WORKSPACE_CONFIG"))


@pytest.mark.parametrize(("tf32", "deterministic", "expected"), [
    (False, False, (False, False, True, False, False)),   # IEEE fp32, cuDNN autotunes its kernels
    (True, False, (True, True, True, False, False)),
    (False, True, (False, False, False, True, True)),     # no autotuning, deterministic kernels only
])
def test_a_cuda_trial_gets_the_stated_numerics_and_the_process_gets_its_own_back(
    monkeypatch: pytest.MonkeyPatch, tf32: bool, deterministic: bool, expected: tuple
) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = flags()
    with numerics(CUDA, tf32=tf32, deterministic=deterministic):
        inside = flags()
    assert inside[:5] == expected
    # torch refuses cuBLAS calls under use_deterministic_algorithms without a fixed workspace
    assert inside[5] == (CUBLAS_DETERMINISTIC_WORKSPACE if deterministic else None)
    assert flags() == before


def test_a_cpu_trial_never_autotunes() -> None:
    with numerics(torch.device("cpu"), tf32=False, deterministic=False):
        assert torch.backends.cudnn.benchmark is False


def test_settings_are_restored_when_the_trial_raises() -> None:
    before = flags()
    with pytest.raises(RuntimeError), numerics(CUDA, tf32=True, deterministic=True):
        raise RuntimeError("trial failed")
    assert flags() == before


def test_cuda_memory_is_released_and_compiled_graphs_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch._dynamo  # noqa: F401  (loaded: something may have been compiled)

    calls: list[str] = []
    monkeypatch.setattr(torch.compiler, "reset", lambda: calls.append("compiler.reset"))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    release_memory(CUDA)
    assert calls == ["compiler.reset", "empty_cache"]  # graphs (and their CUDA-graph pools) first
    release_memory(torch.device("cpu"))
    assert calls[2:] == ["compiler.reset"]


def test_cuda_peak_memory_is_the_allocator_peak_of_the_trial_device(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, object]] = []
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device: seen.append(("reset", device)))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: seen.append(("peak", device)) or 3 * 2**20)
    device = torch.device("cuda", 2)
    reset_peak_memory(device)
    assert peak_memory_mb(device) == 3.0
    assert seen == [("reset", device), ("peak", device)]


def test_cpu_peak_memory_counts_from_the_reset() -> None:
    cpu = torch.device("cpu")
    block = b"\x01" * (200 * 2**20)  # 200 MiB, written, so resident
    del block
    high = peak_memory_mb(cpu)
    reset_peak_memory(cpu)
    low = peak_memory_mb(cpu)
    assert high >= 200 and 0 < low < high - 150  # the freed block no longer counts
