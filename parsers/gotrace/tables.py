"""Goroutine stretches -> the canonical tables.

Slices, one per stretch of a goroutine's life between two transitions:

    go.running   on its thread (tid = M)                name "running"
    go.syscall   on its thread (tid = M), begin stack   name = leaf frame, e.g.
                 main._Cfunc_redisCommandArgv or syscall.read; p_lost = the P was taken
                 while it was in the call (GoSyscallEndBlocked: the runtime handed the P off)
    go.blocked   off-thread (tid = -1), block stack     name = block reason ("chan receive")
    go.runnable  off-thread (tid = -1)                  name = why: the stop reason
                 ("preempted"), "unblocked", "created", "syscall returned without its P"

A stretch still open when the trace ends runs to the last event and has ``end_unknown``; one
that began before the trace (a first-generation status) has ``start_unknown``. Repeated
status events (same state each generation) do not split a stretch. ``p_lost`` (go.syscall
only) is NA when the call had not returned by the end of the trace. Instants: ProcSteal
(``go.proc_steal`` on the thread that lost its P, with ``proc`` and ``thief_tid``).

Everything is built as numpy ``Chunk``s, so the same code serves ``parse`` (DataFrames of the
whole trace) and the streaming Parquet writer (one row group per generation).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..columns import Interner
from ..schema import Chunk, ChunkedSource, Clock, SourceMeta, narrow_codes
from . import GoTrace, TraceStream
from .events import EV
from .states import RUNNABLE, RUNNING, SYSCALL, WAITING
from .stretches import P_LOST, START_UNKNOWN, TRUNCATED, StretchColumns

GO_CLOCK_FREQ = 15_625_000  # nanotime()/64: CLOCK_MONOTONIC on every OS but Windows
_KIND = {
    RUNNING: "go.running",
    SYSCALL: "go.syscall",
    WAITING: "go.blocked",
    RUNNABLE: "go.runnable",
}
_KIND_CODE = np.full(6, -1, np.int8)
_KIND_CODE[list(_KIND)] = np.arange(len(_KIND))
_RUNNABLE_CAUSE = {
    EV.GoUnblock: "unblocked",
    EV.GoCreate: "created",
    EV.GoSyscallEndBlocked: "syscall returned without its P",
    EV.GoStatus: "runnable",
    EV.GoStatusStack: "runnable",
}


def package_of(function: str) -> str:
    """Go package path of a symbol: 'net/http.(*conn).serve' -> 'net/http'."""
    slash = function.rfind("/")
    dot = function.find(".", slash + 1)
    return function[:dot] if dot > 0 else function


def _distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values; without hashing when they come sorted (a stream's blocks are
    ordered by goroutine)."""
    if len(values) > 1 and bool((values[1:] >= values[:-1]).all()):
        return values[np.flatnonzero(np.diff(values, prepend=values[0] - 1))]
    return np.unique(values)


class SliceCoder:
    """Stretches -> slice chunks. Slice names are codes into one growing list (leaf frames of
    syscall stacks, block reasons, runnable causes), extended as the trace's stacks and
    strings grow generation by generation; no per-row Python object is made."""

    def __init__(self, tr: GoTrace, source: str, pid: int) -> None:
        self.tr, self.source, self.pid = tr, source, pid
        self.names: Interner[str] = Interner()
        self.running = self.names.id("running")
        self.cause = np.full(256, self.names.id("runnable"), np.int32)
        for typ, text in _RUNNABLE_CAUSE.items():
            self.cause[typ] = self.names.id(text)
        self.leaf = np.array([self.names.id("syscall")], np.int32)  # stack id -> name code
        self.reason = np.zeros(0, np.int32)  # string id -> name code (blocked)
        self.stop_reason = np.zeros(0, np.int32)  # string id -> name code (stopped)
        self.goids: set[int] = set()

    def _extend(self) -> None:
        frames, strings = self.tr.stacks.frames, self.tr.strings
        if len(self.leaf) < len(frames) + 1:
            new = [self.names.id(f[0][1] if f else "syscall") for f in frames[len(self.leaf) - 1 :]]
            self.leaf = np.concatenate([self.leaf, np.array(new, np.int32)])
        if len(self.reason) < len(strings):
            more = strings[len(self.reason) :]
            self.reason = np.concatenate(
                [self.reason, np.array([self.names.id(x or "waiting") for x in more], np.int32)]
            )
            self.stop_reason = np.concatenate(
                [
                    self.stop_reason,
                    np.array([self.names.id(x or "stopped") for x in more], np.int32),
                ]
            )

    def chunk(self, c: StretchColumns) -> Chunk:
        self._extend()
        self.goids.update(_distinct(c.goid).tolist())
        code = np.full(len(c), self.running, np.int32)
        sc, wt, rn = c.state == SYSCALL, c.state == WAITING, c.state == RUNNABLE
        code[sc] = self.leaf[c.stack[sc]]
        code[wt] = self.reason[c.reason[wt]]
        code[rn] = self.cause[c.entered_by[rn]]
        by_stop = rn & (c.entered_by == EV.GoStop)
        code[by_stop] = self.stop_reason[c.reason[by_stop]]
        truncated = (c.flags & TRUNCATED) != 0
        return Chunk(
            "slices",
            len(c),
            {
                "source": np.zeros(len(c), np.int8),
                "pid": self.pid,
                "tid": c.tid,
                "ts": c.start,
                "dur": c.dur,
                "kind": _KIND_CODE[c.state],
                "name": code,
                "goid": c.goid,
                "stack_id": c.stack.astype(np.int64),
                "p_lost": (c.flags & P_LOST) != 0,
                "start_unknown": (c.flags & START_UNKNOWN) != 0,
                "end_unknown": truncated,
            },
            nulls={"stack_id": c.stack == 0, "p_lost": ~sc | truncated},
            categories={
                "source": [self.source],
                "kind": list(_KIND.values()),
                "name": list(self.names.values),
            },
        )


class StreamedTrace:
    """A Go trace as a stream of chunks for a writer: the slices one generation at a time,
    then threads, stacks and instants; ``meta`` and ``clock`` are set once it is exhausted.
    Memory: one generation, plus the stacks and strings interned so far."""

    def __init__(self, path: str, source: str, pid: int | None) -> None:
        self.stream = TraceStream(path)
        self.source, self.pid = source, pid
        self.meta: SourceMeta | None = None
        self.clock: Clock | None = None

    def chunks(self) -> Iterator[Chunk]:
        coder = None
        parts = iter(self.stream)
        while True:
            # no local keeps a part or a chunk while suspended (they are tens of MB)
            box = [next(parts, None)]
            if box[0] is None:
                break
            if coder is None:
                coder = SliceCoder(
                    self.stream.trace, self.source, -1 if self.pid is None else self.pid
                )
            box.append(coder.chunk(box.pop()))
            yield box.pop()
        tr = self.stream.trace
        yield from other_chunks(tr, self.source, self.pid).values()
        self.meta, self.clock = source_info(
            tr, self.source, self.pid, len(coder.goids) if coder is not None else 0
        )


def other_chunks(tr: GoTrace, source: str, pid: int | None) -> dict[str, Chunk]:
    """threads, stacks and instants: small next to the slices, built once at the end."""
    pid_value = -1 if pid is None else pid
    threads = np.array(sorted(tr.threads), np.int64)
    out = {
        "threads": Chunk(
            "threads",
            len(threads),
            {"source": np.zeros(len(threads), np.int8), "pid": pid_value, "tid": threads},
            categories={"source": [source]},
        )
    }
    rows = [
        (sid, depth, fn, file, line, package_of(fn), pc)
        for sid, frames in enumerate(tr.stacks.frames, start=1)
        for depth, (pc, fn, file, line) in enumerate(frames)
    ]
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 7
    out["stacks"] = Chunk(
        "stacks",
        len(rows),
        {
            "source": np.zeros(len(rows), np.int8),
            "stack_id": np.array(cols[0], np.int64),
            "depth": np.array(cols[1], np.int64),
            "function": np.array(cols[2], object),
            "file": np.array(cols[3], object),
            "line": np.array(cols[4], np.int64),
            "module": np.array(cols[5], object),
            "frame_kind": np.zeros(len(rows), np.int8),
            "address": np.array(cols[6], np.uint64),
        },
        categories={"source": [source], "frame_kind": ["go"]},
    )
    st = tr.proc_steals
    if st:
        cat = {
            k: np.concatenate([getattr(p, k) for p in st]) for k in ("time", "thief", "victim", "p")
        }
        by_time = np.argsort(cat["time"], kind="stable")  # not in the order groups read them
        cat = {k: v[by_time] for k, v in cat.items()}
        n = len(cat["time"])
        out["instants"] = Chunk(
            "instants",
            n,
            {
                "source": np.zeros(n, np.int8),
                "pid": pid_value,
                "tid": cat["victim"],
                "ts": cat["time"],
                "kind": np.zeros(n, np.int8),
                "name": np.zeros(n, np.int8),
                "stack_id": np.zeros(n, np.int64),
                "proc": cat["p"],
                "thief_tid": cat["thief"],
            },
            nulls={"stack_id": np.ones(n, bool), "thief_tid": cat["thief"] < 0},
            categories={"source": [source], "kind": ["go.proc_steal"], "name": ["ProcSteal"]},
        )
    return out


def source_info(tr: GoTrace, source: str, pid: int | None, goroutines: int) -> tuple:
    """(SourceMeta, Clock) of a trace that has been read."""
    meta = SourceMeta(
        source=source, kind="go-trace", path=tr.path, format_version=f"go 1.{tr.header.version}"
    )
    meta.events.update(tr.events)
    for (stat, key), n in tr.skipped.items():
        meta.count(stat, n, key)
    meta.warnings.extend(tr.warnings)
    linux_clock = tr.frequencies == {GO_CLOCK_FREQ}
    meta.extra.update(
        {
            "read_as": f"go 1.{tr.header.read_as}",
            "generations": tr.generations,
            "frequencies": sorted(tr.frequencies),
            "first_ns": tr.first_ns,
            "last_ns": tr.last_ns,
            "goroutines": goroutines,
            "pid_known": pid is not None,
        }
    )
    if tr.cut is not None:
        meta.extra["truncated_at"] = tr.cut.offset
    note = (
        "trace ticks are nanotime()/64 = CLOCK_MONOTONIC/64 (Go >= 1.22, not Windows): "
        "ns values are exact to 64 ns"
        if linux_clock
        else f"trace frequency {sorted(tr.frequencies)} Hz is not nanotime()/64: "
        "not CLOCK_MONOTONIC (Windows cputicks?); only clock snapshots can map it"
    )
    if tr.snapshots and linux_clock:
        worst = max(abs(s["mono_ns"] - s["trace_ns"]) for s in tr.snapshots)
        note += f"; clock snapshots agree with CLOCK_MONOTONIC within {worst} ns"
        if worst > 1_000_000:
            meta.warn(f"clock snapshots disagree with the trace clock by {worst} ns")
    if pid is None:
        note += "; pid unknown (the trace does not record it)"
    clock = Clock(
        "monotonic" if linux_clock else "unknown",
        resolution_ns=64 if linux_clock else max(1, round(1e9 / max(tr.frequencies))),
        snapshots=tr.snapshots,
        note=note,
    )
    return meta, clock


def to_chunks(tr: GoTrace, source: str, pid: int | None = None) -> ChunkedSource:
    """The canonical tables of a trace read whole (``read_trace``), as numpy Chunks."""
    coder = SliceCoder(tr, source, -1 if pid is None else pid)
    slices = coder.chunk(tr.stretches)
    # the chunk keeps the stretch columns it uses; the others (a third) go now
    tr.stretches = StretchColumns.concat([])
    meta, clock = source_info(tr, source, pid, len(coder.goids))
    chunks = {"slices": slices, **other_chunks(tr, source, pid)}
    return ChunkedSource(meta, clock, {k: narrow_codes(c) for k, c in chunks.items()})


def to_source_tables(tr: GoTrace, source: str, pid: int | None = None):
    """The canonical tables (DataFrames) of a trace read whole (``read_trace``)."""
    from ..model import from_chunks

    return from_chunks(to_chunks(tr, source, pid))
