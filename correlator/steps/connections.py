"""Step: the connections (a process's fd between its open and its close) perf's syscalls
worked on, and the connection of every interval."""

from __future__ import annotations

import pandas as pd

from ..connections import connections as connections_of
from ..schema import CONNECTIONS
from ..step import step
from ..tables import Tables

#: what connections_of reads (the intervals have many more columns)
_READ = ("pid", "tid", "start", "end", "name", "fd", "ret", "stack_id")


@step(
    reads={"intervals": ("kind", *_READ)},
    adds={
        "intervals": ("conn",),
        "connections": tuple(c.name for c in CONNECTIONS),
        "conn_syscalls": ("tid", "start", "end"),
    },
)
def connections(t: Tables) -> dict:
    """``connections`` (``connections.connections``), ``intervals.conn`` (-1: none) and
    ``conn_syscalls``: tid, start, end of every syscall on a connection."""
    iv = t.intervals
    if iv is None:
        return {"conn_syscalls": pd.DataFrame(columns=["tid", "start", "end"])}
    is_sys = (iv["kind"] == "os.syscall").to_numpy()
    sysc = iv.loc[is_sys, [c for c in _READ if c in iv.columns]]
    conns, conn_of = connections_of(sysc)
    conn = pd.Series(-1, index=iv.index, dtype="int64")
    if iv.index.is_unique:
        conn[is_sys] = conn_of
    else:
        conn.loc[sysc.index] = conn_of
    return {
        "intervals": iv.assign(conn=conn),
        "connections": conns,
        "conn_syscalls": sysc.loc[conn_of >= 0, ["tid", "start", "end"]],
    }
