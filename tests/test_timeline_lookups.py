"""The wakers' per-thread interval lookups against a brute-force oracle (hypothesis).

Threads are generated in any tid order and at any times, so a thread with a small tid may
live after one with a large tid (a lookup structure shared across threads must not leak one
thread's times into another's searches)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from tracecorr.correlator.wakers import _Timeline


@st.composite
def threads(draw):
    """{tid: [(start, end), ...]} disjoint, sorted intervals per thread."""
    out = {}
    for tid in draw(st.lists(st.integers(1, 50), min_size=1, max_size=5, unique=True)):
        t = draw(st.integers(0, 10_000))
        spans = []
        for _ in range(draw(st.integers(0, 20))):  # past 8: both of most()'s paths
            t += draw(st.integers(0, 50))
            end = t + draw(st.integers(0, 100) | st.sampled_from([10, 20]))  # ties too
            spans.append((t, end))
            t = end
        out[tid] = spans
    return out


def build(th):
    rows = [(tid, s, e) for tid, spans in th.items() for s, e in spans]
    arr = np.array(rows, np.int64).reshape(-1, 3)
    return _Timeline(arr[:, 0], arr[:, 1], arr[:, 2])


@settings(max_examples=500, deadline=None)
@given(threads(), st.data())
def test_most_and_last_ending_equal_brute_force(th, data):
    # mostly a thread that exists and a window near its intervals; sometimes anything
    tid = data.draw(st.sampled_from(sorted(th)) | st.integers(1, 50))
    spans = th.get(tid, [])
    near = [x for s, e in spans for x in (s, e)] or [0]
    lo = data.draw(st.sampled_from(near).map(lambda x: x - 60) | st.integers(-10, 12_000))
    width = data.draw(st.integers(0, 300) | st.integers(0, 3_000))
    tl = build(th)
    hi = lo + width
    # most: the largest overlap with [lo, hi] (the first of equals), None if none positive
    best = None
    for s, e in spans:
        ov = min(e, hi) - max(s, lo)
        if ov > 0 and (best is None or ov > best[2] - best[1]):
            best = (s, max(s, lo), min(e, hi))
    got = tl.most(tid, lo, hi)
    if best is None:
        assert got is None
    else:
        i, s, e = got
        assert (s, e) == best[1:] and tl.tid[i] == tid and tl.start[i] == best[0]
    # last_ending: the last interval whose end lies in (lo, hi]
    ends = [e for _, e in spans if lo < e <= hi]
    i = tl.last_ending(tid, lo, hi)
    if not ends:
        assert i is None
    else:
        assert tl.tid[i] == tid and tl.end[i] == max(ends)
