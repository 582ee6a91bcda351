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
from .wire import TraceFormatError, VarintError, varint_tokens


@dataclass
class EventArrays:
    """Events of one generation, in file order (so per M in time order)."""

    typ: np.ndarray  # uint8
    m: np.ndarray  # int64 thread id, -1 = no thread
    time: np.ndarray  # int64 ns on the trace clock
    args: np.ndarray  # uint64 [n, MAX_ARGS], 0 where the event has fewer
    batch: np.ndarray  # int64 index of the batch in the list decoded
    offset: np.ndarray  # int64 file offset of the event's type byte
    batch_m: np.ndarray  # int64 M of each batch in the list decoded (-1 = no thread)

    def __len__(self) -> int:
        return len(self.typ)

    def threads(self) -> list[int]:
        """The Ms (not -1) that have events here: per batch, not per event (no hashing of
        every event's M)."""
        has = np.bincount(self.batch, minlength=len(self.batch_m)) > 0
        return sorted(set(self.batch_m[has].tolist()) - {-1})


#: Events gathered per Python step when walking a batch (2**_JUMP_LOG2).
_JUMP_LOG2 = 4


def _event_starts(
    step: np.ndarray, batch_tok: np.ndarray, batch_end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Token index of every event, walking each batch from its first token.

    The next event starts ``step[i]`` tokens after an event at token i (0: invalid type).
    A Python loop takes 16-event jumps (composed with numpy), and the events in between are
    filled in vectorised; batches are checked to end exactly on an event boundary.
    """
    n = len(step)
    idx = np.int32 if n < (1 << 31) - 64 else np.int64
    # n + 1: "no next event" (invalid type, or running past the data). It differs from every
    # batch end (<= n), so such an event always fails the end-of-batch check below.
    stop = n + 1
    nxt = np.minimum(np.arange(n, dtype=idx) + step, stop).astype(idx)
    nxt[step == 0] = stop
    nxt = np.append(nxt, [stop, stop]).astype(idx)  # indices n and n + 1 map to the stop
    jump = nxt
    for _ in range(_JUMP_LOG2):
        jump = jump[jump]
    jump_list = memoryview(jump)  # indexing yields Python ints, without a list of them all
    anchors: list[int] = []
    push = anchors.append
    for tb, te in zip(batch_tok.tolist(), batch_end.tolist(), strict=True):
        p = tb
        while p < te:
            push(p)
            p = jump_list[p]
    a = np.array(anchors, np.int64)
    pts = np.empty((len(a), 1 << _JUMP_LOG2), np.int64)
    if len(a):
        pts[:, 0] = a
    for k in range(1, pts.shape[1]):
        pts[:, k] = nxt[pts[:, k - 1]]
    end = batch_end[np.searchsorted(batch_tok, a, "right") - 1]
    starts = pts[pts < end[:, None]]
    return starts, nxt


def thread_groups(batches: list, max_bytes: int) -> list[list]:
    """The batches split into groups of whole threads (every batch of an M in one group, in
    file order) of about *max_bytes* each: decoding and state tracking go group by group,
    so their temporaries scale with a group, not with a generation.

    Within a group the Ms come in ascending order (no thread, -1, first), so its decoded
    events are already in the per-M order state tracking works in (states.ThreadStates)."""
    by_m: dict[int, list] = {}
    for b in batches:
        by_m.setdefault(b.m, []).append(b)
    groups: list[list[list]] = []
    size = max_bytes
    for bs in by_m.values():
        n = sum(len(b.data) for b in bs)
        if size + n > max_bytes and (not groups or groups[-1]):
            groups.append([])
            size = 0
        groups[-1].append(bs)
        size += n
    return [[b for bs in sorted(g, key=_m_order) for b in bs] for g in groups if g]


def _m_order(bs: list) -> int:
    """An M's batches sort by the M's id as decoded (NO_THREAD is -1)."""
    return -1 if bs[0].m == NO_THREAD else bs[0].m


def decode_batches(batches: list, freq: int, version: int) -> EventArrays:
    """Timed events of some batches of one generation (file order kept per batch)."""
    if not batches:
        z = np.zeros(0, np.int64)
        empty = np.zeros((0, MAX_ARGS), np.uint64)
        return EventArrays(np.zeros(0, np.uint8), z, z, empty, z, z, z)
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
        tok_start, tok = varint_tokens(buf)
    except VarintError as e:
        raise TraceFormatError(file_offset(e.pos), e.message) from None

    nargs = np.array(timed_nargs(version), np.int64)
    steps = (nargs + 1).astype(np.int8)
    steps[steps == 1] = 0  # a type with no table entry is invalid here
    step = np.where(tok < 256, steps[np.minimum(tok, 255).astype(np.intp)], np.int8(0))
    batch_tok = np.searchsorted(tok_start, byte_start)  # first token of each batch
    batch_end = np.append(batch_tok[1:], len(tok))
    ev, nxt = _event_starts(step, batch_tok, batch_end)
    ev_batch = np.searchsorted(batch_tok, ev, "right") - 1
    last = np.flatnonzero(np.diff(ev_batch, append=-1) != 0)  # last event of each batch
    bad = np.flatnonzero(nxt[ev[last]] != batch_end[ev_batch[last]])
    if len(bad):
        q = int(ev[last[bad[0]]])
        off = file_offset(int(tok_start[q]))
        if step[q] == 0:
            raise TraceFormatError(
                off, f"invalid event type {int(tok[q])} in go 1.{version} event batch"
            )
        raise TraceFormatError(
            off, f"event {BY_ID[int(tok[q])].name} runs past the end of its batch"
        )
    typ = tok[ev].astype(np.uint8)
    n_args = nargs[typ] - 1  # after dt
    args = np.zeros((len(ev), MAX_ARGS), np.uint64)
    for j in range(MAX_ARGS):
        has = n_args > j
        args[has, j] = tok[ev[has] + 2 + j]
    batch = ev_batch

    # time = freq.mul(batch.time) + sum of freq.mul(dt), like the Go reader (exact x64 on Linux)
    ratio = 1e9 / freq
    dt_ns = (tok[ev + 1].astype(np.float64) * ratio).astype(np.int64)
    base = np.array([int(b.time * ratio) for b in batches], np.int64)
    cum = np.cumsum(dt_ns)
    first_of_batch = np.searchsorted(batch, np.arange(len(batches)))
    before = np.where(first_of_batch > 0, cum[np.maximum(first_of_batch - 1, 0)], 0)
    time = base[batch] + cum - before[batch]
    if len(time) and (time.min() < 0 or time.max() >= 1 << 62):
        i = int(np.argmax((time < 0) | (time >= 1 << 62)))
        raise TraceFormatError(file_offset(int(tok_start[ev[i]])), "timestamp out of range")

    ms = np.array([b.m for b in batches], np.uint64)
    batch_m = np.where(ms == NO_THREAD, -1, ms.astype(np.int64))
    offset = (data_offsets - byte_start)[batch] + tok_start[ev]
    return EventArrays(typ, batch_m[batch], time, args, batch, offset, batch_m)
