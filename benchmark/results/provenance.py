"""Where a number came from: code version, software, hardware (AlgoPerf saves this with every trial),
recorded when a trial runs and read back for a report.

Recording: `code_version` (captured once per suite by the driver), `provenance(device)` (each
trial's device, software and host), `snapshot_package` (the code shipped to the trials).

Reading back: a suite whose trials ran on different code, devices or data is not one experiment: its
comparisons may measure the difference between two commits or two machines as much as between two
nets. `provenance_table` lists one code version per trial (runs.csv's ``code_version`` where a
writer records one, else ``git_commit``) and `mixed_provenance` / `provenance_summary` say when a
suite mixes them. Trials still pending never ran and are left out.
"""

from __future__ import annotations

import hashlib
import platform
import shutil
import socket
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from benchmark import hardware

if TYPE_CHECKING:
    import pandas as pd

    from benchmark.results.read import Results

PACKAGES = ("torch", "torchvision", "numpy", "ray", "ffcv")
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the `benchmark` package: the code a trial runs


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


# ------------------------------------------------------------------------------ reading it back

CODE_COLUMNS = ("code_version", "git_commit")  # the first one present and filled wins, trial by trial
_SHORT = 12  # characters of a commit hash shown; runs.csv holds the whole one


def recorded_code_version(runs: pd.DataFrame) -> pd.Series:
    """The code version each trial recorded ('' where none), commit hashes shortened to 12 characters.

    Two forms mark uncommitted changes: a ``git_commit`` ending in '-dirty' (the exact code is not
    known) and a ``code_version`` of 'commit+hash' (the hash of those changes: equal hashes, equal code).
    """
    import pandas as pd  # here: trials record provenance without pandas; only its readers need it

    version = pd.Series("", index=runs.index, dtype=object)
    for column in reversed([c for c in CODE_COLUMNS if c in runs]):
        filled = runs[column].astype(str).str.strip()
        version = filled.where(filled != "", version)
    return version.map(_short)


def _short(version: str) -> str:
    head, plus, changes = version.partition("+")
    head, dirty, _ = head.partition("-dirty")
    if len(head) == 40 and all(ch in "0123456789abcdef" for ch in head):
        head = head[:_SHORT]
    return head + dirty + plus + changes


def provenance_table(results: Results) -> pd.DataFrame:
    """One row per trial that ran: trial_id, variant, seed, code version, device, data source, started_at."""
    import pandas as pd

    runs = results.runs[results.runs["status"] != "pending"]
    columns = {"trial_id": runs["trial_id"], "variant": runs["variant"], "seed": runs["seed"],
               "code version": recorded_code_version(runs), "device": runs["device"], "data source": runs["data_source"]}
    if "started_at" in runs:
        columns["started at"] = runs["started_at"]
    return pd.DataFrame(columns).reset_index(drop=True)


def _counted(values: pd.Series) -> str:
    counts = values.value_counts()
    return ", ".join(f"{value or 'unrecorded'} ({n} trial{'s' if n > 1 else ''})" for value, n in counts.items())


def mixed_provenance(results: Results) -> list[str]:
    """One sentence per way the suite's trials differ in where they ran (empty when they do not)."""
    table = provenance_table(results)
    warnings = []
    versions = table["code version"]
    if versions.nunique() > 1:
        warnings.append(f"trials ran on {versions.nunique()} code versions: {_counted(versions)}")
    dirty = int(versions.str.endswith("-dirty").sum())
    if dirty:
        warnings.append(f"{dirty} of {len(table)} trials ran with uncommitted changes ('-dirty'): their exact code "
                        "is not recorded")
    changed = int(versions.str.contains("+", regex=False).sum())
    if changed:
        warnings.append(f"{changed} of {len(table)} trials ran with uncommitted changes ('commit+hash of the "
                        "changes')")
    if (versions == "").any():
        warnings.append(f"{int((versions == '').sum())} trials recorded no code version")
    if table["device"].nunique() > 1:
        warnings.append(f"trials ran on {table['device'].nunique()} devices: {_counted(table['device'])}")
    runs = results.runs[results.runs["status"] != "pending"]
    for column, label in (("data_source", "data sources"), ("split", "splits")):
        if column in runs and runs[column].nunique() > 1:
            warnings.append(f"trials used {runs[column].nunique()} {label}: {_counted(runs[column])} "
                            "(the verdicts judge each apart)")
    return warnings


def provenance_summary(results: Results) -> str:
    """One sentence for the scorecard: what differs, or that nothing does."""
    warnings = mixed_provenance(results)
    if warnings:
        return "Provenance differs: " + "; ".join(warnings) + "."
    table = provenance_table(results)
    if table.empty:
        return "Provenance: no trial has run yet."
    return (f"Provenance: all {len(table)} trials that ran share one code version ({table['code version'].iloc[0]}), "
            f"one device ({table['device'].iloc[0]}) and one data source ({table['data source'].iloc[0]}).")
