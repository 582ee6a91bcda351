"""Step: the report's summary (``summary.summarise``)."""

from __future__ import annotations

from ..step import step
from ..summary import summarise
from ..tables import Tables


@step(
    reads={"blocking": ("*",), "calls": ("*",), "min_block_ns": (), "tracer_stops": ()},
    adds={"summary": ()},
)
def summary(t: Tables) -> dict:
    """Blocked time by call site, syscall, thread, goroutine and waker; the latency split of
    the library calls; the threads inside library calls over time."""
    return {"summary": summarise(t.blocking, t.calls, t.min_block_ns, t.tracer_stops)}
