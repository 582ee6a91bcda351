"""Step: each candidate with the library call holding it and the py-spy run vouching for it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...parsers.columns import str_values
from ..gil import bracketing_runs, futex_episodes, futex_rows, gil_vouchers, stop_runs
from ..joins import holding_span, overlap_pairs
from ..step import step
from ..tables import Tables
from .candidates import tracer_stop_rows

#: a py-spy run vouches for a perf interval when it covers at least this share of it
RUN_COVER = 0.5


@step(
    reads={
        "candidates": ("*", "tid", "kind", "name", "start", "end", "start_open", "end_open"),
        "calls": ("tid", "start", "end", "p_wait_ns"),
        "runs": ("source", "tid", "start", "end", "blocking", "waits_in", "gil_wait", "read_path"),
        "tolerance_ns": (),
        "intervals": ("kind", "tid", "start", "end", "name"),
    },
    adds={"candidates": ("span", "after_call", "run", "gil_by")},
)
def join_calls(t: Tables) -> dict:
    """``span`` = the library call holding each candidate on its thread (row of calls, NaN:
    none), ``after_call`` = it lies after the C call returned, ``run`` = the py-spy run that
    vouches for it (row of runs, -1: none); sorted per-thread joins, O(n log n), the
    candidates then in start order. A candidate whose end (or start) perf did not see joins
    by its other edge."""
    c = t.candidates
    if c is None:
        return {}
    c = c.sort_values("start", kind="stable").reset_index(drop=True)
    lo, hi = seen_window(c)
    span = np.full(len(c), np.nan)
    after = np.zeros(len(c), bool)
    calls = t.calls
    if len(calls):
        # a call holds its thread until its goroutine runs again: after a C call that lost
        # its P, the thread's wait for one is still that call's (Go runtime) time
        held = calls.assign(end=calls["end"] + calls["p_wait_ns"])
        row = holding_span(c["tid"].to_numpy(np.int64), lo, hi, held, t.tolerance_ns)
        span = np.where(row >= 0, row, np.nan)
        inside = ~np.isnan(span)
        ends = calls["end"].to_numpy(np.int64)[np.where(inside, span, 0).astype(int)]
        after = inside & (lo >= ends)
    run = vouching_runs(c.assign(start=lo, end=hi), t.runs)
    run, gil_by = gil_runs(c.assign(start=lo, end=hi), t, run)
    return {"candidates": c.assign(span=span, after_call=after, run=run, gil_by=gil_by)}


def gil_runs(c: pd.DataFrame, t: Tables, run: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The py-spy runs that make futex candidates the interpreter's waits for the GIL, and
    how (``gil_by``: 0 not, 1 sampled in its wait, 2 between client samples: inferred); and
    those that put a tracer's stop inside the client (``gil.stop_runs``)."""
    gil_by = np.zeros(len(c), np.int8)
    if not len(t.runs) or t.intervals is None or "gil_wait" not in t.runs:
        return run, gil_by
    episodes = futex_episodes(t.intervals)
    sampled = gil_vouchers(c, t.runs, episodes, t.tolerance_ns)
    rest = np.flatnonzero(futex_rows(c) & (sampled < 0) & (run < 0))
    between = bracketing_runs(c, t.runs, episodes, rest)
    gil_by[sampled >= 0], gil_by[between >= 0] = 1, 2
    run = np.where(sampled >= 0, sampled, np.where(between >= 0, between, run))
    stop = tracer_stop_rows(c)
    held = stop_runs(c, t.runs, np.flatnonzero(stop))
    run = np.where(stop, held, run)  # a stop: only where py-spy proves it inside the client
    return run, gil_by


def seen_window(c: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The part of each interval that perf saw for sure: an interval whose end was not seen
    (its sys_exit lost, or the capture ended) is joined by its start, and one whose start was
    not seen by its end."""
    start, end = c["start"].to_numpy(np.int64), c["end"].to_numpy(np.int64)
    start_open, end_open = c["start_open"].to_numpy(bool), c["end_open"].to_numpy(bool)
    return (
        np.where(start_open & ~end_open, end, start),
        np.where(end_open & ~start_open, start, end),
    )


def vouching_runs(c: pd.DataFrame, runs: pd.DataFrame) -> np.ndarray:
    """For each candidate, the py-spy run overlapping most of it on its thread (first in run
    order on ties), or -1. A syscall needs a run waiting in a wrapper or socket wait that
    makes that syscall (a poll run for a poll: a run is only as fine as the sampling, and a
    stack can stay on screen across a gap while the thread already sleeps elsewhere, in a
    decoy); off-CPU time outside syscalls needs a run executing library code (a tracer's
    stop: ``gil_runs``). A run in client code outside the read path vouches for nothing
    here, and no GIL-waiting run vouches for a futex here: only for the one wait it was
    sampled in (``gil.gil_vouchers``). The run must
    cover RUN_COVER of the candidate, or be waiting in it when it ended: py-spy sees a new
    stack only at its next sample of the thread, which under its own ptrace stops can come
    tens of ms after the wait began, but the run then lasts until the wait ends."""
    out = np.full(len(c), -1, np.int64)
    if not len(c) or runs.empty:
        return out
    qi, ri = _overlapping_runs(c, runs)
    is_sys = (c["kind"] == "os.syscall").to_numpy()
    waiting = runs["blocking"].to_numpy(bool)[ri]
    names = str_values(c["name"])[qi]
    waits_in = runs["waits_in"].to_numpy(object)[ri]
    makes = np.fromiter((n in w for n, w in zip(names, waits_in, strict=True)), bool, len(qi))
    ok = np.where(is_sys[qi], waiting & makes, ~waiting)
    if "read_path" in runs:
        gil = runs["gil_wait"].to_numpy(bool)[ri] & is_sys[qi] & (names == "futex")
        ok &= runs["read_path"].to_numpy(bool)[ri] & ~gil
    qi, ri = qi[ok], ri[ok]
    q_start, q_end = c["start"].to_numpy(np.int64), c["end"].to_numpy(np.int64)
    r_start, r_end = runs["start"].to_numpy(), runs["end"].to_numpy()
    overlap = np.minimum(r_end[ri], q_end[qi]) - np.maximum(r_start[ri], q_start[qi])
    order = np.lexsort((ri, -overlap, qi))  # per candidate: largest overlap, then run order
    qi, ri, overlap = qi[order], ri[order], overlap[order]
    first = np.ones(len(qi), bool)
    first[1:] = qi[1:] != qi[:-1]
    qi, ri, overlap = qi[first], ri[first], overlap[first]
    ends_in_run = (r_start[ri] <= q_end[qi]) & (q_end[qi] <= r_end[ri]) & is_sys[qi]
    cover = RUN_COVER * np.maximum(q_end[qi] - q_start[qi], 1)
    enough = (overlap >= cover) | ends_in_run
    out[qi[enough]] = ri[enough]
    return out


def _overlapping_runs(c: pd.DataFrame, runs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(candidate, run) pairs that overlap on one thread, recording by recording (the runs
    of one recording never overlap)."""
    q_tid, q_start, q_end = (c[k].to_numpy(np.int64) for k in ("tid", "start", "end"))
    qs, rs = [], []
    for _, g in runs.groupby("source", sort=False):
        qi, ri = overlap_pairs(
            q_tid,
            q_start,
            q_end,
            g["tid"].to_numpy(np.int64),
            g["start"].to_numpy(np.int64),
            g["end"].to_numpy(np.int64),
        )
        qs.append(qi)
        rs.append(g.index.to_numpy()[ri])
    return np.concatenate(qs), np.concatenate(rs)
