"""The pitfalls of cgo + hiredis, planted on purpose in a real workload and named from its
traces; every field is checked against the workload's own log (goroutine, thread, c->fd
read inside C, CLOCK_MONOTONIC around each call). Clean goroutines, each with its own
context and every reply freed, must raise nothing."""

from __future__ import annotations

import time

import pytest
from tracecorr.correlator.api import analyze
from tracecorr.correlator.render.json_report import to_dict
from tracecorr.correlator.render.text import render

from sample_traces.capture import GoOptions, capture_go
from sample_traces.capture.redis_server import free_port
from tests.conftest import read_truth
from tests.test_capture_cli import start, tracecorr

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


def test_a_live_clean_service_joined_mid_run_raises_nothing(go_capture, redis_server, tmp_path):
    """Go + DWARF, the Go trace taken through pprof while the service runs: the connections
    were opened before the trace began, so the syscalls on them that no Go call holds (their
    callchains reach libhiredis) have no goroutine that can be told. They are no second user:
    every goroutine dials its own context and no finding is raised (it once raised a
    shared-connection per goroutine, and a thread-growth of "8 threads in calls, 4 in all")."""
    port = free_port()
    truth_path = tmp_path / "truth.jsonl"
    proc, pid = start(
        [str(go_capture / "go_hiredis"), "-port", str(redis_server.port), "-goroutines", "4",
         "-duration", "5s", "-slow-every", "5", "-slow-ms", "25", "-decoy-every", "0",
         "-trace", "", "-truth", str(truth_path), "-pprof", f"127.0.0.1:{port}"],
        truth_path,
    )  # fmt: skip
    try:
        time.sleep(0.8)
        out = tmp_path / "cap"
        r = tracecorr("capture", "--pid", str(pid), "--duration", "2s", "--dwarf",
                      "--go-trace-url", f"http://127.0.0.1:{port}", "-o", str(out))  # fmt: skip
        assert r.returncode == 0, r.stderr
    finally:
        proc.wait(timeout=60)
    a = analyze([str(out)])
    assert a.findings == [], [(f["kind"], f["summary"]) for f in a.findings]
    # the situation the findings must not misread: syscalls on the workload's connections
    # that no Go call of the trace holds (made before the trace began)
    truth = read_truth(truth_path)
    fds = {c["fd"] for c in truth if c.get("kind") == "call" and c.get("fd", -1) >= 0}
    assert len(fds) >= 4
    perf = next(s for s in a.sources if s.meta.kind.startswith("perf")).slices
    on = perf[(perf["kind"] == "os.syscall").to_numpy() & perf["fd"].isin(list(fds)).to_numpy()]
    spans = {}
    for c in a.calls.itertuples():
        spans.setdefault(c.tid, []).append((c.start, c.end))
    unheld = [
        r for r in on.itertuples()
        if not any(s0 <= r.ts and r.ts + r.dur <= s1 for s0, s1 in spans.get(r.tid, []))
    ]  # fmt: skip
    assert unheld


@pytest.fixture(scope="module")
def failures(tmp_path_factory, redis_server, perf, go_toolchain):
    """Two clean goroutines, a pooled context handed on after a socket timeout, and a
    connection broken under hiredis (shut down for writing: EPIPE, SIGPIPE)."""
    out = tmp_path_factory.mktemp("failures")
    opts = GoOptions(goroutines=2, commands=20, slow_every=10, slow_ms=20, decoy_every=0,
                     poisoned=1, broken=1, redis_port=redis_server.port)  # fmt: skip
    capture_go(out, opts)
    return out, analyze([str(out)]), read_truth(out / "truth.jsonl")


def test_poisoned_handoff(failures):
    _, a, truth = failures
    f = only(a.findings, "poisoned-handoff")
    (blpop,) = [c for c in calls_of(truth, "poisoned") if c["cmd"].startswith("BLPOP")]
    nexts = [c for c in calls_of(truth, "poisoned-next")]
    assert f["severity"] == "error" and f["fd"] == blpop["fd"] == nexts[0]["fd"]
    assert f["goroutines"] == sorted({blpop["goid"], nexts[0]["goid"]})
    assert blpop["error"] and all(c["error"] == blpop["error"] for c in nexts)  # A's error
    failed = f["failed_call"]
    assert failed["user"] == blpop["goid"] and failed["errno"] == "EAGAIN"
    assert failed["syscall"] in ("read", "recvfrom")
    assert blpop["t0"] - TOL <= failed["start_ns"] and failed["end_ns"] <= blpop["t1"] + TOL
    assert f["count"] == len(nexts) == len(f["calls_at"])
    for (tid, at), c in zip(f["calls_at"], nexts, strict=True):
        assert tid == c["tid"] and c["t0"] - TOL <= at <= c["t1"] + TOL


def test_broken_connection(failures):
    _, a, truth = failures
    f = only(a.findings, "broken-connection")
    (cut,) = [c for c in truth if c.get("kind") == "break"]
    failed = [c for c in calls_of(truth, "broken") if c.get("error") and c["t0"] > cut["t1"]]
    assert f["fd"] == cut["fd"] and f["goroutines"] == [cut["goid"]]
    assert f["errors"] == {"EPIPE": 1} and f["survived"] is True  # truth logged to the end
    # perf recorded signals (signal:signal_deliver): the kernel's SIGPIPE for that write,
    # delivered to the writing thread inside the call
    assert f["sigpipe_delivered"] == 1 and "SIGPIPE was delivered inside the call" in f["summary"]
    perf = next(s for s in a.sources if s.meta.kind.startswith("perf")).instants
    pipes = perf[(perf["kind"] == "os.signal") & (perf["name"] == "SIGPIPE")]
    assert set(pipes["tid"]) == {failed[0]["tid"]} and set(pipes["signal"]) >= {"deliver"}
    assert truth[-1]["kind"] == "end"
    assert failed[0]["t0"] - TOL <= f["first_ns"] and f["last_ns"] <= failed[0]["t1"] + TOL


def test_failures_name_nothing_else(failures):
    _, a, truth = failures
    clean = calls_of(truth, "clean")
    assert sorted(f["kind"] for f in a.findings) == ["broken-connection", "poisoned-handoff"]
    for f in a.findings:
        assert not {c["goid"] for c in clean} & set(f["goroutines"]), f
        assert f["fd"] not in {c["fd"] for c in clean}, f
