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

from ..parsers.columns import str_values
from ..parsers.model import column
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


class _Timeline:
    """Intervals of every thread (disjoint within a thread: syscalls, or off-CPU stretches,
    or wakeup instants), sorted by (tid, end), with each thread's range found once, so every
    lookup is two binary searches on plain int64 arrays."""

    def __init__(self, tid: np.ndarray, start: np.ndarray, end: np.ndarray, **payload) -> None:
        o = np.lexsort((end, tid))
        self.tid, self.start, self.end = tid[o], start[o], end[o]
        self.payload = {k: np.asarray(v)[o] for k, v in payload.items()}
        ids, first, counts = np.unique(self.tid, return_index=True, return_counts=True)
        self.range = {
            int(t): (int(a), int(a + c)) for t, a, c in zip(ids, first, counts, strict=True)
        }
        # starts in end order, per thread: sorted too for disjoint intervals; made monotonic
        # within each thread so a stray overlap (an unfinished syscall) can only widen a
        # search, never break it
        self.start_mono = self.start.copy()
        for a, b in self.range.values():
            np.maximum.accumulate(self.start_mono[a:b], out=self.start_mono[a:b])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.payload[name]

    def last_ending(self, tid: int, lo: int, hi: int) -> int | None:
        """Index of the thread's last interval ending in (lo, hi], or None."""
        a, b = self.range.get(tid, (0, 0))
        i = a + int(np.searchsorted(self.end[a:b], hi, "right")) - 1
        if i < a or self.end[i] <= lo:
            return None
        return i

    def most(self, tid: int, lo: int, hi: int) -> tuple[int, int, int] | None:
        """(index, clipped start, clipped end) of the thread's interval overlapping
        [lo, hi] the most, or None."""
        a, b = self.range.get(tid, (0, 0))
        i = a + int(np.searchsorted(self.end[a:b], lo, "right"))  # first ending after lo
        j = a + int(np.searchsorted(self.start_mono[a:b], hi, "left"))  # starting before hi
        if i >= j:
            return None
        if j - i <= 8:  # the usual case: a plain loop beats four numpy calls on tiny arrays
            best, bs, be = i, 0, -1
            starts, ends = self.start[i:j].tolist(), self.end[i:j].tolist()
            for k, (s0, e0) in enumerate(zip(starts, ends, strict=True)):
                s0, e0 = max(s0, lo), min(e0, hi)
                if e0 - s0 > be - bs:
                    best, bs, be = i + k, s0, e0
            return (best, bs, be) if be > bs else None
        s = np.maximum(self.start[i:j], lo)
        e = np.minimum(self.end[i:j], hi)
        k = int(np.argmax(e - s))
        if e[k] <= s[k]:
            return None
        return i + k, int(s[k]), int(e[k])


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
        off = s[(s["kind"] == "os.offcpu").to_numpy()]
        state = str_values(off["name"])
        o_tid = off["tid"].to_numpy(np.int64)
        o_start = off["ts"].to_numpy(np.int64) + offset
        o_end = o_start + off["dur"].to_numpy(np.int64)
        sl = np.isin(state, list(SLEEP_STATES))
        self.sleep = _Timeline(o_tid[sl], o_start[sl], o_end[sl])
        self.off = _Timeline(o_tid, o_start, o_end, state=state.astype(object))
        # wakeups of every thread, by woken tid and time: sched_waking alone when recorded
        w = inst[(inst["kind"] == "os.wakeup").to_numpy()]
        how = str_values(w["name"])
        if (how == "waking").any():
            w = w[how == "waking"]
        w_ts = w["ts"].to_numpy(np.int64) + offset
        self.wake = _Timeline(
            w["tid"].to_numpy(np.int64),
            w_ts,
            w_ts,
            waker=column(w, "instants", "waker_tid").fillna(-1).astype("int64").to_numpy(),
            pid=column(w, "instants", "waker_pid").fillna(-1).astype("int64").to_numpy(),
            stack=w["stack_id"].fillna(0).astype("int64").to_numpy(),
        )
        sysc = s[(s["kind"] == "os.syscall").to_numpy()]
        sc_start = sysc["ts"].to_numpy(np.int64) + offset
        self.sys = _Timeline(
            sysc["tid"].to_numpy(np.int64),
            sc_start,
            sc_start + sysc["dur"].to_numpy(np.int64),
            name=str_values(sysc["name"]),
            ret=column(sysc, "slices", "ret").to_numpy(dtype=np.float64, na_value=np.nan),
        )

    def last_sleep(self, tid: int, lo: int, hi: int) -> int | None:
        """Index of the thread's last sleep that ended in (lo, hi], or None."""
        return self.sleep.last_ending(tid, lo, hi)

    def last_off_state(self, tid: int, lo: int, hi: int) -> str | None:
        """State of the thread's last off-CPU interval ending in (lo, hi]."""
        i = self.off.last_ending(tid, lo, hi)
        return None if i is None else str(self.off["state"][i])

    def timed_out(self, tid: int, t: int) -> str | None:
        """The syscall of *tid* that ended at about *t* by running out its time (a sleep or a
        poll returning 0), or None: what woke the thread then was a timer."""
        hit = self.sys.most(tid, t - 1, t)
        if hit is None or self.sys["ret"][hit[0]] != 0:
            return None
        name = str(self.sys["name"][hit[0]])
        return name if name in TIMED_SYSCALLS else None

    def wake_in(self, tid: int, lo: int, hi: int) -> tuple[int, tuple[int, int, int]] | None:
        """(time, (waker tid, waker pid, waker stack)) of *tid*'s last wakeup in (lo, hi]."""
        i = self.wake.last_ending(tid, lo, hi)
        if i is None:
            return None
        x = self.wake
        return int(x.end[i]), (int(x["waker"][i]), int(x["pid"][i]), int(x["stack"][i]))

    def woken(self, tid: int, lo: int, hi: int) -> tuple[int, tuple[int, int, int]] | None:
        """(wakeup time, waker) of the wakeup that ended *tid*'s last sleep in (lo, hi]."""
        i = self.last_sleep(tid, lo, hi)
        if i is None:
            return None
        return self.wake_in(tid, int(self.sleep.start[i]), int(self.sleep.end[i]))

    def longest_wait(self, tid: int, lo: int, hi: int) -> dict | None:
        """The thread's wait overlapping [lo, hi] most, clipped to it: a syscall (with the
        state it mostly spent off-CPU in, R when it never left the CPU), or an off-CPU
        stretch outside any syscall."""
        sc = self.sys.most(tid, lo, hi)
        off = self.off.most(tid, lo, hi)
        if sc is None and off is None:
            return None
        if sc is not None and (off is None or sc[2] - sc[1] >= off[2] - off[1]):
            i, s, e = sc
            inside = self.off.most(tid, int(self.sys.start[i]), int(self.sys.end[i]))
            state = "R" if inside is None else str(self.off["state"][inside[0]])
            syscall = str(self.sys["name"][i])
        else:
            i, s, e = off
            syscall, state = None, str(self.off["state"][i])
        return {"syscall": syscall, "state": state, "start_ns": s, "end_ns": e, "dur_ns": e - s}

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
    """*blocking* with ``waker`` and ``critical_path`` filled in. *waker_recorded*: perf
    recorded processes beyond the traced one (peers or every CPU); when it did not, a
    missing waker is explained with how to capture it."""
    n = len(blocking)
    waker = np.full(n, None, object)
    path = np.empty(n, object)
    path[:] = [[] for _ in range(n)]
    note = np.full(n, None, object)
    if w is None or not n:
        return blocking.assign(waker=waker, critical_path=path)
    for i, r in enumerate(blocking.itertuples(index=False)):
        lo, hi, tid = int(r.start_ns), int(r.end_ns), int(r.tid)
        found = w.woken(tid, lo, hi)
        if found is None:
            if w.last_off_state(tid, lo, hi) == "t":
                note[i] = TRACER_NOTE
            elif w.last_sleep(tid, lo, hi) is None:
                note[i] = NO_SLEEP_NOTE
            elif not waker_recorded:
                note[i] = HOW_TO_CAPTURE
            else:
                note[i] = UNRECORDED_NOTE
            continue
        t, (wtid, wpid, wstack) = found
        irq = w.interrupt(wtid, wstack)
        if irq == "ipi":
            note[i] = IPI_NOTE
            continue
        if irq:
            waker[i] = _interrupt_waker(irq, t, w.frames.strings(wstack) if wstack else [])
            path[i] = [_interrupt_hop(irq, t)]
            continue
        longest = w.longest_wait(wtid, lo, t)
        waker[i] = {
            "pid": wpid if wpid >= 0 else w.pid_of.get(wtid),
            "tid": wtid,
            "comm": w.comm(wtid),
            "wakeup_ns": t,
            "stack": w.frames.strings(wstack) if wstack else [],
            "longest_wait": longest,
        }
        path[i] = _walk(w, wtid, wpid, t, lo, longest)
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


def _walk(w: Wakers, tid: int, pid: int, t: int, lo: int, first_wait: dict | None) -> list[dict]:
    """The chain of wakeups behind one: who woke the waker, and so on, inside [lo, t].
    *first_wait*: the waker's longest wait in [lo, t], already looked up for ``waker``."""
    hops = []
    seen = set()
    while tid > 0 and len(hops) < MAX_HOPS and tid not in seen:
        seen.add(tid)
        i = w.last_sleep(tid, lo, t)
        hop = {
            "pid": pid if pid >= 0 else w.pid_of.get(tid),
            "tid": tid,
            "comm": w.comm(tid),
            "what": None,
            "start_ns": None,
            "end_ns": t,
        }
        wait = first_wait if not hops else w.longest_wait(tid, lo, t)
        if wait is not None:
            hop["what"] = wait["syscall"] or f"off-CPU ({wait['state']})"
            hop["start_ns"], hop["end_ns"] = wait["start_ns"], wait["end_ns"]
        hops.append(hop)
        found = None if i is None else w.wake_in(tid, int(w.sleep.start[i]), int(w.sleep.end[i]))
        if found is None and i is not None:  # not recorded (a timer on another task's CPU)
            timed = w.timed_out(tid, int(w.sleep.end[i]))
            if timed and int(w.sleep.end[i]) >= lo:
                hop = _interrupt_hop("timer", int(w.sleep.end[i]))
                hop["what"] = f"a timer expired (inferred: {timed} timed out)"
                hops.append(hop)
            break
        if found is None or found[0] < lo:
            break
        t, (tid, pid, stack) = found
        irq = w.interrupt(tid, stack)
        if irq == "ipi":
            break
        if irq:
            hops.append(_interrupt_hop(irq, t))
            break
    return hops


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
        lw = wk.get("longest_wait") or {}
        meanwhile = lw.get("syscall") or (f"off-CPU ({lw['state']})" if lw else None)
        key = (wk.get("comm"), frame, meanwhile)
        x = rows.setdefault(
            key,
            {"comm": key[0], "frame": key[1], "meanwhile": key[2], "records": 0, "blocked_ns": 0},
        )
        x["records"] += 1
        x["blocked_ns"] += int(r.dur_ns)
    return sorted(rows.values(), key=lambda x: -x["blocked_ns"])
