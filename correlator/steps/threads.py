"""Step: the names of the threads the correlated sources saw."""

from __future__ import annotations

from ..names import kernel_comms, thread_names
from ..step import step
from ..tables import Tables


@step(
    reads={"perf": (), "go": (), "py": ()},
    adds={"thread_names": (), "kernel_comms": ()},
)
def threads(t: Tables) -> dict:
    """Thread id -> name (the first source naming it: perf, the Go trace, py-spy) and the
    kernel's comm of each thread (perf's)."""
    tables = [a.tables for a in [t.perf, t.go, *t.py] if a is not None]
    return {"thread_names": thread_names(tables), "kernel_comms": kernel_comms(tables)}
