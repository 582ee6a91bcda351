"""The pitfalls of cgo + hiredis, planted on purpose in a real workload and named from its
traces; every field is checked against the workload's own log (goroutine, thread, c->fd
read inside C, CLOCK_MONOTONIC around each call). Clean goroutines, each with its own
context and every reply freed, must raise nothing."""

from __future__ import annotations

import pytest
from tracecorr.correlator.api import analyze
from tracecorr.correlator.render.json_report import to_dict
from tracecorr.correlator.render.text import render

from sample_traces.capture import GoOptions, capture_go
from tests.conftest import read_truth

pytestmark = pytest.mark.capture
TOL = 1_000  # ns: the truth's clock readings sit just outside the calls


@pytest.fixture(scope="module")
def pitfalls(tmp_path_factory, redis_server, perf, go_toolchain):
    out = tmp_path_factory.mktemp("pitfalls")
    capture_go(
        out,
        GoOptions(
            goroutines=2,
            commands=30,
            slow_every=10,
            slow_ms=20,
            decoy_every=0,
            shared_pairs=1,
            pool_users=3,
            burst=10,
            leakers=1,
            redis_port=redis_server.port,
        ),
    )
    return out, analyze([str(out)]), read_truth(out / "truth.jsonl")


def calls_of(truth, role):
    return [c for c in truth if c.get("kind") == "call" and c.get("role") == role]


def only(findings, kind):
    found = [f for f in findings if f["kind"] == kind]
    assert len(found) == 1, [(f["kind"], f["summary"]) for f in findings]
    return found[0]


def test_shared_context(pitfalls):
    _, a, truth = pitfalls
    shared = [c for c in calls_of(truth, "shared") if c["func"] == "redisCommandArgv"]
    f = only(a.findings, "shared-connection")
    assert f["severity"] == "error"
    assert f["fd"] == shared[0]["fd"] and f["pid"] == truth[0]["pid"]
    assert set(f["goroutines"]) == {c["goid"] for c in shared}
    assert set(f["threads"]) == {c["tid"] for c in shared}
    # overlapping use: each PING went out while the other goroutine's DEBUG SLEEP waited
    lo = min(c["t0"] for c in shared) - TOL
    hi = max(c["t1"] for c in shared) + TOL
    assert lo <= f["first_ns"] <= f["last_ns"] <= hi
    pings = [c for c in shared if c["cmd"] == "PING"]
    assert 1 <= f["count"] <= len(pings)
    assert "its own context" in f["summary"] and "mutex" in f["summary"]  # the fix


def test_pool_handoff(pitfalls):
    _, a, truth = pitfalls
    pool = calls_of(truth, "pool")
    f = only(a.findings, "connection-handoff")
    assert f["severity"] == "warning"
    assert {f["fd"]} == {c["fd"] for c in pool}
    assert set(f["goroutines"]) == {c["goid"] for c in pool}
    commands = [c for c in pool if c["func"] == "redisCommandArgv"]
    assert f["calls"] >= len(commands) and f["count"] >= len({c["goid"] for c in commands}) - 1
    assert min(c["t0"] for c in pool) - TOL <= f["first_ns"]
    assert f["last_ns"] <= max(c["t1"] for c in pool) + TOL


def test_reply_leak(pitfalls):
    _, a, truth = pitfalls
    leaked = [c for c in calls_of(truth, "leak") if c["func"] == "redisCommandArgv"]
    f = only(a.findings, "reply-leak")
    assert f["goroutines"] == [leaked[0]["goid"]]
    assert f["calls"] == len(leaked) and f["freed"] == 0 and f["count"] == len(leaked)
    assert f["threads"] == sorted({c["tid"] for c in leaked})
    assert f["call_sites"] and all(s.startswith("main.(*worker).command") for s in f["call_sites"])


def test_thread_growth(pitfalls):
    _, a, truth = pitfalls
    burst = [c for c in calls_of(truth, "burst") if c["func"] == "redisCommandArgv"]
    f = only(a.findings, "thread-growth")
    assert f["threads_in_calls_max"] >= len(burst)
    assert f["threads_max"] >= f["threads_in_calls_max"]
    lo, hi = f["peak_ns"]
    # the peak is the burst: every burst goroutine was inside its BLPOP then
    assert all(c["t0"] - TOL <= lo and hi <= c["t1"] + TOL for c in burst)


def test_clean_goroutines_raise_nothing(pitfalls):
    _, a, truth = pitfalls
    clean = calls_of(truth, "clean")
    goids, fds = {c["goid"] for c in clean}, {c["fd"] for c in clean}
    for f in a.findings:
        assert not goids & set(f["goroutines"]), f
        assert f["fd"] not in fds, f


def test_findings_in_the_reports(pitfalls):
    _, a, _ = pitfalls
    d = to_dict(a)
    assert [f["kind"] for f in d["findings"]][0] == "shared-connection"  # worst first
    for f in d["findings"]:
        assert {"kind", "severity", "summary", "pid", "fd", "goroutines", "threads"} <= set(f)
        assert {"first_ns", "last_ns", "count"} <= set(f)
    text = render(a)
    assert text.index("Findings (4)") < text.index("Sources")
    assert "ERROR shared-connection" in text


def test_a_clean_capture_has_no_findings(go_capture, py_capture):
    assert analyze([str(go_capture)]).findings == []
    assert analyze([str(py_capture)]).findings == []
