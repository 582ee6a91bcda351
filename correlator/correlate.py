"""Blocking syscalls x library-call spans x threads -> blocking records with a latency split.

Small pure steps over tables on the reference clock, each taking and returning a DataFrame:

1. ``candidates``      perf syscalls of at least ``min_block``, and off-CPU intervals that
                       long outside any syscall (preempted inside a call; not a tracer's stop)
2. ``join_calls``      each candidate with the library call span holding it on its thread
                       (``span``) and the py-spy run of the library that covers it (``run``):
                       sorted per-thread joins, O(n log n). A candidate whose end (or start)
                       perf did not see joins by its other edge.
3. ``attribute``       keep what a Go span, a perf callchain through the library (C programs),
                       a py-spy run, or a connection the library's calls use (``fd``) vouches
                       for; name the call, its window, the evidence, and whether the time was
                       the library's or the Go runtime's (``in``)
4. ``censor``          a record perf saw only part of (lost events, the capture's edges) is
                       bounded by the Go span or py-spy run that holds it, and says so
5. ``latency_split``   off-CPU time inside each record (by state), the time a tracer held the
                       thread stopped (the profiler's cost), runqueue delay when the wakeup was
                       seen, on-CPU = the rest

``blocking_table`` is the one constructor of the records table (the contract columns of
DESIGN.md's JSON report, then extras); ``correlate`` runs the steps; ``call_split`` adds each
library call's latency split (library blocking, Go runtime, waiting for a P) to the calls.

Library or Go runtime: inside a cgo call's span the runtime does its own work (entersyscall,
exitsyscall spinning for a P in ``osyield``, futex waits, the trace writer). A frame-pointer
callchain shows it: the frame above the kernel is a ``runtime.*`` function, where the
library's own syscalls come from libc or the library. Such a record is ``in: go-runtime`` with
``library: null``. Without a callchain, a record before the first or after the last syscall
the call made on its connection is the runtime's, marked ``in_inferred``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..parsers.columns import quick_order, str_values
from ..parsers.memory import release_freed_memory
from ..parsers.model import SourceTables, column
from .calls import go_spans, library_spans, library_stacks, python_runs, runtime_stacks
from .connections import connections
from .frames import Frames
from .joins import holding_span, overlap_pairs
from .libraries import Library
from .names import kernel_comms, thread_names
from .wakers import Wakers, wakers

#: the contract columns of a blocking record (DESIGN.md, JSON report), then extras
COLUMNS = [
    "pid",
    "tid",
    "goid",
    "thread",
    "comm",
    "library",
    "in",
    "call",
    "call_start_ns",
    "call_end_ns",
    "syscall",
    "start_ns",
    "end_ns",
    "dur_ns",
    "off_cpu_ns",
    "off_cpu_state",
    "restarts",
    "censored",
    "evidence",
    "call_site",
    "go_stack",
    "native_stack",
    "python_stack",
    "waker",
    "critical_path",
]
EXTRA = [
    "on_cpu_ns",
    "runq_ns",
    "tracer_stop_ns",
    "p_lost",
    "fd",
    "in_inferred",
    "waker_note",
    "source",
]
LIST_COLUMNS = ("evidence", "go_stack", "native_stack", "python_stack", "critical_path")
#: stopped by a tracer (py-spy's own ptrace stops): the profiler's time, not the program's
TRACER_STOP_STATES = ("t", "T")
#: a py-spy run vouches for a perf interval when it covers at least this share of it
RUN_COVER = 0.5
IN_LIBRARY, IN_RUNTIME = "library", "go-runtime"


@dataclass
class Aligned:
    """A parsed source and its offset onto the reference clock (None: not aligned)."""

    tables: SourceTables
    offset_ns: int | None
    error_ns: int | None


def blocking_table(n: int = 0, **columns) -> pd.DataFrame:
    """The blocking-records table: every column of COLUMNS + EXTRA, in that order. Columns
    not given are null (lists: empty), so every path builds the same schema."""
    out = {}
    for name in COLUMNS + EXTRA:
        v = columns.pop(name, None)
        if v is None:
            v = [[] for _ in range(n)] if name in LIST_COLUMNS else [None] * n
        out[name] = list(v) if not isinstance(v, (list, np.ndarray)) else v
    if columns:
        raise TypeError(f"unknown blocking columns {sorted(columns)}")
    return pd.DataFrame(out, columns=COLUMNS + EXTRA)


def perf_intervals(perf: Aligned) -> pd.DataFrame:
    """perf's syscalls and off-CPU intervals with ``start``/``end`` on the reference clock,
    and which edges perf did not see (``start_open``, ``end_open``) or lost events in."""
    s = perf.tables.slices
    keep = s["kind"].isin(["os.syscall", "os.offcpu"]).to_numpy()
    if not keep.all():  # perf's slices are all intervals: no copy of the whole table then
        s = s[keep]
    is_sys = (s["kind"] == "os.syscall").to_numpy()
    lost = column(s, "slices", "lost_inside").to_numpy(bool)
    return s.assign(
        # on a shared clock (offset 0) start is ts itself: the same buffer, not a copy
        start=s["ts"] if perf.offset_ns == 0 else s["ts"] + perf.offset_ns,
        end=s["ts"] + s["dur"] + perf.offset_ns,
        start_open=column(s, "slices", "start_unknown").to_numpy(bool),
        # perf lost events while it lasted: the exit it was paired with may be a later
        # syscall's, so only its start is sure
        end_open=(column(s, "slices", "end_unknown").to_numpy(bool) | lost) & is_sys,
        lost=lost,
    )


def candidates(intervals: pd.DataFrame, min_block_ns: int) -> pd.DataFrame:
    """Step 1: long syscalls, and long off-CPU intervals outside any syscall. Worked out on
    columns and taken from *intervals* once, in the order of the frame-wise steps (the
    syscalls, then the lone off-CPU intervals by start)."""
    kind = intervals["kind"]
    is_sys = (kind == "os.syscall").to_numpy()
    tid, start, end = (intervals[k].to_numpy(np.int64) for k in ("tid", "start", "end"))
    dur = intervals["dur"].to_numpy()
    off = np.flatnonzero((kind == "os.offcpu").to_numpy())
    # by start, as sorting the off-CPU rows and then contained_in's sort of them order them
    off = off[quick_order(start[off])]
    off = off[quick_order(start[off])]
    sys_rows = np.flatnonzero(is_sys)
    sysc = pd.DataFrame({"tid": tid[sys_rows], "start": start[sys_rows], "end": end[sys_rows]})
    lone = off[holding_span(tid[off], start[off], end[off], sysc, 0) < 0]
    lone = lone[~intervals["name"].isin(TRACER_STOP_STATES).to_numpy()[lone]]
    long_sys = sys_rows[dur[sys_rows] >= min_block_ns]
    rows = np.concatenate([long_sys, lone[dur[lone] >= min_block_ns]])
    return intervals.take(rows).reset_index(drop=True)


def _join_window(c: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The part of each interval that perf saw for sure: an interval whose end was not seen
    (its sys_exit lost, or the capture ended) is joined by its start, and one whose start was
    not seen by its end."""
    start, end = c["start"].to_numpy(np.int64), c["end"].to_numpy(np.int64)
    so, eo = c["start_open"].to_numpy(bool), c["end_open"].to_numpy(bool)
    return np.where(so & ~eo, end, start), np.where(eo & ~so, start, end)


def join_calls(
    cands: pd.DataFrame, spans: pd.DataFrame, runs: pd.DataFrame, tolerance: int
) -> pd.DataFrame:
    """Step 2: ``span`` = the library span holding each candidate on its thread (row of
    *spans*), ``run`` = the py-spy library run that vouches for it (row of *runs*); NaN/-1
    when none. Sorted by start."""
    c = cands.sort_values("start", kind="stable").reset_index(drop=True)
    js, je = _join_window(c)
    span = np.full(len(c), np.nan)
    after = np.zeros(len(c), bool)
    if len(spans):
        # a call holds its thread until its goroutine runs again: after a C call that lost
        # its P, the thread's wait for one is still that call's (Go runtime) time
        held = spans.assign(end=spans["end"] + spans["p_wait_ns"])
        row = holding_span(c["tid"].to_numpy(np.int64), js, je, held, tolerance)
        span = np.where(row >= 0, row, np.nan)
        inside = ~np.isnan(span)
        ends = spans["end"].to_numpy(np.int64)[np.where(inside, span, 0).astype(int)]
        after = inside & (js >= ends)
    window = c.assign(start=js, end=je)
    return c.assign(span=span, after_call=after, run=_vouching_runs(window, runs))


def _vouching_runs(c: pd.DataFrame, runs: pd.DataFrame) -> np.ndarray:
    """For each candidate, the py-spy run overlapping most of it on its thread (first in run
    order on ties), or -1. A syscall needs a run waiting in a wrapper or socket wait that
    makes that syscall (a poll run for a poll: a run is only as fine as the sampling, and a
    stack can stay on screen across a gap while the thread already sleeps elsewhere, in a
    decoy); off-CPU time outside syscalls needs a run executing library code. The run must
    cover RUN_COVER of the candidate, or be waiting in it when it ended: py-spy sees a new
    stack only at its next sample of the thread, which under its own ptrace stops can come
    tens of ms after the wait began, but the run then lasts until the wait ends."""
    out = np.full(len(c), -1, np.int64)
    if not len(c) or runs.empty:
        return out
    q_tid, q_start, q_end = (c[k].to_numpy(np.int64) for k in ("tid", "start", "end"))
    qs, rs = [], []
    for _, g in runs.groupby("source", sort=False):  # runs of one recording never overlap
        idx = g.index.to_numpy()
        qi, ri = overlap_pairs(
            q_tid,
            q_start,
            q_end,
            g["tid"].to_numpy(np.int64),
            g["start"].to_numpy(np.int64),
            g["end"].to_numpy(np.int64),
        )
        qs.append(qi)
        rs.append(idx[ri])
    qi, ri = np.concatenate(qs), np.concatenate(rs)
    is_sys = (c["kind"] == "os.syscall").to_numpy()[qi]
    blocking = runs["blocking"].to_numpy(bool)[ri]
    names = str_values(c["name"])[qi]
    makes = np.fromiter(
        (n in w for n, w in zip(names, runs["waits_in"].to_numpy(object)[ri], strict=True)),
        bool,
        len(qi),
    )
    ok = np.where(is_sys, blocking & makes, ~blocking)
    qi, ri = qi[ok], ri[ok]
    ov = np.minimum(runs["end"].to_numpy()[ri], q_end[qi]) - np.maximum(
        runs["start"].to_numpy()[ri], q_start[qi]
    )
    order = np.lexsort((ri, -ov, qi))  # per candidate: largest overlap, then run order
    qi, ri, ov = qi[order], ri[order], ov[order]
    first = np.ones(len(qi), bool)
    first[1:] = qi[1:] != qi[:-1]
    qi, ri, ov = qi[first], ri[first], ov[first]
    r_start, r_end = runs["start"].to_numpy()[ri], runs["end"].to_numpy()[ri]
    c_sys = (c["kind"] == "os.syscall").to_numpy()
    ends_in_run = (r_start <= q_end[qi]) & (q_end[qi] <= r_end) & c_sys[qi]
    enough = (ov >= RUN_COVER * np.maximum(q_end[qi] - q_start[qi], 1)) | ends_in_run
    out[qi[enough]] = ri[enough]
    return out


@dataclass
class Vouchers:
    """What can vouch that an interval is the library's, besides a Go span or a py-spy run:
    perf stacks through the library (stack id -> its outermost library function), stacks
    whose syscall the Go runtime made, and connections the library's calls used (by thread)."""

    lib_stacks: dict[int, str]
    runtime_stacks: set[int]
    lib_conns: dict[tuple[int, int], str]  # (connection, tid) -> library function seen on it
    conn_syscalls: pd.DataFrame  # tid, start, end of every syscall on a connection


def attribute(c: pd.DataFrame, spans: pd.DataFrame, runs: pd.DataFrame, v: Vouchers, lib: Library):
    """Step 3: keep the candidates something vouches for (see Vouchers); add goid, call,
    call window, call site, p_lost, evidence, ``in`` (library or go-runtime), the span's and
    run's stacks (``go_stack_id``, ``run``) and the connection (``conn``)."""
    is_sys = (c["kind"] == "os.syscall").to_numpy()
    sid_int = c["stack_id"].fillna(0).astype("int64").to_numpy()
    stack_lib = np.array(
        [v.lib_stacks.get(s) if sy and s else None for s, sy in zip(sid_int, is_sys, strict=True)],
        dtype=object,
    )
    on_runtime = np.isin(sid_int, list(v.runtime_stacks)) & (stack_lib == None)  # noqa: E711
    span = c["span"].to_numpy()
    in_go = ~np.isnan(span)
    run = c["run"].to_numpy()
    conn = c["conn"].to_numpy()
    tid = c["tid"].to_numpy(np.int64)
    conn_call = np.array(
        [
            v.lib_conns.get((int(k), int(t))) if k >= 0 else None
            for k, t in zip(conn, tid, strict=True)
        ],
        dtype=object,
    )
    by_fd = ~in_go & (stack_lib == None) & (run < 0) & (conn_call != None) & ~on_runtime  # noqa: E711
    keep = in_go | (stack_lib != None) | (run >= 0) | by_fd  # noqa: E711
    c = c[keep].reset_index(drop=True)
    stack_lib, span, in_go, run, conn, conn_call, by_fd, on_runtime = (
        a[keep] for a in (stack_lib, span, in_go, run, conn, conn_call, by_fd, on_runtime)
    )
    n = len(c)
    sp = spans.iloc[span[in_go].astype(int)] if in_go.any() else None
    rn = runs.iloc[run[run >= 0]] if (run >= 0).any() else None

    def col(default=None) -> np.ndarray:
        return np.full(n, default, dtype=object)

    goid, call, call_site, p_lost, go_sid = col(), col(), col(), col(), col()
    call_start, call_end = col(), col()
    evidence = np.empty(n, dtype=object)
    evidence[:] = [[] for _ in range(n)]
    if sp is not None:
        goid[in_go] = [None if pd.isna(g) else int(g) for g in sp["goid"]]
        call[in_go] = sp["call"].astype(object).to_numpy()
        call_start[in_go] = sp["start"].astype("int64").tolist()
        call_end[in_go] = sp["end"].astype("int64").tolist()
        for i, e in zip(np.flatnonzero(in_go), sp["evidence"].astype(str), strict=True):
            evidence[i] = e.split(",") if e else []
        call_site[in_go] = sp["call_site"].astype(object).to_numpy()
        p_lost[in_go] = [None if pd.isna(x) else bool(x) for x in sp["p_lost"]]
        go_sid[in_go] = sp["stack_id"].to_numpy()
    alone = ~in_go & ((stack_lib != None) | by_fd)  # noqa: E711
    call[alone] = np.where(stack_lib[alone] != None, stack_lib[alone], conn_call[alone])  # noqa: E711
    call_start[alone] = c["start"].to_numpy()[alone].tolist()
    call_end[alone] = c["end"].to_numpy()[alone].tolist()
    for i in np.flatnonzero(alone):
        evidence[i] = ["perf-callchain"] if stack_lib[i] is not None else ["fd"]
    if rn is not None:
        for i, r in zip(np.flatnonzero(run >= 0), rn.itertuples(), strict=True):
            evidence[i] = sorted(set(evidence[i]) | {"pyspy-stack"})
            if call[i] is None:
                call[i], call_start[i], call_end[i] = r.call, int(r.start), int(r.end)
                call_site[i] = r.call_site
    for i in np.flatnonzero(stack_lib != None):  # noqa: E711
        if "perf-callchain" not in evidence[i]:
            evidence[i].append("perf-callchain")
    where, inferred = _library_or_runtime(
        c, in_go, on_runtime, sid_int[keep], conn, call_start, call_end, v.conn_syscalls
    )
    return c.assign(
        goid=goid,
        call=call,
        call_start_ns=call_start,
        call_end_ns=call_end,
        call_site=call_site,
        p_lost=p_lost,
        evidence=evidence,
        go_stack_id=go_sid,
        run=run,
        conn=conn,
        where=where,
        in_inferred=inferred,
        library=np.where(where == IN_LIBRARY, lib.name, None),
    )


def _library_or_runtime(
    c: pd.DataFrame,
    in_go: np.ndarray,
    on_runtime: np.ndarray,
    sid: np.ndarray,
    conn: np.ndarray,
    call_start: np.ndarray,
    call_end: np.ndarray,
    conn_sys: pd.DataFrame,
) -> tuple[np.ndarray, np.ndarray]:
    """``in`` of each record, and whether it was inferred. Only the time inside a cgo call's
    span can be the Go runtime's. With a callchain, a ``runtime.*`` frame above the kernel
    says so; without one, a record that lies before the first or after the last syscall the
    call made on a connection is the runtime entering or leaving the call (inferred)."""
    n = len(c)
    where = np.full(n, IN_LIBRARY, dtype=object)
    inferred = np.zeros(n, bool)
    where[in_go & on_runtime] = IN_RUNTIME
    # after the C call returned (the thread waiting for the goroutine's P): the runtime's
    after = c["after_call"].to_numpy(bool)
    inferred[in_go & after & ~on_runtime] = True
    where[in_go & after] = IN_RUNTIME
    blind = in_go & (sid == 0) & (conn < 0)
    if blind.any() and len(conn_sys):  # rare: a recording without callchains
        for i in np.flatnonzero(blind):
            lo, hi, t = int(call_start[i]), int(call_end[i]), int(c.at[i, "tid"])
            mine = conn_sys[
                (conn_sys["tid"] == t).to_numpy()
                & (conn_sys["start"] >= lo).to_numpy()
                & (conn_sys["end"] <= hi).to_numpy()
            ]
            if not len(mine):
                continue
            s, e = int(c.at[i, "start"]), int(c.at[i, "end"])
            if e <= mine["start"].min() or s >= mine["end"].max():
                where[i], inferred[i] = IN_RUNTIME, True
    return where, inferred


def censor(
    c: pd.DataFrame, spans: pd.DataFrame, runs: pd.DataFrame, perf_name: str, perf_end: int
) -> pd.DataFrame:
    """Step 4: records perf saw only part of. Their unseen edge is bounded by what holds them:
    the Go call span (exact to 64 ns), else the py-spy run, else (for an exit perf lost) the
    thread's next syscall; ``censored`` says why and by what."""
    so, eo = c["start_open"].to_numpy(bool), c["end_open"].to_numpy(bool)
    lost = c["lost"].to_numpy(bool)
    start, end = c["start"].to_numpy(np.int64).copy(), c["end"].to_numpy(np.int64).copy()
    censored = np.full(len(c), None, dtype=object)
    span, run = c["span"].to_numpy(), c["run"].to_numpy()
    for i in np.flatnonzero(so | eo | lost):
        if eo[i] or lost[i]:
            # an exit lost in the middle of the recording, or the recording ended first
            reason = "perf-lost" if lost[i] or end[i] < perf_end else "capture-end"
        else:
            reason = "capture-start"
        if not np.isnan(span[i]):
            row = spans.iloc[int(span[i])]
            lo, hi, by = int(row["start"]), int(row["end"]), str(row["source"])
        elif run[i] >= 0:
            row = runs.iloc[int(run[i])]
            lo, hi, by = int(row["start"]), int(row["end"]), str(row["source"])
        else:
            lo, hi, by = start[i], end[i], perf_name
        if so[i]:
            start[i] = max(start[i], lo)
        if eo[i]:
            end[i] = min(end[i], hi)
        censored[i] = {"reason": reason, "bound_by": by}
    return c.assign(start=start, end=np.maximum(end, start), censored=censored)


def latency_split(c: pd.DataFrame, intervals: pd.DataFrame) -> pd.DataFrame:
    """Step 5: ``off_cpu_ns``, ``off_cpu_state`` (the state most of it was spent in),
    ``tracer_stop_ns`` (stopped by a tracer: the profiler's cost, py-spy's ptrace stops),
    ``runq_ns`` (wakeup -> running, summed over the intervals where the wakeup was seen;
    None when it never was) and ``on_cpu_ns``. A syscall's off-CPU time is that of the
    off-CPU intervals inside it; an off-CPU record is all off CPU."""
    n = len(c)
    is_sys = (c["kind"] == "os.syscall").to_numpy()
    start, end = c["start"].to_numpy(np.int64), c["end"].to_numpy(np.int64)
    dur = end - start
    off_ns = np.where(is_sys, 0, dur).astype(object)
    tracer = np.zeros(n, np.int64)
    state = np.where(is_sys, None, c["name"].astype(object).to_numpy())
    runq = np.array([None] * n, dtype=object)
    if (~is_sys).any():
        q = column(c, "slices", "runq_ns")[~is_sys]
        runq[~is_sys] = [None if pd.isna(x) else int(x) for x in q]
    # the off-CPU intervals by start (as sort_values orders them), column by column
    off = np.flatnonzero((intervals["kind"] == "os.offcpu").to_numpy())
    off_start = intervals["start"].to_numpy(np.int64)[off]
    by_start = quick_order(off_start)
    off, off_start = off[by_start], off_start[by_start]
    off_end = intervals["end"].to_numpy(np.int64)[off]
    sys_rows = np.flatnonzero(is_sys)
    qi, oi = overlap_pairs(
        c["tid"].to_numpy(np.int64)[sys_rows],
        start[sys_rows],
        end[sys_rows],
        intervals["tid"].to_numpy(np.int64)[off],
        off_start,
        off_end,
    )
    if len(qi):
        rec = sys_rows[qi]
        ov = np.maximum(
            np.minimum(off_end[oi], end[rec]) - np.maximum(off_start[oi], start[rec]),
            0,
        )
        names = intervals["name"].take(off[oi]).astype(object).to_numpy()
        pairs = pd.DataFrame({"rec": rec, "state": names, "ov": ov})
        total = pairs.groupby("rec")["ov"].sum()
        off_ns[total.index.to_numpy()] = total.astype("int64").tolist()
        stopped = pairs[pairs["state"].isin(TRACER_STOP_STATES)].groupby("rec")["ov"].sum()
        tracer[stopped.index.to_numpy()] = stopped.to_numpy()
        by_state = pairs.groupby(["rec", "state"])["ov"].sum().reset_index()
        # the state with the most time; ties go to the first state name in sort order
        by_state = by_state.sort_values(["rec", "ov", "state"], ascending=[True, False, True])
        top = by_state.drop_duplicates("rec")
        state[top["rec"].to_numpy()] = top["state"].to_numpy()
        q = column(intervals, "slices", "runq_ns").to_numpy(dtype=np.float64, na_value=np.nan)
        q = q[off[oi]]
        known = pd.DataFrame({"rec": rec, "q": q})
        known = known[~np.isnan(q)]
        if len(known):
            s = known.groupby("rec")["q"].sum()
            runq[s.index.to_numpy()] = [int(x) for x in s]
    on_cpu = np.array([d - o for d, o in zip(dur.tolist(), off_ns, strict=True)], dtype=object)
    return c.assign(
        off_cpu_ns=off_ns,
        off_cpu_state=state,
        runq_ns=runq,
        on_cpu_ns=on_cpu,
        tracer_stop_ns=tracer,
    )


def _key(conn: np.ndarray, tid: np.ndarray) -> np.ndarray:
    return (conn.astype(np.int64) << 32) | (tid.astype(np.int64) & 0xFFFFFFFF)


def library_calls(
    intervals: pd.DataFrame | None,
    cgo: pd.DataFrame,
    lib_stacks: dict[int, str],
    runtime: set[int],
    lib: Library,
    tol: int,
) -> tuple[pd.DataFrame, pd.Series, dict, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The library's calls and connections, proven from every source at once.

    Returns (library spans, the connection of every interval (-1: none), the connections
    the library's calls used by thread {(conn, tid): library function}, the syscalls on
    connections, the connections, and their use inside library calls: one row per syscall
    on a connection made inside a library call, with who made it (pid, tid, goid) and the
    call's window). A syscall is the library's when its callchain passes through the library
    or it ran inside a cgo call named as one; the connections such syscalls used are the
    library's on that thread; and a cgo call whose name says nothing (a C shim) is the
    library's when a syscall inside it is (perf-callchain) or works on such a connection
    (fd)."""
    empty_conn = pd.Series(
        -1, index=intervals.index if intervals is not None else [], dtype="int64"
    )
    if intervals is None:
        spans = library_spans(cgo, *(np.zeros(len(cgo), bool),) * 2, lib) if len(cgo) else cgo
        none = pd.DataFrame(columns=["tid", "start", "end"])
        return spans, empty_conn, {}, none, pd.DataFrame(), pd.DataFrame()
    is_sys = (intervals["kind"] == "os.syscall").to_numpy()
    # only the columns read here and by connections(): the intervals have many more
    read = ("pid", "tid", "start", "end", "name", "fd", "ret", "stack_id")
    sysc = intervals.loc[is_sys, [c for c in read if c in intervals.columns]]
    conns, conn_of = connections(sysc)
    conn_series = empty_conn.copy()
    if intervals.index.is_unique:
        conn_series[is_sys] = conn_of
    else:
        conn_series.loc[sysc.index] = conn_of
    tid = sysc["tid"].to_numpy(np.int64)
    sid = sysc["stack_id"].fillna(0).astype("int64").to_numpy()
    chain = np.isin(sid, list(lib_stacks))
    not_rt = ~(np.isin(sid, list(runtime)) & ~chain)
    span = holding_span(
        tid, sysc["start"].to_numpy(np.int64), sysc["end"].to_numpy(np.int64), cgo, tol
    )
    named = (cgo["match"].cat.codes.to_numpy() >= 0) if len(cgo) else np.zeros(0, bool)
    in_named = (span >= 0) & (named[np.maximum(span, 0)] if len(cgo) else False)
    lib_sys = (chain | in_named) & not_rt & (conn_of >= 0)
    # a cgo call working on a library connection is a library call, whichever thread the
    # goroutine runs on (goroutines move between threads; the connection belongs to the
    # process)
    on_lib_conn = (conn_of >= 0) & np.isin(conn_of, np.unique(conn_of[lib_sys])) & not_rt
    by_chain = np.zeros(len(cgo), bool)
    by_fd = np.zeros(len(cgo), bool)
    by_chain[span[chain & (span >= 0)]] = True
    by_fd[span[on_lib_conn & (span >= 0)]] = True
    spans = library_spans(cgo, by_chain, by_fd, lib) if len(cgo) else cgo
    # name each library connection (per thread) by what used it: the library function a
    # callchain showed, else the call the syscall ran in
    call_of_span = cgo["call"] if len(cgo) else None
    lib_conns = _connection_names(
        conn_of[lib_sys], tid[lib_sys], sid[lib_sys], span[lib_sys], lib_stacks, call_of_span
    )
    conn_sys = sysc.loc[conn_of >= 0, ["tid", "start", "end"]]
    # who used each connection inside library calls (cgo calls kept as library calls, or
    # syscalls whose callchain passes through the library)
    kept = np.zeros(len(cgo) + 1, bool)
    if len(cgo):
        kept[:-1] = (cgo["match"].cat.codes.to_numpy() >= 0) | by_chain | by_fd
    in_lib_call = (kept[np.where(span >= 0, span, len(cgo))] | chain) & not_rt & (conn_of >= 0)
    rows = np.flatnonzero(in_lib_call)
    sp = span[rows]
    has_span = sp >= 0
    c_start = sysc["start"].to_numpy(np.int64)[rows]
    c_end = sysc["end"].to_numpy(np.int64)[rows]
    if len(cgo):
        c_start = np.where(has_span, cgo["start"].to_numpy(np.int64)[np.maximum(sp, 0)], c_start)
        c_end = np.where(has_span, cgo["end"].to_numpy(np.int64)[np.maximum(sp, 0)], c_end)
        goid = np.where(
            has_span, cgo["goid"].fillna(-1).astype("int64").to_numpy()[np.maximum(sp, 0)], -1
        )
    else:
        goid = np.full(len(rows), -1, np.int64)
    conn_use = pd.DataFrame(
        {
            "conn": conn_of[rows],
            "pid": sysc["pid"].to_numpy(np.int64)[rows],
            "tid": tid[rows],
            "goid": goid,
            "call_start": c_start,
            "call_end": c_end,
            "syscall": str_values(sysc["name"])[rows],
            "start": sysc["start"].to_numpy(np.int64)[rows],
        }
    )
    return spans, conn_series, lib_conns, conn_sys, conns, conn_use


def _connection_names(
    conn: np.ndarray,
    tid: np.ndarray,
    sid: np.ndarray,
    span: np.ndarray,
    lib_stacks: dict[int, str],
    call_of_span: pd.Series | None,
) -> dict[tuple[int, int], str]:
    """{(connection, tid): the library function that used it}: per syscall, the function its
    callchain shows, else the call it ran in (*call_of_span*: the cgo calls' names); per
    connection and thread the last one named ("" when none was)."""
    if not len(conn):
        return {}
    u, inv = np.unique(sid, return_inverse=True)
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
    out.update(
        zip(
            zip(conn[last].tolist(), tid[last].tolist(), strict=True),
            name[last].tolist(),
            strict=True,
        )
    )
    return out


@dataclass
class Correlation:
    """What the correlator found: the blocking records, the library calls (with their
    latency split), every cgo call, the connections, and their use inside library calls."""

    blocking: pd.DataFrame
    calls: pd.DataFrame
    cgo: pd.DataFrame
    connections: pd.DataFrame
    conn_use: pd.DataFrame


def correlate(
    go: Aligned | None, perf: Aligned | None, py: list[Aligned], lib: Library, min_block_ns: int
) -> Correlation:
    """The steps above, over the aligned sources."""
    sources = [a for a in (go, perf) if a is not None]
    tol = max((a.error_ns or 0) for a in sources) if sources else 0
    perf_on = perf is not None and perf.offset_ns is not None
    intervals = perf_intervals(perf) if perf_on else None
    lib_stacks = library_stacks(perf.tables, lib) if perf is not None else {}
    runtime = runtime_stacks(perf.tables) if perf is not None else set()
    all_tables = [a.tables for a in [perf, go, *py] if a is not None]
    names, comms = thread_names(all_tables), kernel_comms(all_tables)

    cgo = pd.DataFrame()
    if go is not None and go.offset_ns is not None:
        cgo = go_spans(go.tables, go.offset_ns, lib)
    spans, conn_of, lib_conns, conn_sys, conns, conn_use = library_calls(
        intervals, cgo, lib_stacks, runtime, lib, tol
    )
    release_freed_memory()  # each step's temporaries, before the next step's (see below)
    runs = pd.concat(
        [python_runs(a.tables, a.offset_ns, lib) for a in py if a.offset_ns is not None]
        or [pd.DataFrame()],
        ignore_index=True,
    )
    py_frames = {a.tables.meta.source: Frames(a.tables) for a in py}

    if intervals is not None:
        c = candidates(intervals.assign(conn=conn_of), min_block_ns)
        c = join_calls(c, spans, runs, tol)
        c = attribute(c, spans, runs, Vouchers(lib_stacks, runtime, lib_conns, conn_sys), lib)
        perf_end = int(intervals["end"].max()) if len(intervals) else 0
        c = censor(c, spans, runs, perf.tables.meta.source, perf_end)
        c = latency_split(c, intervals)
        blocking = _perf_records(c, runs, names, comms, Frames(perf.tables), go, py_frames)
        release_freed_memory()
        if len(spans) and perf.tables.meta.extra.get("lost_events"):
            unseen = _unseen_calls(spans, intervals, blocking, min_block_ns, names, comms, go)
            blocking = pd.concat([blocking, unseen], ignore_index=True) if len(unseen) else blocking
        if len(blocking):
            others = set(perf.tables.threads["pid"].tolist()) - {0, -1}
            recorded = len(others - set(blocking["pid"].tolist())) > 0
            blocking = wakers(blocking, Wakers(perf.tables, perf.offset_ns, comms), recorded)
            release_freed_memory()
    elif len(runs):
        blocking = _pyspy_records(runs, lib, names, comms, py_frames, min_block_ns)
    else:
        blocking = blocking_table()
    if len(blocking):
        blocking = blocking.sort_values(["start_ns", "tid"]).reset_index(drop=True)
    if len(spans):
        spans = call_split(spans, blocking)
    return Correlation(blocking, spans, cgo, conns, conn_use)


def call_split(spans: pd.DataFrame, blocking: pd.DataFrame) -> pd.DataFrame:
    """Each library call's latency split: ``library_blocked_ns`` (its blocking records in the
    library), ``runtime_ns`` (its records in the Go runtime, inside the call or while its
    thread waited for a P after it) and ``p_wait_ns`` (the goroutine's wait for a P after the
    C call returned, from the Go trace)."""
    n = len(spans)
    lib_ns, rt_ns = np.zeros(n, np.int64), np.zeros(n, np.int64)
    if len(blocking):
        b = blocking[blocking["goid"].notna()]
        key = pd.DataFrame(
            {"tid": spans["tid"].to_numpy(), "start": spans["start"].to_numpy(), "i": np.arange(n)}
        )
        rec = pd.DataFrame(
            {
                "tid": b["tid"].to_numpy(np.int64),
                "start": b["call_start_ns"].astype("int64").to_numpy(),
                "dur": b["dur_ns"].astype("int64").to_numpy(),
                "rt": (b["in"] == IN_RUNTIME).to_numpy(),
            }
        ).merge(key, on=["tid", "start"])
        if len(rec):
            g = rec.groupby(["i", "rt"])["dur"].sum()
            for (i, rt), d in g.items():
                (rt_ns if rt else lib_ns)[i] += int(d)
    return spans.assign(library_blocked_ns=lib_ns, runtime_ns=rt_ns)


#: a library call perf saw less of than this (syscall time / call time) while perf lost events
UNSEEN_COVER = 0.5


def _unseen_calls(
    spans: pd.DataFrame,
    intervals: pd.DataFrame,
    blocking: pd.DataFrame,
    min_block_ns: int,
    names: dict[int, str],
    comms: dict[int, str],
    go: Aligned,
) -> pd.DataFrame:
    """Library calls that blocked (by the Go trace) where perf, having lost events, saw no
    syscall covering them: a record for each, bounded by the Go span, censored. Without it a
    lost perf buffer would lose the call (its read's enter, exit and switches all gone)."""
    sp = spans[(spans["end"] - spans["start"] >= min_block_ns).to_numpy()].reset_index(drop=True)
    if not len(sp):
        return blocking_table()
    # only syscalls perf saw whole count: one whose exit was lost, or paired across a loss,
    # may stand for several calls' worth of time
    sure = ~(intervals["end_open"].to_numpy(bool) | intervals["start_open"].to_numpy(bool))
    sysc = intervals[(intervals["kind"] == "os.syscall").to_numpy() & sure]
    qi, si = overlap_pairs(
        sp["tid"].to_numpy(np.int64),
        sp["start"].to_numpy(np.int64),
        sp["end"].to_numpy(np.int64),
        sysc["tid"].to_numpy(np.int64),
        sysc["start"].to_numpy(np.int64),
        sysc["end"].to_numpy(np.int64),
    )
    cover = np.zeros(len(sp), np.int64)
    if len(qi):
        ov = np.minimum(sysc["end"].to_numpy()[si], sp["end"].to_numpy()[qi]) - np.maximum(
            sysc["start"].to_numpy()[si], sp["start"].to_numpy()[qi]
        )
        np.add.at(cover, qi, np.maximum(ov, 0))
    dur = (sp["end"] - sp["start"]).to_numpy(np.int64)
    seen = set(zip(blocking["tid"].tolist(), blocking["call_start_ns"].tolist(), strict=True))
    keep = [
        i
        for i in np.flatnonzero(cover < UNSEEN_COVER * dur)
        if (int(sp.at[i, "tid"]), int(sp.at[i, "start"])) not in seen
    ]
    if not keep:
        return blocking_table()
    u = sp.iloc[keep]
    frames = Frames(go.tables)
    tid = u["tid"].astype("int64").tolist()
    start, end = u["start"].astype("int64").tolist(), u["end"].astype("int64").tolist()
    n = len(u)
    return blocking_table(
        n,
        pid=u["pid"].astype("int64").tolist(),
        tid=tid,
        goid=[None if pd.isna(g) else int(g) for g in u["goid"]],
        thread=[names.get(t) for t in tid],
        comm=[comms.get(t) for t in tid],
        library=u["library"].astype(object).tolist(),
        **{"in": [IN_LIBRARY] * n},
        call=u["call"].astype(object).tolist(),
        call_start_ns=start,
        call_end_ns=end,
        start_ns=start,
        end_ns=end,
        dur_ns=[e - s for s, e in zip(start, end, strict=True)],
        censored=[{"reason": "perf-lost", "bound_by": str(x)} for x in u["source"]],
        evidence=[str(e).split(",") for e in u["evidence"]],
        call_site=u["call_site"].astype(object).tolist(),
        go_stack=[frames.strings(s) for s in u["stack_id"]],
        p_lost=[None if pd.isna(x) else bool(x) for x in u["p_lost"]],
        in_inferred=[False] * n,
        tracer_stop_ns=[0] * n,
        source=u["source"].astype(str).tolist(),
    )


def _perf_records(
    c: pd.DataFrame,
    runs: pd.DataFrame,
    names: dict[int, str],
    comms: dict[int, str],
    perf_frames: Frames,
    go: Aligned | None,
    py_frames: dict[str, Frames],
) -> pd.DataFrame:
    """The records of perf intervals attributed to library calls."""
    n = len(c)
    is_sys = (c["kind"] == "os.syscall").to_numpy()
    tid = c["tid"].astype("int64").tolist()
    start, end = c["start"].astype("int64").tolist(), c["end"].astype("int64").tolist()
    go_frames = Frames(go.tables) if go is not None else None
    run = c["run"].to_numpy()
    python_stack = [
        py_frames[runs.at[r, "source"]].strings(runs.at[r, "stack_id"]) if r >= 0 else []
        for r in run
    ]
    restarts = [
        (0 if pd.isna(r) else int(r)) if s else None
        for r, s in zip(column(c, "slices", "restarts"), is_sys, strict=True)
    ]
    fd = column(c, "slices", "fd")
    return blocking_table(
        n,
        pid=c["pid"].astype("int64").tolist(),
        tid=tid,
        goid=c["goid"].tolist(),
        thread=[names.get(t) for t in tid],
        comm=[comms.get(t) for t in tid],
        library=c["library"].tolist(),
        **{"in": c["where"].tolist()},
        call=c["call"].tolist(),
        call_start_ns=c["call_start_ns"].tolist(),
        call_end_ns=c["call_end_ns"].tolist(),
        syscall=np.where(is_sys, c["name"].astype(object).to_numpy(), None).tolist(),
        start_ns=start,
        end_ns=end,
        dur_ns=[e - s for s, e in zip(start, end, strict=True)],
        off_cpu_ns=c["off_cpu_ns"].tolist(),
        off_cpu_state=c["off_cpu_state"].tolist(),
        restarts=restarts,
        censored=c["censored"].tolist(),
        evidence=c["evidence"].tolist(),
        call_site=c["call_site"].tolist(),
        go_stack=[
            go_frames.strings(s) if go_frames is not None and s is not None else []
            for s in c["go_stack_id"]
        ],
        native_stack=[perf_frames.strings(s) for s in c["stack_id"]],
        python_stack=python_stack,
        on_cpu_ns=c["on_cpu_ns"].tolist(),
        runq_ns=c["runq_ns"].tolist(),
        tracer_stop_ns=c["tracer_stop_ns"].astype("int64").tolist(),
        p_lost=c["p_lost"].tolist(),
        fd=[None if pd.isna(x) else int(x) for x in fd],
        in_inferred=c["in_inferred"].astype(bool).tolist(),
        source=c["source"].astype(str).tolist(),
    )


def _pyspy_records(
    runs: pd.DataFrame,
    lib: Library,
    names: dict[int, str],
    comms: dict[int, str],
    py_frames: dict[str, Frames],
    min_block_ns: int,
) -> pd.DataFrame:
    """py-spy alone: waiting runs in the library; the syscall from the libc leaf frame."""
    r = runs[runs["blocking"] & (runs["end"] - runs["start"] >= min_block_ns)]
    n = len(r)
    tid = r["tid"].astype("int64").tolist()
    start, end = r["start"].astype("int64").tolist(), r["end"].astype("int64").tolist()
    return blocking_table(
        n,
        pid=r["pid"].astype("int64").tolist(),
        tid=tid,
        thread=[names.get(t) for t in tid],
        comm=[comms.get(t) for t in tid],
        library=[lib.name] * n,
        **{"in": [IN_LIBRARY] * n},
        call=r["call"].tolist(),
        call_start_ns=start,
        call_end_ns=end,
        syscall=[min(w) if w else None for w in r["waits_in"]],
        start_ns=start,
        end_ns=end,
        dur_ns=[e - s for s, e in zip(start, end, strict=True)],
        evidence=[["pyspy-stack"] for _ in range(n)],
        call_site=r["call_site"].tolist(),
        python_stack=[
            py_frames[s].strings(x) for s, x in zip(r["source"], r["stack_id"], strict=True)
        ],
        in_inferred=[False] * n,
        source=r["source"].astype(str).tolist(),
    )
