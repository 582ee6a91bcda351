"""Blocking syscalls x library-call spans x threads -> blocking records with a latency split.

Small pure steps over tables on the reference clock, each taking and returning a DataFrame:

1. ``candidates``      perf syscalls of at least ``min_block``, and off-CPU intervals that
                       long outside any syscall (preempted inside a call; not a tracer's stop)
2. ``join_calls``      each candidate with the library call span holding it on its thread
                       (``span``) and the py-spy run of the library that covers it (``run``):
                       sorted per-thread joins, O(n log n)
3. ``attribute``       keep what a Go span, a perf callchain through the library (C programs)
                       or a py-spy run vouches for; name the call, its window and the evidence
4. ``latency_split``   off-CPU time inside each record (by state), runqueue delay when the
                       wakeup was seen, on-CPU = the rest

``blocking_table`` is the one constructor of the records table (the contract columns of
DESIGN.md's JSON report, then extras); ``correlate`` runs the steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..parsers.model import SourceTables, column
from .calls import go_spans, library_spans, library_stacks, python_runs
from .frames import Frames
from .joins import contained_in, overlap_pairs
from .libraries import Library
from .names import thread_names

#: the contract columns of a blocking record (DESIGN.md, JSON report), then extras
COLUMNS = [
    "pid",
    "tid",
    "goid",
    "thread",
    "library",
    "call",
    "call_start_ns",
    "call_end_ns",
    "syscall",
    "start_ns",
    "end_ns",
    "dur_ns",
    "off_cpu_ns",
    "off_cpu_state",
    "evidence",
    "call_site",
    "go_stack",
    "native_stack",
    "python_stack",
]
EXTRA = ["on_cpu_ns", "runq_ns", "p_lost", "restarts", "source"]
LIST_COLUMNS = ("evidence", "go_stack", "native_stack", "python_stack")
#: stopped by a tracer (py-spy's own ptrace stops): the profiler's time, not the program's
TRACER_STOP_STATES = ("t", "T")
#: a py-spy run vouches for a perf interval when it covers at least this share of it
RUN_COVER = 0.5


@dataclass
class Aligned:
    """A parsed source and its offset onto the reference clock (None: not aligned)."""

    tables: SourceTables
    offset_ns: int | None
    error_ns: int | None


def blocking_table(n: int = 0, **columns) -> pd.DataFrame:
    """The blocking-records table: every column of COLUMNS + EXTRA, in that order. Columns
    not given are null (lists: empty), so every path builds the same schema."""
    out = {}
    for name in COLUMNS + EXTRA:
        v = columns.pop(name, None)
        if v is None:
            v = [[] for _ in range(n)] if name in LIST_COLUMNS else [None] * n
        out[name] = list(v) if not isinstance(v, (list, np.ndarray)) else v
    if columns:
        raise TypeError(f"unknown blocking columns {sorted(columns)}")
    return pd.DataFrame(out, columns=COLUMNS + EXTRA)


def perf_intervals(perf: Aligned) -> pd.DataFrame:
    """perf's syscalls and off-CPU intervals with ``start``/``end`` on the reference clock."""
    s = perf.tables.slices
    s = s[s["kind"].isin(["os.syscall", "os.offcpu"]).to_numpy()]
    return s.assign(start=s["ts"] + perf.offset_ns, end=s["ts"] + s["dur"] + perf.offset_ns)


def candidates(intervals: pd.DataFrame, min_block_ns: int) -> pd.DataFrame:
    """Step 1: long syscalls, and long off-CPU intervals outside any syscall."""
    sysc = intervals[intervals["kind"] == "os.syscall"]
    off = intervals[intervals["kind"] == "os.offcpu"].sort_values("start")
    outside = contained_in(
        off[["tid", "start", "end"]].assign(i=np.arange(len(off))),
        sysc[["tid", "start", "end"]],
        0,
    )
    lone = off.iloc[outside.loc[outside["span"].isna(), "i"].astype(int).to_numpy()]
    lone = lone[~lone["name"].isin(TRACER_STOP_STATES)]
    return pd.concat(
        [sysc[sysc["dur"] >= min_block_ns], lone[lone["dur"] >= min_block_ns]],
        ignore_index=True,
    )


def join_calls(
    cands: pd.DataFrame, spans: pd.DataFrame, runs: pd.DataFrame, tolerance: int
) -> pd.DataFrame:
    """Step 2: ``span`` = the library span holding each candidate on its thread (row of
    *spans*), ``run`` = the py-spy library run that vouches for it (row of *runs*); NaN/-1
    when none. Sorted by start."""
    c = contained_in(cands, spans, tolerance) if len(spans) else cands.assign(span=np.nan)
    return c.assign(run=_vouching_runs(c, runs))


def _vouching_runs(c: pd.DataFrame, runs: pd.DataFrame) -> np.ndarray:
    """For each candidate, the py-spy run overlapping most of it on its thread (first in run
    order on ties), or -1. A syscall needs a run waiting in a wrapper or socket wait that
    makes that syscall (a poll run for a poll: a run is only as fine as the sampling, and a
    stack can stay on screen across a gap while the thread already sleeps elsewhere, in a
    decoy); off-CPU time outside syscalls needs a run executing library code. The run must
    cover RUN_COVER of the candidate."""
    out = np.full(len(c), -1, np.int64)
    if not len(c) or runs.empty:
        return out
    q_tid, q_start, q_end = (c[k].to_numpy(np.int64) for k in ("tid", "start", "end"))
    qs, rs = [], []
    for _, g in runs.groupby("source", sort=False):  # runs of one recording never overlap
        idx = g.index.to_numpy()
        qi, ri = overlap_pairs(
            q_tid,
            q_start,
            q_end,
            g["tid"].to_numpy(np.int64),
            g["start"].to_numpy(np.int64),
            g["end"].to_numpy(np.int64),
        )
        qs.append(qi)
        rs.append(idx[ri])
    qi, ri = np.concatenate(qs), np.concatenate(rs)
    is_sys = (c["kind"] == "os.syscall").to_numpy()[qi]
    blocking = runs["blocking"].to_numpy(bool)[ri]
    names = c["name"].to_numpy(object)[qi]
    makes = np.fromiter(
        (n in w for n, w in zip(names, runs["waits_in"].to_numpy(object)[ri], strict=True)),
        bool,
        len(qi),
    )
    ok = np.where(is_sys, blocking & makes, ~blocking)
    qi, ri = qi[ok], ri[ok]
    ov = np.minimum(runs["end"].to_numpy()[ri], q_end[qi]) - np.maximum(
        runs["start"].to_numpy()[ri], q_start[qi]
    )
    order = np.lexsort((ri, -ov, qi))  # per candidate: largest overlap, then run order
    qi, ri, ov = qi[order], ri[order], ov[order]
    first = np.ones(len(qi), bool)
    first[1:] = qi[1:] != qi[:-1]
    qi, ri, ov = qi[first], ri[first], ov[first]
    enough = ov >= RUN_COVER * np.maximum(q_end[qi] - q_start[qi], 1)
    out[qi[enough]] = ri[enough]
    return out


def attribute(
    c: pd.DataFrame,
    spans: pd.DataFrame,
    runs: pd.DataFrame,
    lib_stacks: dict[int, str],
    lib: Library,
) -> pd.DataFrame:
    """Step 3: keep the candidates a Go library span, a perf callchain through the library
    or a py-spy library run vouches for; add goid, call, call window, call site, p_lost,
    evidence and the span's and run's stacks (``go_stack_id``, ``run``)."""
    is_sys = (c["kind"] == "os.syscall").to_numpy()
    sid = c["stack_id"]
    sid_int = sid.fillna(0).astype("int64").to_numpy()
    stack_lib = np.array(
        [lib_stacks.get(s) if sy and s else None for s, sy in zip(sid_int, is_sys, strict=True)],
        dtype=object,
    )
    span = c["span"].to_numpy()
    in_go = ~np.isnan(span)
    run = c["run"].to_numpy()
    keep = in_go | (stack_lib != None) | (run >= 0)  # noqa: E711 - elementwise
    c, stack_lib, span, in_go, run = (
        c[keep].reset_index(drop=True),
        stack_lib[keep],
        span[keep],
        in_go[keep],
        run[keep],
    )
    n = len(c)
    sp = spans.iloc[span[in_go].astype(int)] if in_go.any() else None
    rn = runs.iloc[run[run >= 0]] if (run >= 0).any() else None

    def column(default=None) -> np.ndarray:
        return np.full(n, default, dtype=object)

    goid, call, call_site, p_lost, go_sid = column(), column(), column(), column(), column()
    call_start, call_end = column(), column()
    evidence = np.empty(n, dtype=object)
    evidence[:] = [[] for _ in range(n)]
    if sp is not None:
        goid[in_go] = [None if pd.isna(g) else int(g) for g in sp["goid"]]
        call[in_go] = sp["call"].to_numpy()
        call_start[in_go] = sp["start"].astype("int64").tolist()
        call_end[in_go] = sp["end"].astype("int64").tolist()
        for i, e in zip(np.flatnonzero(in_go), sp["evidence"].astype(str), strict=True):
            evidence[i] = e.split(",") if e else []
        call_site[in_go] = sp["call_site"].to_numpy()
        p_lost[in_go] = sp["p_lost"].to_numpy()
        go_sid[in_go] = sp["stack_id"].to_numpy()
    c_only = ~in_go & (stack_lib != None)  # noqa: E711 - elementwise
    call[c_only] = stack_lib[c_only]
    call_start[c_only] = c["start"].to_numpy()[c_only].tolist()
    call_end[c_only] = c["end"].to_numpy()[c_only].tolist()
    for i in np.flatnonzero(c_only):
        evidence[i] = ["perf-callchain"]
    if rn is not None:
        has_run = run >= 0
        for i, r in zip(np.flatnonzero(has_run), rn.itertuples(), strict=True):
            evidence[i] = sorted(set(evidence[i]) | {"pyspy-stack"})
            if call[i] is None:
                call[i], call_start[i], call_end[i] = r.call, int(r.start), int(r.end)
                call_site[i] = r.call_site
    for i in np.flatnonzero(stack_lib != None):  # noqa: E711 - elementwise
        if "perf-callchain" not in evidence[i]:
            evidence[i].append("perf-callchain")
    return c.assign(
        goid=goid,
        call=call,
        call_start_ns=call_start,
        call_end_ns=call_end,
        call_site=call_site,
        p_lost=p_lost,
        evidence=evidence,
        go_stack_id=go_sid,
        run=run,
    )


def latency_split(c: pd.DataFrame, intervals: pd.DataFrame) -> pd.DataFrame:
    """Step 4: ``off_cpu_ns``, ``off_cpu_state`` (the state most of it was spent in),
    ``runq_ns`` (wakeup -> running, summed over the intervals where the wakeup was seen;
    None when it never was) and ``on_cpu_ns``. A syscall's off-CPU time is that of the
    off-CPU intervals inside it; an off-CPU record is all off CPU."""
    n = len(c)
    is_sys = (c["kind"] == "os.syscall").to_numpy()
    start, end = c["start"].to_numpy(np.int64), c["end"].to_numpy(np.int64)
    dur = end - start
    off_ns = np.where(is_sys, 0, dur).astype(object)
    state = np.where(is_sys, None, c["name"].to_numpy(object))
    runq = np.array([None] * n, dtype=object)
    if (~is_sys).any():
        q = column(c, "slices", "runq_ns")[~is_sys]
        runq[~is_sys] = [None if pd.isna(x) else int(x) for x in q]
    off = intervals[intervals["kind"] == "os.offcpu"].sort_values("start")
    sys_rows = np.flatnonzero(is_sys)
    qi, oi = overlap_pairs(
        c["tid"].to_numpy(np.int64)[sys_rows],
        start[sys_rows],
        end[sys_rows],
        off["tid"].to_numpy(np.int64),
        off["start"].to_numpy(np.int64),
        off["end"].to_numpy(np.int64),
    )
    if len(qi):
        rec = sys_rows[qi]
        ov = np.maximum(
            np.minimum(off["end"].to_numpy()[oi], end[rec])
            - np.maximum(off["start"].to_numpy()[oi], start[rec]),
            0,
        )
        pairs = pd.DataFrame({"rec": rec, "state": off["name"].to_numpy(object)[oi], "ov": ov})
        total = pairs.groupby("rec")["ov"].sum()
        off_ns[total.index.to_numpy()] = total.astype("int64").tolist()
        by_state = pairs.groupby(["rec", "state"])["ov"].sum().reset_index()
        # the state with the most time; ties go to the first state name in sort order
        by_state = by_state.sort_values(["rec", "ov", "state"], ascending=[True, False, True])
        top = by_state.drop_duplicates("rec")
        state[top["rec"].to_numpy()] = top["state"].to_numpy()
        q = column(off, "slices", "runq_ns").to_numpy(dtype=np.float64, na_value=np.nan)[oi]
        known = pd.DataFrame({"rec": rec, "q": q})
        known = known[~np.isnan(q)]
        if len(known):
            s = known.groupby("rec")["q"].sum()
            runq[s.index.to_numpy()] = [int(x) for x in s]
    on_cpu = np.array([d - o for d, o in zip(dur.tolist(), off_ns, strict=True)], dtype=object)
    return c.assign(off_cpu_ns=off_ns, off_cpu_state=state, runq_ns=runq, on_cpu_ns=on_cpu)


def correlate(
    go: Aligned | None, perf: Aligned | None, py: list[Aligned], lib: Library, min_block_ns: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(blocking records, library call spans): the steps above, over the aligned sources."""
    sources = [a for a in (go, perf) if a is not None]
    tol = max((a.error_ns or 0) for a in sources) if sources else 0
    perf_on = perf is not None and perf.offset_ns is not None
    intervals = perf_intervals(perf) if perf_on else None
    lib_stacks = library_stacks(perf.tables, lib) if perf is not None else {}
    names = thread_names([a.tables for a in [perf, go, *py] if a is not None])

    spans = pd.DataFrame()
    if go is not None and go.offset_ns is not None:
        perf_sys = intervals[intervals["kind"] == "os.syscall"] if intervals is not None else None
        spans = library_spans(
            go_spans(go.tables, go.offset_ns, lib), perf_sys, lib_stacks, lib, tol
        )
    runs = pd.concat(
        [python_runs(a.tables, a.offset_ns, lib) for a in py if a.offset_ns is not None]
        or [pd.DataFrame()],
        ignore_index=True,
    )
    py_frames = {a.tables.meta.source: Frames(a.tables) for a in py}

    if intervals is not None:
        c = candidates(intervals, min_block_ns)
        c = join_calls(c, spans, runs, tol)
        c = attribute(c, spans, runs, lib_stacks, lib)
        c = latency_split(c, intervals)
        blocking = _perf_records(c, runs, lib, names, Frames(perf.tables), go, py_frames)
    elif len(runs):
        blocking = _pyspy_records(runs, lib, names, py_frames, min_block_ns)
    else:
        blocking = blocking_table()
    if len(blocking):
        blocking = blocking.sort_values(["start_ns", "tid"]).reset_index(drop=True)
    return blocking, spans


def _perf_records(
    c: pd.DataFrame,
    runs: pd.DataFrame,
    lib: Library,
    names: dict[int, str],
    perf_frames: Frames,
    go: Aligned | None,
    py_frames: dict[str, Frames],
) -> pd.DataFrame:
    """The records of perf intervals attributed to library calls."""
    n = len(c)
    is_sys = (c["kind"] == "os.syscall").to_numpy()
    tid = c["tid"].astype("int64").tolist()
    start, end = c["start"].astype("int64").tolist(), c["end"].astype("int64").tolist()
    go_frames = Frames(go.tables) if go is not None else None
    run = c["run"].to_numpy()
    python_stack = [
        py_frames[runs.at[r, "source"]].strings(runs.at[r, "stack_id"]) if r >= 0 else []
        for r in run
    ]
    restarts = [
        (0 if pd.isna(r) else int(r)) if s else None
        for r, s in zip(column(c, "slices", "restarts"), is_sys, strict=True)
    ]
    return blocking_table(
        n,
        pid=c["pid"].astype("int64").tolist(),
        tid=tid,
        goid=c["goid"].tolist(),
        thread=[names.get(t) for t in tid],
        library=[lib.name] * n,
        call=c["call"].tolist(),
        call_start_ns=c["call_start_ns"].tolist(),
        call_end_ns=c["call_end_ns"].tolist(),
        syscall=np.where(is_sys, c["name"].to_numpy(object), None).tolist(),
        start_ns=start,
        end_ns=end,
        dur_ns=[e - s for s, e in zip(start, end, strict=True)],
        off_cpu_ns=c["off_cpu_ns"].tolist(),
        off_cpu_state=c["off_cpu_state"].tolist(),
        evidence=c["evidence"].tolist(),
        call_site=c["call_site"].tolist(),
        go_stack=[
            go_frames.strings(s) if go_frames is not None and s is not None else []
            for s in c["go_stack_id"]
        ],
        native_stack=[perf_frames.strings(s) for s in c["stack_id"]],
        python_stack=python_stack,
        on_cpu_ns=c["on_cpu_ns"].tolist(),
        runq_ns=c["runq_ns"].tolist(),
        p_lost=c["p_lost"].tolist(),
        restarts=restarts,
        source=c["source"].astype(str).tolist(),
    )


def _pyspy_records(
    runs: pd.DataFrame,
    lib: Library,
    names: dict[int, str],
    py_frames: dict[str, Frames],
    min_block_ns: int,
) -> pd.DataFrame:
    """py-spy alone: waiting runs in the library; the syscall from the libc leaf frame."""
    r = runs[runs["blocking"] & (runs["end"] - runs["start"] >= min_block_ns)]
    n = len(r)
    tid = r["tid"].astype("int64").tolist()
    start, end = r["start"].astype("int64").tolist(), r["end"].astype("int64").tolist()
    return blocking_table(
        n,
        pid=r["pid"].astype("int64").tolist(),
        tid=tid,
        thread=[names.get(t) for t in tid],
        library=[lib.name] * n,
        call=r["call"].tolist(),
        call_start_ns=start,
        call_end_ns=end,
        syscall=[min(w) if w else None for w in r["waits_in"]],
        start_ns=start,
        end_ns=end,
        dur_ns=[e - s for s, e in zip(start, end, strict=True)],
        evidence=[["pyspy-stack"] for _ in range(n)],
        call_site=r["call_site"].tolist(),
        python_stack=[
            py_frames[s].strings(x) for s, x in zip(r["source"], r["stack_id"], strict=True)
        ],
        source=r["source"].astype(str).tolist(),
    )
