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

py-spy: runs of samples showing a thread waiting in a libc wrapper (poll, recv,
clock_nanosleep ...) are paired with the perf syscalls that wrapper makes on the same OS
thread. Each candidate offset is scored by what the samples show under it (a waiting run
starts inside such a syscall and ends shortly after one ended; a running run does not start
inside any wait); the estimate is the middle of the best-scoring plateau of offsets, and the
error its half-width (at least 1 ms: py-spy stamps a sample when it processes it).

perf without -k: perf syscalls of 1 ms or more lie inside the Go syscall / cgo span of their
thread; each such pair bounds the offset from both sides (span start <= syscall start,
syscall end <= span end) and the estimate is the middle of the offsets satisfying most.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..parsers.columns import str_values
from ..parsers.model import SourceTables, column
from ..parsers.waits import wrapper_syscalls
from . import threadmap
from .threadmap import ThreadMap

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
    threads: ThreadMap | None = None  # how its thread ids were put onto perf's

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
            "threads": self.threads.as_dict() if self.threads else None,
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
    s["blocking"] = column(s, "slices", "blocking").fillna(False).to_numpy(bool)
    s["prev_ts"] = s.groupby("tid")["ts"].shift(1)
    # the run before shows the thread NOT waiting: its samples were taken before this wait
    # began (a blocking run before could be an earlier wait, which bounds nothing)
    prev_blocking = s.groupby("tid")["blocking"].shift(1).astype("boolean").fillna(True)
    s.loc[prev_blocking.to_numpy(dtype=bool), "prev_ts"] = np.nan
    return s


def _perf_blocks(perf: SourceTables, offset: int) -> pd.DataFrame:
    """Long logical syscalls. Not off-CPU intervals: under py-spy a blocked thread's off-CPU
    time is chopped into pieces by py-spy's own ptrace stops, and a piece's start is not when
    the thread began to wait."""
    s = perf.slices
    edge = column(s, "slices", "start_unknown") | column(s, "slices", "end_unknown")
    b = s[((s["kind"] == "os.syscall") & (s["dur"] >= MIN_BLOCK_NS)).to_numpy() & ~edge.to_numpy()]
    return b.assign(
        start=b["ts"] + offset, end=b["ts"] + b["dur"] + offset, syscall=str_values(b["name"])
    )[["tid", "pid", "start", "end", "syscall"]]


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
        return fallback(
            name,
            anchor_ns,
            user_offset,
            "no OS thread in common with perf "
            "(py-spy recorded without --threads, or perf on other threads)",
        )
    pairs = _run_syscall_pairs(blk, perf_b, tids)
    if not pairs:
        return fallback(
            name,
            anchor_ns,
            user_offset,
            "no py-spy run waits in a syscall that perf recorded on the same thread",
        )
    score = _Score(pairs, runs, perf_b)
    offset, err = _plateau(score, score.best(score.candidates()))
    err += perf_error
    good, lag = score.value(offset)
    a = Alignment(
        name,
        offset,
        "event-matching",
        err,
        support=good,
        residual_ns=int(lag) if np.isfinite(lag) else None,
        note=f"{score.n_runs} waiting and {score.n_busy} running py-spy runs "
        f"scored against perf syscalls on {len(tids)} thread(s); {good} agree "
        f"at the estimate; median sampling lag {lag / 1e6:.1f} ms",
    )
    _check_against(a, anchor_ns, user_offset)
    return a


def _run_syscall_pairs(blk: pd.DataFrame, perf_b: pd.DataFrame, tids: set) -> list[tuple]:
    """(tid, run ts, run dur, prev ts, syscall start, syscall end) for each waiting run and
    each perf syscall on its thread that its leaf frame makes: a run is matched only with a
    syscall its leaf makes (a poll() run with a poll syscall), so a poll run never explains
    a nanosleep."""
    pairs = []
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
    return pairs


def _plateau(score: _Score, rough: int) -> tuple[int, int]:
    """(offset, error): refined on a 0.25 ms grid around *rough*, the offsets scoring best
    form a plateau whose middle is the estimate and whose half-width is the error (at least
    py-spy's own lag)."""
    grid = np.arange(rough - 20_000_000, rough + 40_000_000, 250_000)
    values = np.array([score.value(o)[0] for o in grid])
    top = np.flatnonzero(values == values.max())
    contiguous = top[np.cumsum(np.diff(top, prepend=top[0] - 1) != 1) == 0]
    lo, hi = float(grid[contiguous[0]]), float(grid[contiguous[-1]])
    return int((lo + hi) // 2), max(int((hi - lo) // 2), PYSPY_LAG_NS)


def _check_against(a: Alignment, anchor_ns: int | None, user_offset: int | None) -> None:
    """Warn where the capture's anchor or the user's offset disagrees with the estimate."""
    for label, value, bound in (
        ("capture anchor", anchor_ns, ANCHOR_ERROR_NS),
        ("user offset", user_offset, 0),
    ):
        if value is not None and abs(value - a.offset_ns) > a.error_ns + bound:
            a.warnings.append(
                f"{label} {value} ns disagrees with the data ({a.offset_ns} ns "
                f"± {a.error_ns} ns) by {abs(value - a.offset_ns)} ns"
            )
    if user_offset is not None:
        a.note += f"; user offset {user_offset} ns checked against it"


#: How long after a wait ends a sampler may take to see it ended (several periods, stalls).
END_LAG_NS = 50_000_000


class _Score:
    """How well an offset explains what the samples show, given perf's syscalls.

    Points: a waiting run whose first sample falls inside a syscall its leaf makes; a
    waiting run that ends shortly after such a syscall ended (a periodic workload can line up
    starts one period off, but not starts and ends together); a running run (Python or C on
    CPU) whose first sample falls outside every long syscall of its thread (a wrong offset
    puts running samples inside waits). Ties go to the smaller typical sampling lag.
    """

    def __init__(self, pairs: list, runs: pd.DataFrame, perf_b: pd.DataFrame) -> None:
        self.ts = np.array([p[1] for p in pairs], np.float64)
        self.end = self.ts + np.array([p[2] for p in pairs], np.float64)
        self.s0 = np.array([p[4] for p in pairs], np.float64)
        self.s1 = np.array([p[5] for p in pairs], np.float64)
        keys = {}
        self.rid = np.array([keys.setdefault((p[0], p[1]), len(keys)) for p in pairs])
        self.n_runs = len(keys)
        busy = runs[~runs["blocking"].astype(bool)]
        self.n_busy = len(busy)
        self.busy = {t: g["ts"].to_numpy(np.float64) for t, g in busy.groupby("tid")}
        self.waits = {
            t: (g["start"].to_numpy(np.float64), g["end"].to_numpy(np.float64))
            for t, g in perf_b.sort_values("start").groupby("tid")
        }

    def candidates(self) -> np.ndarray:
        """Offsets putting a waiting run's first sample at a matching syscall's start."""
        c = np.unique(self.s0 - self.ts)
        return np.random.default_rng(0).choice(c, 4000, replace=False) if len(c) > 4000 else c

    def value(self, o: float) -> tuple[int, float]:
        start = self.ts + o
        inside = (start >= self.s0) & (start <= self.s1)
        ends = (self.end + o >= self.s1) & (self.end + o <= self.s1 + END_LAG_NS)
        good = len(np.unique(self.rid[inside])) + len(np.unique(self.rid[ends]))
        for tid, x in self.busy.items():
            w = self.waits.get(tid)
            if w is None:
                good += len(x)
                continue
            i = np.searchsorted(w[0], x + o, "right") - 1
            good += int((~((i >= 0) & (x + o < w[1][np.maximum(i, 0)]))).sum())
        lag = float(np.median(start[inside] - self.s0[inside])) if inside.any() else np.inf
        return good, lag

    def best(self, cands: np.ndarray) -> float:
        scored = [(*self.value(o), o) for o in cands]
        good, lag, o = max(scored, key=lambda x: (x[0], -x[1]))
        return float(o)


#: Floor of the error: py-spy stamps a sample when it processes it, a fraction of a ms after
#: reading the stack (measured median 0.4 ms).
PYSPY_LAG_NS = 1_000_000


def _most_consistent(
    lower: np.ndarray, upper: np.ndarray, floor: int = PYSPY_LAG_NS
) -> tuple[int, int, int, int]:
    """The offsets satisfying the most bounds (o >= lower_i, o <= upper_i): their middle,
    half-width (at least *floor*), how many bounds hold, and the largest miss (ns)."""
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
        max(int(round((b - a) / 2)), floor),
        int(best),
        int(misses.max()) if len(misses) else 0,
    )


def fallback(name: str, anchor_ns: int | None, user_offset: int | None, why: str) -> Alignment:
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


def align_perf_to_go(
    perf: SourceTables, go: SourceTables, go_offset: int = 0, go_error: int = 64
) -> Alignment:
    """perf on its own clock (recorded without -k) onto a Go trace's CLOCK_MONOTONIC.

    Every syscall a thread makes inside a Go syscall or cgo span lies inside that span on
    the same thread (M id = TID): long perf syscalls are paired with Go spans of similar
    length on their thread to vote a rough offset, then every perf syscall inside a span under
    it bounds the offset from both sides (span start <= syscall start, syscall end <= span
    end); the estimate is the middle of the offsets satisfying the most bounds.
    """
    name = perf.meta.source
    g = go.slices[go.slices["kind"] == "go.syscall"]
    p = perf.slices[perf.slices["kind"] == "os.syscall"]
    edge = column(p, "slices", "start_unknown") | column(p, "slices", "end_unknown")
    p = p[~edge.to_numpy(bool)]
    tids = set(g["tid"]) & set(p["tid"])
    if not tids:
        return Alignment(
            name, None, "none", None, note="no thread in common between perf and the Go trace"
        )
    rough = _rough_vote(g, p, tids, go_offset)
    if rough is None:
        return Alignment(
            name, None, "none", None, note="no long syscalls to match between perf and the Go trace"
        )
    lower, upper = _span_bounds(g, p, tids, go_offset, rough)
    if not lower:
        return Alignment(name, rough, "event-matching", 50_000, note="rough vote only")
    offset, err, satisfied, violated = _most_consistent(
        np.array(lower, float), np.array(upper, float), floor=go_error
    )
    return Alignment(
        name,
        offset,
        "event-matching",
        err + go_error,
        support=len(lower),
        residual_ns=violated,
        note=f"perf syscalls matched inside Go syscall/cgo spans on {len(tids)} "
        f"thread(s); {satisfied} of {2 * len(lower)} bounds agree",
    )


def _rough_vote(g: pd.DataFrame, p: pd.DataFrame, tids: set, go_offset: int) -> int | None:
    """The offset most pairs of long (5 ms+) Go spans and perf syscalls of similar length on
    one thread vote for, to 50 us (None: no such pair)."""
    votes = []
    for tid in tids:
        gl = g[(g["tid"] == tid) & (g["dur"] >= 5_000_000)]
        pl = p[(p["tid"] == tid) & (p["dur"] >= 5_000_000)]
        if gl.empty or pl.empty:
            continue
        gd, pd_ = gl["dur"].to_numpy(), pl["dur"].to_numpy()
        similar = np.abs(gd[:, None] - pd_[None, :]) <= 0.1 * gd[:, None] + 1_000_000
        d = (gl["ts"].to_numpy()[:, None] + go_offset) - pl["ts"].to_numpy()[None, :]
        votes.append(d[similar])
    votes = np.concatenate(votes) if votes else np.zeros(0)
    if not len(votes):
        return None
    bins = np.floor(votes / 50_000).astype(np.int64)
    vals, counts = np.unique(bins, return_counts=True)
    return int((vals[np.argmax(counts)] + 0.5) * 50_000)


def _span_bounds(
    g: pd.DataFrame, p: pd.DataFrame, tids: set, go_offset: int, rough: int
) -> tuple[list, list]:
    """(lower, upper) bounds on the offset: for each perf syscall of 1 ms or more, the span
    of its thread that covers 90 % of it under the rough offset (the one starting last
    before its middle) gives span start - syscall start <= offset <= span end - syscall end.
    Only long syscalls: a short one near a tiny span (a runtime futex beside a 2 us cgo call)
    can be paired wrongly under the rough offset; a long one fits inside exactly one span."""
    lower, upper = [], []
    for tid in tids:
        gt = g[g["tid"] == tid].sort_values("ts")
        gs = gt["ts"].to_numpy() + go_offset
        ge = gs + gt["dur"].to_numpy()
        pt = p[(p["tid"] == tid) & (p["dur"] >= 1_000_000)]
        ps, pe = pt["ts"].to_numpy(), pt["ts"].to_numpy() + pt["dur"].to_numpy()
        mid = (ps + pe) // 2 + rough
        i = np.searchsorted(gs, mid, "right") - 1
        ic = np.maximum(i, 0)
        cover = np.minimum(ge[ic], pe + rough) - np.maximum(gs[ic], ps + rough)
        ok = (i >= 0) & (cover >= 0.9 * (pe - ps))
        lower += (gs[ic[ok]] - ps[ok]).tolist()
        upper += (ge[ic[ok]] - pe[ok]).tolist()
    return lower, upper


def pids_from_go(
    perf: SourceTables, go: SourceTables, perf_offset: int | None, go_offset: int | None
) -> dict[int, int]:
    """Give perf's threads that have no pid the Go trace's, when the Go trace runs them.

    perf script text names a thread's process only in its fork, comm and exit records (its
    sample lines print the tid alone, unless ``-F`` asks for the pid), and those are printed
    only with ``--show-task-events``; a perf that loses records (a full buffer) can also
    lose all three. The thread's rows then say pid -1 while the Go trace, whose process is
    known, has that thread as one of its Ms. Two processes cannot run one tid at once, so
    within the recordings the thread is the Go process's: when both are on the reference
    clock (*perf_offset*, *go_offset*) and their slices overlap in time.

    Fills ``pid`` in perf's threads, slices and instants and ``waker_pid`` in its instants
    (each a new column, in place) and returns {tid: pid} of the threads named, for the
    warning that says so.
    """
    go_pids = set(go.threads["pid"].tolist()) - {-1}
    if len(go_pids) != 1 or not len(perf.threads):
        return {}
    (pid,) = go_pids
    th = perf.threads
    nameless = th["tid"].to_numpy(np.int64)[th["pid"].to_numpy(np.int64) == -1]
    tids = np.intersect1d(nameless, go.threads["tid"].to_numpy(np.int64))
    if not len(tids) or not _overlap(perf, perf_offset, go, go_offset):
        return {}
    for table, pid_col, tid_col in (
        ("threads", "pid", "tid"),
        ("slices", "pid", "tid"),
        ("instants", "pid", "tid"),
        ("instants", "waker_pid", "waker_tid"),
    ):
        df = getattr(perf, table)
        if pid_col not in df.columns or tid_col not in df.columns:
            continue
        col = df[pid_col]
        unknown = col.to_numpy(np.int64, na_value=-1) == -1  # -1, or NA where nullable
        fill = unknown & np.isin(df[tid_col].to_numpy(np.int64, na_value=-1), tids)
        if fill.any():
            col = col.copy()
            col[fill] = pid
            df[pid_col] = col
    return dict.fromkeys(tids.tolist(), pid)


def _overlap(a: SourceTables, a_offset: int | None, b: SourceTables, b_offset: int | None) -> bool:
    """Do two sources' slices share some time on the reference clock?"""
    spans = []
    for s, offset in ((a, a_offset), (b, b_offset)):
        if offset is None or not len(s.slices):
            return False
        ts = s.slices["ts"].to_numpy(np.int64)
        end = int((ts + s.slices["dur"].to_numpy(np.int64)).max())
        spans.append((int(ts.min()) + offset, end + offset))
    (a0, a1), (b0, b1) = spans
    return a0 <= b1 and b0 <= a1


#: the source kinds the policy tells apart
KINDS = {
    "go": ("go-trace",),
    "perf": ("perf-script", "perf-data"),
    "pyspy": ("pyspy-chrometrace", "pyspy-speedscope", "pyspy-raw"),
}


@dataclass
class Policy:
    """The outcome of ``align_sources``: every source's alignment, the sources the correlator
    works on (the first Go trace and the first perf recording; every py-spy recording), and
    the warnings that choice and the alignment gave."""

    alignments: dict[str, Alignment]
    go: SourceTables | None
    perf: SourceTables | None
    pyspy: list[SourceTables]
    warnings: list[str]
    sources: list[SourceTables] = field(default_factory=list)  # on perf's thread ids
    blind: list[str] = field(default_factory=list)  # what the sources cannot be joined on


def align_sources(
    sources: list[SourceTables],
    anchors: dict[str, int | None],
    pyspy_offset_ns: int | None = None,
    recorded_threads: dict[str, dict] | None = None,
) -> Policy:
    """The alignment policy: a source on CLOCK_MONOTONIC is on the reference clock; perf on
    its own clock is matched to an aligned Go trace (else it is the reference itself); py-spy
    with timestamps is matched to perf (else its anchor, *anchors* by source, or the user's
    offset); anything else is left unaligned, and said so.

    Thread ids too: a Go trace or py-spy recording whose ids are another PID namespace's is
    put onto perf's, by the NSpid chains the capture recorded (*recorded_threads*, by
    source), else, for a Go trace, by matching its syscalls with perf's (``threadmap``)."""
    kinds = {k: [s for s in sources if s.meta.kind in v] for k, v in KINDS.items()}
    perfs = kinds["perf"]
    perf = perfs[0] if perfs else None
    maps = _recorded_maps(sources, perf, recorded_threads or {})
    sources = [threadmap.apply(s, maps.get(s.meta.source, ThreadMap("", ""))) for s in sources]
    kinds = {k: [s for s in sources if s.meta.kind in v] for k, v in KINDS.items()}
    gos, pys = kinds["go"], kinds["pyspy"]
    warnings: list[str] = []
    alignments = {s.meta.source: a for s in sources if (a := shared_clock(s)) is not None}
    if len(perfs) > 1:
        warnings.append(f"{len(perfs)} perf sources: only {perfs[0].meta.source} is correlated")
    if perf is not None and perf.meta.source not in alignments:
        alignments[perf.meta.source] = _perf_alignment(perf, gos, alignments)
    if gos and perf is not None and gos[0].meta.source not in maps:
        sources, gos = _map_go(sources, gos, perf, alignments, maps)
    for k, s in enumerate(pys):
        if s.meta.source not in maps and (tm := _pyspy_threads(s, perf, alignments, anchors)):
            maps[s.meta.source] = tm
            pys[k] = threadmap.apply(s, tm)
            sources = [pys[k] if x is s else x for x in sources]
        alignments[s.meta.source] = _pyspy_alignment(
            pys[k], perf, alignments, anchors.get(s.meta.source), pyspy_offset_ns
        )
    for s in sources:
        note = f"clock {s.clock.clock_id}: not aligned"
        alignments.setdefault(
            s.meta.source, Alignment(s.meta.source, None, "none", None, note=note)
        )
    for name, tm in maps.items():
        alignments[name].threads = tm
        alignments[name].warnings += tm.warnings
    for a in alignments.values():
        warnings += [f"{a.source}: {w}" for w in a.warnings]
        if a.offset_ns is None and a.method == "none":
            warnings.append(f"{a.source}: not on the reference clock ({a.note})")
    go = gos[0] if gos else None
    if len(gos) > 1:
        warnings.append(f"{len(gos)} Go traces: only {gos[0].meta.source} is correlated")
    if go is not None and perf is not None:
        warnings += _pids_named_by_go(perf, go, alignments)
    blind = _blind(go, pys, perf, alignments)
    return Policy(alignments, go, perf, pys, warnings, sources, blind)


def _blind(
    go: SourceTables | None,
    pys: list[SourceTables],
    perf: SourceTables | None,
    alignments: dict[str, Alignment],
) -> list[str]:
    """What the sources cannot be joined on: a Go trace or py-spy recording whose threads
    or clock perf cannot be matched to, and perf stacks whose DSOs cannot be read here."""
    if perf is None:
        return []
    others = ([go] if go is not None else []) + pys
    blind = [b for s in others if (b := unjoined(s, perf, alignments)) is not None]
    if (d := unreadable_dsos(perf)) is not None:
        blind.append(d)
    return blind


def unreadable_dsos(perf: SourceTables) -> str | None:
    """The perf.data reader's word that no user-space DSO its stacks touch could be read
    here (a container's paths, another machine's files), as the report's first line."""
    symbols = perf.meta.extra.get("symbols")
    note = symbols.get("unreadable") if isinstance(symbols, dict) else None
    return f"{perf.meta.source}: {note}" if note else None


def _map_go(sources, gos, perf, alignments, maps) -> tuple[list, list]:
    """The first Go trace put onto perf's thread ids (its map into *maps*)."""
    maps[gos[0].meta.source] = _go_threads(gos[0], perf, alignments)
    mapped = threadmap.apply(gos[0], maps[gos[0].meta.source])
    return [mapped if s is gos[0] else s for s in sources], [mapped, *gos[1:]]


def _recorded_maps(
    sources: list[SourceTables], perf: SourceTables | None, recorded: dict[str, dict]
) -> dict[str, ThreadMap]:
    """The capture's NSpid maps of the Go and py-spy sources that speak namespace ids."""
    out = {}
    for s in sources:
        if perf is None or s.meta.kind not in KINDS["go"] + KINDS["pyspy"]:
            continue
        kind = "Go trace" if s.meta.kind in KINDS["go"] else "py-spy"
        tm = threadmap.from_nspid(s, recorded.get(s.meta.source) or {}, kind)
        if tm is not None:
            out[s.meta.source] = tm
    return out


def _go_threads(go: SourceTables, perf: SourceTables, alignments: dict) -> ThreadMap:
    """The Go trace's thread map onto perf, from their syscalls when both are on the
    reference clock (a clock estimated from the threads cannot map the threads)."""
    ga, pa = alignments.get(go.meta.source), alignments.get(perf.meta.source)
    if ga is None or pa is None or ga.offset_ns is None or pa.offset_ns is None:
        return ThreadMap(go.meta.source, "same-threads", note="not checked: not on one clock")
    if pa.method == "event-matching":
        return ThreadMap(go.meta.source, "same-threads", note="perf was aligned on these tids")
    slack = (ga.error_ns or 0) + (pa.error_ns or 0) + threadmap.EDGE_SLACK_NS
    return threadmap.infer(go, perf, ga.offset_ns, pa.offset_ns, slack)


def unjoined(src: SourceTables, perf: SourceTables, alignments: dict) -> str | None:
    """Why *src* and perf cannot be joined (no thread both saw at overlapping times), with
    the likely cause and the fix; None when they share one."""
    a, pa = alignments.get(src.meta.source), alignments.get(perf.meta.source)
    offsets = (a.offset_ns if a else None, pa.offset_ns if pa else None)
    shared = _threads_in_common(src, offsets[0], perf, offsets[1])
    if shared or not len(src.slices) or not len(perf.slices):
        return None
    kind = "the Go trace" if src.meta.kind in KINDS["go"] else "py-spy"
    return (
        f"{src.meta.source} and {perf.meta.source} share no OS thread at overlapping times: "
        f"nothing of {kind} can be joined to perf, so zero records here does not mean no "
        f"blocking. Likely: the service ran in its own PID namespace (a container) and its "
        f"thread ids could not be mapped, perf ran on another host or over another window, "
        f"or the clocks differ. Fix: record with `tracecorr capture --pid HOST_PID` on the "
        f"node (it reads NSpid), and perf with -k CLOCK_MONOTONIC"
    )


def _threads_in_common(
    a: SourceTables, a_offset: int | None, b: SourceTables, b_offset: int | None
) -> int:
    """How many OS threads both sources have slices on, over times that overlap."""
    if a_offset is None or b_offset is None:
        return 0
    spans = []
    for s, off in ((a, a_offset), (b, b_offset)):
        sl = s.slices[(s.slices["tid"] > 0).to_numpy(bool)]
        ts = sl["ts"].to_numpy(np.int64) + off
        g = pd.DataFrame({"tid": sl["tid"].to_numpy(np.int64), "ts": ts,
                          "end": ts + sl["dur"].to_numpy(np.int64)})  # fmt: skip
        spans.append(g.groupby("tid").agg(lo=("ts", "min"), hi=("end", "max")))
    j = spans[0].add_suffix("_a").join(spans[1].add_suffix("_b"), how="inner")
    return int(((j["lo_a"] <= j["hi_b"]) & (j["lo_b"] <= j["hi_a"])).sum())


def _perf_alignment(
    perf: SourceTables, gos: list[SourceTables], alignments: dict[str, Alignment]
) -> Alignment:
    """perf on its own clock: matched to the first aligned Go trace, else the reference."""
    aligned_go = next((g for g in gos if g.meta.source in alignments), None)
    if aligned_go is not None:
        return align_perf_to_go(perf, aligned_go)
    return Alignment(
        perf.meta.source,
        0,
        "reference",
        perf.clock.resolution_ns,
        note=f"no CLOCK_MONOTONIC source: perf's own clock "
        f"({perf.clock.clock_id}) is the reference",
    )


def _pyspy_alignment(
    s: SourceTables,
    perf: SourceTables | None,
    alignments: dict[str, Alignment],
    anchor_ns: int | None,
    user_offset: int | None,
) -> Alignment:
    if not s.meta.extra.get("timeline"):
        return Alignment(s.meta.source, None, "none", None, note="no timestamps (aggregate format)")
    if perf is not None and alignments[perf.meta.source].offset_ns is not None:
        pa = alignments[perf.meta.source]
        return align_pyspy(
            s, perf, pa.offset_ns, pa.error_ns or 0, anchor_ns=anchor_ns, user_offset=user_offset
        )
    return fallback(
        s.meta.source, anchor_ns, user_offset, "no perf recording to match py-spy against"
    )


def _pyspy_threads(
    py: SourceTables, perf: SourceTables | None, alignments: dict, anchors: dict
) -> ThreadMap | None:
    """py-spy's thread map onto perf when none of its threads is one of perf's (py-spy run
    inside a container speaks namespace tids): None when they share ids or cannot be told."""
    if perf is None or not py.meta.extra.get("timeline"):
        return None
    pa = alignments.get(perf.meta.source)
    if pa is None or pa.offset_ns is None:
        return None
    runs = _runs(py)
    blk = runs[runs["blocking"] & (runs["dur"] >= MIN_BLOCK_NS)]
    perf_b = _perf_blocks(perf, pa.offset_ns)
    if not len(blk) or not len(perf_b) or set(blk["tid"]) & set(perf_b["tid"]):
        return None
    return pyspy_thread_map(py, blk, runs, perf_b)


def _waits_explained(score: _Score, o: float) -> int:
    """Waiting runs an offset explains on one thread pair: first sample inside a syscall the
    leaf makes, and the run ending shortly after that syscall ended (both, not either)."""
    start, end = score.ts + o, score.end + o
    inside = (start >= score.s0) & (start <= score.s1)
    ends = (end >= score.s1) & (end <= score.s1 + END_LAG_NS)
    return len(np.unique(score.rid[inside & ends]))


def _pair_scores(blk: pd.DataFrame, runs: pd.DataFrame, perf_b: pd.DataFrame) -> dict:
    """{(py tid, host tid): (_Score, its best offset)} for every pair where the py-spy
    thread's waits could be the host thread's syscalls."""
    out = {}
    for tid, r in blk.groupby("tid"):
        for host in perf_b["tid"].unique().tolist():
            pairs = _run_syscall_pairs(r.assign(tid=host), perf_b, {host})
            if not pairs:
                continue
            sc = _Score(
                pairs, runs[runs["tid"] == tid].assign(tid=host), perf_b[perf_b["tid"] == host]
            )
            cands = sc.candidates()
            best = max(cands, key=lambda o: (_waits_explained(sc, o), -abs(o - cands[0])))
            out[(int(tid), int(host))] = (sc, float(best))
    return out


def pyspy_thread_map(
    py: SourceTables, blk: pd.DataFrame, runs: pd.DataFrame, perf_b: pd.DataFrame
) -> ThreadMap:
    """Each py-spy thread onto the perf thread whose syscalls its waits are. Clock and threads
    are both unknown: each (py-spy thread, host thread) pair gives its own best offset; the
    true pairs agree on one (a process has one clock), so the offset most explained waits
    agree on is taken, and at it each py-spy thread goes to the host thread that explains
    most of its waits (``threadmap``'s rules: mutual best, one process, ambiguity refused)."""
    scores = _pair_scores(blk, runs, perf_b)
    offsets = sorted({o for _, o in scores.values()})
    if not offsets:
        tm = ThreadMap(py.meta.source, "none", note="no py-spy wait fits a perf syscall")
        tm.warnings += threadmap.said(tm, "py-spy", "thread")
        return tm
    total = {o: sum(_waits_explained(sc, o) for sc, _ in scores.values()) for o in offsets}
    rough = max(offsets, key=lambda o: total[o])
    host_pid = perf_b.groupby("tid")["pid"].first()
    pairs = [
        threadmap.Pair(p, h, int(host_pid[h]), n, 0, 0)
        for (p, h), (sc, _) in scores.items()
        if (n := _waits_explained(sc, rough))
    ]
    taken, ambiguous = threadmap.assign(
        threadmap.one_process(pairs), threadmap.PYSPY_AMBIGUOUS_SHARE
    )
    note = f"waiting runs matched to perf syscalls, both ends, at offset {int(rough)} ns"
    return threadmap.mapped(py, taken, ambiguous, "py-spy", "thread", note)


def _pids_named_by_go(
    perf: SourceTables, go: SourceTables, alignments: dict[str, Alignment]
) -> list[str]:
    named = pids_from_go(
        perf, go, alignments[perf.meta.source].offset_ns, alignments[go.meta.source].offset_ns
    )
    if not named:
        return []
    tids = ", ".join(map(str, sorted(named)[:5])) + (", ..." if len(named) > 5 else "")
    return [
        f"{perf.meta.source}: {len(named)} thread(s) with no pid in perf's records "
        f"(tid {tids}; no fork, comm or exit record of theirs was kept or printed): "
        f"{go.meta.source} runs them, so they are taken as pid "
        f"{next(iter(named.values()))}'s"
    ]
