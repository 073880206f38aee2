"""What a Ray trial process needs of Ray's checkpoints, for both kinds of trial: a single-process
Tune trial (`ray_trial.py`) and each rank of a data-parallel one (`ray_ddp.py`)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from benchmark.training.checkpoint import CheckpointError, read_payload
from benchmark.training.session import Restored


def node_name() -> str:
    import ray

    return f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}"


def restore_from(checkpoint: Any, set_aside: bool) -> Restored:
    """The payload of a Ray checkpoint (None: start at step 0). One that cannot be read starts the
    trial clean, said in the note; `set_aside` also moves it out of the way (one process only:
    the ranks of a data-parallel trial all read it)."""
    if checkpoint is None:
        return Restored(None)
    try:
        with checkpoint.as_directory() as directory:
            return Restored(read_payload(Path(directory), where=checkpoint.path))
    except CheckpointError as exc:
        if not set_aside:
            return Restored(None, f"{exc}; the trial restarts from step 0")
        target = f"{checkpoint.path}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}"
        try:
            checkpoint.filesystem.move(checkpoint.path, target)
            moved = f"set aside as {target}"
        except OSError as move_error:
            moved = f"could not be set aside ({move_error})"
        return Restored(None, f"{exc}; {moved}; the trial restarts from step 0")
