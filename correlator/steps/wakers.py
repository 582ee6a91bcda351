"""Step: who woke each record's thread, and the chain of wakeups behind it."""

from __future__ import annotations

from ..schema import RECORD_NAMES
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
    b, perf = t.blocking, t.perf
    if t.intervals is None or not len(b):
        found = with_wakers(b, None, False)  # none to find: the columns, empty
    else:
        others = set(perf.tables.threads["pid"].tolist()) - {0, -1}
        recorded = len(others - set(b["pid"].tolist())) > 0
        found = with_wakers(b, Wakers(perf.tables, perf.offset_ns, t.kernel_comms), recorded)
    return {"blocking": found[RECORD_NAMES]}  # in the schema's order
