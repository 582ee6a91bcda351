"""Goroutine transitions -> stretches (future slices), one generation at a time.

A stretch is the time between two consecutive transitions of one goroutine, in the state the
first one entered. Each generation's transitions close the stretches left open by the
previous generation, and the last transition of every goroutine stays open for the next one,
so the transitions themselves never accumulate: memory holds one generation plus the compact
stretch columns (about 43 bytes per future slice).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .events import EV
from .states import NOT_EXIST, RUNNABLE, RUNNING, SYSCALL, UNDETERMINED, WAITING, Transitions

SLICE_STATES = (RUNNABLE, RUNNING, SYSCALL, WAITING)
_IS_SLICE = np.zeros(6, bool)
_IS_SLICE[list(SLICE_STATES)] = True

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
        names = list(StretchColumns.__dataclass_fields__)
        cols = []
        for n in names:  # one column at a time, so only one extra column is ever alive
            cols.append(
                np.concatenate([getattr(p, n) for p in parts]) if parts else np.zeros(0, np.int64)
            )
            for p in parts:
                setattr(p, n, None)
        return StretchColumns(*cols)

    def __len__(self) -> int:
        return len(self.goid)


def _real(tr: Transitions) -> Transitions:
    """Drop restatements (a generation re-announcing a state): they neither end nor begin."""
    keep = ~((tr.frm == tr.to) & (tr.frm != UNDETERMINED))
    return tr if keep.all() else tr.take(np.flatnonzero(keep))


@dataclass
class Stretches:
    parts: list[StretchColumns] = field(default_factory=list)
    open: Transitions | None = None  # each goroutine's last transition so far

    def add(self, tr: Transitions) -> None:
        """*tr*: one generation's transitions, ordered per goroutine."""
        tr = _real(tr)
        if self.open is not None and len(self.open):
            tr = Transitions.concat([self.open, tr])
            tr = tr.take(np.argsort(tr.goid, kind="stable"))  # carried row first per goroutine
        n = len(tr)
        if not n:
            return
        last = np.ones(n, bool)
        last[:-1] = tr.goid[1:] != tr.goid[:-1]
        # a goroutine that ended has nothing left to close (and its id may be reused)
        self.open = tr.take(np.flatnonzero(last & (tr.to != NOT_EXIST)))
        self._emit(tr, np.flatnonzero(~last), None)

    def finish(self, end_ns: int) -> StretchColumns:
        """Close what is still open at the end of the trace (flagged truncated)."""
        if self.open is not None and len(self.open):
            self._emit(self.open, np.arange(len(self.open)), end_ns)
            self.open = None
        return StretchColumns.concat(self.parts)

    def _emit(self, tr: Transitions, rows: np.ndarray, end_ns: int | None) -> None:
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
        self.parts.append(
            StretchColumns(
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
        )
