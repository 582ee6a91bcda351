"""The per-record columns both perf readers fill: the one form between a perf input and the
canonical tables.

The text parser (``perf_script``) fills them from ``perf script`` lines, the perf.data
reader (``perf_data``) from the binary records; ``perf_records.tables.build_tables`` makes
the canonical tables from them alone. Neither reader imports the other, and what the two
must agree on is said here once: the syscalls whose first argument is a file descriptor,
the syscall directions, the wakeup tracepoints, and how a comm is held (``comm_name``).

One row per record ``perf script`` prints (samples, COMM, FORK, EXIT, LOST), with typed
side tables whose ``row`` is the global row number:

    sys      dir (SYS_ENTER / SYS_EXIT), raw (raw_syscalls), nr, name (code), fd, ret
    switch   prev (pid), state (code), next (pid)
    wake     pid (woken), cpu (target), how (WAKE_HOW code)
    signal   how (SIGNAL_HOW code), sig, code, res (generate's; NO_RESULT for deliver or
             when not printed), target (generate's pid: the receiver; -1 for deliver,
             whose receiver is the record's thread)
    task     (row, kind, pid, tid, extra) for comm / fork / exit / lost
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

import numpy as np

from ..columns import Interner, whole
from .stacks import StackTable

#: Syscalls whose first argument is a file descriptor (for args.fd).
FD_SYSCALLS = frozenset(
    {
        "read",
        "write",
        "pread64",
        "pwrite64",
        "readv",
        "writev",
        "recvfrom",
        "sendto",
        "recvmsg",
        "sendmsg",
        "recvmmsg",
        "sendmmsg",
        "connect",
        "accept",
        "accept4",
        "close",
        "fsync",
        "fdatasync",
        "ioctl",
        "fcntl",
        "epoll_wait",
        "epoll_pwait",
        "epoll_pwait2",
        "epoll_ctl",
        "shutdown",
        "getsockopt",
        "setsockopt",
        "sendfile",
        "splice",
        "lseek",
        "fstat",
        "newfstatat",
        "getdents64",
        "bind",
        "listen",
    }
)
SYS_ENTER, SYS_EXIT = 1, 2

#: the wakeup tracepoints, in the order of their ``how`` codes; WAKE_HOW: the names the
#: os.wakeup instants carry. "waking" fires in the waker's context; "wakeup" may fire on the
#: woken thread's CPU, in an IPI, where perf's "current" thread is not the waker
WAKE_EVENTS = ("sched:sched_wakeup", "sched:sched_waking", "sched:sched_wakeup_new")
WAKE_HOW = ("wakeup", "waking", "wakeup_new")

#: the signal tracepoints, in the order of their ``how`` codes; SIGNAL_HOW: the os.signal
#: instants' ``signal`` column. signal_generate fires in the sender's context (the payload's
#: pid is the receiver), signal_deliver in the receiver's, as it takes the signal
SIGNAL_EVENTS = ("signal:signal_generate", "signal:signal_deliver")
SIGNAL_HOW = ("generate", "deliver")
#: ``signal.res`` when there is none: any int the payload prints is a result, -1 included
NO_RESULT = -(1 << 63)


def signal_name(sig: int) -> str:
    """The name an os.signal instant carries: Python's for the signals it knows (SIGPIPE,
    SIGCHLD, ...), ``SIG<n>`` for the rest (real-time signals past SIGRTMIN, damage), so that
    both readers name a number the same way whatever it is."""
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"SIG{sig}"


def comm_name(comm: str) -> str:
    """A thread's comm as the tables hold it: without surrounding whitespace (``perf
    script`` pads it to a column, so neither reader keeps a comm's own edge spaces)."""
    return comm.strip()


@dataclass
class Records:
    """Columns accumulated over all chunks (one row per record perf script prints).

    ``position``: where the record is in its input, a line number of the text or a byte
    offset of the perf.data file (for messages and checks)."""

    position: list[np.ndarray] = field(default_factory=list)
    tid: list[np.ndarray] = field(default_factory=list)
    pid: list[np.ndarray] = field(default_factory=list)
    cpu: list[np.ndarray] = field(default_factory=list)
    time: list[np.ndarray] = field(default_factory=list)
    event: list[np.ndarray] = field(default_factory=list)
    comm: list[np.ndarray] = field(default_factory=list)
    stack: list[np.ndarray] = field(default_factory=list)
    # typed side tables: row numbers are global (over all chunks)
    sys: dict[str, list[np.ndarray]] = field(
        default_factory=lambda: {k: [] for k in ("row", "dir", "raw", "nr", "name", "fd", "ret")}
    )
    switch: dict[str, list[np.ndarray]] = field(
        default_factory=lambda: {k: [] for k in ("row", "prev", "state", "next")}
    )
    wake: dict[str, list[np.ndarray]] = field(
        default_factory=lambda: {k: [] for k in ("row", "pid", "cpu", "how")}
    )  # how: WAKE_HOW code (which tracepoint)
    signal: dict[str, list[np.ndarray]] = field(
        default_factory=lambda: {k: [] for k in ("row", "how", "sig", "code", "res", "target")}
    )  # how: SIGNAL_HOW code
    task: list[tuple] = field(default_factory=list)  # (row, kind, pid, tid, extra)
    other_rows: list[np.ndarray] = field(default_factory=list)
    frac_digits: set[int] = field(default_factory=set)
    rows: int = 0
    garbage: int = 0
    garbage_lines: list[int] = field(default_factory=list)
    has_time: bool = True

    def column(self, name: str) -> np.ndarray:
        """The whole column. Its parts are replaced by the one array (no second copy kept;
        a single part is returned as it is, not copied): callers read it, never write it."""
        return whole(getattr(self, name))

    def side(self, table: str) -> dict[str, np.ndarray]:
        """A side table's columns (as ``column``: read-only for the caller)."""
        return {k: whole(v) for k, v in getattr(self, table).items()}

    def take_side(self, table: str) -> dict[str, np.ndarray]:
        """A side table's columns, handed over: the records keep none of them, so the caller
        may release them as it goes."""
        cols = self.side(table)
        for v in getattr(self, table).values():
            v.clear()
        return cols


@dataclass
class Registries:
    """The distinct values behind the records' codes (0-based), and the stacks (1-based)."""

    events: Interner[str] = field(default_factory=Interner)
    comms: Interner[str] = field(default_factory=Interner)
    states: Interner[str] = field(default_factory=Interner)
    syscalls: Interner[str] = field(default_factory=Interner)
    stacks: StackTable = field(default_factory=StackTable)
