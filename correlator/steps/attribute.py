"""Step: keep the candidates something vouches for, and say what they were inside.

Library or Go runtime: inside a cgo call's span the runtime does its own work (entersyscall,
exitsyscall spinning for a P in ``osyield``, futex waits, the trace writer). A frame-pointer
callchain shows it: the frame above the kernel is a ``runtime.*`` function, where the
library's own syscalls come from libc or the library. Such a record is ``in: go-runtime``
with ``library: null``. Without a callchain, a record before the first or after the last
syscall the call made on its connection is the runtime's, marked ``in_inferred``.

Or the caller's: a DWARF callchain that shows the whole C part of the cgo call with no
library frame in it (the wrapper's own ``gettid``, lock or sleep before it calls the library)
is ``in: caller``, ``library: null``, unless the user named the wrapper itself
(``--native-call``): then the wrapper is the library.

Or the Python interpreter's: a futex wait inside a library call whose py-spy run waits for
the GIL (a condition-variable wait under the C function that released it), or whose DWARF
callchain shows ``take_gil``, is ``in: python-runtime``: the thread waited for the GIL, not
for the socket. And an off-CPU stretch outside syscalls in which a tracer (py-spy's ptrace)
held the thread is ``in: tracer``: the profiler's cost, not the program's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..gil import futex_rows
from ..step import step
from ..tables import Tables
from .candidates import tracer_stop_rows

IN_LIBRARY, IN_RUNTIME, IN_CALLER = "library", "go-runtime", "caller"
IN_PY_RUNTIME = "python-runtime"  # the interpreter's time inside a call: the GIL
IN_TRACER = "tracer"  # stopped by a tracer (py-spy's ptrace) inside a call
_ADDS = (
    "goid",
    "call",
    "call_start_ns",
    "call_end_ns",
    "call_site",
    "p_lost",
    "evidence",
    "go_stack_id",
    "in",
    "in_inferred",
    "library",
)


@step(
    reads={
        "candidates": (
            "*",
            "kind",
            "stack_id",
            "span",
            "after_call",
            "run",
            "gil_by",
            "conn",
            "tid",
            "start",
            "end",
        ),
        "calls": ("goid", "call", "start", "end", "evidence", "call_site", "p_lost", "stack_id"),
        "runs": ("call", "start", "end", "call_site"),
        "lib_stacks": (),
        "lib_callers": (),
        "runtime_stacks": (),
        "caller_stacks": (),
        "gil_stacks": (),
        "lib_conns": (),
        "conn_syscalls": ("tid", "start", "end"),
        "library": (),
    },
    adds={"candidates": _ADDS},
)
def attribute(t: Tables) -> dict:
    """Keep the candidates that a Go call span, a perf callchain through the library (C
    programs), a py-spy run, or a connection the library's calls use (``fd``) vouches for;
    add the call, its window and site, the evidence, ``in`` (library or go-runtime) and the
    holding call's goroutine and stack (``go_stack_id``)."""
    if t.candidates is None:
        return {}
    v = _Vouchers.of(t.candidates, t)
    c = t.candidates[v.keep].reset_index(drop=True)
    v = v.kept()
    who = _Attribution(len(c))
    who.from_go_calls(t.calls, v)
    who.from_perf(c, v, t.lib_callers)
    who.from_pyspy(t.runs, v)
    where, inferred = library_or_runtime(c, v, who, t.conn_syscalls)
    gil, gil_inferred = waits_for_the_gil(c, v, t.gil_stacks)
    where[gil & (where == IN_LIBRARY)] = IN_PY_RUNTIME
    inferred |= gil_inferred & (where == IN_PY_RUNTIME)
    stopped = tracer_stop_rows(c)
    where[stopped] = IN_TRACER
    # a stop only a py-spy run vouches for: the run's stack stays on screen until the next
    # sample, so the stop may lie just after the call
    inferred[stopped] = ~v.in_go[stopped] & (v.stack_lib[stopped] == None)  # noqa: E711
    library = np.where(where == IN_LIBRARY, t.library.name, None)
    return {
        "candidates": c.assign(
            goid=who.goid,
            call=who.call,
            call_start_ns=who.call_start,
            call_end_ns=who.call_end,
            call_site=who.call_site,
            p_lost=who.p_lost,
            evidence=who.evidence,
            go_stack_id=who.go_stack_id,
            run=v.run,
            conn=v.conn,
            **{"in": where},
            in_inferred=inferred,
            library=library,
        )
    }


@dataclass
class _Vouchers:
    """Per candidate, what vouches for it: the Go call holding it (``span``), the library
    function of its callchain (``stack_lib``), a py-spy run (``run``), the library function
    seen on its connection (``conn_call``, used when nothing else vouches: ``by_fd``);
    ``on_runtime``: its callchain shows the Go runtime made it; ``on_caller``: the cgo
    call's own C code, outside the library."""

    keep: np.ndarray
    span: np.ndarray
    in_go: np.ndarray
    stack_lib: np.ndarray
    run: np.ndarray
    conn: np.ndarray
    conn_call: np.ndarray
    by_fd: np.ndarray
    on_runtime: np.ndarray
    on_caller: np.ndarray
    stack_id: np.ndarray

    @classmethod
    def of(cls, c: pd.DataFrame, t: Tables) -> _Vouchers:
        is_sys = (c["kind"] == "os.syscall").to_numpy()
        sid = c["stack_id"].fillna(0).astype("int64").to_numpy()
        stack_lib = np.array(
            [t.lib_stacks.get(s) if sy and s else None for s, sy in zip(sid, is_sys, strict=True)],
            dtype=object,
        )
        no_chain = np.array([x is None for x in stack_lib], bool)
        on_runtime = np.isin(sid, list(t.runtime_stacks)) & no_chain
        on_caller = np.isin(sid, list(t.caller_stacks)) & no_chain & ~on_runtime
        span = c["span"].to_numpy()
        in_go = ~np.isnan(span)
        run, conn = c["run"].to_numpy(), c["conn"].to_numpy()
        pairs = zip(conn, c["tid"].to_numpy(np.int64), strict=True)
        conn_call = np.array(
            [t.lib_conns.get((int(k), int(x))) if k >= 0 else None for k, x in pairs], object
        )
        has_conn_call = np.array([x is not None for x in conn_call], bool)
        by_fd = ~in_go & no_chain & (run < 0) & has_conn_call & ~on_runtime & ~on_caller
        keep = in_go | ~no_chain | (run >= 0) | by_fd
        return cls(
            keep, span, in_go, stack_lib, run, conn, conn_call, by_fd, on_runtime, on_caller, sid
        )

    def kept(self) -> _Vouchers:
        k = self.keep
        return _Vouchers(*(getattr(self, f)[k] for f in self.__dataclass_fields__))


class _Attribution:
    """The columns ``attribute`` adds, filled source by source."""

    def __init__(self, n: int) -> None:
        def col() -> np.ndarray:
            return np.full(n, None, dtype=object)

        self.goid, self.call, self.call_site, self.p_lost = col(), col(), col(), col()
        self.go_stack_id, self.call_start, self.call_end = col(), col(), col()
        self.evidence = np.empty(n, dtype=object)
        self.evidence[:] = [[] for _ in range(n)]

    def from_go_calls(self, calls: pd.DataFrame, v: _Vouchers) -> None:
        """The Go call holding each candidate: its goroutine, name, window, site, stack."""
        if not v.in_go.any():
            return
        sp, in_go = calls.iloc[v.span[v.in_go].astype(int)], v.in_go
        self.goid[in_go] = [None if pd.isna(g) else int(g) for g in sp["goid"]]
        self.call[in_go] = sp["call"].astype(object).to_numpy()
        self.call_start[in_go] = sp["start"].astype("int64").tolist()
        self.call_end[in_go] = sp["end"].astype("int64").tolist()
        for i, e in zip(np.flatnonzero(in_go), sp["evidence"].astype(str), strict=True):
            self.evidence[i] = e.split(",") if e else []
        self.call_site[in_go] = sp["call_site"].astype(object).to_numpy()
        self.p_lost[in_go] = [None if pd.isna(x) else bool(x) for x in sp["p_lost"]]
        self.go_stack_id[in_go] = sp["stack_id"].to_numpy()

    def from_perf(self, c: pd.DataFrame, v: _Vouchers, callers: dict[int, str]) -> None:
        """No Go call: the call is the library function of the callchain, or the one seen on
        the connection; its window is the record's own; its site the frame that called the
        library (the first frame outside it)."""
        has_chain = np.array([x is not None for x in v.stack_lib], bool)
        alone = ~v.in_go & (has_chain | v.by_fd)
        self.call[alone] = np.where(has_chain[alone], v.stack_lib[alone], v.conn_call[alone])
        self.call_start[alone] = c["start"].to_numpy()[alone].tolist()
        self.call_end[alone] = c["end"].to_numpy()[alone].tolist()
        for i in np.flatnonzero(alone):
            self.evidence[i] = ["perf-callchain"] if has_chain[i] else ["fd"]
            if has_chain[i]:
                self.call_site[i] = callers.get(int(v.stack_id[i]))
        self._chain = has_chain

    def from_pyspy(self, runs: pd.DataFrame, v: _Vouchers) -> None:
        """A py-spy run vouching: its evidence, and the call when nothing else named one."""
        with_run = np.flatnonzero(v.run >= 0)
        if len(with_run):
            for i, r in zip(with_run, runs.iloc[v.run[with_run]].itertuples(), strict=True):
                self.evidence[i] = sorted(set(self.evidence[i]) | {"pyspy-stack"})
                if self.call[i] is None:
                    self.call[i], self.call_start[i], self.call_end[i] = (
                        r.call,
                        int(r.start),
                        int(r.end),
                    )
                    self.call_site[i] = r.call_site
        for i in np.flatnonzero(self._chain):
            if "perf-callchain" not in self.evidence[i]:
                self.evidence[i].append("perf-callchain")


def waits_for_the_gil(
    c: pd.DataFrame, v: _Vouchers, gil: frozenset[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The futex waits that are the interpreter's, and which of them are inferred: a py-spy
    sample waiting for the GIL in the same wait, or a GIL function in the futex's own
    callchain; inferred: the wait lies between two py-spy samples in the client
    (``join_calls.gil_runs``)."""
    futex = futex_rows(c)
    by = c["gil_by"].to_numpy(np.int8) if "gil_by" in c else np.zeros(len(c), np.int8)
    by_chain = np.isin(v.stack_id, list(gil)) if gil else np.zeros(len(c), bool)
    return futex & ((by > 0) | by_chain), futex & (by == 2) & ~by_chain


def library_or_runtime(
    c: pd.DataFrame, v: _Vouchers, who: _Attribution, conn_syscalls: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """``in`` of each record, and whether it was inferred. Only the time inside a cgo call's
    span can be the Go runtime's. With a callchain, a ``runtime.*`` frame above the kernel
    says so; without one, a record that lies before the first or after the last syscall the
    call made on a connection is the runtime entering or leaving the call (inferred). A
    callchain whose whole C part is the caller's makes it the caller's."""
    n = len(c)
    where = np.full(n, IN_LIBRARY, dtype=object)
    inferred = np.zeros(n, bool)
    where[v.in_go & v.on_runtime] = IN_RUNTIME
    named = np.array(["user-pattern" in e for e in who.evidence], bool)
    where[v.in_go & v.on_caller & ~named] = IN_CALLER  # the user's wrapper is their library
    # after the C call returned (the thread waiting for the goroutine's P): the runtime's
    after = c["after_call"].to_numpy(bool)
    inferred[v.in_go & after & ~v.on_runtime] = True
    where[v.in_go & after] = IN_RUNTIME
    blind = v.in_go & (v.stack_id == 0) & (v.conn < 0)
    if not blind.any() or not len(conn_syscalls):  # blind: rare, no callchains recorded
        return where, inferred
    cs_tid = conn_syscalls["tid"].to_numpy()
    cs_start, cs_end = conn_syscalls["start"].to_numpy(), conn_syscalls["end"].to_numpy()
    for i in np.flatnonzero(blind):
        lo, hi, tid = int(who.call_start[i]), int(who.call_end[i]), int(c.at[i, "tid"])
        mine = (cs_tid == tid) & (cs_start >= lo) & (cs_end <= hi)
        if not mine.any():
            continue
        s, e = int(c.at[i, "start"]), int(c.at[i, "end"])
        if e <= cs_start[mine].min() or s >= cs_end[mine].max():
            where[i], inferred[i] = IN_RUNTIME, True
    return where, inferred
