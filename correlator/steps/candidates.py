"""Step: the candidates, perf intervals long enough to be blocking records."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..joins import holding_span
from ..step import step
from ..tables import Tables

#: stopped by a tracer (py-spy's own ptrace stops): the profiler's time, not the program's
TRACER_STOP_STATES = ("t", "T")


def tracer_stop_rows(frame: pd.DataFrame) -> np.ndarray:
    """Which rows of an intervals-like frame (kind, name) are off-CPU stops by a tracer."""
    return ((frame["kind"] == "os.offcpu") & frame["name"].isin(TRACER_STOP_STATES)).to_numpy(bool)


@step(
    reads={"intervals": ("*", "kind", "tid", "start", "end", "dur", "name"), "min_block_ns": ()},
    adds={"candidates": ("*",)},
)
def candidates(t: Tables) -> dict:
    """Syscalls of at least ``min_block``, and off-CPU intervals that long outside any
    syscall (preempted, or stopped by a tracer, inside a call), every interval column kept:
    the syscalls in interval order, then the lone off-CPU intervals by start."""
    if t.intervals is None:
        return {}
    return {"candidates": long_intervals(t.intervals, t.min_block_ns)}


def long_intervals(intervals: pd.DataFrame, min_block_ns: int) -> pd.DataFrame:
    kind = intervals["kind"]
    is_sys = (kind == "os.syscall").to_numpy()
    tid, start, end = (intervals[k].to_numpy(np.int64) for k in ("tid", "start", "end"))
    dur = intervals["dur"].to_numpy()
    off = np.flatnonzero((kind == "os.offcpu").to_numpy())
    off = off[np.lexsort((off, start[off]))]  # by start, ties in interval order
    sys_rows = np.flatnonzero(is_sys)
    sysc = pd.DataFrame({"tid": tid[sys_rows], "start": start[sys_rows], "end": end[sys_rows]})
    lone = off[holding_span(tid[off], start[off], end[off], sysc, 0) < 0]
    long_sys = sys_rows[dur[sys_rows] >= min_block_ns]
    rows = np.concatenate([long_sys, lone[dur[lone] >= min_block_ns]])
    return intervals.take(rows).reset_index(drop=True)
