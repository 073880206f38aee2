"""`train_trial`: one trial, start to finish, on whatever device it is given.

Build the model and the loaders, train with the recipe's schedule, evaluate every `eval_every`
steps, report one row per evaluation, checkpoint after each report so that a killed or retried
trial continues where it stopped. A NaN or infinite training loss ends the trial with status
`diverged` (deep plain nets are expected to struggle, Figure 6), recorded, not raised.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.errors import BenchmarkError
from benchmark.provenance import provenance
from benchmark.schedule import LRSchedule
from benchmark.spec import Trial

Report = Callable[[dict[str, Any]], None]

CHECKPOINT_VERSION = 1


def pick_device(trial: Trial) -> torch.device:
    """A trial that asks for a GPU runs on CUDA (the fleet checked one exists); else on the CPU."""
    if trial.resources.gpu > 0:
        if not torch.cuda.is_available():
            raise BenchmarkError(f"trial {trial.trial_id} asks for resources.gpu={trial.resources.gpu} but CUDA is not available")
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_data(trial: Trial) -> Any:
    """The trial's CIFAR-10 arrays, restricted to the suite's subsets (same subset for every seed)."""
    from benchmark.data import load_cifar10

    spec = trial.data
    data = load_cifar10(source=spec.source, split=spec.split, root=spec.root)
    # A fixed (seed 0) random subset, sorted: the JPEG file is grouped by class, so "the first N"
    # would be one class only; every trial of the suite sees the same images.
    changes: dict[str, np.ndarray] = {}
    for prefix, size in (("train", spec.train_subset), ("eval", spec.eval_subset)):
        x, y = getattr(data, f"x_{prefix}"), getattr(data, f"y_{prefix}")
        if size is not None and size < len(y):
            keep = np.sort(np.random.default_rng(0).permutation(len(y))[:size])
            changes[f"x_{prefix}"], changes[f"y_{prefix}"] = x[keep], y[keep]
    return dataclasses.replace(data, **changes) if changes else data


def build_trial_loaders(trial: Trial, device: torch.device, beton_dir: Path | None) -> tuple[Any, Any, dict[str, str]]:
    """(train_loader, eval_loader, {data_source, eval_split}) for the trial's dataset."""
    from benchmark.data import build_loaders

    if trial.data.dataset == "imagenet":
        from benchmark.data.imagenet import build_imagenet_loaders

        # loader "ffcv" reads the betons of data.root/ffcv (`python -m benchmark data write-beton --dataset
        # imagenet`), checked against the folder; "torch" reads the JPEG tree. beton_dir is CIFAR's only.
        train_loader, eval_loader = build_imagenet_loaders(
            trial.data.root, batch_size=trial.recipe.batch_size, device=device, seed=trial.seed,
            eval_batch_size=trial.eval_batch_size, num_workers=trial.data.num_workers, ten_crop=trial.eval_ten_crop,
            loader=trial.loader,
        )
        return train_loader, eval_loader, {"data_source": "folder", "eval_split": "val"}
    data = load_data(trial)
    train_loader, eval_loader = build_loaders(
        data,
        loader=trial.loader,
        batch_size=trial.recipe.batch_size,
        device=device,
        seed=trial.seed,
        eval_batch_size=trial.eval_batch_size,
        num_workers=trial.data.num_workers,
        beton_dir=beton_dir,
    )
    return train_loader, eval_loader, {"data_source": data.source, "eval_split": data.eval_split}


def train_trial(
    trial: Trial,
    report: Report,
    checkpoint_path: Path | None = None,
    threads: int | None = None,
    beton_dir: Path | None = None,
) -> dict[str, Any]:
    """Train one trial; returns the last reported row (its `status` is `completed` or `diverged`)."""
    from benchmark.models import build_model
    from benchmark.step import TrainStep, evaluate

    if threads:
        torch.set_num_threads(threads)
    device = pick_device(trial)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # input shapes are fixed: let cuDNN pick the fastest kernels
    seed_everything(trial.seed)
    recipe = trial.recipe

    train_loader, eval_loader, data_fields = build_trial_loaders(trial, device, beton_dir)
    model = build_model(trial.model, **trial.model_options()).to(device)
    # Section 3.4/4.2: SGD, momentum 0.9, weight decay 1e-4 on all weights, as the paper states it.
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    schedule = LRSchedule.for_depth(recipe, trial.depth)
    trainer = TrainStep(model, optimizer, device, precision=trial.precision, channels_last=trial.channels_last, compile=trial.compile)

    base = {"status": "running", **data_fields, **provenance(device)}
    state = _load_checkpoint(checkpoint_path, model, optimizer, schedule, device)
    step, wall_before = state["step"], state["wall_s"]
    if state["last_row"] is not None:
        report(state["last_row"])  # the fleet drops it if written already; restores it if the writer lost it
        if state["last_row"]["status"] != "running":
            return state["last_row"]

    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise BenchmarkError(f"trial {trial.trial_id}: the training set makes no full batch of {recipe.batch_size}")
    started = time.perf_counter()
    interval_start, interval_samples = started, 0
    window = _Window()
    last_row: dict[str, Any] | None = state["last_row"]

    while step < recipe.max_steps:
        epoch, skip = divmod(step, steps_per_epoch)
        for x, y in islice(train_loader.epoch(epoch), skip, None):
            lr = schedule.lr(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            trainer.step(x, y)
            step += 1
            interval_samples += y.shape[0]
            if schedule.warming_up and step % recipe.warmup_check_every == 0:
                recent = trainer.pop_metrics()
                window.add(recent)
                schedule.observe_train_error(step, 100 * recent["train_error"])
            if step % trial.eval_every == 0 or step >= recipe.max_steps:
                window.add(trainer.pop_metrics())
                train = window.take()
                train_seconds = time.perf_counter() - interval_start
                diverged = not math.isfinite(train["train_loss"])
                evaluation = (
                    {"loss": math.nan, "top1_error": math.nan, "top5_error": math.nan}
                    if diverged
                    else evaluate(model, eval_loader.epoch(0), device, precision=trial.precision, channels_last=trial.channels_last)
                )
                schedule.observe_eval_error(100 * evaluation["top1_error"])
                done = diverged or step >= recipe.max_steps
                last_row = {
                    **base,
                    "step": step,
                    "epoch": step / steps_per_epoch,
                    "lr": lr,
                    "train_loss": train["train_loss"],
                    "train_error": 100 * train["train_error"],
                    "eval_loss": evaluation["loss"],
                    "eval_error": 100 * evaluation["top1_error"],
                    "eval_top5_error": 100 * evaluation["top5_error"],
                    "images_per_s": interval_samples / max(train_seconds, 1e-9),
                    "wall_s": wall_before + time.perf_counter() - started,
                    "status": ("diverged" if diverged else "completed") if done else "running",
                }
                report(last_row)
                if checkpoint_path is not None:
                    _save_checkpoint(checkpoint_path, model, optimizer, schedule, step, last_row)
                if done:
                    return last_row
                interval_start, interval_samples = time.perf_counter(), 0
    assert last_row is not None
    return last_row


class _Window:
    """Training loss and error over the steps since the last report, summed over device pops."""

    def __init__(self) -> None:
        self.loss_sum = self.error_sum = 0.0
        self.samples = 0

    def add(self, popped: dict[str, float]) -> None:
        n = int(popped["samples"])
        if n:
            self.loss_sum += popped["train_loss"] * n
            self.error_sum += popped["train_error"] * n
            self.samples += n

    def take(self) -> dict[str, float]:
        """The means so far, then start a new window."""
        total = self.samples or math.nan
        means = {"train_loss": self.loss_sum / total, "train_error": self.error_sum / total}
        self.__init__()
        return means


def _save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: LRSchedule, step: int, last_row: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    payload = {
        "version": CHECKPOINT_VERSION,
        "model": _plain_state_dict(model),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "step": step,
        "wall_s": last_row["wall_s"],
        "last_row": last_row,
        "rng": torch.get_rng_state(),
    }
    torch.save(payload, tmp)
    os.replace(tmp, path)  # never a half-written checkpoint


def _plain_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # torch.compile wraps the module as `_orig_mod`; checkpoints hold the plain model's names so
    # that `analyze` and other tools can load them into `build_model(...)`.
    inner = getattr(model, "_orig_mod", model)
    return inner.state_dict()


def _load_checkpoint(path: Path | None, model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: LRSchedule, device: torch.device) -> dict[str, Any]:
    fresh = {"step": 0, "wall_s": 0.0, "last_row": None}
    if path is None or not path.exists():
        return fresh
    payload = torch.load(path, map_location=device, weights_only=False)
    getattr(model, "_orig_mod", model).load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    schedule.load_state_dict(payload["schedule"])
    torch.set_rng_state(payload["rng"])
    return {"step": payload["step"], "wall_s": payload["wall_s"], "last_row": payload["last_row"]}
