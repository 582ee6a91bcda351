"""Step: which perf stacks pass through the library, which the Go runtime made, and which
the cgo call's own C code made outside the library."""

from __future__ import annotations

from ..calls import caller_stacks, gil_stacks, library_callers, library_stacks, runtime_stacks
from ..step import step
from ..tables import Tables


@step(
    reads={"perf": (), "library": ()},
    adds={
        "lib_stacks": (),
        "lib_callers": (),
        "runtime_stacks": (),
        "caller_stacks": (),
        "gil_stacks": (),
    },
)
def perf_stacks(t: Tables) -> dict:
    """``lib_stacks``: perf stack id -> the outermost library function in it (a callchain
    through the library); ``lib_callers``: the frame that called the library in them (a C
    program's call site); ``runtime_stacks``: stacks of syscalls the Go runtime made;
    ``caller_stacks``: stacks whose whole C part, up to the cgo entry, is the caller's;
    ``gil_stacks``: stacks of the Python interpreter waiting for the GIL."""
    if t.perf is None:
        return {}
    return {
        "lib_stacks": library_stacks(t.perf.tables, t.library),
        "lib_callers": library_callers(t.perf.tables, t.library),
        "runtime_stacks": frozenset(runtime_stacks(t.perf.tables)),
        "caller_stacks": frozenset(caller_stacks(t.perf.tables, t.library)),
        "gil_stacks": frozenset(gil_stacks(t.perf.tables)),
    }
