"""Data-parallel scaling: images/s of a ResNet-18 training step with 2 DDP ranks (gloo) against 1
process, the same global batch, side by side in one run, on whatever CPU cores this machine has.

Both sides get the machine's cores: one process with all of them as threads, or one thread per
rank. On the 2-core development machine this is the issue's "expect little" case: one process
already uses both cores through its intra-op threads, so DDP can only win where one process's
threads scale badly, and it pays a gradient all-reduce of ResNet-18's 11.7M parameters (47 MB) per
step over loopback. On GPUs the same code is 1 rank per GPU (NCCL); that scaling is measured where
a GPU is lent (docs/hardware-and-gpu.md, GPU).

    .venv/bin/python -m pytest tests/benchmarks/test_bench_data_parallel.py --benchmark-only -s
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from benchmark.models import build_model
from benchmark.training.data_parallel import Replicas, exit_spawned_rank
from benchmark.training.step import TrainStep

GLOBAL_BATCH = 16
SIZE = 224         # ImageNet's crop (Section 3.4)
WARMUP = 2
STEPS = 6
ROUNDS = 3


def _rank(rank: int, world: int, threads: int, port: int, out: str) -> None:
    torch.set_num_threads(threads)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    replicas = Replicas(rank=rank, world_size=world)
    torch.manual_seed(0)
    model = build_model("resnet18")
    trainer = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), "cpu",
                        channels_last=True, wrap=replicas.wrap)
    generator = torch.Generator().manual_seed(rank)
    x = torch.randn(GLOBAL_BATCH // world, 3, SIZE, SIZE, generator=generator)
    y = torch.randint(0, 1000, (GLOBAL_BATCH // world,), generator=generator)
    for _ in range(WARMUP):
        trainer.step(x, y)
    trainer.pop_metrics()
    if world > 1:
        torch.distributed.barrier()
    started = time.perf_counter()
    for _ in range(STEPS):
        trainer.step(x, y)
    trainer.pop_metrics()  # waits for the last step
    seconds = time.perf_counter() - started
    checksum = sum(float(p.detach().double().sum()) for p in trainer.model.parameters())
    torch.save({"seconds": seconds, "checksum": checksum}, f"{out}/rank{rank}.pt")
    if world > 1:
        torch.distributed.barrier()  # every rank done before any tears the group down
        torch.distributed.destroy_process_group()
    exit_spawned_rank()  # a spawned process, world 1 too: no interpreter teardown (docs/testing.md, the gloo abort)


def images_per_s(world: int, out: Path) -> tuple[float, list[float]]:
    """The global batch's images/s over the timed steps (the slowest rank's time), and each rank's
    parameter checksum."""
    cores = len(os.sched_getaffinity(0))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(world, max(1, cores // world), port, str(out)), nprocs=world, join=True)
    ranks = [torch.load(out / f"rank{r}.pt") for r in range(world)]
    return GLOBAL_BATCH * STEPS / max(r["seconds"] for r in ranks), [r["checksum"] for r in ranks]


def test_two_ranks_against_one(benchmark, tmp_path: Path) -> None:  # noqa: ANN001
    single: list[float] = []
    double: list[float] = []

    def one_process() -> None:
        single.append(images_per_s(1, tmp_path)[0])

    def two_ranks() -> None:
        rate, checksums = images_per_s(2, tmp_path)
        assert checksums[0] == checksums[1], "the ranks' parameters differ after DDP steps"
        double.append(rate)

    benchmark.group = f"ResNet-18 training step, global batch {GLOBAL_BATCH} at {SIZE}px, CPU"
    benchmark.pedantic(two_ranks, setup=one_process, rounds=ROUNDS, iterations=1)
    one, two = sorted(single)[len(single) // 2], sorted(double)[len(double) // 2]
    benchmark.extra_info.update(one_process_images_per_s=round(one, 2), two_ranks_images_per_s=round(two, 2),
                                scaling=round(two / one, 2), cores=len(os.sched_getaffinity(0)))
    print(f"\nResNet-18, global batch {GLOBAL_BATCH}: 1 process {one:.1f} img/s, 2 DDP ranks {two:.1f} img/s: "
          f"{two / one:.2f}x on {len(os.sched_getaffinity(0))} cores")
    assert len(single) == len(double) == ROUNDS
