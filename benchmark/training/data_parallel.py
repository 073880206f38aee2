"""The ranks of a data-parallel trial, as the training loop sees them.

The paper trained its ImageNet nets on 8 GPUs with a mini-batch of 256 (Section 3.4). A trial with
`resources.workers > 1` runs one process per rank under torch.distributed (Ray Train sets up the
process group: NCCL on GPUs, gloo on CPUs; benchmark/fleet/ray_ddp.py) and `train_trial` runs in
each of them with a `Replicas` that says which rank it is. The semantics, all chosen so that the
ranks together behave like one process training on the global batch:

- each rank takes `batch_size / workers` images of every global batch of the single-process order
  (the loaders' `shard`), and DDP averages the gradients: the recipe's learning rate is the one for
  its global batch, unchanged;
- BN normalises each rank's share with that share's statistics, as the paper's multi-GPU BN did;
  `sync_bn` synchronises them instead. The running statistics of rank 0 are the ones evaluated and
  checkpointed (`sync_buffers` copies them to every rank before an evaluation);
- evaluation covers each image exactly once, split into contiguous shares, and the shares' sums
  are added (`reduce_eval`): the result is a single process's evaluation;
- training metrics are summed over ranks (`reduce_train`), so every rank takes the same decisions
  (divergence, the end of warm-up); the schedule's state is rank 0's (`sync_schedule`).

`Replicas()` (one rank) makes every method a no-op: the single-process trial is unchanged.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
from torch import nn

from benchmark import BenchmarkError


@dataclass(frozen=True)
class Replicas:
    rank: int = 0
    world_size: int = 1
    sync_bn: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.world_size

    def prepare(self, model: nn.Module) -> nn.Module:
        """Before the optimizer sees the model: SyncBatchNorm for `sync_bn` (same parameters and
        buffer names, so checkpoints load either way)."""
        if self.distributed and self.sync_bn:
            return nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the training step runs: DDP over the process group (it broadcasts rank 0's
        parameters once, then averages gradients every step), or the model itself."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's BN running statistics on every rank (DDP broadcasts them before each training
        forward, but each rank's own forward then updates its copy)."""
        if self.distributed:
            for buffer in model.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def reduce_train(self, popped: dict[str, float | int], device: torch.device) -> dict[str, float | int]:
        """`TrainStep.pop_metrics` over all ranks: loss and error over every rank's samples; a
        step counts as non-finite if it was on any rank (DDP's averaged gradient is then too)."""
        if not self.distributed:
            return popped
        loss_samples, samples = popped["loss_samples"], popped["samples"]
        sums = torch.tensor([popped["train_loss"] * loss_samples if loss_samples else 0.0, loss_samples,
                             popped["train_error"] * samples if samples else 0.0, samples],
                            dtype=torch.float64, device=device)
        torch.distributed.all_reduce(sums)
        nonfinite = torch.tensor([popped["nonfinite_steps"]], dtype=torch.int64, device=device)
        torch.distributed.all_reduce(nonfinite, op=torch.distributed.ReduceOp.MAX)
        loss_sum, loss_samples, wrong, samples = sums.tolist()
        return {**popped, "train_loss": loss_sum / loss_samples if loss_samples else math.nan,
                "train_error": wrong / samples if samples else math.nan, "samples": int(samples),
                "loss_samples": int(loss_samples), "nonfinite_steps": int(nonfinite.item())}

    def reduce_eval(self, evaluation: dict[str, float], device: torch.device) -> dict[str, float]:
        """`evaluate` over the ranks' shares: the means of all images, as one process computes them."""
        if not self.distributed:
            return evaluation
        n = evaluation["samples"]
        sums = torch.tensor([evaluation["loss"] * n, evaluation["top1_error"] * n, evaluation["top5_error"] * n, n],
                            dtype=torch.float64, device=device)
        torch.distributed.all_reduce(sums)
        loss, top1, top5, n = sums.tolist()
        return {"loss": loss / n, "top1_error": top1 / n, "top5_error": top5 / n, "samples": int(n)}

    def check_in_sync(self, model: nn.Module, step: int) -> None:
        """Every rank must hold the same parameters (DDP's promise; a rank that silently diverged
        would make rank 0's checkpoint and rows speak for a model the others do not train). One
        all-reduce of two numbers per evaluation: the spread of each rank's parameter sum."""
        if not self.distributed:
            return
        with torch.no_grad():
            total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum()
        spread = torch.stack([total, -total])
        torch.distributed.all_reduce(spread, op=torch.distributed.ReduceOp.MAX)
        if float(spread[0] + spread[1]) != 0.0:
            raise BenchmarkError(f"data-parallel ranks out of step at step {step}: their parameters differ "
                                 f"(sums from {-float(spread[1]):.9g} to {float(spread[0]):.9g})")

    def agree(self, flag: bool, device: torch.device) -> bool:
        """True on every rank only if `flag` is true on every rank."""
        if not self.distributed:
            return flag
        value = torch.tensor([int(flag)], device=device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
        return bool(value.item())

    def sync_schedule(self, schedule: Any) -> None:
        """Rank 0 decides the learning rate (the plateau schedule, the end of warm-up); all follow."""
        if self.distributed:
            state = [schedule.state_dict() if self.rank == 0 else None]
            torch.distributed.broadcast_object_list(state, src=0)
            schedule.load_state_dict(state[0])


def exit_spawned_rank() -> NoReturn:
    """End a rank process that `torch.multiprocessing.spawn` started, once its results are written
    and its process group destroyed, without the interpreter's teardown: there, after its work was
    done, a gloo rank aborted (SIGABRT, "terminate called without an active exception", no Python
    frame left) in 3 of 9 test-suite runs on the 2-core machine. Exit status 0, as spawn expects."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
