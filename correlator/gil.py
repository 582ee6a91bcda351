"""The Python interpreter's waits for the GIL, told apart from the library's.

CPython's ``take_gil`` waits on a condition variable timed by the switch interval (5 ms):
each timeout (``futex`` returns ETIMEDOUT) sets a drop request and waits again, so one wait
for the GIL is a run of futex syscalls on the thread with only a few microseconds between
them (the wake-ups of the mutex and condition variable). Such a run is a *futex episode*;
the thread does not leave ``take_gil`` inside it.

A py-spy sample proves that a thread waited for the GIL when its native stack is a
condition-variable (or the GIL mutex's) wait under the C function that released it
(``sock_call_ex`` at ``Py_END_ALLOW_THREADS``). It proves it for the episode the sample was
taken in, and only that one: a sample's stack stays on screen until the next sample, 10 ms
later at 100 Hz, when the thread may long have left the call.

An episode no sample fell in is the interpreter's *inside the call* when it lies between
two samples that both show the thread in the client, with only client samples between
(``bracketing_runs``): then it is marked inferred; its error is that the thread may have
left the client and come back between two samples.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..parsers.columns import pair_order, pair_searchsorted
from .joins import overlap_pairs

#: the longest gap between two futex syscalls of one wait for the GIL (the wake-ups between
#: CPython's timed waits take microseconds; a thread that got the GIL runs Python code and
#: makes other syscalls, or waits much later)
EPISODE_GAP_NS = 200_000


def futex_rows(frame: pd.DataFrame) -> np.ndarray:
    """Which rows of an intervals-like frame (kind, name) are futex syscalls."""
    return ((frame["kind"] == "os.syscall") & (frame["name"] == "futex")).to_numpy(bool)


def futex_episodes(intervals: pd.DataFrame) -> pd.DataFrame:
    """Per thread, the runs of futex syscalls with no other syscall and no gap over
    EPISODE_GAP_NS between them: tid, start, end (one row per episode)."""
    sys = intervals[(intervals["kind"] == "os.syscall").to_numpy(bool)]
    if not len(sys):
        return pd.DataFrame({"tid": [], "start": [], "end": []}, dtype=np.int64)
    tid, start, end = (sys[k].to_numpy(np.int64) for k in ("tid", "start", "end"))
    futex = (sys["name"] == "futex").to_numpy(bool)
    order = np.lexsort((start, tid))
    tid, start, end, futex = tid[order], start[order], end[order], futex[order]
    prev_end = np.r_[np.iinfo(np.int64).min, np.maximum.accumulate(end)[:-1]]
    same = np.r_[False, tid[1:] == tid[:-1]]
    joined = same & futex & np.r_[False, futex[:-1]] & (start - prev_end <= EPISODE_GAP_NS)
    keep = futex
    first = keep & ~joined
    episode = np.cumsum(first) - 1
    g = pd.DataFrame(
        {"ep": episode[keep], "tid": tid[keep], "start": start[keep], "end": end[keep]}
    )
    out = g.groupby("ep").agg(tid=("tid", "first"), start=("start", "min"), end=("end", "max"))
    return out.reset_index(drop=True)


def gil_vouchers(
    c: pd.DataFrame, runs: pd.DataFrame, episodes: pd.DataFrame, tolerance_ns: int
) -> np.ndarray:
    """For each candidate, the py-spy run (row) that proves it a wait for the GIL, or -1:
    a futex candidate whose episode holds the sample time of a GIL-waiting run of its
    thread (within the alignment's *tolerance_ns*)."""
    out = np.full(len(c), -1, np.int64)
    if not len(c) or runs.empty or not len(episodes) or "gil_wait" not in runs:
        return out
    q = np.flatnonzero(futex_rows(c))
    if not len(q):
        return out
    ep_tid, ep_start, ep_end = (episodes[k].to_numpy(np.int64) for k in ("tid", "start", "end"))
    ep = _episode_of(c, q, episodes)
    qi = np.flatnonzero(ep >= 0)
    ei = ep[qi]
    gil = runs[runs["gil_wait"].to_numpy(bool)]
    if not len(gil):
        return out
    # the first GIL-waiting sample of the thread at or after the episode's start (less the
    # tolerance): sorted per-thread search, not a scan per candidate
    r_tid, r_at = gil["tid"].to_numpy(np.int64), gil["start"].to_numpy(np.int64)
    order = pair_order(r_tid, r_at)
    r_tid, r_at, r_row = r_tid[order], r_at[order], gil.index.to_numpy()[order]
    lo = ep_start[ei] - tolerance_ns
    at = pair_searchsorted(r_tid, r_at, ep_tid[ei], lo, "left")
    j = np.minimum(at, len(r_at) - 1)
    hit = (at < len(r_at)) & (r_tid[j] == ep_tid[ei]) & (r_at[j] <= ep_end[ei] + tolerance_ns)
    out[q[qi[hit]]] = r_row[j[hit]]
    return out


def bracketing_runs(
    c: pd.DataFrame, runs: pd.DataFrame, episodes: pd.DataFrame, candidates: np.ndarray
) -> np.ndarray:
    """For each of the *candidates* (futex rows of *c*), the first GIL-waiting run of the
    contiguous client runs around its episode, or -1 (``between_samples``)."""
    out = np.full(len(c), -1, np.int64)
    if not len(candidates) or runs.empty or not len(episodes):
        return out
    ep = _episode_of(c, candidates, episodes)
    has = ep >= 0
    e = ep[has]
    tid, start, end = (episodes[k].to_numpy(np.int64)[e] for k in ("tid", "start", "end"))
    out[candidates[has]] = between_samples(tid, start, end, _client_blocks(runs, gil=True))
    return out


def between_samples(
    tid: np.ndarray, start: np.ndarray, end: np.ndarray, blocks: pd.DataFrame
) -> np.ndarray:
    """For each interval, the run of the block of contiguous client runs it lies in, or -1:
    it starts after the block's first sample and ends a sampling period before the block's
    end (py-spy merges equal consecutive samples into one run, so the last sample of a run
    is at least a period before its end)."""
    out = np.full(len(tid), -1, np.int64)
    for (_, thread), g in blocks.groupby(["source", "tid"], sort=False):
        mine = np.flatnonzero(tid == thread)
        if not len(mine):
            continue
        b_start, b_last = g["start"].to_numpy(np.int64), g["last"].to_numpy(np.int64)
        at = np.searchsorted(b_start, start[mine], "right") - 1
        ok = (at >= 0) & (end[mine] <= b_last[np.maximum(at, 0)])
        out[mine[ok]] = g["run"].to_numpy(np.int64)[at[ok]]
    return out


def _client_blocks(runs: pd.DataFrame, gil: bool) -> pd.DataFrame:
    """Per recording and thread, the blocks of contiguous runs (each starting where the last
    ended), with a GIL-waiting run among them if *gil*: source, tid, start, last (its end
    less a sampling period), run (its first run; its first GIL-waiting one if *gil*)."""
    r = runs.assign(run=np.arange(len(runs))).sort_values(["source", "tid", "start"])
    start, end = r["start"].to_numpy(np.int64), r["end"].to_numpy(np.int64)
    key = r["source"].astype(str).to_numpy() + ":" + r["tid"].astype(str).to_numpy()
    new = np.r_[True, (key[1:] != key[:-1]) | (start[1:] != end[:-1])]
    block = np.cumsum(new) - 1
    dur = end - start
    period = pd.Series(dur[dur > 0]).groupby(r["source"].to_numpy()[dur > 0]).min()
    wanted = r["gil_wait"].to_numpy(bool) if gil else np.ones(len(r), bool)
    big = np.iinfo(np.int64).max
    g = pd.DataFrame({"source": r["source"].to_numpy(), "tid": r["tid"].to_numpy(np.int64),
                      "start": start, "end": end, "block": block,
                      "run": np.where(wanted, r["run"].to_numpy(), big)})  # fmt: skip
    out = g.groupby("block").agg(
        source=("source", "first"), tid=("tid", "first"), start=("start", "min"),
        end=("end", "max"), run=("run", "min"),
    )  # fmt: skip
    out = out[out["run"] < big]
    out["last"] = out["end"] - out["source"].map(period).fillna(0).astype(np.int64)
    return out.sort_values(["source", "tid", "start"]).reset_index(drop=True)


def stop_runs(c: pd.DataFrame, runs: pd.DataFrame, stops: np.ndarray) -> np.ndarray:
    """For each of the *stops* (rows of *c*: a tracer held the thread, outside syscalls), a
    client run that proves the thread was inside the client then, or -1: py-spy sampled it
    during the stop (a run starts inside it: a stopped thread does not move) or the stop
    lies between two client samples (``between_samples``)."""
    out = np.full(len(c), -1, np.int64)
    if not len(stops) or runs.empty:
        return out
    tid = c["tid"].to_numpy(np.int64)[stops]
    start, end = c["start"].to_numpy(np.int64)[stops], c["end"].to_numpy(np.int64)[stops]
    blocks = _client_blocks(runs, gil=False)
    found = between_samples(tid, start, end, blocks)
    r_tid, r_start = runs["tid"].to_numpy(np.int64), runs["start"].to_numpy(np.int64)
    order = pair_order(r_tid, r_start)
    lo = pair_searchsorted(r_tid[order], r_start[order], tid, start, "left")
    at = np.minimum(lo, len(order) - 1)
    sampled = (lo < len(order)) & (r_tid[order][at] == tid) & (r_start[order][at] <= end)
    found = np.where((found < 0) & sampled, order[at], found)
    out[stops] = found
    return out


def _episode_of(c: pd.DataFrame, rows: np.ndarray, episodes: pd.DataFrame) -> np.ndarray:
    """The episode (row) holding each of the *rows* of *c* on its thread, or -1."""
    ep = np.full(len(rows), -1, np.int64)
    qi, ei = overlap_pairs(
        c["tid"].to_numpy(np.int64)[rows],
        c["start"].to_numpy(np.int64)[rows],
        c["end"].to_numpy(np.int64)[rows],
        *(episodes[k].to_numpy(np.int64) for k in ("tid", "start", "end")),
    )
    first = np.r_[True, qi[1:] != qi[:-1]] if len(qi) else np.zeros(0, bool)
    ep[qi[first]] = ei[first]
    return ep
