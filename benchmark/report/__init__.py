"""Reports of a results folder: the paper's tables reproduced, figures, and what is missing.

``build_report(results_dir, out_dir=None)`` writes ``report.md``, a self-contained ``report.html``
and every figure as PNG and SVG; ``load_results`` reads and validates the tables alone. The
degradation diagnostics (gradient flow, layer responses) live in ``benchmark.report.diagnostics``
and need torch; importing this package does not import torch.
"""

from benchmark.report.build import build_report, default_out_dir
from benchmark.report.load import Results, load_results

__all__ = ["build_report", "default_out_dir", "load_results", "Results"]
