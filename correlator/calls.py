"""Native-call spans: the intervals during which a thread was inside a library call.

All times here are on the reference clock (``start``/``end`` in ns). One DataFrame per kind:

    go_spans        every cgo call of the Go trace (go.syscall slices whose top frame is a
                    cgo wrapper), with the library when the wrapper name says so (go-stack /
                    user-pattern)
    library_spans   the go_spans that are library calls: named so, or proven by a perf
                    callchain through the library inside them (perf-callchain; DWARF
                    callchains reach libhiredis under a C shim whose name says nothing)
    library_stacks  perf stacks whose callchain passes through the library (C programs)
    runtime_stacks  perf stacks of syscalls the Go runtime made itself
    caller_stacks   perf stacks of syscalls a cgo call's own C code made before (or after)
                    entering the library: the whole C part is seen, and none of it is the
                    library's
    python_runs     py-spy runs whose stack passes through the library's Python read path
                    or its native module (pyspy-stack)
"""

from __future__ import annotations

import fnmatch
import re
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..parsers.columns import pair_searchsorted, str_values
from ..parsers.model import SourceTables, column
from ..parsers.waits import CPYTHON_GIL_FUNCTIONS, is_gil_wait, normalise, stack_waits
from .frames import Frames, format_frame
from .libraries import Library, cgo_name

_CLOSURE = re.compile(r"\.func\d+(?:\.\d+)*$")


def go_spans(go: SourceTables, offset: int, lib: Library) -> pd.DataFrame:
    """Every cgo call of a Go trace, on the reference clock.

    Columns: source, pid, tid, goid, start, end, call (the C function's name), match
    ("preset" | "user" | NA: does the wrapper's name say it calls the library), p_lost,
    p_wait_ns (after a call that lost its P: how long the goroutine then waited, runnable,
    until it ran again), stack_id, call_site (the Go caller). A busy service makes millions
    of cgo calls through a few wrappers from a few stacks, so names and call sites are worked
    out per distinct value (categoricals), never per call.
    """
    sl = go.slices
    syscall = (sl["kind"] == "go.syscall").to_numpy()
    names = sl["name"]
    if not isinstance(names.dtype, pd.CategoricalDtype):
        names = names.where(syscall).astype("category")  # categories: the syscalls' names
    cats = [str(c) for c in names.cat.categories]
    call_of = [cgo_name(c) for c in cats]
    codes = names.cat.codes.to_numpy()
    # the cgo calls, found by name code over the whole table and taken once, column by
    # column: a million-row frame filtered whole twice costs more than the rest together
    rows = np.flatnonzero(syscall & np.array([c is not None for c in call_of] + [False])[codes])
    codes = codes[rows]
    call_cats = sorted({c for c in call_of if c is not None})
    call_code = np.array([call_cats.index(c) if c else -1 for c in call_of], np.int32)
    match_cats = ["preset", "user"]
    match_code = np.array(
        [match_cats.index(m) if m else -1 for m in (lib.match_cgo(c) for c in cats)], np.int32
    )
    frames = Frames(go)
    stack_id = sl["stack_id"].array[rows]
    uniq, inv = _small_unique(pd.Series(stack_id).fillna(0).astype("int64").to_numpy())
    site_of = [go_call_site(frames, x) if x else None for x in uniq.tolist()]
    site_cats = sorted({x for x in site_of if x is not None})
    site_code = np.array([site_cats.index(x) if x else -1 for x in site_of], np.int32)[inv]
    ts = sl["ts"].to_numpy()[rows]
    start = ts + offset
    end = ts + sl["dur"].to_numpy()[rows] + offset
    goid = sl["goid"].array[rows].to_numpy()
    return pd.DataFrame(
        {
            "source": sl["source"].array[rows],
            "pid": sl["pid"].to_numpy()[rows],
            "tid": sl["tid"].to_numpy()[rows],
            "goid": goid,
            "start": start,
            "end": end,
            "call": pd.Categorical.from_codes(call_code[codes], call_cats),
            "match": pd.Categorical.from_codes(match_code[codes], match_cats),
            "p_lost": column(sl, "slices", "p_lost").array[rows],
            "p_wait_ns": _p_waits(sl, goid, end - offset),
            "stack_id": stack_id,
            "call_site": pd.Categorical.from_codes(site_code, site_cats),
        },
        copy=False,  # the arrays are made here: no consolidated copy of a million rows
    )


def _small_unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` for non-negative ids (stack ids): by
    counting when their range is small, instead of sorting a million values."""
    if not len(values) or values.min() < 0 or values.max() > 4 * len(values) + (1 << 16):
        uniq, inv = np.unique(values, return_inverse=True)
        return uniq, inv.reshape(-1)
    uniq = np.flatnonzero(np.bincount(values))
    lut = np.zeros(int(values.max()) + 1, np.int64)
    lut[uniq] = np.arange(len(uniq))
    return uniq, lut[values]


def _p_waits(slices: pd.DataFrame, goid: np.ndarray, end_ts: np.ndarray) -> np.ndarray:
    """For each call ending at *end_ts* (trace clock), the runnable stretch that follows it
    when it returned without its P (0 otherwise): the wait to get a P back."""
    rows = np.flatnonzero(
        (slices["kind"] == "go.runnable").to_numpy()
        & (slices["name"] == "syscall returned without its P").to_numpy()
    )
    r = slices[["goid", "ts", "dur"]].iloc[rows]  # the columns read, not the whole rows
    out = np.zeros(len(goid), np.int64)
    if not len(r) or not len(goid):
        return out
    r_goid = r["goid"].astype("Int64")
    if goid.dtype.kind == "i" and not r_goid.isna().any():
        return _p_waits_by_search(goid, end_ts, r_goid.to_numpy(np.int64), r, out)
    g = pd.DataFrame({"goid": goid, "ts": end_ts, "i": np.arange(len(goid))})
    g["goid"] = g["goid"].astype("Int64")
    w = pd.DataFrame(
        {
            "goid": r_goid.to_numpy(),
            "ts": r["ts"].to_numpy(),
            "dur": r["dur"].to_numpy(),
        }
    )
    m = g.merge(w.drop_duplicates(["goid", "ts"]), on=["goid", "ts"])
    out[m["i"].to_numpy()] = m["dur"].to_numpy()
    return out


def _p_waits_by_search(
    goid: np.ndarray, end_ts: np.ndarray, r_goid: np.ndarray, r: pd.DataFrame, out: np.ndarray
) -> np.ndarray:
    """_p_waits without nulls: each call looks its (goid, end) up among the few runnable
    stretches' (goid, start), sorted once (the first stretch of equal keys, as
    ``drop_duplicates`` keeps it), instead of a merge that hashes every call."""
    r_ts, r_dur = r["ts"].to_numpy(np.int64), r["dur"].to_numpy(np.int64)
    o = np.lexsort((r_ts, r_goid))  # stable: equal keys stay in table order
    k_goid, k_ts = r_goid[o], r_ts[o]
    first = np.r_[True, (k_goid[1:] != k_goid[:-1]) | (k_ts[1:] != k_ts[:-1])]
    k_goid, k_ts, k_dur = k_goid[first], k_ts[first], r_dur[o][first]
    at = np.minimum(pair_searchsorted(k_goid, k_ts, goid, end_ts), len(k_ts) - 1)
    hit = (k_goid[at] == goid) & (k_ts[at] == end_ts)
    out[hit] = k_dur[at[hit]]
    return out


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
    outer = _outermost_library_frames(src, lib)
    if outer is None:
        return {}
    return dict(zip(outer["stack_id"].astype(int), outer["function"].astype(str), strict=True))


def library_callers(src: SourceTables, lib: Library) -> dict[int, str]:
    """perf stack id -> the frame that called the library (the first frame outside it,
    above its outermost frame), formatted; a frame no symbol names as 'dso+0xoffset'. The
    call site of a C program's record, where no Go or Python stack names one."""
    outer = _outermost_library_frames(src, lib)
    if outer is None:
        return {}
    st = src.stacks
    above = st.merge(
        outer[["stack_id", "depth"]].assign(depth=outer["depth"] + 1), on=["stack_id", "depth"]
    )
    above = above[(above["frame_kind"] != "kernel").to_numpy()]
    return {int(r.stack_id): format_frame(r) for r in above.itertuples()}


def _outermost_library_frames(src: SourceTables, lib: Library) -> pd.DataFrame | None:
    """The outermost library frame of each perf stack through the library (its row)."""
    st = src.stacks
    if st.empty:
        return None
    h = st[_library_rows(st, lib)]
    if h.empty:
        return None
    return h.loc[h.groupby("stack_id")["depth"].idxmax()]  # leaf first: deepest = outermost


def _library_rows(frames: pd.DataFrame, lib: Library) -> np.ndarray:
    """Which frame rows are the library's: in its DSO, or named like its functions. Matched
    once per distinct module and function (a few thousand), not per frame row."""
    m_code, module = _distinct(frames["module"])
    module = module.astype(object).where(module.notna(), "").astype(str)
    f_code, function = _distinct(frames["function"])
    function = function.astype(str)
    m_hit, f_hit = np.zeros(len(module), bool), np.zeros(len(function), bool)
    for sub in lib.dso_substrings:
        m_hit |= module.str.contains(sub, regex=False).to_numpy()
    for glob in lib.c_function_globs:
        f_hit |= function.str.match(fnmatch.translate(glob)).to_numpy()
    return m_hit[m_code] | f_hit[f_code]


def _distinct(col: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """(code of each row, the distinct values, a null among them), for elementwise work
    done once per distinct value."""
    codes, uniques = pd.factorize(col, use_na_sentinel=False)
    return codes, pd.Series(uniques)


#: Go runtime packages: a syscall whose first frame above the kernel is one of these was made
#: by the runtime itself (futex, osyield, nanosleep in sysmon, the trace writer ...)
RUNTIME_PREFIXES = ("runtime.", "runtime/internal/", "internal/runtime/")


def runtime_stacks(src: SourceTables) -> set[int]:
    """perf stack ids whose first user frame (the first above the kernel) is a Go runtime
    function: the syscall or switch-out came from the runtime, not from C code."""
    st = src.stacks
    if st.empty:
        return set()
    user = st[(st["frame_kind"] != "kernel").to_numpy()]
    if user.empty:
        return set()
    first = user.loc[user.groupby("stack_id")["depth"].idxmin()]
    fn = first["function"].astype(str)
    hit = np.zeros(len(first), bool)
    for p in RUNTIME_PREFIXES:
        hit |= fn.str.startswith(p).to_numpy()
    return set(first.loc[hit, "stack_id"].astype(int).tolist())


def gil_stacks(src: SourceTables) -> set[int]:
    """perf stack ids of the interpreter waiting for the GIL: a CPython GIL function
    (``take_gil``, ``PyEval_RestoreThread``...) among the user frames (DWARF callchains;
    frame-pointer ones stop in libc, where a GIL wait and a lock wait look the same)."""
    st = src.stacks
    if st.empty:
        return set()
    user = st[(st["frame_kind"] != "kernel").to_numpy()]
    codes, names = _distinct(user["function"])
    hit = np.array([normalise(str(n)) in CPYTHON_GIL_FUNCTIONS for n in names], bool)
    return set(user["stack_id"].to_numpy(np.int64)[hit[codes]].tolist())


#: where a cgo call enters C: the frame above the C code of every cgo call (on the g0 stack)
CGO_ENTRY = "runtime.asmcgocall"


def caller_stacks(src: SourceTables, lib: Library) -> set[int]:
    """perf stack ids that put a syscall or switch in the caller's own C code inside a cgo
    call (a wrapper's gettid, lock or log before it calls the library). The callchain must
    show the whole C part: from the first user frame up to ``runtime.asmcgocall`` every frame
    is named (an unnamed one could be a statically linked library's), none is the library's
    (its DSO or function names), and the first is not the Go runtime's. Frame-pointer chains
    that stop in libc, and stripped binaries, prove nothing and are left out."""
    st = src.stacks
    if st.empty:
        return set()
    user = st[(st["frame_kind"] != "kernel").to_numpy()].sort_values(["stack_id", "depth"])
    if user.empty:
        return set()
    f_code, function = _distinct(user["function"])
    function = function.astype(object).where(function.notna(), "[unknown]").astype(str)
    entry_f = function.str.startswith(CGO_ENTRY).to_numpy()
    runtime_f = np.zeros(len(function), bool)
    for p in RUNTIME_PREFIXES:
        runtime_f |= function.str.startswith(p).to_numpy()
    unnamed_f = function.str.startswith("[unknown]").to_numpy() | (function == "").to_numpy()
    sid = user["stack_id"].to_numpy(np.int64)
    entry = entry_f[f_code]
    bad = _library_rows(user, lib) | unnamed_f[f_code]
    start = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])  # each stack's first user frame
    # per stack: the position of its first cgo entry frame, and of its first bad frame
    pos = np.arange(len(sid)) - np.repeat(start, np.diff(np.r_[start, len(sid)]))
    big = np.iinfo(np.int64).max
    first_entry = np.minimum.reduceat(np.where(entry, pos, big), start)
    first_bad = np.minimum.reduceat(np.where(bad, pos, big), start)
    leaf_runtime = runtime_f[f_code][start]
    ok = (first_entry > 0) & (first_entry < big) & (first_bad > first_entry) & ~leaf_runtime
    return set(sid[start][ok].tolist())


def library_spans(
    spans: pd.DataFrame, by_chain: np.ndarray, by_fd: np.ndarray, lib: Library
) -> pd.DataFrame:
    """The cgo spans that are calls into the library, with ``library`` and ``evidence``
    ("go-stack", "user-pattern", "perf-callchain", "fd", comma-joined). A span whose wrapper
    name does not say so (a C shim) is one when a perf syscall inside it on its thread has a
    library frame in its callchain (*by_chain*: DWARF callchains reach libhiredis), or works
    on a connection the library's calls used on that thread (*by_fd*)."""
    if not len(spans):
        return spans
    match = spans["match"].cat.codes.to_numpy()  # 0 preset, 1 user, -1 neither
    by_fd = by_fd & ~by_chain & (match < 0)  # evidence only where nothing else says so
    keep = (match >= 0) | by_chain | by_fd
    code = (match + 1) + 3 * by_chain.astype(int) + 6 * by_fd.astype(int)
    cats = [  # index: match + 1 + 3 * (chain, or fd)
        ",".join(x for x in (m, e) if x)
        for e in ("", "perf-callchain", "fd")
        for m in ("", "go-stack", "user-pattern")
    ]
    evidence = pd.Categorical.from_codes(code[keep], cats)
    out = spans[keep].drop(columns=["match"]).reset_index(drop=True)
    out.insert(out.columns.get_loc("call") + 1, "library", pd.Categorical([lib.name] * len(out)))
    out.insert(out.columns.get_loc("library") + 1, "evidence", evidence)
    return out


#: what a socket read of a Python client can wait in, when no native frame says which
SOCKET_WAITS = frozenset({"poll", "ppoll", "select", "recvfrom", "recvmsg", "read"})


def _method(function) -> str:
    return str(function).rsplit(".", 1)[-1]


def python_runs(py: SourceTables, offset: int, lib: Library) -> pd.DataFrame:
    """py-spy runs in the library's Python read path or its native module, with the call,
    the call site (the first frame outside the client package) and the syscalls the run
    waits in. Recorded without native frames (``py-spy --nonblocking`` cannot take them),
    a run whose leaf is one of the client's socket reads is taken as waiting in a socket
    wait: py-spy then cannot show the libc frame that would say so. That is decided per
    stack, never for the whole recording: one torn frame of ``--nonblocking`` must not turn
    the inference off everywhere. Runs elsewhere in the client that wait for the GIL are
    kept too (``read_path`` False): they vouch for the interpreter's time, nothing else."""
    s = py.slices[py.slices["kind"] == "py.sample"]
    info = _library_stacks_of_python(Frames(py), lib)
    keep = s["stack_id"].map(lambda x: not pd.isna(x) and int(x) in info)
    s = s[keep.astype(bool)]
    sids = [int(x) for x in s["stack_id"]]
    return pd.DataFrame(
        {
            "source": str_values(s["source"]),
            "pid": s["pid"].to_numpy(),
            "tid": s["tid"].to_numpy(),
            "start": (s["ts"] + offset).to_numpy(),
            "end": (s["ts"] + s["dur"] + offset).to_numpy(),
            "call": [info[x].call for x in sids],
            "call_site": [info[x].site for x in sids],
            "stack_id": sids,
            "blocking": column(s, "slices", "blocking").fillna(False).to_numpy(bool)
            | np.array([info[x].leaf_read for x in sids], bool),
            "leaf": str_values(s["name"]),
            "waits_in": [info[x].waits_in for x in sids],
            "gil_wait": np.array([info[x].gil_wait for x in sids], bool),
            "read_path": np.array([info[x].read_path for x in sids], bool),
        }
    )


class _PyStack(NamedTuple):
    """What a py-spy stack through the client says (``_library_stacks_of_python``)."""

    call: str  # the outermost library (or client) frame's function
    site: str | None  # the first Python frame outside the client package
    waits_in: frozenset[str]  # the syscalls it waits in
    leaf_read: bool  # no native frames, the leaf one of the client's socket reads
    gil_wait: bool  # its native frames wait for the GIL
    read_path: bool  # through the library's read path or native module (else: client code)


def _library_stacks_of_python(frames: Frames, lib: Library) -> dict[int, _PyStack]:
    """py-spy stack id -> _PyStack, for the stacks through the library: the outermost
    library frame, the first Python frame outside the client package, and the waits of its
    native frames (or, with none, a socket wait when the leaf is one of the client's reads).
    Also the stacks elsewhere in the client package that wait for the GIL (``read_path``
    False): a call slowed by the interpreter, not the socket, before or after its read."""
    info = {}
    for sid, g in frames.items():
        rows = list(g.itertuples())
        files = [r.file if isinstance(r.file, str) else None for r in rows]
        hits = [
            lib.match_python_frame(
                str(r.function),
                f,
                r.module if isinstance(r.module, str) else None,
                str(r.frame_kind),
            )
            for r, f in zip(rows, files, strict=True)
        ]
        natives = [str(r.function) for r in rows if str(r.frame_kind) == "c"]
        gil = bool(natives) and is_gil_wait(natives)
        if not any(hits):
            hits = [gil and lib.in_client_package(f) for f in files]
            if not any(hits):
                continue
            read_path = False
        else:
            read_path = True
        outer = max(i for i, h in enumerate(hits) if h)  # leaf first: the outermost hit
        site = next(
            (
                format_frame(r)
                for r, f in zip(rows[outer + 1 :], files[outer + 1 :], strict=True)
                if str(r.frame_kind) == "python" and not lib.in_client_package(f)
            ),
            None,
        )
        waits = stack_waits([str(r.function) for r in rows])
        leaf_read = not natives and _method(rows[0].function) in lib.python_wait_functions
        info[sid] = _PyStack(
            str(rows[outer].function),
            site,
            frozenset(waits or (SOCKET_WAITS if leaf_read else ())),
            leaf_read,
            gil,
            read_path,
        )
    return info
