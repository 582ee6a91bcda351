"""What the steps read and write: one ``Tables`` value, passed from step to step.

A step never changes the value it is given: it returns the fields it sets, and the runner
makes the next ``Tables`` from them (``pipeline.run``). The frames' columns are declared in
``schema.py``; the other fields are small values (dicts, sets, lists of warnings) named by
what they hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import pandas as pd

from ..parsers.model import SourceTables
from .align import Alignment
from .frames import Frames
from .libraries import Library


@dataclass
class Aligned:
    """A parsed source and its offset onto the reference clock (None: not aligned)."""

    tables: SourceTables
    offset_ns: int | None
    error_ns: int | None


@dataclass(frozen=True)
class Tables:
    # the inputs (set before the first step)
    sources: list[SourceTables] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)
    library: Library | None = None
    min_block_ns: int = 1_000_000
    pyspy_offset_ns: int | None = None
    # align
    alignments: dict[str, Alignment] = field(default_factory=dict)
    go: Aligned | None = None
    perf: Aligned | None = None
    py: list[Aligned] = field(default_factory=list)
    tolerance_ns: int = 0
    warnings: tuple[str, ...] = ()
    blind: tuple[str, ...] = ()  # why sources could not be joined: zero records is not clean
    # threads
    thread_names: dict[int, str] = field(default_factory=dict)
    kernel_comms: dict[int, str] = field(default_factory=dict)
    # perf_intervals .. library_calls
    intervals: pd.DataFrame | None = None
    lib_stacks: dict[int, str] = field(default_factory=dict)
    lib_callers: dict[int, str] = field(default_factory=dict)
    runtime_stacks: frozenset[int] = frozenset()
    caller_stacks: frozenset[int] = frozenset()
    gil_stacks: frozenset[int] = frozenset()
    tracer_stops: dict = field(default_factory=dict)  # the capture's (latency_split)
    cgo: pd.DataFrame = field(default_factory=pd.DataFrame)
    connections: pd.DataFrame = field(default_factory=pd.DataFrame)
    conn_syscalls: pd.DataFrame | None = None
    calls: pd.DataFrame = field(default_factory=pd.DataFrame)
    lib_conns: dict[tuple[int, int], str] = field(default_factory=dict)
    conn_use: pd.DataFrame = field(default_factory=pd.DataFrame)
    # python_runs
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    py_frames: dict[str, Frames] = field(default_factory=dict)
    # candidates .. records
    candidates: pd.DataFrame | None = None
    blocking: pd.DataFrame | None = None
    # summary, findings
    summary: dict = field(default_factory=dict)
    thread_starts: pd.DataFrame | None = None
    findings: list[dict] = field(default_factory=list)
    # render support (pipeline.SUPPORT: run when a renderer first asks)
    aligned_slices: pd.DataFrame | None = None
    goroutine_sites: dict[int, str] = field(default_factory=dict)
    call_of_syscall: dict[int, int] = field(default_factory=dict)
    waker_syscall: dict[int, int | None] = field(default_factory=dict)

    def with_(self, updates: dict) -> Tables:
        return replace(self, **updates) if updates else self

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
