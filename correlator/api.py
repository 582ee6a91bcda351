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

import pandas as pd

from ..parsers.model import SourceTables
from ..parsers.sources import Loading, begin_loading
from . import align, pipeline
from .libraries import Library, library
from .names import thread_names
from .tables import Tables


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
    tables: Tables | None = field(default=None, repr=False)  # the pipeline's, for support
    blind: list[str] = field(default_factory=list)  # why sources could not be joined
    _supported: set[str] = field(default_factory=set, repr=False)

    def source(self, name: str) -> SourceTables:
        return next(s for s in self.sources if s.meta.source == name)

    def thread_names(self) -> dict[int, str]:
        """OS thread id -> name, from whichever source named it first (for renderers)."""
        return thread_names(self.sources)

    def support(self, name: str) -> Tables:
        """The pipeline's tables with the render-support step *name* (pipeline.SUPPORT) and
        those before it run: once, shared by every renderer."""
        for s in pipeline.SUPPORT:
            if s.name not in self._supported:
                self.tables = pipeline.run(self.tables, [s])
                self._supported.add(s.name)
            if s.name == name:
                return self.tables
        raise KeyError(f"no render-support step {name!r}")

    def aligned_slices(self) -> pd.DataFrame:
        """Every source's slices with ``ref_ts`` on the reference clock (NA if unaligned)."""
        return self.support("aligned_slices").aligned_slices

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
    symfs: str | None = None,
) -> Analysis:
    """Load the inputs and run the pipeline's steps over them (``pipeline.STEPS``). *jobs*:
    processes that parse the inputs (None: as many as help, see
    ``parsers.sources.parse_jobs``). *loading*: the inputs, already being loaded
    (``parsers.sources.begin_loading``, which the CLI calls before it imports this module);
    the other input arguments are then ignored. *symfs*: where perf.data's DSO paths are
    looked up first (``perf --symfs``: a container's root; default: a capture's archive)."""
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
            symfs,
        )
    loaded = loading.finish()
    t = Tables(
        sources=loaded.sources,
        paths=loaded.paths,
        library=lib,
        min_block_ns=int(round(min_block_ms * 1_000_000)),
        pyspy_offset_ns=pyspy_offset_ns,
        warnings=tuple(loaded.warnings()),
    )
    return analysis_of(pipeline.run(t), loaded.skipped)


def analysis_of(t: Tables, skipped_inputs: list[str]) -> Analysis:
    """The pipeline's result as the Analysis the renderers and notebooks read."""
    return Analysis(
        t.sources,
        t.alignments,
        t.blocking,
        t.calls,
        t.summary,
        t.library,
        t.min_block_ns,
        list(t.warnings),
        skipped_inputs,
        t.findings,
        t.connections,
        t.conn_use,
        pipeline.kept_for_support(t),
        list(t.blind),
    )
