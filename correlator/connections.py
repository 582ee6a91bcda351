"""Connections: a file descriptor of one process between its opening and its close.

fd numbers are reused (a closed socket's number goes to the next one), so a connection is an
fd's lifetime: from ``socket`` / ``accept`` (which return it) to ``close`` when perf saw them,
else from its first to its last use in the recording. Every syscall with an fd argument is a
use. The correlator uses connections to attribute a blocking syscall whose callchain was cut
short to the library whose calls used that connection (evidence ``fd``), and the findings use
them to tell which goroutines and threads shared one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..parsers.columns import str_values
from ..parsers.model import column

#: syscalls that return a new fd
OPENERS = ("socket", "accept", "accept4")
#: syscalls that say an fd is a socket
SOCKET_CALLS = frozenset(
    {
        "socket",
        "accept",
        "accept4",
        "connect",
        "recvfrom",
        "sendto",
        "recvmsg",
        "sendmsg",
        "getsockopt",
        "setsockopt",
        "shutdown",
        "bind",
        "listen",
    }
)
_OPEN, _USE, _CLOSE = 0, 1, 2


def connections(syscalls: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """(connections, the connection of each syscall row: -1 when it has no fd).

    *syscalls*: perf ``os.syscall`` intervals with start/end (reference clock), pid, tid,
    name, fd, ret. Connections: conn, pid, fd, start_ns, end_ns, opened (seen opening),
    closed (seen closing), socket (a socket call used it), syscalls (how many used it).
    """
    n = len(syscalls)
    fd = column(syscalls, "slices", "fd").fillna(-1).astype("int64").to_numpy()
    ret = column(syscalls, "slices", "ret").fillna(-1).astype("int64").to_numpy()
    pid = syscalls["pid"].to_numpy(np.int64)
    start, end = syscalls["start"].to_numpy(np.int64), syscalls["end"].to_numpy(np.int64)
    opens = _named(syscalls["name"], OPENERS) & (ret >= 0)
    closes = _named(syscalls["name"], ("close",)) & (fd >= 0)
    uses = (fd >= 0) & ~closes
    rows = np.arange(n)
    ev_row = np.concatenate([rows[opens], rows[uses], rows[closes]])
    ev_fd = np.concatenate([ret[opens], fd[uses], fd[closes]])
    ev_t = np.concatenate([end[opens], start[uses], start[closes]])
    ev_kind = np.concatenate(
        [np.full(opens.sum(), _OPEN), np.full(uses.sum(), _USE), np.full(closes.sum(), _CLOSE)]
    )
    ev_pid = pid[ev_row]
    order = np.lexsort((ev_kind, ev_t, ev_fd, ev_pid))
    ev_row, ev_fd, ev_t, ev_kind, ev_pid = (
        a[order] for a in (ev_row, ev_fd, ev_t, ev_kind, ev_pid)
    )
    m = len(ev_row)
    of_row = np.full(n, -1, np.int64)
    if not m:
        empty = pd.DataFrame({k: pd.Series(dtype=t) for k, t in _COLUMNS.items()})
        return empty, of_row
    first = np.ones(m, bool)
    first[1:] = (ev_pid[1:] != ev_pid[:-1]) | (ev_fd[1:] != ev_fd[:-1])
    after_close = np.zeros(m, bool)
    after_close[1:] = ev_kind[:-1] == _CLOSE
    begins = first | after_close | (ev_kind == _OPEN)
    # an open right after a close of the same fd starts one connection, not two
    conn = np.cumsum(begins) - 1
    is_sock = _named(syscalls["name"], SOCKET_CALLS)[ev_row]
    g = pd.DataFrame(
        {"conn": conn, "pid": ev_pid, "fd": ev_fd, "t": ev_t, "kind": ev_kind, "sock": is_sock}
    ).groupby("conn", sort=True)
    out = pd.DataFrame(
        {
            "conn": np.arange(conn[-1] + 1),
            "pid": g["pid"].first().to_numpy(),
            "fd": g["fd"].first().to_numpy(),
            "start_ns": g["t"].first().to_numpy(),
            "end_ns": g["t"].last().to_numpy(),
            "opened": (g["kind"].first() == _OPEN).to_numpy(),
            "closed": (g["kind"].last() == _CLOSE).to_numpy(),
            "socket": g["sock"].any().to_numpy(),
            "syscalls": g["kind"].size().to_numpy(),
        }
    )
    use = ev_kind != _OPEN  # the opening syscall (socket, accept) carries no fd argument
    of_row[ev_row[use]] = conn[use]
    of_row[ev_row[ev_kind == _OPEN]] = conn[ev_kind == _OPEN]
    return out, of_row


def user_ids(goid: np.ndarray, tid: np.ndarray) -> np.ndarray:
    """Who made each use of a connection, as one id: the goroutine (>= 0) when a Go trace
    says, else the thread as -tid - 1 (never a goroutine id)."""
    goid = np.asarray(goid, np.int64)
    return np.where(goid >= 0, goid, -np.asarray(tid, np.int64) - 1)


def _named(names: pd.Series, wanted) -> np.ndarray:
    """Which rows' syscall name is one of *wanted*: decided once per category of a
    categorical column (comparing a million strings costs tens of milliseconds)."""
    if isinstance(names.dtype, pd.CategoricalDtype):
        hit = np.array([str(c) in wanted for c in names.cat.categories] + [False])
        return hit[names.cat.codes.to_numpy()]  # code -1 (null) takes the last: False
    return np.isin(str_values(names), list(wanted))


_COLUMNS = {
    "conn": "int64",
    "pid": "int64",
    "fd": "int64",
    "start_ns": "int64",
    "end_ns": "int64",
    "opened": "bool",
    "closed": "bool",
    "socket": "bool",
    "syscalls": "int64",
}
