"""The renderers: the offline HTML timeline in a real headless Chromium, the Perfetto trace
read back with the perfetto package's protos, and the notebook executed top to bottom."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from tracecorr.correlator.api import analyze
from tracecorr.correlator.render.html import page, write_html
from tracecorr.correlator.render.perfetto import export

from sample_traces.capture import PyOptions, capture_py
from tests.conftest import SAMPLES, require

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = '<script>document.body.setAttribute("data-pwned","1")</script>"q"</div>'
HOSTILE_IMG = "<img src=x onerror=\"document.body.setAttribute('data-pwned','2')\">"


def chromium() -> str:
    path = shutil.which("chromium")
    require(path is not None, "chromium (Debian package)")
    return path


def load_in_chromium(html: Path, tmp: Path) -> tuple[str, str]:
    """(DOM after scripts ran, browser log) of a page loaded headless from a file URL."""
    proc = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp / 'chrome'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=15000",
            "--window-size=1400,1000",
            "--dump-dom",
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    return proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def go_analysis():
    return analyze([str(SAMPLES / "go_hiredis")])


def test_html_is_self_contained_and_draws_in_chromium(go_analysis, tmp_path):
    out = tmp_path / "t.html"
    write_html(go_analysis, out)
    text = out.read_text()
    assert not re.search(r"<script[^>]+src=", text)  # plotly.js inlined, no CDN
    assert len(text) > 3_000_000 and "plotly" in text
    dom, log = load_in_chromium(out, tmp_path)
    assert "Uncaught" not in log and "CONSOLE" not in log.replace("INFO:CONSOLE", ""), log[-2000:]
    assert 'class="main-svg"' in dom  # plotly drew the axes
    assert "<canvas" in dom  # and the WebGL segments
    # hover data for every blocking record: call, syscall and the Go stack
    assert text.count("call site main.(*worker).command") >= len(go_analysis.blocking)
    assert "main._Cfunc_redisCommandArgv" in text


def test_hostile_names_render_as_text(tmp_path, redis_server, perf, pyspy):
    """A real capture whose thread names carry markup, plus function names and a Redis key
    with markup put into the result: the page shows them and runs none of it."""
    cap = tmp_path / "cap"
    capture_py(
        cap,
        PyOptions(
            threads=2,
            commands=8,
            slow_every=4,
            slow_ms=60,
            decoy_every=0,
            formats=["chrometrace"],
            name_prefix=HOSTILE + "-",
            redis_port=redis_server.port,
        ),
    )
    a = analyze([str(cap)])
    assert len(a.blocking) and a.blocking["thread"].str.contains("<script>").any()
    a.blocking["call_site"] = HOSTILE_IMG + " (workload.py:1)"
    a.blocking["call"] = "GET user:</div><b>key</b>"
    for s in a.summary["by_call_site"]:
        s["call_site"] = HOSTILE_IMG
    out = tmp_path / "hostile.html"
    out.write_text(page(a))
    dom, log = load_in_chromium(out, tmp_path)
    assert not re.search(r"<body[^>]*data-pwned", dom)  # no payload ran
    assert not re.search(r"<(img|script)[^>]*data-pwned", dom)  # none became an element
    assert "&lt;img src=x onerror=" in dom  # shown as text in the summary table
    assert 'class="main-svg"' in dom and "Uncaught" not in log


def test_perfetto_trace_reads_back(go_analysis, tmp_path):
    from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace, TrackEvent

    out = tmp_path / "t.pftrace"
    wrote = export(go_analysis, out)
    trace = Trace.FromString(out.read_bytes())
    tracks = {
        p.track_descriptor.uuid: p.track_descriptor
        for p in trace.packet
        if p.HasField("track_descriptor")
    }
    threads = {(d.thread.pid, d.thread.tid) for d in tracks.values() if d.HasField("thread")}
    b = go_analysis.blocking
    assert set(zip(b["pid"], b["tid"], strict=True)) <= threads
    go_src = next(s for s in go_analysis.sources if s.meta.kind == "go-trace")
    on_thread = go_src.slices[go_src.slices["tid"] > 0]
    assert threads >= set(zip(on_thread["pid"], on_thread["tid"], strict=True))
    begins = [
        p.track_event
        for p in trace.packet
        if p.HasField("track_event") and p.track_event.type == TrackEvent.TYPE_SLICE_BEGIN
    ]
    ends = [
        p
        for p in trace.packet
        if p.HasField("track_event") and p.track_event.type == TrackEvent.TYPE_SLICE_END
    ]
    assert len(begins) == len(ends) == sum(wrote["slices"].values())
    by_cat = {}
    for e in begins:
        by_cat[e.categories[0]] = by_cat.get(e.categories[0], 0) + 1
    assert by_cat["blocking"] == len(b)
    assert by_cat["go.syscall"] == int((on_thread["kind"] == "go.syscall").sum())
    # flows: from each hiredis call to the syscalls inside it, every end has its start
    starts = {f for e in begins for f in e.flow_ids}
    finishes = {f for e in begins for f in e.terminating_flow_ids}
    assert len(starts) == wrote["flows"] > 0 and finishes <= starts
    blocking_tracks = {u for u, d in tracks.items() if d.name == "blocking"}
    assert blocking_tracks and all(tracks[u].parent_uuid for u in blocking_tracks)
    counters = [
        p
        for p in trace.packet
        if p.HasField("track_event") and p.track_event.type == TrackEvent.TYPE_COUNTER
    ]
    assert len(counters) == len(go_analysis.summary["native_calls"]["series"])
    assert (
        max(c.track_event.double_counter_value for c in counters)
        == go_analysis.summary["native_calls"]["max_threads"]
    )


def test_notebook_runs_top_to_bottom():
    import nbformat
    from nbclient import NotebookClient

    path = ROOT / "notebooks" / "incident_investigation.ipynb"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "matches a logged hiredis call" in text
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs)
