"""Step: each library call's latency split."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..step import step
from ..tables import Tables
from .attribute import IN_CALLER, IN_LIBRARY, IN_PY_RUNTIME, IN_RUNTIME, IN_TRACER

#: the call column each record's ``in`` adds its time to
SPLIT_COLUMNS = {
    IN_LIBRARY: "library_blocked_ns",
    IN_RUNTIME: "runtime_ns",
    IN_CALLER: "caller_ns",
    IN_PY_RUNTIME: "python_runtime_ns",
    IN_TRACER: "tracer_ns",
}


@step(
    reads={
        "calls": ("*", "tid", "start"),
        "blocking": ("goid", "tid", "call_start_ns", "dur_ns", "in"),
    },
    adds={"calls": tuple(SPLIT_COLUMNS.values())},
)
def call_split(t: Tables) -> dict:
    """``library_blocked_ns`` (the call's blocking records in the library), ``runtime_ns``
    (its records in the Go runtime, inside the call or while its thread waited for a P after
    it), ``caller_ns`` (in the caller's own C code inside the cgo call) and
    ``python_runtime_ns`` (the interpreter's: waiting for the GIL) and ``tracer_ns``
    (stopped by a tracer outside syscalls); with ``p_wait_ns`` (the Go trace's) the call's
    latency split."""
    calls, blocking = t.calls, t.blocking
    if not len(calls):
        return {}
    n = len(calls)
    split = {col: np.zeros(n, np.int64) for col in SPLIT_COLUMNS.values()}
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
                "in": b["in"].astype(str).to_numpy(),
            }
        ).merge(key, on=["tid", "start"])
        if len(rec):
            for (i, where), d in rec.groupby(["i", "in"])["dur"].sum().items():
                split[SPLIT_COLUMNS.get(where, "library_blocked_ns")][i] += int(d)
    return {"calls": calls.assign(**split)}
