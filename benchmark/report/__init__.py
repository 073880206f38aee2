"""Reports of a results folder: a pure function of the tables (benchmark.results) and of what
benchmark.analysis decides; this package only renders.

``build_report(results_dir, out_dir=None, claims=None)`` writes ``report.md``, a self-contained
``report.html`` and every figure as PNG and SVG, with a scorecard of the paper's claims on top
(``scorecard``: the verdicts of ``benchmark.analysis.verdicts``, rendered); ``tables`` and
``figures`` hold the report's numbers and plots, ``render`` turns blocks into Markdown and HTML.

The names below are imported on first use: the CLI imports ``benchmark.report.cli`` to build its
parser for every command, and pandas + matplotlib + seaborn would add about a second to each.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["build_report", "default_out_dir"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("benchmark.report.build"), name)
    raise AttributeError(f"module 'benchmark.report' has no attribute {name!r}")
