"""Blocking syscalls x native-call spans x threads -> blocking records with a latency split.

Steps (each a plain function over DataFrames on the reference clock):

1. ``resolve_go_spans``: a cgo span whose wrapper name does not say which library it calls
   becomes a library call when any perf syscall inside it (same thread) has a library frame
   in its callchain (DWARF callchains reach libhiredis); matched spans gain that evidence.
2. ``join``: each blocking candidate, a perf ``os.syscall`` of at least ``min_block`` or an
   ``os.offcpu`` of at least ``min_block`` outside any syscall (preempted inside a call), is
   joined to the span containing it on its thread: sorted per-thread as-of joins, O(n log n).
   Threads no Go trace covers fall back to perf callchains alone (C programs) and to py-spy
   runs through the library's Python read path (Python programs).
3. ``split``: per record, the off-CPU time inside it (by state), runqueue delay when the
   wakeup was seen, on-CPU = the rest, and for Go whether the P was handed off.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np
import pandas as pd

from parsers.model import SourceTables

from .calls import frames_by_stack, go_spans, python_runs, stack_strings
from .libraries import Library

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
TRACER_STOP_STATES = ("t", "T")


@dataclass
class Aligned:
    """A parsed source and its offset onto the reference clock (None: not aligned)."""

    tables: SourceTables
    offset_ns: int | None
    error_ns: int | None


def _perf_slices(perf: Aligned) -> pd.DataFrame:
    s = perf.tables.slices
    s = s[s["kind"].isin(["os.syscall", "os.offcpu"])]
    return s.assign(
        start=s["ts"] + perf.offset_ns,
        end=s["ts"] + s["dur"] + perf.offset_ns,
        kind=s["kind"].astype(str),
        name=s["name"].astype(str),
    )


def library_stacks(src: SourceTables, lib: Library) -> dict[int, str]:
    """perf stack id -> outermost library function, for callchains through the library."""
    st = src.stacks
    if st.empty:
        return {}
    module = st["module"].astype(object).where(st["module"].notna(), "").astype(str)
    function = st["function"].astype(str)
    hit = np.zeros(len(st), bool)
    for sub in lib.dso_substrings:
        hit |= module.str.contains(sub, regex=False).to_numpy()
    for glob in lib.c_function_globs:
        hit |= function.str.match(fnmatch.translate(glob)).to_numpy()
    h = st[hit]
    if h.empty:
        return {}
    outer = h.loc[h.groupby("stack_id")["depth"].idxmax()]  # leaf first: deepest = outermost
    return dict(zip(outer["stack_id"].astype(int), outer["function"].astype(str), strict=True))


def contained_in(records: pd.DataFrame, spans: pd.DataFrame, tolerance: int) -> pd.DataFrame:
    """Each record with the span that contains it on its thread (or NaN span columns)."""
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


def resolve_go_spans(
    spans: pd.DataFrame, perf_sys: pd.DataFrame, lib_stacks: dict, lib: Library, tolerance: int
) -> pd.DataFrame:
    spans = spans.copy()
    if perf_sys.empty or spans.empty:
        return spans
    lib_sys = perf_sys[
        perf_sys["stack_id"].map(lambda x: not pd.isna(x) and int(x) in lib_stacks).astype(bool)
    ]
    hit = contained_in(lib_sys[["tid", "start", "end"]], spans, tolerance)
    idx = np.unique(hit["span"].dropna().astype(int).to_numpy())
    if len(idx):
        ev = spans["evidence"].to_numpy(dtype=object, copy=True)
        ev[idx] = [e if "perf-callchain" in e else [*e, "perf-callchain"] for e in ev[idx]]
        spans["evidence"] = ev
        lib_col = spans["library"].to_numpy(dtype=object, copy=True)
        lib_col[idx] = lib.name
        spans["library"] = lib_col
    return spans


def _offcpu_inside(off: pd.DataFrame, tid: int, start: int, end: int):
    o = off.get(tid)
    if o is None:
        return 0, None, None
    lo = np.searchsorted(o["end"].to_numpy(), start, "right")
    hi = np.searchsorted(o["start"].to_numpy(), end, "left")
    part = o.iloc[lo:hi]
    if part.empty:
        return 0, None, None
    ov = np.minimum(part["end"].to_numpy(), end) - np.maximum(part["start"].to_numpy(), start)
    ov = np.maximum(ov, 0)
    by_state = pd.Series(ov, index=part["name"].to_numpy()).groupby(level=0).sum()
    runq = [a.get("runq_ns") for a in part["args"]]
    known = [q for q in runq if q is not None]
    return int(ov.sum()), str(by_state.idxmax()), (int(sum(known)) if known else None)


def correlate(
    go: Aligned | None, perf: Aligned | None, py: list[Aligned], lib: Library, min_block_ns: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(blocking records, library call spans)."""
    records: list[dict] = []
    spans = pd.DataFrame()
    tol = max((a.error_ns or 0) for a in [go, perf] if a is not None) if (go or perf) else 0
    perf_all = _perf_slices(perf) if perf is not None and perf.offset_ns is not None else None
    lib_stacks = library_stacks(perf.tables, lib) if perf is not None else {}
    perf_frames = frames_by_stack(perf.tables) if perf is not None else {}
    names = thread_names([a.tables for a in [perf, go, *py] if a is not None])

    if go is not None and go.offset_ns is not None:
        spans = go_spans(go.tables, go.offset_ns, lib)
        if perf_all is not None:
            sys_all = perf_all[perf_all["kind"] == "os.syscall"]
            spans = resolve_go_spans(spans, sys_all, lib_stacks, lib, tol)
    lib_spans = spans[spans["library"].notna()].reset_index(drop=True) if len(spans) else spans
    go_frames = frames_by_stack(go.tables) if go is not None else {}

    py_runs = pd.concat(
        [python_runs(a.tables, a.offset_ns, lib) for a in py if a.offset_ns is not None]
        or [pd.DataFrame()],
        ignore_index=True,
    )
    py_frames = {a.tables.meta.source: frames_by_stack(a.tables) for a in py}

    if perf_all is not None:
        sysc = perf_all[perf_all["kind"] == "os.syscall"]
        off = perf_all[perf_all["kind"] == "os.offcpu"].sort_values("start")
        off_by_tid = {int(t): g for t, g in off.groupby("tid")}
        # off-CPU time outside any syscall (preempted in user space inside a call)
        off_out = contained_in(
            off[["tid", "start", "end"]].assign(i=np.arange(len(off))),
            sysc[["tid", "start", "end"]],
            0,
        )
        lone_off = off.iloc[off_out.loc[off_out["span"].isna(), "i"].astype(int).to_numpy()]
        # stopped by a tracer (t: py-spy's own ptrace stops) is the profiler, not the program
        lone_off = lone_off[~lone_off["name"].isin(TRACER_STOP_STATES)]
        cands = pd.concat(
            [sysc[sysc["dur"] >= min_block_ns], lone_off[lone_off["dur"] >= min_block_ns]],
            ignore_index=True,
        )
        joined = (
            contained_in(cands, lib_spans, tol) if len(lib_spans) else cands.assign(span=np.nan)
        )
        for r in joined.itertuples():
            is_sys = r.kind == "os.syscall"
            stack_lib = (
                lib_stacks.get(int(r.stack_id)) if is_sys and not pd.isna(r.stack_id) else None
            )
            in_go = not pd.isna(r.span)
            pyrun = _py_run_for(
                py_runs, int(r.tid), int(r.start), int(r.end), r.name if is_sys else None
            )
            if not (in_go or stack_lib or pyrun is not None):
                continue
            rec = _base_record(r, names)
            if in_go:
                sp = lib_spans.iloc[int(r.span)]
                rec.update(
                    goid=int(sp["goid"]) if not pd.isna(sp["goid"]) else None,
                    call=sp["call"],
                    call_start_ns=int(sp["start"]),
                    call_end_ns=int(sp["end"]),
                    evidence=list(sp["evidence"]),
                    call_site=sp["call_site"],
                    p_lost=sp["p_lost"],
                    go_stack=stack_strings(go_frames, sp["stack_id"]),
                )
            elif stack_lib:
                rec.update(
                    call=stack_lib,
                    call_start_ns=int(r.start),
                    call_end_ns=int(r.end),
                    evidence=["perf-callchain"],
                )
            if pyrun is not None:
                rec["evidence"] = sorted(set(rec["evidence"]) | {"pyspy-stack"})
                if rec["call"] is None:
                    rec.update(
                        call=pyrun["call"],
                        call_start_ns=int(pyrun["start"]),
                        call_end_ns=int(pyrun["end"]),
                        call_site=pyrun["call_site"],
                    )
                rec["python_stack"] = stack_strings(py_frames[pyrun["source"]], pyrun["stack_id"])
            if stack_lib and "perf-callchain" not in rec["evidence"]:
                rec["evidence"].append("perf-callchain")
            if is_sys:
                rec["native_stack"] = stack_strings(perf_frames, r.stack_id)
                off_ns, state, runq = _offcpu_inside(
                    off_by_tid, int(r.tid), int(r.start), int(r.end)
                )
                rec.update(off_cpu_ns=off_ns, off_cpu_state=state, runq_ns=runq)
            else:
                q = (r.args or {}).get("runq_ns")
                rec.update(
                    syscall=None,
                    off_cpu_ns=int(r.dur),
                    off_cpu_state=r.name,
                    runq_ns=q,
                    native_stack=stack_strings(perf_frames, r.stack_id),
                )
            rec["on_cpu_ns"] = (
                rec["dur_ns"] - rec["off_cpu_ns"] if rec["off_cpu_ns"] is not None else None
            )
            rec["library"] = lib.name
            records.append(rec)
    elif len(py_runs):
        # py-spy alone: waiting runs in the library, the syscall from the libc leaf frame
        for r in py_runs[
            py_runs["blocking"] & (py_runs["end"] - py_runs["start"] >= min_block_ns)
        ].itertuples():
            calls = sorted(r.waits_in)
            records.append(
                {
                    "pid": int(r.pid),
                    "tid": int(r.tid),
                    "goid": None,
                    "thread": names.get(int(r.tid)),
                    "library": lib.name,
                    "call": r.call,
                    "call_start_ns": int(r.start),
                    "call_end_ns": int(r.end),
                    "syscall": calls[0] if calls else None,
                    "start_ns": int(r.start),
                    "end_ns": int(r.end),
                    "dur_ns": int(r.end - r.start),
                    "off_cpu_ns": None,
                    "off_cpu_state": None,
                    "evidence": ["pyspy-stack"],
                    "call_site": r.call_site,
                    "go_stack": [],
                    "native_stack": [],
                    "python_stack": stack_strings(py_frames[r.source], r.stack_id),
                    "on_cpu_ns": None,
                    "runq_ns": None,
                    "p_lost": None,
                    "restarts": None,
                    "source": r.source,
                }
            )
    blocking = pd.DataFrame(records, columns=COLUMNS + EXTRA)
    if len(blocking):
        blocking = blocking.sort_values(["start_ns", "tid"]).reset_index(drop=True)
    return blocking, lib_spans


def _py_run_for(runs: pd.DataFrame, tid: int, start: int, end: int, syscall: str | None):
    """The py-spy library run overlapping most of [start, end] on the thread, if any.

    For a syscall the run must be waiting in a libc wrapper or CPython socket wait that makes
    it (a poll run for a poll; see align.stack_waits): a run is only as fine as the sampling,
    and a stack can stay on screen across a gap in sampling while the thread already sleeps
    elsewhere (a decoy time.sleep).
    For off-CPU time outside syscalls the run must be running code of the library.
    """
    if runs.empty:
        return None
    r = runs[(runs["tid"] == tid) & (runs["start"] < end) & (runs["end"] > start)]
    if syscall is not None:
        makes = r["waits_in"].map(lambda waits: syscall in waits).astype(bool)
        r = r[r["blocking"].astype(bool) & makes]
    else:
        r = r[~r["blocking"].astype(bool)]
    if r.empty:
        return None
    ov = np.minimum(r["end"], end) - np.maximum(r["start"], start)
    best = ov.idxmax()
    if ov[best] < 0.5 * max(end - start, 1):
        return None
    return r.loc[best]


def thread_names(sources: list[SourceTables]) -> dict[int, str]:
    """OS thread id -> the first non-empty name any of *sources* gives it."""
    out: dict[int, str] = {}
    for s in sources:
        for tid, name in zip(s.threads["tid"], s.threads["name"], strict=True):
            if isinstance(name, str) and name and int(tid) not in out:
                out[int(tid)] = name
    return out


def _base_record(r, names: dict[int, str]) -> dict:
    args = r.args or {}
    return {
        "pid": int(r.pid),
        "tid": int(r.tid),
        "goid": None,
        "thread": names.get(int(r.tid)),
        "library": None,
        "call": None,
        "call_start_ns": None,
        "call_end_ns": None,
        "syscall": r.name,
        "start_ns": int(r.start),
        "end_ns": int(r.end),
        "dur_ns": int(r.end - r.start),
        "off_cpu_ns": None,
        "off_cpu_state": None,
        "evidence": [],
        "call_site": None,
        "go_stack": [],
        "native_stack": [],
        "python_stack": [],
        "on_cpu_ns": None,
        "runq_ns": None,
        "p_lost": None,
        "restarts": args.get("restarts", 0) if r.kind == "os.syscall" else None,
        "source": str(r.source),
    }
