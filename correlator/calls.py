"""Native-call spans: the intervals during which a thread was inside a library call.

All times here are on the reference clock (``start``/``end`` in ns). One DataFrame per kind:

    go_spans        every cgo call of the Go trace (go.syscall slices whose top frame is a
                    cgo wrapper), with the library when the wrapper name says so (go-stack /
                    user-pattern)
    library_spans   the go_spans that are library calls: named so, or proven by a perf
                    callchain through the library inside them (perf-callchain; DWARF
                    callchains reach libhiredis under a C shim whose name says nothing)
    library_stacks  perf stacks whose callchain passes through the library (C programs)
    python_runs     py-spy runs whose stack passes through the library's Python read path
                    or its native module (pyspy-stack)
"""

from __future__ import annotations

import fnmatch
import re

import numpy as np
import pandas as pd

from ..parsers.model import SourceTables, column
from ..parsers.waits import stack_waits
from .frames import Frames, format_frame
from .joins import contained_in
from .libraries import Library, cgo_name

_CLOSURE = re.compile(r"\.func\d+(?:\.\d+)*$")


def go_spans(go: SourceTables, offset: int, lib: Library) -> pd.DataFrame:
    s = go.slices[go.slices["kind"] == "go.syscall"]
    name = s["name"].astype(str)
    call = name.map(cgo_name)
    s = s[call.notna()]
    match = s["name"].astype(str).map(lib.match_cgo)
    frames = Frames(go)
    # one call site per distinct stack (a busy service has millions of calls, few stacks)
    sites = {sid: go_call_site(frames, sid) for sid in s["stack_id"].dropna().unique()}
    site = [sites.get(sid) if not pd.isna(sid) else None for sid in s["stack_id"]]
    return pd.DataFrame(
        {
            "source": s["source"].astype(str).to_numpy(),
            "pid": s["pid"].to_numpy(),
            "tid": s["tid"].to_numpy(),
            "goid": s["goid"].to_numpy(),
            "start": (s["ts"] + offset).to_numpy(),
            "end": (s["ts"] + s["dur"] + offset).to_numpy(),
            "call": call[call.notna()].to_numpy(),
            "library": np.where(match.notna(), lib.name, None),
            "evidence": [
                ["go-stack"] if m == "preset" else ["user-pattern"] if m == "user" else []
                for m in match
            ],
            "p_lost": column(s, "slices", "p_lost")
            .astype(object)
            .where(column(s, "slices", "p_lost").notna(), None)
            .to_numpy(),
            "stack_id": s["stack_id"].to_numpy(),
            "call_site": site,
        }
    )


def go_call_site(frames: Frames, stack_id) -> str | None:
    """First Go frame that is not the cgo wrapper or the runtime: who made the call."""
    for r in frames.get(stack_id).itertuples():
        fn = str(r.function)
        if "_Cfunc_" in fn or "_C2func_" in fn or "_cgo_" in fn or fn.startswith("runtime."):
            continue
        if _CLOSURE.search(fn):  # a closure inside the caller: keep looking
            continue
        return format_frame(r)
    return None


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


def library_spans(
    spans: pd.DataFrame,
    perf_syscalls: pd.DataFrame | None,
    lib_stacks: dict[int, str],
    lib: Library,
    tolerance: int,
) -> pd.DataFrame:
    """The cgo spans that are library calls. A span whose wrapper name does not say so is
    one when a perf syscall inside it (same thread) has a library frame in its callchain;
    matched spans gain that evidence."""
    spans = spans.copy()
    if perf_syscalls is not None and len(perf_syscalls) and len(spans):
        sid = perf_syscalls["stack_id"]
        through = sid.notna().to_numpy() & np.isin(
            sid.fillna(0).astype("int64").to_numpy(), list(lib_stacks)
        )
        hit = contained_in(perf_syscalls.loc[through, ["tid", "start", "end"]], spans, tolerance)
        idx = np.unique(hit["span"].dropna().astype(int).to_numpy())
        if len(idx):
            ev = spans["evidence"].to_numpy(dtype=object, copy=True)
            ev[idx] = [e if "perf-callchain" in e else [*e, "perf-callchain"] for e in ev[idx]]
            spans["evidence"] = ev
            lib_col = spans["library"].to_numpy(dtype=object, copy=True)
            lib_col[idx] = lib.name
            spans["library"] = lib_col
    if not len(spans):
        return spans
    return spans[spans["library"].notna()].reset_index(drop=True)


def python_runs(py: SourceTables, offset: int, lib: Library) -> pd.DataFrame:
    s = py.slices[py.slices["kind"] == "py.sample"]
    frames = Frames(py)
    info = {}
    for sid, g in frames.items():
        hits = [
            lib.match_python_frame(
                str(r.function),
                r.file if isinstance(r.file, str) else None,
                r.module if isinstance(r.module, str) else None,
                str(r.frame_kind),
            )
            for r in g.itertuples()
        ]
        if not any(hits):
            continue
        rows = list(g.itertuples())
        outer = max(i for i, h in enumerate(hits) if h)  # leaf first: the outermost hit
        site = next(
            (
                format_frame(r)
                for r in rows[outer + 1 :]
                if str(r.frame_kind) == "python"
                and not lib.in_client_package(r.file if isinstance(r.file, str) else None)
            ),
            None,
        )
        info[sid] = (
            str(rows[outer].function),
            site,
            frozenset(stack_waits([str(r.function) for r in rows])),
        )
    keep = s["stack_id"].map(lambda x: not pd.isna(x) and int(x) in info)
    s = s[keep.astype(bool)]
    sids = [int(x) for x in s["stack_id"]]
    return pd.DataFrame(
        {
            "source": s["source"].astype(str).to_numpy(),
            "pid": s["pid"].to_numpy(),
            "tid": s["tid"].to_numpy(),
            "start": (s["ts"] + offset).to_numpy(),
            "end": (s["ts"] + s["dur"] + offset).to_numpy(),
            "call": [info[x][0] for x in sids],
            "call_site": [info[x][1] for x in sids],
            "stack_id": sids,
            "blocking": column(s, "slices", "blocking").fillna(False).to_numpy(bool),
            "leaf": s["name"].astype(str).to_numpy(),
            "waits_in": [info[x][2] for x in sids],
        }
    )
