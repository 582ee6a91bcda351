"""Aggregates of the blocking records: by call site, syscall, thread, goroutine; and how many
threads were inside library calls over time (cgo thread growth under a slow Redis)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .wakers import by_waker

MAX_SERIES_POINTS = 400


def _group(b: pd.DataFrame, key, label) -> list[dict]:
    if b.empty:
        return []
    g = b.groupby(key, dropna=False)["dur_ns"]
    out = pd.DataFrame(
        {
            "count": g.size(),
            "total_ns": g.sum(),
            "max_ns": g.max(),
            "p50_ns": g.median().round().astype("int64"),
        }
    )
    out = out.sort_values("total_ns", ascending=False)
    rows = []
    for k, r in out.iterrows():
        k = k if isinstance(k, tuple) else (k,)
        entry = label(*k)
        entry.update({c: int(r[c]) for c in ("count", "total_ns", "max_ns", "p50_ns")})
        rows.append(entry)
    return rows


def _none(x):
    return None if x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NA else x


def threads_in_calls(calls: pd.DataFrame) -> dict:
    """Concurrency of library calls (one per thread at a time): max and a series of changes."""
    if calls.empty:
        return {"calls": 0, "max_threads": 0, "series": []}
    t = np.concatenate([calls["start"].to_numpy(), calls["end"].to_numpy()])
    d = np.concatenate([np.ones(len(calls), int), -np.ones(len(calls), int)])
    o = np.lexsort((d, t))  # ends before starts at the same instant
    level = np.cumsum(d[o])
    series = list(zip(t[o].tolist(), level.tolist(), strict=True))
    if len(series) > MAX_SERIES_POINTS:  # keep the peaks when thinning
        step = len(series) / MAX_SERIES_POINTS
        keep = sorted({int(i * step) for i in range(MAX_SERIES_POINTS)} | {int(np.argmax(level))})
        series = [series[i] for i in keep]
    return {
        "calls": int(len(calls)),
        "max_threads": int(level.max()),
        "threads": int(calls["tid"].nunique()),
        "series": [[a, b] for a, b in series],
    }


def latency_split(calls: pd.DataFrame) -> dict:
    """Where the time of the library calls went, summed over the calls: blocked in the
    library, in the Go runtime (inside the call, or its thread waiting for a P after it), and
    the goroutines' wait for a P after their C call returned."""
    cols = ("library_blocked_ns", "runtime_ns", "p_wait_ns")
    if calls.empty or not set(cols) <= set(calls.columns):
        return {c: 0 for c in cols} | {"calls_losing_p": 0}
    out = {c: int(calls[c].sum()) for c in cols}
    extra = ("caller_ns", "python_runtime_ns", "tracer_ns", "runq_ns", "short_wait_ns", "on_cpu_ns")
    for c in extra:  # call_split's beyond the three
        if c in calls.columns:
            out[c] = int(calls[c].sum())
    out["calls_losing_p"] = int((calls["p_wait_ns"] > 0).sum())
    return out


def apart(all_b: pd.DataFrame, where: str) -> dict:
    """The records inside library calls that are not the library's time, of one kind
    (``in``): their count, time and syscalls."""
    x = all_b[all_b["in"] == where] if len(all_b) else all_b
    if len(x):
        x = x.assign(sys=x["syscall"].fillna("(off-CPU outside a syscall)"))
    return {
        "records": int(len(x)),
        "ns": int(x["dur_ns"].sum()) if len(x) else 0,
        "by_syscall": _group(x, ["sys"], lambda s: {"syscall": s}),
    }


def summarise(
    blocking: pd.DataFrame, calls: pd.DataFrame, min_block_ns: int, tracer_stops: dict | None = None
) -> dict:
    """Aggregates of the records. The by_* groupings count time blocked in the library only;
    the time inside library calls that is not the library's is reported apart: the Go
    runtime's (``runtime``), the Python interpreter's (``python_runtime``: the GIL), the
    caller's own code (``caller``) and a tracer's stops (``tracer``); ``tracer_stops``: the
    tracer's stops over the whole capture, inside calls or not."""
    all_b = blocking
    b = all_b[all_b["in"] == "library"].copy() if len(all_b) else all_b.copy()
    if len(b):
        b["site"] = b["call_site"].fillna(b["call"])
        b["sys"] = b["syscall"].fillna("(off-CPU outside a syscall)")
    ev = {}
    for e in b["evidence"] if len(b) else []:
        for x in e:
            ev[x] = ev.get(x, 0) + 1
    censored: dict[str, int] = {}
    for c in all_b["censored"] if len(all_b) else []:
        if c:
            censored[c["reason"]] = censored.get(c["reason"], 0) + 1
    return {
        "min_block_ns": min_block_ns,
        "records": int(len(b)),
        "blocked_ns": int(b["dur_ns"].sum()) if len(b) else 0,
        "off_cpu_ns": int(b["off_cpu_ns"].dropna().sum()) if len(b) else 0,
        "tracer_stop_ns": int(all_b["tracer_stop_ns"].fillna(0).sum()) if len(all_b) else 0,
        "threads": int(b["tid"].nunique()) if len(b) else 0,
        "goroutines": int(b["goid"].dropna().nunique()) if len(b) else 0,
        "p_lost": int((b["p_lost"] == True).sum()) if len(b) else 0,  # noqa: E712
        "evidence": ev,
        "censored": censored,
        "runtime": apart(all_b, "go-runtime"),
        "python_runtime": apart(all_b, "python-runtime"),
        "caller": apart(all_b, "caller"),
        "tracer": apart(all_b, "tracer"),
        "tracer_stops": tracer_stops or {"stops": 0, "ns": 0, "threads": 0},
        "stack_stops": _stack_stops(b),
        "by_call_site": _group(b, ["site"], lambda s: {"call_site": _none(s)}),
        "by_syscall": _group(b, ["sys"], lambda s: {"syscall": s}),
        "by_thread": _group(
            b,
            ["pid", "tid", "thread"],
            lambda p, t, n: {"pid": int(p), "tid": int(t), "thread": _none(n)},
        ),
        "by_goroutine": _group(
            b[b["goid"].notna()] if len(b) else b, ["goid"], lambda g: {"goid": int(g)}
        ),
        "native_calls": threads_in_calls(calls),
        "by_waker": by_waker(b),
        "wakers_seen": int(b["waker"].notna().sum()) if len(b) else 0,
        "waker_note": _waker_note(b),
        "latency_split": latency_split(calls),
    }


def _stack_stops(b: pd.DataFrame) -> list[dict]:
    """The library records whose native stacks stop short, by why (most first): the reason
    and the fix in words, and how many."""
    if not len(b) or "stack_stop" not in b:
        return []
    counts = b["stack_stop"].dropna().value_counts()
    return [{"why": str(k), "records": int(v)} for k, v in counts.items()]


def _waker_note(b: pd.DataFrame) -> str | None:
    """The one note the summary shows about missing wakers: how to record them when that is
    the reason for any record, else the most frequent reason."""
    if not len(b) or "waker_note" not in b:
        return None
    notes = b["waker_note"].dropna()
    notes = notes[notes.map(lambda x: isinstance(x, str))]
    if not len(notes):
        return None
    capture = notes[notes.str.contains("--peer-pid", regex=False)]
    return str(capture.iloc[0]) if len(capture) else str(notes.value_counts().index[0])
