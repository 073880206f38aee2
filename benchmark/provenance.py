"""Where a number came from: code version, software, hardware (AlgoPerf saves this with every trial)."""

from __future__ import annotations

import hashlib
import platform
import shutil
import socket
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch

from benchmark import hardware

PACKAGES = ("torch", "torchvision", "numpy", "ray", "ffcv")
PACKAGE_DIR = Path(__file__).resolve().parent  # the `benchmark` package: the code a trial runs


def git_commit(cwd: Path | None = None) -> str:
    """The checkout's commit, with `-dirty` when tracked files under `cwd` (the package: the code a
    trial runs) differ from it; "" outside git. Results and reports written into the checkout are
    not code: counting them would make every run's own output look like a code change."""
    cwd = cwd or PACKAGE_DIR
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
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


def code_version(package_dir: Path = PACKAGE_DIR, shipped: Path | None = None) -> CodeVersion:
    """The code of `package_dir`'s checkout; `shipped`: the copy of the package the trials will
    run (`snapshot_package`), whose files the package hash is taken of."""
    commit = git_commit(package_dir)
    files = package_hash(shipped or package_dir)
    if not commit:
        return CodeVersion("", f"package:{files}", files)
    try:  # the package's changes only (see git_commit); paths relative to the package
        changes = _git(["diff", "HEAD", "--binary", "--", "."], package_dir)
        untracked = _git(["ls-files", "--others", "--exclude-standard", "-z", "--", "."], package_dir).split("\0")
    except (OSError, subprocess.SubprocessError):
        return CodeVersion(commit, f"package:{files}", files)
    untracked = sorted(n for n in untracked if n and (package_dir / n).is_file())  # not a linked folder
    digest = hashlib.sha256(changes.encode())
    for name in untracked:
        digest.update(name.encode() + b"\0" + (package_dir / name).read_bytes())
    base = commit.removesuffix("-dirty")
    dirty = bool(changes) or any(untracked)
    return CodeVersion(commit, f"{base}+{digest.hexdigest()[:12]}" if dirty else base, files)


def snapshot_package(parent: Path, package_dir: Path = PACKAGE_DIR) -> Path:
    """Copy the package (without caches) into `parent`: what a run ships to its trials, frozen at
    its start, so that editing the checkout during a long suite cannot reach a trial's retry."""
    return Path(shutil.copytree(package_dir, parent / package_dir.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")))


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


def provenance(device: torch.device) -> dict[str, str]:
    """Where a trial runs: device, software and host. The code version is the driver's
    (`code_version`), captured once per suite: a worker on another node may have no git checkout."""
    machine = hardware.identify(device)
    identity = machine.columns()
    return {
        "device": machine.describe(),
        **{column: identity[column] for column in hardware.RUN_HARDWARE_COLUMNS if column in identity},
        # the peaks known without measuring here (datasheet, or this machine's cached probe): a
        # trial must not probe while other trials load the cores
        **{f"peak_tflops_{p}": _number(hardware.peak_tflops(machine, p, probe=False)) for p in ("fp32", "bf16")},
        "python_version": platform.python_version(),
        "hostname": socket.gethostname(),
        "cuda_version": torch.version.cuda or "",
        **package_versions(),
    }


def _number(value: float | None) -> str:
    return f"{value:.4f}" if value else ""
