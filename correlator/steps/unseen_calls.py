"""Step: library calls that blocked where perf, having lost events, saw no syscall."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..frames import Frames
from ..joins import overlap_pairs
from ..step import step
from ..tables import Tables
from .attribute import IN_LIBRARY
from .records import blocking_table

#: a library call perf saw less of than this (syscall time / call time) while perf lost events
UNSEEN_COVER = 0.5


@step(
    reads={
        "calls": (
            *("source", "pid", "tid", "goid", "start", "end", "call", "library"),
            *("evidence", "call_site", "stack_id", "p_lost"),
        ),
        "intervals": ("kind", "tid", "start", "end", "start_open", "end_open"),
        "blocking": ("*", "tid", "call_start_ns"),
        "perf": (),
        "go": (),
        "thread_names": (),
        "kernel_comms": (),
        "min_block_ns": (),
        "tolerance_ns": (),
    },
    adds={"blocking": ()},
)
def unseen_calls(t: Tables) -> dict:
    """A record for each library call that blocked (by the Go trace) where perf, having lost
    events, saw no syscall covering it: bounded by the Go span, censored. Without it a lost
    perf buffer would lose the call (its read's enter, exit and switches all gone)."""
    if t.intervals is None or not len(t.calls) or not t.perf.tables.meta.extra.get("lost_events"):
        return {}
    unseen = _unseen(t)
    if not len(unseen):
        return {}
    return {"blocking": pd.concat([t.blocking, unseen], ignore_index=True)}


def _covered_ns(sp: pd.DataFrame, intervals: pd.DataFrame, tol_ns: int) -> np.ndarray:
    """Per call, the ns of syscalls perf saw whole inside it on its thread (one whose exit
    was lost, or paired across a loss, may stand for several calls' worth of time)."""
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
    s_start, s_end = sysc["start"].to_numpy()[si], sysc["end"].to_numpy()[si]
    c_start, c_end = sp["start"].to_numpy()[qi], sp["end"].to_numpy()[qi]
    # whole inside: a syscall crossing a cgo call's edge on its thread cannot be (the thread
    # ran Go code there), so it is two syscalls perf paired across a loss it placed elsewhere
    whole = (s_start >= c_start - tol_ns) & (s_end <= c_end + tol_ns)
    np.add.at(cover, qi[whole], (s_end - s_start)[whole])
    return cover


def _unseen(t: Tables) -> pd.DataFrame:
    calls = t.calls
    sp = calls[(calls["end"] - calls["start"] >= t.min_block_ns).to_numpy()]
    sp = sp.reset_index(drop=True)
    if not len(sp):
        return blocking_table()
    cover = _covered_ns(sp, t.intervals, t.tolerance_ns)
    dur = (sp["end"] - sp["start"]).to_numpy(np.int64)
    b = t.blocking
    seen = set(zip(b["tid"].tolist(), b["call_start_ns"].tolist(), strict=True))
    keep = [
        i
        for i in np.flatnonzero(cover < UNSEEN_COVER * dur)
        if (int(sp.at[i, "tid"]), int(sp.at[i, "start"])) not in seen
    ]
    if not keep:
        return blocking_table()
    u = sp.iloc[keep]
    frames = Frames(t.go.tables)
    tid = u["tid"].astype("int64").tolist()
    start, end = u["start"].astype("int64").tolist(), u["end"].astype("int64").tolist()
    n = len(u)
    return blocking_table(
        n,
        pid=u["pid"].astype("int64").tolist(),
        tid=tid,
        goid=[None if pd.isna(g) else int(g) for g in u["goid"]],
        thread=[t.thread_names.get(x) for x in tid],
        comm=[t.kernel_comms.get(x) for x in tid],
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
