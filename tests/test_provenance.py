"""The code version a run records: the package's code, not the results the run writes beside it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmark.results.provenance import code_version


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A committed checkout shaped like the project's: a package folder, and results beside it."""
    (tmp_path / "benchmark").mkdir()
    (tmp_path / "benchmark" / "train.py").write_text("STEPS = 1\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "README.md").write_text("results\n")
    _git("init", "-q", cwd=tmp_path)
    _git("add", ".", cwd=tmp_path)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init", cwd=tmp_path)
    return tmp_path


def test_results_written_into_the_checkout_are_not_a_code_change(checkout: Path) -> None:
    """An interrupted `make run` in a clean clone leaves results/<suite>/ untracked (and may append to
    committed tables); its resume must see the same code, or it refuses without --allow-changes."""
    package = checkout / "benchmark"
    clean = code_version(package)
    assert "+" not in clean.code_version and not clean.git_commit.endswith("-dirty")
    (checkout / "results" / "degradation_cpu").mkdir()
    (checkout / "results" / "degradation_cpu" / "metrics.csv").write_text("trial_id,step\n")
    (checkout / "results" / "README.md").write_text("results, edited\n")
    (package / ".venv").symlink_to(checkout / "results")  # a linked folder in the package: not a file to hash
    assert code_version(package) == clean


def test_changes_to_the_package_change_the_code_version(checkout: Path) -> None:
    package = checkout / "benchmark"
    clean = code_version(package)
    (package / "train.py").write_text("STEPS = 2\n")
    edited = code_version(package)
    assert edited.git_commit.endswith("-dirty") and edited.code_version.startswith(clean.code_version + "+")
    (package / "train.py").write_text("STEPS = 1\n")
    (package / "planner.py").write_text("BUDGET = 30\n")  # a new, untracked module is code too
    added = code_version(package)
    assert added.code_version.startswith(clean.code_version + "+") and added.code_version != edited.code_version
    assert not added.git_commit.endswith("-dirty")  # git_commit names the commit; untracked files show in code_version
