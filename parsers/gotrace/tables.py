"""Goroutine transitions -> the canonical tables.

Slices, one per stretch of a goroutine's life between two transitions:

    go.running   on its thread (tid = M)                name "running"
    go.syscall   on its thread (tid = M), begin stack   name = leaf frame, e.g.
                 main._Cfunc_redisCommandArgv or syscall.read; p_lost = the P was taken
                 while it was in the call (GoSyscallEndBlocked: the runtime handed the P off)
    go.blocked   off-thread (tid = -1), block stack     name = block reason ("chan receive")
    go.runnable  off-thread (tid = -1)                  name = why: the stop reason
                 ("preempted"), "unblocked", "created", "syscall returned without its P"

A stretch still open when the trace ends runs to the last event and has ``end_unknown``; one
that began before the trace (a first-generation status) has ``start_unknown``. Repeated
status events (same state each generation) do not split a stretch. ``p_lost`` (go.syscall
only) is NA when the call had not returned by the end of the trace.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..columns import Interner
from ..model import Clock, SourceMeta, SourceTables, args_table, make_table, stacks_table
from . import GoTrace
from .events import EV
from .states import RUNNABLE, RUNNING, SYSCALL, WAITING
from .stretches import P_LOST, START_UNKNOWN, TRUNCATED

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
    return stacks_table(
        source,
        (
            tuple((fn, file, line, package_of(fn), "go", pc) for pc, fn, file, line in frames)
            for frames in tr.stacks.frames
        ),
    )


def _slices_table(tr: GoTrace, source: str, pid: int) -> pd.DataFrame:
    c = tr.stretches
    if not len(c):
        return make_table("slices")
    kind_code = np.full(6, -1, np.int8)
    kind_code[list(_KIND)] = np.arange(len(_KIND))
    kind = pd.Categorical.from_codes(kind_code[c.state], categories=list(_KIND.values()))

    # name: one category list, codes chosen per state without per-row Python objects
    names: Interner[str] = Interner()
    leaf = np.array(
        [names.id("syscall")] + [names.id(f[0][1] if f else "syscall") for f in tr.stacks.frames],
        np.int32,
    )
    reason = np.array([names.id(x or "waiting") for x in tr.strings], np.int32)
    stop_reason = np.array([names.id(x or "stopped") for x in tr.strings], np.int32)
    cause = np.full(256, names.id("runnable"), np.int32)
    for typ, text in _RUNNABLE_CAUSE.items():
        cause[typ] = names.id(text)
    code = np.full(len(c), names.id("running"), np.int32)
    sc, wt, rn = c.state == SYSCALL, c.state == WAITING, c.state == RUNNABLE
    code[sc] = leaf[c.stack[sc]]
    code[wt] = reason[c.reason[wt]]
    code[rn] = cause[c.entered_by[rn]]
    by_stop = rn & (c.entered_by == EV.GoStop)
    code[by_stop] = stop_reason[c.reason[by_stop]]
    name = pd.Categorical.from_codes(code, categories=names.values)

    truncated = (c.flags & TRUNCATED) != 0
    p_lost = pd.arrays.BooleanArray((c.flags & P_LOST) != 0, ~sc | truncated)
    stack_id = pd.arrays.IntegerArray(c.stack.astype(np.int64), c.stack == 0)
    return make_table(
        "slices",
        source=source,
        pid=pid,
        tid=c.tid,
        ts=c.start,
        dur=c.dur,
        kind=kind,
        name=name,
        goid=c.goid,
        stack_id=stack_id,
        p_lost=p_lost,
        start_unknown=(c.flags & START_UNKNOWN) != 0,
        end_unknown=truncated,
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
            "goroutines": int(len(pd.unique(tr.stretches.goid))),
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
        out.args = args_table(
            source,
            "instants",
            range(len(steals)),
            ({"p": s[3], "thief_tid": s[1]} for s in steals),
        )
    return out
