"""Thread ids in both PID namespaces, read from ``/proc`` while the capture records.

A containerised service's Go trace (M ids) and py-spy output (``native_thread_id``) speak the
container's thread ids; perf on the node speaks the host's. ``/proc/P/task/T/status`` has both:
``NSpid: <host tid> ... <innermost tid>``. The capture reads every thread of the process at
start, while it records (threads come and go: Go starts Ms on demand) and at the end, and
writes the chains into capture.json ``threads`` for the report (``correlator.threadmap``).
Austin and CRIU read the same field.
"""

from __future__ import annotations

import os
from pathlib import Path


def _chain(status: Path) -> list[int] | None:
    try:
        for line in status.read_text().splitlines():
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
    except (OSError, ValueError):
        return None
    return None


def other_namespace(pid: int, kind: str = "pid") -> bool | None:
    """Is *pid* in another *kind* namespace ("pid", "mnt") than we are? None: cannot tell."""
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}") != os.readlink(f"/proc/self/ns/{kind}")
    except OSError:
        return None


class ThreadIds:
    """The NSpid chains of one process's threads, gathered over the capture."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pid_chain = _chain(Path(f"/proc/{pid}/status")) or [pid]
        self.tasks: dict[int, list[int]] = {}
        self.looks = 0

    def look(self) -> None:
        """Read every thread's chain now (cheap: one small file per thread)."""
        self.looks += 1
        try:
            tasks = list(Path(f"/proc/{self.pid}/task").iterdir())
        except OSError:
            return
        for t in tasks:
            chain = _chain(t / "status")
            if chain:
                self.tasks[chain[0]] = chain

    def as_meta(self) -> dict:
        """capture.json ``threads``: host tid -> its chain, host first."""
        return {
            "source": "/proc/PID/task/*/status NSpid",
            "pid_chain": self.pid_chain,
            "pid_namespace": "other" if len(self.pid_chain) > 1 else "same",
            "looks": self.looks,
            "tasks": {str(k): v for k, v in sorted(self.tasks.items())},
        }
