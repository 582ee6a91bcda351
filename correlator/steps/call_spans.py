"""Step: every cgo call of the Go trace, on the reference clock."""

from __future__ import annotations

from ..calls import go_spans
from ..schema import CALL_SPANS
from ..step import step
from ..tables import Tables


@step(reads={"go": (), "library": ()}, adds={"cgo": tuple(c.name for c in CALL_SPANS)})
def call_spans(t: Tables) -> dict:
    """The Go trace's cgo calls (``calls.go_spans``), with whether the wrapper's name says
    it calls the library (``match``)."""
    if t.go is None or t.go.offset_ns is None:
        return {}
    return {"cgo": go_spans(t.go.tables, t.go.offset_ns, t.library)}
