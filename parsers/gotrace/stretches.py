"""Goroutine transitions -> stretches (future slices), one generation at a time.

A stretch is the time between two consecutive transitions of one goroutine, in the state the
first one entered. Each generation's transitions close the stretches left open by the
previous generation, and the last transition of every goroutine stays open for the next one,
so the transitions themselves never accumulate. Each generation's closed stretches come back
as one part (about 43 bytes per future slice): a reader that writes them out as it goes
(``tracecorr tables``) holds one generation at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..memory import release_freed_memory
from .events import EV
from .states import NOT_EXIST, RUNNABLE, RUNNING, SYSCALL, UNDETERMINED, WAITING, Transitions

SLICE_STATES = (RUNNABLE, RUNNING, SYSCALL, WAITING)
_IS_SLICE = np.zeros(6, bool)
_IS_SLICE[list(SLICE_STATES)] = True

_DTYPES = {
    "goid": np.int64,
    "start": np.int64,
    "dur": np.int64,
    "tid": np.int64,
    "state": np.int8,
    "stack": np.int32,
    "reason": np.int32,
    "entered_by": np.uint8,
    "flags": np.uint8,
}

#: Stretches cut at once: the temporaries of cutting, and the chunks a writer holds, scale
#: with this, not with a generation (one Parquet row group of slices, store.ROW_GROUP_ROWS).
BLOCK_ROWS = 1 << 16

# flag bits per stretch
P_LOST, TRUNCATED, START_UNKNOWN = 4, 2, 1


@dataclass
class StretchColumns:
    """Parallel arrays, one row per stretch (see tables.py for their meaning as slices)."""

    goid: np.ndarray
    start: np.ndarray  # ns
    dur: np.ndarray  # ns
    tid: np.ndarray  # the thread (running / syscall), -1 otherwise
    state: np.ndarray  # int8
    stack: np.ndarray  # int32 global stack id (0: none)
    reason: np.ndarray  # int32 global string id (0: none)
    entered_by: np.ndarray  # uint8 event type of the transition that began it
    flags: np.ndarray  # uint8: P_LOST | TRUNCATED | START_UNKNOWN

    @staticmethod
    def concat(parts: list[StretchColumns]) -> StretchColumns:
        """One set of columns from *parts*; the parts are emptied as they are copied, and
        their pages handed back, so only one extra column is resident at a time."""
        names = list(StretchColumns.__dataclass_fields__)
        if not parts:
            return StretchColumns(*(np.zeros(0, _DTYPES[n]) for n in names))
        cols = []
        for n in names:  # one column at a time, so only one extra column is ever alive
            cols.append(np.concatenate([getattr(p, n) for p in parts]))
            for p in parts:
                setattr(p, n, None)
            release_freed_memory()  # glibc keeps a generation's pages otherwise
        return StretchColumns(*cols)

    def __len__(self) -> int:
        return len(self.goid)


def _real(tr: Transitions, consume: bool) -> Transitions:
    """Drop restatements (a generation re-announcing a state): they neither end nor begin.
    With *consume*, in place."""
    keep = ~((tr.frm == tr.to) & (tr.frm != UNDETERMINED))
    if keep.all():
        return tr
    rows = np.flatnonzero(keep)
    return tr.reorder(rows) if consume else tr.take(rows)


@dataclass
class Stretches:
    open: Transitions | None = None  # each goroutine's last transition so far

    def add(self, tr: Transitions, consume: bool = False) -> Iterator[StretchColumns]:
        """*tr*: one generation's transitions, ordered per goroutine. Returns the stretches
        they close, in blocks of at most BLOCK_ROWS (in the same order as one part would
        have them): the caller holds one block at a time, not the generation's stretches.
        The open transitions are updated at once, before any block is taken. With
        *consume*, *tr*'s columns are released as they are used."""
        tr = _real(tr, consume)
        if self.open is not None and len(self.open):
            tr = Transitions.concat([self.open, tr], consume=consume)
            tr.reorder(np.argsort(tr.goid, kind="stable"))  # carried row first per goroutine
        n = len(tr)
        if not n:
            return iter(())
        last = np.ones(n, bool)
        last[:-1] = tr.goid[1:] != tr.goid[:-1]
        # a goroutine that ended has nothing left to close (and its id may be reused)
        self.open = tr.take(np.flatnonzero(last & (tr.to != NOT_EXIST)))
        return self._blocks(tr, np.flatnonzero(~last))

    def _blocks(self, tr: Transitions, rows: np.ndarray) -> Iterator[StretchColumns]:
        for a in range(0, len(rows), BLOCK_ROWS):
            box = [self._emit(tr, rows[a : a + BLOCK_ROWS], None)]
            if len(box[0]):
                yield box.pop()  # not kept by this frame while suspended

    def finish(self, end_ns: int) -> StretchColumns:
        """Close what is still open at the end of the trace (flagged truncated)."""
        if self.open is None or not len(self.open):
            return StretchColumns.concat([])
        part = self._emit(self.open, np.arange(len(self.open)), end_ns)
        self.open = None
        return part

    def _emit(self, tr: Transitions, rows: np.ndarray, end_ns: int | None) -> StretchColumns:
        rows = rows[_IS_SLICE[tr.to[rows]]]
        if end_ns is None:
            nxt = rows + 1
            stop = tr.time[nxt]
            flags = np.where(tr.typ[nxt] == EV.GoSyscallEndBlocked, P_LOST, 0)
        else:
            stop = np.full(len(rows), end_ns)
            flags = np.full(len(rows), TRUNCATED)
        state = tr.to[rows]
        start = tr.time[rows]
        flags = (
            flags * (state == SYSCALL)
            | np.where(end_ns is None, 0, TRUNCATED)
            | np.where(tr.frm[rows] == UNDETERMINED, START_UNKNOWN, 0)
        ).astype(np.uint8)
        on_thread = (state == RUNNING) | (state == SYSCALL)
        return StretchColumns(
            goid=tr.goid[rows],
            start=start,
            dur=np.maximum(stop - start, 0),  # threads' clocks may disagree by a few ticks
            tid=np.where(on_thread, tr.m[rows], -1),
            state=state,
            stack=tr.stack[rows],
            reason=tr.reason[rows],
            entered_by=tr.typ[rows],
            flags=flags,
        )
