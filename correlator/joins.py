"""Interval joins on the reference clock: which interval of a thread holds or overlaps which.

Both are sorted per-thread searches, O((n + m) log m), never a per-row scan:

    contained_in    each record with the span containing it on its thread (as-of join)
    overlap_pairs   every (query, item) pair that overlaps on the same thread, for items
                    that do not overlap each other on a thread (off-CPU intervals, py-spy
                    runs of one recording)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..parsers.columns import pair_key


def contained_in(records: pd.DataFrame, spans: pd.DataFrame, tolerance: int) -> pd.DataFrame:
    """*records* sorted by start, with ``span``: the row number of the span in *spans* that
    contains it on its thread (within *tolerance* ns), or NaN."""
    if records.empty or spans.empty:
        return records.assign(span=np.nan)
    r = records.sort_values("start").reset_index(drop=True)
    sp = spans.assign(span=np.arange(len(spans)), span_start=spans["start"], span_end=spans["end"])[
        ["tid", "span_start", "span_end", "span"]
    ]
    sp = sp.sort_values("span_start")
    m = pd.merge_asof(
        r,
        sp,
        left_on="start",
        right_on="span_start",
        by="tid",
        direction="backward",
        allow_exact_matches=True,
        tolerance=None,
    )
    inside = (m["start"] >= m["span_start"] - tolerance) & (m["end"] <= m["span_end"] + tolerance)
    m.loc[~inside.fillna(False).astype(bool), "span"] = np.nan
    return m.drop(columns=["span_start", "span_end"])


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
