"""Resuming from checkpoints that are not where, or not what, the results table expects: the one
before an unreadable latest, a checkpoint of another model, a data-parallel trial's recorded one
rotated out by Train, the rows a killed driver never wrote, a storage that changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_train import suite_file

from benchmark import SuiteError
from benchmark.suite.spec import load_suite
from benchmark.training.checkpoint import PAYLOAD_FILE
from benchmark.fleet.recorder import FleetRecorder
from benchmark.results.tables import ResultsWriter
from benchmark.training.session import REPLAYED, DirectorySession
from benchmark.training.train import train_trial

RECIPE = "{name: cifar10_he2015, batch_size: 32, max_steps: 8}"  # evaluated (and checkpointed) at steps 4 and 8


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A plain-20 trial trained to its end (step 8): its checkpoint folder and its rows."""
    folder = tmp_path_factory.mktemp("trained")
    rows: list[dict] = []
    train_trial(load_suite(suite_file(folder, RECIPE)).trials()[0], DirectorySession(rows.append, folder / "ckpt"), threads=1)
    return folder / "ckpt", rows


def test_an_unreadable_latest_checkpoint_falls_back_to_the_one_before(tmp_path: Path, trained) -> None:
    import pyarrow.fs
    from ray.train import Checkpoint

    from benchmark.fleet.ray_checkpoint import restore_from

    trial = tmp_path / "run-1" / "plain20-s0"
    shutil.copytree(trained[0], trial / "checkpoint_000000")
    (trial / "checkpoint_000001").mkdir()
    (trial / "checkpoint_000001" / PAYLOAD_FILE).write_bytes(b"cut short by a crash")
    local = pyarrow.fs.LocalFileSystem()
    # a data-parallel rank: falls back alike, and moves nothing the other ranks read
    restored = restore_from(Checkpoint(str(trial / "checkpoint_000001"), filesystem=local), set_aside=False)
    assert restored.payload is not None and restored.payload["step"] == 8
    assert (trial / "checkpoint_000001").exists()
    restored = restore_from(Checkpoint(str(trial / "checkpoint_000001"), filesystem=local), set_aside=True)
    assert restored.payload is not None and restored.payload["step"] == 8
    assert f"{trial / 'checkpoint_000001'}/{PAYLOAD_FILE}: not a readable checkpoint" in restored.note
    assert f"resumed from the checkpoint before it, {trial / 'checkpoint_000000'}" in restored.note
    assert [p.name for p in trial.iterdir() if ".unreadable-" in p.name] and not (trial / "checkpoint_000001").exists()


def test_a_readable_checkpoint_of_another_model_is_set_aside_naming_its_file(tmp_path: Path, trained) -> None:
    shutil.copytree(trained[0], tmp_path / "ckpt")  # plain-20's checkpoint, found by a plain-32 trial
    trial = load_suite(suite_file(tmp_path, "{name: cifar10_he2015, batch_size: 32, max_steps: 4}", "plain32")).trials()[0]
    rows: list[dict] = []
    train_trial(trial, DirectorySession(rows.append, tmp_path / "ckpt"), threads=1)
    note = rows[0]["note"]
    assert f"{tmp_path / 'ckpt' / PAYLOAD_FILE}: does not fit the trial's model" in note
    assert "set aside as" in note and "restarts from step 0" in note and "weights_only" not in note
    assert rows[0]["start_step"] == 0 and [row["step"] for row in rows] == [4]
    assert len(list(tmp_path.glob("ckpt.unreadable-*"))) == 1


def test_a_crafted_checkpoint_is_refused_in_our_words_not_torch_s(tmp_path: Path) -> None:
    import os

    import torch

    from benchmark.training.checkpoint import CheckpointError, read_payload

    class Payload:
        def __reduce__(self):  # what unpickling would call
            return (os.system, ("true",))

    torch.save({"version": 2, "model": Payload()}, tmp_path / PAYLOAD_FILE)
    with pytest.raises(CheckpointError) as raised:
        read_payload(tmp_path)
    message = str(raised.value)
    # torch's own message advises loading with weights_only=False: the code execution we refuse
    assert "weights_only" not in message and "posix.system" in message and "never loaded" in message
    assert len(message.splitlines()) == 1


def test_a_trial_resumed_past_its_table_reports_the_rows_the_table_lacks(tmp_path: Path, trained) -> None:
    shutil.copytree(trained[0], tmp_path / "ckpt")
    trial = load_suite(suite_file(tmp_path, RECIPE)).trials()[0]
    session = DirectorySession((rows := []).append, tmp_path / "ckpt")
    session.written_step = 0  # the table has no row: its driver was killed while the trial trained on
    train_trial(trial, session, threads=1)
    assert [row["step"] for row in rows] == [4, 8]
    assert rows[0]["train_loss"] == trained[1][0]["train_loss"] and rows[1]["eval_error"] == trained[1][1]["eval_error"]
    assert len({row["attempt"] for row in rows}) == 1  # one attempt, resumed at step 8
    assert rows[0][REPLAYED] and REPLAYED not in rows[1]
    # The recorder writes a replayed row the table lacks, and skips one it has (a retry within a run).
    writer = ResultsWriter(tmp_path / "results" / "t")
    lines: list[str] = []
    recorder = FleetRecorder(writer, [trial], out=lines.append)
    for row in rows:
        recorder.result(trial.trial_id, row)
    recorder.result(trial.trial_id, rows[0])
    recorder.close()
    assert [int(row[1]) for row in writer.rows_by_trial[trial.trial_id]] == [4, 8] and len(lines) == 2
    rows.clear()
    train_trial(trial, DirectorySession(rows.append, tmp_path / "ckpt"), threads=1)  # the table had every row
    assert [row["step"] for row in rows] == [8]


def test_a_data_parallel_trial_s_rotated_out_checkpoint_resumes_from_the_newest_left(tmp_path: Path) -> None:
    from benchmark.fleet.ray_executor import RayExecutor
    from benchmark.fleet.storage import DEFAULT_STORAGE, open_storage

    storage = open_storage(str(tmp_path / "_state" / "ray"))
    trial = tmp_path / "_state" / "ray" / "run-1-resnet20-A-s0-ddp"
    for name in ("checkpoint_2026-12-04_10-00-02.000000", "checkpoint_2026-12-04_10-00-03.000000",
                 "checkpoint_2026-12-04_10-00-04.000000.unreadable-20261204-100005"):
        (trial / name).mkdir(parents=True)
        (trial / name / PAYLOAD_FILE).write_bytes(b"a payload")
    executor = RayExecutor(storage, DEFAULT_STORAGE, max_concurrent=1)
    recorded = "run-1-resnet20-A-s0-ddp/checkpoint_2026-12-04_10-00-01.000000"  # rotated out by Train
    newest = "run-1-resnet20-A-s0-ddp/checkpoint_2026-12-04_10-00-03.000000"
    assert executor.checkpoint_of("resnet20-A-s0", {"checkpoint": recorded, "storage": DEFAULT_STORAGE}) == newest
    # a folder written before the default was recorded by its place, since moved: still its own storage
    moved = {"checkpoint": recorded, "storage": "/somewhere/else/results/tiny/_state/ray"}
    assert executor.checkpoint_of("resnet20-A-s0", moved) == newest
    assert executor.checkpoint_of("resnet20-A-s0", {"checkpoint": recorded, "storage": "s3://bucket/x"}) is None


def test_checkpoints_in_another_storage_are_refused_in_one_line_never_discarded(tmp_path: Path) -> None:
    from fleet_support import tiny_suite

    from benchmark.fleet.preflight import check_resumable
    from benchmark.fleet.storage import DEFAULT_STORAGE
    from benchmark.results.tables import ResultsWriter

    trial = load_suite(tiny_suite(tmp_path, models="resnet20")).trials()[0]
    writer = ResultsWriter(tmp_path / "results" / "tiny")
    writer.update_run(trial.trial_id, status="interrupted", checkpoint="run-1/resnet20-A-s0/checkpoint_000001",
                      storage="s3://***@bucket/prefix")
    fields = {"code_version": "abc", "data_fingerprint": "synthetic:1", "storage": DEFAULT_STORAGE}
    with pytest.raises(SuiteError) as refused:
        check_resumable(writer, [trial], fields, allow_changes=False)
    assert "checkpoints in storage s3://***@bucket/prefix, but this run's storage is _state/ray; pass --storage " \
           "s3://***@bucket/prefix to resume them" in str(refused.value)
    assert len(str(refused.value).splitlines()) == 1
    assert check_resumable(writer, [trial], fields, allow_changes=True) == "storage s3://***@bucket/prefix -> _state/ray"
    writer.update_run(trial.trial_id, status="completed")  # a finished trial needs its checkpoints no more
    assert check_resumable(writer, [trial], fields, allow_changes=False) == ""
