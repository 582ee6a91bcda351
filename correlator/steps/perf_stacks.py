"""Step: which perf stacks pass through the library, and which the Go runtime made."""

from __future__ import annotations

from ..calls import library_stacks, runtime_stacks
from ..step import step
from ..tables import Tables


@step(reads={"perf": (), "library": ()}, adds={"lib_stacks": (), "runtime_stacks": ()})
def perf_stacks(t: Tables) -> dict:
    """``lib_stacks``: perf stack id -> the outermost library function in it (a callchain
    through the library); ``runtime_stacks``: stacks of syscalls the Go runtime made."""
    if t.perf is None:
        return {}
    return {
        "lib_stacks": library_stacks(t.perf.tables, t.library),
        "runtime_stacks": frozenset(runtime_stacks(t.perf.tables)),
    }
