"""The temporary folders that hold the frozen copy of the package a run ships to its trials.

Each run's copy lives in `benchmark-code-<driver pid>-<random>` under the system's temporary
folder and goes when the run ends; a driver killed with SIGKILL cannot remove its own, so each new
run sweeps the ones whose driver is gone (never one of a live process, nor another user's).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

PREFIX = "benchmark-code-"
OWNED = re.compile(rf"{PREFIX}(\d+)-")


def new_code_dir() -> tempfile.TemporaryDirectory[str]:
    """A fresh folder for this run's copy, named by this process, after sweeping stale ones."""
    sweep_stale_code_dirs(Path(tempfile.gettempdir()))
    return tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-")


def sweep_stale_code_dirs(parent: Path) -> list[Path]:
    """Remove this user's code folders in `parent` whose driver process no longer exists; returns them."""
    removed = []
    for folder in parent.glob(f"{PREFIX}*"):
        owner = OWNED.match(folder.name)
        try:
            mine = folder.is_dir() and not folder.is_symlink() and folder.stat().st_uid == os.getuid()
        except OSError:
            continue
        if owner and mine and not _alive(int(owner.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True
