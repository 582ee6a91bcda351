"""Step: every source on the reference clock (the policy is ``align.align_sources``)."""

from __future__ import annotations

from ...parsers.sources import capture_threads, pyspy_anchor
from ..align import KINDS, align_sources
from ..step import step
from ..tables import Aligned, Tables


@step(
    reads={"sources": (), "paths": (), "pyspy_offset_ns": (), "warnings": ()},
    adds={
        "sources": (),
        "alignments": (),
        "go": (),
        "perf": (),
        "py": (),
        "tolerance_ns": (),
        "warnings": (),
        "blind": (),
    },
)
def align(t: Tables) -> dict:
    """Align every source onto CLOCK_MONOTONIC and perf's thread ids, and choose the ones
    correlated: the first Go trace, the first perf recording, every py-spy recording."""
    anchors = {
        s.meta.source: pyspy_anchor(t.paths[s.meta.source])
        for s in t.sources
        if s.meta.kind in KINDS["pyspy"] and s.meta.extra.get("timeline")
    }
    recorded = {s.meta.source: capture_threads(t.paths[s.meta.source]) for s in t.sources}
    p = align_sources(t.sources, anchors, t.pyspy_offset_ns, recorded)

    def aligned(s):
        if s is None:
            return None
        a = p.alignments[s.meta.source]
        return Aligned(s, a.offset_ns, a.error_ns)

    go, perf = aligned(p.go), aligned(p.perf)
    on = [a for a in (go, perf) if a is not None]
    return {
        "sources": p.sources,
        "alignments": p.alignments,
        "go": go,
        "perf": perf,
        "py": [aligned(s) for s in p.pyspy],
        "tolerance_ns": max((a.error_ns or 0) for a in on) if on else 0,
        # blind first; a parser's warning the policy made a blind line is said once
        "warnings": (*p.blind, *(w for w in t.warnings if w not in p.blind), *p.warnings),
        "blind": tuple(p.blind),
    }
