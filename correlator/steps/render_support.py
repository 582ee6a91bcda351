"""Steps the renderers ask for, run when first asked (``Analysis.support``): every slice on
the reference clock, where each goroutine was created or first called the library, and which
syscall each library call and each waker's wakeup sits in. Analysis, not drawing: the
renderers only read what these add."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...parsers.model import concat_frames, with_all_columns
from ..align import to_reference
from ..frames import Frames
from ..joins import holding_span
from ..step import step
from ..tables import Tables


@step(reads={"sources": (), "alignments": ()}, adds={"aligned_slices": ("*", "ref_ts")})
def aligned_slices(t: Tables) -> dict:
    """Every source's slices with ``ref_ts`` on the reference clock (NA if unaligned); text
    columns stay categorical (a million "os.syscall" strings would otherwise be a million
    Python objects)."""
    parts = [
        to_reference(s.slices, t.alignments[s.meta.source]) for s in t.sources if len(s.slices)
    ]
    out = concat_frames(with_all_columns("slices", parts)) if parts else pd.DataFrame()
    return {"aligned_slices": out}


def _goids(col: pd.Series) -> np.ndarray:
    return pd.to_numeric(col, errors="coerce").fillna(-1).to_numpy(np.int64)


@step(
    reads={
        "sources": (),
        "calls": ("goid", "start", "call_site"),
        "blocking": ("goid", "start_ns", "call_site"),
    },
    adds={"goroutine_sites": ()},
)
def goroutine_sites(t: Tables) -> dict:
    """goid -> where it comes from in the code, for the goroutines that made library calls
    or have records: "created at F" (the first non-runtime frame of its creator's stack at
    GoCreate), else "first call at S" (the call site of its first library call or record)."""
    interest = set()
    for frame in (t.calls, t.blocking):
        if frame is not None and len(frame) and "goid" in frame.columns:
            interest |= set(_goids(frame["goid"]).tolist())
    interest.discard(-1)
    first = _first_call_sites(t)
    created = _creation_sites(t, interest)
    sites = {}
    for g in sorted(interest):
        if g in created:
            sites[g] = f"created at {created[g]}"
        elif g in first:
            sites[g] = f"first call at {first[g]}"
    return {"goroutine_sites": sites}


def _first_call_sites(t: Tables) -> dict[int, str]:
    """goid -> the call site of its first library call (else of its first record)."""
    sites: dict[int, str] = {}
    for frame, start_col in ((t.calls, "start"), (t.blocking, "start_ns")):
        if frame is None or not len(frame) or "call_site" not in frame.columns:
            continue
        if "goid" not in frame.columns:
            continue
        f = frame.assign(_g=_goids(frame["goid"]))
        f = f[f["_g"] >= 0].sort_values(start_col, kind="stable")
        first = f.groupby("_g", sort=False)["call_site"].first()
        for g, site in first.items():
            if int(g) not in sites and isinstance(site, str) and site:
                sites[int(g)] = site
    return sites


def _creation_sites(t: Tables, goids: set[int]) -> dict[int, str]:
    """goid -> the first non-runtime frame of the creator's stack at GoCreate (the Go trace's
    "created" runnable stretch carries it); goroutines there before the trace have none."""
    out: dict[int, str] = {}
    for src in t.sources:
        if src.meta.kind != "go-trace" or not len(src.slices) or not goids:
            continue
        s = src.slices
        made = s[
            (s["kind"] == "go.runnable").to_numpy()
            & (s["name"] == "created").to_numpy()
            & s["goid"].isin(list(goids)).to_numpy()
        ]
        if not len(made):
            continue
        frames = Frames(src)
        for g, sid in zip(made["goid"].astype("int64"), made["stack_id"], strict=True):
            lines = [f for f in frames.strings(sid) if not f.startswith("runtime.")]
            if lines and int(g) not in out:
                out[int(g)] = lines[0]
    return out


def _syscalls_on_threads(s: pd.DataFrame) -> pd.DataFrame:
    """The aligned syscalls on an OS thread: tid, start, end and their row in the slices."""
    if not len(s):
        return pd.DataFrame({k: np.zeros(0, np.int64) for k in ("tid", "start", "end", "row")})
    on = (s["kind"] == "os.syscall").to_numpy() & s["ref_ts"].notna().to_numpy()
    on &= (s["tid"] > 0).to_numpy()
    sc = s[on]
    start = sc["ref_ts"].astype("int64").to_numpy()
    return pd.DataFrame(
        {
            "tid": sc["tid"].to_numpy(np.int64),
            "start": start,
            "end": start + sc["dur"].to_numpy(np.int64),
            "row": sc.index.to_numpy(),
        }
    )


@step(
    reads={
        "aligned_slices": ("kind", "tid", "ref_ts", "dur"),
        "calls": ("tid", "start", "end"),
        "blocking": ("waker",),
    },
    adds={"call_of_syscall": (), "waker_syscall": ()},
)
def syscall_joins(t: Tables) -> dict:
    """``call_of_syscall``: aligned-slice row of each syscall inside a library call -> the
    call's row; ``waker_syscall``: record row -> the aligned-slice row of the waker's syscall
    that contains the wakeup (None: the wakeup was outside any recorded syscall), for the
    records whose waker is a thread (not an interrupt)."""
    sc = _syscalls_on_threads(t.aligned_slices)
    calls = t.calls
    call_of: dict[int, int] = {}
    if len(sc) and len(calls):
        span = holding_span(
            sc["tid"].to_numpy(), sc["start"].to_numpy(), sc["end"].to_numpy(), calls, 0
        )
        inside = span >= 0
        rows = sc["row"].to_numpy()[inside].tolist()
        call_of = dict(zip(rows, span[inside].tolist(), strict=True))
    return {"call_of_syscall": call_of, "waker_syscall": _waker_syscalls(t.blocking, sc)}


def _waker_syscalls(blocking: pd.DataFrame | None, sc: pd.DataFrame) -> dict[int, int | None]:
    out: dict[int, int | None] = {}
    if blocking is None or "waker" not in blocking or not len(blocking):
        return out
    sc = sc.sort_values(["tid", "start"], kind="stable")
    by_tid = {}
    tids = sc["tid"].to_numpy(np.int64)
    starts, ends, rows = (sc[k].to_numpy(np.int64) for k in ("start", "end", "row"))
    cut = np.flatnonzero(np.diff(tids)) + 1
    for lo, hi in zip(np.r_[0, cut], np.r_[cut, len(tids)], strict=True):
        if hi > lo:
            by_tid[int(tids[lo])] = (starts[lo:hi], ends[lo:hi], rows[lo:hi])
    for idx, wk in zip(blocking.index, blocking["waker"], strict=True):
        if not isinstance(wk, dict) or not wk.get("tid") or wk.get("wakeup_ns") is None:
            continue
        tid, at = int(wk["tid"]), int(wk["wakeup_ns"])
        row = None
        if tid in by_tid:  # the waker's syscall containing the wakeup, if any
            st, en, rr = by_tid[tid]
            j = int(np.searchsorted(st, at, "right")) - 1
            if j >= 0 and en[j] >= at:
                row = int(rr[j])
        out[int(idx)] = row
    return out
