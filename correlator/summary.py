"""Aggregates of the blocking records: by call site, syscall, thread, goroutine; and how many
threads were inside library calls over time (cgo thread growth under a slow Redis)."""

from __future__ import annotations

import numpy as np
import pandas as pd

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


def summarise(blocking: pd.DataFrame, calls: pd.DataFrame, min_block_ns: int) -> dict:
    b = blocking.copy()
    if len(b):
        b["site"] = b["call_site"].fillna(b["call"])
        b["sys"] = b["syscall"].fillna("(off-CPU outside a syscall)")
    ev = {}
    for e in b["evidence"] if len(b) else []:
        for x in e:
            ev[x] = ev.get(x, 0) + 1
    return {
        "min_block_ns": min_block_ns,
        "records": int(len(b)),
        "blocked_ns": int(b["dur_ns"].sum()) if len(b) else 0,
        "off_cpu_ns": int(b["off_cpu_ns"].dropna().sum()) if len(b) else 0,
        "threads": int(b["tid"].nunique()) if len(b) else 0,
        "goroutines": int(b["goid"].dropna().nunique()) if len(b) else 0,
        "p_lost": int((b["p_lost"] == True).sum()) if len(b) else 0,  # noqa: E712
        "evidence": ev,
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
    }
