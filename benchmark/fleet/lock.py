"""One `run` per results folder: a lock file holding the host, PID and start time of its holder.

Two drivers on one folder would both train the same trials and write the same tables. The lock is
an exclusive `flock` on `_state/run.lock`, held for the whole run: the kernel releases it when the
holder exits or is killed, so a lock left by a dead driver is stale by construction and the next
run takes it (and says so). The file's text only names the holder for the error message.
Note: `flock` spans hosts only on file systems that implement it (local disks, NFSv4, Lustre);
on others, each host sees only its own runs.

The lock is the first thing a run takes (before Ray, before the data), so a second run is refused
at once. A run that created the folder and then failed its checks before writing anything leaves
no folder behind: bad input writes nothing.
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
        self._created: Path | None = None  # the outermost folder this lock created, if any

    def __enter__(self) -> "FolderLock":
        missing = [p for p in (self.path.parent, *self.path.parent.parents) if not p.exists()]
        self._created = missing[-1] if missing else None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask decides, as for every result file
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            self._created = None  # the holder's folder, not ours
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
            if self._created is not None and _only_holds(self._created, self.path):
                _remove_tree_of_empty_folders(self._created, self.path)  # before unlocking: no run can be inside
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _only_holds(folder: Path, lock_file: Path) -> bool:
    """Whether `folder` holds nothing but `lock_file` and empty folders."""
    return all(path == lock_file or path.is_dir() for path in folder.rglob("*"))


def _remove_tree_of_empty_folders(folder: Path, lock_file: Path) -> None:
    lock_file.unlink(missing_ok=True)
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        path.rmdir()  # empty by now (rmdir never removes a folder that is not)
    folder.rmdir()


def _holder(fd: int) -> dict[str, object]:
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}
