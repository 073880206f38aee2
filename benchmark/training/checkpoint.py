"""A trial's checkpoint: one payload file in a checkpoint directory, read without running code.

The payload is a dict of tensors and plain Python values (model and optimizer state dicts, the
schedule's state, step, RNG state, the last reported row). It is read with
``torch.load(weights_only=True)``: a checkpoint file in a results folder or a storage bucket is
input like any other, and a crafted one must not execute code when a suite resumes (plain
``torch.load`` unpickles arbitrary objects). Everything we store is a type that loader allows, so
no allow-list beyond torch's own is needed.

Directories, not files, because that is Ray Tune's unit (``tune.Checkpoint.from_directory``):
the same directory is written by the in-process executor under ``_state/checkpoints/`` and
persisted by Tune to its storage (a local folder, a shared path or an ``s3://`` bucket).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from benchmark import BenchmarkError
from benchmark.models.weights import unpickling_refusal

PAYLOAD_FILE = "trial_state.pt"
CHECKPOINT_VERSION = 2


class CheckpointError(BenchmarkError):
    """A checkpoint that cannot be read: corrupt, truncated, crafted, or of an unknown version."""


def write_payload(directory: Path, payload: dict[str, Any]) -> Path:
    """Write `payload` into `directory` atomically (a reader sees the old file or the new one)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PAYLOAD_FILE
    tmp = directory / f".{PAYLOAD_FILE}.{os.getpid()}.tmp"  # per process: two writers never share it
    try:
        torch.save({"version": CHECKPOINT_VERSION, **payload}, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_payload(directory: Path, where: str | None = None) -> dict[str, Any]:
    """The payload in `directory`, on the CPU; a one-line `CheckpointError` naming it otherwise.

    Tensors are loaded on the CPU: the trial moves model and optimizer state to its device itself,
    and RNG states must stay on the CPU (``torch.set_rng_state`` takes a CPU ByteTensor).
    """
    path = Path(directory) / PAYLOAD_FILE
    name = where or str(path)
    if not path.is_file():
        raise CheckpointError(f"{name}: no {PAYLOAD_FILE} in the checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{name}: not a readable checkpoint (it holds {unpickling_refusal(exc)} beyond tensors and plain values; "
                              "such a file is never loaded, since loading it could run code)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{name}: not a readable checkpoint ({reason[:200]})") from None
    if not isinstance(payload, dict) or payload.get("version") != CHECKPOINT_VERSION:
        version = payload.get("version") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{name}: checkpoint format {version!r}, expected version {CHECKPOINT_VERSION}")
    missing = [key for key in ("model", "optimizer", "schedule", "step", "last_row") if key not in payload]
    if missing:
        raise CheckpointError(f"{name}: checkpoint lacks {', '.join(missing)}")
    return payload


def check_fits(payload: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """A one-line `CheckpointError` unless a readable payload is this trial's: the model's parameter
    and buffer names and shapes, and an optimizer over as many parameters of the same shapes.
    Checked before anything is loaded: `load_state_dict` copies what fits before it raises, which
    would leave a half-loaded model."""
    expected = model.state_dict()
    saved = payload["model"]
    if not isinstance(saved, dict):
        raise CheckpointError(f"does not fit the trial (its model state is a {type(saved).__name__}, not a state dict)")
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    if missing or unexpected:
        example = f"no {missing[0]}" if missing else f"an unexpected {unexpected[0]}"
        raise CheckpointError(f"does not fit the trial's model {type(model).__name__} ({len(missing)} entries missing, "
                              f"{len(unexpected)} unexpected: {example}); another model's checkpoint?")
    for key, tensor in expected.items():
        if not isinstance(saved[key], torch.Tensor) or saved[key].shape != tensor.shape:
            shape = tuple(saved[key].shape) if isinstance(saved[key], torch.Tensor) else type(saved[key]).__name__
            raise CheckpointError(f"does not fit the trial's model ({key}: {shape}, expected {tuple(tensor.shape)})")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = payload["optimizer"] if isinstance(payload["optimizer"], dict) else {}
    groups = state.get("param_groups", [])
    counted = sum(len(group.get("params", [])) for group in groups) if isinstance(groups, list) else -1
    if counted != len(params):
        raise CheckpointError(f"does not fit the trial's optimizer ({counted} parameters, expected {len(params)})")
    for index, values in (state.get("state") or {}).items():
        buffer = values.get("momentum_buffer") if isinstance(values, dict) else None
        if isinstance(buffer, torch.Tensor) and (not isinstance(index, int) or index >= len(params)
                                                 or buffer.shape != params[index].shape):
            raise CheckpointError(f"does not fit the trial's optimizer (the momentum of parameter {index})")
