"""Step: the library's calls and the connections they used, proven from every source at
once.

A syscall is the library's when its callchain passes through the library or it ran inside
a cgo call named as one; the connections such syscalls used are the library's on that
thread; and a cgo call whose name says nothing (a C shim) is the library's when a syscall
inside it is (perf-callchain) or works on such a connection (fd)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...parsers.columns import str_values
from ...parsers.model import column
from ..calls import library_spans
from ..joins import holding_span
from ..schema import CONN_USE
from ..step import step
from ..tables import Tables


@step(
    reads={
        "intervals": ("kind", "pid", "tid", "start", "end", "name", "stack_id", "conn", "ret"),
        "cgo": ("*",),
        "lib_stacks": (),
        "runtime_stacks": (),
        "library": (),
        "tolerance_ns": (),
    },
    adds={
        "calls": ("*", "library", "evidence"),
        "lib_conns": (),
        "conn_use": tuple(c.name for c in CONN_USE),
    },
    release=True,
)
def library_calls(t: Tables) -> dict:
    """``calls``: the cgo calls that are library calls, with ``library`` and ``evidence``;
    ``lib_conns``: {(connection, tid): the library function seen on it}; ``conn_use``: who
    used each connection inside library calls."""
    cgo, lib = t.cgo, t.library
    if t.intervals is None:
        none = np.zeros(len(cgo), bool)
        return {"calls": library_spans(cgo, none, none, lib) if len(cgo) else cgo}
    s = _LibrarySyscalls.of(t)
    by_chain = np.zeros(len(cgo), bool)
    by_fd = np.zeros(len(cgo), bool)
    by_chain[s.span[s.chain & (s.span >= 0)]] = True
    # a cgo call working on a library connection is a library call, whichever thread the
    # goroutine runs on (goroutines move between threads; the connection belongs to the
    # process)
    on_lib_conn = (s.conn >= 0) & np.isin(s.conn, np.unique(s.conn[s.lib])) & s.not_runtime
    by_fd[s.span[on_lib_conn & (s.span >= 0)]] = True
    calls = library_spans(cgo, by_chain, by_fd, lib) if len(cgo) else cgo
    # name each library connection (per thread) by what used it: the library function a
    # callchain showed, else the call the syscall ran in
    lib_conns = connection_names(
        s.conn[s.lib],
        s.tid[s.lib],
        s.stack_id[s.lib],
        s.span[s.lib],
        t.lib_stacks,
        cgo["call"] if len(cgo) else None,
    )
    kept = np.zeros(len(cgo) + 1, bool)
    if len(cgo):
        kept[:-1] = (cgo["match"].cat.codes.to_numpy() >= 0) | by_chain | by_fd
    return {"calls": calls, "lib_conns": lib_conns, "conn_use": _conn_use(s, cgo, kept)}


@dataclass
class _LibrarySyscalls:
    """perf's syscalls, with what tells whether each is the library's: its connection, the
    cgo call holding it (``span``: row of cgo, -1), a callchain through the library
    (``chain``), not the Go runtime's own (``not_runtime``), the library's (``lib``)."""

    sysc: pd.DataFrame
    tid: np.ndarray
    stack_id: np.ndarray
    conn: np.ndarray
    span: np.ndarray
    chain: np.ndarray
    not_runtime: np.ndarray
    lib: np.ndarray

    @classmethod
    def of(cls, t: Tables) -> _LibrarySyscalls:
        iv, cgo = t.intervals, t.cgo
        is_sys = (iv["kind"] == "os.syscall").to_numpy()
        cols = ["pid", "tid", "start", "end", "name", "stack_id", "conn", "ret"]
        sysc = iv.loc[is_sys, [c for c in cols if c in iv.columns]]
        conn = sysc["conn"].to_numpy(np.int64)
        tid = sysc["tid"].to_numpy(np.int64)
        sid = sysc["stack_id"].fillna(0).astype("int64").to_numpy()
        chain = np.isin(sid, list(t.lib_stacks))
        not_rt = ~(np.isin(sid, list(t.runtime_stacks)) & ~chain)
        start, end = sysc["start"].to_numpy(np.int64), sysc["end"].to_numpy(np.int64)
        span = holding_span(tid, start, end, cgo, t.tolerance_ns)
        named = (cgo["match"].cat.codes.to_numpy() >= 0) if len(cgo) else np.zeros(0, bool)
        in_named = (span >= 0) & (named[np.maximum(span, 0)] if len(cgo) else False)
        lib = (chain | in_named) & not_rt & (conn >= 0)
        return cls(sysc, tid, sid, conn, span, chain, not_rt, lib)


def _conn_use(s: _LibrarySyscalls, cgo: pd.DataFrame, kept: np.ndarray) -> pd.DataFrame:
    """One row per syscall on a connection made inside a library call (a cgo call kept as
    one, or a callchain through the library), with who made it and the call's window."""
    in_call = (kept[np.where(s.span >= 0, s.span, len(cgo))] | s.chain) & s.not_runtime
    rows = np.flatnonzero(in_call & (s.conn >= 0))
    sp = s.span[rows]
    has_span = sp >= 0
    at = np.maximum(sp, 0)
    start = s.sysc["start"].to_numpy(np.int64)[rows]
    c_start, c_end = start, s.sysc["end"].to_numpy(np.int64)[rows]
    goid = np.full(len(rows), -1, np.int64)
    if len(cgo):
        c_start = np.where(has_span, cgo["start"].to_numpy(np.int64)[at], c_start)
        c_end = np.where(has_span, cgo["end"].to_numpy(np.int64)[at], c_end)
        goid = np.where(has_span, cgo["goid"].fillna(-1).astype("int64").to_numpy()[at], -1)
    return pd.DataFrame(
        {
            "conn": s.conn[rows],
            "pid": s.sysc["pid"].to_numpy(np.int64)[rows],
            "tid": s.tid[rows],
            "goid": goid,
            "call_start": c_start,
            "call_end": c_end,
            "syscall": str_values(s.sysc["name"])[rows],
            "start": start,
            "ret": column(s.sysc, "slices", "ret").fillna(0).astype("int64").to_numpy()[rows],
        }
    )


def _key(conn: np.ndarray, tid: np.ndarray) -> np.ndarray:
    return (conn.astype(np.int64) << 32) | (tid.astype(np.int64) & 0xFFFFFFFF)


def connection_names(
    conn: np.ndarray,
    tid: np.ndarray,
    stack_id: np.ndarray,
    span: np.ndarray,
    lib_stacks: dict[int, str],
    call_of_span: pd.Series | None,
) -> dict[tuple[int, int], str]:
    """{(connection, tid): the library function that used it}: per syscall, the function its
    callchain shows, else the call it ran in (*call_of_span*: the cgo calls' names); per
    connection and thread the last one named ("" when none was)."""
    if not len(conn):
        return {}
    u, inv = np.unique(stack_id, return_inverse=True)
    name = np.array([lib_stacks.get(int(x), "") for x in u], object)[inv.reshape(-1)]
    if call_of_span is not None and len(call_of_span):
        by_call = np.full(len(span), "", object)
        has = span >= 0
        by_call[has] = call_of_span.take(span[has]).astype(object).to_numpy()
        name = np.where(name == "", by_call, name)
    name = name.astype(str)
    # the pairs in order of first use, then each named pair's last name
    key = _key(conn, tid)
    first = np.sort(np.unique(key, return_index=True)[1])
    named = np.flatnonzero(name != "")[::-1]
    last = named[np.unique(key[named], return_index=True)[1]]
    out = dict.fromkeys(zip(conn[first].tolist(), tid[first].tolist(), strict=True), "")
    pairs = zip(conn[last].tolist(), tid[last].tolist(), strict=True)
    out.update(zip(pairs, name[last].tolist(), strict=True))
    return out
