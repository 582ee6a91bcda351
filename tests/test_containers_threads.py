"""A service in its own PID namespace, recorded by perf from the host: thread ids mapped.

Real captures: the Go + cgo + hiredis workload and the redis-py workload run under
``unshare --pid --fork`` (and ``--mount``), perf records from outside. The workloads log
namespace tids; the harness logs every namespaced thread's NSpid chain while they run
(``nspid_truth``, which the report never sees), so each record's host tid is checked
against the kernel's own answer, and each slow call's goroutine or thread name against the
workload's log.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from tracecorr.correlator import align, threadmap
from tracecorr.parsers import gotrace
from tracecorr.parsers.perf_input import parse as parse_perf_data

from sample_traces.capture import GoOptions, PyOptions, capture_go, capture_py, namespaces
from sample_traces.capture.redis_server import free_port
from tests.conftest import read_truth
from tests.support.waits import perf_waits

pytestmark = pytest.mark.capture
SLOW_NS = 20_000_000


def tracecorr(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tracecorr", *args], capture_output=True, text=True, timeout=300
    )


def report_of(d: Path, tmp: Path, *extra: str) -> dict:
    out = tmp / f"r{len(list(tmp.glob('r*.json')))}.json"
    r = tracecorr("report", *map(str, d if isinstance(d, list) else [d]), *extra, "--json",
                  str(out), "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())


def host_tids(d: Path) -> dict[int, int]:
    """namespace tid -> host tid, from the harness's NSpid log (the kernel's answer)."""
    chains = json.loads((d / "capture.json").read_text())["namespaces"]["nspid_truth"]
    return {c[-1]: int(h) for h, c in chains.items()}


def go_options(redis_server, **kw) -> GoOptions:
    base = dict(goroutines=3, commands=16, slow_every=4, slow_ms=30, decoy_every=8,
                decoy_ms=20, redis_port=redis_server.port, pid_namespace=True)  # fmt: skip
    return GoOptions(**{**base, **kw})


def check_go(report: dict, d: Path) -> int:
    """Every slow call found with its goroutine on the host thread the kernel names; every
    record inside a logged call of the same goroutine; the Go trace's map is the kernel's."""
    truth = [c for c in read_truth(d / "truth.jsonl") if c["kind"] == "call"]
    host = host_tids(d)
    b = report["blocking"]
    slow = [c for c in truth if c["dur_ns"] >= SLOW_NS]
    assert slow
    for c in slow:
        assert any(
            x["goid"] == c["goid"] and x["tid"] == host[c["tid"]]
            and c["t0"] <= x["start_ns"] and x["end_ns"] <= c["t1"]
            for x in b
        ), c  # fmt: skip
    for x in b:
        if x["in"] != "library":
            continue
        assert any(
            x["tid"] == host[c["tid"]] and c["t0"] <= x["start_ns"] and x["end_ns"] <= c["t1"]
            for c in truth
        ), x
    go = next(s for s in report["sources"] if s["kind"] == "go-trace")
    assert go["threads"]["method"] == "syscall-matching"
    for ns, h in go["threads"]["tids"].items():
        assert host[int(ns)] == h
    assert not report["blind"]
    return len(slow)


@pytest.fixture(scope="module")
def go_pidns(tmp_path_factory, redis_server, perf, go_toolchain) -> Path:
    out = tmp_path_factory.mktemp("go_pidns")
    capture_go(out, go_options(redis_server))
    return out


def test_go_trace_in_a_pid_namespace_is_mapped_onto_perf(go_pidns, tmp_path):
    report = report_of(go_pidns, tmp_path)
    assert check_go(report, go_pidns) >= 4
    assert any("another PID namespace" in w for w in report["warnings"])
    # the perf.data reader's tables and the perf script text's give the same records
    text = report_of([go_pidns / "go.trace", go_pidns / "perf.data"], tmp_path)
    assert [x["start_ns"] for x in text["blocking"]] == [x["start_ns"] for x in report["blocking"]]


@pytest.mark.parametrize(
    "kw",
    [
        pytest.param({"dwarf": True}, id="dwarf"),
        pytest.param({"stripped": True}, id="stripped-go-binary"),
        pytest.param({"mount_namespace": True}, id="pid-and-mount-namespaces"),
    ],
)
def test_go_variants_in_a_pid_namespace(kw, tmp_path, redis_server, perf, go_toolchain):
    d = tmp_path / "cap"
    capture_go(d, go_options(redis_server, goroutines=2, commands=12, **kw))
    assert check_go(report_of(d, tmp_path), d) >= 2


def test_an_ambiguous_thread_is_refused_not_guessed(go_pidns):
    """A host thread whose syscalls are copied onto a twin (same process, same times) fits
    its M exactly as well as the twin does: that M is left unmapped and said so."""
    go = gotrace.parse(go_pidns / "go.trace")
    perf = parse_perf_data(go_pidns / "perf.data")
    host = host_tids(go_pidns)
    spans = threadmap.go_spans(go, 0)
    busiest = max(spans, key=lambda m: len(spans[m][0]))
    victim = host[busiest]
    s = perf.slices
    twin = s[(s["tid"] == victim).to_numpy()].assign(tid=999_999)
    perf.slices = pd.concat([s, twin], ignore_index=True)
    tm = threadmap.infer(go, perf, 0, 0, threadmap.EDGE_SLACK_NS + 65)
    assert busiest in tm.ambiguous and set(tm.ambiguous[busiest][:2]) == {victim, 999_999}
    assert tm.tids.get(busiest) == -busiest  # never a guess: it joins no host thread
    assert any("equally well" in w for w in tm.warnings)
    for m, h in tm.tids.items():
        if h >= 0:
            assert host[m] == h


def test_same_namespace_keeps_its_ids(go_capture, tmp_path):
    report = report_of(go_capture, tmp_path)
    go = next(s for s in report["sources"] if s["kind"] == "go-trace")
    assert go["threads"]["method"] == "same-threads" and not go["threads"]["tids"]
    assert go["threads"]["support"] > 0 and go["threads"]["contradictions"] == 0


def test_sources_that_share_no_thread_say_so_first(go_pidns, go_capture, tmp_path):
    """The Go trace of one run and the perf.data of another: zero records is not clean."""
    inputs = [
        "--go-trace",
        str(go_pidns / "go.trace"),
        "--perf-data",
        str(go_capture / "perf.data"),
    ]
    out = tmp_path / "blind.json"
    r = tracecorr("report", *inputs, "--json", str(out))
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert report["blind"] and report["warnings"][0] == report["blind"][0]
    assert "PID namespace" in report["blind"][0]
    lines = r.stdout.splitlines()
    assert lines[2] == "Cannot see"  # first, after the title
    assert "not a clean result" in r.stdout
    assert "No blocking syscall of" not in r.stdout


def test_pyspy_inside_a_pid_namespace_is_mapped_onto_perf(tmp_path, redis_server, perf, pyspy):
    d = tmp_path / "cap"
    capture_py(
        d,
        PyOptions(threads=2, commands=24, slow_every=3, slow_ms=150, decoy_every=6, decoy_ms=20,
                  formats=["chrometrace"], redis_port=redis_server.port, pid_namespace=True),
    )  # fmt: skip
    report = report_of(d, tmp_path)
    host = host_tids(d)
    py = next(s for s in report["sources"] if s["kind"] == "pyspy-chrometrace")
    assert py["threads"]["method"] == "syscall-matching" and py["method"] == "event-matching"
    for ns, h in py["threads"]["tids"].items():
        assert host[int(ns)] == h
    truth = [c for c in read_truth(d / "truth.jsonl") if c["kind"] == "call"]
    waits = perf_waits(parse_perf_data(d / "perf.data").slices, SLOW_NS)
    owed = [
        c for c in truth
        if any(t == host[c["tid"]] and c["t0"] <= s and e <= c["t1"] for t, s, e in waits)
    ]  # fmt: skip
    assert len(owed) >= 3
    for c in owed:
        assert any(
            x["thread"] == c["thread"] and x["tid"] == host[c["tid"]]
            and c["t0"] <= x["start_ns"] and x["end_ns"] <= c["t1"]
            for x in report["blocking"]
        ), c  # fmt: skip
    for x in report["blocking"]:
        assert any(
            host[c["tid"]] == x["tid"] and c["t0"] <= x["start_ns"] and x["end_ns"] <= c["t1"]
            for c in truth
        ), x


def test_capture_records_nspid_and_the_report_uses_it(go_pidns, redis_server, tmp_path):
    """`tracecorr capture --pid HOST_PID` of a Go service in its own PID namespace."""
    port = free_port()
    truth_path = tmp_path / "truth.jsonl"
    argv = [str(go_pidns / "go_hiredis"), "-port", str(redis_server.port), "-goroutines", "3",
            "-duration", "5s", "-slow-every", "4", "-slow-ms", "30", "-decoy-every", "7",
            "-decoy-ms", "20", "-trace", "", "-truth", str(truth_path),
            "-pprof", f"127.0.0.1:{port}"]  # fmt: skip
    proc = subprocess.Popen(namespaces.container_argv(argv, tmp_path), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (truth_path.exists() and truth_path.read_text().endswith("\n")):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        ns_pid = json.loads(truth_path.read_text().split("\n", 1)[0])["pid"]
        pid = namespaces.host_pid(proc.pid, ns_pid)
        time.sleep(0.5)
        out = tmp_path / "cap"
        r = tracecorr("capture", "--pid", str(pid), "--duration", "2.5s", "--go-trace-url",
                      f"http://127.0.0.1:{port}", "-o", str(out))  # fmt: skip
        assert r.returncode == 0, r.stderr
    finally:
        proc.wait(timeout=60)
    meta = json.loads((out / "capture.json").read_text())
    threads = meta["threads"]
    assert threads["pid_chain"] == [pid, ns_pid] and threads["pid_namespace"] == "other"
    chains = {int(h): c for h, c in threads["tasks"].items()}
    assert all(len(c) == 2 and c[0] == h for h, c in chains.items())
    host = {c[-1]: h for h, c in chains.items()}
    report = report_of(out, tmp_path)
    go = next(s for s in report["sources"] if s["kind"] == "go-trace")
    assert go["threads"]["method"] == "capture-nspid"
    assert all(host[int(ns)] == h for ns, h in go["threads"]["tids"].items())
    truth = [c for c in read_truth(truth_path) if c["kind"] == "call"]
    lo, hi = meta["common_window_mono_ns"]
    slow = [
        c for c in truth if c["dur_ns"] >= SLOW_NS and lo + 3e8 <= c["t0"] and c["t1"] <= hi - 3e8
    ]
    assert slow, (lo, hi, [(c["t0"], c["dur_ns"]) for c in truth if c["dur_ns"] >= SLOW_NS])
    for c in slow:
        assert any(
            x["goid"] == c["goid"] and x["tid"] == host[c["tid"]]
            and c["t0"] <= x["start_ns"] and x["end_ns"] <= c["t1"]
            for x in report["blocking"]
        ), c  # fmt: skip


def test_recorded_map_needs_namespace_ids():
    """from_nspid leaves a source alone when it already speaks host ids (unit: one function)."""
    from tracecorr.parsers.model import SourceMeta, SourceTables, make_table

    th = make_table("threads", {"source": ["g"] * 2, "pid": [50, 50], "tid": [50, 51]})
    src = SourceTables(SourceMeta(source="g", kind="go-trace", path="x"), threads=th)
    rec = {"pid_chain": [50, 1], "tasks": {"50": [50, 1], "51": [51, 2]}}
    assert threadmap.from_nspid(src, rec, "Go trace") is None
    th2 = th.assign(tid=[1, 2], pid=[1, 1])
    tm = threadmap.from_nspid(SourceTables(src.meta, threads=th2), rec, "Go trace")
    assert tm.tids == {1: 50, 2: 51} and tm.pids == {1: 50}
    assert align.KINDS["go"] == ("go-trace",)
