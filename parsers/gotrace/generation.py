"""Generations: the self-contained units of a trace (about one second each).

Batches are grouped by generation number; each generation carries its own string table,
stack table and clock information, and its regular event batches are kept for decoding.
A generation ends at the go 1.26 end-of-generation marker, or (older formats) when the next
generation's first batch appears. Only one generation is held at a time, which bounds memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .events import EV, MAX_FRAMES, MAX_STRING
from .wire import Batch, Header, TraceFormatError, Truncated, VarintError, varint_tokens


def uvarint(buf: bytes, pos: int, base: int, what: str) -> tuple[int, int]:
    """Decode one LEB128 varint from *buf* at *pos*; *base* is buf[0]'s file offset."""
    result = shift = 0
    for i in range(10):
        if pos + i >= len(buf):
            raise TraceFormatError(base + pos, f"{what}: varint runs past the end of its batch")
        b = buf[pos + i]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if result >= 1 << 64:
                raise TraceFormatError(base + pos, f"{what}: varint overflows 64 bits")
            return result, pos + i + 1
        shift += 7
    raise TraceFormatError(base + pos, f"{what}: varint longer than 10 bytes")


@dataclass
class Snapshot:
    """A go >= 1.25 ClockSnapshot: the trace clock, CLOCK_MONOTONIC and wall clock together."""

    trace_ticks: int
    mono_ns: int
    wall_ns: int


@dataclass
class Generation:
    gen: int
    offset: int  # file offset of its first batch
    end_offset: int = 0  # file offset just past its last batch
    freq: int | None = None
    sync_ticks: int | None = None  # header time of the sync / frequency batch
    snapshot: Snapshot | None = None
    strings: dict[int, str] = field(default_factory=lambda: {0: ""})
    stacks: dict[int, tuple[tuple[int, int, int, int], ...]] = field(
        default_factory=lambda: {0: ()}
    )
    batches: list[Batch] = field(default_factory=list)  # regular event batches
    cpu_samples: int = 0
    experimental_batches: int = 0
    complete: bool = False

    def check(self, version: int) -> str:
        """What makes this generation unusable, or '' when it is whole."""
        if self.freq is None:
            return "no frequency"
        if self.freq == 0:
            return "frequency is zero"
        if version >= 25 and self.snapshot is None:
            return "no clock snapshot"
        return ""


def _add_strings(g: Generation, b: Batch) -> None:
    d, pos = b.data, 1
    while pos < len(d):
        if d[pos] != EV.String:
            raise TraceFormatError(
                b.data_offset + pos, f"expected a string entry, found byte 0x{d[pos]:02x}"
            )
        sid, pos = uvarint(d, pos + 1, b.data_offset, "string id")
        n, pos = uvarint(d, pos, b.data_offset, "string length")
        if n > MAX_STRING:
            raise TraceFormatError(
                b.data_offset + pos,
                f"string of {n} bytes exceeds the format's maximum {MAX_STRING}",
            )
        if pos + n > len(d):
            raise TraceFormatError(b.data_offset + pos, "string runs past the end of its batch")
        if sid in g.strings:
            raise TraceFormatError(b.data_offset + pos, f"duplicate string id {sid}")
        g.strings[sid] = d[pos : pos + n].decode("utf-8", "replace")
        pos += n


def _add_stacks(g: Generation, b: Batch) -> None:
    """A stack batch: entries of varints only (Stack, id, depth, depth x (pc, function,
    file, line)), so it is tokenised at once (decode's vectorised varints) and walked one
    stack at a time, not one varint at a time."""
    d, base = b.data, b.data_offset + 1
    buf = np.frombuffer(d, np.uint8, offset=1) if len(d) > 1 else np.zeros(0, np.uint8)
    if len(buf) and buf[-1] >= 0x80:
        tail = len(buf) - int(np.argmax(buf[::-1] < 0x80)) if (buf < 0x80).any() else 0
        raise TraceFormatError(base + tail, "stack entry: varint runs past the end of its batch")
    try:
        starts, values = varint_tokens(buf)
    except VarintError as e:
        raise TraceFormatError(base + e.pos, f"stack entry: {e.message}") from None
    vals, n_tok, i = values.tolist(), len(values), 0
    while i < n_tok:
        at = base + int(starts[i])
        if vals[i] != EV.Stack or buf[starts[i]] >= 0x80:
            raise TraceFormatError(at, f"expected a stack entry, found byte 0x{buf[starts[i]]:02x}")
        if i + 3 > n_tok:
            raise TraceFormatError(at, "stack entry runs past the end of its batch")
        sid, n = vals[i + 1], vals[i + 2]
        if n > MAX_FRAMES:
            raise TraceFormatError(
                base + int(starts[i + 2]),
                f"stack of {n} frames exceeds the format's maximum {MAX_FRAMES}",
            )
        end = i + 3 + 4 * n
        if end > n_tok:
            raise TraceFormatError(at, "stack entry runs past the end of its batch")
        if sid in g.stacks:
            raise TraceFormatError(at, f"duplicate stack id {sid}")
        f = vals[i + 3 : end]
        g.stacks[sid] = tuple(zip(f[0::4], f[1::4], f[2::4], f[3::4], strict=True))
        i = end


def _count_cpu_samples(g: Generation, b: Batch) -> None:
    d, pos = b.data, 1
    while pos < len(d):
        if d[pos] != EV.CPUSample:
            raise TraceFormatError(b.data_offset + pos, "expected a CPU sample entry")
        pos += 1
        for what in ("time", "m", "p", "g", "stack"):
            _, pos = uvarint(d, pos, b.data_offset, f"CPU sample {what}")
        g.cpu_samples += 1


def _set_sync(g: Generation, b: Batch, version: int) -> None:
    if g.freq is not None:
        raise TraceFormatError(b.offset, "second frequency / sync batch in one generation")
    d, base = b.data, b.data_offset
    pos = 1 if version >= 25 else 0
    g.sync_ticks = b.time
    last = b.time
    while pos < len(d):
        typ = d[pos]
        if typ == EV.Frequency:
            g.freq, pos = uvarint(d, pos + 1, base, "frequency")
        elif typ == EV.ClockSnapshot and version >= 25:
            dt, pos = uvarint(d, pos + 1, base, "snapshot dt")
            mono, pos = uvarint(d, pos, base, "snapshot mono")
            sec, pos = uvarint(d, pos, base, "snapshot sec")
            nsec, pos = uvarint(d, pos, base, "snapshot nsec")
            last += dt
            g.snapshot = Snapshot(last, mono, sec * 1_000_000_000 + nsec)
        else:
            raise TraceFormatError(base + pos, f"unexpected byte 0x{typ:02x} in a sync batch")


def _add_batch(g: Generation, b: Batch, version: int) -> None:
    g.end_offset = b.data_offset + len(b.data)
    if b.kind == "experimental":
        g.experimental_batches += 1
        return
    if not b.data:
        return
    # The first byte classifies a batch: none of these is a timed event, so a regular event
    # batch never starts with one.
    first = b.data[0]
    if first == EV.Strings:
        _add_strings(g, b)
    elif first == EV.Stacks:
        _add_stacks(g, b)
    elif first == EV.CPUSamples:
        _count_cpu_samples(g, b)
    elif (version < 25 and first == EV.Frequency) or (version >= 25 and first == EV.Sync):
        _set_sync(g, b, version)
    else:
        g.batches.append(b)


@dataclass
class Cut:
    """Where and why reading stopped early (a truncated or cut-short file)."""

    offset: int
    message: str


def generations(batches: Iterator[Batch], header: Header, cut: list[Cut]) -> Iterator[Generation]:
    """Whole generations in file order. A trailing partial one is not yielded: its offset and
    the reason are appended to *cut* (the caller reports them)."""
    version = header.read_as
    cur: Generation | None = None
    try:
        for b in batches:
            if b.kind == "end-of-generation":
                if cur is None:
                    raise TraceFormatError(
                        b.offset, "end-of-generation marker with no generation open"
                    )
                cur.end_offset = b.offset + 1
                problem = cur.check(version)
                if problem:
                    raise TraceFormatError(cur.offset, f"generation {cur.gen}: {problem}")
                cur.complete = True
                yield cur
                cur = None
                continue
            if cur is not None and b.gen != cur.gen:
                if version >= 26:
                    raise TraceFormatError(
                        b.offset,
                        f"batch of generation {b.gen} inside generation {cur.gen} (no end marker)",
                    )
                if b.gen < cur.gen:
                    raise TraceFormatError(
                        b.offset, f"generations out of order: {b.gen} after {cur.gen}"
                    )
                problem = cur.check(version)
                if problem:
                    raise TraceFormatError(cur.offset, f"generation {cur.gen}: {problem}")
                cur.complete = True
                yield cur
                cur = None
            if cur is None:
                cur = Generation(b.gen, b.offset)
            _add_batch(cur, b, version)
    except Truncated as t:
        cut.append(Cut(t.offset, t.message))
        return
    if cur is None:
        return
    problem = cur.check(version)
    if version >= 26:
        cut.append(
            Cut(
                cur.end_offset,
                f"the file ends inside generation {cur.gen} (no end-of-generation marker)",
            )
        )
    elif problem:
        cut.append(Cut(cur.end_offset, f"the last generation ({cur.gen}) is incomplete: {problem}"))
    else:
        cur.complete = True
        yield cur
