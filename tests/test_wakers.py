"""Wakers and critical paths on real captures: redis-server recorded beside the workload.

The workloads' ground truth says which command each call sent (DEBUG SLEEP stalls the whole
single-threaded server; BLPOP on an empty list waits for its timeout while the server goes on
serving) and when it ran; what redis-server did meanwhile is in the kernel's own events. The
expected values are those facts, not the correlator's output.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tracecorr.correlator.api import analyze

from sample_traces.capture import GoOptions, PyOptions, capture_go
from sample_traces.capture import capture_py as run_capture_py
from tests.conftest import read_truth

pytestmark = pytest.mark.capture
SLEEPS = {"clock_nanosleep", "nanosleep"}
SLOW_NS = 20_000_000


@pytest.fixture(scope="module")
def go_peer(tmp_path_factory, redis_server, perf, go_toolchain) -> Path:
    """Go workload and the redis-server it talks to, in one perf session (-p both). One
    goroutine: every slow command has the server to itself, so what the server did during
    it is known exactly (several goroutines are covered by the committed sample and the
    live capture test)."""
    out = tmp_path_factory.mktemp("go_peer")
    capture_go(
        out,
        GoOptions(
            goroutines=1,
            commands=24,
            slow_every=3,
            slow_ms=40,
            redis_port=redis_server.port,
            peer_redis=True,
        ),
    )
    return out


@pytest.fixture(scope="module")
def py_peer(tmp_path_factory, redis_server, perf, pyspy) -> Path:
    out = tmp_path_factory.mktemp("py_peer")
    run_capture_py(
        out,
        PyOptions(
            threads=2,
            commands=18,
            slow_every=3,
            slow_ms=80,
            formats=["chrometrace"],
            redis_port=redis_server.port,
            peer_redis=True,
        ),
    )
    return out


def slow_calls(truth: list[dict]) -> list[dict]:
    return [
        c
        for c in truth
        if c["kind"] == "call"
        and c.get("cmd", "").split(" ")[0] in ("DEBUG", "BLPOP")
        and c["dur_ns"] >= SLOW_NS
    ]


def alone(c: dict, calls: list[dict]) -> bool:
    """No other DEBUG SLEEP overlaps *c*: the server stalled for no one else meanwhile."""
    return not any(
        o is not c and o["cmd"].startswith("DEBUG") and o["t0"] < c["t1"] and c["t0"] < o["t1"]
        for o in calls
    )


def last_record(b, c: dict) -> dict | None:
    """The library record that ended the call: its thread's last one inside it (a Go
    runtime record after it, the thread waiting for a P, is woken by the process's own
    threads: rightly, and not what these tests ask)."""
    inside = b[(b["tid"] == c["tid"]) & (b["start_ns"] >= c["t0"]) & (b["end_ns"] <= c["t1"])]
    inside = inside[inside["in"] == "library"]
    return None if inside.empty else inside.sort_values("end_ns").iloc[-1].to_dict()


def test_debug_sleep_and_blpop_name_redis_and_what_it_did(go_peer, redis_server):
    a = analyze([str(go_peer)])
    truth = read_truth(go_peer / "truth.jsonl")
    redis_pid = redis_server.pid()
    calls = slow_calls(truth)
    sleeps = [c for c in calls if c["cmd"].startswith("DEBUG SLEEP")]
    blpops = [c for c in calls if c["cmd"].startswith("BLPOP")]
    assert sleeps and blpops
    checked = {"sleep": 0, "sleep_alone": 0, "blpop_alone": 0, "unrecorded": 0}
    for c in calls:
        r = last_record(a.blocking, c)
        assert r is not None, c
        w = r["waker"]
        if w is None:  # woken from a context perf -p did not record (softirq elsewhere)
            assert "not in the recording" in r["waker_note"], r["waker_note"]
            checked["unrecorded"] += 1
            continue
        assert (w["pid"], w["comm"]) == (redis_pid, "redis-server"), w
        assert r["start_ns"] < w["wakeup_ns"] <= r["end_ns"]
        lw = w["longest_wait"]
        assert lw is not None and r["start_ns"] <= lw["start_ns"] <= lw["end_ns"] <= r["end_ns"]
        path = r["critical_path"]
        assert path[0]["tid"] == w["tid"]
        for hop in path:  # every hop inside the record's window
            assert r["start_ns"] <= hop["end_ns"] <= r["end_ns"]
        secs = float(c["cmd"].split()[-1])
        if c in sleeps:
            # redis-server slept in the command itself: the longest wait is that sleep, as
            # long as the command asked for, and a timer ended it
            assert lw["syscall"] in SLEEPS, lw
            assert lw["dur_ns"] >= 0.9 * secs * 1e9, (lw, secs)
            assert path[-1]["comm"] == "(timer interrupt)", path
            checked["sleep"] += 1
            if alone(c, calls):
                assert lw["dur_ns"] >= 0.8 * r["dur_ns"], (lw, r["dur_ns"])
                checked["sleep_alone"] += 1
        elif alone(c, calls):
            # the server went on serving: no long sleep, its event loop waited for work
            assert lw["syscall"] not in SLEEPS and lw["syscall"] == "epoll_wait", lw
            checked["blpop_alone"] += 1
    assert checked["sleep"] and checked["sleep_alone"] and checked["blpop_alone"], checked
    assert checked["unrecorded"] <= len(calls) // 5, checked
    by = a.summary["by_waker"]
    assert by[0]["comm"] == "redis-server"
    lib = a.blocking[a.blocking["in"] == "library"]  # the summary's records: the library's
    assert sum(x["records"] for x in by) == int(lib["waker"].notna().sum())


def test_per_process_capture_has_no_waker_for_them_never_a_wrong_one(go_capture):
    """perf -p of the workload alone: redis-server's wakeups are not recorded."""
    a = analyze([str(go_capture)])
    truth = read_truth(go_capture / "truth.jsonl")
    pid = truth[0]["pid"]
    for c in slow_calls(truth):
        r = last_record(a.blocking, c)
        if r is None:
            continue
        assert r["waker"] is None, r["waker"]
        assert "--peer-pid" in r["waker_note"]
    for w in a.blocking["waker"]:
        if w is not None:  # only our own threads or an interrupt can be named
            assert w["pid"] in (pid, 0), w
    assert "--peer-pid" in a.summary["waker_note"]


def test_python_capture_gets_the_same_fields(py_peer, redis_server):
    a = analyze([str(py_peer)])
    truth = read_truth(py_peer / "truth.jsonl")
    named = 0
    for c in slow_calls(truth):
        r = last_record(a.blocking, c)
        if r is None:
            continue
        w = r["waker"]
        if w is None:  # py-spy stopped the thread (the tracer resumed it), or an unrecorded
            # process (ksoftirqd) delivered the wakeup: said so, never a wrong waker
            assert "tracer" in r["waker_note"] or "not in the recording" in r["waker_note"], r
            continue
        named += 1
        assert (w["pid"], w["comm"]) == (redis_server.pid(), "redis-server"), w
        if c["cmd"].startswith("DEBUG SLEEP") and alone(c, slow_calls(truth)):
            assert w["longest_wait"]["syscall"] in SLEEPS
    assert named >= 2


def test_perfetto_flow_from_the_waker_thread_to_the_record(go_peer, tmp_path):
    from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace, TrackEvent
    from tracecorr.correlator.render.perfetto import export

    a = analyze([str(go_peer)])
    wrote = export(a, tmp_path / "t.pftrace")
    trace = Trace.FromString((tmp_path / "t.pftrace").read_bytes())
    tracks = {
        p.track_descriptor.uuid: p.track_descriptor
        for p in trace.packet
        if p.HasField("track_descriptor")
    }

    def thread_of(uuid: int) -> int:
        d = tracks[uuid]
        while not d.HasField("thread"):
            d = tracks[d.parent_uuid]
        return d.thread.tid

    begins = [
        p
        for p in trace.packet
        if p.HasField("track_event") and p.track_event.type == TrackEvent.TYPE_SLICE_BEGIN
    ]
    origin = {
        f: thread_of(p.track_event.track_uuid) for p in begins for f in p.track_event.flow_ids
    }
    woken = [
        p
        for p in begins
        if "blocking" in p.track_event.categories and p.track_event.terminating_flow_ids
    ]
    with_waker = a.blocking[a.blocking["waker"].map(lambda w: bool(w and w["tid"]))]
    assert len(woken) == len(with_waker) == wrote["waker_flows"] > 0
    want = {(int(r.start_ns), int(r.waker["tid"])) for r in with_waker.itertuples()}
    got = {(p.timestamp, origin[p.track_event.terminating_flow_ids[0]]) for p in woken}
    assert got == want
