"""Reports of a results folder: the paper's tables reproduced, figures, and what is missing.

``build_report(results_dir, out_dir=None)`` writes ``report.md``, a self-contained ``report.html``
and every figure as PNG and SVG; ``load_results`` reads and validates the tables alone. The
degradation diagnostics (gradient flow, layer responses) live in ``benchmark.report.diagnostics``.

The names below are imported on first use: the CLI imports ``benchmark.report.cli`` to build its
parser for every command, and pandas + matplotlib + seaborn would add about a second to each.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["build_report", "default_out_dir", "load_results", "Results"]

_HOMES = {"build_report": "benchmark.report.build", "default_out_dir": "benchmark.report.build",
          "load_results": "benchmark.report.load", "Results": "benchmark.report.load"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'benchmark.report' has no attribute {name!r}")
