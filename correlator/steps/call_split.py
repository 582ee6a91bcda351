"""Step: each library call's latency split."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..step import step
from ..tables import Tables
from .attribute import IN_RUNTIME


@step(
    reads={
        "calls": ("*", "tid", "start"),
        "blocking": ("goid", "tid", "call_start_ns", "dur_ns", "in"),
    },
    adds={"calls": ("library_blocked_ns", "runtime_ns")},
)
def call_split(t: Tables) -> dict:
    """``library_blocked_ns`` (the call's blocking records in the library) and
    ``runtime_ns`` (its records in the Go runtime, inside the call or while its thread waited
    for a P after it); with ``p_wait_ns`` (the Go trace's) the call's latency split."""
    calls, blocking = t.calls, t.blocking
    if not len(calls):
        return {}
    n = len(calls)
    lib_ns, rt_ns = np.zeros(n, np.int64), np.zeros(n, np.int64)
    if len(blocking):
        b = blocking[blocking["goid"].notna()]
        key = pd.DataFrame(
            {"tid": calls["tid"].to_numpy(), "start": calls["start"].to_numpy(), "i": np.arange(n)}
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
    return {"calls": calls.assign(library_blocked_ns=lib_ns, runtime_ns=rt_ns)}
