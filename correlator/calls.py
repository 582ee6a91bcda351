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
    """Every cgo call of a Go trace, on the reference clock.

    Columns: source, pid, tid, goid, start, end, call (the C function's name), match
    ("preset" | "user" | NA: does the wrapper's name say it calls the library), p_lost,
    stack_id, call_site (the Go caller). A busy service makes millions of cgo calls through a
    few wrappers from a few stacks, so names and call sites are worked out per distinct
    value (categoricals), never per call.
    """
    sl = go.slices
    s = sl[(sl["kind"] == "go.syscall").to_numpy()]
    names = s["name"].astype("category")
    cats = [str(c) for c in names.cat.categories]
    call_of = [cgo_name(c) for c in cats]
    codes = names.cat.codes.to_numpy()
    is_cgo = np.array([c is not None for c in call_of] + [False], bool)[codes]
    s, codes = s[is_cgo], codes[is_cgo]
    call_cats = sorted({c for c in call_of if c is not None})
    call_code = np.array([call_cats.index(c) if c else -1 for c in call_of], np.int32)
    match_cats = ["preset", "user"]
    match_code = np.array(
        [match_cats.index(m) if m else -1 for m in (lib.match_cgo(c) for c in cats)], np.int32
    )
    frames = Frames(go)
    sid = s["stack_id"].fillna(0).astype("int64").to_numpy()
    uniq, inv = np.unique(sid, return_inverse=True)
    site_of = [go_call_site(frames, x) if x else None for x in uniq.tolist()]
    site_cats = sorted({x for x in site_of if x is not None})
    site_code = np.array([site_cats.index(x) if x else -1 for x in site_of], np.int32)[inv]
    return pd.DataFrame(
        {
            "source": s["source"].array,
            "pid": s["pid"].to_numpy(),
            "tid": s["tid"].to_numpy(),
            "goid": s["goid"].to_numpy(),
            "start": (s["ts"] + offset).to_numpy(),
            "end": (s["ts"] + s["dur"] + offset).to_numpy(),
            "call": pd.Categorical.from_codes(call_code[codes], call_cats),
            "match": pd.Categorical.from_codes(match_code[codes], match_cats),
            "p_lost": column(s, "slices", "p_lost").array,
            "stack_id": s["stack_id"].array,
            "call_site": pd.Categorical.from_codes(site_code, site_cats),
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
    """The cgo spans that are calls into the library, with ``library`` and ``evidence``
    ("go-stack", "user-pattern", "perf-callchain", comma-joined). A span whose wrapper name
    does not say so is one when a perf syscall inside it (same thread) has a library frame
    in its callchain (DWARF callchains reach libhiredis under a C shim)."""
    if not len(spans):
        return spans
    proven = np.zeros(len(spans), bool)
    if perf_syscalls is not None and len(perf_syscalls):
        sid = perf_syscalls["stack_id"]
        through = sid.notna().to_numpy() & np.isin(
            sid.fillna(0).astype("int64").to_numpy(), list(lib_stacks)
        )
        hit = contained_in(perf_syscalls.loc[through, ["tid", "start", "end"]], spans, tolerance)
        proven[np.unique(hit["span"].dropna().astype(int).to_numpy())] = True
    match = spans["match"].cat.codes.to_numpy()  # 0 preset, 1 user, -1 neither
    keep = (match >= 0) | proven
    evidence = pd.Categorical.from_codes(
        (match + 1 + 3 * proven)[keep],
        [
            "",
            "go-stack",
            "user-pattern",
            "perf-callchain",
            "go-stack,perf-callchain",
            "user-pattern,perf-callchain",
        ],
    )
    out = spans[keep].drop(columns=["match"]).reset_index(drop=True)
    out.insert(out.columns.get_loc("call") + 1, "library", pd.Categorical([lib.name] * len(out)))
    out.insert(out.columns.get_loc("library") + 1, "evidence", evidence)
    return out


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
