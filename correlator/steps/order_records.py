"""Step: the records in time order."""

from __future__ import annotations

from ..step import step
from ..tables import Tables


@step(reads={"blocking": ("*", "start_ns", "tid")}, adds={"blocking": ()})
def order_records(t: Tables) -> dict:
    """The records by start, then thread (a stable sort: ties keep the order they came in)."""
    if not len(t.blocking):
        return {}
    b = t.blocking.sort_values(["start_ns", "tid"], kind="stable").reset_index(drop=True)
    return {"blocking": b}
