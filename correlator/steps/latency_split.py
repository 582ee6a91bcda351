"""Step: where each candidate's time went: off CPU (by state), stopped by a tracer, waiting
on the runqueue, on CPU."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...parsers.model import column
from ..joins import overlap_pairs
from ..step import step
from ..tables import Tables
from .candidates import TRACER_STOP_STATES, tracer_stop_rows

_ADDS = ("off_cpu_ns", "off_cpu_state", "runq_ns", "on_cpu_ns", "tracer_stop_ns")


def tracer_stops(intervals: pd.DataFrame | None) -> dict:
    """The tracer's stops (state t: py-spy's ptrace) over the whole capture: how many, how
    long, on how many threads; what the profiler cost the program, inside calls or not."""
    if intervals is None or not len(intervals):
        return {"stops": 0, "ns": 0, "threads": 0}
    s = intervals[tracer_stop_rows(intervals)]
    ns = (s["end"].to_numpy(np.int64) - s["start"].to_numpy(np.int64)).sum() if len(s) else 0
    return {"stops": int(len(s)), "ns": int(ns), "threads": int(s["tid"].nunique())}


@step(
    reads={
        "candidates": ("kind", "tid", "start", "end", "name", "runq_ns"),
        "intervals": ("kind", "tid", "start", "end", "name", "runq_ns"),
    },
    adds={"candidates": _ADDS, "tracer_stops": ()},
)
def latency_split(t: Tables) -> dict:
    """``off_cpu_ns``, ``off_cpu_state`` (the state most of it was spent in; ties: the
    first state name), ``tracer_stop_ns`` (stopped by a tracer: the profiler's cost, py-spy's
    ptrace stops), ``runq_ns`` (wakeup -> running, summed over the intervals where the wakeup
    was seen; None when it never was) and ``on_cpu_ns``. A syscall's off-CPU time is that of
    the off-CPU intervals inside it; an off-CPU record is all off CPU (a stop, all the
    tracer's). ``tracer_stops``: the tracer's stops over the whole capture."""
    c = t.candidates
    if c is None:
        return {}
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
    pairs = _offcpu_inside_syscalls(c, is_sys, t.intervals)
    if len(pairs):
        total = pairs.groupby("rec")["ov"].sum()
        off_ns[total.index.to_numpy()] = total.astype("int64").tolist()
        stopped = pairs[pairs["state"].isin(TRACER_STOP_STATES)].groupby("rec")["ov"].sum()
        tracer[stopped.index.to_numpy()] = stopped.to_numpy()
        by_state = pairs.groupby(["rec", "state"])["ov"].sum().reset_index()
        by_state = by_state.sort_values(["rec", "ov", "state"], ascending=[True, False, True])
        top = by_state.drop_duplicates("rec")
        state[top["rec"].to_numpy()] = top["state"].to_numpy()
        known = pairs[~np.isnan(pairs["q"].to_numpy())]
        if len(known):
            s = known.groupby("rec")["q"].sum()
            runq[s.index.to_numpy()] = [int(x) for x in s]
    on_cpu = np.array([d - o for d, o in zip(dur.tolist(), off_ns, strict=True)], dtype=object)
    lone_stop = ~is_sys & c["name"].isin(TRACER_STOP_STATES).to_numpy(bool)
    tracer[lone_stop] = dur[lone_stop]
    return {
        "tracer_stops": tracer_stops(t.intervals),
        "candidates": c.assign(
            off_cpu_ns=off_ns,
            off_cpu_state=state,
            runq_ns=runq,
            on_cpu_ns=on_cpu,
            tracer_stop_ns=tracer,
        ),
    }


def _offcpu_inside_syscalls(
    c: pd.DataFrame, is_sys: np.ndarray, intervals: pd.DataFrame
) -> pd.DataFrame:
    """rec (candidate row), state, ov (ns of overlap), q (its runq_ns, NaN: unknown): one
    row per off-CPU interval overlapping a syscall candidate on its thread."""
    off = np.flatnonzero((intervals["kind"] == "os.offcpu").to_numpy())
    off_start = intervals["start"].to_numpy(np.int64)[off]
    by_start = np.lexsort((off, off_start))  # ties: interval order
    off, off_start = off[by_start], off_start[by_start]
    off_end = intervals["end"].to_numpy(np.int64)[off]
    sys_rows = np.flatnonzero(is_sys)
    start, end = c["start"].to_numpy(np.int64), c["end"].to_numpy(np.int64)
    qi, oi = overlap_pairs(
        c["tid"].to_numpy(np.int64)[sys_rows],
        start[sys_rows],
        end[sys_rows],
        intervals["tid"].to_numpy(np.int64)[off],
        off_start,
        off_end,
    )
    rec = sys_rows[qi]
    ov = np.maximum(np.minimum(off_end[oi], end[rec]) - np.maximum(off_start[oi], start[rec]), 0)
    q = column(intervals, "slices", "runq_ns").to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.DataFrame(
        {
            "rec": rec,
            "state": intervals["name"].take(off[oi]).astype(object).to_numpy(),
            "ov": ov,
            "q": q[off[oi]],
        }
    )
