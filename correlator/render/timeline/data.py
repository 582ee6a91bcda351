"""An Analysis as the timeline page's data: lanes, every slice as compact columns, the
blocking records with their stacks and wakers, the findings and the blocked-time tree.

Nothing is dropped: every aligned slice is shipped, and the page decides per lane and per
zoom level whether to draw the exact slices or per-pixel-column aggregates. To keep 4 M
slices small, the slices are sorted by start and stored as columns of small integers:

    start  ns since the previous slice's start
    dur    ns
    cls    class: kind, and for off-CPU intervals their state (see CLASSES)
    tt     thread track: thread lane * 3 + row (0 goroutine / py-spy, 1 syscall, 2 off-CPU)
    gi     goroutine index into ``goroutines.ids``
    nm     name code into ``names``

A column is stored as byte planes (byte 0 of every value, then byte 1, ...: the high bytes of
small numbers are long runs that deflate well) in as few bytes as its values need: codes in
as many as their count takes, the largest value meaning "none"; start and dur in as many as
hold all but ESCAPE_SHARE of them (2 and 3 on the benchmark capture), the rest keeping
their high part in the column's ``hi`` list. Each column is zlib-compressed and base64-
encoded into a ``<script type=application/octet-stream>``; the browser inflates it with
``DecompressionStream('deflate')``, which needs no network.

Before those, the page paints the ``overview``: per track, the whole capture as a few
thousand columns (busy share and worst class, one byte each), computed here with numpy, so
the first picture costs a few hundred kB to read instead of 4 M slices. On the perf
benchmark capture (4.2 M slices) the page is about 18 MB and is built in 3-5 s, the slice
columns compressing on the other cores while the overview is computed.

The records, the stacks and the tree go as one compressed JSON document: they are counted in
thousands, not millions, and carry strings. Times in it are ns since ``t0`` (the capture
start: the first aligned slice or record); absolute CLOCK_MONOTONIC times travel as strings,
since they can exceed the 2^53 that a JavaScript number holds exactly.
"""

from __future__ import annotations

import base64
import json
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ...api import Analysis
from ...schema import page_columns
from .icicle import blocked_tree

#: slice classes: (slice kind, state or None, label, colour, severity, row in a thread lane).
#: Zoomed out, a pixel column shows its worst class by severity: waiting states that cost
#: latency (uninterruptible sleep, preempted, runnable without a P) above plain work.
CLASSES: list[tuple[str, str | None, str, str, int, int]] = [
    ("go.running", None, "goroutine running", "#2ca02c", 1, 0),
    ("go.syscall", None, "goroutine in syscall / cgo call", "#ff7f0e", 4, 0),
    ("go.runnable", None, "goroutine runnable (waiting for a P)", "#bcbd22", 5, 0),
    ("go.blocked", None, "goroutine blocked in Go", "#c7c7c7", 2, 0),
    ("py.sample", None, "py-spy sample", "#9467bd", 1, 0),
    ("os.syscall", None, "syscall", "#1f77b4", 3, 1),
    ("os.offcpu", "S", "off-CPU sleeping (S)", "#7f7f7f", 3, 2),
    ("os.offcpu", "R", "off-CPU preempted (R)", "#e377c2", 6, 2),
    ("os.offcpu", "D", "off-CPU uninterruptible (D)", "#8c564b", 7, 2),
    ("os.offcpu", "t", "off-CPU stopped by a tracer (t)", "#17becf", 2, 2),
    ("os.offcpu", "", "off-CPU, other state", "#525252", 3, 2),
    ("", None, "other slice", "#aaaaaa", 0, 0),
]
#: a goroutine waiting (runnable or blocked) is not busy: zoomed out, the bar height of a
#: goroutine lane is the share of the column it ran or sat in a call, not merely existed
WAITING_KINDS = ("go.runnable", "go.blocked")
OTHER_CLASS = len(CLASSES) - 1
OFFCPU_OTHER = next(i for i, c in enumerate(CLASSES) if c[0] == "os.offcpu" and c[1] == "")
ROWS = 3
#: columns per track in the first picture (a 4k screen's width; the page resamples), fewer
#: when there are so many tracks that the picture would pass OVERVIEW_CELLS
OVERVIEW_BINS = 4096
OVERVIEW_CELLS = 4_000_000
#: zlib level: on the benchmark's columns level 4 is 3x faster than 6 for 7 % more bytes
ZLIB_LEVEL = 4
#: the record colours: blocking inside the library; time inside a library call that is not the
#: library's (the Go runtime's, the Python interpreter's GIL wait, the caller's own code)
RECORD_COLOURS = {
    "library": "#d62728",
    "go-runtime": "#6a3d9a",
    "python-runtime": "#1f77b4",
    "caller": "#8c564b",
}
#: the page's code for a record's ``in`` (0: the library's): index into its ``in_names``
IN_CODES = {"go-runtime": 1, "python-runtime": 2, "caller": 3}


@dataclass
class Timeline:
    """What the page embeds: ``meta`` as plain JSON, ``blobs`` (element id -> base64 of
    zlib-compressed bytes) for the slice columns and the records document."""

    t0_ns: int
    meta: dict
    blobs: dict[str, str] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)


def capture_start_ns(a: Analysis) -> int:
    """t0 of the page: the first aligned slice's or record's start, CLOCK_MONOTONIC ns."""
    s = a.aligned_slices()
    starts = []
    if len(s) and s["ref_ts"].notna().any():
        starts.append(int(s["ref_ts"].min()))
    if len(a.blocking):
        starts.append(int(a.blocking["start_ns"].min()))
    return min(starts) if starts else 0


def _codes(col: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Category codes (-1 for missing) and the categories as strings."""
    c = col if isinstance(col.dtype, pd.CategoricalDtype) else col.astype("category")
    return c.cat.codes.to_numpy(np.int64), [str(x) for x in c.cat.categories]


def slice_classes(s: pd.DataFrame) -> np.ndarray:
    """The class (index into CLASSES) of every slice: its kind, and for an off-CPU interval
    its state; vectorised over the category codes (no Python object per row)."""
    cls = np.full(len(s), OTHER_CLASS, np.uint8)
    if not len(s):
        return cls
    kc, kinds = _codes(s["kind"])
    by_kind = np.full(len(kinds) + 1, OTHER_CLASS, np.uint8)  # +1: code -1 -> the last
    for i, (k, state, *_rest) in enumerate(CLASSES):
        if state is None and k in kinds:
            by_kind[kinds.index(k)] = i
    cls = by_kind[kc]
    if "os.offcpu" in kinds:
        off = kc == kinds.index("os.offcpu")
        sc, states = _codes(s["state"] if "state" in s.columns else s["name"])
        by_state = np.full(len(states) + 1, OFFCPU_OTHER, np.uint8)
        for i, (k, state, *_rest) in enumerate(CLASSES):
            if k == "os.offcpu" and state:
                for j, x in enumerate(states):
                    if x.rstrip("+") == state or (state == "t" and x == "T"):
                        by_state[j] = i
        cls[off] = by_state[sc[off]]
    return cls


def _width(n_values: int) -> int:
    """Bytes for the codes 0..n_values, n_values itself meaning 'none'."""
    return 1 if n_values < 0xFF else 2 if n_values < 0xFFFF else 3 if n_values < 0xFFFFFF else 4


def none_code(width: int) -> int:
    return (1 << (8 * width)) - 1


#: a column may leave this share of its values to the sparse escape list
ESCAPE_SHARE = 0.001


def _planes(v: np.ndarray, width: int | None = None) -> tuple[bytes, dict]:
    """Non-negative int64 -> (byte planes, column descriptor).

    Byte plane j holds byte j of every value (little-endian), so the high bytes of small
    numbers are long runs that deflate well. With *width* None the narrowest width is chosen
    that leaves at most ESCAPE_SHARE of the values over it; those keep their high part in
    the descriptor's ``hi`` ([index], [value >> 8 * width]), which the page adds back."""
    v = np.asarray(v, np.int64)
    if width is None:
        width = 4
        for w in (1, 2, 3):
            if np.count_nonzero(v >> (8 * w)) <= ESCAPE_SHARE * len(v):
                width = w
                break
    big = np.flatnonzero(v >> (8 * width)) if width < 8 else np.zeros(0, np.int64)
    lo = v & ((1 << (8 * width)) - 1)
    as_bytes = lo.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :width]
    desc = {"n": int(len(v)), "width": width, "hi": None}
    if len(big):
        desc["hi"] = [big.tolist(), (v[big] >> (8 * width)).tolist()]
    return np.ascontiguousarray(as_bytes.T).tobytes(), desc


def _deflate64(raw: bytes) -> str:
    return base64.b64encode(zlib.compress(raw, ZLIB_LEVEL)).decode("ascii")


class _Compressor:
    """zlib and base64 on every core while the caller goes on computing: zlib
    releases the GIL, so the slice columns compress while the overview is built."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1))
        self.jobs: dict = {}

    def add(self, name: str, raw: bytes) -> None:
        self.jobs[name] = self.pool.submit(_deflate64, raw)

    def results(self) -> dict[str, str]:
        try:
            return {k: f.result() for k, f in self.jobs.items()}
        finally:
            self.pool.shutdown()


class _Strings:
    """One string table for the records document; columns refer to it by index."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.values: list[str] = []

    def id(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.values)
            self.values.append(s)
        return i

    def column(self, col: pd.Series) -> list[int]:
        """Each value's string id, -1 for missing (one lookup per distinct value)."""
        codes, uniq = pd.factorize(col, use_na_sentinel=True)
        table = np.array([self.id(str(u)) for u in uniq] + [-1], np.int64)
        return table[codes].tolist()


def _ints(col: pd.Series | None, n: int, shift: int = 0) -> list:
    """Integers (minus *shift*) with None for missing, as JSON wants them."""
    if col is None:
        return [None] * n
    x = pd.to_numeric(col, errors="coerce").astype("Float64")
    vals = (x - shift).round().astype("Int64")
    return vals.astype(object).where(vals.notna(), None).tolist()


def _col(b: pd.DataFrame, name: str) -> pd.Series | None:
    return b[name] if name in b.columns else None


def _goids(col: pd.Series) -> np.ndarray:
    return pd.to_numeric(col, errors="coerce").fillna(-1).to_numpy(np.int64)


def _is_null(x) -> bool:
    """Whether a scalar is missing: None, pd.NA, or NaN (the one value unequal to itself,
    which covers float and numpy NaN and pd.NaT)."""
    return x is None or x is pd.NA or x != x


def _key(pid: np.ndarray, tid: np.ndarray) -> np.ndarray:
    """(pid, tid) as one sortable int64: by process, then thread."""
    return pid.astype(np.int64) * (1 << 32) + tid.astype(np.int64)


def _wakers(b: pd.DataFrame) -> list:
    col = _col(b, "waker")
    if col is None:
        return [None] * len(b)
    return [w if isinstance(w, dict) else None for w in col.tolist()]


def _findings(a: Analysis) -> list[dict]:
    """The findings as the page shows them; a missing attribute is no findings."""

    def ints(xs) -> list[int]:
        return [int(x) for x in (xs or []) if not _is_null(x)]

    def ns(x) -> str | None:
        return None if _is_null(x) else str(int(x))

    out = []
    for f in getattr(a, "findings", None) or []:
        out.append(
            {
                "kind": str(f.get("kind", "")),
                "severity": str(f.get("severity", "info")),
                "summary": str(f.get("summary", "")),
                "pid": None if f.get("pid") is None else int(f["pid"]),
                "fd": None if f.get("fd") is None else int(f["fd"]),
                "goroutines": ints(f.get("goroutines")),
                "threads": ints(f.get("threads")),
                "first": ns(f.get("first_ns")),
                "last": ns(f.get("last_ns")),
                "count": None if f.get("count") is None else int(f["count"]),
            }
        )
    return out


def overview_bins(n_tracks: int) -> int:
    """Columns per track of the first picture (see OVERVIEW_CELLS)."""
    fit = OVERVIEW_CELLS // max(1, n_tracks)
    return int(max(256, min(OVERVIEW_BINS, 1 << max(0, fit.bit_length() - 1))))


def overview(
    rel: np.ndarray,
    dur: np.ndarray,
    track: np.ndarray,
    cls: np.ndarray,
    busy: np.ndarray,
    n_tracks: int,
    span: int,
    bins: int = 0,
) -> tuple[bytes, bytes]:
    """The whole capture as *bins* columns per track, as the page draws a zoomed-out lane:
    the busy share of each column (0-255; waiting goroutines count for their colour, not
    their time) and the worst class in it (255: empty). The page paints this before it
    has inflated the slices, so the first picture costs a few hundred kB, not 4 M slices."""
    bins = bins or overview_bins(n_tracks)
    size = n_tracks * (bins + 1)
    w = span / bins
    fa = np.clip(rel / w, 0, bins)
    fb = np.clip((rel + dur) / w, 0, bins)
    c0 = np.minimum(fa.astype(np.int64), bins - 1)
    c1 = np.maximum(c0, np.minimum(fb.astype(np.int64), bins - 1))
    base = track.astype(np.int64) * (bins + 1)
    one = c0 == c1
    cov = np.bincount(
        base + c0, weights=np.where(busy, np.where(one, fb - fa, c0 + 1 - fa), 0), minlength=size
    )
    cov += np.bincount(base + c1, weights=np.where(busy & ~one, fb - c1, 0), minlength=size)
    full = np.bincount(base + c0 + 1, weights=busy & ~one, minlength=size + 1)[:size]
    full -= np.bincount(base + c1, weights=busy & ~one, minlength=size)
    cov += np.cumsum(full.reshape(n_tracks, bins + 1), axis=1).reshape(-1)
    cov = cov.reshape(n_tracks, bins + 1)[:, :bins]
    worst = np.full((n_tracks, bins), 255, np.uint8)
    for c in np.argsort([x[4] for x in CLASSES], kind="stable"):  # by severity, worst last
        m = cls == c
        if not m.any():
            continue
        d = np.bincount(base[m] + c0[m], minlength=size + 1)[: size + 1]
        d -= np.bincount(base[m] + c1[m] + 1, minlength=size + 1)[: size + 1]
        on = np.cumsum(d[:size].reshape(n_tracks, bins + 1), axis=1)[:, :bins] > 0
        worst[on] = c
    share = np.round(np.clip(cov, 0, 1) * 255).astype(np.uint8)
    return share.tobytes(), worst.tobytes()


@dataclass
class _Slices:
    """The aligned slices sorted by start, as numpy columns: ``order`` sorts the rows of
    ``frame``, and every per-slice array here and in the page's columns is in that order."""

    frame: pd.DataFrame
    order: np.ndarray
    ts: np.ndarray
    pid: np.ndarray
    tid: np.ndarray
    dur: np.ndarray
    cls: np.ndarray
    row: np.ndarray

    @property
    def n(self) -> int:
        return len(self.frame)


def _drop_unaligned(s: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The slices that have a reference time, and per source how many have none: those
    cannot be placed on the time axis, and the page says how many it left out."""
    unaligned: dict[str, int] = {}
    if len(s):
        ok = s["ref_ts"].notna().to_numpy()
        if not ok.all():
            miss = s.loc[~ok, "source"].astype(str).value_counts()
            unaligned = {str(k): int(v) for k, v in miss.items() if v}
            s = s[ok]
    return s, unaligned


def _sorted_slices(s: pd.DataFrame) -> _Slices:
    """The slices as int64 columns sorted by start (stable), durations clipped at 0, with
    their class and their row in a thread lane."""
    n = len(s)
    ts = s["ref_ts"].to_numpy(np.int64) if n else np.zeros(0, np.int64)
    order = np.argsort(ts, kind="stable")

    def column(name: str) -> np.ndarray:
        return s[name].to_numpy(np.int64)[order] if n else np.zeros(0, np.int64)

    ts = ts[order]
    pid, tid = column("pid"), column("tid")
    dur = np.maximum(column("dur"), 0) if n else np.zeros(0, np.int64)
    cls = slice_classes(s)[order] if n else np.zeros(0, np.uint8)
    row = np.array([c[5] for c in CLASSES], np.int64)[cls]
    return _Slices(s, order, ts, pid, tid, dur, cls, row)


def _waker_key(w: dict, pid_of_tid: dict[int, int]) -> tuple[int, int]:
    """The (pid, tid) of a waker; without a known positive pid, the pid its tid has on the
    slices (-1 when it has none there), so that the waker joins its thread's lane."""
    p = w.get("pid")
    t = int(w["tid"])
    return (int(p) if not _is_null(p) and int(p) > 0 else pid_of_tid.get(t, -1)), t


@dataclass
class _ThreadLanes:
    """The thread lanes: every (pid, tid) with a slice on it, a record or a wakeup it made,
    as sorted ``keys`` (see _key) with the page's ``threads`` entries; and each slice's
    thread track ``tt`` (lane * ROWS + row; none_code(tt_width) for slices off a thread)."""

    keys: np.ndarray
    threads: list[dict]
    pid_of_tid: dict[int, int]
    tt: np.ndarray
    tt_width: int

    @property
    def n_tracks(self) -> int:
        return len(self.threads) * ROWS

    def lane(self, p: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The lane index of each (pid, tid)."""
        return np.searchsorted(self.keys, _key(p, t))

    def waker_lane(self, w: dict) -> int:
        """The lane of the thread that made wakeup *w*."""
        p, t = _waker_key(w, self.pid_of_tid)
        return int(self.lane(np.array([p]), np.array([t]))[0])


def _lane_keys(sl: _Slices, b: pd.DataFrame, wakers: list, pid_of_tid: dict) -> np.ndarray:
    """The sorted, distinct (pid, tid) keys of the threads that get a lane: those with a
    slice (tid > 0), a blocking record, or a wakeup they made."""
    on = sl.tid > 0
    keys = [_key(sl.pid[on], sl.tid[on])]
    if len(b):
        keys.append(_key(b["pid"].to_numpy(np.int64), b["tid"].to_numpy(np.int64)))
    wk = [_waker_key(w, pid_of_tid) for w in wakers if w and w.get("tid")]
    if wk:
        keys.append(_key(np.array([p for p, _ in wk]), np.array([t for _, t in wk])))
    return np.unique(np.concatenate(keys))


def _thread_entries(keys: np.ndarray, names: dict, wakers: list) -> list[dict]:
    """The page's entry of each thread lane: pid, tid and name (the thread's name, else the
    comm its wakeups carry, else empty)."""
    comm_of_waker = {int(w["tid"]): str(w.get("comm") or "") for w in wakers if w and w.get("tid")}
    threads = []
    for k in keys.tolist():
        p, t = k >> 32, k & 0xFFFFFFFF  # arithmetic shift: pid -1 stays -1
        threads.append(
            {"pid": int(p), "tid": int(t), "name": names.get(t, comm_of_waker.get(t, ""))}
        )
    return threads


def _thread_lanes(sl: _Slices, b: pd.DataFrame, wakers: list, names: dict) -> _ThreadLanes:
    """The thread lanes and each slice's thread track (see _ThreadLanes)."""
    on = sl.tid > 0
    pid_of_tid = dict(zip(sl.tid[on].tolist(), sl.pid[on].tolist(), strict=True))
    keys = _lane_keys(sl, b, wakers, pid_of_tid)
    threads = _thread_entries(keys, names, wakers)
    tt_width = _width(len(threads) * ROWS)
    tt = np.full(sl.n, none_code(tt_width), np.int64)
    tt[on] = np.searchsorted(keys, _key(sl.pid[on], sl.tid[on])) * ROWS + sl.row[on]
    return _ThreadLanes(keys, threads, pid_of_tid, tt, tt_width)


@dataclass
class _GoroutineLanes:
    """The goroutine lanes: ``ids`` every goroutine with a slice or of interest (sorted);
    ``gi`` each slice's index into them (none_code(gi_width): no goroutine); one lane per
    goroutine of interest (``lane_of_goid``, ``lanes``), the ``other`` ones folded into one
    lane after those; ``lane`` the lane of each of ``ids``."""

    ids: np.ndarray
    gi: np.ndarray
    gi_width: int
    interest_ids: list[int]
    lane_of_goid: dict[int, int]
    lane: list[int]
    lanes: list[dict]
    other: int

    @property
    def n_lanes(self) -> int:
        """The goroutine tracks of the overview: one per lane, and one for the folded."""
        return len(self.interest_ids) + (1 if self.other else 0)


def _goroutines_of_interest(a: Analysis, b: pd.DataFrame) -> list[int]:
    """The goroutines that get a lane of their own, sorted: those that made library calls
    or had blocking records."""
    interest = set()
    if len(a.calls) and "goid" in a.calls.columns:
        interest |= set(_goids(a.calls["goid"]).tolist())
    if len(b):
        interest |= set(_goids(b["goid"]).tolist())
    interest.discard(-1)
    return sorted(interest)


def _goroutine_lanes(a: Analysis, sl: _Slices, b: pd.DataFrame) -> _GoroutineLanes:
    """The goroutine lanes, the rest folded into one (see _GoroutineLanes)."""
    goid = _goids(sl.frame["goid"])[sl.order] if sl.n else np.zeros(0, np.int64)
    interest_ids = _goroutines_of_interest(a, b)
    ids = np.union1d(np.unique(goid[goid >= 0]), np.array(interest_ids, np.int64))
    gi_width = _width(len(ids))
    gi = np.full(sl.n, none_code(gi_width), np.int64)
    gi[goid >= 0] = np.searchsorted(ids, goid[goid >= 0])
    lane_of_goid = {g: i for i, g in enumerate(interest_ids)}
    other = len(interest_ids)
    go_lane = [lane_of_goid.get(int(g), other) for g in ids.tolist()]
    sites = a.support("goroutine_sites").goroutine_sites
    go_lanes = [{"goid": g, "site": sites.get(g, "")} for g in interest_ids]
    n_other = int(len(ids) - len(interest_ids))
    return _GoroutineLanes(
        ids, gi, gi_width, interest_ids, lane_of_goid, go_lane, go_lanes, n_other
    )


def _name_codes(sl: _Slices) -> tuple[np.ndarray, list[str], int]:
    """Each slice's name code into the name list (none_code(width): no name), the name
    list, and the column's width."""
    nm, name_list = _codes(sl.frame["name"]) if sl.n else (np.zeros(0, np.int64), [])
    nm = nm[sl.order] if sl.n else nm
    nm_width = _width(len(name_list))
    return np.where(nm < 0, none_code(nm_width), nm), name_list, nm_width


def _add_columns(out: _Compressor, specs) -> dict:
    """Hand each (name, values, width) column's byte planes to *out* as ``tc-col-NAME``,
    in order; returns the column descriptors by name."""
    columns = {}
    for name, values, width in specs:
        raw, columns[name] = _planes(values, width)
        out.add(f"tc-col-{name}", raw)
    return columns


def _span(sl: _Slices, b: pd.DataFrame, t0: int) -> int:
    """The page's time axis length in ns (at least 1): from t0 to the last slice's or
    record's end."""
    ends = [int((sl.ts + sl.dur).max()) if sl.n else t0]
    if len(b):
        ends.append(int(b["end_ns"].max()))
    return max(max(ends) - t0, 1)


def _overview_picture(
    sl: _Slices, t0: int, span: int, lanes: _ThreadLanes, go: _GoroutineLanes
) -> tuple[bytes, int]:
    """The first picture's bytes (see overview): the thread tracks' share and worst planes,
    then the goroutine lanes'; and the columns per track."""
    rel = sl.ts - t0
    dur, cls = sl.dur, sl.cls
    busy = np.array([c[0] not in WAITING_KINDS for c in CLASSES])[cls]
    n_go = go.n_lanes
    g_track = np.array(go.lane + [-1], np.int64)[np.minimum(go.gi, len(go.lane))]  # none: -1
    on_t = lanes.tt != none_code(lanes.tt_width)
    on_g = g_track >= 0
    bins = overview_bins(lanes.n_tracks + n_go)
    parts = [
        overview(
            rel[on_t], dur[on_t], lanes.tt[on_t], cls[on_t], busy[on_t], lanes.n_tracks, span, bins
        ),
        overview(rel[on_g], dur[on_g], g_track[on_g], cls[on_g], busy[on_g], n_go, span, bins),
    ]
    return b"".join(x for pair in parts for x in pair), bins


def _class_entries() -> list[dict]:
    """The page's legend and drawing order: each of CLASSES as a JSON object."""
    return [
        {
            "kind": k,
            "label": label,
            "colour": colour,
            "severity": sev,
            "row": r,
            "busy": k not in WAITING_KINDS,
        }
        for k, _state, label, colour, sev, r in CLASSES
    ]


def _meta(
    a: Analysis,
    t0: int,
    span: int,
    bins: int,
    sl: _Slices,
    lanes: _ThreadLanes,
    go: _GoroutineLanes,
    name_list: list[str],
    columns: dict,
    unaligned: dict[str, int],
) -> dict:
    """The page's plain-JSON ``meta`` document (its key order is part of the page)."""
    return {
        "t0": str(t0),
        "n": sl.n,
        "end": span,
        "overview": {"bins": bins, "threads": lanes.n_tracks, "goroutines": go.n_lanes},
        "library": a.library.name,
        "classes": _class_entries(),
        "present": sorted(set(np.unique(sl.cls).tolist())),
        "record_colours": RECORD_COLOURS,
        "threads": lanes.threads,
        "goroutines": {
            "ids": go.ids.tolist(),
            "lane": go.lane,
            "lanes": go.lanes,
            "other": go.other,
        },
        "names": name_list,
        "columns": columns,
        "findings": _findings(a),
        "unaligned": unaligned,
    }


def build(a: Analysis) -> Timeline:
    """The page's data (see the module docstring)."""
    s = a.aligned_slices()
    b = a.blocking
    t0 = capture_start_ns(a)
    names = a.thread_names()
    wakers = _wakers(b)
    s, unaligned = _drop_unaligned(s)
    sl = _sorted_slices(s)
    lanes = _thread_lanes(sl, b, wakers, names)
    go = _goroutine_lanes(a, sl, b)
    nm, name_list, nm_width = _name_codes(sl)

    delta = np.diff(sl.ts, prepend=t0) if sl.n else np.zeros(0, np.int64)
    out = _Compressor()
    columns = _add_columns(
        out,
        (
            ("start", delta, None),
            ("dur", sl.dur, None),
            ("cls", sl.cls, 1),
            ("tt", lanes.tt, lanes.tt_width),
            ("gi", go.gi, go.gi_width),
            ("nm", nm, nm_width),
        ),
    )
    records, rec_stats = _records(a, b, t0, wakers, lanes.lane, lanes.waker_lane, go.lane_of_goid)
    out.add("tc-records", json.dumps(records, separators=(",", ":"), ensure_ascii=False).encode())
    span = _span(sl, b, t0)
    picture, bins = _overview_picture(sl, t0, span, lanes, go)
    out.add("tc-overview", picture)
    blobs = out.results()

    meta = _meta(a, t0, span, bins, sl, lanes, go, name_list, columns, unaligned)
    stats = {
        "slices": sl.n,
        "records": len(b),
        "threads": len(lanes.threads),
        "goroutine_lanes": len(go.lanes),
        "bytes": {k: len(v) for k, v in blobs.items()},
        **rec_stats,
    }
    return Timeline(t0, meta, blobs, stats)


#: the per-record columns of the records document (lists, one value per record): each
#: record column with a page key (schema.Column.page), and the lanes and tree node of each
RECORD_COLUMNS = tuple(c.page.key for c in page_columns()) + ("lane", "glane", "node")


class _Packer:
    """Packs record columns for the page, one packing (schema.Page.packing) per method."""

    def __init__(self, b: pd.DataFrame, t0: int, strings: _Strings, stack_id) -> None:
        self.b, self.n, self.t0, self.strings, self.stack_id = b, len(b), t0, strings, stack_id

    def pack(self, name: str, packing: str) -> list:
        col = _col(self.b, name)
        if col is None:
            missing = {"runtime": 0, "flag": 0, "text": -1, "stack": -1, "joined": -1}
            return [missing.get(packing, -1 if packing == "censored" else None)] * self.n
        return getattr(self, f"pack_{packing}")(col)

    def pack_time(self, col: pd.Series) -> list:
        return _ints(col, self.n, self.t0)

    def pack_int(self, col: pd.Series) -> list:
        return _ints(col, self.n)

    def pack_text(self, col: pd.Series) -> list:
        return self.strings.column(col)

    def pack_goid(self, col: pd.Series) -> list:
        return [None if g < 0 else int(g) for g in _goids(col).tolist()]

    def pack_runtime(self, col: pd.Series) -> list:
        return col.map(IN_CODES).fillna(0).astype(int).tolist()

    def pack_flag(self, col: pd.Series) -> list:
        return col.fillna(False).astype(bool).astype(int).tolist()

    def pack_maybe_bool(self, col: pd.Series) -> list:
        return [None if _is_null(x) else bool(x) for x in col.tolist()]

    def pack_joined(self, col: pd.Series) -> list:
        return self.strings.column(
            col.map(lambda x: ", ".join(map(str, x)) if x is not None else None)
        )

    def pack_censored(self, col: pd.Series) -> list:
        def words(c):
            if isinstance(c, dict):
                return f"{c.get('reason')} (bounded by {c.get('bound_by')})"
            return None

        return self.strings.column(col.map(words))

    def pack_stack(self, col: pd.Series) -> list:
        codes, uniq = pd.factorize(col.map(lambda x: tuple(x) if x is not None else ()))
        table = np.array([self.stack_id(u) for u in uniq] + [-1], np.int64)
        return table[codes].tolist()

    def pack_waker(self, col: pd.Series) -> list:
        return [-1] * self.n  # filled in by _page_wakers


def _records(
    a: Analysis, b: pd.DataFrame, t0: int, wakers: list, thread_lane, waker_lane, lane_of_goid
) -> tuple[dict, dict]:
    """The records document: columns of the blocking records, their stacks and wakers, the
    string table and the blocked-time tree (see the module docstring)."""
    n = len(b)
    strings = _Strings()
    tree, node = blocked_tree(b)
    tree["label"] = [strings.id(x) for x in tree["label"]]
    if not n:
        empty = {k: [] for k in RECORD_COLUMNS}
        return {
            "n": 0,
            **empty,
            "strings": strings.values,
            "stacks": [],
            "wakers": [],
            "tree": tree,
        }, {"wakers": 0}
    stacks: list[list[int]] = []
    stack_ids: dict[tuple, int] = {}

    def stack_id(frames) -> int:
        t = tuple(str(f) for f in frames) if isinstance(frames, (list, tuple, np.ndarray)) else ()
        if not t:
            return -1
        i = stack_ids.get(t)
        if i is None:
            i = stack_ids[t] = len(stacks)
            stacks.append([strings.id(f) for f in t])
        return i

    packer = _Packer(b, t0, strings, stack_id)
    doc: dict = {"n": n}
    for c in page_columns():
        doc[c.page.key] = packer.pack(c.name, c.page.packing)
    w_idx, w_out = _page_wakers(wakers, t0, strings, stack_id, waker_lane)
    doc["waker"] = w_idx
    pid, tid = b["pid"].to_numpy(np.int64), b["tid"].to_numpy(np.int64)
    doc["lane"] = thread_lane(pid, tid).tolist()
    doc["glane"] = [lane_of_goid.get(int(g), -1) for g in _goids(b["goid"]).tolist()]
    doc["node"] = node.tolist()
    doc.update(strings=strings.values, stacks=stacks, wakers=w_out, tree=tree)
    return doc, {"wakers": len(w_out)}


def _page_wakers(wakers: list, t0: int, strings, stack_id, waker_lane) -> tuple[list, list]:
    """Each record's index into the page's wakers (-1: none), and those wakers."""
    w_out: list[dict] = []
    w_idx: list[int] = []
    for w in wakers:
        if not w or not w.get("tid"):
            w_idx.append(-1)
            continue
        lw = w.get("longest_wait")
        w_idx.append(len(w_out))
        w_out.append(
            {
                "lane": waker_lane(w),
                "pid": None if w.get("pid") is None else int(w["pid"]),
                "tid": int(w["tid"]),
                "comm": strings.id(str(w.get("comm") or "")),
                "t": None if w.get("wakeup_ns") is None else int(w["wakeup_ns"]) - t0,
                "stack": stack_id(w.get("stack") or []),
                "longest": None
                if not isinstance(lw, dict)
                else {
                    "syscall": None if lw.get("syscall") is None else str(lw["syscall"]),
                    "state": None if lw.get("state") is None else str(lw["state"]),
                    "start": None if lw.get("start_ns") is None else int(lw["start_ns"]) - t0,
                    "end": None if lw.get("end_ns") is None else int(lw["end_ns"]) - t0,
                    "dur": None if lw.get("dur_ns") is None else int(lw["dur_ns"]),
                },
            }
        )
    return w_idx, w_out
