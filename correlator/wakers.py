"""Why a call blocked: the thread that woke it, what that thread was doing meanwhile, and the
chain of wakeups behind it.

The kernel records the answer: ``sched:sched_waking`` names the thread that made ours
runnable, normally, for a hiredis read, redis-server's thread writing the reply. It fires in
the waker's own context; ``sched:sched_wakeup`` (older captures) may fire on the woken
thread's CPU from an inter-processor interrupt, where perf's "current" thread is whoever ran
there: such a wakeup (its kernel frames say so) names no waker rather than a wrong one. When
a capture has sched_waking, only those name wakers. For each blocking record:

    waker           the wakeup that ended the record's last sleep (an S or D off-CPU interval
                    inside it; a tracer's stop, state t, is not a sleep): the waking thread's
                    pid, tid, comm, the wakeup time and its callchain as it woke ours
    longest_wait    the waker's longest wait (a syscall, or off-CPU time outside one) between
                    the record's start and the wakeup: what the other side was doing
                    meanwhile. A DEBUG SLEEP shows redis-server asleep in clock_nanosleep; a
                    BLPOP that times out shows it waiting for work in its event loop
    critical_path   A was woken by B; B had been blocked until woken by C; ... each hop inside
                    the record's window, at most MAX_HOPS; a wakeup from an interrupt on an
                    idle CPU (pid 0) ends the walk

``waker`` is null when the capture did not record the waking process: perf recording one
process (``-p``) sees only wakeups done by its threads. Record the peer too
(``tracecorr capture --peer-pid``) or every CPU (``--system-wide``).

Lookups are sorted per-thread searches: O(n log n) in the wakeups and waits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..parsers.columns import pair_key, pair_order, str_values
from ..parsers.model import column
from .describe import waited_in
from .frames import Frames

MAX_HOPS = 5
SLEEP_STATES = frozenset({"S", "D", "I"})
#: kernel frames of a wakeup done from a (hardware) interrupt: the thread perf names as the
#: waker is only the one that happened to be on that CPU (perf itself, often). A softirq
#: alone is not one: loopback TCP delivers in the sender's own syscall, which is the waker.
TIMER_FRAMES = frozenset({"hrtimer_wakeup", "it_real_fn", "process_timeout"})
IRQ_FRAMES = frozenset(
    {
        "hrtimer_interrupt",
        "__sysvec_apic_timer_interrupt",
        "asm_sysvec_apic_timer_interrupt",
        "irq_exit_rcu",
        "__irq_exit_rcu",
        "handle_irq_event",
        "common_interrupt",
        "asm_common_interrupt",
    }
)
#: kernel frames of a wakeup delivered on the woken thread's CPU by an IPI (sched_wakeup
#: after a remote try_to_wake_up): the thread perf names is not the waker
IPI_FRAMES = frozenset(
    {
        "sched_ttwu_pending",
        "__flush_smp_call_function_queue",
        "flush_smp_call_function_queue",
        "__sysvec_call_function_single",
        "sysvec_call_function_single",
        "asm_sysvec_call_function_single",
        "generic_smp_call_function_single_interrupt",
    }
)
IPI_NOTE = (
    "no waker: the wakeup was delivered on this thread's CPU by an IPI (sched_wakeup), which "
    "does not name the waker; record sched:sched_waking (tracecorr capture does)"
)
TRACER_NOTE = (
    "no waker: the record ended in a tracer stop (state t, e.g. py-spy sampling): the "
    "tracer, not a peer, let the thread run again"
)
#: syscalls that return 0 when their time runs out: ended that way, a timer woke the thread
TIMED_SYSCALLS = frozenset(
    {
        "nanosleep",
        "clock_nanosleep",
        "epoll_wait",
        "epoll_pwait",
        "epoll_pwait2",
        "poll",
        "ppoll",
        "select",
        "pselect6",
    }
)
NO_SLEEP_NOTE = "no waker: the thread did not sleep inside the record (preempted or runnable)"
UNRECORDED_NOTE = (
    "no waker: the wakeup that ended the wait is not in the recording (perf -p keeps only "
    "events in the recorded processes' own context; softirq or interrupt work done in "
    "another's is missed); --system-wide records every CPU"
)
HOW_TO_CAPTURE = (
    "no waker: perf did not record the thread that woke it (recorded per process?); record "
    "the peer too (tracecorr capture --peer-pid PID, e.g. redis-server) or every CPU "
    "(--system-wide)"
)


class _PairIndex:
    """(tid, x) pairs sorted lexicographically, searched many at a time: each pair is one
    int64 key, made once (queries are clipped to the indexed range, which keeps every
    comparison's outcome), or a structured key when the ranges do not fit in 63 bits."""

    def __init__(self, tid: np.ndarray, x: np.ndarray) -> None:
        self.n = len(tid)
        self.fit: tuple[int, int, int, int, int] | None = None
        if not self.n:
            return
        t_lo, t_hi, x_lo, x_hi = int(tid.min()), int(tid.max()), int(x.min()), int(x.max())
        span = x_hi - x_lo + 3  # room for one clipped value below and one above
        if (t_hi - t_lo + 3) * span < 2**62:
            self.fit = (t_lo, t_hi, x_lo, x_hi, span)
            self.key = self._key(tid, x)
        else:
            self.key = pair_key(tid, x)

    def _key(self, tid: np.ndarray, x: np.ndarray) -> np.ndarray:
        t_lo, t_hi, x_lo, x_hi, span = self.fit  # type: ignore[misc]
        t = np.clip(tid.astype(np.int64), t_lo - 1, t_hi + 1)
        v = np.clip(x.astype(np.int64), x_lo - 1, x_hi + 1)
        return (t - (t_lo - 1)) * span + (v - (x_lo - 1))

    def search(self, tid: np.ndarray, x: np.ndarray, side: str) -> np.ndarray:
        """``np.searchsorted`` of the (tid, x) queries among the pairs."""
        if not self.n:
            return np.zeros(len(tid), np.int64)
        q = self._key(tid, x) if self.fit is not None else pair_key(tid, x)
        return np.searchsorted(self.key, q, side).astype(np.int64)


class _Timeline:
    """Intervals of every thread (disjoint within a thread: syscalls, or off-CPU stretches,
    or wakeup instants), sorted by (tid, end). Lookups take arrays of queries and answer
    them all with a few binary searches over (tid, time) keys: the records of a report are
    looked up together, not one by one."""

    def __init__(self, tid: np.ndarray, start: np.ndarray, end: np.ndarray, **payload) -> None:
        o = pair_order(tid, end)
        self.tid, self.start, self.end = tid[o], start[o], end[o]
        self.payload = {k: np.asarray(v)[o] for k, v in payload.items()}
        # each thread's rows (tid is sorted now: where it changes, not np.unique's sort)
        firsts = np.flatnonzero(np.diff(self.tid, prepend=self.tid[:1] - 1)).tolist()
        # starts in end order, per thread: sorted too for disjoint intervals; made monotonic
        # within each thread so a stray overlap (an unfinished syscall) can only widen a
        # search, never break it
        self.start_mono = self.start.copy()
        lasts = firsts[1:] + [len(self.tid)] if firsts else []
        for a, b in zip(firsts, lasts, strict=True):
            np.maximum.accumulate(self.start_mono[a:b], out=self.start_mono[a:b])
        self.by_end = _PairIndex(self.tid, self.end)
        self.by_start = _PairIndex(self.tid, self.start_mono)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.payload[name]

    def last_ending(self, tid: int, lo: int, hi: int) -> int | None:
        """Index of the thread's last interval ending in (lo, hi], or None."""
        i = int(self.last_ending_many(*_one(tid, lo, hi))[0])
        return None if i < 0 else i

    def most(self, tid: int, lo: int, hi: int) -> tuple[int, int, int] | None:
        """(index, clipped start, clipped end) of the thread's interval overlapping
        [lo, hi] the most, or None."""
        i, s, e = (int(a[0]) for a in self.most_many(*_one(tid, lo, hi)))
        return None if i < 0 else (i, s, e)

    def last_ending_many(self, tid: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """``last_ending`` of each query (tid, lo, hi): an index, -1 for none."""
        i = self.by_end.search(tid, hi, "right") - 1
        if not len(self.tid):
            return i
        at = np.maximum(i, 0)
        return np.where((i >= 0) & (self.tid[at] == tid) & (self.end[at] > lo), i, -1)

    def most_many(
        self, tid: np.ndarray, lo: np.ndarray, hi: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``most`` of each query: (index, clipped start, clipped end), index -1 for none.
        A query's candidates are one run of its thread's intervals: those ending after lo
        up to the first starting at or after hi; of them the first with the largest
        positive overlap wins."""
        m = len(tid)
        idx, s_out, e_out = np.full(m, -1, np.int64), np.zeros(m, np.int64), np.zeros(m, np.int64)
        i = self.by_end.search(tid, lo, "right")  # first of the thread ending after lo
        j = self.by_start.search(tid, hi, "left")  # first of the thread starting at/after hi
        cnt = np.maximum(j - i, 0)
        if not cnt.any():
            return idx, s_out, e_out
        q = np.repeat(np.arange(m), cnt)
        offset = np.cumsum(cnt) - cnt  # of each query's candidates among all
        pos = np.repeat(i - offset, cnt) + np.arange(int(cnt.sum()))
        s = np.maximum(self.start[pos], lo[q])
        e = np.minimum(self.end[pos], hi[q])
        ov = e - s
        # per query: the first candidate with the largest overlap
        top = np.maximum.reduceat(ov, offset[cnt > 0])
        at_top = np.flatnonzero(ov == np.repeat(top, cnt[cnt > 0]))
        first = at_top[np.r_[True, q[at_top][1:] != q[at_top][:-1]]]
        win = first[ov[first] > 0]
        idx[q[win]], s_out[q[win]], e_out[q[win]] = pos[win], s[win], e[win]
        return idx, s_out, e_out


def _ids(col: pd.Series, rows: np.ndarray, null: int) -> np.ndarray:
    """An id column's values at *rows* as int64, nulls as *null*."""
    return col.to_numpy(dtype=np.float64, na_value=null)[rows].astype(np.int64)


def _codes(names: pd.Series) -> tuple[list[str], np.ndarray]:
    """(labels, code of each row): a null's code is -1, the last label, "nan" (as
    ``str_values`` renders a null)."""
    if not isinstance(names.dtype, pd.CategoricalDtype):
        names = names.astype("category")
    labels = [str(c) for c in names.cat.categories] + [str(np.nan)]
    return labels, names.cat.codes.to_numpy().astype(np.int32)


def _one(tid: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.array([v], np.int64) for v in (tid, lo, hi))  # type: ignore[return-value]


class Wakers:
    """The wakeups, sleeps and waits of one perf recording, on the reference clock."""

    def __init__(self, perf, offset: int, names: dict[int, str]) -> None:
        s = perf.slices
        inst = perf.instants
        self.names = names
        self.frames = Frames(perf)
        self._irq: dict[tuple[int, bool], str | None] = {}
        self.pid_of = dict(
            zip(perf.threads["tid"].tolist(), perf.threads["pid"].tolist(), strict=True)
        )
        # columns masked one by one: the tables have many more columns than these read
        kind = s["kind"]
        off = (kind == "os.offcpu").to_numpy()
        # names (off-CPU states, syscalls) as codes into one list of labels, read per lookup:
        # not an object array of a million references
        self.labels, name_code = _codes(s["name"])
        state = name_code[off]
        o_tid = s["tid"].to_numpy(np.int64)[off]
        o_start = s["ts"].to_numpy(np.int64)[off] + offset
        o_end = o_start + s["dur"].to_numpy(np.int64)[off]
        sleep_codes = [i for i, x in enumerate(self.labels) if x in SLEEP_STATES]
        sl = np.isin(state, sleep_codes)
        self.sleep = _Timeline(o_tid[sl], o_start[sl], o_end[sl])
        self.off = _Timeline(o_tid, o_start, o_end, state=state)
        # wakeups of every thread, by woken tid and time: sched_waking alone when recorded
        w = (inst["kind"] == "os.wakeup").to_numpy()
        how = str_values(inst["name"])
        if (how[w] == "waking").any():
            w = w & (how == "waking")
        w_ts = inst["ts"].to_numpy(np.int64)[w] + offset
        self.wake = _Timeline(
            inst["tid"].to_numpy(np.int64)[w],
            w_ts,
            w_ts,
            waker=_ids(column(inst, "instants", "waker_tid"), w, -1),
            pid=_ids(column(inst, "instants", "waker_pid"), w, -1),
            stack=_ids(inst["stack_id"], w, 0),
        )
        sysc = (kind == "os.syscall").to_numpy()
        sc_start = s["ts"].to_numpy(np.int64)[sysc] + offset
        self.sys = _Timeline(
            s["tid"].to_numpy(np.int64)[sysc],
            sc_start,
            sc_start + s["dur"].to_numpy(np.int64)[sysc],
            name=name_code[sysc],
            ret=column(s, "slices", "ret").to_numpy(dtype=np.float64, na_value=np.nan)[sysc],
        )

    # Every lookup below takes arrays of queries (tid, and the window or time of each) and
    # answers them together; indices are -1 where there is no answer.

    def woken(self, tid: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
        """(last sleep, its wakeup) of each query: the thread's last sleep ending in
        (lo, hi], and the last wakeup of the thread inside that sleep."""
        si = self.sleep.last_ending_many(tid, lo, hi)
        return si, self.wake_in_sleep(tid, si)

    def wake_in_sleep(self, tid: np.ndarray, si: np.ndarray) -> np.ndarray:
        """The last wakeup of each thread inside its sleep *si* (in (start, end]), -1 for
        none or no sleep."""
        wi = np.full(len(tid), -1, np.int64)
        has = si >= 0
        if has.any():
            at = si[has]
            wi[has] = self.wake.last_ending_many(tid[has], self.sleep.start[at], self.sleep.end[at])
        return wi

    def off_states(self, tid: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[str | None]:
        """State of each thread's last off-CPU interval ending in (lo, hi]."""
        i = self.off.last_ending_many(tid, lo, hi)
        state, labels = self.off["state"], self.labels
        return [None if k < 0 else labels[state[k]] for k in i.tolist()]

    def timed_out(self, tid: np.ndarray, t: np.ndarray) -> list[str | None]:
        """Per query, the syscall of *tid* that ended at about *t* by running out its time
        (a sleep or a poll returning 0), or None: what woke the thread then was a timer."""
        hit = self.sys.most_many(tid, t - 1, t)[0]
        ret, name, labels = self.sys["ret"], self.sys["name"], self.labels
        out: list[str | None] = []
        for i in hit.tolist():
            sc = None if i < 0 or ret[i] != 0 else labels[name[i]]
            out.append(sc if sc in TIMED_SYSCALLS else None)
        return out

    def longest_waits(self, tid: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[dict | None]:
        """Each thread's wait overlapping [lo, hi] most, clipped to it: a syscall (with the
        state it mostly spent off-CPU in, R when it never left the CPU), or an off-CPU
        stretch outside any syscall (the syscall on equal lengths); None when neither."""
        sc, sc_s, sc_e = self.sys.most_many(tid, lo, hi)
        off, off_s, off_e = self.off.most_many(tid, lo, hi)
        by_sys = (sc >= 0) & ((off < 0) | (sc_e - sc_s >= off_e - off_s))
        inside = np.full(len(tid), -1, np.int64)
        if by_sys.any():
            i = sc[by_sys]
            inside[by_sys] = self.off.most_many(tid[by_sys], self.sys.start[i], self.sys.end[i])[0]
        off_state, sys_name, labels = self.off["state"], self.sys["name"], self.labels
        out: list[dict | None] = []
        for k in range(len(tid)):
            if by_sys[k]:
                j = int(inside[k])
                state = "R" if j < 0 else labels[off_state[j]]
                syscall, s, e = labels[sys_name[sc[k]]], int(sc_s[k]), int(sc_e[k])
            elif off[k] >= 0:
                syscall, state = None, labels[off_state[off[k]]]
                s, e = int(off_s[k]), int(off_e[k])
            else:
                out.append(None)
                continue
            out.append(
                {"syscall": syscall, "state": state, "start_ns": s, "end_ns": e, "dur_ns": e - s}
            )
        return out

    def waker_of(self, wi: int) -> tuple[int, int, int, int]:
        """(time, waker tid, waker pid, waker stack) of wakeup *wi*."""
        x = self.wake
        return int(x.end[wi]), int(x["waker"][wi]), int(x["pid"][wi]), int(x["stack"][wi])

    def comm(self, tid: int) -> str | None:
        return self.names.get(tid)

    def interrupt(self, tid: int, stack_id: int) -> str | None:
        """ "timer" or "interrupt" when the wakeup came from interrupt context (its kernel
        frames say so, or the CPU was idle), "ipi" when it was only delivered by one (the
        waker is unknown), else None."""
        key = (stack_id, tid == 0)
        if key not in self._irq:
            self._irq[key] = self._interrupt(tid, stack_id)
        return self._irq[key]

    def _interrupt(self, tid: int, stack_id: int) -> str | None:
        names = {f.split(" ", 1)[0] for f in self.frames.strings(stack_id)} if stack_id else set()
        if names & IPI_FRAMES:
            return "ipi"
        if names & TIMER_FRAMES:
            return "timer"
        if names & IRQ_FRAMES or tid == 0:
            return "interrupt"
        return None


def wakers(blocking: pd.DataFrame, w: Wakers | None, waker_recorded: bool) -> pd.DataFrame:
    """*blocking* with ``waker``, ``critical_path`` and ``waker_note`` added. *waker_recorded*: perf
    recorded processes beyond the traced one (peers or every CPU); when it did not, a
    missing waker is explained with how to capture it."""
    n = len(blocking)
    waker = np.full(n, None, object)
    path = np.empty(n, object)
    path[:] = [[] for _ in range(n)]
    note = np.full(n, None, object)
    if w is None or not n:
        return blocking.assign(waker=waker, critical_path=path, waker_note=note)
    lo = blocking["start_ns"].to_numpy(np.int64)
    hi = blocking["end_ns"].to_numpy(np.int64)
    tid = blocking["tid"].to_numpy(np.int64)
    si, wi = w.woken(tid, lo, hi)
    miss = np.flatnonzero(wi < 0)
    for i, state in zip(miss.tolist(), w.off_states(tid[miss], lo[miss], hi[miss]), strict=True):
        if state == "t":
            note[i] = TRACER_NOTE
        elif si[i] < 0:
            note[i] = NO_SLEEP_NOTE
        elif not waker_recorded:
            note[i] = HOW_TO_CAPTURE
        else:
            note[i] = UNRECORDED_NOTE
    walk: list[tuple[int, int, int, int]] = []  # (record, waker tid, waker pid, wakeup time)
    for i in np.flatnonzero(wi >= 0).tolist():
        t, wtid, wpid, wstack = w.waker_of(int(wi[i]))
        irq = w.interrupt(wtid, wstack)
        if irq == "ipi":
            note[i] = IPI_NOTE
        elif irq:
            waker[i] = _interrupt_waker(irq, t, w.frames.strings(wstack) if wstack else [])
            path[i] = [_interrupt_hop(irq, t)]
        else:
            waker[i] = {
                "pid": wpid if wpid >= 0 else w.pid_of.get(wtid),
                "tid": wtid,
                "comm": w.comm(wtid),
                "wakeup_ns": t,
                "stack": w.frames.strings(wstack) if wstack else [],
                "longest_wait": None,
            }
            walk.append((i, wtid, wpid, t))
    if walk:
        rows, wtid, wpid, t = (np.array(c, np.int64) for c in zip(*walk, strict=True))
        longest = w.longest_waits(wtid, lo[rows], t)
        for i, lw in zip(rows.tolist(), longest, strict=True):
            waker[i]["longest_wait"] = lw
        for i, hops in zip(rows.tolist(), _walk(w, wtid, wpid, t, lo[rows], longest), strict=True):
            path[i] = hops
    return blocking.assign(waker=waker, critical_path=path, waker_note=note)


def _interrupt_waker(kind: str, t: int, stack: list[str]) -> dict:
    return {
        "pid": 0,
        "tid": 0,
        "comm": "(timer interrupt)" if kind == "timer" else "(interrupt)",
        "wakeup_ns": t,
        "stack": stack,
        "longest_wait": None,
    }


def _interrupt_hop(kind: str, t: int) -> dict:
    return {
        "pid": 0,
        "tid": 0,
        "comm": "(timer interrupt)" if kind == "timer" else "(interrupt)",
        "what": "a timer expired" if kind == "timer" else "a device interrupt",
        "start_ns": t,
        "end_ns": t,
    }


def _walk(
    w: Wakers,
    tid: np.ndarray,
    pid: np.ndarray,
    t: np.ndarray,
    lo: np.ndarray,
    first_wait: list[dict | None],
) -> list[list[dict]]:
    """The chain of wakeups behind each waker: who woke the waker, and so on, inside
    [lo, t], at most MAX_HOPS hops; a hop goes no further when its thread did not sleep, its
    wakeup is not recorded or came from an interrupt, or the chain comes back to a thread
    already on it. *first_wait*: each waker's longest wait in [lo, t], already looked up.
    The walks advance together, one hop each per round of lookups."""
    m = len(tid)
    hops: list[list[dict]] = [[] for _ in range(m)]
    seen: list[set[int]] = [set() for _ in range(m)]
    tid, pid, t = tid.copy(), pid.copy(), t.copy()
    act = np.arange(m)
    for level in range(MAX_HOPS):
        act = np.array(
            [k for k in act[tid[act] > 0].tolist() if int(tid[k]) not in seen[k]], np.int64
        )
        if not len(act):
            break
        a_tid, a_t, a_lo = tid[act], t[act], lo[act]
        si = w.sleep.last_ending_many(a_tid, a_lo, a_t)
        waits = (
            [first_wait[k] for k in act.tolist()]
            if level == 0
            else w.longest_waits(a_tid, a_lo, a_t)
        )
        _wait_hops(w, hops, seen, act, a_tid, pid[act], a_t, waits)
        wi = w.wake_in_sleep(a_tid, si)
        _timer_hops(w, hops, act, a_tid, a_lo, si, wi)
        act = _follow_wakers(w, hops, act, a_lo, wi, (tid, pid, t))
    return hops


def _wait_hops(w: Wakers, hops, seen, act, a_tid, a_pid, a_t, waits) -> None:
    """One hop per walk still going: its thread, and what it waited in (its longest wait)."""
    for k, x, p, end, wait in zip(
        act.tolist(), a_tid.tolist(), a_pid.tolist(), a_t.tolist(), waits, strict=True
    ):
        seen[k].add(x)
        hop = {
            "pid": p if p >= 0 else w.pid_of.get(x),
            "tid": x,
            "comm": w.comm(x),
            "what": None,
            "start_ns": None,
            "end_ns": end,
        }
        if wait is not None:
            hop["what"] = wait["syscall"] or f"off-CPU ({wait['state']})"
            hop["start_ns"], hop["end_ns"] = wait["start_ns"], wait["end_ns"]
        hops[k].append(hop)


def _timer_hops(w: Wakers, hops, act, a_tid, a_lo, si, wi) -> None:
    """A sleep whose wakeup perf did not record (a timer on another CPU) and that timed out:
    the walk ends in an inferred timer hop."""
    timer = np.flatnonzero((si >= 0) & (wi < 0))
    if not len(timer):
        return
    ends = w.sleep.end[si[timer]]
    for j, end, timed in zip(
        timer.tolist(), ends.tolist(), w.timed_out(a_tid[timer], ends), strict=True
    ):
        if timed and end >= int(a_lo[j]):
            hop = _interrupt_hop("timer", end)
            hop["what"] = f"a timer expired (inferred: {timed} timed out)"
            hops[int(act[j])].append(hop)


def _follow_wakers(w: Wakers, hops, act, a_lo, wi, walk) -> np.ndarray:
    """The walks that go on: each to the thread that woke the current one (in the window),
    updating *walk* = (tid, pid, t) in place; an interrupt ends a walk with its hop."""
    tid, pid, t = walk
    going = []
    for j in np.flatnonzero(wi >= 0).tolist():
        wt, wtid, wpid, wstack = w.waker_of(int(wi[j]))
        if wt < int(a_lo[j]):
            continue
        k = int(act[j])
        irq = w.interrupt(wtid, wstack)
        if irq == "ipi":
            continue
        if irq:
            hops[k].append(_interrupt_hop(irq, wt))
            continue
        tid[k], pid[k], t[k] = wtid, wpid, wt
        going.append(k)
    return np.array(going, np.int64)


def by_waker(blocking: pd.DataFrame) -> list[dict]:
    """Blocked time held up by each waker (comm and the frame it woke us from) and what it
    was waiting in meanwhile (its longest wait: a DEBUG SLEEP's clock_nanosleep apart from an
    event loop's epoll_wait), largest first."""
    if not len(blocking) or "waker" not in blocking:
        return []
    rows = {}
    for r in blocking.itertuples(index=False):
        wk = r.waker
        if not wk:
            continue
        frame = next(
            (f for f in wk["stack"] if "[kernel" not in f), wk["stack"][0] if wk["stack"] else None
        )
        key = (wk.get("comm"), frame, waited_in(wk))
        x = rows.setdefault(
            key,
            {"comm": key[0], "frame": key[1], "meanwhile": key[2], "records": 0, "blocked_ns": 0},
        )
        x["records"] += 1
        x["blocked_ns"] += int(r.dur_ns)
    return sorted(rows.values(), key=lambda x: -x["blocked_ns"])
