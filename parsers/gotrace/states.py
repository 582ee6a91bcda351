"""Goroutine state transitions, derived per OS thread and ordered per goroutine.

Each event belongs to the M (OS thread) of its batch, and most goroutine events concern the
goroutine the M is running at that moment, so the "current goroutine" of each M is a forward
fill over that M's own events (set by GoStart / GoStatus / GoCreateSyscall / GoSwitch,
cleared by GoStop / GoBlock / GoDestroy / GoSyscallEndBlocked / GoDestroySyscall), carried
from one generation to the next. That is vectorised; no cross-thread merge is needed.

A goroutine's own history is then ordered by its sequence numbers, the same facts the Go
reader uses to order events across threads: GoStart, GoUnblock and GoSwitch carry the
goroutine's per-generation sequence number, and every event on the M between a GoStart and
the goroutine leaving the M belongs to that episode. Sorting a goroutine's transitions by
(generation, episode sequence, time) is therefore exact even when two threads' clocks
disagree by a few ticks. Times are the raw event times (the Go reader additionally bumps an
event to 1 ns after the previous one it emitted, across all threads).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .decode import EventArrays
from .events import EV

# Goroutine states (our codes; names as the Go tools print them).
NOT_EXIST, RUNNABLE, RUNNING, SYSCALL, WAITING, UNDETERMINED = range(6)
STATE_NAMES = ["NotExist", "Runnable", "Running", "Syscall", "Waiting", "Undetermined"]
# tracev2 GoStatus wire values -> our states
_FROM_STATUS = np.array([UNDETERMINED, RUNNABLE, RUNNING, SYSCALL, WAITING], np.int8)

_KEEP, _NONE = -2, -1
_CLEARS = np.zeros(256, bool)  # event types after which the thread runs no goroutine
_CLEARS[[EV.GoStop, EV.GoBlock, EV.GoDestroy, EV.GoSyscallEndBlocked, EV.GoDestroySyscall]] = True


@dataclass
class Transitions:
    """One row per goroutine state transition (columns are parallel numpy arrays)."""

    goid: np.ndarray  # int64
    frm: np.ndarray  # int8 state
    to: np.ndarray  # int8 state
    time: np.ndarray  # int64 ns (trace clock)
    m: np.ndarray  # int64 thread the transition happened on (-1: none)
    typ: np.ndarray  # uint8 event type that caused it
    stack: np.ndarray  # int32 stack id: local to the generation, then global (0: none)
    reason: np.ndarray  # int32 string id: local to the generation, then global (0: none)

    @staticmethod
    def concat(parts: list[Transitions], consume: bool = False) -> Transitions:
        """One set of columns from *parts*; with *consume* the parts are emptied column by
        column as they are copied, so one extra column at a time is alive, not a copy."""
        names = Transitions.__dataclass_fields__
        if not parts:
            return Transitions(*(np.zeros(0, np.int64) for _ in names))
        if len(parts) == 1:
            return parts[0]
        cols = []
        for n in names:
            cols.append(np.concatenate([getattr(p, n) for p in parts]))
            if consume:
                for p in parts:
                    setattr(p, n, None)
        return Transitions(*cols)

    def __len__(self) -> int:
        return len(self.goid)

    def take(self, order: np.ndarray) -> Transitions:
        return Transitions(*(getattr(self, n)[order] for n in Transitions.__dataclass_fields__))

    def reorder(self, order: np.ndarray) -> Transitions:
        """``take`` in place, a column at a time (the old column is freed as the new one is
        made): for the big per-generation sorts."""
        for n in Transitions.__dataclass_fields__:
            setattr(self, n, getattr(self, n)[order])
        return self


def syscall_statuses(ev: EventArrays) -> list[tuple[int, int]]:
    """(goroutine, thread) of each generation-start status that puts a goroutine in a
    syscall on another M than the batch's own: that M is running it (and may have no events
    of its own)."""
    is_status = (ev.typ == EV.GoStatus) | (ev.typ == EV.GoStatusStack)
    if not is_status.any():
        return []
    a = ev.args[is_status].astype(np.int64)
    m = ev.m[is_status]
    other = (a[:, 2] == 3) & (a[:, 1] != m) & (a[:, 1] != -1)
    return list(zip(a[other, 0].tolist(), a[other, 1].tolist(), strict=True))


@dataclass
class ThreadStates:
    """What each M is running, carried across generations."""

    initial_gen: int | None = None
    current: dict[int, tuple[int, int]] = field(default_factory=dict)  # m -> (goid, seq)
    problems: dict[str, int] = field(default_factory=dict)

    def problem(self, what: str, n: int = 1) -> None:
        if n:
            self.problems[what] = self.problems.get(what, 0) + int(n)

    def transitions(
        self,
        groups: Sequence[list],
        decode: Callable[[list], EventArrays],
        gen: int,
        seen: Callable[[EventArrays], None] = lambda ev: None,
    ) -> Transitions:
        """One generation's transitions, per goroutine in lived order.

        *groups*: the generation's batches in groups of whole threads (decode.thread_groups);
        each is decoded (*decode*), shown to *seen* (counts) and turned into transitions before
        the next is decoded, so one group's events are held at a time, not the generation's.

        A goroutine-in-syscall status names the thread it sits on, and binds that thread
        before any of its events are read, whichever group the status came in. When the
        status comes after the named thread's group was already worked (rare: the runtime
        writes it from another thread), that group is decoded and worked again from the state
        it started from, so the result is that of reading every status first.
        """
        if self.initial_gen is None:
            self.initial_gen = gen
        done: dict[int, int] = {}  # thread -> index of its group, once worked
        start: dict[int, tuple[int, int] | None] = {}  # thread -> its state before that
        worked: list[tuple[Transitions, np.ndarray, dict[str, int]] | None] = []
        redo: set[int] = set()
        for i, batches in enumerate(groups):
            ev = decode(batches)
            seen(ev)
            for goid, mid in syscall_statuses(ev):
                j = done.get(mid)
                cur = self.current.get(mid) if j is None else start[mid]
                if cur is not None and cur[0] not in (goid, _NONE):
                    self.problem("thread running another goroutine named in a syscall status")
                if j is None:
                    self.current[mid] = (goid, 0)
                else:
                    start[mid] = (goid, 0)
                    redo.add(j)
            for m in ev.threads():
                done[m], start[m] = i, self.current.get(m)
            worked.append(self._worked(ev, gen))
            del ev
        for j in sorted(redo):
            ev = decode(groups[j])
            for m in ev.threads():
                if start[m] is None:
                    self.current.pop(m, None)
                else:
                    self.current[m] = start[m]
            worked[j] = self._worked(ev, gen)
            del ev
        parts, keys = [], []
        for w in worked:
            if w is not None:
                parts.append(w[0])
                keys.append(w[1])
                for what, n in w[2].items():
                    self.problem(what, n)
        del worked
        if not parts:
            return Transitions.concat([])
        tr = Transitions.concat(parts, consume=True)
        key = np.concatenate(keys)
        del parts, keys
        # per goroutine in lived order within this generation (see the module docstring);
        # generations come in order, so a stable sort by goroutine finishes the job
        return tr.reorder(np.lexsort((tr.time, key, tr.goid)))

    def _worked(
        self, ev: EventArrays, gen: int
    ) -> tuple[Transitions, np.ndarray, dict[str, int]] | None:
        """A group's transitions, episode keys and problems (kept apart until the group is
        final: a group worked again must not count its problems twice)."""
        problems: dict[str, int] = {}
        tr, key = self._group(ev, gen, problems)
        return (tr, key, problems) if len(tr) or problems else None

    def _group(
        self, ev: EventArrays, gen: int, problems: dict[str, int]
    ) -> tuple[Transitions, np.ndarray]:
        """Transitions (unsorted) of one group of whole threads, and each one's episode key."""
        n = len(ev)
        typ, m, a, t = ev.typ, ev.m, ev.args, ev.time
        if n and not (m[1:] >= m[:-1]).all():  # thread_groups gives them in this order
            order = np.argsort(m, kind="stable")  # per M, in file (= time) order
            typ, m, a, t = typ[order], m[order], a[order], t[order]
        a = a.view(np.int64)  # ids and seqs fit; m = 2^64-1 becomes -1

        is_status = (typ == EV.GoStatus) | (typ == EV.GoStatusStack)
        status = np.where(is_status, a[:, 2], 0)

        set_g = np.full(n, _KEEP, np.int64)
        set_seq = np.zeros(n, np.int64)
        starts = (typ == EV.GoStart) | (typ == EV.GoSwitch) | (typ == EV.GoSwitchDestroy)
        set_g[starts] = a[starts, 0]
        set_seq[starts] = a[starts, 1]
        bind = (typ == EV.GoCreateSyscall) | (
            is_status & ((status == 2) | ((status == 3) & (a[:, 1] == m)))
        )
        set_g[bind] = a[bind, 0]
        set_g[_CLEARS[typ]] = _NONE
        set_g[m == -1] = _KEEP  # no thread, no state

        # forward fill per M (m is sorted), seeded with the state carried from before
        pos = np.arange(n)
        seg_first = np.flatnonzero(np.diff(m, prepend=m[:1] - 1))
        seg_len = np.diff(np.append(seg_first, n))
        seg_start = np.repeat(seg_first, seg_len)
        carry_first = [self.current.get(x, (_NONE, 0))[0] for x in m[seg_first].tolist()]
        carry_g = np.repeat(np.array(carry_first, np.int64), seg_len)
        last = np.maximum.accumulate(np.where(set_g != _KEEP, pos, -1))
        valid = last >= seg_start
        last = np.maximum(last, 0)
        g_after = np.where(valid, set_g[last], carry_g)
        seq_after = np.where(valid, set_seq[last], 0)  # sequences restart every generation
        first = pos == seg_start
        g_before = np.where(first, carry_g, np.roll(g_after, 1))
        seq_before = np.where(first, 0, np.roll(seq_after, 1))
        seg_end = seg_first + seg_len - 1
        ends = zip(
            m[seg_end].tolist(), g_after[seg_end].tolist(), seq_after[seg_end].tolist(), strict=True
        )
        for mm, g_end, s_end in ends:
            if mm != -1:
                self.current[mm] = (g_end, s_end)

        rows: list[tuple] = []
        keys: list[np.ndarray] = []  # goroutine sequence number of each row's episode

        def count(what: str, n) -> None:
            if n:
                problems[what] = problems.get(what, 0) + int(n)

        present = np.bincount(typ, minlength=256) > 0  # event types in this group

        def add(mask, goid, frm, to, key, stack=None, reason=None, m_at=None):
            if mask is None:
                return
            idx = np.flatnonzero(mask)  # taken once, then each column by index
            k = len(idx)
            if not k:
                return
            keys.append(key[idx])
            rows.append(
                (
                    goid[idx],
                    np.full(k, frm, np.int8) if np.isscalar(frm) else frm[idx],
                    np.full(k, to, np.int8) if np.isscalar(to) else to[idx],
                    t[idx],
                    (m if m_at is None else m_at)[idx],
                    typ[idx],
                    stack[idx].astype(np.int32) if stack is not None else np.zeros(k, np.int32),
                    reason[idx].astype(np.int32) if reason is not None else np.zeros(k, np.int32),
                )
            )

        def of_type(ev_type):
            return typ == ev_type if present[ev_type] else None

        def on_current(ev_type, frm, to, stack=None, reason=None):
            mask = of_type(ev_type)
            if mask is None:
                return
            orphan = mask & (g_before < 0)
            count(f"{_name(ev_type)} with no goroutine on its thread", orphan.sum())
            add(mask & ~orphan, g_before, frm, to, seq_before, stack, reason)

        g0, zero = a[:, 0], np.zeros(n, np.int64)
        add(of_type(EV.GoStart), g0, RUNNABLE, RUNNING, a[:, 1])
        on_current(EV.GoStop, RUNNING, RUNNABLE, a[:, 1], a[:, 0])
        on_current(EV.GoBlock, RUNNING, WAITING, a[:, 1], a[:, 0])
        on_current(EV.GoDestroy, RUNNING, NOT_EXIST)
        on_current(EV.GoSyscallBegin, RUNNING, SYSCALL, a[:, 1])
        on_current(EV.GoSyscallEnd, SYSCALL, RUNNING)
        on_current(EV.GoSyscallEndBlocked, SYSCALL, RUNNABLE)
        on_current(EV.GoDestroySyscall, SYSCALL, NOT_EXIST)
        add(of_type(EV.GoUnblock), g0, WAITING, RUNNABLE, a[:, 1], a[:, 2])
        add(of_type(EV.GoCreate), g0, NOT_EXIST, RUNNABLE, zero, a[:, 2])
        add(of_type(EV.GoCreateBlocked), g0, NOT_EXIST, WAITING, zero, a[:, 2])
        add(of_type(EV.GoCreateSyscall), g0, NOT_EXIST, SYSCALL, zero)
        on_current(EV.GoSwitch, RUNNING, WAITING)
        on_current(EV.GoSwitchDestroy, RUNNING, NOT_EXIST)
        if present[EV.GoSwitch] or present[EV.GoSwitchDestroy]:
            sw = (typ == EV.GoSwitch) | (typ == EV.GoSwitchDestroy)
            add(sw, g0, WAITING, RUNNING, a[:, 1])
        if is_status.any():
            bad = is_status & ((status < 1) | (status > 4))
            count("goroutine status with an invalid value", bad.sum())
            ok = is_status & ~bad
            to = _FROM_STATUS[np.clip(status, 0, 4)]
            frm = np.full(n, UNDETERMINED, np.int8) if gen == self.initial_gen else to
            m_status = np.where(status == 3, a[:, 1], m)
            stack = np.where(typ == EV.GoStatusStack, a[:, 3], 0)
            add(ok, g0, frm, to, zero, stack, None, m_status)
        if not rows:
            return Transitions.concat([]), np.zeros(0, np.int64)
        tr = Transitions(*(np.concatenate(c) for c in zip(*rows, strict=True)))
        return tr, np.concatenate(keys)


def _name(ev_type: int) -> str:
    from .events import BY_ID

    return BY_ID[ev_type].name


def order_transitions(parts: list[Transitions]) -> Transitions:
    """Per goroutine, in the order the goroutine lived them (see the module docstring).

    Each generation's part is already ordered by (goroutine, sequence, time); a stable sort by
    goroutine merges the generations, which follow each other in time.
    """
    tr = Transitions.concat(parts)
    if len(parts) <= 1:
        return tr
    return tr.take(np.argsort(tr.goid, kind="stable"))
