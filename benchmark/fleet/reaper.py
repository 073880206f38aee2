"""Stops a private Ray instance's processes when the driver that started them dies.

`ray.shutdown()` stops everything a private instance started, but a driver killed with SIGKILL
never calls it, and Ray's dashboard and runtime-env agents then live on as orphans (seen with Ray
2.60). The fleet starts this script beside each private instance, with the PIDs of the processes
`ray.init` started; it follows their descendants (workers, agents) and, when its stdin closes (the
driver exited, however it ended), kills those still alive. Only processes of that instance are
touched, each checked by PID and start time: other Ray instances on the machine are never hit.

Run as a plain script (`python reaper.py PID...`), so that it imports nothing of the package.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time


def _processes() -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, start time)} of every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (name) ": state, ppid, ..., starttime (22nd)
        table[int(entry)] = (int(fields[1]), fields[19])
    return table


def _descendants(roots: set[int], table: dict[int, tuple[int, str]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, stack = set(), [pid for pid in roots if pid in table]
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, []))
    return found


def watch(roots: set[int], poll_s: float = 0.5) -> None:
    tracked: dict[int, str] = {}  # pid -> start time, for every process of the instance ever seen
    while True:
        table = _processes()
        alive = {pid for pid, started in tracked.items() if pid in table and table[pid][1] == started}
        for pid in _descendants(roots | alive if not tracked else alive, table):
            tracked.setdefault(pid, table[pid][1])
        ready, _, _ = select.select([sys.stdin], [], [], poll_s)
        if ready and not os.read(sys.stdin.fileno(), 1024):
            break  # EOF: the driver is gone (exited, or killed: the kernel closed its end)
    time.sleep(poll_s)  # let a clean ray.shutdown() finish first
    table = _processes()
    for pid, started in tracked.items():
        if pid in table and table[pid][1] == started and pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)  # the agents ignore SIGTERM
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the driver's terminal is the driver's
    watch({int(pid) for pid in sys.argv[1:]})
