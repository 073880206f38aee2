"""The fleet end to end: a tiny suite through the local executor and through Ray Tune, and resume."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from fleet_support import REPO, check_complete, read_tables, rows_of, run_command, start_driver, tiny_suite, wait_for

from benchmark.__main__ import main
from benchmark.results.tables import METRIC_COLUMNS


@pytest.mark.slow
def test_local_executor_trains_and_writes_tidy_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tiny_suite(tmp_path, steps=30, every=10)
    status = main(["run", str(suite), "--executor", "local", "--results", str(tmp_path / "results"), "--no-report"])
    out = capsys.readouterr().out
    assert status == 0, out
    runs, metrics = read_tables(tmp_path / "results" / "tiny")
    check_complete(runs, metrics, steps=30, every=10)
    # what makes a final error comparable with the paper's is recorded: the subsets and the recipe's
    # differences from the named one
    assert set(runs["train_subset"]) == {512} and set(runs["eval_subset"]) == {256}
    assert set(runs["recipe_changes"]) == {"lr 0.1 -> 0.05; batch_size 128 -> 32; max_steps 64000 -> 30"}
    # the synthetic data is learnable: the training loss goes down for both nets
    for trial_id, rows in metrics.groupby("trial_id"):
        assert rows["train_loss"].iloc[-1] < rows["train_loss"].iloc[0], rows
    assert "ETA" in out and "resnet20-A-s0" in out
    # Figure 7 of the run's own nets, measured after the trials: the scorecard's row has numbers
    assert "analysis: Figure 7's layer responses of 2 trained nets (plain20, resnet20)" in out
    responses = pd.read_csv(tmp_path / "results" / "tiny" / "analysis" / "layer_responses.csv")
    assert set(responses.loc[responses["step"] == 30, "model"]) == {"plain20", "resnet20"}
    assert "no layer responses measured" not in out
    # the scorecard ends the run: the cure judged where the trials are, one seed each
    assert "Scorecard (" in out and "plain net of the same depth (Fig. 6 (left vs middle)), at 30 of 64,000 iterations: " \
        "not decided: n=1 for plain20 and resnet20-A" in out
    # a rerun finds everything finished and trains nothing
    assert main(["run", str(suite), "--executor", "local", "--results", str(tmp_path / "results"), "--no-report"]) == 0
    assert "2 already finished" in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "results" / "tiny" / "metrics.csv")) == len(metrics)


@pytest.mark.slow
def test_killed_run_resumes_without_rerunning_finished_trials(tmp_path: Path) -> None:
    suite = tiny_suite(tmp_path, models="resnet20, plain20, resnet32", steps=20, every=5)
    results = tmp_path / "results"
    command = [sys.executable, "-m", "benchmark", "run", str(suite), "--executor", "local", "--results", str(results), "--no-report"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    metrics_path = results / "tiny" / "metrics.csv"
    deadline = time.monotonic() + 240
    # kill it once the second trial has written (and checkpointed) part of its run
    while time.monotonic() < deadline and process.poll() is None:
        if metrics_path.exists() and (pd.read_csv(metrics_path)["trial_id"] == "plain20-s0").sum() >= 2:
            break
        time.sleep(0.2)
    assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = pd.read_csv(results / "tiny" / "runs.csv").set_index("trial_id")
    assert before.loc["resnet20-A-s0", "status"] == "completed"
    assert before.loc["plain20-s0", "status"] == "running"

    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "1 already finished" in rerun.stdout
    assert "resnet20-A-s0" not in rerun.stdout.split("already finished", 1)[1].split("suite tiny:")[0]
    runs, metrics = read_tables(results / "tiny")
    check_complete(runs, metrics, steps=20, every=5)
    after = runs.set_index("trial_id")
    assert after.loc["resnet20-A-s0", "finished_at"] == before.loc["resnet20-A-s0", "finished_at"]
    assert after.loc["plain20-s0", "started_at"] == before.loc["plain20-s0", "started_at"]


def test_a_failing_trial_is_recorded_and_the_fleet_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 16 training images cannot make a batch of 32: the trial raises inside training (not in preflight)
    path = tiny_suite(tmp_path, models="resnet20", steps=4, every=2)
    path.write_text(path.read_text().replace("train_subset: 512", "train_subset: 16"))
    status = main(["run", str(path), "--executor", "local", "--results", str(tmp_path / "results"), "--no-report"])
    assert status == 1
    runs = pd.read_csv(tmp_path / "results" / "tiny" / "runs.csv")
    assert list(runs["status"]) == ["failed"]
    assert "batch_size 32 exceeds the 16 training images" in runs["error"].iloc[0]
    assert "1 failed" in capsys.readouterr().out


def test_a_results_folder_continues_only_its_own_configuration(tmp_path: Path) -> None:
    from benchmark import SuiteError
    from benchmark.fleet.preflight import check_resumable
    from benchmark.results.tables import ResultsWriter
    from benchmark.suite.spec import load_suite

    trial = load_suite(tiny_suite(tmp_path, models="resnet20")).trials()[0]
    writer = ResultsWriter(tmp_path / "results" / "tiny")
    stored = trial.model_dump(mode="json")
    del stored["eval_ten_crop"]  # a folder written before that field existed: its default is no change
    writer.write_trial_config(trial.trial_id, {"trial": stored})
    fields = {"code_version": "abc", "data_fingerprint": "synthetic:1"}
    check_resumable(writer, [trial], fields, allow_changes=False)
    changed = load_suite(tiny_suite(tmp_path, models="resnet20"), ["recipe.lr=0.2"]).trials()[0]
    with pytest.raises(SuiteError, match=r"resnet20-A-s0 was run with a different configuration \(differs in recipe\.lr\)"):
        check_resumable(writer, [changed], fields, allow_changes=False)


@pytest.mark.slow
def test_a_second_run_on_a_folder_in_use_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tiny_suite(tmp_path, models="resnet20", steps=400, every=5)
    results = tmp_path / "results"
    first = start_driver(run_command(suite, results, "--executor", "local"))
    try:
        wait_for(lambda: rows_of(results / "tiny", "resnet20-A-s0") >= 1, first)
        assert main(["run", str(suite), "--executor", "local", "--results", str(results), "--no-report"]) == 2
        error = capsys.readouterr().err
        assert "another run is using this results folder" in error and f"pid {first.pid}" in error
        assert len(error.strip().splitlines()) == 1
        rows = rows_of(results / "tiny", "resnet20-A-s0")
        wait_for(lambda: rows_of(results / "tiny", "resnet20-A-s0") > rows, first)  # the first run goes on, untouched
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # the killed driver's lock is stale: the next run takes it over and says so
    again = start_driver(run_command(suite, results, "--executor", "local"))
    try:
        line = again.stdout.readline()
        assert f"(pid {first.pid}) ended without releasing its lock; taking over" in line, line
    finally:
        os.killpg(again.pid, signal.SIGKILL)
        again.wait()


@pytest.mark.slow
def test_a_relative_data_root_works_from_the_directory_it_names(tmp_path: Path) -> None:
    # Ray Tune runs every trial in its own working directory: the driver resolves data.root once.
    from test_data_jpeg import make_npz

    (tmp_path / "data").mkdir()
    make_npz(tmp_path / "data" / "small.npz", count=240)
    suite = tmp_path / "rel.yaml"
    suite.write_text(tiny_suite(tmp_path, models="resnet20", steps=4, every=2).read_text()
                     .replace("source: synthetic, train_subset: 512, eval_subset: 256", "source: jpeg75, root: data/small.npz"))
    done = subprocess.run(run_command(suite, tmp_path / "results"), cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stdout + done.stderr
    runs = pd.read_csv(tmp_path / "results" / "tiny" / "runs.csv")
    assert list(runs["status"]) == ["completed"] and list(runs["data_source"]) == ["jpeg75"]


@pytest.mark.slow
def test_changed_code_is_refused_on_resume_unless_allowed(tmp_path: Path) -> None:
    # An installed copy outside git: its code version is the hash of the package's files.
    copy = tmp_path / "copy"
    shutil.copytree(REPO / "benchmark", copy / "benchmark", ignore=shutil.ignore_patterns("__pycache__"))
    suite = tiny_suite(tmp_path, models="resnet20", steps=4, every=2)
    command = run_command(suite, tmp_path / "results", "--executor", "local")
    env = {**os.environ, "PYTHONPATH": str(copy)}
    first = subprocess.run(command, cwd=copy, capture_output=True, text=True, timeout=600, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    runs = pd.read_csv(tmp_path / "results" / "tiny" / "runs.csv")
    before = runs["code_version"].iloc[0]
    assert before.startswith("package:")

    training_loop = copy / "benchmark" / "training" / "train.py"
    assert training_loop.is_file()  # a change to the code, not a new file
    with open(training_loop, "a") as handle:
        handle.write("# a change\n")
    more = command[:-2] + ["--set", "seeds=[0,1]", "--executor", "local"]  # a new seed: the folder must continue
    refused = subprocess.run(more, cwd=copy, capture_output=True, text=True, timeout=600, env=env)
    assert refused.returncode == 2
    assert "ran with other code" in refused.stderr and before in refused.stderr and "--allow-changes" in refused.stderr
    assert len(pd.read_csv(tmp_path / "results" / "tiny" / "runs.csv")) == 1  # nothing written

    allowed = subprocess.run(more + ["--allow-changes"], cwd=copy, capture_output=True, text=True, timeout=600, env=env)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    runs = pd.read_csv(tmp_path / "results" / "tiny" / "runs.csv").set_index("trial_id")
    assert runs.loc["resnet20-A-s1", "allowed_changes"].startswith(f"code {before} -> package:")
    assert runs.loc["resnet20-A-s0", "code_version"] == before  # a finished trial keeps the code it ran


@pytest.mark.slow
def test_a_line_cut_mid_write_is_set_aside_and_every_whole_row_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tiny_suite(tmp_path, steps=20, every=5)
    args = ["run", str(suite), "--executor", "local", "--results", str(tmp_path / "results"), "--no-report"]
    assert main(args) == 0
    path = tmp_path / "results" / "tiny" / "metrics.csv"
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) == 9
    cut = lines[3][: len(lines[3]) // 2] + '"\n'  # a torn row, ending in an open quote that would swallow the rest
    path.write_text("".join(lines[:3] + [cut] + lines[4:]))
    capsys.readouterr()
    assert main(args) == 0
    assert "1 damaged line(s)" in capsys.readouterr().out
    metrics = pd.read_csv(path)
    assert len(metrics) == 7 and list(metrics.columns) == list(METRIC_COLUMNS)
    assert pd.read_csv(tmp_path / "results" / "tiny" / "discarded_metrics.csv")["discarded_at_reason"].str.startswith("damaged line 4").all()
    # the report counts evaluation points against the recipe (20 steps / every 5), not the longest trial
    from benchmark.report import tables
    from benchmark.results.read import load_results

    missing = tables.missing_table(load_results(tmp_path / "results" / "tiny")).set_index("trial_id")
    assert dict(missing["problem"]) == {"plain20-s0": "3 of 4 evaluation points"}


@pytest.mark.slow
def test_a_corrupt_checkpoint_is_named_set_aside_and_the_trial_restarts_clean(tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture[str]) -> None:
    suite = tiny_suite(tmp_path, models="resnet20", steps=10, every=5)
    args = ["run", str(suite), "--executor", "local", "--results", str(tmp_path / "results"), "--no-report"]
    assert main(args) == 0
    folder = tmp_path / "results" / "tiny"
    # what a driver killed mid-trial leaves: the trial still `running`, its checkpoint on disk
    runs = pd.read_csv(folder / "runs.csv")
    runs["status"] = "running"
    runs.to_csv(folder / "runs.csv", index=False)
    checkpoint = folder / "_state" / "checkpoints" / "resnet20-A-s0" / "trial_state.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"{checkpoint}: not a readable checkpoint" in out and "set aside as" in out
    assert "restarted from step 0 (no checkpoint to resume from): 2 later rows" in out
    runs, metrics = read_tables(folder)
    check_complete(runs, metrics, steps=10, every=5)
    assert runs["start_step"].iloc[0] == 0
    assert len(pd.read_csv(folder / "discarded_metrics.csv")) == 2
    assert len(list(checkpoint.parent.parent.glob("resnet20-A-s0.unreadable-*"))) == 1


def test_a_crafted_checkpoint_runs_no_code(tmp_path: Path) -> None:
    import torch

    from benchmark.training.session import DirectorySession

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # what unpickling would call
            return (os.system, (f"touch {marker}",))

    (tmp_path / "ckpt").mkdir()
    torch.save({"version": 2, "model": Payload()}, tmp_path / "ckpt" / "trial_state.pt")
    restored = DirectorySession(lambda row: None, tmp_path / "ckpt").restore()
    assert restored.payload is None and "not a readable checkpoint" in restored.note
    assert not marker.exists()


def test_a_garbage_runs_table_is_one_line_and_nothing_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tiny_suite(tmp_path, models="resnet20", steps=4, every=2)
    folder = tmp_path / "results" / "tiny"
    folder.mkdir(parents=True)
    (folder / "runs.csv").write_text("\x00garbage;;\nmore garbage\n")
    assert main(["run", str(suite), "--executor", "local", "--results", str(tmp_path / "results"), "--no-report"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "runs.csv: not a runs table" in error
    assert (folder / "runs.csv").read_text() == "\x00garbage;;\nmore garbage\n" and not (folder / "metrics.csv").exists()


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_run_resumes_once_space_is_freed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import errno

    from benchmark.results import tables as results_module

    written = []
    real_text = results_module._csv_text

    def fills_up(columns: tuple[str, ...], rows: list, header: bool = True) -> str:  # the 3rd row finds the disk full
        written.append(columns)
        if len(written) >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_text(columns, rows, header)

    monkeypatch.setattr(results_module, "_csv_text", fills_up)
    suite = tiny_suite(tmp_path, models="resnet20", steps=20, every=5)
    args = ["run", str(suite), "--executor", "local", "--results", str(tmp_path / "results"), "--no-report"]
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "metrics.csv: no space left on the device while writing (" in error
    assert " free there); free some space" in error  # how much is left, where
    assert len(pd.read_csv(tmp_path / "results" / "tiny" / "metrics.csv")) == 2  # readable: whole rows only
    assert list(pd.read_csv(tmp_path / "results" / "tiny" / "runs.csv")["status"]) == ["interrupted"]
    monkeypatch.setattr(results_module, "_csv_text", real_text)
    assert main(args) == 0
    check_complete(*read_tables(tmp_path / "results" / "tiny"), steps=20, every=5)


def test_storage_is_refused_for_the_local_executor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tiny_suite(tmp_path, models="resnet20", steps=4, every=2)
    assert main(["run", str(suite), "--executor", "local", "--storage", str(tmp_path / "s"), "--results", str(tmp_path / "r")]) == 2
    assert "checkpoint storage is the Ray executor's" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
