"""Connecting the driver to Ray: a private local instance, or an existing cluster, with our code.

- A private instance (`ray.init(address="local")`, so a stray cluster on the machine is never
  joined) is started by default, with a reaper beside it (`reaper.py`) so that a driver killed with
  SIGKILL leaves no Ray process behind.
- An existing cluster (`--ray-address` or `RAY_ADDRESS`) is probed first, in a subprocess with a
  deadline: `ray.init` on an unreachable or non-Ray address otherwise hangs for minutes and
  ignores Ctrl-C.
- Either way the job's runtime environment ships the `benchmark` package (`py_modules`), so a
  trial on any node runs exactly the driver's code, whatever is installed there. Nodes need the
  dependencies (torch, torchvision, numpy, pydantic, pyyaml, ray[tune], pandas; docs/fleet.md, "On a Ray
  cluster").
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark import BenchmarkError
from benchmark.fleet.code_dirs import new_code_dir
from benchmark.results.provenance import snapshot_package
from benchmark.training.backends import worker_environment

PROBE_TIMEOUT_S = 25  # an unreachable cluster is one line within 30 s
HANDSHAKE_TIMEOUT_S = 4  # a port that is not a Ray head (no gRPC) is one line within 10 s
# The HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS) answers with its
# own SETTINGS frame (type 4) at once; anything else answers otherwise, or not at all.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


class ClusterError(BenchmarkError):
    """A Ray cluster that cannot be reached, or cannot place what a suite asks for."""


# Data-parallel trials are Ray Train V2 trainers inside Tune trials (ray_ddp.py: TuneReportCallback).
# V2 became Train's default only in late 2025 (ray-project/ray#57857); in the Ray releases before,
# from 2.43 on, which the project admits, it must be switched on, in the driver and in every worker
# (the runtime environment's env_vars): under V1 every data-parallel trial would fail.
TRAIN_V2 = "RAY_TRAIN_V2_ENABLED"


def quiet_ray_environment() -> None:
    """Ray's settings for our runs: no usage statistics, no auth token, plain logs, Ctrl-C
    handled by the fleet (Tune's own SIGINT handler would swallow it and return normally), and
    Train V2 for data-parallel trials; none of Tune's automatic loggers: its TensorBoard files would land under the results folder
    (`_state/ray/`), so that `tensorboard --logdir results/<suite>` showed every trial twice, the
    second time with the heartbeats; the recorder writes the curves (benchmark/fleet/curves.py) and
    the executor asks for Tune's result.json itself (ray_executor.py)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ[TRAIN_V2] = "1"  # not a default: data-parallel trials need Train V2 (ray_ddp.py)


def runtime_env(code_dir: Path) -> dict[str, Any]:
    """The job's runtime environment: `code_dir` (holding only the package) as the working
    directory, uploaded once and unpacked on every node.

    A working directory rather than `py_modules`: without one, Ray puts the driver's current
    directory first on every worker's `sys.path` (`py_driver_sys_path`), and a driver started from
    a checkout then has its workers import the checkout, not the shipped package (seen: a trial
    retried after the checkout was edited ran the edited code).
    """
    return {"working_dir": str(code_dir), "excludes": ["__pycache__", "*.pyc"],
            # set where every worker process starts, not per trial (backends.worker_environment)
            "env_vars": {**worker_environment(), TRAIN_V2: "1"}}


# A custom resource every node of the private instance offers plenty of: data-parallel trials'
# drivers ask for it instead of CPU (benchmark/fleet/preflight.py, driver_request).
DRIVER_RESOURCE = "benchmark_driver"


@dataclass(frozen=True)
class Node:
    node_id: str
    resources: dict[str, float]  # CPU, GPU, memory, custom resources
    address: str = ""  # the node's IP address (Ray's NodeManagerAddress): which machine it is


def check_address(address: str | None) -> str | None:
    """The cluster address to join (None: a private instance). Ray Client (`ray://`) is refused: the
    fleet's recorder must run where the results folder is, and under Ray Client the driver's code
    runs on the head node, so the local folder would get no rows."""
    if address == "local":
        return None
    if address is not None and address.startswith("ray://"):
        raise ClusterError(f"--ray-address {address}: Ray Client (ray://) is not supported: the results would be "
                           "written on the head node; run the driver on the cluster instead (ray job submit, or "
                           "--ray-address HOST:6379 from a node; docs/clusters.md)")
    return address


@dataclass
class RayConnection:
    """The driver's Ray: `where` names it in messages; `close()` stops what we started."""

    address: str | None  # None: the private local instance
    package: Path | None = None  # the package the job ships: a copy frozen at connection
    owned: bool = True   # False: the caller had connected already; close() leaves that connection alone
    reaper: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    code_dir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def private(self) -> bool:
        return self.address is None

    @property
    def where(self) -> str:
        return "the local Ray instance" if self.private else f"the Ray cluster at {self.address}"

    def nodes(self) -> list[Node]:
        import ray

        return [Node(n["NodeID"], dict(n.get("Resources", {})), n.get("NodeManagerAddress", ""))
                for n in ray.nodes() if n.get("Alive")]

    def driver_address(self) -> str:
        """This driver's IP address as Ray sees it (nodes on this machine have the same)."""
        import ray

        return ray.util.get_node_ip_address()

    def close(self) -> None:
        import ray

        if self.owned and ray.is_initialized():
            ray.shutdown()  # stops a private instance's processes; leaves a cluster running
        if self.reaper is not None:
            self.reaper.stdin.close()  # tells the reaper we are done: it kills any straggler
            self.reaper.wait(timeout=30)
            self.reaper = None
        if self.code_dir is not None:
            self.code_dir.cleanup()
            self.code_dir = None


def connect(address: str | None = None, num_cpus: float | None = None, num_gpus: float | None = None) -> RayConnection:
    """Join `address` (or $RAY_ADDRESS), else start a private local instance limited to
    `num_cpus`/`num_gpus` (None: everything the machine has). Its jobs run a copy of the package
    frozen now (`connection.package`): editing the checkout during a long suite cannot reach a
    trial, and the hash each trial checks is of exactly this copy."""
    import ray

    quiet_ray_environment()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address == "local":
        address = None
    if ray.is_initialized():  # a caller (a test, a notebook) already connected: use it as it is
        return RayConnection(address, owned=False)
    code_dir = new_code_dir()  # sweeps the folders of drivers killed before they could remove theirs
    package = snapshot_package(Path(code_dir.name))
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        if address is not None:
            probe(address)
            ray.init(address=address, runtime_env=runtime_env(Path(code_dir.name)), logging_level="WARNING",
                     log_to_driver=False)
        else:
            # DRIVER_RESOURCE: data-parallel trials' drivers take it, not the workers' CPUs (preflight.py)
            ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, resources={DRIVER_RESOURCE: 1000},
                     include_dashboard=False,
                     runtime_env=runtime_env(Path(code_dir.name)), logging_level="WARNING", log_to_driver=False,
                     configure_logging=True)
    except BaseException:
        code_dir.cleanup()
        raise
    _restore_sigterm(sigterm)
    reaper = _start_reaper() if address is None else None
    return RayConnection(address, package=package, reaper=reaper, code_dir=code_dir)


def _restore_sigterm(handler: Any) -> None:
    """Give SIGTERM back to the handler set before `ray.init` (the CLI's: stop the fleet cleanly).
    `ray.init` replaces it with one that exits at once (and Ray's core adds a C-level one that
    aborts), leaving trials `running` and a private instance's agents orphaned."""
    if handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _start_reaper() -> subprocess.Popen[bytes] | None:
    """The reaper of a private instance: the processes `ray.init` started are its roots."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None)  # private, but stable across Ray 2.x
    roots = [str(info.process.pid) for infos in getattr(node, "all_processes", {}).values() for info in infos]
    if not roots:
        return None
    return subprocess.Popen([sys.executable, str(Path(__file__).with_name("reaper.py")), *roots],
                            stdin=subprocess.PIPE, start_new_session=True)


def _speaks_grpc(connection: socket.socket) -> bool:
    """Whether the server on `connection` answers an HTTP/2 preface as a gRPC server does, within
    HANDSHAKE_TIMEOUT_S (`ray.init` on a port that is not a Ray head otherwise waits half a minute)."""
    try:
        connection.settimeout(HANDSHAKE_TIMEOUT_S)
        connection.sendall(HTTP2_PREFACE)
        header = b""
        while len(header) < 9:
            chunk = connection.recv(9 - len(header))
            if not chunk:
                break
            header += chunk
    except OSError:
        return False
    return len(header) == 9 and header[3] == 0x04


def probe(address: str) -> None:
    """Fail within PROBE_TIMEOUT_S, naming `address`, unless a Ray cluster answers there."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if host and port.isdigit():
        try:
            connection = socket.create_connection((host, int(port)), timeout=HANDSHAKE_TIMEOUT_S)
        except OSError as exc:
            raise ClusterError(f"--ray-address {address}: cannot reach it ({exc.strerror or exc})") from None
        with connection:
            if not _speaks_grpc(connection):
                raise ClusterError(f"--ray-address {address}: something answers there, but not a Ray cluster's head "
                                   "(no gRPC); give the head's address, HOST:6379 by default")
    code = f"import ray; ray.init(address={address!r}, logging_level='ERROR', log_to_driver=False); ray.cluster_resources()"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"--ray-address {address}: no Ray cluster answered within {PROBE_TIMEOUT_S} s") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise ClusterError(f"--ray-address {address}: not a Ray cluster we can join ({lines[-1][:200] if lines else 'no answer'})")
