"""The pitfalls of native-call use, named from the traces (DESIGN.md, JSON report: findings).

A pure step over what the correlator found; each finding says what, where, who, when, how
often, the fix in one sentence, and the records (rows of the blocking table) it rests on.
Each kind raises nothing without the evidence it names:

    shared-connection   (error)   one connection (a socket fd of one process, between its
                                  open and close: a reused fd number is a new connection)
                                  used inside library calls by two users at overlapping
                                  times: hiredis contexts are not thread-safe; replies
                                  cross, calls hang. Needs two distinct users' calls, each
                                  with a syscall on it, that overlap.
    connection-handoff  (warning) one connection used by several users one after another
                                  (a pool): its error state and buffers must be reset
                                  between users. Needs two distinct users.
    thread-growth       (warning) Go only: many threads blocked in library calls at once,
                                  or new threads created while others sat blocked in them:
                                  each goroutine blocked in C holds its thread, so the
                                  runtime starts more. Needs a Go trace's cgo calls;
                                  ``threads_in_calls_max <= threads_max`` by construction.
    reply-leak          (warning) calls that return replies against freeReplyObject calls,
                                  per goroutine: a reply not freed is C heap never returned.
                                  Needs the program to call the free function through cgo.
    poisoned-handoff, broken-connection: from failed socket I/O (``failed_connections``).

A user is a goroutine in a process the Go trace covers (a syscall on the connection that no
Go call holds, e.g. before the trace began, has no user that can be told, and counts for
none), else a thread. Frees are counted only when the program calls the free function
through cgo at all (a C wrapper that frees inside C is invisible).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .connections import user_ids
from .failed_connections import broken_connections, poisoned_handoffs, records_on
from .libraries import Library
from .tables import Tables

SEVERITY = {"error": 0, "warning": 1, "info": 2}
#: thread-growth: this many threads blocked in library calls at once is a finding by itself;
#: so are CREATED_WHILE_BLOCKED new threads, each created while at least BLOCKED_OTHERS
#: threads sat in library calls blocked for SLOW_NS or more. (A clean run also creates a few
#: threads while others block: the runtime hands a blocked thread's P to a new one, up to
#: about the number of blocked calls; measured 2 and 4 in clean 4-goroutine captures.)
THREADS_IN_CALLS = 8
CREATED_WHILE_BLOCKED, BLOCKED_OTHERS, SLOW_NS = 8, 2, 20_000_000
#: reply-leak: report a goroutine whose unfreed replies are at least this many, and this share
LEAK_MIN_CALLS, LEAK_MIN_SHARE = 10, 0.10
#: how many of the calls a finding rests on it lists (``calls_at``: [tid, start_ns])
CALLS_SHOWN = 100


def findings(
    corr: Tables,
    lib: Library,
    thread_starts: pd.DataFrame,
    names: dict[int, str],
) -> list[dict]:
    """Every finding, worst first. *thread_starts*: pid, tid, first_ns: when each thread of
    the traced processes was created (perf's fork records) or first seen (the Go trace)."""
    out = connection_findings(corr, lib, names)
    out += poisoned_handoffs(corr, lib)
    out += broken_connections(corr, lib)
    out += thread_growth(corr, lib, thread_starts)
    out += reply_leaks(corr, lib)
    out.sort(key=lambda f: (SEVERITY[f["severity"]], -f["count"], f["first_ns"] or 0))
    return out


def _users(use: pd.DataFrame) -> pd.Series:
    """Who made a use: the goroutine when a Go trace says, else the thread; in a process
    whose uses the Go trace names, a use it does not name has no user (NA)."""
    goid = use["goid"].to_numpy(np.int64)
    pid = use["pid"].to_numpy(np.int64)
    go_pids = np.unique(pid[goid >= 0])
    unknown = (goid < 0) & np.isin(pid, go_pids)
    user = user_ids(goid, use["tid"].to_numpy(np.int64)).astype(float)
    user[unknown] = np.nan
    return pd.Series(user, index=use.index)


def _who(users, tid_of: dict) -> tuple[list[int], list[int]]:
    goroutines = sorted(int(u) for u in users if u >= 0)
    threads = sorted({int(tid_of[u]) for u in users})
    return goroutines, threads


def connection_findings(corr: Tables, lib: Library, names: dict[int, str]) -> list[dict]:
    """shared-connection and connection-handoff, per connection used by several users; none
    for a library whose handles are thread-safe (its preset says so: librdkafka's)."""
    use = corr.conn_use
    if use is None or not len(use) or lib.thread_safe:
        return []
    use = use.assign(user=_users(use)).dropna(subset=["user"])
    use = use.assign(user=use["user"].astype(np.int64))
    conns = corr.connections.set_index("conn")
    out = []
    for conn, g in use.groupby("conn", sort=True):
        if g["user"].nunique() < 2:
            continue
        calls = (
            g.groupby(["user", "call_start"], sort=False)
            .agg(call_end=("call_end", "max"), tid=("tid", "first"))
            .reset_index()
            .sort_values(["call_start", "user"], kind="stable")
        )
        on = _Connection(int(conns.at[conn, "pid"]), int(conns.at[conn, "fd"]), calls)
        overlaps = _overlaps(calls)
        if overlaps:
            out.append(_shared_connection(corr, lib, names, on, overlaps))
        else:
            out.append(_connection_handoff(corr, lib, names, on))
    return out


@dataclass
class _Connection:
    """One connection's library calls: (user, call_start, call_end, tid), by start."""

    pid: int
    fd: int
    calls: pd.DataFrame

    @property
    def where(self) -> str:
        return f"fd {self.fd} of pid {self.pid}"

    @property
    def tid_of(self) -> dict:
        return dict(zip(self.calls["user"], self.calls["tid"], strict=False))


def _shared_connection(
    corr: Tables, lib: Library, names: dict[int, str], on: _Connection, overlaps: list
) -> dict:
    """Calls of two users on one connection at the same time."""
    users = sorted({u for o in overlaps for u in o[:2]})
    goroutines, threads = _who(users, on.tid_of)
    lo = min(o[2] for o in overlaps)
    hi = max(o[3] for o in overlaps)
    who = _name_users(goroutines, threads, names)
    return {
        "kind": "shared-connection",
        "severity": "error",
        "summary": f"{who} used one {lib.name} connection ({on.where}) at the same "
        f"time, {len(overlaps)} time(s): {lib.name} {_handles(lib)} are not "
        "thread-safe, so replies can cross and calls hang; give each goroutine "
        f"its own {lib.handle_noun} (a pool), or guard the shared one with a mutex.",
        "pid": on.pid,
        "fd": on.fd,
        "goroutines": goroutines,
        "threads": threads,
        "first_ns": lo,
        "last_ns": hi,
        "count": len(overlaps),
        "calls": int(len(on.calls)),
        "records": records_on(corr, on.pid, on.fd, lo, hi),
    }


def _connection_handoff(corr: Tables, lib: Library, names: dict[int, str], on: _Connection) -> dict:
    """Users taking turns on one connection."""
    calls = on.calls
    first, last = int(calls["call_start"].min()), int(calls["call_end"].max())
    order = calls["user"].tolist()
    handoffs = sum(1 for a, b in zip(order, order[1:], strict=False) if a != b)
    goroutines, threads = _who(dict.fromkeys(order), on.tid_of)
    who = _name_users(goroutines, threads, names)
    return {
        "kind": "connection-handoff",
        "severity": "warning",
        "summary": f"{who} took turns on one {lib.name} connection ({on.where}), "
        f"handed over {handoffs} time(s), as a pool does: that is safe only if "
        "its error state and buffers are reset between users (a failed call "
        "leaves the context unusable; a half-read reply goes to the next user).",
        "pid": on.pid,
        "fd": on.fd,
        "goroutines": goroutines,
        "threads": threads,
        "first_ns": first,
        "last_ns": last,
        "count": handoffs,
        "calls": int(len(calls)),
        "records": records_on(corr, on.pid, on.fd, first, last),
    }


def _handles(lib: Library) -> str:
    """'contexts (redisContext *)': the preset's name for a handle, and its type."""
    noun = f"{lib.handle_noun}s"
    return f"{noun} ({lib.handle_type})" if lib.handle_type else noun


def _name_users(goroutines: list[int], threads: list[int], names: dict[int, str]) -> str:
    if goroutines:
        return "goroutines " + ", ".join(map(str, goroutines))
    return "threads " + ", ".join(f"{t} ({names[t]})" if names.get(t) else str(t) for t in threads)


def _overlaps(calls: pd.DataFrame) -> list[tuple[int, int, int, int]]:
    """(user a, user b, from, to) for each call that began while another user's call on the
    same connection was still inside the library. *calls* sorted by start."""
    out = []
    open_: list[tuple[int, int]] = []  # (end, user) of calls still in progress
    for user, start, end in zip(
        calls["user"].tolist(),
        calls["call_start"].tolist(),
        calls["call_end"].tolist(),
        strict=True,
    ):
        open_ = [(e, u) for e, u in open_ if e > start]
        for e, u in open_:
            if u != user:
                out.append((u, user, start, min(e, end)))
                break
        open_.append((end, user))
    return out


def _in_calls_over_time(corr: Tables) -> tuple[np.ndarray, np.ndarray]:
    """(times, number of threads inside library calls from each time on): the Go trace's
    library call spans (a thread holds one call at a time)."""
    if not len(corr.calls):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    iv = corr.calls[["tid", "start", "end"]].astype("int64")
    t = np.concatenate([iv["start"].to_numpy(), iv["end"].to_numpy()])
    d = np.concatenate([np.ones(len(iv), np.int64), -np.ones(len(iv), np.int64)])
    o = np.lexsort((d, t))  # ends before starts at the same instant
    return t[o], np.cumsum(d[o])


def _blocked_over_time(corr: Tables) -> tuple[np.ndarray, np.ndarray]:
    """(times, threads blocked in the library from each time on): slow library records."""
    b = corr.blocking
    if not len(b):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    b = b[(b["in"] == "library").to_numpy() & (b["dur_ns"] >= SLOW_NS).to_numpy()]
    t = np.concatenate([b["start_ns"].to_numpy(np.int64), b["end_ns"].to_numpy(np.int64)])
    d = np.concatenate([np.ones(len(b), np.int64), -np.ones(len(b), np.int64)])
    o = np.lexsort((d, t))
    return t[o], np.cumsum(d[o])


def _level_at(times: np.ndarray, level: np.ndarray, at: np.ndarray) -> np.ndarray:
    i = np.searchsorted(times, at, "right") - 1
    return np.where(i >= 0, level[np.maximum(i, 0)], 0) if len(times) else np.zeros(len(at))


def thread_growth(corr: Tables, lib: Library, starts: pd.DataFrame) -> list[dict]:
    """Threads multiplied by blocking C calls, in Go (the runtime starts a thread when
    others are held in C): the peak of threads inside library calls at once, and the
    threads created while others sat blocked in library calls. A C or Python program starts
    its threads itself: nothing is raised there."""
    t, level = _in_calls_over_time(corr)
    if not len(t):
        return []
    peak_i = int(np.argmax(level))
    peak = int(level[peak_i])
    bt, blevel = _blocked_over_time(corr)
    pids = set(corr.calls["pid"].tolist())
    s = starts[starts["pid"].isin(pids).to_numpy()] if len(starts) else starts
    blocked_then = _level_at(bt, blevel, s["first_ns"].to_numpy(np.int64)) if len(s) else []
    created = s[np.asarray(blocked_then) >= BLOCKED_OTHERS] if len(s) else s
    if peak < THREADS_IN_CALLS and len(created) < CREATED_WHILE_BLOCKED:
        return []
    # the window around the peak: from when the level last rose to it until it fell below
    lo = int(t[peak_i])
    after = np.flatnonzero((np.arange(len(t)) > peak_i) & (level < peak))
    hi = int(t[after[0]]) if len(after) else int(t[-1])
    first = min([lo, *created["first_ns"].tolist()]) if len(created) else lo
    last = max([hi, *created["first_ns"].tolist()]) if len(created) else hi
    # every thread seen: started (fork records, the Go trace) or inside a call
    seen = set(s["tid"].tolist()) if len(s) else set()
    threads_max = len(seen | set(corr.calls["tid"].tolist()))
    pid = int(next(iter(pids))) if len(pids) == 1 else None
    records = _slow_records_between(corr, first, last)
    return [
        {
            "kind": "thread-growth",
            "severity": "warning",
            "summary": f"{peak} thread(s) sat inside {lib.name} calls at once "
            f"({threads_max} thread(s) in all), and {len(created)} thread(s) were created "
            f"while {BLOCKED_OTHERS} or more others were blocked in {lib.name}: every "
            "goroutine blocked in C holds "
            "its thread, so the runtime starts more; bound the concurrent calls (a pool or "
            "a semaphore) or make them non-blocking (hiredis async with a timeout).",
            "pid": pid,
            "fd": None,
            "goroutines": [],
            "threads": sorted(int(x) for x in created["tid"].tolist()) if len(created) else [],
            "first_ns": first,
            "last_ns": last,
            "count": int(len(created)),
            "threads_in_calls_max": peak,
            "threads_max": threads_max,
            "peak_ns": [lo, hi],
            "records": records,
        }
    ]


def _slow_records_between(corr: Tables, first: int, last: int) -> list[int]:
    """Rows of the library records of SLOW_NS or more that overlap [first, last]."""
    b = corr.blocking
    if not len(b):
        return []
    return np.flatnonzero(
        (b["in"] == "library").to_numpy()
        & (b["dur_ns"] >= SLOW_NS).to_numpy()
        & (b["start_ns"].to_numpy(np.int64) <= last)
        & (b["end_ns"].to_numpy(np.int64) >= first)
    ).tolist()


def reply_leaks(corr: Tables, lib: Library) -> list[dict]:
    """Per goroutine: cgo calls that return replies against the free function's calls."""
    cgo = corr.cgo
    if cgo is None or not len(cgo) or not lib.free_functions:
        return []
    call = cgo["call"]  # categorical: matched per distinct name, not per call
    frees = call.isin(list(lib.free_functions)).to_numpy()
    if not frees.any():
        return []  # the program does not free through cgo: nothing can be told
    names = call.cat.categories if isinstance(call.dtype, pd.CategoricalDtype) else call.unique()
    replies = call.isin([str(c) for c in names if lib.returns_reply(str(c))]).to_numpy()
    rows = np.flatnonzero(replies | frees)  # the rows and columns read, not the whole table
    g = (
        cgo[["goid", "tid", "start", "call_site"]]
        .iloc[rows]
        .assign(reply=replies[rows], free=frees[rows])
    )
    out = []
    for goid, x in g.groupby("goid", sort=True):
        calls, freed = int(x["reply"].sum()), int(x["free"].sum())
        gap = calls - freed
        if gap < LEAK_MIN_CALLS or gap < LEAK_MIN_SHARE * calls:
            continue
        r = x[x["reply"]]
        sites = sorted({str(s) for s in r["call_site"].dropna().astype(str)})
        out.append(
            {
                "kind": "reply-leak",
                "severity": "warning",
                "summary": f"goroutine {int(goid)} made {calls} {lib.name} call(s) that return "
                f"a reply and freed {freed} with {lib.free_functions[0]}: pass every reply "
                f"to {lib.free_functions[0]} (a call that failed returns none; the trace "
                "cannot tell those apart, so this is an upper bound).",
                "pid": int(cgo["pid"].iloc[0]) if cgo["pid"].nunique() == 1 else None,
                "fd": None,
                "goroutines": [int(goid)],
                "threads": sorted({int(t) for t in r["tid"].tolist()}),
                "first_ns": int(r["start"].min()),
                "last_ns": int(r["start"].max()),
                "count": gap,
                "calls": calls,
                "freed": freed,
                "call_sites": sites,
                # the calls it rests on (the first CALLS_SHOWN that returned a reply)
                "calls_at": [
                    [int(a), int(b)]
                    for a, b in zip(r["tid"][:CALLS_SHOWN], r["start"][:CALLS_SHOWN], strict=True)
                ],
                "records": [],  # fmt: skip
            }
        )
    return out
