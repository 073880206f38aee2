"""Where the run's own trained nets are found for Figure 7 (benchmark/fleet/figure7.py)."""

from __future__ import annotations

from pathlib import Path

from benchmark.fleet.figure7 import trained_checkpoint
from benchmark.training.checkpoint import PAYLOAD_FILE


def checkpoint_at(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / PAYLOAD_FILE).write_bytes(b"")
    return path


def test_checkpoints_of_either_executor_are_found_on_this_disk(tmp_path: Path) -> None:
    folder = tmp_path / "results" / "suite"
    local = checkpoint_at(folder / "_state" / "checkpoints" / "plain20-s0")
    assert trained_checkpoint(folder, {"trial_id": "plain20-s0", "checkpoint": str(local), "storage": "local"}) == local
    # the local executor's folder moved with its results folder: found beside it
    moved = {"trial_id": "plain20-s0", "checkpoint": "/elsewhere/plain20-s0", "storage": "local"}
    assert trained_checkpoint(folder, moved) == local
    # the Ray executor: relative to the folder's own storage, or to a local storage path
    ray = checkpoint_at(folder / "_state" / "ray" / "run-1" / "plain20-s0" / "checkpoint_000002")
    row = {"trial_id": "plain20-s0", "checkpoint": "run-1/plain20-s0/checkpoint_000002"}
    assert trained_checkpoint(folder, {**row, "storage": "_state/ray"}) == ray
    assert trained_checkpoint(folder, {**row, "storage": str(folder / "_state" / "ray")}) == ray
    assert trained_checkpoint(folder, {**row, "storage": "s3://bucket/prefix"}) is None  # not on this disk
    assert trained_checkpoint(folder, {**row, "checkpoint": "", "storage": "_state/ray"}) is None
