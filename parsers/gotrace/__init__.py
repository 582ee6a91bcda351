"""Go execution trace reader (wire formats go 1.22 - go 1.26), native Python, no Go toolchain.

The layers read as the pipeline, after golang/exp ``trace/``:

    wire.py        header and top-level batches, streamed, sizes checked before allocation
    generation.py  batches -> generations (strings, stacks, frequency / clock snapshot)
    decode.py      one generation's timed events -> numpy arrays (vectorised varints)
    states.py      goroutine state transitions: per-thread current goroutine, per-goroutine order
    tables.py      transitions -> the canonical tables (slices, stacks, threads, clock, meta)

Only one generation is held at a time, so memory is bounded by the largest generation plus
the output. ``read_trace`` returns the transitions themselves (for tests against
``go tool trace``); ``parse`` returns the canonical ``SourceTables``.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..columns import Interner
from ..errors import InputError
from ..inputs import open_binary
from ..stats import count
from .decode import decode_batches, thread_groups
from .events import BY_ID, EV
from .generation import Cut, Generation, generations
from .states import ThreadStates, Transitions, order_transitions, syscall_statuses
from .stretches import StretchColumns, Stretches
from .wire import Header, TraceFormatError, Truncated, read_batches, read_header

if TYPE_CHECKING:
    from ..model import SourceTables

#: Wire bytes decoded at once (whole threads' batches): bounds the temporaries of decoding and
#: state tracking, whose arrays are a few hundred bytes per event, to tens of MB whatever the
#: size of a generation.
GROUP_BYTES = 131072

__all__ = [
    "GoTrace",
    "StackInterner",
    "TraceStream",
    "parse",
    "parse_chunks",
    "read_trace",
    "stream",
]


class StackInterner:
    """Deduplicates stacks across generations (ids restart every generation): global ids
    1, 2, ... (0 = no stack) for distinct resolved frame sequences."""

    def __init__(self) -> None:
        self.stacks: Interner[tuple[tuple[int, str, str, int], ...]] = Interner(first=1)

    @property
    def frames(self) -> list[tuple[tuple[int, str, str, int], ...]]:
        """The frames (pc, function, file, line) of stack id i at index i - 1."""
        return self.stacks.values

    def intern_or_none(self, g: Generation, local: int) -> int:
        """Global id of generation-local stack *local*; 0 (no stack) stays 0."""
        return self.intern(g, local, g.offset) if local else 0

    def intern(self, g: Generation, local: int, offset: int) -> int:
        frames = g.stacks.get(local)
        if frames is None:
            raise TraceFormatError(
                offset, f"event refers to stack {local}, which generation {g.gen} does not define"
            )
        resolved = []
        for pc, fn, fl, line in frames:
            if fn not in g.strings or fl not in g.strings:
                raise TraceFormatError(
                    g.offset, f"stack {local} of generation {g.gen} refers to an undefined string"
                )
            resolved.append((pc, g.strings[fn], g.strings[fl], line))
        return self.stacks.id(tuple(resolved))


@dataclass
class ProcSteals:
    """ProcSteal events: the runtime took P ``p`` from thread ``victim`` (blocked in a
    syscall or cgo call) for thread ``thief`` at ``time``."""

    time: np.ndarray
    thief: np.ndarray
    victim: np.ndarray  # -1: not known
    p: np.ndarray


@dataclass
class GoTrace:
    """Everything read from one trace, before it is turned into the canonical tables."""

    path: str
    header: Header
    stretches: StretchColumns  # what becomes the slices
    transitions: Transitions  # only with keep_transitions: per goroutine in lived order
    strings: list[str]  # transitions.reason indexes this (0 = "")
    stacks: StackInterner
    threads: set[int]
    proc_steals: list[ProcSteals] = field(default_factory=list)  # one part per generation
    frequencies: set[int] = field(default_factory=set)
    snapshots: list[dict[str, int]] = field(default_factory=list)
    generations: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    events: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    cut: Cut | None = None


def _translate(local: np.ndarray, to_global) -> np.ndarray:
    """Map generation-local ids to global ones, calling *to_global* once per distinct id."""
    small = len(local) and int(local.min()) >= 0 and int(local.max()) < 1 << 20
    # small ids: counted and looked up through a table, no hashing
    uniq = np.flatnonzero(np.bincount(local)) if small else np.unique(local)
    lut = {int(x): to_global(int(x)) for x in uniq}
    if small:
        table = np.zeros(int(uniq.max()) + 1, np.int32)
        table[list(lut)] = list(lut.values())
        return table[local]
    return np.array([lut[x] for x in local.tolist()], np.int32)


def _string_interner(g: Generation, strings: Interner[str]):
    def intern(sid: int) -> int:
        if sid not in g.strings:
            raise TraceFormatError(
                g.offset, f"event refers to string {sid}, which generation {g.gen} does not define"
            )
        return strings.id(g.strings[sid])

    return intern


def read_trace(path: str | Path, keep_transitions: bool = False) -> GoTrace:
    """Read a trace file; InputError for corrupt or unsupported input, warnings for cuts.

    *keep_transitions* also keeps every goroutine state transition (memory proportional to
    the events; the tests compare them with ``go tool trace``).
    """
    stream = TraceStream(path, keep_transitions)
    parts = list(stream)
    stream.trace.stretches = StretchColumns.concat(parts)
    return stream.trace


class TraceStream:
    """A trace read one generation at a time, for readers that write as they go.

    Iterating yields, per generation, the stretches (future slices) that generation closed,
    and last the stretches still open at the end; ``trace`` accumulates everything else
    (stacks, strings, threads, counts, clock) and is complete once iteration ends. Memory is
    one generation plus what the consumer keeps. Bad bytes raise InputError (one line with
    the offset); a trace cut short yields its complete generations and a warning.
    """

    def __init__(self, path: str | Path, keep_transitions: bool = False) -> None:
        self.path = str(path)
        self.keep_transitions = keep_transitions
        self.trace: GoTrace | None = None

    def __iter__(self) -> Iterator[StretchColumns]:
        try:
            with open_binary(self.path) as f:
                yield from self._read(f)
        except TraceFormatError as e:
            raise InputError(self.path, e.message, offset=e.offset) from None
        except Truncated as e:  # cut inside the header: nothing to read
            raise InputError(self.path, e.message, offset=e.offset) from None
        except (OSError, EOFError) as e:  # unreadable or corrupt compressed stream
            raise InputError(self.path, f"cannot read: {e}") from None

    def _read(self, f) -> Iterator[StretchColumns]:
        path = self.path
        header = read_header(f)
        states = ThreadStates()
        stacks = StackInterner()
        strings: Interner[str] = Interner()
        strings.id("")  # code 0: no reason
        parts: list[Transitions] = []
        stretches = Stretches()
        out = self.trace = GoTrace(
            path,
            header,
            StretchColumns.concat([]),
            Transitions.concat([]),
            strings.values,
            stacks,
            set(),
        )
        if header.warning:
            out.warnings.append(header.warning)
        cut: list[Cut] = []
        for g in generations(read_batches(f, header), header, cut):
            _account(out, g)
            tr = states.transitions(
                thread_groups(g.batches, GROUP_BYTES),
                functools.partial(decode_batches, freq=g.freq, version=header.read_as),
                g.gen,
                seen=functools.partial(_account_events, out),
            )
            if len(tr):
                tr.stack = _translate(tr.stack, functools.partial(stacks.intern_or_none, g))
                tr.reason = _translate(tr.reason, _string_interner(g, strings))
                if self.keep_transitions:
                    parts.append(tr)
                # yield from: no local of ours keeps a block while suspended
                yield from stretches.add(tr, consume=not self.keep_transitions)
            del tr  # its pages are the next generation's (memory.py: no trim in a loop)
        if out.generations == 0:
            why = cut[0].message if cut else "the file holds no batches after its header"
            raise InputError(
                path, f"no complete generation: {why}", offset=cut[0].offset if cut else 16
            )
        if cut:
            out.cut = cut[0]
            out.warnings.append(
                f"truncated trace: reading stopped at byte offset {cut[0].offset} "
                f"({cut[0].message}); results cover the {out.generations} complete "
                "generation(s)"
            )
        for what, n in states.problems.items():
            count(out.skipped, "go_inconsistent", n, key=what)
        out.transitions = order_transitions(parts)
        last = stretches.finish(out.last_ns)
        if len(last):
            yield last


def _account(out: GoTrace, g: Generation) -> None:
    """What one generation adds to the trace's clock facts and skip counts (its events are
    counted group by group, by ``_account_events``)."""
    out.generations += 1
    out.frequencies.add(g.freq)
    if g.cpu_samples:
        count(out.skipped, "go_cpu_sample", g.cpu_samples)
    if g.experimental_batches:
        count(out.skipped, "go_experimental_batch", g.experimental_batches)
    ratio = 1e9 / g.freq
    if g.snapshot is not None:
        out.snapshots.append(
            {
                "trace_ns": int(g.snapshot.trace_ticks * ratio),
                "mono_ns": g.snapshot.mono_ns,
                "wall_ns": g.snapshot.wall_ns,
            }
        )


def _account_events(out: GoTrace, ev) -> None:
    """What one group of events adds: counts, time range, threads, ProcSteals."""
    counts = np.bincount(ev.typ, minlength=256)
    for t in np.flatnonzero(counts).tolist():
        out.events[BY_ID[t].name] += int(counts[t])
    if len(ev):
        lo, hi = int(ev.time.min()), int(ev.time.max())
        out.first_ns = lo if out.first_ns is None else min(out.first_ns, lo)
        out.last_ns = hi if out.last_ns is None else max(out.last_ns, hi)
    out.threads.update(ev.threads())
    # a goroutine in a syscall names the thread it sits on, which may have no events
    out.threads.update(mid for _, mid in syscall_statuses(ev))
    steal = ev.typ == EV.ProcSteal
    if steal.any():
        a = ev.args[steal]
        victim = np.where(a[:, 2] >= np.uint64(1 << 63), -1, a[:, 2].astype(np.int64))
        out.proc_steals.append(
            ProcSteals(ev.time[steal], ev.m[steal], victim, a[:, 0].astype(np.int64))
        )


def parse(path: str | Path, source: str = "go-trace", pid: int | None = None) -> SourceTables:
    """The canonical tables of a Go execution trace (see parsers.gotrace.tables)."""
    from .tables import to_source_tables

    return to_source_tables(read_trace(path), source, pid)


def parse_chunks(path: str | Path, source: str = "go-trace", pid: int | None = None):
    """``parse`` as numpy Chunks (a ChunkedSource): for a worker process, which then needs
    no pandas."""
    from .tables import to_chunks

    return to_chunks(read_trace(path), source, pid)


def stream(path: str | Path, source: str = "go-trace", pid: int | None = None):
    """The canonical tables as a stream of chunks, one generation at a time (for writers
    that must not hold a big trace's tables in memory; see tables.StreamedTrace)."""
    from .tables import StreamedTrace

    return StreamedTrace(str(path), source, pid)
