"""Faults and bad input at the edges of a run, as a new user meets them: each one line, at once,
and nothing left behind; and what a cluster needs checked before a trial starts."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fleet_support import tiny_suite

from benchmark import DataError
from benchmark.__main__ import main
from benchmark.fleet.ray_cluster import ClusterError, Node
from benchmark.hardware import cores


def test_the_folder_lock_is_taken_before_ray_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from benchmark.fleet import ray_cluster
    from benchmark.fleet.lock import FolderLock

    def no_ray(*args: object, **kwargs: object) -> None:
        raise AssertionError("Ray was started for a run that must be refused")

    monkeypatch.setattr(ray_cluster, "connect", no_ray)
    started = time.monotonic()
    with FolderLock(tmp_path / "results" / "tiny"):  # another run holds the folder
        assert main(["run", str(tiny_suite(tmp_path)), "--results", str(tmp_path / "results")]) == 2
    assert time.monotonic() - started < 5
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"another run is using this results folder (host {socket.gethostname()}, " \
        f"pid {os.getpid()}" in error


def test_ray_client_addresses_are_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tiny_suite(tmp_path)), "--ray-address", "ray://head:10001", "--results", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--ray-address ray://head:10001: Ray Client (ray://) is not supported" in error
    assert not (tmp_path / "r").exists()


def test_a_trial_larger_than_this_machine_is_refused_at_validation_and_before_ray(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    suite = str(tiny_suite(tmp_path))
    too_many = f"resources.cpu={cores() + 1}"
    assert main(["validate", suite, "--set", too_many]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"tiny.yaml: resources.cpu: a trial asks for {cores() + 1} CPUs, but this " \
        f"machine has {cores()} cores" in error
    assert main(["validate", suite, "--set", too_many, "--ray-address", "head:6379"]) == 0  # a cluster's nodes decide
    started = time.monotonic()
    assert main(["run", suite, "--set", too_many, "--results", str(tmp_path / "r")]) == 2
    assert time.monotonic() - started < 5 and "but this machine has" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_the_default_storage_is_refused_when_nodes_are_on_other_machines() -> None:
    from benchmark.fleet.preflight import check_storage_reaches

    here = [Node("a", {"CPU": 2}, "10.0.0.1"), Node("b", {"CPU": 2}, "10.0.0.1")]
    check_storage_reaches(here, "10.0.0.1", "the Ray cluster at 10.0.0.1:6379")  # one machine: the folder serves
    with pytest.raises(ClusterError) as refused:
        check_storage_reaches([*here, Node("c", {"CPU": 8}, "10.0.0.2")], "10.0.0.1", "the Ray cluster at 10.0.0.1:6379")
    assert "has nodes on other machines (10.0.0.2)" in str(refused.value)
    assert "pass --storage with a path every node sees or an s3:// URI" in str(refused.value)


def test_a_node_s_imagenet_copy_must_be_the_driver_s(tmp_path: Path) -> None:
    from test_fleet_imagenet import _tiny_tree

    from benchmark.data.imagenet import folder_fingerprint
    from benchmark.fleet.dataset import check_node_copy
    from benchmark.suite.spec import DataSpec

    root = _tiny_tree(tmp_path / "imagenet")
    spec = DataSpec(dataset="imagenet", source="folder", split="val", root=str(root))
    driver = f"folder:{folder_fingerprint(root)}"
    check_node_copy(spec, driver, "node-7/abcd1234")  # the same copy
    next((root / "train").rglob("*.JPEG")).unlink()  # a partial copy on this node
    with pytest.raises(DataError) as refused:
        check_node_copy(spec, driver, "node-7/abcd1234")
    assert f"node node-7/abcd1234: the ImageNet folder {root} there is not the driver's" in str(refused.value)
    assert len(str(refused.value).splitlines()) == 1


def test_a_port_that_is_not_a_ray_head_fails_within_10_seconds() -> None:
    import http.server

    from benchmark.fleet import ray_cluster

    web = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)  # answers, but not gRPC
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        for port in (web.server_address[1], silent.getsockname()[1]):
            started = time.monotonic()
            with pytest.raises(ClusterError, match=rf"--ray-address 127.0.0.1:{port}: something answers there, but not "):
                ray_cluster.probe(f"127.0.0.1:{port}")
            assert time.monotonic() - started < 10
    finally:
        web.shutdown()
        silent.close()


def test_stale_code_folders_of_killed_drivers_are_swept(tmp_path: Path) -> None:
    from benchmark.fleet.code_dirs import sweep_stale_code_dirs

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"benchmark-code-{gone.stdout.strip()}-x1"  # its driver was SIGKILLed
    live = tmp_path / f"benchmark-code-{os.getpid()}-x2"  # a run in progress
    unknown = tmp_path / "benchmark-code-x3"  # no owner in its name: left alone
    for folder in (dead, live, unknown):
        (folder / "benchmark").mkdir(parents=True)
    assert sweep_stale_code_dirs(tmp_path) == [dead]
    assert not dead.exists() and live.exists() and unknown.exists()


def test_every_result_file_gets_one_mode_the_umask_s(tmp_path: Path) -> None:
    from benchmark.fleet.lock import FolderLock
    from benchmark.results.tables import ResultsWriter

    previous = os.umask(0o027)
    try:
        with FolderLock(tmp_path / "tiny"):
            writer = ResultsWriter(tmp_path / "tiny")
            writer.write_trial_config("t", {"trial": {}})
            writer.update_run("t", status="running")
            writer.add_metrics("t", {"step": 1, "eval_split": "test"})
            writer.set_aside_rows("t", after_step=0, reason="a test")  # metrics.csv rewritten, discarded_ appended
    finally:
        os.umask(previous)
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in (tmp_path / "tiny").rglob("*")
             if p.is_file()}
    assert set(modes) == {"tiny/runs.csv", "tiny/metrics.csv", "tiny/discarded_metrics.csv", "tiny/trials/t.json",
                          "tiny/_state/run.lock"}
    assert set(modes.values()) == {"0o640"}, modes


def test_ctrl_c_while_the_commands_are_imported_is_one_line_and_130(monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import benchmark.__main__ as cli

    def interrupted(name: str) -> None:
        raise KeyboardInterrupt  # Ctrl-C while torch or Ray is being imported

    monkeypatch.setattr(cli.importlib, "import_module", interrupted)
    assert cli.main(["list"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_every_ray_worker_starts_with_the_cublas_workspace_and_train_v2(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    from benchmark.fleet.ray_cluster import quiet_ray_environment, runtime_env
    from benchmark.training.backends import CUBLAS_DETERMINISTIC_WORKSPACE

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setenv("RAY_TRAIN_V2_ENABLED", "0")  # Train V1: every data-parallel trial would fail
    quiet_ray_environment()
    assert os.environ["RAY_TRAIN_V2_ENABLED"] == "1"
    env = runtime_env(tmp_path)["env_vars"]
    assert env == {"CUBLAS_WORKSPACE_CONFIG": CUBLAS_DETERMINISTIC_WORKSPACE, "RAY_TRAIN_V2_ENABLED": "1"}
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # a user's own choice is kept
    assert runtime_env(tmp_path)["env_vars"]["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_a_trial_that_finds_the_disk_full_stops_the_fleet_in_one_line(tmp_path: Path) -> None:
    """Seen on a 4 MB tmpfs: ~280 lines of Ray tracebacks and the trials left `running`; now Ray's
    records of it are dropped and the fleet stops with one line (the runner then marks the trials
    interrupted: test_fleet's full-disk test)."""
    import logging

    from benchmark import ResultsError
    from benchmark.fleet.ray_executor import _callback_class, _QuietFullDisk
    from benchmark.fleet.storage import open_storage

    class Recorder:  # the fleet's recorder, as far as a trial's error reaches it
        def __init__(self) -> None:
            self.failures: list[str] = []

        def failed(self, trial_id: str, error: str) -> None:
            self.failures.append(trial_id)

    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback ...\nOSError: [Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device\n")
    trial = type("Trial", (), {"config": {"trial": {"trial_id": "resnet20-A-s0"}}, "error_file": str(error_file)})()
    recorder = Recorder()
    callback = _callback_class()(recorder, open_storage(str(tmp_path / "_state" / "ray")))
    callback.on_trial_error(0, [], trial)
    assert isinstance(callback.fatal, ResultsError) and callback.stopper().stop_all()
    assert f"{tmp_path / '_state' / 'ray'}: no space left on the device while a trial wrote its checkpoint (" in str(callback.fatal)
    assert not recorder.failures  # not a failed trial: it resumes once space is freed
    record = logging.LogRecord("ray.tune", logging.ERROR, "x", 1, "Trial task failed", None, None)
    try:
        raise OSError(28, "No space left on device")
    except OSError:
        record.exc_info = sys.exc_info()
    assert not _QuietFullDisk().filter(record)
    assert _QuietFullDisk().filter(logging.LogRecord("ray.tune", logging.ERROR, "x", 1, "another error", None, None))
