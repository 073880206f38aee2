"""Where a number came from: code version, software, hardware (AlgoPerf saves this with every trial)."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch

PACKAGES = ("torch", "torchvision", "numpy", "ray", "ffcv")
PACKAGE_DIR = Path(__file__).resolve().parent  # the `benchmark` package: the code a trial runs


def git_commit(cwd: Path | None = None) -> str:
    """The checkout's commit, with `-dirty` when tracked files differ from it; "" outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{commit}-dirty" if dirty else commit


def _git(args: list[str], cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=True, timeout=30).stdout.decode(errors="replace")


@dataclass(frozen=True)
class CodeVersion:
    """Which code a suite ran, captured once by the driver and recorded in every trial's row."""

    git_commit: str    # the checkout's commit, "-dirty" when tracked files differ ("" outside git)
    code_version: str  # the commit, "+<hash of the uncommitted changes>" when there are any;
    #                    "package:<hash>" outside git (an installed copy)
    package_hash: str  # the package's own files, as shipped to every node; trials check it


def code_version(package_dir: Path = PACKAGE_DIR) -> CodeVersion:
    commit = git_commit(package_dir)
    files = package_hash(package_dir)
    if not commit:
        return CodeVersion("", f"package:{files}", files)
    try:
        root = Path(_git(["rev-parse", "--show-toplevel"], package_dir).strip())
        changes = _git(["diff", "HEAD", "--binary"], root)
        untracked = _git(["ls-files", "--others", "--exclude-standard", "-z"], root).split("\0")
    except (OSError, subprocess.SubprocessError):
        return CodeVersion(commit, f"package:{files}", files)
    digest = hashlib.sha256(changes.encode())
    for name in sorted(n for n in untracked if n):
        digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    base = commit.removesuffix("-dirty")
    dirty = bool(changes) or any(untracked)
    return CodeVersion(commit, f"{base}+{digest.hexdigest()[:12]}" if dirty else base, files)


def package_hash(package_dir: Path = PACKAGE_DIR) -> str:
    """A hash of the package's source and data files (not caches): equal hashes, equal code."""
    digest = hashlib.sha256()
    for path in sorted(p for p in package_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"):
        digest.update(str(path.relative_to(package_dir)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[f"{name}_version"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[f"{name}_version"] = ""
    return versions


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """A readable name of the device a trial ran on, e.g. `cuda: NVIDIA H100 80GB HBM3`."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {cpu_model()} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def provenance(device: torch.device) -> dict[str, str]:
    """Where a trial runs: device, software and host. The code version is the driver's
    (`code_version`), captured once per suite: a worker on another node may have no git checkout."""
    return {
        "device": device_name(device),
        "python_version": platform.python_version(),
        "hostname": socket.gethostname(),
        "cuda_version": torch.version.cuda or "",
        **package_versions(),
    }
