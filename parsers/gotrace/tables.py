"""Goroutine transitions -> the canonical tables.

Slices, one per stretch of a goroutine's life between two transitions:

    go.running   on its thread (tid = M)                name "running"
    go.syscall   on its thread (tid = M), begin stack   name = leaf frame, e.g.
                 main._Cfunc_redisCommandArgv or syscall.read; args.p_lost = the P was taken
                 while it was in the call (GoSyscallEndBlocked: the runtime handed the P off)
    go.blocked   off-thread (tid = -1), block stack     name = block reason ("chan receive")
    go.runnable  off-thread (tid = -1)                  name = why: the stop reason
                 ("preempted"), "unblocked", "created", "syscall returned without its P"

A stretch still open when the trace ends runs to the last event and has args.truncated; one
that began before the trace (a first-generation status) has args.start_unknown. Repeated
status events (same state each generation) do not split a stretch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..model import Clock, SourceMeta, SourceTables, make_table
from . import GoTrace
from .events import EV
from .states import RUNNABLE, RUNNING, SYSCALL, UNDETERMINED, WAITING

GO_CLOCK_FREQ = 15_625_000  # nanotime()/64: CLOCK_MONOTONIC on every OS but Windows
_KIND = {
    RUNNING: "go.running",
    SYSCALL: "go.syscall",
    WAITING: "go.blocked",
    RUNNABLE: "go.runnable",
}
_RUNNABLE_CAUSE = {
    EV.GoUnblock: "unblocked",
    EV.GoCreate: "created",
    EV.GoSyscallEndBlocked: "syscall returned without its P",
    EV.GoStatus: "runnable",
    EV.GoStatusStack: "runnable",
}


def package_of(function: str) -> str:
    """Go package path of a symbol: 'net/http.(*conn).serve' -> 'net/http'."""
    slash = function.rfind("/")
    dot = function.find(".", slash + 1)
    return function[:dot] if dot > 0 else function


def _stacks_table(tr: GoTrace, source: str) -> pd.DataFrame:
    rows = [
        (sid, depth, fn, file, line, package_of(fn), pc)
        for sid, frames in enumerate(tr.stacks.frames, start=1)
        for depth, (pc, fn, file, line) in enumerate(frames)
    ]
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 7
    return make_table(
        "stacks",
        source=source,
        stack_id=cols[0],
        depth=cols[1],
        function=cols[2],
        file=cols[3],
        line=cols[4],
        module=cols[5],
        frame_kind="go",
        address=cols[6],
    )


def _slices_table(tr: GoTrace, source: str, pid: int) -> pd.DataFrame:
    t = tr.transitions
    keep = ~((t.frm == t.to) & (t.frm != UNDETERMINED))  # per-generation status restatements
    t = t.take(np.flatnonzero(keep))
    n = len(t)
    if not n:
        return make_table("slices")
    has_next = np.zeros(n, bool)
    has_next[:-1] = t.goid[1:] == t.goid[:-1]
    nxt = np.minimum(np.arange(n) + 1, n - 1)
    end = np.where(has_next, t.time[nxt], tr.last_ns)
    state = t.to
    sel = np.flatnonzero(np.isin(state, list(_KIND)))
    start = t.time[sel]
    stop = end[sel]
    dur = np.maximum(stop - start, 0)  # a cross-thread clock disagreement of a few ticks

    st = state[sel]
    on_thread = (st == RUNNING) | (st == SYSCALL)
    tid = np.where(on_thread, t.m[sel], -1)
    kind = np.array([_KIND.get(s, "") for s in range(6)], dtype=object)[st]

    leaf = np.array([""] + [f[0][1] if f else "" for f in tr.stacks.frames], dtype=object)
    strings = np.array(tr.strings, dtype=object)
    name = np.full(len(sel), "running", dtype=object)
    sc = st == SYSCALL
    name[sc] = leaf[t.stack[sel][sc]]
    name[sc & (name == "")] = "syscall"
    wt = st == WAITING
    name[wt] = strings[t.reason[sel][wt]]
    rn = st == RUNNABLE
    entered_by = t.typ[sel]
    cause = np.array([_RUNNABLE_CAUSE.get(int(x), "runnable") for x in entered_by], dtype=object)
    stop_reason = strings[t.reason[sel]]
    by_stop = rn & (entered_by == EV.GoStop)
    name[rn] = cause[rn]
    name[by_stop] = stop_reason[by_stop]

    stack = t.stack[sel]
    truncated = ~has_next[sel]
    p_lost = has_next[sel] & (t.typ[nxt][sel] == EV.GoSyscallEndBlocked)
    start_unknown = t.frm[sel] == UNDETERMINED
    args = np.full(len(sel), None, dtype=object)
    flags = {}
    for i in np.flatnonzero(sc | truncated | start_unknown).tolist():
        key = (bool(sc[i]), bool(p_lost[i]), bool(truncated[i]), bool(start_unknown[i]))
        if key not in flags:  # a few shared dicts, not one per row
            d = {}
            if key[0]:
                d["p_lost"] = None if key[2] else key[1]
            if key[2]:
                d["truncated"] = True
            if key[3]:
                d["start_unknown"] = True
            flags[key] = d
        args[i] = flags[key]
    return make_table(
        "slices",
        source=source,
        pid=pid,
        tid=tid,
        ts=start,
        dur=dur,
        kind=kind,
        name=name,
        goid=t.goid[sel],
        stack_id=pd.Series(stack, dtype="Int64").mask(stack == 0),
        args=args,
    )


def to_source_tables(tr: GoTrace, source: str, pid: int | None = None) -> SourceTables:
    pid_value = -1 if pid is None else pid
    meta = SourceMeta(
        source=source, kind="go-trace", path=tr.path, format_version=f"go 1.{tr.header.version}"
    )
    meta.events.update(tr.events)
    meta.skipped.update(tr.skipped)
    meta.warnings.extend(tr.warnings)
    linux_clock = tr.frequencies == {GO_CLOCK_FREQ}
    meta.extra.update(
        {
            "read_as": f"go 1.{tr.header.read_as}",
            "generations": tr.generations,
            "frequencies": sorted(tr.frequencies),
            "first_ns": tr.first_ns,
            "last_ns": tr.last_ns,
            "goroutines": int(len(np.unique(tr.transitions.goid))),
            "pid_known": pid is not None,
        }
    )
    if tr.cut is not None:
        meta.extra["truncated_at"] = tr.cut.offset
    note = (
        "trace ticks are nanotime()/64 = CLOCK_MONOTONIC/64 (Go >= 1.22, not Windows): "
        "ns values are exact to 64 ns"
        if linux_clock
        else f"trace frequency {sorted(tr.frequencies)} Hz is not nanotime()/64: "
        "not CLOCK_MONOTONIC (Windows cputicks?); only clock snapshots can map it"
    )
    if tr.snapshots and linux_clock:
        worst = max(abs(s["mono_ns"] - s["trace_ns"]) for s in tr.snapshots)
        note += f"; clock snapshots agree with CLOCK_MONOTONIC within {worst} ns"
        if worst > 1_000_000:
            meta.warn(f"clock snapshots disagree with the trace clock by {worst} ns")
    if pid is None:
        note += "; pid unknown (the trace does not record it)"
    clock = Clock(
        "monotonic" if linux_clock else "unknown",
        resolution_ns=64 if linux_clock else max(1, round(1e9 / max(tr.frequencies))),
        snapshots=tr.snapshots,
        note=note,
    )
    threads = sorted(tr.threads)
    steals = tr.proc_steals
    instants = (
        make_table(
            "instants",
            source=source,
            pid=pid_value,
            tid=[s[2] for s in steals],
            ts=[s[0] for s in steals],
            kind="go.proc_steal",
            name="ProcSteal",
            args=[{"p": s[3], "thief_tid": s[1]} for s in steals],
        )
        if steals
        else None
    )
    out = SourceTables(
        meta=meta,
        clock=clock,
        threads=make_table("threads", source=source, pid=pid_value, tid=threads, name=None),
        slices=_slices_table(tr, source, pid_value),
        stacks=_stacks_table(tr, source),
    )
    if instants is not None:
        out.instants = instants
    return out
