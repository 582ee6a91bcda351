"""One set of OS threads: a source's thread ids put onto perf's (the host's), and how we know.

Inside a PID namespace (a container) ``gettid()`` returns the namespace's ids: the Go
runtime's M ids and py-spy's thread ids are namespace tids, while perf, recording on the node,
records host tids. Every join the correlator makes is by thread and time, so a source on other
ids joins nothing, and says nothing: a silent zero. This module maps them, by one of:

    same-threads      the source's tids are perf's: its syscall spans and perf's syscalls on
                      the same tid agree (or there is nothing to check them with)
    capture-nspid     ``tracecorr capture`` read every thread's ``NSpid`` chain from
                      ``/proc/P/task/*/status`` while it recorded: exact
    syscall-matching  inferred. The Go trace and perf share the kernel's CLOCK_MONOTONIC (a
                      container does not have its own), so every syscall perf saw on the host
                      thread of an M lies inside one of that M's Go syscall / cgo spans, and
                      none crosses a span's edge. Each (M, host thread) pair is scored by the
                      perf syscalls inside the M's spans (support) and those crossing an edge
                      (contradictions); a pair is taken when each is the other's best, the
                      contradictions are rare, and no other thread fits almost as well; an M
                      that two host threads fit equally well is refused, not guessed.
    none              nothing could be mapped; said so in a warning

An M left unmapped keeps no namespace tid: it is given ``-tid`` so that it can never join a
host thread that happens to have its number (ns tid 1 is the host's init).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..parsers.model import SourceTables, column

#: a pair fits when its contradictions are at most this share of its support (perf loses
#: records now and then, and a lost sys_exit makes a syscall look longer than it was)
MAX_CONTRADICTION_SHARE = 0.02
#: an M's runner-up host thread with at least this share of the best one's support, and
#: fitting, makes the match ambiguous
AMBIGUOUS_SHARE = 0.5
#: py-spy's evidence is fewer, stronger events (a wait matched at both ends): a tie is closer
PYSPY_AMBIGUOUS_SHARE = 0.75
#: a pair needs this many perf syscalls inside its spans to be taken at all
MIN_SUPPORT = 3
#: slack at span edges beyond the sources' clock errors (the Go trace stamps 64 ns ticks)
EDGE_SLACK_NS = 1_000


@dataclass
class ThreadMap:
    """How *source*'s thread ids were put onto perf's: *tids* maps every id that changes
    (namespace tid -> host tid; unmapped ones -> -tid), *pid* the process id likewise."""

    source: str
    method: str  # same-threads | capture-nspid | syscall-matching | none
    tids: dict[int, int] = field(default_factory=dict)
    pids: dict[int, int] = field(default_factory=dict)
    support: int = 0  # perf syscalls that back the mapping
    contradictions: int = 0  # perf syscalls crossing a mapped span's edge
    residual_ns: int | None = None  # the largest such crossing
    ambiguous: dict[int, list[int]] = field(default_factory=dict)  # M -> host threads tied
    unmapped: list[int] = field(default_factory=list)
    note: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return bool(self.tids or self.pids)

    def as_dict(self) -> dict:
        mapped = {k: v for k, v in self.tids.items() if v >= 0}
        return {
            "method": self.method,
            "mapped": len(mapped),
            "tids": {str(k): v for k, v in sorted(mapped.items())},
            "pids": {str(k): v for k, v in sorted(self.pids.items())},
            "support": self.support,
            "contradictions": self.contradictions,
            "residual_ns": self.residual_ns,
            "ambiguous": {str(k): v for k, v in sorted(self.ambiguous.items())},
            "unmapped": sorted(self.unmapped),
            "note": self.note,
        }


# --- evidence ------------------------------------------------------------------------------


@dataclass
class Syscalls:
    """perf's complete syscalls on the reference clock, sorted by thread: the evidence."""

    tid: np.ndarray
    pid: np.ndarray
    start: np.ndarray
    end: np.ndarray

    @classmethod
    def of(cls, perf: SourceTables, offset: int, window: tuple[int, int]) -> Syscalls:
        s = perf.slices
        edge = column(s, "slices", "start_unknown") | column(s, "slices", "end_unknown")
        keep = ((s["kind"] == "os.syscall").to_numpy(bool)) & ~edge.to_numpy(bool)
        start = s["ts"].to_numpy(np.int64)[keep] + offset
        end = start + s["dur"].to_numpy(np.int64)[keep]
        inside = (end >= window[0]) & (start <= window[1])
        tid, pid = s["tid"].to_numpy(np.int64)[keep], s["pid"].to_numpy(np.int64)[keep]
        order = np.argsort(tid[inside], kind="stable")
        return cls(*(a[inside][order] for a in (tid, pid, start, end)))

    def threads(self) -> np.ndarray:
        return np.unique(self.tid)

    def of_thread(self, tid: int) -> Syscalls:
        lo, hi = np.searchsorted(self.tid, [tid, tid + 1])
        return Syscalls(*(a[lo:hi] for a in (self.tid, self.pid, self.start, self.end)))


def go_spans(go: SourceTables, offset: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each M's Go syscall / cgo spans (start, end) on the reference clock, sorted."""
    s = go.slices[(go.slices["kind"] == "go.syscall").to_numpy(bool)]
    s = s[(s["tid"] >= 0).to_numpy(bool)]
    out = {}
    for tid, g in s.groupby("tid", sort=True):
        g = g.sort_values("ts", kind="stable")
        start = g["ts"].to_numpy(np.int64) + offset
        out[int(tid)] = (start, start + g["dur"].to_numpy(np.int64))
    return out


def score(
    spans: tuple[np.ndarray, np.ndarray], sc: Syscalls, slack: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per syscall in *sc*: inside one of *spans*, crossing a span's edge, and by how much it
    crosses (0 where it does not)."""
    gs, ge = spans
    i = np.searchsorted(gs, sc.start, "right") - 1
    ic = np.maximum(i, 0)
    has = i >= 0
    inside = has & (sc.end <= ge[ic] + slack)
    out_end = has & (sc.start < ge[ic] - slack) & (sc.end > ge[ic] + slack)
    j = np.minimum(i + 1, len(gs) - 1)
    nxt = i + 1 < len(gs)
    over_next = nxt & (sc.start < gs[j] - slack) & (sc.end > gs[j] + slack)
    crossing = out_end | over_next
    by = np.where(out_end, sc.end - ge[ic], 0)
    by = np.maximum(by, np.where(over_next, np.minimum(sc.end, ge[j]) - gs[j], 0))
    return inside & ~over_next, crossing, by


@dataclass
class Pair:
    m: int
    host: int
    pid: int
    support: int
    contradictions: int
    residual_ns: int

    @property
    def fits(self) -> bool:
        return (
            self.support >= MIN_SUPPORT
            and self.contradictions <= MAX_CONTRADICTION_SHARE * self.support
        )


def pairs_for(m: int, spans, sc: Syscalls, slack: int) -> list[Pair]:
    """Every host thread's score against M *m*'s spans (threads with support only)."""
    inside, crossing, by = score(spans, sc, slack)
    threads, first = np.unique(sc.tid, return_index=True)
    idx = np.searchsorted(threads, sc.tid)
    sup = np.bincount(idx, weights=inside, minlength=len(threads)).astype(np.int64)
    con = np.bincount(idx, weights=crossing, minlength=len(threads)).astype(np.int64)
    worst = np.zeros(len(threads), np.int64)
    np.maximum.at(worst, idx, by)
    return [
        Pair(m, int(threads[k]), int(sc.pid[first[k]]), int(sup[k]), int(con[k]), int(worst[k]))
        for k in np.flatnonzero(sup > 0)
    ]


# --- the methods -----------------------------------------------------------------------------


def same_threads(go: SourceTables, spans: dict, sc: Syscalls, slack: int) -> tuple[bool, int, int]:
    """(do the Go trace's Ms agree with perf's threads of the same tid, support, contradictions).
    True also when there is nothing to check (no syscall spans or no perf syscalls): the
    common case of one namespace must never pay for, or be hurt by, the search."""
    support = contradictions = 0
    known = set(sc.threads().tolist())
    for m, sp in spans.items():
        if m not in known:
            continue
        inside, crossing, _ = score(sp, sc.of_thread(m), slack)
        support += int(inside.sum())
        contradictions += int(crossing.sum())
    if not spans or not len(sc.tid):
        return True, 0, 0
    ok = support >= MIN_SUPPORT and contradictions <= MAX_CONTRADICTION_SHARE * support
    return ok, support, contradictions


def _best(pairs: list[Pair], key: str) -> dict[int, list[Pair]]:
    """Fitting pairs grouped by M ("m") or host thread ("host"), best support first."""
    out: dict[int, list[Pair]] = {}
    for p in pairs:
        if p.fits:
            out.setdefault(getattr(p, key), []).append(p)
    for v in out.values():
        v.sort(key=lambda p: (-p.support, p.contradictions))
    return out


def _close(ranked: list[Pair], share: float) -> bool:
    return len(ranked) > 1 and ranked[1].support >= share * ranked[0].support


def assign(
    pairs: list[Pair], share: float = AMBIGUOUS_SHARE
) -> tuple[list[Pair], dict[int, list[int]]]:
    """Mutual best fits, taken in rounds; (taken, {M: the host threads it could not choose
    between}). A runner-up with *share* of the best's support makes a tie."""
    taken: list[Pair] = []
    ambiguous: dict[int, list[int]] = {}
    left = [p for p in pairs if p.fits]
    while left:
        by_m, by_host = _best(left, "m"), _best(left, "host")
        got = []
        for m, ranked in by_m.items():
            top = ranked[0]
            if by_host[top.host][0].m != m:
                continue
            if _close(ranked, share) or _close(by_host[top.host], share):
                ambiguous[m] = [p.host for p in ranked[:3]]
                continue
            got.append(top)
        if not got:
            break
        taken += got
        done_m, done_host = {p.m for p in got}, {p.host for p in got}
        left = [p for p in left if p.m not in done_m and p.host not in done_host]
    for p in taken:
        ambiguous.pop(p.m, None)
    return taken, ambiguous


def one_process(pairs: list[Pair]) -> list[Pair]:
    """The fitting pairs of the host process most Ms fit best: the Go trace is one process, so
    a fit on another process's thread is a coincidence."""
    best = _best(pairs, "m")
    votes = pd.Series([r[0].pid for r in best.values()])
    if votes.empty:
        return []
    pid = int(votes.value_counts().index[0])
    return [p for p in pairs if p.pid == pid]


def infer(go: SourceTables, perf: SourceTables, go_offset: int, perf_offset: int, slack: int):
    """The thread map of a Go trace onto perf, by its syscalls (see the module doc)."""
    spans = go_spans(go, go_offset)
    name = go.meta.source
    if not spans:
        return ThreadMap(name, "same-threads", note="no Go syscall or cgo spans to check")
    lo = min(int(s[0][0]) for s in spans.values())
    hi = max(int(s[1].max()) for s in spans.values())
    sc = Syscalls.of(perf, perf_offset, (lo, hi))
    ok, support, contra = same_threads(go, spans, sc, slack)
    if ok:
        note = (
            f"{support} perf syscalls inside Go syscall/cgo spans of the same tids"
            if support
            else "nothing to check them with: taken as the same"
        )
        return ThreadMap(name, "same-threads", support=support, contradictions=contra, note=note)
    present = set(spans) & set(sc.threads().tolist())
    if support > contra and 2 * len(present) >= len(spans):
        # most Ms are perf threads and agree with them more than not: one namespace, and a
        # lossy perf (lost records pair sys_enter and sys_exit wrongly) now and then
        # contradicts its own threads. A search would find coincidences, not a map.
        note = (
            f"{support} perf syscalls inside Go syscall/cgo spans of the same tids, {contra} "
            f"across their edges (perf lost records?); {len(present)} of {len(spans)} Ms are "
            f"perf threads"
        )
        return ThreadMap(name, "same-threads", support=support, contradictions=contra, note=note)
    pairs = [p for m, sp in spans.items() for p in pairs_for(m, sp, sc, slack)]
    taken, ambiguous = assign(one_process(pairs))
    return _inferred(go, spans, taken, ambiguous, support, contra)


def _inferred(go, spans, taken, ambiguous, id_support, id_contra) -> ThreadMap:
    note = (
        f"the Go trace's thread ids are not perf's (same tids: {id_support} syscalls inside "
        f"spans, {id_contra} across their edges); {len(taken)} of {len(spans)} Ms with "
        f"syscall spans matched to host threads by their syscalls"
    )
    return mapped(go, taken, ambiguous, "Go trace", "M", note, evidence=set(spans))


def mapped(
    src: SourceTables,
    taken: list[Pair],
    ambiguous: dict[int, list[int]],
    what: str,
    unit: str,
    note: str,
    evidence: set[int] | None = None,
) -> ThreadMap:
    """The map of *src* from the pairs taken: every other thread of *src* goes to -tid
    (listed as unmapped when it had *evidence*, all of them when None), its process to the
    host process of the pairs."""
    tids = {p.m: p.host for p in taken}
    unmapped = sorted(set(source_threads(src)) - set(tids))
    tids.update({m: -m for m in unmapped})
    pids = {}
    ns_pids = set(src.threads["pid"].tolist())
    if taken and len(ns_pids) == 1 and (ns_pid := int(ns_pids.pop())) != taken[0].pid:
        pids = {ns_pid: taken[0].pid}
    tm = ThreadMap(
        src.meta.source,
        "syscall-matching" if taken else "none",
        {k: v for k, v in tids.items() if k != v},
        pids,
        support=sum(p.support for p in taken),
        contradictions=sum(p.contradictions for p in taken),
        residual_ns=max((p.residual_ns for p in taken), default=None),
        ambiguous=ambiguous,
        unmapped=[m for m in unmapped if evidence is None or m in evidence],
        note=note,
    )
    tm.warnings += said(tm, what, unit)
    return tm


def said(tm: ThreadMap, what: str, unit: str) -> list[str]:
    """The warnings a map gives: inferred, ambiguous, or nothing matched."""
    out = []
    if tm.method == "syscall-matching":
        out.append(
            f"{what} thread ids are another PID namespace's (a container?): "
            f"{len([v for v in tm.tids.values() if v >= 0])} mapped to perf's host threads "
            f"by {tm.method} ({tm.support} syscalls agree, {tm.contradictions} do not)"
        )
    if tm.ambiguous:
        amb = "; ".join(
            f"{unit} {m}: host {', '.join(map(str, h))}" for m, h in tm.ambiguous.items()
        )
        out.append(
            f"{len(tm.ambiguous)} {unit}(s) fit several host threads equally well and are left "
            f"unmapped rather than guessed ({amb}): record with `tracecorr capture` (it reads "
            f"NSpid) to map them exactly"
        )
    if tm.method == "none":
        out.append(
            f"{what} thread ids match no perf thread, and no host thread's syscalls fit them: "
            f"nothing of it is joined to perf (another PID namespace without enough syscalls "
            f"to match, perf on another host, or a clock mismatch)"
        )
    return out


def source_threads(src: SourceTables) -> list[int]:
    return sorted({int(t) for t in src.threads["tid"].tolist() if t >= 0})


# --- recorded by the capture ---------------------------------------------------------------


def from_nspid(src: SourceTables, recorded: dict, kind: str) -> ThreadMap | None:
    """The map ``tracecorr capture`` recorded (capture.json ``threads``), if *src*'s ids are the
    namespace's: None when the process is in our own namespace, or *src* already has host ids.
    Threads the capture never saw (started and gone between its looks) stay unmapped."""
    tasks = {int(k): [int(x) for x in v] for k, v in recorded.get("tasks", {}).items()}
    if not tasks or all(len(c) < 2 for c in tasks.values()):
        return None
    inner = {c[-1]: c[0] for c in tasks.values()}  # innermost namespace tid -> host tid
    have = set(int(t) for t in src.threads["tid"].tolist() if t >= 0)
    if len(have & set(inner)) <= len(have & set(tasks)):
        return None  # the source already speaks host ids
    chain = [int(x) for x in recorded.get("pid_chain", [])]
    tids = {t: inner.get(t, -t) for t in have}
    tm = ThreadMap(
        src.meta.source,
        "capture-nspid",
        {k: v for k, v in tids.items() if k != v},
        {chain[-1]: chain[0]} if len(chain) > 1 else {},
        support=len(have & set(inner)),
        unmapped=sorted(have - set(inner)),
        note=f"NSpid of {len(tasks)} thread(s) read from /proc by the capture; "
        f"{len(have & set(inner))} of the {kind}'s {len(have)} thread(s) mapped",
    )
    if tm.unmapped:
        tm.warnings.append(
            f"{len(tm.unmapped)} {kind} thread(s) the capture never saw in /proc "
            f"(namespace tid {', '.join(map(str, tm.unmapped[:5]))}): left unmapped"
        )
    return tm


# --- applying a map --------------------------------------------------------------------------

#: (table, id column, kind) of every thread and process id a canonical table holds
ID_COLUMNS = (
    ("threads", "tid", "tid"),
    ("threads", "pid", "pid"),
    ("slices", "tid", "tid"),
    ("slices", "pid", "pid"),
    ("instants", "tid", "tid"),
    ("instants", "pid", "pid"),
    ("instants", "waker_tid", "tid"),
    ("instants", "waker_pid", "pid"),
    ("instants", "parent_tid", "tid"),
    ("instants", "parent_pid", "pid"),
    ("instants", "thief_tid", "tid"),
)


def apply(src: SourceTables, tm: ThreadMap) -> SourceTables:
    """*src* with its thread and process ids put onto perf's (a copy; *src* is unchanged)."""
    if not tm.changes:
        return src
    tables = {name: getattr(src, name) for name in ("threads", "slices", "instants")}
    for table, col, kind in ID_COLUMNS:
        df = tables[table]
        if col not in df.columns:
            continue
        tables[table] = df.assign(**{col: _mapped(df[col], tm.tids if kind == "tid" else tm.pids)})
    return SourceTables(
        src.meta, src.clock, tables["threads"], tables["slices"], tables["instants"],
        src.stacks, src.args,
    )  # fmt: skip


def _mapped(col: pd.Series, mapping: dict[int, int]) -> pd.Series:
    if not mapping:
        return col
    keys = np.fromiter(mapping.keys(), np.int64)
    vals = np.fromiter(mapping.values(), np.int64)
    order = np.argsort(keys)
    keys, vals = keys[order], vals[order]
    na = col.isna().to_numpy() if col.dtype != np.int64 else np.zeros(len(col), bool)
    x = col.to_numpy(np.int64, na_value=0) if col.dtype != np.int64 else col.to_numpy()
    i = np.minimum(np.searchsorted(keys, x), len(keys) - 1)
    hit = (keys[i] == x) & ~na
    out = np.where(hit, vals[i], x)
    if col.dtype == np.int64:
        return pd.Series(out, index=col.index, name=col.name)
    return pd.Series(pd.array(np.where(na, 0, out), dtype=col.dtype), index=col.index).mask(na)
