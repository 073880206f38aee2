"""One `run` per results folder: a lock file holding the host, PID and start time of its holder.

Two drivers on one folder would both train the same trials and write the same tables. The lock is
an exclusive `flock` on `_state/run.lock`, held for the whole run: the kernel releases it when the
holder exits or is killed, so a lock left by a dead driver is stale by construction and the next
run takes it (and says so). The file's text only names the holder for the error message.
Note: `flock` spans hosts only on file systems that implement it (local disks, NFSv4, Lustre);
on others, each host sees only its own runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from benchmark import ResultsError


class FolderLock:
    """`with FolderLock(folder):` holds the folder's run lock, or raises a one-line `ResultsError`."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / "_state" / "run.lock"
        self._fd: int | None = None
        self.stale_holder: dict[str, object] | None = None  # a dead holder's record, when we took over

    def __enter__(self) -> "FolderLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise ResultsError(
                f"{self.path.parent.parent}: another run is using this results folder "
                f"(host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, since {holder.get('since', '?')}); "
                "wait for it to finish, or use --results DIR"
            ) from None
        previous = _holder(fd)
        if previous:  # the file outlived its holder: a driver that was killed
            self.stale_holder = previous
        record = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # an empty file: released cleanly
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _holder(fd: int) -> dict[str, object]:
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}
