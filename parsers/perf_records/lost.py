"""Where perf lost events: one window per PERF_RECORD_LOST, on its CPU's buffer.

The kernel writes a LOST record into a per-CPU ring buffer when it has room again, with the
time of that moment; the records it dropped were due between the last record that buffer
kept and the LOST record. A LOST record is therefore a window, not a point: ``[last record
kept on that CPU, LOST time]``. Read as a point, a syscall whose sys_enter was kept, whose
sys_exit was dropped, and which perf then paired with a later call's sys_exit (the LOST
record written after that exit) looks whole and sure: a 36 ms read spanning two Go calls.

Which CPU's buffer dropped one thread's events says nothing about where that thread's other
events went (it may migrate inside the gap), so a syscall is flagged when it overlaps any
CPU's window: conservative, the cost is a ``censored`` mark on records of lossy captures,
never a mispaired syscall taken as sure.
"""

from __future__ import annotations

import numpy as np


def lost_windows(
    time: np.ndarray, cpu: np.ndarray | None, lost_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of each loss window, sorted and merged into disjoint intervals.

    *time*, *cpu*: per record (cpu -1 or None when the input does not say: then the last
    record of any CPU opens the window); *lost_rows*: the LOST records' row numbers. A
    window is open at its start (the last record kept) and closed at its end."""
    lost_rows = np.asarray(lost_rows, np.int64)
    if not len(lost_rows):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    kept = np.ones(len(time), bool)
    kept[lost_rows] = False
    if cpu is None or not len(cpu) or (np.asarray(cpu)[kept] < 0).any():
        cpu = np.zeros(len(time), np.int64)  # the CPU is not known: one buffer for all
    cpu = np.asarray(cpu, np.int64)
    # the kept records by (CPU, time): each LOST record's window opens at the last kept
    # record of its CPU before it
    k_cpu, k_time = cpu[kept], time[kept]
    order = np.lexsort((k_time, k_cpu))
    k_cpu, k_time = k_cpu[order], k_time[order]
    l_cpu, l_time = cpu[lost_rows], time[lost_rows]
    lo = np.searchsorted(k_cpu, l_cpu, "left")  # each LOST record's CPU: its slice
    hi = np.searchsorted(k_cpu, l_cpu, "right")
    last = np.fromiter(
        (
            a + np.searchsorted(k_time[a:b], t, "left") - 1
            for a, b, t in zip(lo, hi, l_time, strict=True)
        ),
        np.int64,
        len(l_time),
    )
    if not len(k_time):
        return _merged(l_time.copy(), l_time)
    start = np.where(last >= lo, k_time[np.clip(last, 0, len(k_time) - 1)], l_time)
    return _merged(start, l_time)


def _merged(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping windows as one: sorted by start, a window begins a new interval where it
    starts past every earlier end; the interval ends at its last member's running max."""
    o = np.argsort(start, kind="stable")
    start, end = start[o], np.maximum.accumulate(end[o])
    new = np.ones(len(start), bool)
    new[1:] = start[1:] > end[:-1]
    last = np.append(np.flatnonzero(new)[1:] - 1, len(start) - 1)
    return start[new], end[last]


def overlaps(start: np.ndarray, end: np.ndarray, w_start: np.ndarray, w_end: np.ndarray):
    """Per interval [start, end]: does it overlap one of the disjoint, sorted windows (ends
    inclusive: a LOST record carries the time of the first record kept again, so a syscall
    whose exit has that time may have been paired with an exit not its own)."""
    if not len(w_start):
        return np.zeros(len(start), bool)
    j = np.searchsorted(w_end, start, "left")  # the first window ending at or after start
    inside = j < len(w_end)
    jj = np.minimum(j, len(w_end) - 1)
    return inside & (w_start[jj] < end)
