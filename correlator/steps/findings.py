"""Step: the pitfalls named from the traces (``findings.findings``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..findings import findings as pitfalls
from ..names import thread_names
from ..schema import THREAD_STARTS
from ..step import step
from ..tables import Aligned, Tables


@step(
    reads={
        "blocking": ("*",),
        "calls": ("*",),
        "cgo": ("*",),
        "connections": ("*",),
        "conn_use": ("*",),
        "go": (),
        "perf": (),
        "sources": (),
        "library": (),
    },
    adds={"thread_starts": tuple(c.name for c in THREAD_STARTS), "findings": ()},
)
def findings(t: Tables) -> dict:
    """Every finding, worst first, from the records, the calls, the connections and when each
    thread started (``thread_starts``)."""
    starts = thread_starts(t.go, t.perf)
    return {
        "thread_starts": starts,
        "findings": pitfalls(t, t.library, starts, thread_names(t.sources)),
    }


def _first_by_thread(tid: np.ndarray, ts: np.ndarray, chunk: int = 1 << 18) -> pd.Series:
    """The earliest ts of each thread (tid > 0), by tid: worked a chunk of rows at a time, so
    a Go trace's millions of slices are not copied whole to be grouped."""
    acc = pd.Series(dtype="int64")
    for a in range(0, len(tid), chunk):
        t, x = tid[a : a + chunk], ts[a : a + chunk]
        on = t > 0
        part = pd.Series(x[on]).groupby(t[on]).min()
        acc = part if not len(acc) else pd.concat([acc, part]).groupby(level=0).min()
    return acc.astype("int64")


def thread_starts(go: Aligned | None, perf: Aligned | None) -> pd.DataFrame:
    """pid, tid, first_ns: when each thread was created (perf's fork records: exact) or first
    seen later than the start of the Go trace (a thread seen from its start was already
    there). Reference clock."""
    parts = []
    if perf is not None and perf.offset_ns is not None and len(perf.tables.instants):
        i = perf.tables.instants
        f = i[(i["kind"] == "os.fork").to_numpy()]
        parts.append(
            pd.DataFrame({"pid": f["pid"], "tid": f["tid"], "first_ns": f["ts"] + perf.offset_ns})
        )
    if go is not None and go.offset_ns is not None and len(go.tables.slices):
        sl = go.tables.slices
        tid, ts = sl["tid"].to_numpy(), sl["ts"].to_numpy()
        first = _first_by_thread(tid, ts)
        begin = int(ts.min())
        first = first[first > begin + 1_000_000]  # there from the start: not created
        on_thread = np.flatnonzero(tid > 0)
        pid = int(sl["pid"].iloc[on_thread[0]]) if len(on_thread) else -1
        parts.append(
            pd.DataFrame(
                {
                    "pid": pid,
                    "tid": first.index.to_numpy(),
                    "first_ns": first.to_numpy() + go.offset_ns,
                }
            )
        )
    if not parts:
        return pd.DataFrame({"pid": [], "tid": [], "first_ns": []}, dtype="int64")
    out = pd.concat(parts, ignore_index=True).astype("int64")
    return out.sort_values("first_ns").drop_duplicates("tid").reset_index(drop=True)
