"""Every source on one clock (CLOCK_MONOTONIC), with the method and an honest error bound.

Per source: ``offset_ns`` (reference = source time + offset), ``method`` and ``error_ns``:

    shared-clock     the source's own clock is CLOCK_MONOTONIC (Go >= 1.22 on Linux; perf
                     recorded with -k CLOCK_MONOTONIC): offset 0, error = its resolution
    event-matching   estimated from the data against an already aligned source: py-spy's
                     waiting samples vs perf's syscall / off-CPU intervals of the same OS
                     thread; Go syscall begins vs perf sys_enter of the same thread
    user             given by the user (checked against the data when possible)
    anchor           a reading of CLOCK_MONOTONIC when the recorder started (capture
                     metadata), used only when the data cannot be matched

py-spy: a sample is stamped when py-spy processes it, after the stack was read, so a run of
samples showing a thread blocked in a syscall cannot start (on the reference clock) before
that syscall did, nor end before it ended: each matched run gives a lower bound for the
offset; the sample before the run (not yet blocked) gives an upper bound. The estimate is the
middle of the tightest interval the matches agree on, and the error is its half-width.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from parsers.model import SourceTables

#: An anchor (CLOCK_MONOTONIC read before the recorder started) is only good to process
#: start-up time: py-spy attaches, loads symbols, then starts its clock.
ANCHOR_ERROR_NS = 200_000_000
MIN_BLOCK_NS = 2_000_000  # perf intervals shorter than this are useless for matching


@dataclass
class Alignment:
    source: str
    offset_ns: int | None
    method: str  # shared-clock | event-matching | user | anchor | none
    error_ns: int | None
    support: int = 0  # how many matched events back the estimate
    residual_ns: int | None = None
    note: str = ""
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "offset_ns": self.offset_ns,
            "method": self.method,
            "error_ns": self.error_ns,
            "support": self.support,
            "residual_ns": self.residual_ns,
            "note": self.note,
            "warnings": self.warnings,
        }


def shared_clock(src: SourceTables) -> Alignment | None:
    if src.clock.clock_id == "monotonic":
        return Alignment(
            src.meta.source,
            0,
            "shared-clock",
            src.clock.resolution_ns,
            note="the source's clock is CLOCK_MONOTONIC",
        )
    return None


def _runs(py: SourceTables) -> pd.DataFrame:
    """py.sample slices with the previous run's start on the same thread."""
    s = py.slices[py.slices["kind"] == "py.sample"].sort_values(["tid", "ts"]).copy()
    s["blocking"] = s["args"].map(lambda a: bool(a and a.get("blocking")))
    s["prev_ts"] = s.groupby("tid")["ts"].shift(1)
    # the run before shows the thread NOT waiting: its samples were taken before this wait
    # began (a blocking run before could be an earlier wait, which bounds nothing)
    prev_blocking = s.groupby("tid")["blocking"].shift(1).astype("boolean").fillna(True)
    s.loc[prev_blocking.to_numpy(dtype=bool), "prev_ts"] = np.nan
    return s


#: libc wrapper (a py-spy native leaf frame) -> the syscalls it makes
_WRAPPER_SYSCALLS = {
    "poll": {"poll", "ppoll"},
    "ppoll": {"ppoll"},
    "select": {"select", "pselect6"},
    "pselect": {"pselect6"},
    "epoll_wait": {"epoll_wait", "epoll_pwait", "epoll_pwait2"},
    "recv": {"recvfrom"},
    "recvfrom": {"recvfrom"},
    "recvmsg": {"recvmsg"},
    "read": {"read"},
    "nanosleep": {"nanosleep", "clock_nanosleep"},
    "clock_nanosleep": {"clock_nanosleep", "nanosleep"},
    "accept": {"accept", "accept4"},
    "accept4": {"accept4"},
    "connect": {"connect"},
}


def wrapper_syscalls(function: str) -> set[str]:
    """Syscalls a libc frame stands for: '__libc_recv' -> {'recvfrom'}; unknown -> empty."""
    name = function.lstrip("_")
    for prefix in ("GI___", "GI_", "libc_"):
        if name.startswith(prefix):
            name = name[len(prefix) :].lstrip("_")
    return _WRAPPER_SYSCALLS.get(name, set())


def _perf_blocks(perf: SourceTables, offset: int) -> pd.DataFrame:
    """Long logical syscalls. Not off-CPU intervals: under py-spy a blocked thread's off-CPU
    time is chopped into pieces by py-spy's own ptrace stops, and a piece's start is not when
    the thread began to wait."""
    s = perf.slices
    b = s[(s["kind"] == "os.syscall") & (s["dur"] >= MIN_BLOCK_NS)]
    return b.assign(
        start=b["ts"] + offset, end=b["ts"] + b["dur"] + offset, syscall=b["name"].astype(str)
    )[["tid", "start", "end", "syscall"]]


def align_pyspy(
    py: SourceTables,
    perf: SourceTables,
    perf_offset: int = 0,
    perf_error: int = 0,
    anchor_ns: int | None = None,
    user_offset: int | None = None,
) -> Alignment:
    """Offset of a py-spy timeline onto the reference clock, from perf on the same threads."""
    name = py.meta.source
    runs = _runs(py)
    blk = runs[runs["blocking"] & (runs["dur"] >= MIN_BLOCK_NS)]
    perf_b = _perf_blocks(perf, perf_offset)
    tids = set(blk["tid"]) & set(perf_b["tid"])
    if not tids:
        return _fallback(
            name,
            anchor_ns,
            user_offset,
            "no OS thread in common with perf "
            "(py-spy recorded without --threads, or perf on other threads)",
        )
    # A run is matched only with a syscall its leaf frame makes (a poll() run with a poll
    # syscall), on the same thread: a poll run must never explain a nanosleep.
    pairs = []  # (tid, run ts, run dur, prev ts, syscall start, syscall end)
    for tid in tids:
        r = blk[blk["tid"] == tid]
        p = perf_b[perf_b["tid"] == tid]
        for ts, dur, prev, leaf in zip(
            r["ts"], r["dur"], r["prev_ts"], r["name"].astype(str), strict=True
        ):
            ok = p[p["syscall"].isin(wrapper_syscalls(leaf))]
            pairs += [
                (tid, ts, dur, prev, s0, s1) for s0, s1 in zip(ok["start"], ok["end"], strict=True)
            ]
    if not pairs:
        return _fallback(
            name,
            anchor_ns,
            user_offset,
            "no py-spy run waits in a syscall that perf recorded on the same thread",
        )
    # the right offset makes many runs start just after their syscall did: vote in 5 ms bins
    cands = np.array([s0 - ts for _, ts, _, _, s0, _ in pairs], np.float64)
    bins = np.floor(cands / 5_000_000).astype(np.int64)
    vals, counts = np.unique(bins, return_counts=True)
    rough = int((vals[np.argmax(counts)] + 0.5) * 5_000_000)

    # bounds from the pairs that agree with the rough offset (the run starts inside the call)
    lower, upper = [], []
    for _tid, ts, dur, prev, s0, s1 in pairs:
        if not (s0 <= ts + rough <= s1):
            continue
        lower.append(s0 - ts)  # the run cannot start before the syscall did
        lower.append(s1 - (ts + dur))  # nor end before it ended
        if not np.isnan(prev):
            upper.append(s0 - prev + PYSPY_LAG_NS)  # the run before was sampled before it
    if not lower:
        return _fallback(name, anchor_ns, user_offset, "no py-spy run matched a perf interval")
    offset, err, satisfied, violated = _most_consistent(np.array(lower), np.array(upper))
    err += perf_error
    a = Alignment(
        name,
        offset,
        "event-matching",
        err,
        support=satisfied,
        residual_ns=violated,
        note=f"{len(lower) // 2} py-spy runs of blocked samples matched perf syscalls "
        f"on {len(tids)} thread(s); {satisfied} of {len(lower) + len(upper)} "
        "bounds agree",
    )
    for label, value, bound in (
        ("capture anchor", anchor_ns, ANCHOR_ERROR_NS),
        ("user offset", user_offset, 0),
    ):
        if value is not None and abs(value - offset) > err + bound:
            a.warnings.append(
                f"{label} {value} ns disagrees with the data ({offset} ns "
                f"± {err} ns) by {abs(value - offset)} ns"
            )
    if user_offset is not None:
        a.note += f"; user offset {user_offset} ns checked against it"
    return a


#: Floor of the error: py-spy stamps a sample when it processes it, a fraction of a ms after
#: reading the stack (measured median 0.4 ms).
PYSPY_LAG_NS = 1_000_000


def _most_consistent(lower: np.ndarray, upper: np.ndarray) -> tuple[int, int, int, int]:
    """The offsets satisfying the most bounds (o >= lower_i, o <= upper_i): their middle,
    half-width (at least PYSPY_LAG_NS), how many bounds hold, and the largest miss (ns)."""
    lo_s, up_s = np.sort(lower), np.sort(upper)
    points = np.unique(np.concatenate([lower, upper]))
    ok = np.searchsorted(lo_s, points, "right") + (
        len(up_s) - np.searchsorted(up_s, points, "left")
    )
    best = ok.max()
    where = points[ok == best]
    a, b = float(where.min()), float(where.max())
    o = (a + b) / 2
    misses = np.concatenate([lower[lower > o] - o, o - upper[upper < o]])
    return (
        int(round(o)),
        max(int(round((b - a) / 2)), PYSPY_LAG_NS),
        int(best),
        int(misses.max()) if len(misses) else 0,
    )


def _fallback(name: str, anchor_ns: int | None, user_offset: int | None, why: str) -> Alignment:
    if user_offset is not None:
        return Alignment(name, user_offset, "user", None, note=f"{why}; user offset unchecked")
    if anchor_ns is not None:
        return Alignment(
            name,
            anchor_ns,
            "anchor",
            ANCHOR_ERROR_NS,
            note=f"{why}; capture anchor used, good to process start-up time",
        )
    return Alignment(name, None, "none", None, note=f"{why}; cannot be aligned")


def to_reference(df: pd.DataFrame, a: Alignment) -> pd.DataFrame:
    """*df* with ``ref_ts``: its ``ts`` on the reference clock (NA when not aligned)."""
    if a.offset_ns is None:
        return df.assign(ref_ts=pd.array([pd.NA] * len(df), dtype="Int64"))
    return df.assign(ref_ts=df["ts"] + a.offset_ns)
