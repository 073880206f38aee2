"""Where the run's own trained nets are found for Figure 7 (benchmark/fleet/figure7.py)."""

from __future__ import annotations

from pathlib import Path

from benchmark.fleet.figure7 import trained_checkpoint
from benchmark.results.weights import kept_weights
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


def test_a_copied_results_folder_s_kept_weights_stand_in_for_its_checkpoints(tmp_path: Path) -> None:
    """`_state/` stays on the machine that ran the trial (.gitignore); `weights/` travels with the
    folder, so a clone or copy still has each completed trial's trained state."""
    folder = tmp_path / "results" / "suite"
    gone = {"trial_id": "plain20-s0", "checkpoint": "/other-machine/plain20-s0", "storage": "local"}
    assert trained_checkpoint(folder, gone) is None
    weights = kept_weights(folder, "plain20-s0")
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"")
    assert trained_checkpoint(folder, gone) == weights
    assert trained_checkpoint(folder, {**gone, "storage": "s3://bucket/prefix"}) == weights
    # where the checkpoint is still here, it is the one measured
    local = checkpoint_at(folder / "_state" / "checkpoints" / "plain20-s0")
    assert trained_checkpoint(folder, gone) == local
