"""How the report writes numbers: one place, so the scorecard and the tables read alike."""

from __future__ import annotations

import math


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: float | None, digits: int = 2) -> str:
    """``value`` to ``digits`` decimals; '—' when there is none."""
    return "—" if _missing(value) else f"{value:.{digits}f}"


def signed(value: float | None, digits: int = 2) -> str:
    """``value`` with its sign (a difference); '—' when there is none."""
    return "—" if _missing(value) else f"{value:+.{digits}f}"


def seed_stats(n: int, mean: float, std: float, low: float, high: float, digits: int = 2) -> str:
    """Statistics over seeds as every table of final errors shows them:
    '9.00 ± 0.50 (n=3, 8.50–9.50)'; '46.95 (n=1)' for one seed; '—' for none."""
    if n == 0:
        return "—"
    if n == 1:
        return f"{mean:.{digits}f} (n=1)"
    return f"{mean:.{digits}f} ± {std:.{digits}f} (n={n}, {low:.{digits}f}–{high:.{digits}f})"


def interval(low: float, high: float, digits: int = 2) -> str:
    """A 95% interval of a difference: '[+1.73, +6.27]'."""
    return f"[{low:+.{digits}f}, {high:+.{digits}f}]"
