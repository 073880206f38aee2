"""How a completed trial's final weights reach its results folder: from the in-process executor's
checkpoint folder or from Ray's storage, only once the recorded checkpoint is the final one, and
with files too large for git listed in weights/.gitignore."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmark.fleet.final_weights import keep_final_weights, read_checkpoint
from benchmark.fleet.storage import DEFAULT_STORAGE, open_storage
from benchmark.models import build_model
from benchmark.models.weights import read_weights
from benchmark.results.tables import ResultsWriter
from benchmark.results.weights import keep_weights
from benchmark.training.checkpoint import CheckpointError, write_payload


def _payload(step: int) -> dict:
    torch.manual_seed(step)
    return {"model": build_model("resnet20").state_dict(), "optimizer": {}, "schedule": {}, "step": step,
            "last_row": {"status": "completed"}, "input_mean_image": torch.full((3, 32, 32), 120.0)}


def _writer(folder: Path, **run: object) -> ResultsWriter:
    writer = ResultsWriter(folder)
    writer.update_run("resnet20-A-s0", suite="tiny", model="resnet20", shortcut="A", preact=False, dataset="cifar10",
                      **run)
    return writer


def test_final_weights_come_from_ray_storage_once_its_checkpoint_is_the_final_one(tmp_path: Path) -> None:
    storage = tmp_path / "tiny" / DEFAULT_STORAGE  # the Ray executor's default: the folder's own, recorded relative to it
    write_payload(storage / "run-1" / "resnet20-A-s0" / "checkpoint_000001", _payload(10))
    write_payload(storage / "run-1" / "resnet20-A-s0" / "checkpoint_000002", _payload(20))
    writer = _writer(tmp_path / "tiny", status="completed", steps=20, storage=DEFAULT_STORAGE,
                     checkpoint="run-1/resnet20-A-s0/checkpoint_000001")
    lines: list[str] = []
    # Ray hands the final checkpoint over after the final row: the one recorded so far is older
    assert keep_final_weights(writer, "resnet20-A-s0", lines.append) is None
    assert not (tmp_path / "tiny" / "weights").exists()
    writer.update_run("resnet20-A-s0", checkpoint="run-1/resnet20-A-s0/checkpoint_000002")
    kept = keep_final_weights(writer, "resnet20-A-s0", lines.append)
    assert kept == tmp_path / "tiny" / "weights" / "resnet20-A-s0.safetensors"
    weights = read_weights(kept)
    assert all(torch.equal(weights.tensors[k], v) for k, v in _payload(20)["model"].items())
    assert torch.equal(weights.mean_image, torch.full((3, 32, 32), 120.0))
    assert weights.card["trial_id"] == "resnet20-A-s0" and weights.card["iterations"] == 20
    assert lines == [f"{'resnet20-A-s0':<22} final weights: {kept}"]
    assert keep_final_weights(writer, "resnet20-A-s0", lines.append) is None  # once


def test_an_unreadable_checkpoint_is_said_not_raised(tmp_path: Path) -> None:
    writer = _writer(tmp_path / "tiny", status="completed", steps=20, storage="local",
                     checkpoint=str(tmp_path / "gone"))
    lines: list[str] = []
    assert keep_final_weights(writer, "resnet20-A-s0", lines.append) is None
    assert len(lines) == 1 and "final weights not kept" in lines[0] and "gone" in lines[0]
    writer.update_run("resnet20-A-s0", status="running", checkpoint="")
    assert keep_final_weights(writer, "resnet20-A-s0", lines.append) is None and len(lines) == 1  # not completed: quiet


def test_local_and_stored_checkpoints_read_alike(tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    write_payload(folder / "_state" / "checkpoints" / "t", _payload(5))
    write_payload(tmp_path / "shared" / "ckpt", _payload(6))
    moved = read_checkpoint({"trial_id": "t", "storage": "local", "checkpoint": "/gone/_state/checkpoints/t"}, folder)
    stored = read_checkpoint({"trial_id": "t", "storage": str(tmp_path / "shared"), "checkpoint": "ckpt"}, folder)
    assert (moved["step"], stored["step"]) == (5, 6)  # a moved folder's own checkpoints; a shared path
    redacted = {"trial_id": "t", "storage": "s3://***@bucket/x", "checkpoint": "ckpt"}
    with pytest.raises(CheckpointError, match="credentials are not recorded"):
        read_checkpoint(redacted, folder)
    # during the run, the executor's own storage (its credentials with it) is where they are read
    assert read_checkpoint(redacted, folder, open_storage(str(tmp_path / "shared")))["step"] == 6


def test_weights_above_the_size_rule_stay_out_of_git(tmp_path: Path) -> None:
    run = {"trial_id": "resnet20-A-s0", "model": "resnet20", "shortcut": "A", "dataset": "cifar10"}
    state = build_model("resnet20").state_dict()
    keep_weights(tmp_path, run, None, state, None)
    assert not (tmp_path / "weights" / ".gitignore").exists()
    keep_weights(tmp_path, {**run, "trial_id": "big"}, None, state, None, limit_bytes=1000)
    keep_weights(tmp_path, {**run, "trial_id": "big"}, None, state, None, limit_bytes=1000)
    ignored = (tmp_path / "weights" / ".gitignore").read_text().splitlines()
    assert ignored[1:] == ["big.safetensors"] and ignored[0].startswith("# weights files over")
    assert (tmp_path / "weights" / "big.safetensors").exists()
