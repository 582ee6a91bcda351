"""Syscall enter/exit events -> one logical syscall each, per thread, vectorised.

Per thread, in time order, an enter followed by the exit of the same syscall is a pair. A
pair whose exit returned ERESTART* (-512 ERESTARTSYS, -513 ERESTARTNOINTR, -514
ERESTARTNOHAND, -516 ERESTART_RESTARTBLOCK) was interrupted (a signal, or a ptrace stop such
as py-spy's) and is re-entered at once, as the same syscall or as restart_syscall; such runs
are merged into one logical syscall that keeps the count of restarts, or one 600 ms wait would
look like sixty short ones. At the edges of the recording a thread may already be inside a
syscall (an exit with no enter: kept from the first event, flagged start_unknown) or still be
inside one (an enter with no exit: kept to the last event, flagged unfinished).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..columns import pair_order
from .columns import SYS_ENTER, SYS_EXIT

ERESTART = np.array([-512, -513, -514, -516], np.int64)


@dataclass
class SyscallSlices:
    tid: np.ndarray
    start: np.ndarray
    end: np.ndarray
    name: np.ndarray  # syscall-name code
    nr: np.ndarray  # -1 for syscalls:* tracepoints
    ret: np.ndarray  # of the last exit
    fd: np.ndarray  # -1 when unknown
    restarts: np.ndarray
    enter_row: np.ndarray  # record row of the first enter (-1 when it was not seen)
    flags: np.ndarray  # START_UNKNOWN | UNFINISHED | EXIT_LOST
    dropped_exits: int = 0  # an exit with no enter, not at the start of the thread
    duplicates: int = 0  # the same event recorded twice (same thread, time, direction, nr)
    clone_children: int = 0  # a new thread's first exit: the child side of clone


#: START_UNKNOWN: already inside when the recording began; UNFINISHED: still inside at its
#: end; EXIT_LOST: its sys_exit was never seen (perf lost it): it ended before the thread's
#: next syscall, which bounds it
START_UNKNOWN, UNFINISHED, EXIT_LOST = 1, 2, 4


def pair_syscalls(
    sys: dict[str, np.ndarray],
    rec_tid: np.ndarray,
    rec_time: np.ndarray,
    first_time: int,
    thread_end: dict[int, int],
    last_time: int,
    born: set[int],
    restart_code: int | None,
) -> SyscallSlices:
    """*thread_end*: when a thread exited (PERF_RECORD_EXIT); *born*: threads created during
    the recording, whose first exit is the child side of clone, not a syscall they entered.
    *sys* is consumed: its columns are released as their sorted copies are made."""
    row = sys["row"]
    tid, t = rec_tid[row], rec_time[row]
    # rows come in row order (as records were read): the stable (tid, t) order is
    # lexsort((row, t, tid)), with one sort key
    rows_ascend = len(row) < 2 or bool((row[1:] > row[:-1]).all())
    order = pair_order(tid, t) if rows_ascend else np.lexsort((row, t, tid))
    # perf sometimes writes one event twice (seen with -p on a ptraced thread: one sys_enter,
    # two records at the same nanosecond). A thread cannot enter or leave two syscalls at one
    # instant, so the copy goes; kept, it would read as an enter whose exit was lost, and cut
    # a restarted wait in two.
    dup = np.zeros(len(order), bool)
    if len(order) > 1:
        a, b = order[:-1], order[1:]
        d_all, nr_all = sys["dir"], sys["nr"]
        dup[1:] = (tid[b] == tid[a]) & (t[b] == t[a]) & (d_all[b] == d_all[a])
        dup[1:] &= (nr_all[b] == nr_all[a]) & (sys["name"][b] == sys["name"][a])
        del a, b, d_all, nr_all
    duplicates = int(dup.sum())
    order = order[~dup]
    row, tid, t = row[order], tid[order], t[order]
    d, name, nr, fd, ret, raw = (
        sys.pop(k)[order] for k in ("dir", "name", "nr", "fd", "ret", "raw")
    )
    sys.clear()
    del order
    n = len(row)
    same_next = np.zeros(n, bool)
    same_next[:-1] = tid[1:] == tid[:-1]
    nxt = np.minimum(np.arange(n) + 1, max(n - 1, 0))
    enter, exit_ = d == SYS_ENTER, d == SYS_EXIT
    # NR -1 on exit: the kernel no longer knew the number (rt_sigreturn, a tracer changed it)
    paired = (
        enter & same_next & exit_[nxt] & ((name[nxt] == name) | (nr[nxt] == -1) & (raw[nxt] == 1))
    )
    first_of_tid = np.ones(n, bool)
    first_of_tid[1:] = tid[1:] != tid[:-1]
    exit_paired = np.zeros(n, bool)
    exit_paired[nxt[paired]] = True
    lone_exit = exit_ & ~exit_paired
    child = np.isin(tid, list(born)) if born else np.zeros(n, bool)
    lead_exit = lone_exit & first_of_tid & ~child  # in the syscall when recording began
    tail_enter = enter & ~paired & ~same_next  # still inside at the end (or exiting)
    # an enter followed by another syscall event of the thread: its exit was lost; kept,
    # bounded by that next event (the record is censored, not dropped)
    orphan_enter = enter & ~paired & same_next
    dropped_exits = int((lone_exit & ~first_of_tid).sum())
    self_clone = int((lone_exit & first_of_tid & child).sum())

    # one row per (raw) pair, in per-thread time order
    p = np.flatnonzero(paired)
    le = np.flatnonzero(lead_exit)
    te = np.flatnonzero(tail_enter)
    oe = np.flatnonzero(orphan_enter)
    k = np.concatenate([p, le, te, oe])
    start = np.concatenate([t[p], np.full(len(le), first_time), t[te], t[oe]])
    tail_end = np.array([thread_end.get(x, last_time) for x in tid[te].tolist()], np.int64)
    end = np.concatenate([t[nxt[p]], t[le], np.maximum(tail_end, t[te]), t[nxt[oe]]])
    flags = np.concatenate(
        [
            np.zeros(len(p), np.int8),
            np.full(len(le), START_UNKNOWN, np.int8),
            np.full(len(te), UNFINISHED, np.int8),
            np.full(len(oe), EXIT_LOST, np.int8),
        ]
    )
    r_ret = np.concatenate(
        [ret[nxt[p]], ret[le], np.zeros(len(te), np.int64), np.zeros(len(oe), np.int64)]
    )
    r_enter = np.concatenate([row[p], np.full(len(le), -1), row[te], row[oe]])
    r_fd = np.concatenate([fd[p], fd[le], fd[te], fd[oe]])
    o = pair_order(tid[k], start)
    k, start, end, flags, r_ret, r_enter, r_fd = (
        a[o] for a in (k, start, end, flags, r_ret, r_enter, r_fd)
    )
    r_tid, r_name, r_nr = tid[k], name[k], nr[k]

    # merge restarted runs: pair i continues pair i-1 when i-1 returned ERESTART* and i is
    # the same syscall (or restart_syscall) on the same thread
    m = len(k)
    cont = np.zeros(m, bool)
    if m > 1:
        prev_restart = np.isin(r_ret[:-1], ERESTART) & (
            (flags[:-1] & (UNFINISHED | EXIT_LOST)) == 0
        )
        same = (r_tid[1:] == r_tid[:-1]) & (
            (r_name[1:] == r_name[:-1])
            | (r_name[1:] == (restart_code if restart_code is not None else -2))
        )
        cont[1:] = prev_restart & same
    group = np.cumsum(~cont) - 1
    heads = np.flatnonzero(~cont)
    last = np.append(heads[1:], m)[: len(heads)] - 1
    return SyscallSlices(
        tid=r_tid[heads],
        start=start[heads],
        end=end[last],
        name=r_name[heads],
        nr=r_nr[heads],
        ret=r_ret[last],
        fd=r_fd[heads],
        restarts=np.bincount(group, minlength=len(heads)) - 1,
        enter_row=r_enter[heads],
        flags=flags[heads] | flags[last],
        dropped_exits=dropped_exits,
        duplicates=duplicates,
        clone_children=self_clone,
    )
