"""What a Ray trial process needs of Ray's checkpoints, for both kinds of trial: a single-process
Tune trial (`ray_trial.py`) and each rank of a data-parallel one (`ray_ddp.py`).

Tune and Train keep a trial's last two checkpoints side by side (`checkpoint_000012`, or Train's
`checkpoint_<date and time>`: either way the newest sorts last), so that one that cannot be read,
or does not fit the trial, is not the end of it: the trial falls back to the one before and says so.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmark.training.checkpoint import PAYLOAD_FILE, CheckpointError, read_payload
from benchmark.training.session import Restored

# Tune's `checkpoint_000012` and Train's `checkpoint_2026-12-04_10-00-00.123456`; not one set aside.
CHECKPOINT_NAME = re.compile(r"checkpoint_[0-9._-]+")


def node_name() -> str:
    import ray

    return f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}"


def checkpoints_beside(filesystem: Any, path: str) -> list[str]:
    """The checkpoints in `path`'s folder (a trial's, in its storage `filesystem`), newest first,
    `path` itself included if it is there."""
    import pyarrow.fs

    parent = path.rstrip("/").rpartition("/")[0]
    try:
        entries = filesystem.get_file_info(pyarrow.fs.FileSelector(parent, allow_not_found=True))
    except OSError:
        return []
    names = [info.base_name for info in entries
             if info.type == pyarrow.fs.FileType.Directory and CHECKPOINT_NAME.fullmatch(info.base_name)]
    return [f"{parent}/{name}" for name in sorted(names, reverse=True)]


def restore_from(checkpoint: Any, set_aside: bool, accept: Callable[[dict[str, Any]], None] | None = None) -> Restored:
    """The payload of a Ray checkpoint (None: start at step 0). One that cannot be read, or that
    `accept` refuses (a `CheckpointError`: it does not fit the trial), is named in the note and the
    trial falls back to the checkpoint before it, else starts clean; `set_aside` also moves the bad
    one out of the way (one process only: the ranks of a data-parallel trial all read it)."""
    if checkpoint is None:
        return Restored(None)
    notes = []
    older = [path for path in checkpoints_beside(checkpoint.filesystem, checkpoint.path) if path < checkpoint.path]
    for candidate in [checkpoint, *(type(checkpoint)(path, filesystem=checkpoint.filesystem) for path in older)]:
        try:
            payload = _read(candidate, accept)
        except CheckpointError as exc:
            notes.append(f"{exc}{_set_aside(candidate) if set_aside else ''}")
            continue
        if notes:
            notes.append(f"resumed from the checkpoint before it, {candidate.path}")
        return Restored(payload, "; ".join(notes))
    return Restored(None, "; ".join([*notes, "the trial restarts from step 0"]))


def _read(checkpoint: Any, accept: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    with checkpoint.as_directory() as directory:
        payload = read_payload(Path(directory), where=f"{checkpoint.path}/{PAYLOAD_FILE}")
    if accept is not None:
        try:
            accept(payload)
        except CheckpointError as exc:
            raise CheckpointError(f"{checkpoint.path}/{PAYLOAD_FILE}: {exc}") from None
    return payload


def _set_aside(checkpoint: Any) -> str:
    target = f"{checkpoint.path}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        checkpoint.filesystem.move(checkpoint.path, target)
        return f"; set aside as {target}"
    except OSError as move_error:
        return f"; could not be set aside ({move_error})"
