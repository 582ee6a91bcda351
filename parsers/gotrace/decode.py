"""Timed events of one generation, decoded into numpy arrays in one vectorised pass.

Every value in a regular batch is a LEB128 varint, and every event type byte is below 0x80,
so the whole generation's event data can be split into tokens at once (a token ends at each
byte below 0x80) and the tokens' values computed with numpy. Only the walk from one event to
the next (how many tokens an event has depends on its type) is a Python loop, over small
ints. Times follow the Go reader's arithmetic: batch time plus per-event deltas, each scaled
by 1e9/frequency (exactly x64 on Linux).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .events import BY_ID, MAX_ARGS, NO_THREAD, timed_nargs
from .generation import Generation
from .wire import TraceFormatError


@dataclass
class EventArrays:
    """Events of one generation, in file order (so per M in time order)."""

    typ: np.ndarray  # uint8
    m: np.ndarray  # int64 thread id, -1 = no thread
    time: np.ndarray  # int64 ns on the trace clock
    args: np.ndarray  # uint64 [n, MAX_ARGS], 0 where the event has fewer
    batch: np.ndarray  # int64 index of the batch in Generation.batches
    offset: np.ndarray  # int64 file offset of the event's type byte

    def __len__(self) -> int:
        return len(self.typ)


def _tokens(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets and values of every varint in *buf* (which ends on a varint end)."""
    ends = np.flatnonzero(buf < 0x80)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    if len(ends) and (ends - starts).max() >= 10:
        i = int(np.argmax(ends - starts >= 10))
        raise _Bad(int(starts[i]), "varint longer than 10 bytes")
    ten = np.flatnonzero(ends - starts == 9)
    if len(ten) and (buf[ends[ten]] > 1).any():
        raise _Bad(int(starts[ten[np.argmax(buf[ends[ten]] > 1)]]), "varint overflows 64 bits")
    tok_of_byte = np.repeat(np.arange(len(starts)), ends - starts + 1)
    shift = (np.arange(len(buf)) - starts[tok_of_byte]) * 7
    vals = (buf & 0x7F).astype(np.uint64) << shift.astype(np.uint64)
    return starts, np.add.reduceat(vals, starts)


class _Bad(Exception):
    def __init__(self, pos: int, message: str) -> None:
        self.pos, self.message = pos, message


def decode_generation(g: Generation, version: int) -> EventArrays:
    batches = g.batches
    if not batches:
        z = np.zeros(0, np.int64)
        return EventArrays(np.zeros(0, np.uint8), z, z, np.zeros((0, MAX_ARGS), np.uint64), z, z)
    sizes = np.array([len(b.data) for b in batches], np.int64)
    byte_start = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    buf = np.frombuffer(b"".join(b.data for b in batches), np.uint8)
    data_offsets = np.array([b.data_offset for b in batches], np.int64)

    def file_offset(pos: int) -> int:
        i = int(np.searchsorted(byte_start, pos, "right") - 1)
        return int(data_offsets[i] + pos - byte_start[i])

    nonempty = sizes > 0
    last_bytes = buf[(byte_start + sizes - 1)[nonempty]]
    if (last_bytes >= 0x80).any():
        i = int(np.flatnonzero(nonempty)[np.argmax(last_bytes >= 0x80)])
        raise TraceFormatError(int(data_offsets[i] + sizes[i] - 1), "batch ends inside a varint")
    try:
        tok_start, tok = _tokens(buf)
    except _Bad as e:
        raise TraceFormatError(file_offset(e.pos), e.message) from None

    nargs = np.array(timed_nargs(version), np.int64)
    step = np.where(tok < 256, nargs[np.minimum(tok, 255).astype(np.int64)] + 1, 0)
    step[step == 1] = 0  # type with no args in the table = invalid here
    step_list = step.tolist()
    batch_tok = np.searchsorted(tok_start, byte_start)  # first token of each batch
    batch_tok_end = np.append(batch_tok[1:], len(tok))
    starts: list[int] = []
    push = starts.append
    for tb, te in zip(batch_tok.tolist(), batch_tok_end.tolist(), strict=True):
        p = tb
        while p < te:
            s = step_list[p]
            if not s:
                off = file_offset(int(tok_start[p]))
                raise TraceFormatError(
                    off, f"invalid event type {int(tok[p])} in go 1.{version} event batch"
                )
            push(p)
            p += s
        if p != te:
            off = file_offset(int(tok_start[te - 1]))
            raise TraceFormatError(
                off, f"event {BY_ID[int(tok[starts[-1]])].name} runs past the end of its batch"
            )
    ev = np.array(starts, np.int64)
    typ = tok[ev].astype(np.uint8)
    n_args = nargs[typ] - 1  # after dt
    args = np.zeros((len(ev), MAX_ARGS), np.uint64)
    for j in range(MAX_ARGS):
        has = n_args > j
        args[has, j] = tok[ev[has] + 2 + j]
    batch = np.searchsorted(batch_tok, ev, "right") - 1

    # time = freq.mul(batch.time) + sum of freq.mul(dt), like the Go reader (exact x64 on Linux)
    ratio = 1e9 / g.freq
    dt_ns = (tok[ev + 1].astype(np.float64) * ratio).astype(np.int64)
    base = np.array([int(b.time * ratio) for b in batches], np.int64)
    cum = np.cumsum(dt_ns)
    first_of_batch = np.searchsorted(batch, np.arange(len(batches)))
    before = np.where(first_of_batch > 0, cum[np.maximum(first_of_batch - 1, 0)], 0)
    time = base[batch] + cum - before[batch]

    ms = np.array([b.m for b in batches], np.uint64)
    m = np.where(ms == NO_THREAD, -1, ms.astype(np.int64))[batch]
    offset = (data_offsets - byte_start)[batch] + tok_start[ev]
    return EventArrays(typ, m, time, args, batch, offset)
