"""Findings from library calls whose socket I/O failed (DESIGN.md, JSON report: findings).

    poisoned-handoff    (error)   a connection whose last I/O in user A's call failed (a
                                  socket timeout: EAGAIN/ETIMEDOUT; or ECONNRESET/EPIPE), A
                                  never used again, and then library calls of another user B
                                  that returned without any I/O: hiredis returns at once
                                  while ``c->err`` is set, so B's commands fail with A's
                                  error (or read the reply meant for A). Needs the failed
                                  syscall inside A's library call, no later library call by A, and
                                  B's calls without a syscall on any connection, B having
                                  made no I/O on a connection of its own before them (and
                                  B's first I/O, if any, opening a new one), perf having
                                  lost nothing meanwhile.
    broken-connection   (warning) library calls whose socket write or read failed with EPIPE
                                  or ECONNRESET: the peer or the network closed the
                                  connection under the library (a write to it also raises
                                  SIGPIPE), or a SIGPIPE perf saw delivered inside a library
                                  call (``signal:signal_deliver``). Needs the failed syscall
                                  or the signal inside a library call; says whether the
                                  process lived on after it.

Users are goroutines (a Go trace), else threads, as for the other connection findings.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .connections import user_ids
from .libraries import Library
from .tables import Tables

#: -errno of a socket call that failed: its name
ERRNOS = {-11: "EAGAIN", -110: "ETIMEDOUT", -104: "ECONNRESET", -32: "EPIPE"}
#: the failures that leave a hiredis context unusable (c->err set)
POISONING = frozenset(ERRNOS)
#: the failures that say the connection itself broke
BROKEN = frozenset({-104, -32})
#: how many of the calls a finding rests on it lists (``calls_at``: [tid, start_ns])
CALLS_SHOWN = 100


def _users(frame: pd.DataFrame) -> np.ndarray:
    """The user of each row (goid, tid): ``connections.user_ids``."""
    return user_ids(frame["goid"].fillna(-1).astype("int64").to_numpy(), frame["tid"].to_numpy())


def _name(user: int) -> str:
    return f"goroutine {user}" if user >= 0 else f"thread {-user - 1}"


def _lost(corr: Tables) -> list[tuple[int, int]]:
    """perf's loss windows (nothing can be said of I/O inside them)."""
    perf = corr.perf.tables if corr.perf is not None else None
    return [tuple(w) for w in (perf.meta.extra.get("lost_windows_ns") or [])] if perf else []


def poisoned_handoffs(corr: Tables, lib: Library) -> list[dict]:
    """A context handed on in an error state: see the module's docstring."""
    use = corr.conn_use
    calls = corr.calls
    if use is None or not len(use) or "ret" not in use or not len(calls):
        return []
    use = use.assign(user=_users(use)).sort_values("start", kind="stable")
    conns = corr.connections.set_index("conn")
    c = _quiet_candidates(calls, use, _lost(corr))
    last_call = c.groupby("user")["start"].max()  # every call, quiet or not
    quiet_all = c[c["quiet"].to_numpy(bool)].sort_values("start", kind="stable")
    claimed: set[int] = set()
    out = []
    failed = use[use["ret"].isin(list(POISONING)).to_numpy()]
    go_pids = set(calls.loc[calls["goid"].notna(), "pid"].tolist())
    # in a Go process a failure no goroutine is known for (a syscall no Go call holds) has
    # no user that could have handed the context on
    failed = failed[(failed["user"] >= 0) | ~failed["pid"].isin(list(go_pids))]
    # the latest failure first: another user's quiet calls belong to the failure right before
    for f in failed.iloc[::-1].itertuples():
        if last_call.get(f.user, -1) > f.call_end:
            continue  # A went on calling the library: the context was not handed on
        q = quiet_all[(quiet_all["pid"].to_numpy() == f.pid)
                      & (quiet_all["start"].to_numpy() > f.call_end)
                      & (quiet_all["user"].to_numpy() != f.user)]  # fmt: skip
        q = q[~q["user"].isin(list(claimed))]
        if q.empty:
            continue
        b = int(q["user"].iloc[0])
        claimed.add(b)
        out.append(_poisoned(corr, lib, f, conns.loc[f.conn], q[q["user"] == b], b))
    return out


def _quiet_candidates(calls: pd.DataFrame, use: pd.DataFrame, lost) -> pd.DataFrame:
    """The calls with their user and ``quiet``: no syscall on any connection, before the
    user's own first I/O on one, and in no loss window of perf's (computed once, for every
    failure to filter). A user whose first I/O is a read or write (not a new connection)
    had calls that only buffered (``redisAppendCommand``, pipelining): none is quiet."""
    tid = calls["tid"].to_numpy(np.int64)
    start, end = calls["start"].to_numpy(np.int64), calls["end"].to_numpy(np.int64)
    user = _users(calls)
    io = pd.MultiIndex.from_arrays([use["tid"].to_numpy(np.int64),
                                    use["call_start"].to_numpy(np.int64)])  # fmt: skip
    made_io = pd.MultiIndex.from_arrays([tid, start]).isin(io)
    first = use.groupby("user").first()  # use is by start: each user's first I/O
    reconnect = first["syscall"].isin(["socket", "connect"])
    first_io = first["start"].where(reconnect, -1)  # a first read or write: never quiet
    before_own = start < pd.Series(user).map(first_io).fillna(np.inf).to_numpy()
    in_lost = np.zeros(len(calls), bool)
    for lo, hi in lost:  # few windows
        in_lost |= (start <= hi) & (end >= lo)
    return calls.assign(user=user, quiet=~made_io & before_own & ~in_lost)


def _poisoned(corr, lib, f, conn, quiet: pd.DataFrame, b: int) -> dict:
    err = ERRNOS.get(int(f.ret), str(int(f.ret)))
    a = int(f.user)
    pid, fd = int(conn["pid"]), int(conn["fd"])
    goroutines = sorted(u for u in (a, b) if u >= 0)
    threads = sorted({int(f.tid), *(int(t) for t in quiet["tid"].unique())})
    return {
        "kind": "poisoned-handoff",
        "severity": "error",
        "summary": f"{_name(a)}'s {lib.name} call on one connection (fd {fd} of pid {pid}) "
        f"failed ({f.syscall} returned {err}); then {_name(b)} made {len(quiet)} "
        f"{lib.name} call(s) that returned without any I/O: the context was handed on in "
        "its error state, so they fail with the first user's error (or read its reply). "
        "Reset or drop a context after an error; never return it to the pool.",
        "pid": pid,
        "fd": fd,
        "goroutines": goroutines,
        "threads": threads,
        "first_ns": int(f.call_start),
        "last_ns": int(quiet["end"].max()),
        "count": int(len(quiet)),
        "failed_call": {
            "user": a, "tid": int(f.tid), "start_ns": int(f.call_start),
            "end_ns": int(f.call_end), "syscall": str(f.syscall), "errno": err,
        },  # fmt: skip
        "calls_at": [[int(t), int(s)] for t, s in
                     zip(quiet["tid"][:CALLS_SHOWN], quiet["start"][:CALLS_SHOWN], strict=True)],
        "records": records_on(corr, pid, fd, int(f.call_start), int(f.call_end)),
    }  # fmt: skip


def broken_connections(corr: Tables, lib: Library) -> list[dict]:
    """Connections whose library I/O failed with EPIPE or ECONNRESET, with the SIGPIPEs
    delivered inside their calls; and SIGPIPEs inside library calls on no such connection."""
    sigpipes = _sigpipes_in_calls(corr)
    use = corr.conn_use
    if use is None or not len(use) or "ret" not in use:
        return _lone_sigpipes(lib, sigpipes)
    bad = use[use["ret"].isin(list(BROKEN)).to_numpy()]
    if not len(bad):
        return _lone_sigpipes(lib, sigpipes)
    bad = bad.assign(user=_users(bad))
    conns = corr.connections.set_index("conn")
    out = []
    for conn, g in bad.groupby("conn", sort=True):
        pid, fd = int(conns.at[conn, "pid"]), int(conns.at[conn, "fd"])
        how = g.groupby(["syscall", "ret"]).size()
        said = ", ".join(f"{s} returned {ERRNOS[int(r)]} {n} time(s)" for (s, r), n in how.items())
        last = int(g["start"].max())
        lived = _lived_on(corr, pid, last)
        users = sorted({int(u) for u in g["user"]})
        mine, sigpipes = _taken(sigpipes, g)
        said += _said_signals(mine, sigpipes is not None)
        out.append(
            {
                "kind": "broken-connection",
                "severity": "warning",
                "summary": f"{lib.name} calls of {', '.join(map(_name, users))} on one "
                f"connection (fd {fd} of pid {pid}) failed: {said}; the peer or the network "
                "closed it under the library (a write to it also raises SIGPIPE; the process "
                f"{'lived on' if lived else 'was not seen again'}). Reconnect on an I/O "
                "error, and ignore SIGPIPE in a C program (MSG_NOSIGNAL, or SIG_IGN).",
                "pid": pid,
                "fd": fd,
                "goroutines": [u for u in users if u >= 0],
                "threads": sorted({int(t) for t in g["tid"]}),
                "first_ns": int(g["call_start"].min()),
                "last_ns": int(g["call_end"].max()),
                "count": int(len(g)),
                "errors": {ERRNOS[int(r)]: int(n) for r, n in g["ret"].value_counts().items()},
                "sigpipe_delivered": None if sigpipes is None else len(mine),
                "survived": lived,
                "records": records_on(
                    corr, pid, fd, int(g["call_start"].min()), int(g["call_end"].max())
                ),
            }
        )
    return out + _lone_sigpipes(lib, sigpipes)


def _sigpipes_in_calls(corr: Tables) -> pd.DataFrame | None:
    """SIGPIPEs perf saw delivered (pid, tid, ts on the reference clock) inside a library
    call of their thread, with the call's window; None when perf recorded no signals."""
    perf = corr.perf
    if perf is None or perf.offset_ns is None:
        return None
    i = perf.tables.instants
    sig = i[(i["kind"] == "os.signal").to_numpy()]
    cmdline = str(perf.tables.meta.extra.get("cmdline") or "")
    if not len(sig) and "signal:signal_deliver" not in cmdline:
        return None  # perf did not record signals: nothing can be said of SIGPIPE
    if not len(sig) or "signal" not in sig:
        return pd.DataFrame(columns=["pid", "tid", "ts", "call_start", "call_end"])
    sig = sig[(sig["name"] == "SIGPIPE").to_numpy() & (sig["signal"] == "deliver").to_numpy()]
    at = sig["ts"].to_numpy(np.int64) + perf.offset_ns
    windows = _call_windows(corr)
    rows = []
    for pid, tid, t in zip(sig["pid"].tolist(), sig["tid"].tolist(), at.tolist(), strict=True):
        w = windows[(windows["tid"] == tid) & (windows["start"] <= t) & (windows["end"] >= t)]
        if len(w):
            rows.append((pid, tid, t, int(w["start"].iloc[0]), int(w["end"].iloc[0])))
    return pd.DataFrame(rows, columns=["pid", "tid", "ts", "call_start", "call_end"])


def _call_windows(corr: Tables) -> pd.DataFrame:
    """tid, start, end of every library call: the Go trace's, and the records' (C, Python)."""
    parts = []
    if len(corr.calls):
        parts.append(corr.calls[["tid", "start", "end"]])
    b = corr.blocking
    if len(b):
        lib = b[(b["in"] == "library").to_numpy()]
        parts.append(pd.DataFrame({"tid": lib["tid"], "start": lib["call_start_ns"],
                                   "end": lib["call_end_ns"]}))  # fmt: skip
    if not parts:
        return pd.DataFrame({"tid": [], "start": [], "end": []}, dtype=np.int64)
    return pd.concat(parts, ignore_index=True).dropna().astype(np.int64)


def _taken(
    sigpipes: pd.DataFrame | None, g: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(the SIGPIPEs inside the failed calls *g*, the others)."""
    if sigpipes is None or not len(sigpipes):
        return pd.DataFrame(columns=["pid", "tid", "ts", "call_start", "call_end"]), sigpipes
    keys = set(zip(g["tid"].tolist(), g["call_start"].tolist(), strict=True))
    hit = [(t, s) in keys for t, s in zip(sigpipes["tid"], sigpipes["call_start"], strict=True)]
    hit = np.asarray(hit, bool)
    return sigpipes[hit], sigpipes[~hit]


def _said_signals(mine: pd.DataFrame, recorded: bool) -> str:
    if not recorded:
        return " (perf recorded no signals: -e signal:signal_deliver says whether SIGPIPE came)"
    if not len(mine):
        return "; no SIGPIPE was delivered inside those calls"
    return f"; SIGPIPE was delivered inside the call {len(mine)} time(s)"


def _lone_sigpipes(lib: Library, sigpipes: pd.DataFrame | None) -> list[dict]:
    """SIGPIPEs inside library calls whose connection perf saw no failed I/O on: one finding
    per thread."""
    if sigpipes is None or not len(sigpipes):
        return []
    out = []
    for (pid, tid), g in sigpipes.groupby(["pid", "tid"], sort=True):
        out.append(
            {
                "kind": "broken-connection",
                "severity": "warning",
                "summary": f"SIGPIPE was delivered to thread {tid} inside {lib.name} calls "
                f"{len(g)} time(s): a write to a closed connection; ignore SIGPIPE "
                "(MSG_NOSIGNAL, or SIG_IGN) and reconnect on an I/O error.",
                "pid": int(pid),
                "fd": None,
                "goroutines": [],
                "threads": [int(tid)],
                "first_ns": int(g["ts"].min()),
                "last_ns": int(g["ts"].max()),
                "count": int(len(g)),
                "errors": {},
                "sigpipe_delivered": int(len(g)),
                "survived": None,
                "records": [],
            }  # fmt: skip
        )
    return out


def _lived_on(corr: Tables, pid: int, after: int) -> bool:
    """Did perf see the process make a syscall after *after* (it did not die of it)?"""
    if corr.perf is None or corr.perf.offset_ns is None:
        return False
    sl = corr.perf.tables.slices
    mine = (sl["pid"].to_numpy() == pid) & (sl["kind"] == "os.syscall").to_numpy()
    return bool((sl["ts"].to_numpy(np.int64)[mine] + corr.perf.offset_ns > after).any())


def records_on(corr: Tables, pid: int, fd: int, lo: int, hi: int) -> list[int]:
    """Rows of the blocking records on (pid, fd) during [lo, hi]."""
    b = corr.blocking
    if not len(b) or "fd" not in b:
        return []
    fds = pd.to_numeric(b["fd"], errors="coerce").to_numpy()
    m = (b["pid"].to_numpy() == pid) & (fds == fd)
    m &= (b["start_ns"].to_numpy(np.int64) <= hi) & (b["end_ns"].to_numpy(np.int64) >= lo)
    return np.flatnonzero(m).tolist()
