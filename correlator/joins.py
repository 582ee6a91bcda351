"""Interval joins on the reference clock: which interval of a thread holds or overlaps which.

Both are sorted per-thread searches, O((n + m) log m), never a per-row scan:

    holding_span    for each interval, the span holding it on its thread (as-of join)
    overlap_pairs   every (query, item) pair that overlaps on the same thread, for items
                    that do not overlap each other on a thread (off-CPU intervals, py-spy
                    runs of one recording)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..parsers.columns import pair_key, pair_order, pair_searchsorted


def holding_span(
    tid: np.ndarray, start: np.ndarray, end: np.ndarray, spans: pd.DataFrame, tolerance: int
) -> np.ndarray:
    """For each interval, the row number in *spans* (tid, start, end) of the span holding it
    on its thread, -1 for none: the last of the thread's spans starting at or before the
    interval (an as-of join), if it also contains it within *tolerance* ns. Of a thread's
    spans that start together, the last in row order is taken."""
    out = np.full(len(tid), -1, np.int64)
    if not len(tid) or spans.empty:
        return out
    s_tid = spans["tid"].to_numpy(np.int64)
    s_start = spans["start"].to_numpy(np.int64)
    s_end = spans["end"]
    known = s_end.notna().to_numpy()  # a span with no known end holds nothing
    s_end = s_end.fillna(0).to_numpy(np.int64)
    order = pair_order(s_tid, s_start)  # ties (a thread's spans starting together): row order
    at = pair_searchsorted(s_tid[order], s_start[order], tid, start, "right") - 1
    row = order[np.maximum(at, 0)]
    hit = (at >= 0) & (s_tid[row] == tid) & known[row]
    hit &= (start >= s_start[row] - tolerance) & (end <= s_end[row] + tolerance)
    out[hit] = row[hit]
    return out


def overlap_pairs(
    q_tid: np.ndarray,
    q_start: np.ndarray,
    q_end: np.ndarray,
    tid: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(query index, item index) of every item overlapping a query on its thread
    (``item.end > q.start`` and ``item.start < q.end``), in query order then item start.

    Items of one thread must not overlap each other: then those overlapping a query are one
    contiguous run in (tid, start) order, found by two binary searches.
    """
    if not len(q_tid) or not len(tid):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.lexsort((start, tid))
    by_start = pair_key(tid[order], start[order])
    by_end = pair_key(tid[order], end[order])
    lo = np.searchsorted(by_end, pair_key(q_tid, q_start), "right")
    hi = np.searchsorted(by_start, pair_key(q_tid, q_end), "left")
    n = np.maximum(hi - lo, 0)
    qi = np.repeat(np.arange(len(q_tid)), n)
    pos = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(n.sum())
    return qi, order[pos]
