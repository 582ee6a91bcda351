"""Step: who woke each record's thread, and the chain of wakeups behind it."""

from __future__ import annotations

from ..step import step
from ..tables import Tables
from ..wakers import Wakers
from ..wakers import wakers as with_wakers


@step(
    reads={
        "blocking": ("*", "pid", "tid", "start_ns", "end_ns"),
        "intervals": (),
        "perf": (),
        "kernel_comms": (),
    },
    adds={"blocking": ("waker", "critical_path", "waker_note")},
    release=True,
)
def wakers(t: Tables) -> dict:
    """``waker`` (the thread whose wakeup ended the record's wait, its stack and what it
    waited in meanwhile), ``critical_path`` (who woke the waker, and so on) and, when none is
    given, ``waker_note`` saying why (``wakers.wakers``)."""
    if t.intervals is None or not len(t.blocking):
        return {}
    perf = t.perf
    others = set(perf.tables.threads["pid"].tolist()) - {0, -1}
    recorded = len(others - set(t.blocking["pid"].tolist())) > 0
    found = with_wakers(t.blocking, Wakers(perf.tables, perf.offset_ns, t.kernel_comms), recorded)
    return {"blocking": found}
