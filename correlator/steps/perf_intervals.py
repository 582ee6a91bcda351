"""Step: perf's syscalls and off-CPU intervals on the reference clock."""

from __future__ import annotations

import pandas as pd

from ...parsers.model import column
from ..step import step
from ..tables import Tables

_INTERVALS = ("start", "end", "start_open", "end_open", "lost")


@step(reads={"perf": ()}, adds={"intervals": ("*", *_INTERVALS)})
def perf_intervals(t: Tables) -> dict:
    """perf's syscalls and off-CPU intervals (every canonical slice column) with ``start`` /
    ``end`` on the reference clock, which edges perf did not see (``start_open``,
    ``end_open``) and whether it lost events while they lasted (``lost``). None when perf is
    absent or not aligned."""
    perf = t.perf
    if perf is None or perf.offset_ns is None:
        return {}
    return {"intervals": intervals_of(perf.tables.slices, perf.offset_ns)}


def intervals_of(s: pd.DataFrame, offset_ns: int) -> pd.DataFrame:
    keep = s["kind"].isin(["os.syscall", "os.offcpu"]).to_numpy()
    if not keep.all():  # perf's slices are all intervals: no copy of the whole table then
        s = s[keep]
    is_sys = (s["kind"] == "os.syscall").to_numpy()
    lost = column(s, "slices", "lost_inside").to_numpy(bool)
    return s.assign(
        # on a shared clock (offset 0) start is ts itself: the same buffer, not a copy
        start=s["ts"] if offset_ns == 0 else s["ts"] + offset_ns,
        end=s["ts"] + s["dur"] + offset_ns,
        start_open=column(s, "slices", "start_unknown").to_numpy(bool),
        # perf lost events while it lasted: the exit it was paired with may be a later
        # syscall's, so only its start is sure
        end_open=(column(s, "slices", "end_unknown").to_numpy(bool) | lost) & is_sys,
        lost=lost,
    )
