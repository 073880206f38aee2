"""`train_trial`: one trial, start to finish, on whatever device it is given.

Build the model and the loaders, train with the recipe's schedule, evaluate every `eval_every`
steps, report one row per evaluation together with the checkpoint of that step (through the
trial's session, `benchmark/training/session.py`), so that a killed or retried trial continues where it
stopped. A trial that cannot recover (`judge_divergence`: weights no longer finite, or most of an
interval's steps with a NaN/inf loss) ends with status `diverged` (deep plain nets are expected to
struggle, Figure 6), recorded, not raised.

The process-wide settings a trial states (TF32, deterministic kernels) hold for its duration only,
and the device memory it cached is released when it ends (`benchmark/training/backends.py`): a Ray actor
runs trial after trial in one process.

Every row names its attempt (one call of `train_trial`) and the step that attempt started from:
the fleet's single writer uses them to keep exactly one curve per trial when a retry resumes from
an older checkpoint, or restarts clean because the checkpoint is gone.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from benchmark import BenchmarkError, DataError
from benchmark.results.provenance import provenance
from benchmark.suite.spec import Trial
from benchmark.training.backends import numerics, peak_memory_mb, release_memory, reset_peak_memory
from benchmark.training.checkpoint import check_fits
from benchmark.training.data_parallel import Replicas
from benchmark.training.heartbeat import Heartbeat
from benchmark.training.schedule import LRSchedule
from benchmark.training.session import REPLAYED, TrialSession

if TYPE_CHECKING:
    from benchmark.data import CifarData
    from benchmark.training.step import TrainStep

# Divergence: more than this share of an interval's steps with a non-finite loss and the trial is
# `diverged`, even though its weights are finite. Below it, overflowing fp16 steps (skipped by the
# GradScaler, which then lowers its scale and goes on) are routine, not divergence.
MAX_NONFINITE_SHARE = 0.5
# With CUDA graphs (compile on CUDA), their capture is verified after this many steps (or at the
# first evaluation, if sooner): cudagraph trees warm up on the first call, record on the second and
# replay from the third.
CUDA_GRAPH_CHECK_STEPS = 5
# What a checkpoint keeps of the trial's curve (its evaluation rows' metrics), so that a trial
# resumed from a later checkpoint than its results table knows reports the missing rows again.
CURVE_KEYS = ("step", "epoch", "lr", "train_loss", "train_error", "eval_loss", "eval_error", "eval_top5_error",
              "eval_split", "images_per_s", "wall_s", "nonfinite_steps", "status")
CURVE_KEPT = 1000  # evaluations: the paper's CIFAR schedule evaluated every 500 steps has 128


def pick_device(trial: Trial, replicas: Replicas = Replicas()) -> torch.device:
    """A trial that asks for a GPU runs on CUDA (the fleet checked one exists); else on the CPU.
    A data-parallel rank runs on the GPU Ray Train assigned it (the current CUDA device)."""
    if trial.resources.gpu > 0:
        if not torch.cuda.is_available():
            raise BenchmarkError(f"trial {trial.trial_id} asks for resources.gpu={trial.resources.gpu} but CUDA is not available")
        return torch.device("cuda", torch.cuda.current_device()) if replicas.distributed else torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_data(trial: Trial, data: CifarData | None = None) -> CifarData:
    """The trial's CIFAR-10 arrays (`data` when the fleet resolved and shipped them, else loaded
    from the trial's data spec), restricted to the suite's subsets (same subset for every seed)."""
    from benchmark.data import load_cifar10

    spec = trial.data
    if data is None:
        data = load_cifar10(source=spec.source, split=spec.split, root=spec.root)
    return data.subset(spec.train_subset, spec.eval_subset)


def build_trial_loaders(trial: Trial, device: torch.device, beton_dir: Path | None, data: CifarData | None = None,
                        shard: tuple[int, int] = (0, 1)) -> tuple[Any, Any, dict[str, str], np.ndarray | None]:
    """(train_loader, eval_loader, {data_source, eval_split}, mean image) for the trial's dataset;
    `shard`: a data-parallel rank's share (benchmark/training/data_parallel.py). The mean image
    (CIFAR-10's input normalisation, float32 (32, 32, 3) in 0..255; None for ImageNet's per-channel
    one) goes into every checkpoint, so the trial's weights can be scored on their own."""
    from benchmark.data import build_loaders
    from benchmark.data.preprocess import mean_image

    if trial.data.dataset == "imagenet":
        from benchmark.data.loaders import build_imagenet_loaders

        # loader "ffcv" reads the betons of data.root/ffcv (`python -m benchmark data write-beton --dataset
        # imagenet`; the fleet checked them against the tree); "torch" reads the tree. beton_dir is CIFAR's.
        train_loader, eval_loader = build_imagenet_loaders(
            trial.data.root, batch_size=trial.recipe.batch_size, device=device, seed=trial.seed,
            eval_batch_size=trial.eval_batch_size, num_workers=trial.data.num_workers, ten_crop=trial.eval_ten_crop,
            loader=trial.loader, shard=shard,
        )
        return train_loader, eval_loader, {"data_source": "folder", "eval_split": "val"}, None
    data = load_data(trial, data)
    mean = mean_image(data.x_train)
    train_loader, eval_loader = build_loaders(
        data,
        loader=trial.loader,
        batch_size=trial.recipe.batch_size,
        device=device,
        seed=trial.seed,
        eval_batch_size=trial.eval_batch_size,
        num_workers=trial.data.num_workers,
        beton_dir=beton_dir,
        shard=shard,
        mean=mean,
    )
    return train_loader, eval_loader, {"data_source": data.source, "eval_split": data.eval_split}, mean


def train_trial(
    trial: Trial,
    session: TrialSession,
    data: CifarData | None = None,
    threads: int | None = None,
    beton_dir: Path | None = None,
    replicas: Replicas = Replicas(),
) -> dict[str, Any]:
    """Train one trial; returns the last reported row (its `status` is `completed` or `diverged`).

    `data`: CIFAR-10 arrays the fleet resolved once for the whole suite (else the trial loads them
    from its data spec). A dataset that cannot be had on this node is one line naming the node.
    `replicas`: which rank of a data-parallel trial this process is (every rank runs this function
    with the same trial; benchmark/training/data_parallel.py says what they share).
    """
    if threads:
        torch.set_num_threads(threads)
    try:
        device = pick_device(trial, replicas)
    except BenchmarkError as exc:  # a node without the GPU it was promised
        raise BenchmarkError(f"node {session.node}: {exc}") from None
    with numerics(device, tf32=trial.tf32, deterministic=trial.deterministic):
        reset_peak_memory(device)
        try:
            return _train(trial, session, device, data, beton_dir, replicas)
        finally:
            release_memory(device)  # the next trial of this process starts with the device empty


def _train(trial: Trial, session: TrialSession, device: torch.device, data: CifarData | None,
           beton_dir: Path | None, replicas: Replicas) -> dict[str, Any]:
    from benchmark.models import build_model
    from benchmark.training.step import TrainStep, evaluate, state_is_finite

    seed_everything(trial.seed)
    recipe = trial.recipe

    try:
        train_loader, eval_loader, data_fields, mean = build_trial_loaders(trial, device, beton_dir, data, replicas.shard)
    except DataError as exc:
        raise DataError(f"node {session.node}: {exc}") from None
    model = replicas.prepare(build_model(trial.model, **trial.model_options())).to(device)
    # Section 3.4/4.2: SGD, momentum 0.9, weight decay 1e-4 on all weights, as the paper states it
    # (the relatives' recipes: Nesterov's momentum, see benchmark.suite.recipes).
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)
    schedule = LRSchedule.for_depth(recipe, trial.depth)
    trainer = TrainStep(model, optimizer, device, precision=trial.precision, channels_last=trial.channels_last,
                        compile=trial.compile, wrap=replicas.wrap)

    # A readable checkpoint of another model (or other shapes) is set aside like an unreadable one.
    restored = session.restore(accept=lambda payload: check_fits(payload, getattr(model, "_orig_mod", model), optimizer))
    state = _restore_state(restored.payload, trainer, schedule)
    step, wall_before = state["step"], state["wall_s"]
    attempt = {"attempt": uuid.uuid4().hex[:12], "start_step": step, "node": session.node}
    base = {"status": "running", **data_fields, **provenance(device), **attempt,
            "tf32": trial.tf32, "deterministic": trial.deterministic}
    note = restored.note  # said once, with this attempt's first row
    curve: list[dict[str, Any]] = state["curve"]
    if state["last_row"] is not None:
        # Rows the results table lacks before this checkpoint's (its driver was killed while the
        # trial ran on): reported again from the checkpoint's curve, so the table has no gap.
        written = session.written_step
        for point in curve if written is not None else []:
            if written < point["step"] < step:
                session.report({**base, **point, "note": "", REPLAYED: True})
        # Re-reported under this attempt: the fleet's writer learns where the attempt starts (it
        # sets aside any row of an earlier attempt past this step) and restores the row if it lost it.
        session.report({**state["last_row"], **attempt, "note": note})
        note = ""
        if state["last_row"]["status"] != "running":
            return state["last_row"]

    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise BenchmarkError(f"trial {trial.trial_id}: the training set makes no full batch of {recipe.batch_size}")
    started = time.perf_counter()
    interval_start, interval_samples = started, 0
    window = _Window()
    heartbeat = Heartbeat(session, fields=attempt)  # step and images/s between evaluations, for the live view
    last_row: dict[str, Any] | None = state["last_row"]
    first_step = step
    # Steps with a NaN/inf loss over the whole trial, carried across a resume by the last row.
    nonfinite_total = int((state["last_row"] or {}).get("nonfinite_steps", 0))

    while step < recipe.max_steps:
        epoch, skip = divmod(step, steps_per_epoch)
        for x, y in islice(train_loader.epoch(epoch), skip, None):
            lr = schedule.lr(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            trainer.step(x, y)
            step += 1
            interval_samples += y.shape[0]
            heartbeat.step(step, y.shape[0])
            evaluating = step % trial.eval_every == 0 or step >= recipe.max_steps
            if step - first_step == CUDA_GRAPH_CHECK_STEPS or evaluating:
                trainer.verify_cuda_graphs()  # once; before any evaluation reads BN's statistics
            if schedule.warming_up and step % recipe.warmup_check_every == 0:
                recent = replicas.reduce_train(trainer.pop_metrics(), device)
                window.add(recent)
                schedule.observe_train_error(step, 100 * recent["train_error"])
                replicas.sync_schedule(schedule)
            if evaluating:
                window.add(replicas.reduce_train(trainer.pop_metrics(), device))
                train = window.take()
                train_seconds = time.perf_counter() - interval_start
                nonfinite_total += train["nonfinite_steps"]
                replicas.check_in_sync(model, step)
                replicas.sync_buffers(model)  # rank 0's BN statistics are the ones evaluated and saved
                finite = replicas.agree(state_is_finite(model), device)
                diverged = judge_divergence(finite, train["nonfinite_steps"], train["steps"])
                evaluation = (
                    {"loss": math.nan, "top1_error": math.nan, "top5_error": math.nan}
                    if diverged
                    else replicas.reduce_eval(evaluate(model, eval_loader.epoch(0), device, precision=trial.precision,
                                                       channels_last=trial.channels_last), device)
                )
                schedule.observe_eval_error(100 * evaluation["top1_error"])
                replicas.sync_schedule(schedule)
                done = diverged or step >= recipe.max_steps
                last_row = {
                    **base,
                    "note": note,
                    "step": step,
                    "epoch": step / steps_per_epoch,
                    "lr": lr,
                    "train_loss": train["train_loss"],
                    "train_error": 100 * train["train_error"],
                    "nonfinite_steps": nonfinite_total,
                    "eval_loss": evaluation["loss"],
                    "eval_error": 100 * evaluation["top1_error"],
                    "eval_top5_error": 100 * evaluation["top5_error"],
                    # the whole trial's rate: every rank trains as many images per step
                    "images_per_s": interval_samples * replicas.world_size / max(train_seconds, 1e-9),
                    "wall_s": wall_before + time.perf_counter() - started,
                    "peak_memory_mb": peak_memory_mb(device),
                    "cuda_graphs": trainer.cuda_graphs,
                    "status": ("diverged" if diverged else "completed") if done else "running",
                }
                curve = [*curve[-(CURVE_KEPT - 1):], {key: last_row[key] for key in CURVE_KEYS if key in last_row}]
                session.report(last_row, _checkpoint_payload(trainer, schedule, step, last_row, curve, mean))
                note = ""
                if done:
                    return last_row
                interval_start, interval_samples = time.perf_counter(), 0
                heartbeat.restart()
    assert last_row is not None
    return last_row


def judge_divergence(state_finite: bool, nonfinite_steps: int, steps: int) -> bool:
    """Whether a trial can no longer recover, judged at an evaluation.

    Its weights or BN statistics are not finite (every later step would be NaN), or more than
    `MAX_NONFINITE_SHARE` of the interval's steps had a NaN/inf loss (e.g. fp16 whose logits
    overflow step after step). One overflowing step in an interval is neither.
    """
    return not state_finite or (steps > 0 and nonfinite_steps > MAX_NONFINITE_SHARE * steps)


class _Window:
    """Training loss and error over the steps since the last report, summed over device pops."""

    def __init__(self) -> None:
        self.loss_sum = self.error_sum = 0.0
        self.samples = self.loss_samples = self.steps = self.nonfinite_steps = 0

    def add(self, popped: dict[str, float]) -> None:
        if popped["loss_samples"]:
            self.loss_sum += popped["train_loss"] * popped["loss_samples"]
            self.loss_samples += int(popped["loss_samples"])
        if popped["samples"]:
            self.error_sum += popped["train_error"] * popped["samples"]
            self.samples += int(popped["samples"])
        self.steps += int(popped["steps"])
        self.nonfinite_steps += int(popped["nonfinite_steps"])

    def take(self) -> dict[str, float]:
        """The means (the loss over steps with a finite loss) and step counts so far, then start a new window."""
        means = {
            "train_loss": self.loss_sum / (self.loss_samples or math.nan),
            "train_error": self.error_sum / (self.samples or math.nan),
            "steps": self.steps,
            "nonfinite_steps": self.nonfinite_steps,
        }
        self.__init__()
        return means


# The checkpoint payload holds tensors, plain Python values and dicts only (it is read with
# `weights_only=True`, `benchmark/training/checkpoint.py`). What must stay on the CPU whatever a loader's
# `map_location` (the RNG states: `torch.set_rng_state` and `torch.cuda.set_rng_state` take CPU
# byte tensors only) is stored as bytes, which `map_location` leaves alone.


def _checkpoint_payload(trainer: TrainStep, schedule: LRSchedule, step: int, last_row: dict[str, Any],
                        curve: list[dict[str, Any]], mean: np.ndarray | None = None) -> dict[str, Any]:
    """Everything a resumed trial needs to continue as if it had never stopped; `curve`: the
    metrics of its evaluations so far (CURVE_KEYS), to report again those a results table lost; `mean`:
    the input's mean image (float32 (3, 32, 32), 0..255; None for ImageNet), which its weights are scored with."""
    return {
        "curve": curve,
        "input_mean_image": None if mean is None else torch.from_numpy(np.ascontiguousarray(mean.transpose(2, 0, 1))),
        "model": _plain_state_dict(trainer.model),
        "optimizer": trainer.optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "step": step,
        "wall_s": last_row["wall_s"],
        "last_row": last_row,
        "rng": rng_state(trainer.device),
        "grad_scaler": trainer.scaler_state_dict(),
    }


def _plain_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # torch.compile wraps the module as `_orig_mod`; checkpoints hold the plain model's names so
    # that `analyze` and other tools can load them into `build_model(...)`.
    inner = getattr(model, "_orig_mod", model)
    return inner.state_dict()


def _restore_state(payload: dict[str, Any] | None, trainer: TrainStep, schedule: LRSchedule) -> dict[str, Any]:
    """Load a checkpoint payload into the trainer's model, optimizer and GradScaler, the schedule and
    the RNGs; step 0 without one.

    `load_state_dict` copies each tensor to where the model's and optimizer's tensors live, so the
    payload may have been loaded onto any device.
    """
    if payload is None:
        return {"step": 0, "wall_s": 0.0, "last_row": None, "curve": []}
    getattr(trainer.model, "_orig_mod", trainer.model).load_state_dict(payload["model"])
    trainer.optimizer.load_state_dict(payload["optimizer"])
    schedule.load_state_dict(payload["schedule"])
    trainer.load_scaler_state_dict(payload.get("grad_scaler"))
    restore_rng(payload["rng"], trainer.device)
    return {"step": payload["step"], "wall_s": payload["wall_s"], "last_row": payload["last_row"],
            "curve": list(payload.get("curve", []))}  # checkpoints written before the curve was kept have none


def rng_state(device: torch.device) -> dict[str, bytes]:
    """The global torch RNG states as bytes: the CPU's, and the trial's CUDA device's where it has one."""
    state = {"cpu": _to_bytes(torch.get_rng_state())}
    if device.type == "cuda":
        state["cuda"] = _to_bytes(torch.cuda.get_rng_state(device))
    return state


def restore_rng(state: dict[str, bytes], device: torch.device) -> None:
    """Set the RNG states `rng_state` saved."""
    torch.set_rng_state(_from_bytes(state["cpu"]))
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(_from_bytes(state["cuda"]), device)


def _to_bytes(state: torch.Tensor) -> bytes:
    return state.cpu().numpy().tobytes()


def _from_bytes(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)
