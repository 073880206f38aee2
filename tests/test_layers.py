"""The package's architecture, kept by a real tool: import-linter's contracts in pyproject.toml
(the layers suite -> fleet -> training -> ...; no import circles inside a package), run here so
that `make test` fails on an import that points the wrong way."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the project's contracts, on the `benchmark` package found in `root`."""
    return subprocess.run([str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=root,
                          env={"PYTHONPATH": str(root), "PATH": str(LINT_IMPORTS.parent)},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    shutil.copytree(REPO / "benchmark", root / "benchmark", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_the_package_keeps_its_contracts() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def lint_with_an_import(package_copy: Path, module: str, imported: str) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the copy with `from benchmark... import ...` added inside a function of `module`
    (a file under the package), put back afterwards."""
    path = package_copy / "benchmark" / module
    original = path.read_text()
    path.write_text(original + f"\n\ndef _added():\n    {imported}  # noqa\n")
    try:
        return lint_imports(package_copy)
    finally:
        path.write_text(original)


def test_an_import_against_the_layers_breaks_them(package_copy: Path) -> None:
    # data sits below suite: a data module reaching up for the recipes is refused, even inside a function
    result = lint_with_an_import(package_copy, "data/cifar.py", "from benchmark.suite import recipes")
    assert result.returncode == 1
    assert "benchmark.data is not allowed to import benchmark.suite" in result.stdout
    assert "benchmark.data.cifar -> benchmark.suite.recipes" in result.stdout


def test_an_import_circle_inside_a_package_breaks_the_contract(package_copy: Path) -> None:
    # benchmark.data.loaders imports benchmark.data.device_loader; the way back closes a circle
    result = lint_with_an_import(package_copy, "data/device_loader.py", "from benchmark.data import loaders")
    assert result.returncode == 1
    assert "No import circles among the modules of a package BROKEN" in result.stdout


def test_the_top_level_shows_the_pipeline_in_at_most_twelve_entries() -> None:
    entries = sorted(p.name for p in (REPO / "benchmark").iterdir() if p.name != "__pycache__")
    assert entries == ["__init__.py", "__main__.py", "analysis", "data", "fleet", "hardware", "models", "report",
                       "results", "suite", "throughput", "training"]
