"""Which logged Python calls perf saw wait: the calls a Python capture owes a record for.

A Python call can be slow without waiting in a syscall (the GIL, py-spy's stops), and then
no record is owed. py-spy's default mode stops the process with ptrace to sample it; on a
loaded machine py-spy can be descheduled while the thread is stopped, and the stop then
stretches whatever syscall the thread was in (found in CI: a PING's poll lasted 60 ms, all
of it in state ``t``, while py-spy never sampled the call). So a wait counts only for the
time the thread was not held stopped by the tracer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from tracecorr.parsers.model import column

#: Off-CPU states in which a tracer held the thread (ptrace stops).
TRACED = ("t", "T")


def perf_waits(slices: pd.DataFrame, min_ns: int) -> list[tuple[int, int, int]]:
    """(tid, start, end) of the syscalls in perf's *slices* during which the thread waited
    at least *min_ns*, not counting the time it spent stopped by a tracer."""
    sys = slices[(slices["kind"] == "os.syscall").to_numpy() & (slices["dur"] >= min_ns).to_numpy()]
    off = slices[(slices["kind"] == "os.offcpu").to_numpy()]
    state = column(off, "slices", "state").astype(object).to_numpy()
    stops = off[np.isin(state, TRACED)]
    out = []
    for tid, ts, dur in zip(sys["tid"], sys["ts"], sys["dur"], strict=True):
        end = ts + dur
        mine = stops[(stops["tid"] == tid).to_numpy()]
        s0 = np.maximum(mine["ts"].to_numpy(np.int64), ts)
        s1 = np.minimum((mine["ts"] + mine["dur"]).to_numpy(np.int64), end)
        stopped = int(np.maximum(s1 - s0, 0).sum())
        if dur - stopped >= min_ns:
            out.append((int(tid), int(ts), int(end)))
    return out


def perf_blocked(slices: pd.DataFrame, min_ns: int) -> Callable[[dict], bool]:
    """For a logged call *c* (tid, t0, t1): did perf see its thread wait at least *min_ns*
    in one syscall inside the call (tracer stops not counted)?"""
    waits = perf_waits(slices, min_ns)

    def blocked(c: dict) -> bool:
        return any(t == c["tid"] and c["t0"] <= s and e <= c["t1"] for t, s, e in waits)

    return blocked
