"""Step: records perf saw only part of, bounded by what holds them."""

from __future__ import annotations

import numpy as np

from ..step import step
from ..tables import Tables


@step(
    reads={
        "candidates": ("start_open", "end_open", "lost", "start", "end", "span", "run"),
        "calls": ("start", "end", "source"),
        "runs": ("start", "end", "source"),
        "intervals": ("end",),
        "perf": (),
    },
    adds={"candidates": ("censored",)},
)
def censor(t: Tables) -> dict:
    """A candidate perf saw only part of (lost events, the capture's edges) has its unseen
    edge bounded by what holds it: the Go call span (exact to 64 ns), else the py-spy run,
    else (for an exit perf lost) nothing better than perf's own; ``censored`` says why and by
    what. Rewrites ``start`` and ``end``."""
    c = t.candidates
    if c is None:
        return {}
    perf_name = t.perf.tables.meta.source
    perf_end = int(t.intervals["end"].max()) if len(t.intervals) else 0
    start_open, end_open = c["start_open"].to_numpy(bool), c["end_open"].to_numpy(bool)
    lost = c["lost"].to_numpy(bool)
    start, end = c["start"].to_numpy(np.int64).copy(), c["end"].to_numpy(np.int64).copy()
    censored = np.full(len(c), None, dtype=object)
    span, run = c["span"].to_numpy(), c["run"].to_numpy()
    for i in np.flatnonzero(start_open | end_open | lost):
        if end_open[i] or lost[i]:
            # an exit lost in the middle of the recording, or the recording ended first
            reason = "perf-lost" if lost[i] or end[i] < perf_end else "capture-end"
        else:
            reason = "capture-start"
        if not np.isnan(span[i]):
            row = t.calls.iloc[int(span[i])]
            lo, hi, by = int(row["start"]), int(row["end"]), str(row["source"])
        elif run[i] >= 0:
            row = t.runs.iloc[int(run[i])]
            lo, hi, by = int(row["start"]), int(row["end"]), str(row["source"])
        else:
            lo, hi, by = start[i], end[i], perf_name
        if start_open[i]:
            start[i] = max(start[i], lo)
        if end_open[i]:
            end[i] = min(end[i], hi)
        censored[i] = {"reason": reason, "bound_by": by}
    return {"candidates": c.assign(start=start, end=np.maximum(end, start), censored=censored)}
