"""This machine's cache folder: decoded datasets, the CPU's measured peak, whatever is slow to make
and safe to make again."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/resnet-benchmark`` (``~/.cache/resnet-benchmark`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "resnet-benchmark"
