"""The postmortem page: one self-contained, offline HTML file of an Analysis (``--html``).

What it shows, top to bottom: the findings (kind, severity, one sentence, a link to their
time window); where the blocked time went (an icicle of the blocking records' stacks:
call site -> cgo call -> native frames -> syscall, or Python frames -> native -> syscall;
clicking a node filters the timeline to its records); then the timeline on one time axis:
an upper pane with one lane per goroutine that called the library or had a record (the rest
folded into one lane), and a lower pane with one lane per OS thread, grouped by process. A
blocking record is drawn in both panes, joined by a thin connector; the Go runtime's time
inside a cgo call is drawn apart from the library's; a waker arrow runs from the waking
thread's lane to the record it woke; clicking a goroutine marks its stretches on whichever
threads ran it. Below: the summary tables.

Nothing is dropped at any size: every aligned slice is embedded (``timeline/data.py``:
columns of small integers as byte planes, zlib, base64), and ``timeline/timeline.js`` draws
the exact slices of the visible window where a lane holds few of them (always in windows of
10 ms or less), otherwise one bar per pixel column with the busy share and the worst state
in it. The first picture is painted from a precomputed overview of the whole capture while
the browser is still reading the slices, which it then inflates with
``DecompressionStream`` (no network: the page works offline from one file).

Why our own canvas drawing rather than plotly.js, the design card's choice: on the perf
benchmark capture (4.2 M slices) in headless Chromium here, plotly.min.js (4.8 MB) alone
takes 1.5-2.5 s to evaluate before it draws anything, the whole first-paint budget of 2 s,
and the previous page's WebGL segments took 2.6 s for 20 000 slices; redrawing per-pixel
aggregates of every lane on each zoom would mean a new plot each time. The lanes and the
icicle are a few hundred lines of canvas code instead. Measured by
``benchmarks/timeline_load.py`` on that capture: 19.0 MB, first picture 0.39-0.44 s, every
slice inflated and drawn at 1.5-1.6 s, a 10 ms window redrawn in 20-64 ms with all of its
slices.
Notebooks keep a plotly figure (``figure``), where plotly.js is already loaded.

Deep links: ``page.html#t=START,END`` opens that window in ms since the capture start (the
first aligned slice or record, shown at the top of the page), ``#t=ns:START,END`` in
absolute CLOCK_MONOTONIC ns; ``&g=GOID`` (or ``#g=GOID``) highlights a goroutine; the
address bar follows the view, so it is always a link to what is on screen. The page puts
its visible range on ``<body data-range="startNs,endNs">`` (absolute ns) and what it drew
on ``data-drawn``, for tests and tools.

Every string from a trace is escaped here (``html.escape``) or inserted as text by the
script (``textContent``, canvas text, ``setAttribute``); the embedded JSON has ``<``, ``>``
and ``&`` as ``\\u`` escapes, so no trace string can close a ``<script>``.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..api import Analysis
from .timeline import asset
from .timeline.data import CLASSES, ROWS, build, capture_start_ns, slice_classes

if TYPE_CHECKING:  # plotly is imported by figure() only: the CLI's text report links here
    import plotly.graph_objects as go


def _esc(x) -> str:
    return html.escape("" if x is None or (isinstance(x, float) and np.isnan(x)) else str(x))


def _script_json(obj) -> str:
    """JSON that is safe inside <script>: no '<', '>' or '&' survive as such."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def deep_link(
    page: str | Path,
    start_ns: int,
    end_ns: int,
    t0_ns: int | None = None,
    goid: int | None = None,
    pad: float = 0.0,
) -> str:
    """A link that opens *page* zoomed to [start_ns, end_ns] (CLOCK_MONOTONIC ns), widened by
    *pad* times the window on each side so that the moment is seen in its context.

    With *t0_ns* (the page's capture start, ``capture_start_ns``) the window is written in
    ms since the capture start, which reads well in a document; without it, as absolute ns
    (``ns:``), which needs nothing but the record's own times. An absolute *page* path
    becomes a ``file://`` URL; a relative one stays relative to where the link is read."""
    span = max(0, int(end_ns) - int(start_ns))
    s = int(start_ns) - int(round(span * pad))
    e = int(end_ns) + int(round(span * pad))
    if t0_ns is None:
        frag = f"t=ns:{s},{e}"
    else:
        frag = f"t={(s - t0_ns) / 1e6:.6f},{(e - t0_ns) / 1e6:.6f}"
    if goid is not None and not pd.isna(goid):
        frag += f"&g={int(goid)}"
    p = Path(page)
    base = p.as_uri() if p.is_absolute() else p.as_posix()
    return f"{base}#{frag}"


def _table(rows: list[dict], cols: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{_esc(t)}</th>" for _, t in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(r.get(k))}</td>" for k, _ in cols) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _ms_rows(rows: list[dict]) -> list[dict]:
    return [
        {**r, **{k: f"{r[k] / 1e6:.1f} ms" for k in ("total_ns", "p50_ns", "max_ns") if k in r}}
        for r in rows
    ]


def _summary_tables(a: Analysis) -> str:
    s = a.summary
    sources = [
        {
            "source": x.meta.source,
            "clock": x.clock.clock_id,
            "method": a.alignments[x.meta.source].method,
            "offset": a.alignments[x.meta.source].offset_ns,
            "error": a.alignments[x.meta.source].error_ns,
        }
        for x in a.sources
    ]
    return f"""<div class=row>
<div><h3>Top call sites</h3>{
        _table(
            _ms_rows(s.get("by_call_site", [])[:10]),
            [
                ("count", "count"),
                ("total_ns", "total"),
                ("p50_ns", "p50"),
                ("max_ns", "max"),
                ("call_site", "call site"),
            ],
        )
    }</div>
<div><h3>Top syscalls</h3>{
        _table(
            _ms_rows(s.get("by_syscall", [])[:10]),
            [("count", "count"), ("total_ns", "total"), ("max_ns", "max"), ("syscall", "syscall")],
        )
    }</div>
<div><h3>Sources</h3>{
        _table(
            sources,
            [
                ("source", "source"),
                ("clock", "clock"),
                ("method", "alignment"),
                ("offset", "offset ns"),
                ("error", "error ns"),
            ],
        )
    }</div>
</div>"""


def page(a: Analysis) -> str:
    """The whole page as one string (see the module docstring)."""
    tl = build(a)
    s = a.summary
    lib = _esc(a.library.name)
    nc = s.get("native_calls") or {}
    concurrency = (
        f" {nc['calls']} Go calls into {lib}; at most {nc['max_threads']} thread(s) inside at once."
        if nc.get("calls")
        else ""
    )

    def blob(k: str) -> str:
        return f'<script type="application/octet-stream" id="{k}">{tl.blobs[k]}</script>'

    # the script comes before the slice columns: it paints the overview while the parser
    # still reads them, and inflates them once the document is parsed
    early = "\n".join(blob(k) for k in ("tc-overview", "tc-records"))
    late = "\n".join(blob(k) for k in tl.blobs if k.startswith("tc-col-"))
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>tracecorr: blocking inside {lib} calls</title>
<style>{asset("timeline.css")}</style></head><body>
<h2>tracecorr: blocking syscalls inside {lib} calls</h2>
<p class=note>{s.get("records", 0)} blocking record(s), {s.get("blocked_ns", 0) / 1e6:.1f} ms
blocked; {s.get("threads", 0)} thread(s), {s.get("goroutines", 0)} goroutine(s).{concurrency}
{tl.stats["slices"]:,} slices on the timeline. Time 0 = the capture start, CLOCK_MONOTONIC
{tl.t0_ns} ns.</p>
<p id=tc-error class=tc-err hidden></p>
<section id=tc-findings></section>
<section id=tc-where><h3>Where the blocked time went</h3>
<p class=tc-hint>Blocked time by stack (call site → call → native frames → syscall). Click a
node to show only its records on the timeline; click the top bar to show all.</p>
<div id=tc-icicle-box><canvas id=tc-icicle></canvas></div></section>
<section id=tc-view><h3>Timeline</h3>
<div id=tc-toolbar><button id=tc-zoom-out title="zoom out (S)">−</button>
<button id=tc-zoom-in title="zoom in (W)">+</button><button id=tc-reset title="whole capture (0)"
>whole capture</button><span id=tc-range></span><span id=tc-hl></span><button id=tc-hl-clear
hidden>clear highlight</button><span id=tc-filter></span><button id=tc-filter-clear hidden
>show all records</button></div>
<p class=tc-hint>Drag the time axis to zoom into a range (or ctrl+wheel, W/S, double-click);
drag the lanes or shift+wheel to pan (A/D). Zoomed out, a lane shows per pixel column how
busy it was and its worst state; zoomed in, every slice. Hover for details; click a
goroutine to follow it across threads. The address bar links to the current view.</p>
<div id=tc-legend></div>
<p id=tc-unaligned class=note hidden></p>
<canvas id=tc-axis></canvas>
<div id=tc-scroll><div id=tc-content><div id=tc-labels></div><canvas id=tc-lanes></canvas>
</div></div></section>
<div id=tc-tip hidden></div>
{_summary_tables(a)}
<script type="application/json" id="tc-meta">{_script_json(tl.meta)}</script>
{early}
<script>{asset("timeline.js")}</script>
{late}
</body></html>
"""


def write_html(a: Analysis, path: str | Path) -> None:
    """Write the page (see the module docstring) to *path*."""
    Path(path).write_text(page(a), encoding="utf-8")


# ---------------------------------------------------------------------------------- notebooks

#: a notebook figure draws every slice up to this many; beyond, per-bin aggregates
FIGURE_EXACT = 20_000
_BLOCKING = ("blocking inside library call", "#d62728")


def _hover(r) -> str:
    parts = [
        f"<b>{_esc(r.call)}</b> ({_esc(r.library)})",
        f"syscall {_esc(r.syscall or 'none: off CPU')} for {r.dur_ns / 1e6:.3f} ms",
        f"thread {_esc(r.thread)} tid {r.tid} pid {r.pid}"
        + (f" goroutine {int(r.goid)}" if r.goid is not None and r.goid == r.goid else ""),
        f"call site {_esc(r.call_site)}",
    ]
    for title, frames in (("Go", r.go_stack), ("C", r.native_stack), ("Python", r.python_stack)):
        if isinstance(frames, list) and frames:
            parts.append(f"{title} stack:<br>  " + "<br>  ".join(_esc(f) for f in frames[:12]))
    return "<br>".join(parts)


def _segments(x0: np.ndarray, x1: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(x0)
    xs = np.full(3 * n, np.nan)
    ys = np.full(3 * n, np.nan)
    xs[0::3], xs[1::3] = x0, x1
    ys[0::3], ys[1::3] = y, y
    return xs, ys


def _lane_key(f: pd.DataFrame) -> np.ndarray:
    """(pid, tid) as one sortable int64: the figure's lanes are sorted by process, then
    thread."""
    return f["pid"].to_numpy(np.int64) * (1 << 32) + f["tid"].to_numpy(np.int64)


def _figure_lanes(s: pd.DataFrame, b: pd.DataFrame) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The figure's lanes: every thread with a slice or a blocking record, as sorted keys
    (see _lane_key) and as (pid, tid)."""
    keys = np.unique(
        np.concatenate([_lane_key(s) if len(s) else [], _lane_key(b) if len(b) else []])
    )
    keys = keys.astype(np.int64)
    return keys, [(int(k >> 32), int(k & 0xFFFFFFFF)) for k in keys.tolist()]


def _add_slice_traces(
    fig: go.Figure, s: pd.DataFrame, keys: np.ndarray, t0: int, bins: int, exact_up_to: int
) -> str:
    """One trace per slice class: each slice a segment on its lane's row, or beyond
    *exact_up_to* slices the worst class per bin (see _binned); returns the mode."""
    import plotly.graph_objects as go

    mode = "exact"
    lane = np.searchsorted(keys, _lane_key(s))
    cls = slice_classes(s).astype(np.int64)
    row = np.array([c[5] for c in CLASSES])[cls]
    y = lane + np.array([-0.3, 0.0, 0.3])[row]
    x0 = (s["ref_ts"].to_numpy(np.int64) - t0) / 1e6
    x1 = x0 + s["dur"].to_numpy(np.int64) / 1e6
    if len(s) > exact_up_to:
        mode = "binned"
        x0, x1, y, cls = _binned(x0, x1, lane * ROWS + row, cls, bins)
        y = y // ROWS + np.array([-0.3, 0.0, 0.3])[y % ROWS]
    for i, (_k, _st, label, colour, _sev, _r) in enumerate(CLASSES):
        m = cls == i
        if not m.any():
            continue
        xs, ys = _segments(x0[m], x1[m], y[m])
        fig.add_trace(
            go.Scattergl(
                x=xs,
                y=ys,
                mode="lines",
                name=label,
                hoverinfo="skip",
                line={"color": colour, "width": 5},
            )
        )
    return mode


def _add_blocking_traces(fig: go.Figure, b: pd.DataFrame, keys: np.ndarray, t0: int) -> None:
    """The blocking records on their threads' lanes: a thick segment each, and a marker at
    its middle that carries the hover text (call, syscall, thread, stacks)."""
    import plotly.graph_objects as go

    y = np.searchsorted(keys, _lane_key(b))
    x0 = (b["start_ns"].to_numpy(np.int64) - t0) / 1e6
    x1 = (b["end_ns"].to_numpy(np.int64) - t0) / 1e6
    label, colour = _BLOCKING
    xs, ys = _segments(x0, x1, y.astype(float))
    fig.add_trace(
        go.Scattergl(x=xs, y=ys, mode="lines", name=label, line={"color": colour, "width": 9})
    )
    fig.add_trace(
        go.Scattergl(
            x=(x0 + x1) / 2,
            y=y,
            mode="markers",
            name="blocking (hover for details)",
            marker={"color": colour, "size": 9, "symbol": "diamond"},
            hovertext=[_hover(r) for r in b.itertuples()],
            hoverinfo="text",
        )
    )


def _lay_out_figure(fig: go.Figure, lanes: list[tuple[int, int]], names: dict) -> None:
    """Size the figure to its lanes, label each lane with pid, tid and thread name (top
    down), and put the legend above the plot."""
    fig.update_layout(
        height=max(350, 60 + 34 * len(lanes)),
        template="plotly_white",
        xaxis={"title": "ms since the capture start (CLOCK_MONOTONIC)", "zeroline": False},
        yaxis={
            "tickvals": list(range(len(lanes))),
            "ticktext": [_esc(f"{p} {t} {names.get(t, '')}".strip()) for p, t in lanes],
            "autorange": "reversed",
            "zeroline": False,
        },
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
        margin={"l": 220, "r": 20, "t": 40, "b": 50},
        hoverlabel={"align": "left"},
    )


def figure(
    a: Analysis, bins: int = 1500, exact_up_to: int = FIGURE_EXACT
) -> tuple[go.Figure, dict]:
    """A plotly figure of the thread lanes for notebooks (the page is richer), and facts
    about it: ``t0_ns``, ``lanes``, ``mode`` ("exact" or "binned").

    Nothing is dropped: up to *exact_up_to* slices each is a segment; beyond, the capture is
    cut into *bins* and each lane row shows, per bin, the worst state of the slices in it
    (every slice counts in each bin it touches)."""
    import plotly.graph_objects as go

    s = a.slices_on_threads()
    t0 = capture_start_ns(a)
    b = a.blocking
    keys, lanes = _figure_lanes(s, b)
    names = a.thread_names()
    fig = go.Figure()
    mode = "exact"
    if len(s):
        mode = _add_slice_traces(fig, s, keys, t0, bins, exact_up_to)
    if len(b):
        _add_blocking_traces(fig, b, keys, t0)
    _lay_out_figure(fig, lanes, names)
    return fig, {"t0_ns": t0, "lanes": len(lanes), "mode": mode}


def _binned(
    x0: np.ndarray, x1: np.ndarray, track: np.ndarray, cls: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (track, bin): the worst class among the slices touching the bin, as segments."""
    lo, hi = float(x0.min()), float(x1.max())
    width = max(hi - lo, 1e-9) / bins
    b0 = np.clip(((x0 - lo) / width).astype(np.int64), 0, bins - 1)
    b1 = np.clip(((x1 - lo) / width).astype(np.int64), 0, bins - 1)
    n_tracks = int(track.max()) + 1
    sev = np.array([c[4] for c in CLASSES])
    best = np.full((n_tracks, bins), -1)
    best_sev = np.full((n_tracks, bins), -1)
    for c in np.unique(cls):
        m = cls == c
        size = n_tracks * (bins + 1)
        diff = np.bincount(track[m] * (bins + 1) + b0[m], minlength=size + 1)[:size]
        diff -= np.bincount(track[m] * (bins + 1) + b1[m] + 1, minlength=size + 1)[:size]
        present = np.cumsum(diff.reshape(n_tracks, bins + 1), axis=1)[:, :bins] > 0
        better = present & (sev[c] > best_sev)
        best[better], best_sev[better] = c, sev[c]
    t, k = np.nonzero(best >= 0)
    return lo + k * width, lo + (k + 1) * width, t, best[t, k]
