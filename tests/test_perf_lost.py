"""Loss windows (parsers.perf_records.lost) against a naive oracle: a PERF_RECORD_LOST covers
the time from the last record its CPU's buffer kept to the LOST record itself."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from tracecorr.parsers.perf_records.lost import lost_windows, overlaps


def _naive_windows(time, cpu, lost_rows):
    lost_rows = set(lost_rows)
    unknown = any(cpu[i] < 0 for i in range(len(time)) if i not in lost_rows)
    out = []
    for r in sorted(lost_rows):
        before = [
            time[i]
            for i in range(len(time))
            if i not in lost_rows and time[i] < time[r] and (unknown or cpu[i] == cpu[r])
        ]
        out.append((max(before) if before else time[r], time[r]))
    return out


def _naive_overlaps(s, e, windows):
    # a window is open at its start (a record kept there) and closed at its end
    return any(a < e and s <= b for a, b in windows)


records = st.lists(
    st.tuples(st.integers(0, 200), st.integers(-1, 2), st.booleans()), min_size=1, max_size=40
)
syscalls = st.lists(st.tuples(st.integers(0, 220), st.integers(0, 60)), max_size=20)


@settings(max_examples=300, deadline=None)
@given(records, syscalls)
def test_windows_and_overlaps_match_the_naive_oracle(recs, scs):
    time = np.array([t for t, _, _ in recs], np.int64)
    cpu = np.array([c for _, c, _ in recs], np.int64)
    lost_rows = np.array([i for i, (_, _, lost) in enumerate(recs) if lost], np.int64)
    w_start, w_end = lost_windows(time, cpu, lost_rows)
    assert (np.diff(w_start) > 0).all() and (w_start[1:] > w_end[:-1]).all()  # disjoint
    naive = _naive_windows(time.tolist(), cpu.tolist(), lost_rows.tolist())
    s = np.array([a for a, _ in scs], np.int64)
    e = np.array([a + d for a, d in scs], np.int64)
    got = overlaps(s, e, w_start, w_end)
    assert got.tolist() == [_naive_overlaps(a, b, naive) for a, b in zip(s, e, strict=True)]


def test_a_read_paired_across_a_later_loss_is_flagged():
    """The real case (a one-page buffer, tests/test_attribution.py): read's sys_enter kept
    on CPU 0 at 100, its exit dropped, a later read's exit kept on CPU 1 at 900, CPU 0's LOST
    record written at 950. As a point at 950 the 100..900 read looked whole."""
    time = np.array([100, 900, 950], np.int64)
    cpu = np.array([0, 1, 0], np.int64)
    w = lost_windows(time, cpu, np.array([2]))
    assert [w[0].tolist(), w[1].tolist()] == [[100], [950]]
    assert overlaps(np.array([100]), np.array([900]), *w).tolist() == [True]
    # without the CPU, the last record of any CPU opens the window: here 900, so it is not
    assert overlaps(np.array([100]), np.array([900]), *lost_windows(time, None, [2])).tolist() == [
        False
    ]
