"""Step: each library call's latency split: where its wall time went."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..joins import overlap_pairs
from ..step import step
from ..tables import Tables
from .attribute import IN_CALLER, IN_LIBRARY, IN_PY_RUNTIME, IN_RUNTIME, IN_TRACER
from .candidates import TRACER_STOP_STATES

#: the call column each record's ``in`` adds its time to
SPLIT_COLUMNS = {
    IN_LIBRARY: "library_blocked_ns",
    IN_RUNTIME: "runtime_ns",
    IN_CALLER: "caller_ns",
    IN_PY_RUNTIME: "python_runtime_ns",
    IN_TRACER: "tracer_ns",
}
#: the rest of the call's time, from perf's scheduler events outside the records
REST_COLUMNS = ("runq_ns", "short_wait_ns", "on_cpu_ns")


@step(
    reads={
        "calls": ("*", "tid", "start", "end", "p_wait_ns"),
        "blocking": ("tid", "start_ns", "end_ns", "in", "tracer_stop_ns"),
        "intervals": ("kind", "tid", "start", "end", "name"),
    },
    adds={"calls": (*SPLIT_COLUMNS.values(), *REST_COLUMNS)},
)
def call_split(t: Tables) -> dict:
    """Each call's time as its goroutine lived it (``start`` to ``end`` + ``p_wait_ns``: until
    it ran again, after a C call that lost its P), split so that the parts add up to it:
    the time of its records by whose it is (``library_blocked_ns``, ``runtime_ns``: the Go
    runtime's, ``caller_ns``: the caller's own C code, ``python_runtime_ns``: the GIL), the
    tracer's stops (``tracer_ns``, inside records or not), and outside the records, from
    perf's scheduler events: waiting for a CPU (``runq_ns``), off CPU in waits too short to
    be records (``short_wait_ns``) and on CPU (``on_cpu_ns``). Exact to the clock
    alignment's error; without perf, only the record columns are known and the rest is
    ``on_cpu_ns`` by default."""
    calls = t.calls
    if not len(calls):
        return {}
    n = len(calls)
    c_tid = calls["tid"].to_numpy(np.int64)
    c_start = calls["start"].to_numpy(np.int64)
    c_end = c_start + np.maximum(calls["end"].to_numpy(np.int64) - c_start, 0)
    c_end = c_end + calls["p_wait_ns"].fillna(0).to_numpy(np.int64)
    split = {col: np.zeros(n, np.int64) for col in (*SPLIT_COLUMNS.values(), *REST_COLUMNS)}
    b = t.blocking
    rec = (
        (b["tid"].to_numpy(np.int64), b["start_ns"].to_numpy(np.int64),
         b["end_ns"].to_numpy(np.int64))
        if len(b) else (np.zeros(0, np.int64),) * 3
    )  # fmt: skip
    if len(b):
        _record_parts(b, rec, (c_tid, c_start, c_end), split)
    if t.intervals is not None and len(t.intervals):
        _scheduler_parts(t.intervals, rec, (c_tid, c_start, c_end), split)
    taken = sum(split[c] for c in split if c != "on_cpu_ns")
    split["on_cpu_ns"] = np.maximum(c_end - c_start - taken, 0)
    return {"calls": calls.assign(**split)}


def _record_parts(b: pd.DataFrame, rec: tuple, calls: tuple, split: dict) -> None:
    """Each record's time inside each call, to the column of its ``in``; the tracer's stops
    inside it to ``tracer_ns`` (in proportion to the part inside the call)."""
    qi, ci = overlap_pairs(*rec, *calls)
    if not len(qi):
        return
    r_start, r_end = rec[1][qi], rec[2][qi]
    ov = np.minimum(r_end, calls[2][ci]) - np.maximum(r_start, calls[1][ci])
    dur = np.maximum(r_end - r_start, 1)
    stop = b["tracer_stop_ns"].fillna(0).to_numpy(np.int64)[qi]
    stop_part = np.where(b["in"].to_numpy(object)[qi] == IN_TRACER, 0, stop * ov // dur)
    where = b["in"].astype(str).to_numpy()[qi]
    for kind, col in SPLIT_COLUMNS.items():
        sel = where == kind
        np.add.at(split[col], ci[sel], (ov - stop_part)[sel])
    np.add.at(split["tracer_ns"], ci, stop_part)


def _scheduler_parts(intervals: pd.DataFrame, rec: tuple, calls: tuple, split: dict) -> None:
    """The off-CPU intervals inside each call that no record holds: waiting for a CPU
    (state R), stopped by a tracer (t), or in a wait shorter than a record."""
    off = intervals[(intervals["kind"] == "os.offcpu").to_numpy(bool)]
    o_tid, o_start = off["tid"].to_numpy(np.int64), off["start"].to_numpy(np.int64)
    o_end = off["end"].to_numpy(np.int64)
    held = np.zeros(len(off), bool)
    if len(rec[0]):
        hi, _ = overlap_pairs(o_tid, o_start, o_end, *rec)
        held[hi] = True
    free = np.flatnonzero(~held)
    qi, ci = overlap_pairs(o_tid[free], o_start[free], o_end[free], *calls)
    if not len(qi):
        return
    rows = free[qi]
    ov = np.minimum(o_end[rows], calls[2][ci]) - np.maximum(o_start[rows], calls[1][ci])
    state = off["name"].astype(str).to_numpy()[rows]
    runq = state == "R"
    stopped = np.isin(state, TRACER_STOP_STATES)
    np.add.at(split["runq_ns"], ci[runq], ov[runq])
    np.add.at(split["tracer_ns"], ci[stopped], ov[stopped])
    np.add.at(split["short_wait_ns"], ci[~runq & ~stopped], ov[~runq & ~stopped])
