"""The entry point for the CLI and for notebooks: ``analyze(...)`` -> ``Analysis``.

    from correlator.api import analyze
    a = analyze(["sample_traces/go_hiredis"])
    a.blocking            # one row per blocking syscall inside a hiredis call (DataFrame)
    a.calls               # the library call spans (Go cgo calls into the library)
    a.alignments          # per source: offset onto CLOCK_MONOTONIC, method, error
    a.sources             # the parsed canonical tables, each on its own clock
    a.aligned_slices()    # every slice with ref_ts (reference clock)

The steps are the pipeline: parse (parsers.*) -> align -> correlate -> summarise; renderers
(correlator.report, timeline, perfetto_export) only read the result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from parsers.detect import FORMATS, capture_pid, expand_inputs, source_names
from parsers.errors import InputError
from parsers.model import SourceTables

from . import align
from .correlate import Aligned, correlate, thread_names
from .libraries import Library, library
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

    def source(self, name: str) -> SourceTables:
        return next(s for s in self.sources if s.meta.source == name)

    def thread_names(self) -> dict[int, str]:
        """OS thread id -> name, from whichever source named it first (for renderers)."""
        return thread_names(self.sources)

    def slices_on_threads(self) -> pd.DataFrame:
        """Aligned slices that sit on an OS thread, with integer ``ref_ts`` (for renderers)."""
        s = self.aligned_slices()
        if len(s):
            s = s[s["ref_ts"].notna() & (s["tid"] > 0)].copy()
            s["ref_ts"] = s["ref_ts"].astype("int64")
            s["kind"] = s["kind"].astype(str)
        return s

    def aligned_slices(self) -> pd.DataFrame:
        """Every source's slices with ``ref_ts`` on the reference clock (NA if unaligned)."""
        parts = [
            align.to_reference(s.slices, self.alignments[s.meta.source])
            for s in self.sources
            if len(s.slices)
        ]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _format(name: str):
    return next(f for f in FORMATS if f.name == name)


def _load(paths: list[str], flagged: dict[str, list[str]]) -> tuple[list, list[str]]:
    """(path, format, source name) for every input; explicit flags skip detection."""
    items: list[tuple[Path, object]] = []
    skipped: list[str] = []
    if paths:
        ex = expand_inputs(paths)
        items += ex.inputs
        skipped += ex.skipped
    for fmt_name, files in flagged.items():
        for f in files:
            p = Path(f)
            if not p.exists():
                raise InputError(f, "no such file or directory")
            if fmt_name == "pyspy":
                from parsers.detect import detect

                fmt = detect(p)
            else:
                fmt = _format(fmt_name)
            items.append((p, fmt))
    names = source_names(items)
    return [(p, fmt, name) for (p, fmt), name in zip(items, names, strict=True)], skipped


def _anchor(path: Path) -> int | None:
    """CLOCK_MONOTONIC at py-spy's start, from the capture.json beside the file."""
    meta = path.parent / "capture.json"
    if not meta.exists():
        return None
    try:
        recs = json.loads(meta.read_text()).get("pyspy", {}).get("recordings", {})
    except ValueError:
        return None
    for rec in recs.values():
        if rec.get("file") == path.name:
            return rec.get("anchor_mono_ns")
    return None


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
) -> Analysis:
    lib = library(library_name, list(native_calls))
    items, skipped = _load(
        list(inputs),
        {
            "go-trace": list(go_trace),
            "perf-script": list(perf_script),
            "perf-data": list(perf_data),
            "pyspy": list(pyspy),
        },
    )
    if not items:
        raise InputError(", ".join(map(str, inputs)) or "(no inputs)", "no trace inputs found")
    sources, paths = [], {}
    for p, fmt, name in items:
        st = fmt.load()(p, source=name, pid=capture_pid(p))
        sources.append(st)
        paths[name] = p
    kinds = {k: [s for s in sources if s.meta.kind in v] for k, v in KINDS.items()}
    warnings = [f"{s.meta.source}: {w}" for s in sources for w in s.meta.warnings]

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
                anchor_ns=_anchor(paths[s.meta.source]),
                user_offset=pyspy_offset_ns,
            )
        else:
            a = align.fallback(
                s.meta.source,
                _anchor(paths[s.meta.source]),
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
    min_block_ns = int(round(min_block_ms * 1_000_000))
    blocking, calls = correlate(
        aligned(go), aligned(perf), [aligned(s) for s in kinds["pyspy"]], lib, min_block_ns
    )
    summary = summarise(blocking, calls, min_block_ns)
    return Analysis(
        sources, alignments, blocking, calls, summary, lib, min_block_ns, warnings, skipped
    )
