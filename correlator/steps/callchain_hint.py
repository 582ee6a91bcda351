"""Step: say so when frame-pointer callchains could not see the library."""

from __future__ import annotations

from ...parsers.model import SourceTables
from ..step import step
from ..tables import Tables


@step(
    reads={"perf": (), "go": (), "py": (), "calls": (), "library": (), "min_block_ns": ()},
    adds={"warnings": ()},
)
def callchain_hint(t: Tables) -> dict:
    """perf alone, no library call found, and most long syscalls' callchains stop right
    above libc: the library was built without frame pointers; a warning says how to record
    so that it is seen."""
    perf = t.perf
    if perf is None or t.go is not None or t.py or len(t.calls):
        return {}
    cut, total = cut_callchains(perf.tables, t.min_block_ns)
    if not total or cut * 2 < total:
        return {}
    return {
        "warnings": (
            *t.warnings,
            f"{perf.tables.meta.source}: no {t.library.name} frame in any callchain, and {cut} "
            f"of {total} blocking syscalls' callchains stop right above libc (frame "
            f"pointers cannot see through a library built without them): record with "
            f"--call-graph dwarf (tracecorr unwinds it from perf.data), or add a Go "
            f"trace or py-spy",
        )
    }


def cut_callchains(perf: SourceTables, min_block_ns: int) -> tuple[int, int]:
    """(cut, total): of the perf syscalls lasting at least *min_block_ns*, how many have a
    callchain with at most one known user frame (the libc wrapper, then nothing)."""
    s = perf.slices
    sc = s[(s["kind"] == "os.syscall").to_numpy() & (s["dur"] >= min_block_ns).to_numpy()]
    sids = sc["stack_id"].dropna().astype("int64")
    if not len(sids):
        return 0, 0
    st = perf.stacks
    user = st[(st["frame_kind"] != "kernel").to_numpy()]
    known = user[~user["function"].astype(str).str.startswith("[unknown")]
    depth = known.groupby("stack_id").size()
    per = depth.reindex(sids.to_numpy(), fill_value=0).to_numpy()
    return int((per <= 1).sum()), int(len(per))
