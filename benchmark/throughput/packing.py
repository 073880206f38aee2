"""Packing: several trials sharing one device, against one trial alone on it (issue #6).

The paper's CIFAR-10 nets are tiny (ResNet-56 is about 0.125 G mult-adds per image, DESIGN "Facts
that matter"): one trial leaves most of a GPU idle between its small kernels. The fleet therefore
packs trials onto one GPU with fractional resources (`resources: {gpu: 0.25}` in
suites/degradation.yaml). This module measures what the packing buys.

For each k in `trials`, k Ray actors, each given 1/k of the device through Ray's fractional
resources (the fleet's own mechanism: `num_gpus=1/k` on a GPU; on a CPU `num_cpus=cores/k` and as
many torch threads), each train the model with the fleet's step (`TrainStep`) fed by the
device-resident loader, exactly as a trial does. Every actor first warms up (cuDNN autotuning,
compilation, CUDA-graph capture); then all of them run `steps` steps at once. The total throughput of
a packing is all their images divided by the span from the first start to the last end, so a
straggler counts against it. The k's are measured in `rounds` alternating rounds (fresh actors each
time), and each k's row holds the median over the rounds, so load from other users of a shared
machine hits every k alike. The speedup is total(k) / total(1), both from the same run; the
efficiency is speedup / k (1.0 = k trials each as fast as one alone).

Images are synthetic (`load_cifar10("synthetic")`): the loader's work and the step's depend on
shapes, not pixel values, and the measurement then needs no dataset. The optimizer is the
profile's (`timing_optimizer`: the paper's SGD at lr 0.01).

The device is passed through: for `cuda:N` the private Ray instance is offered GPU N alone (Ray
then hands the actors `CUDA_VISIBLE_DEVICES=N`, their `cuda:0`), and each row is labelled with the
GPU the actors report, after checking that it is the one asked for.

Rows are appended to `<out>/packing.csv` (schema: docs/interfaces.md), one per k, beside the
profile's throughput.csv, so machines build one table.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch

from benchmark import BenchmarkError, ModelError, SuiteError
from benchmark.hardware import PRECISIONS, cpu_model
from benchmark.hardware import cores as usable_cores
from benchmark.models import model_info
from benchmark.throughput.profile import (IDENTITY_COLUMNS, append_row, check_header, measurement_identity,
                                          native_precisions, skip_reason, timing_optimizer)

COLUMNS = (
    "model", "trials", "batch_size", "precision", "channels_last", "compiled", "loader", "steps",
    "rounds", "images_per_s_total", "images_per_s_per_trial", "speedup_vs_one", "efficiency",
    *IDENTITY_COLUMNS, "measured_at",
)
SYNTHETIC_IMAGES = 10_240  # 80 batches of 128 per epoch: epoch boundaries are part of the stream


@dataclasses.dataclass(frozen=True)
class PackingConfig:
    """One packing measurement. Defaults follow suites/degradation.yaml (bf16, channels-last);
    `compile` defaults to on for a GPU and off for a CPU, as in degradation.yaml and
    degradation_cpu.yaml (a cold compile costs 20-35 s per model on a CPU)."""

    model: str = "resnet20"
    trials: tuple[int, ...] | None = None  # None: 1 and 4 on a GPU (the goal), 1 and the core count on a CPU
    batch_size: int = 128
    precision: str = "bf16"
    channels_last: bool = True
    compile: bool | None = None  # None: on for CUDA, off for CPU
    steps: int = 200
    warmup: int = 20
    rounds: int = 3


def validate(config: PackingConfig, device: torch.device, cores: int) -> PackingConfig:
    """Every value checked before Ray starts, so bad input measures and appends nothing."""
    try:
        model_info(config.model)
    except ModelError as exc:
        raise ModelError(f"packing: --model: {exc}") from None
    if not config.trials or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in config.trials):
        raise SuiteError(f"packing: --trials {list(config.trials)}: expected positive integers")
    if device.type == "cpu" and max(config.trials) > cores:
        raise SuiteError(f"packing: --trials {max(config.trials)}: a CPU trial needs at least one core "
                         f"and this machine has {cores}")
    if config.precision not in PRECISIONS:
        raise SuiteError(f"packing: --precision {config.precision!r}: expected one of {', '.join(PRECISIONS)}")
    for key, least in (("batch_size", 1), ("steps", 1), ("warmup", 0), ("rounds", 1)):
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise SuiteError(f"packing: --{key.replace('_', '-')} {value!r}: expected an integer >= {least}")
    if config.batch_size > SYNTHETIC_IMAGES:
        raise SuiteError(f"packing: --batch-size {config.batch_size}: at most {SYNTHETIC_IMAGES}")
    if reason := skip_reason(device, config.precision, bool(config.compile)):
        raise SuiteError(f"packing: precision {config.precision!r} compile={config.compile}: {reason}")
    return config


class PackedTrial:
    """One trial's training loop, as a Ray actor: the fleet's loader and step, minus evaluation."""

    def __init__(self, config: PackingConfig, device_type: str, threads: int, seed: int) -> None:
        from benchmark.data import build_loaders, load_cifar10
        from benchmark.models import build_model
        from benchmark.training.step import TrainStep

        torch.set_num_threads(threads)
        # Ray sets CUDA_VISIBLE_DEVICES to the GPU this actor was given: it is "cuda" here.
        device = torch.device(device_type)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # as train_trial: fixed shapes
        torch.manual_seed(seed)
        data = load_cifar10("synthetic", synthetic_size=SYNTHETIC_IMAGES, seed=seed)
        loader, _ = build_loaders(data, loader="device", batch_size=config.batch_size, device=device, seed=seed)
        self.batches = loader.endless()
        model = build_model(config.model)
        self.trainer = TrainStep(model, timing_optimizer(model), device, config.precision,
                                 channels_last=config.channels_last, compile=bool(config.compile))

    def placement(self) -> dict[str, str]:
        return gpu_placement()

    def train(self, steps: int) -> tuple[float, float, int]:
        """Run `steps` steps; (wall-clock start, end, images). Each call ends with `pop_metrics`, the
        step's one host sync, so the device is idle when the next call starts and done when this
        one's end is taken."""
        started = time.time()
        images = 0
        for _ in range(steps):
            x, y = next(self.batches)
            self.trainer.step(x, y)
            images += y.shape[0]
        loss = self.trainer.pop_metrics()["train_loss"]
        ended = time.time()
        if images and not math.isfinite(loss):
            raise BenchmarkError(f"packing: training loss became {loss}; the timing would be meaningless")
        return started, ended, images


def gpu_placement() -> dict[str, str]:
    """Where this (Ray worker) process trains: the GPUs Ray made visible to it and the name of the
    device it uses (its cuda:0, or the CPU)."""
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu_model()
    return {"visible": os.environ.get("CUDA_VISIBLE_DEVICES", ""), "device_name": name}


def physical_gpu(device: torch.device) -> str:
    """The id by which `cuda:N` of this process is known outside it: the N-th entry of
    CUDA_VISIBLE_DEVICES where that is set (an index or a GPU UUID), else N."""
    index = device.index or 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if not visible:
        return str(index)
    if index >= len(visible):
        raise BenchmarkError(f"packing: --device {device}: CUDA_VISIBLE_DEVICES={','.join(visible)} has no GPU {index}")
    return visible[index]


@contextmanager
def private_ray(device: torch.device, cores: int) -> Iterator[None]:
    """A private Ray instance offering the CPU's cores and, for a CUDA device, that GPU alone.

    Ray gives an actor the GPUs of its node by the ids in the raylet's CUDA_VISIBLE_DEVICES, so the
    variable names `device`'s GPU while the instance starts (and is put back after: this process
    keeps its own view of the GPUs).
    """
    from benchmark.fleet.ray_cluster import connect

    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    if device.type == "cuda":
        os.environ["CUDA_VISIBLE_DEVICES"] = physical_gpu(device)
    try:
        connection = connect("local", num_cpus=cores, num_gpus=1 if device.type == "cuda" else 0)
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
    try:
        yield
    finally:
        connection.close()


def actor_options(k: int, device: torch.device, cores: int) -> dict[str, float]:
    """One of k trials' share of the device: 1/k of the GPU (and of the cores), or 1/k of the cores."""
    return {"num_gpus": 1 / k, "num_cpus": cores / k} if device.type == "cuda" else {"num_cpus": cores / k}


def run_packing(config: PackingConfig, out: Path, device: torch.device) -> list[dict[str, str]]:
    """Measure every k in `config.trials` and k = 1 (the baseline) in alternating rounds; append one
    row per k (medians over the rounds) to `<out>/packing.csv` once all are measured."""
    import ray

    cores = usable_cores()
    if config.compile is None:
        config = dataclasses.replace(config, compile=device.type == "cuda")
    if config.trials is None:
        config = dataclasses.replace(config, trials=(1, 4) if device.type == "cuda" else (1, cores))
    config = validate(config, device, cores)
    config = dataclasses.replace(config, precision=native_precisions((config.precision,), device)[0])
    table = Path(out) / "packing.csv"
    check_header(table, COLUMNS)
    if ray.is_initialized():
        raise BenchmarkError("packing: Ray is already running in this process; the measurement needs its own "
                             "private instance with exactly this device")
    ident = measurement_identity(device)
    ks = sorted(set(config.trials) | {1})
    samples: dict[int, list[tuple[float, float]]] = {k: [] for k in ks}
    # A private instance that sees one GPU at most: all k trials must share the same device.
    with private_ray(device, cores):
        for round_index in range(config.rounds):
            for k in ks:
                total, per_trial, ident["device_name"] = _measure(config, k, device, cores)
                samples[k].append((total, per_trial))
                print(f"  round {round_index + 1}/{config.rounds}: {k} trial(s) sharing {ident['device_name']}: "
                      f"{total:.0f} img/s in all", flush=True)
    baseline = statistics.median(total for total, _ in samples[1])
    rows: list[dict[str, str]] = []
    for k in ks:
        total = statistics.median(total for total, _ in samples[k])
        per_trial = statistics.median(per_trial for _, per_trial in samples[k])
        row = {
            "model": config.model, "trials": str(k), "batch_size": str(config.batch_size),
            "precision": config.precision, "channels_last": str(config.channels_last).lower(),
            "compiled": str(config.compile).lower(), "loader": "device", "steps": str(config.steps),
            "rounds": str(config.rounds), "images_per_s_total": f"{total:.1f}",
            "images_per_s_per_trial": f"{per_trial:.1f}", "speedup_vs_one": f"{total / baseline:.3f}",
            "efficiency": f"{total / baseline / k:.3f}",
            **{c: ident[c] for c in COLUMNS if c in ident},
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        append_row(table, row, COLUMNS)
        rows.append(row)
    return rows


def _measure(config: PackingConfig, k: int, device: torch.device, cores: int) -> tuple[float, float, str]:
    """(total images/s, mean images/s per trial, the name of the device they trained on) of k
    trials sharing the device."""
    import ray

    actor_class = ray.remote(**actor_options(k, device, cores))(PackedTrial)
    actors = [actor_class.remote(config, device.type, max(1, cores // k), seed) for seed in range(k)]
    try:
        places = ray.get([a.placement.remote() for a in actors])
        wanted = physical_gpu(device) if device.type == "cuda" else ""
        if device.type == "cuda" and {p["visible"] for p in places} != {wanted}:
            raise BenchmarkError(f"packing: the trials were given GPU(s) {sorted({p['visible'] for p in places})}, "
                                 f"not {device} (GPU {wanted})")
        ray.get([a.train.remote(config.warmup) for a in actors])  # all warm before any is timed
        spans = ray.get([a.train.remote(config.steps) for a in actors])
    except ray.exceptions.RayError as exc:  # a step raised (RayTaskError) or an actor died (RayActorError)
        cause = getattr(exc, "cause", None) or exc
        raise BenchmarkError(f"packing: a trial failed: {(str(cause).strip().splitlines() or [type(cause).__name__])[0]}") from None
    finally:
        for actor in actors:
            ray.kill(actor)
    images = sum(n for _, _, n in spans)
    total = images / (max(end for _, end, _ in spans) - min(start for start, _, _ in spans))
    per_trial = sum(n / (end - start) for start, end, n in spans) / k
    return total, per_trial, places[0]["device_name"]


SUMMARY_COLUMNS = ("model", "trials", "precision", "compiled", "images_per_s_total", "images_per_s_per_trial",
                   "speedup_vs_one", "efficiency")
