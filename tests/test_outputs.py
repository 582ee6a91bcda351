"""The renderers: the Perfetto trace read back with the perfetto package's protos, and the
notebook executed top to bottom. The HTML timeline page is tested in a real headless Chromium
in tests/test_timeline.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from tracecorr.correlator.api import analyze
from tracecorr.correlator.render.perfetto import export

from tests.conftest import SAMPLES

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def go_analysis():
    return analyze([str(SAMPLES / "go_hiredis")])


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
    assert len(starts) == wrote["flows"] + wrote["waker_flows"] and wrote["flows"] > 0
    assert finishes <= starts
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
    assert "2 of 2 captures analysed" in text  # the fleet section: then DuckDB over its output
    tables = [o["data"].get("text/html", "") for o in outputs if "data" in o]
    assert any("py_hiredis" in t and "main.(*worker).command" in t for t in tables)
    assert any("shared-connection" in t and "go_hiredis" in t for t in tables)
