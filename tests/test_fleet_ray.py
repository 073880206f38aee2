"""The Ray executor's edges on a private instance: signals, orphans, addresses, checkpoint storage."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from fleet_support import (REPO, check_complete, descendants, read_tables, recorded_step, rows_of, run_command,
                           start_driver, still_alive, tiny_suite, wait_for)

from benchmark.__main__ import main


def stop_and_check_nothing_left(driver: subprocess.Popen[str], how: signal.Signals) -> tuple[int, str]:
    """Signal the driver (its pid only, as a scheduler would); return its exit code and output once
    it and every process it started (Ray's included) are gone."""
    started = descendants(driver.pid)
    assert any("raylet" in Path(f"/proc/{pid}/cmdline").read_text() for pid in still_alive(started)), "no Ray to stop"
    driver.send_signal(how)
    output, _ = driver.communicate(timeout=120)
    deadline = time.monotonic() + 30
    while still_alive(started) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = {pid: Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")[:80] for pid in still_alive(started)}
    assert not left, f"left behind: {left}"
    return driver.returncode, output


@pytest.mark.slow
def test_sigterm_marks_running_trials_interrupted_and_stops_every_ray_process(tmp_path: Path) -> None:
    suite = tiny_suite(tmp_path, models="resnet20", steps=2000, every=5)
    results = tmp_path / "results"
    driver = start_driver(run_command(suite, results))
    wait_for(lambda: rows_of(results / "tiny", "resnet20-A-s0") >= 1, driver)
    code, output = stop_and_check_nothing_left(driver, signal.SIGTERM)
    assert code == 130, output
    assert "1 running trial(s) marked interrupted" in output
    assert pd.read_csv(results / "tiny" / "runs.csv")["status"].tolist() == ["interrupted"]


@pytest.mark.slow
def test_a_driver_killed_with_sigkill_leaves_nothing_behind_and_the_run_resumes(tmp_path: Path) -> None:
    # Also the Ray executor's run of a suite end to end on a private instance: two nets, trained,
    # resumed and completed, every table row written once (two nets on a cluster: test_fleet_cluster).
    suite = tiny_suite(tmp_path, models="plain20, resnet20", steps=20, every=5)
    results = tmp_path / "results"
    driver = start_driver(run_command(suite, results))
    wait_for(lambda: recorded_step(results / "tiny", "resnet20-A-s0") >= 10, driver)
    stop_and_check_nothing_left(driver, signal.SIGKILL)  # the reaper stops Ray's orphaned agents
    # The results folder is moved before the rerun: its own checkpoints (_state/ray) go with it.
    moved = tmp_path / "moved"
    shutil.move(results, moved)
    rerun = subprocess.run(run_command(suite, moved), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    runs, metrics = read_tables(moved / "tiny")
    check_complete(runs, metrics, steps=20, every=5)
    # resumed from its stored checkpoint, not from step 0 with its rows set aside
    assert runs.set_index("trial_id").loc["resnet20-A-s0", "start_step"] >= 10
    assert "is gone" not in rerun.stdout, rerun.stdout
    assert runs["ray_version"].notna().all() and set(runs["storage"]) == {"_state/ray"}
    # each completed trial's final weights, read from Ray's storage, kept beside the tables
    assert sorted(p.name for p in (moved / "tiny" / "weights").glob("*.safetensors")) == [
        "plain20-s0.safetensors", "resnet20-A-s0.safetensors"]


def test_an_unreachable_ray_address_fails_at_once_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    started = time.monotonic()
    assert main(["run", str(tiny_suite(tmp_path)), "--ray-address", f"127.0.0.1:{port}", "--results", str(tmp_path / "r")]) == 2
    assert time.monotonic() - started < 30
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"--ray-address 127.0.0.1:{port}: cannot reach it" in error
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_unwritable_storage_fails_before_any_trial_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file, not a folder")
    args = ["run", str(tiny_suite(tmp_path)), "--storage", str(blocked / "ckpt"), "--results", str(tmp_path / "r"), "--no-report"]
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"storage {blocked / 'ckpt'}: cannot write there" in error
    assert not (tmp_path / "r").exists()


@pytest.fixture
def s3_server() -> dict[str, str]:
    """A real S3-protocol server on loopback (moto), with one bucket."""
    boto3 = pytest.importorskip("boto3")
    server_module = pytest.importorskip("moto.server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", **{
        "aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}).create_bucket(Bucket="ckpt")
    yield {"port": str(port), "uri": f"s3://ckpt/suites?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1", **env}
    server.stop()


@pytest.mark.slow
def test_checkpoints_go_to_s3_storage_and_a_killed_run_resumes_from_there(tmp_path: Path, s3_server: dict[str, str]) -> None:
    # Also the redaction: the suite's `storage` carries credentials (moto takes any), in the user
    # info and as a query option, and no file the run writes nor anything it prints holds them.
    import boto3

    key_id, secret = "AKIDLEAKCHECK", "s3cr3t/LEAK+check"
    uri = s3_server["uri"].replace("s3://", f"s3://{key_id}:{secret.replace('/', '%2F').replace('+', '%2B')}@")
    suite = tiny_suite(tmp_path, models="resnet20", steps=20, every=5)
    suite.write_text(suite.read_text() + f"storage: '{uri}'\n")
    results = tmp_path / "results"
    env = {k: v for k, v in s3_server.items() if k.startswith("AWS_")}
    command = run_command(suite, results)
    driver = start_driver(command, env=env)
    wait_for(lambda: recorded_step(results / "tiny", "resnet20-A-s0") >= 10, driver)
    os.killpg(driver.pid, signal.SIGKILL)
    first_output = driver.stdout.read() if driver.stdout else ""
    driver.wait()
    assert not (results / "tiny" / "_state" / "ray").exists()  # nothing went to the local default
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, **env})
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    runs, metrics = read_tables(results / "tiny")
    check_complete(runs, metrics, steps=20, every=5)
    assert runs["start_step"].iloc[0] >= 10 and runs["storage"].iloc[0] == s3_server["uri"].replace("s3://", "s3://***@")
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3_server['port']}", aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    keys = [item["Key"] for item in client.list_objects_v2(Bucket="ckpt", Prefix="suites/")["Contents"]]
    assert f"suites/{runs['checkpoint'].iloc[0]}/trial_state.pt" in keys
    written = [path for path in (results / "tiny").rglob("*") if path.is_file()]
    assert results / "tiny" / "trials" / "resnet20-A-s0.json" in written
    for text, where in [*((path.read_bytes().decode("latin-1"), str(path)) for path in written),
                        (first_output, "the first run's output"), (rerun.stdout + rerun.stderr, "the rerun's output")]:
        for credential in (key_id, secret, secret.replace("/", "%2F").replace("+", "%2B")):
            assert credential not in text, f"{where} holds a credential"
    assert (results / "tiny" / "weights" / "resnet20-A-s0.safetensors").is_file()  # its final weights, from the bucket


@pytest.mark.slow
def test_trials_import_the_shipped_package_not_the_driver_s_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ray puts the driver's working directory first on workers' sys.path unless the job has a
    # working_dir: a driver started from the checkout would have its trials run the checkout.
    import ray

    from benchmark.fleet.ray_cluster import connect
    from benchmark.results.provenance import package_hash

    def imported_from() -> tuple[str, str | None, str | None]:  # local: pickled by value, the workers cannot import this test module
        import benchmark

        # and the environment the worker process started with (runtime_env's env_vars)
        return benchmark.__file__, os.environ.get("CUBLAS_WORKSPACE_CONFIG"), os.environ.get("RAY_TRAIN_V2_ENABLED")

    monkeypatch.chdir(REPO)
    connection = connect(None, num_cpus=1)
    try:
        where, workspace, train_v2 = ray.get(ray.remote(imported_from).remote())
        assert connection.package is not None and not where.startswith(str(REPO)), where
        assert workspace == os.environ.get("CUBLAS_WORKSPACE_CONFIG", ":4096:8") and train_v2 == "1"
        assert package_hash(Path(where).parent) == package_hash(connection.package)
    finally:
        connection.close()
    assert not connection.package.exists()  # the frozen copy goes with the connection
