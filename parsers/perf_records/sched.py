"""sched_switch / sched_wakeup -> off-CPU intervals per thread, with runqueue delay.

A thread is off CPU from its switch-out (``prev_pid``, with ``prev_state``: S sleeping, D
uninterruptible, R/R+ preempted while runnable, t stopped by a tracer ...) until it runs
again. Recorded per process (no ``-a``), perf sees a switch-in only when the previous task
was traced too, so the interval also ends at the thread's next event of any kind (its next
sys_exit, say); ``args.end`` says which closed it. Runqueue delay (wakeup -> running) needs
the wakeup, which perf sees only when a traced thread was the waker: it is reported when
seen and left unknown (None), not zero, otherwise. A preempted thread (R) was runnable for
the whole interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..columns import pair_searchsorted

END_SWITCH_IN, END_NEXT_EVENT, END_TRACE = 0, 1, 2
END_NAMES = ("switch-in", "next-event", "trace-end")


@dataclass
class OffCpu:
    tid: np.ndarray
    start: np.ndarray
    end: np.ndarray
    state: np.ndarray  # state code (records.Registries.states)
    out_row: np.ndarray  # record row of the switch-out (its callchain: why it slept)
    end_kind: np.ndarray  # END_*
    wakeup: np.ndarray  # time of the last wakeup seen inside, -1 if none


def off_cpu(
    switch: dict[str, np.ndarray],
    wake: dict[str, np.ndarray],
    rec_tid: np.ndarray,
    rec_time: np.ndarray,
    last_time: int,
) -> OffCpu:
    out_row = switch["row"]
    keep = switch["prev"] > 0  # the idle task (swapper, pid 0) is never "blocked"
    out_row, prev, state = out_row[keep], switch["prev"][keep], switch["state"][keep]
    t_out = rec_time[out_row]

    # presence of a thread: any record it emitted, or a switch-in naming it
    sw_in_row = switch["row"][switch["next"] > 0]
    sw_in_tid = switch["next"][switch["next"] > 0]
    n_rec = len(rec_tid)
    p_tid = np.concatenate([rec_tid, sw_in_tid])
    p_time = np.concatenate([rec_time, rec_time[sw_in_row]])
    p_kind = np.concatenate(
        [np.full(n_rec, END_NEXT_EVENT, np.int8), np.full(len(sw_in_tid), END_SWITCH_IN, np.int8)]
    )
    p_row = np.concatenate([np.arange(n_rec), sw_in_row])
    order = np.lexsort((p_row, p_time, p_tid))
    p_tid, p_time, p_kind, p_row = p_tid[order], p_time[order], p_kind[order], p_row[order]

    # position of each switch-out's own record in the presence order, then the next entry
    # of the same thread after it (a switch-in at the same instant belongs to someone else)
    rec_pos = np.empty(n_rec, np.int64)
    is_rec = p_kind == END_NEXT_EVENT
    rec_pos[p_row[is_rec]] = np.flatnonzero(is_rec)
    pos = rec_pos[out_row]
    own = p_tid[pos] == prev  # switch-out emitted by the thread itself (always, in practice)
    other = np.flatnonzero(~own)
    if len(other):
        pos[other] = pair_searchsorted(p_tid, p_time, prev[other], t_out[other], "right") - 1
    nxt = pos + 1
    has = nxt < len(p_tid)
    has[has] = p_tid[nxt[has]] == prev[has]
    nxt_c = np.minimum(nxt, len(p_tid) - 1)
    end = np.where(has, p_time[nxt_c], last_time)
    end_kind = np.where(has, p_kind[nxt_c], END_TRACE).astype(np.int8)

    # the last wakeup of the thread inside (t_out, end]
    w_row = wake["row"]
    w_tid, w_time = wake["pid"], rec_time[w_row]
    wo = np.lexsort((w_time, w_tid))
    w_tid, w_time = w_tid[wo], w_time[wo]
    j = pair_searchsorted(w_tid, w_time, prev, end, "right") - 1
    ok = j >= 0
    jc = np.maximum(j, 0)
    ok &= (w_tid[jc] == prev) & (w_time[jc] > t_out) if len(w_tid) else np.zeros(len(j), bool)
    wakeup = np.where(ok, w_time[jc] if len(w_tid) else 0, -1)
    return OffCpu(
        tid=prev,
        start=t_out,
        end=end,
        state=state,
        out_row=out_row,
        end_kind=end_kind,
        wakeup=wakeup,
    )
