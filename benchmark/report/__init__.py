"""Reports of a results folder: the paper's tables reproduced, figures, and what is missing.

``build_report(results_dir, out_dir=None, claims=None)`` writes ``report.md``, a self-contained
``report.html`` and every figure as PNG and SVG, with a scorecard of the paper's claims on top;
``load_results`` reads and validates the tables alone; ``load_claims`` reads the claims
(``benchmark/reference/claims.yaml``) and ``evaluate_claims(results, claims)`` judges them. The
degradation diagnostics (gradient flow, layer responses) live in ``benchmark.report.diagnostics``.

The names below are imported on first use: the CLI imports ``benchmark.report.cli`` to build its
parser for every command, and pandas + matplotlib + seaborn would add about a second to each.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["build_report", "default_out_dir", "evaluate_claims", "load_claims", "load_results", "Results"]

_HOMES = {"build_report": "benchmark.report.build", "default_out_dir": "benchmark.report.build",
          "load_results": "benchmark.report.load", "Results": "benchmark.report.load",
          "load_claims": "benchmark.report.claims", "evaluate_claims": "benchmark.report.verdicts"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'benchmark.report' has no attribute {name!r}")
