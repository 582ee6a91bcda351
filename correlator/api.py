"""The entry point for the CLI and for notebooks: ``analyze(...)`` -> ``Analysis``.

    from tracecorr.correlator.api import analyze
    a = analyze(["sample_traces/go_hiredis"])
    a.blocking            # one row per blocking syscall inside a hiredis call (DataFrame)
    a.calls               # the library call spans (Go cgo calls into the library)
    a.findings            # the pitfalls named from the traces (list of dicts, worst first)
    a.connections         # connections (pid, fd lifetimes) and a.conn_use (who used them)
    a.alignments          # per source: offset onto CLOCK_MONOTONIC, method, error
    a.sources             # the parsed canonical tables, each on its own clock
    a.aligned_slices()    # every slice with ref_ts (reference clock)

The steps are the pipeline: load and parse (parsers.sources) -> align -> correlate ->
summarise; the renderers (correlator.render) only read the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..parsers.model import SourceTables, concat_frames, with_all_columns
from ..parsers.sources import Loading, begin_loading, pyspy_anchor
from . import align
from .correlate import Aligned, correlate
from .findings import findings
from .libraries import Library, library
from .names import thread_names
from .summary import summarise

KINDS = {
    "go": ("go-trace",),
    "perf": ("perf-script", "perf-data"),
    "pyspy": ("pyspy-chrometrace", "pyspy-speedscope", "pyspy-raw"),
}


@dataclass
class Analysis:
    sources: list[SourceTables]
    alignments: dict[str, align.Alignment]
    blocking: pd.DataFrame
    calls: pd.DataFrame
    summary: dict
    library: Library
    min_block_ns: int
    warnings: list[str] = field(default_factory=list)
    skipped_inputs: list[str] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)
    connections: pd.DataFrame = field(default_factory=pd.DataFrame)
    conn_use: pd.DataFrame = field(default_factory=pd.DataFrame)
    _aligned: pd.DataFrame | None = field(default=None, repr=False)

    def source(self, name: str) -> SourceTables:
        return next(s for s in self.sources if s.meta.source == name)

    def thread_names(self) -> dict[int, str]:
        """OS thread id -> name, from whichever source named it first (for renderers)."""
        return thread_names(self.sources)

    def aligned_slices(self) -> pd.DataFrame:
        """Every source's slices with ``ref_ts`` on the reference clock (NA if unaligned).

        Computed once and shared by every renderer; text columns stay categorical (a
        million "os.syscall" strings would otherwise be a million Python objects)."""
        if self._aligned is None:
            parts = [
                align.to_reference(s.slices, self.alignments[s.meta.source])
                for s in self.sources
                if len(s.slices)
            ]
            self._aligned = (
                concat_frames(with_all_columns("slices", parts)) if parts else pd.DataFrame()
            )
        return self._aligned

    def slices_on_threads(self) -> pd.DataFrame:
        """Aligned slices that sit on an OS thread, with integer ``ref_ts`` (for renderers)."""
        s = self.aligned_slices()
        if len(s):
            s = s[s["ref_ts"].notna().to_numpy() & (s["tid"] > 0).to_numpy()]
            s = s.assign(ref_ts=s["ref_ts"].astype("int64"))
        return s


def analyze(
    inputs: list[str] | tuple = (),
    *,
    go_trace: list[str] | tuple = (),
    perf_script: list[str] | tuple = (),
    perf_data: list[str] | tuple = (),
    pyspy: list[str] | tuple = (),
    library_name: str = "hiredis",
    native_calls: list[str] | tuple = (),
    min_block_ms: float = 1.0,
    pyspy_offset_ns: int | None = None,
    jobs: int | None = None,
    loading: Loading | None = None,
) -> Analysis:
    """Load, align and correlate the inputs (see the module docstring). *jobs*: processes
    that parse the inputs (None: as many as help, see ``parsers.sources.parse_jobs``).
    *loading*: the inputs, already being loaded (``parsers.sources.begin_loading``, which
    the CLI calls before it imports this module); the other input arguments are then
    ignored."""
    lib = library(library_name, list(native_calls))
    if loading is None:
        loading = begin_loading(
            list(inputs),
            {
                "go-trace": list(go_trace),
                "perf-script": list(perf_script),
                "perf-data": list(perf_data),
                "pyspy": list(pyspy),
            },
            jobs,
        )
    loaded = loading.finish()
    sources, paths = loaded.sources, loaded.paths
    kinds = {k: [s for s in sources if s.meta.kind in v] for k, v in KINDS.items()}
    warnings = loaded.warnings()

    alignments: dict[str, align.Alignment] = {}
    for s in sources:
        a = align.shared_clock(s)
        if a is not None:
            alignments[s.meta.source] = a
    gos, perfs = kinds["go"], kinds["perf"]
    if len(perfs) > 1:
        warnings.append(f"{len(perfs)} perf sources: only {perfs[0].meta.source} is correlated")
    perf = perfs[0] if perfs else None
    if perf is not None and perf.meta.source not in alignments:
        aligned_go = next((g for g in gos if g.meta.source in alignments), None)
        if aligned_go is not None:
            a = align.align_perf_to_go(perf, aligned_go)
        else:
            a = align.Alignment(
                perf.meta.source,
                0,
                "reference",
                perf.clock.resolution_ns,
                note=f"no CLOCK_MONOTONIC source: perf's own clock "
                f"({perf.clock.clock_id}) is the reference",
            )
        alignments[perf.meta.source] = a
    for s in kinds["pyspy"]:
        if not s.meta.extra.get("timeline"):
            alignments[s.meta.source] = align.Alignment(
                s.meta.source, None, "none", None, note="no timestamps (aggregate format)"
            )
            continue
        if perf is not None and alignments[perf.meta.source].offset_ns is not None:
            pa = alignments[perf.meta.source]
            a = align.align_pyspy(
                s,
                perf,
                pa.offset_ns,
                pa.error_ns or 0,
                anchor_ns=pyspy_anchor(paths[s.meta.source]),
                user_offset=pyspy_offset_ns,
            )
        else:
            a = align.fallback(
                s.meta.source,
                pyspy_anchor(paths[s.meta.source]),
                pyspy_offset_ns,
                "no perf recording to match py-spy against",
            )
        alignments[s.meta.source] = a
    for s in sources:
        alignments.setdefault(
            s.meta.source,
            align.Alignment(
                s.meta.source, None, "none", None, note=f"clock {s.clock.clock_id}: not aligned"
            ),
        )
    for a in alignments.values():
        warnings += [f"{a.source}: {w}" for a_w in [a.warnings] for w in a_w]
        if a.offset_ns is None and a.method == "none":
            warnings.append(f"{a.source}: not on the reference clock ({a.note})")

    def aligned(s: SourceTables | None) -> Aligned | None:
        if s is None:
            return None
        a = alignments[s.meta.source]
        return Aligned(s, a.offset_ns, a.error_ns)

    go = gos[0] if gos else None
    if len(gos) > 1:
        warnings.append(f"{len(gos)} Go traces: only {gos[0].meta.source} is correlated")
    if go is not None and perf is not None:
        named = align.pids_from_go(
            perf, go, alignments[perf.meta.source].offset_ns, alignments[go.meta.source].offset_ns
        )
        if named:
            tids = ", ".join(map(str, sorted(named)[:5])) + (", ..." if len(named) > 5 else "")
            warnings.append(
                f"{perf.meta.source}: {len(named)} thread(s) with no pid in perf's records "
                f"(tid {tids}; no fork, comm or exit record of theirs was kept or printed): "
                f"{go.meta.source} runs them, so they are taken as pid "
                f"{next(iter(named.values()))}'s"
            )
    min_block_ns = int(round(min_block_ms * 1_000_000))
    corr = correlate(
        aligned(go), aligned(perf), [aligned(s) for s in kinds["pyspy"]], lib, min_block_ns
    )
    if perf is not None and go is None and not kinds["pyspy"] and not len(corr.calls):
        cut, total = cut_callchains(perf, min_block_ns)
        if total and cut * 2 >= total:
            warnings.append(
                f"{perf.meta.source}: no {lib.name} frame in any callchain, and {cut} of "
                f"{total} blocking syscalls' callchains stop right above libc (frame "
                f"pointers cannot see through a library built without them): record with "
                f"--call-graph dwarf (tracecorr unwinds it from perf.data), or add a Go "
                f"trace or py-spy"
            )
    summary = summarise(corr.blocking, corr.calls, min_block_ns)
    found = findings(corr, lib, thread_starts(aligned(go), aligned(perf)), thread_names(sources))
    return Analysis(
        sources,
        alignments,
        corr.blocking,
        corr.calls,
        summary,
        lib,
        min_block_ns,
        warnings,
        loaded.skipped,
        found,
        corr.connections,
        corr.conn_use,
    )


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


def _first_by_thread(tid: np.ndarray, ts: np.ndarray, chunk: int = 1 << 18) -> pd.Series:
    """The earliest ts of each thread (tid > 0), by tid: worked a chunk of rows at a time, so
    a Go trace's millions of slices are not copied whole to be grouped."""
    acc = pd.Series(dtype="int64")
    for a in range(0, len(tid), chunk):
        t, x = tid[a : a + chunk], ts[a : a + chunk]
        on = t > 0
        part = pd.Series(x[on]).groupby(t[on]).min()
        acc = part if not len(acc) else pd.concat([acc, part]).groupby(level=0).min()
    return acc.astype("int64")


def thread_starts(go: Aligned | None, perf: Aligned | None) -> pd.DataFrame:
    """pid, tid, first_ns: when each thread was created (perf's fork records: exact) or first
    seen later than the start of the Go trace (a thread seen from its start was already
    there). Reference clock."""
    parts = []
    if perf is not None and perf.offset_ns is not None and len(perf.tables.instants):
        i = perf.tables.instants
        f = i[(i["kind"] == "os.fork").to_numpy()]
        parts.append(
            pd.DataFrame({"pid": f["pid"], "tid": f["tid"], "first_ns": f["ts"] + perf.offset_ns})
        )
    if go is not None and go.offset_ns is not None and len(go.tables.slices):
        sl = go.tables.slices
        tid, ts = sl["tid"].to_numpy(), sl["ts"].to_numpy()
        first = _first_by_thread(tid, ts)
        begin = int(ts.min())
        first = first[first > begin + 1_000_000]  # there from the start: not created
        on_thread = np.flatnonzero(tid > 0)
        pid = int(sl["pid"].iloc[on_thread[0]]) if len(on_thread) else -1
        parts.append(
            pd.DataFrame(
                {
                    "pid": pid,
                    "tid": first.index.to_numpy(),
                    "first_ns": first.to_numpy() + go.offset_ns,
                }
            )
        )
    if not parts:
        return pd.DataFrame({"pid": [], "tid": [], "first_ns": []}, dtype="int64")
    out = pd.concat(parts, ignore_index=True).astype("int64")
    return out.sort_values("first_ns").drop_duplicates("tid").reset_index(drop=True)
