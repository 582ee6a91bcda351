"""The order in which ``perf script`` delivers records, reproduced from times and rounds.

perf writes each CPU's ring buffer in turn, so the data section is time-ordered only within
one buffer. ``perf script`` re-orders with perf's ordered-events queue (util/ordered-events.c):

* a kernel record with a timestamp is queued (kept sorted by time, ties in arrival order);
  one without (time 0: the records perf synthesises at start-up) is delivered at once;
* each FINISHED_ROUND record flushes the queued records whose time is at most
  ``next_flush``, then sets ``next_flush`` to the largest queued time (nothing happens when
  the queue is empty, and ``next_flush`` then keeps its value);
* the end of the file flushes everything.

Rows therefore come out in "time order" except where a record arrived after its flush window
(perf prints it late) and for time-0 records (printed where they are read). Reproducing this,
rather than sorting by time, makes our rows the rows ``perf script`` prints, in its order.

The per-round bookkeeping is a scalar loop over rounds; the placement of records is
vectorised: a queued record of round ``s`` is delivered at the first flush ``m > s`` whose
limit reaches its time. When a limit ever decreases (the queue emptied and refilled with older
records, which needs records that arrive more than a round late), the exact per-round queue
simulation is used instead.
"""

from __future__ import annotations

import numpy as np

INF = np.iinfo(np.int64).max


def delivery_order(
    time: np.ndarray, queued: np.ndarray, seg: np.ndarray, n_rounds: int
) -> np.ndarray:
    """Indices (into the file-ordered arrays) in perf script's delivery order.

    *time*: record times (int64); *queued*: whether the record has a usable timestamp;
    *seg*: FINISHED_ROUND records seen before it (0 .. n_rounds)."""
    n = len(time)
    if n == 0:
        return np.zeros(0, np.int64)
    idx = np.arange(n, dtype=np.int64)
    q_seg = seg[queued]
    q_time = time[queued]
    counts = np.bincount(q_seg, minlength=n_rounds + 1)
    qmax = np.full(n_rounds + 1, -1, np.int64)
    if len(q_seg):
        np.maximum.at(qmax, q_seg, q_time)
    # limit[m] for flush at marker m (1..n_rounds); markers with an empty queue do not flush
    limit = np.full(n_rounds + 2, -1, np.int64)
    nonempty, max_ts, next_flush = False, 0, 0
    monotonic, last_limit = True, -1
    for k in range(n_rounds):
        if counts[k]:
            max_ts = int(qmax[k]) if not nonempty else max(max_ts, int(qmax[k]))
            nonempty = True
        if nonempty:
            limit[k + 1] = next_flush
            if next_flush < last_limit:
                monotonic = False
            last_limit = next_flush
            if max_ts <= next_flush:
                nonempty = False
            next_flush = max_ts
    limit[n_rounds + 1] = INF  # the final flush takes everything
    if not monotonic:
        return _simulate(time, queued, seg, n_rounds)
    # markers without a flush never hold records: give them the previous limit so that the
    # array stays sorted for searchsorted (a record is never placed there: its own round's
    # marker and the following ones all flush while it waits)
    flat = np.maximum.accumulate(limit)
    m = np.searchsorted(flat, q_time, side="left")
    m = np.maximum(m, q_seg + 1)
    key = np.empty(n, np.int64)
    sub = np.zeros(n, np.int64)
    key[queued] = 2 * m
    sub[queued] = q_time
    key[~queued] = 2 * seg[~queued] + 1
    return np.lexsort((idx, sub, key))


def _simulate(time: np.ndarray, queued: np.ndarray, seg: np.ndarray, n_rounds: int) -> np.ndarray:
    """The ordered-events queue, round by round (exact in every case, slower)."""
    out: list[np.ndarray] = []
    order = np.argsort(seg, kind="stable")
    bounds = np.searchsorted(seg[order], np.arange(n_rounds + 2))
    pend_t = np.zeros(0, np.int64)
    pend_i = np.zeros(0, np.int64)
    nonempty, max_ts, next_flush = False, 0, 0
    for k in range(n_rounds + 1):
        members = order[bounds[k] : bounds[k + 1]]
        out.append(members[~queued[members]])
        q = members[queued[members]]
        if len(q):
            qt = time[q]
            max_ts = int(qt.max()) if not nonempty else max(max_ts, int(qt.max()))
            nonempty = True
            pend_t = np.concatenate([pend_t, qt])
            pend_i = np.concatenate([pend_i, q])
            o = np.lexsort((pend_i, pend_t))
            pend_t, pend_i = pend_t[o], pend_i[o]
        if k == n_rounds:
            out.append(pend_i)
            break
        if nonempty:
            cut = np.searchsorted(pend_t, next_flush, side="right")
            out.append(pend_i[:cut])
            pend_t, pend_i = pend_t[cut:], pend_i[cut:]
            if not len(pend_i):
                nonempty = False
            next_flush = max_ts
    return np.concatenate(out) if out else np.zeros(0, np.int64)
