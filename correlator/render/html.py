"""A self-contained, offline HTML timeline of an Analysis (plotly.js inlined), for postmortems.

One lane per OS thread (grouped by process, labelled "pid tid name"); in each lane the
goroutine stretches on that thread (running, in a syscall / cgo call), the py-spy samples, the
syscalls, the off-CPU intervals, and the blocking records inside library calls, drawn on top
and hoverable with goroutine, call, syscall, durations and the Go / C / Python stacks.

Everything is drawn as WebGL line segments (Scattergl, one trace per category, segments
separated by None): SVG bars get slow beyond ~10 k shapes, WebGL segments stay fast up to a
million, but the page still has to parse them. The x axis is numeric milliseconds since the
first event (plotly's px.timeline rounds durations to whole ms). Past ``max_segments`` the
shortest background slices are not drawn, and the page says how many. Every string from a
trace is HTML-escaped.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..api import Analysis

#: Beyond this many slices the shortest background ones are not drawn (the page says so):
#: measured first paint in headless Chromium (software GL) on the perf benchmark capture:
#: 20 000 segments 2.6 s, 50 000 4.3 s, 200 000 8.6 s.
MAX_SEGMENTS = 20_000
#: (label, slice kind, lane offset, colour, width)
CATEGORIES = [
    ("goroutine running", "go.running", 0.32, "#2ca02c", 5),
    ("goroutine in syscall / cgo call", "go.syscall", 0.32, "#ff7f0e", 5),
    ("py-spy sample", "py.sample", 0.32, "#9467bd", 5),
    ("syscall", "os.syscall", 0.0, "#1f77b4", 5),
    ("off-CPU", "os.offcpu", -0.25, "#7f7f7f", 4),
]
BLOCKING = ("blocking inside library call", "#d62728", 9)


def _esc(x) -> str:
    return html.escape("" if x is None or (isinstance(x, float) and np.isnan(x)) else str(x))


def _segments(x0: np.ndarray, x1: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(x0)
    xs = np.full(3 * n, np.nan)
    ys = np.full(3 * n, np.nan)
    xs[0::3], xs[1::3] = x0, x1
    ys[0::3], ys[1::3] = y, y
    return xs, ys


def _lines(
    x0: np.ndarray, x1: np.ndarray, y: np.ndarray, label: str, colour: str, width: int
) -> go.Scattergl:
    """One WebGL trace of horizontal segments [x0, x1] at heights y (no hover)."""
    xs, ys = _segments(x0, x1, y)
    return go.Scattergl(
        x=xs,
        y=ys,
        mode="lines",
        name=label,
        hoverinfo="skip",
        line={"color": colour, "width": width},
    )


def _lanes(a: Analysis, slices: pd.DataFrame) -> dict[tuple[int, int], tuple[int, str]]:
    names = a.thread_names()
    keys = set(zip(slices["pid"].astype(int), slices["tid"].astype(int), strict=True))
    keys |= set(zip(a.blocking["pid"].astype(int), a.blocking["tid"].astype(int), strict=True))
    lanes = {}
    for i, (pid, tid) in enumerate(sorted(k for k in keys if k[1] > 0)):
        lanes[(pid, tid)] = (i, f"{pid if pid >= 0 else '?'} {tid} {names.get(tid, '')}".strip())
    return lanes


def _hover(r) -> str:
    parts = [
        f"<b>{_esc(r.call)}</b> ({_esc(r.library)})",
        f"syscall {_esc(r.syscall or 'none: off CPU')} for {r.dur_ns / 1e6:.3f} ms",
        f"thread {_esc(r.thread)} tid {r.tid} pid {r.pid}"
        + (f" goroutine {int(r.goid)}" if r.goid is not None and r.goid == r.goid else ""),
        f"off-CPU {_esc(r.off_cpu_ns)} ns ({_esc(r.off_cpu_state)}), runqueue "
        f"{_esc(r.runq_ns if r.runq_ns is not None else 'unknown')} ns",
        f"call site {_esc(r.call_site)}",
        f"evidence {_esc(', '.join(r.evidence))}",
    ]
    for title, frames in (("Go", r.go_stack), ("C", r.native_stack), ("Python", r.python_stack)):
        if frames:
            parts.append(f"{title} stack:<br>  " + "<br>  ".join(_esc(f) for f in frames[:12]))
    return "<br>".join(parts)


def figure(a: Analysis, max_segments: int = MAX_SEGMENTS) -> tuple[go.Figure, dict]:
    """The plotly figure and facts for the page (t0, lanes, what was not drawn)."""
    slices = a.slices_on_threads()
    starts = [slices["ref_ts"].min()] if len(slices) else []
    if len(a.blocking):
        starts.append(a.blocking["start_ns"].min())
    t0 = int(min(starts)) if starts else 0
    lanes = _lanes(a, slices) if len(slices) or len(a.blocking) else {}
    info = {"t0_ns": t0, "lanes": len(lanes), "hidden": {}}

    # budget: drop the shortest background slices first
    if len(slices) > max_segments:
        cut = slices["dur"].nlargest(max_segments).min()
        hidden = slices[slices["dur"] < cut]
        info["hidden"] = {"count": int(len(hidden)), "shorter_than_ns": int(cut)}
        slices = slices[slices["dur"] >= cut]

    fig = go.Figure()
    lane_of = {k: v[0] for k, v in lanes.items()}
    for label, kind, off, colour, width in CATEGORIES:
        s = slices[slices["kind"] == kind] if len(slices) else slices
        if not len(s):
            continue
        y = (
            np.array(
                [
                    lane_of[(p, t)]
                    for p, t in zip(s["pid"].astype(int), s["tid"].astype(int), strict=True)
                ],
                np.float64,
            )
            + off
        )
        x0 = (s["ref_ts"].to_numpy() - t0) / 1e6
        fig.add_trace(_lines(x0, x0 + s["dur"].to_numpy() / 1e6, y, label, colour, width))
    b = a.blocking
    if len(b):
        y = np.array(
            [lane_of[(int(p), int(t))] for p, t in zip(b["pid"], b["tid"], strict=True)], np.float64
        )
        x0 = (b["start_ns"].to_numpy() - t0) / 1e6
        x1 = (b["end_ns"].to_numpy() - t0) / 1e6
        label, colour, width = BLOCKING
        fig.add_trace(_lines(x0, x1, y, label, colour, width))
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
    fig.update_layout(
        height=max(350, 60 + 34 * len(lanes)),
        template="plotly_white",
        xaxis={"title": "ms since the first event (CLOCK_MONOTONIC)", "zeroline": False},
        yaxis={
            "tickvals": list(range(len(lanes))),
            "ticktext": [_esc(v[1]) for v in lanes.values()],
            "autorange": "reversed",
            "zeroline": False,
        },
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
        margin={"l": 220, "r": 20, "t": 40, "b": 50},
        hoverlabel={"align": "left"},
    )
    return fig, info


def _table(rows: list[dict], cols: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{_esc(t)}</th>" for _, t in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(r.get(k))}</td>" for k, _ in cols) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _ms_rows(rows: list[dict]) -> list[dict]:
    return [
        {**r, **{k: f"{r[k] / 1e6:.1f} ms" for k in ("total_ns", "p50_ns", "max_ns")}} for r in rows
    ]


def page(a: Analysis, max_segments: int = MAX_SEGMENTS) -> str:
    fig, info = figure(a, max_segments)
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
    hidden = info["hidden"]
    note = (
        f"<p class=note>Not drawn: {hidden['count']:,} slices shorter than "
        f"{hidden['shorter_than_ns'] / 1e3:.1f} µs (more than {max_segments:,} in all); "
        "blocking records are always drawn.</p>"
        if hidden
        else ""
    )
    plot = fig.to_html(full_html=False, include_plotlyjs=True, config={"responsive": True})
    nc = s["native_calls"]
    concurrency = (
        f" {nc['calls']} Go calls into {_esc(a.library.name)}; at most "
        f"{nc['max_threads']} thread(s) inside at once."
        if nc["calls"]
        else ""
    )
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>tracecorr: blocking inside {_esc(a.library.name)}
</title><style>
body {{ font-family: sans-serif; margin: 16px; }} table {{ border-collapse: collapse;
margin: 0 24px 12px 0; }} td, th {{ border: 1px solid #ccc; padding: 2px 8px;
font-size: 13px; text-align: left; }} .row {{ display: flex; flex-wrap: wrap; }}
.note {{ color: #a33; }}
</style></head><body>
<h2>tracecorr: blocking syscalls inside {_esc(a.library.name)} calls</h2>
<p>{s["records"]} blocking record(s), {s["blocked_ns"] / 1e6:.1f} ms blocked; {s["threads"]}
thread(s), {s["goroutines"]} goroutine(s).{concurrency} Time 0 = CLOCK_MONOTONIC
{info["t0_ns"]} ns.</p>
<div class=row>
<div><h3>Top call sites</h3>{
        _table(
            _ms_rows(s["by_call_site"][:10]),
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
            _ms_rows(s["by_syscall"][:10]),
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
</div>
{note}
<div id=timeline>{plot}</div>
</body></html>
"""


def write_html(a: Analysis, path: str | Path, max_segments: int = MAX_SEGMENTS) -> None:
    Path(path).write_text(page(a, max_segments), encoding="utf-8")
