"""The fleet end to end: a tiny suite through the local executor and through Ray Tune, and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmark.__main__ import main
from benchmark.results import METRIC_COLUMNS, RUN_COLUMNS

REPO = Path(__file__).resolve().parent.parent

TINY = """\
name: tiny
data: {{dataset: cifar10, source: synthetic, train_subset: 512, eval_subset: 256}}
loader: device
recipe: {{name: cifar10_he2015, batch_size: 32, max_steps: {steps}, lr: 0.05}}
grid: {{model: [{models}]}}
seeds: [0]
resources: {{cpu: 1}}
eval_every: {every}
eval_batch_size: 256
"""


def tiny_suite(tmp_path: Path, models: str = "plain20, resnet20", steps: int = 30, every: int = 10) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(models=models, steps=steps, every=every))
    return path


def read_tables(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_csv(folder / "runs.csv"), pd.read_csv(folder / "metrics.csv")


def check_complete(runs: pd.DataFrame, metrics: pd.DataFrame, steps: int, every: int) -> None:
    assert list(runs.columns) == list(RUN_COLUMNS)
    # Every recipe field reaches the runs table (the writer drops keys it has no column for).
    recipe_columns = [c for c in runs.columns if c.startswith("recipe_")]
    assert {"recipe_warmup_max_steps", "recipe_plateau_patience"} <= set(recipe_columns)
    assert runs[recipe_columns].notna().all().all()
    assert list(metrics.columns) == list(METRIC_COLUMNS)
    assert set(runs["status"]) == {"completed"}, runs[["trial_id", "status", "error"]]
    assert not metrics.duplicated(["trial_id", "step"]).any()
    for trial_id, rows in metrics.groupby("trial_id"):
        assert list(rows["step"]) == list(range(every, steps + 1, every)), trial_id
    assert (runs["data_source"] == "synthetic").all()
    assert runs["git_commit"].notna().all() and runs["torch_version"].notna().all()
    assert (runs["recipe_max_steps"] == steps).all() and (runs["recipe_batch_size"] == 32).all()


def test_local_executor_trains_and_writes_tidy_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tiny_suite(tmp_path, steps=30, every=10)
    status = main(["run", str(suite), "--executor", "local", "--results", str(tmp_path / "results"), "--no-report"])
    out = capsys.readouterr().out
    assert status == 0, out
    runs, metrics = read_tables(tmp_path / "results" / "tiny")
    check_complete(runs, metrics, steps=30, every=10)
    # the synthetic data is learnable: the training loss goes down for both nets
    for trial_id, rows in metrics.groupby("trial_id"):
        assert rows["train_loss"].iloc[-1] < rows["train_loss"].iloc[0], rows
    assert "ETA" in out and "resnet20-A-s0" in out
    # a rerun finds everything finished and trains nothing
    assert main(["run", str(suite), "--executor", "local", "--results", str(tmp_path / "results"), "--no-report"]) == 0
    assert "2 already finished" in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "results" / "tiny" / "metrics.csv")) == len(metrics)


def test_ray_executor_runs_the_same_suite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tiny_suite(tmp_path, steps=20, every=10)
    status = main(["run", str(suite), "--results", str(tmp_path / "results"), "--no-report"])
    out = capsys.readouterr().out
    assert status == 0, out
    runs, metrics = read_tables(tmp_path / "results" / "tiny")
    check_complete(runs, metrics, steps=20, every=10)
    assert runs["ray_version"].notna().all()


def test_killed_run_resumes_without_rerunning_finished_trials(tmp_path: Path) -> None:
    suite = tiny_suite(tmp_path, models="resnet20, plain20, resnet32", steps=30, every=5)
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
    check_complete(runs, metrics, steps=30, every=5)
    after = runs.set_index("trial_id")
    assert after.loc["resnet20-A-s0", "finished_at"] == before.loc["resnet20-A-s0", "finished_at"]
    assert after.loc["plain20-s0", "started_at"] == before.loc["plain20-s0", "started_at"]


def test_a_failing_trial_is_recorded_and_the_fleet_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 16 training images cannot make a batch of 32: the trial raises inside training (not in preflight)
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(models="resnet20", steps=4, every=2).replace("train_subset: 512", "train_subset: 16"))
    status = main(["run", str(path), "--executor", "local", "--results", str(tmp_path / "results"), "--no-report"])
    assert status == 1
    runs = pd.read_csv(tmp_path / "results" / "tiny" / "runs.csv")
    assert list(runs["status"]) == ["failed"]
    assert "batch_size 32 exceeds the 16 training images" in runs["error"].iloc[0]
    assert "1 failed" in capsys.readouterr().out


def test_a_results_folder_continues_only_its_own_configuration(tmp_path: Path) -> None:
    from benchmark.errors import SuiteError
    from benchmark.fleet.preflight import check_resumable
    from benchmark.results import ResultsWriter
    from benchmark.spec import load_suite

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
