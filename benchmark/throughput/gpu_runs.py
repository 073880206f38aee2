"""The training runs `gpu-check` compares (benchmark/throughput/gpu_check.py judges them).

- `precision_run`: ResNet-20 trained for a few steps from fixed weights on fixed batches, in one
  precision (fp32, TF32, bf16, fp16), eager or compiled; returns its per-step losses, BN's running
  statistics and whether CUDA graphs were captured (`TrainStep.verify_cuda_graphs`).
- `resume_run`: a whole trial (`train_trial`) run straight, and run again killed after its first
  checkpoint and resumed from it; returns both last rows.
- `ddp_run`: ResNet-20 trained data-parallel in several processes (DDP through
  `benchmark.training.data_parallel.Replicas`, NCCL on GPUs); returns how far the ranks' parameters are apart.

All take any device, so their code runs on a CPU in the tests too (fp32/bf16 there, gloo for DDP).
"""

from __future__ import annotations

import dataclasses
import faulthandler
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmark.data import build_loaders, load_cifar10
from benchmark.models import build_model
from benchmark.training.backends import numerics
from benchmark.training.data_parallel import Replicas, exit_spawned_rank
from benchmark.training.step import TrainStep

# The precisions compared: (label, TrainStep precision, TF32 on).
PRECISION_RUNS = (("fp32", "fp32", False), ("tf32", "fp32", True), ("bf16", "bf16", False), ("fp16", "fp16", False))


@dataclasses.dataclass
class PrecisionRun:
    label: str               # fp32 | tf32 | bf16 | fp16
    compiled: bool
    losses: list[float]      # training loss of every step
    bn_stats: torch.Tensor   # every BN layer's running mean and variance, concatenated (CPU, float64)
    cuda_graphs: str         # TrainStep.cuda_graphs after the run: off | captured | fallback
    seconds: float
    # fp16's GradScaler after every step (empty without one): a step whose scaled gradients
    # overflowed was skipped and halved the scale, so a fall in the scale counts a skipped step.
    scales: list[float] = dataclasses.field(default_factory=list)

    @property
    def skipped_steps(self) -> int:
        return sum(after < before for before, after in zip(self.scales, self.scales[1:]))


def fixed_batches(device: torch.device, steps: int, batch_size: int = 128) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`steps` augmented batches of the synthetic CIFAR-10 (seed 0) through the device loader, made
    once so that every run trains on exactly the same inputs."""
    data = load_cifar10("synthetic", synthetic_size=steps * batch_size)
    loader, _ = build_loaders(data, loader="device", batch_size=batch_size, device=device, seed=0)
    return list(loader.epoch(0))[:steps]


def initial_weights(model_name: str = "resnet20") -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_model(model_name).state_dict()


def precision_run(label: str, compiled: bool, batches: list[tuple[torch.Tensor, torch.Tensor]],
                  weights: dict[str, torch.Tensor], device: torch.device, model_name: str = "resnet20",
                  lr: float = 0.01) -> PrecisionRun:
    """Train `model_name` from `weights` on `batches` in the precision `label` names (the paper's
    SGD: momentum 0.9, weight decay 1e-4; channels-last, as the suites run).

    lr 0.01, not the paper's 0.1: at 0.1 the synthetic loss spikes within 15 steps and any two
    runs drift apart chaotically (measured on a CPU: compiled fp32 ended 12% off eager fp32 after
    30 steps, BN statistics 150% off), which would hide a real numerical fault; at 0.01 the loss
    falls smoothly (2.7 to 0.2) and compiled fp32 stays within 0.1% of eager.
    """
    precision, tf32 = {name: (p, t) for name, p, t in PRECISION_RUNS}[label]
    model = build_model(model_name)
    model.load_state_dict(weights)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    started = time.perf_counter()
    with numerics(device, tf32=tf32, deterministic=False):
        trainer = TrainStep(model, optimizer, device, precision=precision, channels_last=True, compile=compiled)
        losses, scales = [], []
        for x, y in batches:
            trainer.step(x, y)
            losses.append(float(trainer.pop_metrics()["train_loss"]))  # a sync per step: fine for a check
            if (scaler := trainer.scaler_state_dict()) is not None:
                scales.append(float(scaler["scale"]))
        cuda_graphs = trainer.verify_cuda_graphs()
    seconds = time.perf_counter() - started
    stats = [t for name, t in model.state_dict().items() if name.endswith(("running_mean", "running_var"))]
    bn_stats = torch.cat([t.detach().double().flatten().cpu() for t in stats])
    torch.compiler.reset()  # the next run compiles afresh (and releases this one's CUDA graphs)
    return PrecisionRun(label, compiled, losses, bn_stats, cuda_graphs, seconds, scales)


class _Killed(Exception):
    """Stands for a process killed after a checkpoint."""


def resume_trial(device: torch.device, max_steps: int = 60, eval_every: int = 30, batch_size: int = 128) -> Any:
    """The trial the resume check runs: ResNet-20 on synthetic data, fp16 (so the GradScaler's state
    travels too) on a GPU, fp32 on a CPU, with deterministic kernels so that the two runs can match."""
    from benchmark.suite.spec import Suite  # needs pydantic (the GPU machines have it only from the kit)

    suite = Suite.model_validate({
        "name": "gpu-check-resume",
        "data": {"dataset": "cifar10", "source": "synthetic", "train_subset": 2000, "eval_subset": 400},
        "recipe": {"name": "cifar10_he2015", "max_steps": max_steps, "batch_size": batch_size},
        "grid": {"model": ["resnet20"]},
        "resources": {"cpu": 1, "gpu": 1 if device.type == "cuda" else 0},
        "precision": "fp16" if device.type == "cuda" else "fp32",
        "channels_last": True,
        "deterministic": True,
        "eval_every": eval_every,
        "eval_batch_size": 400,
    })
    return suite.trials()[0]


def resume_run(trial: Any, threads: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(last row of the trial run straight, last row of the trial killed at its first evaluation,
    after that step's checkpoint was written, then resumed from it in a new `train_trial`)."""
    from benchmark.training.session import DirectorySession
    from benchmark.training.train import train_trial

    straight = train_trial(trial, DirectorySession(_ignore), threads=threads)

    def killed_at_first_eval(row: dict[str, Any]) -> None:
        if row["step"] == trial.eval_every:
            raise _Killed

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        checkpoints = Path(folder) / trial.trial_id
        try:
            train_trial(trial, DirectorySession(killed_at_first_eval, checkpoints), threads=threads)
        except _Killed:
            pass
        resumed = train_trial(trial, DirectorySession(_ignore, checkpoints), threads=threads)
    return straight, resumed


def _ignore(row: dict[str, Any]) -> None:
    pass


def ddp_run(world_size: int, device_type: str, steps: int = 10, batch_size: int = 128,
            model_name: str = "resnet20") -> dict[str, float]:
    """Train `model_name` data-parallel in `world_size` processes, as a trial with `resources.workers`
    does (`Replicas.wrap`: DDP): NCCL with rank r on cuda:r, or gloo on CPU processes.

    Every rank builds the model from its own seed and trains on its own random share of each global
    batch, so parameters equal at the end prove that DDP broadcast rank 0's weights and averaged the
    gradients. Returns the largest absolute difference of any rank's parameters from rank 0's, as
    built (`before`: must not be 0, or the check proves nothing) and after the steps (`after`).
    """
    with tempfile.TemporaryDirectory(prefix="gpu-check-ddp-") as folder:
        torch.multiprocessing.spawn(_ddp_rank, args=(world_size, device_type, steps, batch_size, model_name, folder),
                                    nprocs=world_size, join=True)
        ranks = [torch.load(Path(folder) / f"rank{rank}.pt", weights_only=True) for rank in range(world_size)]
    return {when: max(float((rank[when] - ranks[0][when]).abs().max()) for rank in ranks) for when in ("before", "after")}


def _ddp_rank(rank: int, world_size: int, device_type: str, steps: int, batch_size: int, model_name: str,
              folder: str) -> None:
    faulthandler.enable()  # a rank that aborts inside the backend prints its Python stack (mp.spawn shows only the signal)
    device = torch.device("cuda", rank) if device_type == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(1)
    # A file rendezvous: no port to pick, nothing left behind (the folder is the caller's temporary one).
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"file://{folder}/rendezvous",
                                         rank=rank, world_size=world_size)
    try:
        replicas = Replicas(rank=rank, world_size=world_size)
        torch.manual_seed(rank)  # weights of its own: DDP must replace them with rank 0's
        model = build_model(model_name)
        before = _flat_parameters(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        trainer = TrainStep(replicas.prepare(model), optimizer, device, wrap=replicas.wrap)
        share = batch_size // world_size
        for _ in range(steps):  # random batches of its own (torch.manual_seed(rank) above)
            trainer.step(torch.randn(share, 3, 32, 32), torch.randint(0, 10, (share,)))
        torch.save({"before": before, "after": _flat_parameters(trainer.model)}, Path(folder) / f"rank{rank}.pt")
        torch.distributed.barrier()  # every rank done before any tears the group down
    finally:
        torch.distributed.destroy_process_group()
    exit_spawned_rank()


def _flat_parameters(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().double().cpu() for p in model.parameters()])
