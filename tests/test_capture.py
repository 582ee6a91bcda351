"""The capture tools, run for real: redis-server, Go + cgo + libhiredis, perf, py-spy.

These check the raw recordings directly (headers, perf text lines, py-spy thread frames) and
the workloads' ground truth, so every later parser test stands on captures known to be real.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.conftest import read_truth

pytestmark = pytest.mark.capture

# Default `perf script` layout for tracepoints: "comm tid [cpu] secs.ns: event: payload".
PERF_LINE = re.compile(
    r"^(?P<comm>\S.*?)\s+(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<time>\d+\.\d{9}):\s+"
    r"(?P<event>[\w:]+):\s*(?P<payload>.*)$"
)


def perf_events(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(("#", "\t")) or not line.strip():
                continue
            m = PERF_LINE.match(line.rstrip("\n"))
            if m:
                d = m.groupdict()
                sec, ns = d["time"].split(".")
                d["ts"] = int(sec) * 1_000_000_000 + int(ns)
                d["tid"] = int(d["tid"])
                out.append(d)
    return out


def perf_header(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return "".join(line for line, _ in zip(f, range(60), strict=False) if line.startswith("#"))


def meta_of(d: Path) -> dict:
    return json.loads((d / "capture.json").read_text())


def check_syscalls_inside_slow_calls(calls: list[dict], events: list[dict]) -> None:
    """Every slow call has a sys_enter and a sys_exit of its own tid inside its window.

    This is the shared-clock claim in its rawest form: perf -k CLOCK_MONOTONIC timestamps and
    the workload's CLOCK_MONOTONIC readings bracket the same kernel work.
    """
    by_tid = defaultdict(list)
    for e in events:
        if e["event"].startswith("raw_syscalls:"):
            by_tid[e["tid"]].append((e["ts"], e["event"]))
    for c in calls:
        inside = {ev for ts, ev in by_tid[c["tid"]] if c["t0"] <= ts <= c["t1"]}
        assert {"raw_syscalls:sys_enter", "raw_syscalls:sys_exit"} <= inside, c


def test_go_capture_files(go_capture: Path) -> None:
    meta = meta_of(go_capture)
    assert meta["schema"] == "tracecorr.capture/1"
    assert meta["go"]["reported"].startswith("go version go1.")
    assert meta["perf"]["clock"] == "CLOCK_MONOTONIC"
    head = (go_capture / "go.trace").read_bytes()[:16]
    assert re.match(rb"go 1\.\d+ trace\x00", head), head
    header = perf_header(go_capture / meta["files"]["perf_script"])
    assert "# clockid: monotonic" in header
    assert "# cmdline : " in header and "-k CLOCK_MONOTONIC" in header


def test_go_truth_covers_every_call(go_capture: Path) -> None:
    truth = read_truth(go_capture / "truth.jsonl")
    head, calls = truth[0], [r for r in truth if r["kind"] == "call"]
    assert head["kind"] == "process" and truth[-1]["kind"] == "end"
    n, commands = head["goroutines"], head["commands"]
    funcs = Counter(r["func"] for r in calls)
    assert funcs == {"redisConnect": n, "redisCommandArgv": n * commands, "redisFree": n}
    decoys = Counter(r["func"] for r in truth if r["kind"] == "decoy")
    per_worker = commands // head["decoy_every"]
    assert decoys == {"usleep": n * per_worker, "time.Sleep": n * per_worker}
    for r in calls:
        assert r["tid"] == r["tid_after"], "direct mode pins the goroutine to its thread"
        assert r["t1"] >= r["t0"]
        assert "error" not in r, r
    # one goroutine and one OS thread per worker, all distinct
    workers = {(r["worker"], r["goid"], r["tid"]) for r in calls}
    assert len(workers) == n
    assert len({w[1] for w in workers}) == n and len({w[2] for w in workers}) == n
    slow = [r for r in calls if r.get("slow")]
    assert len(slow) == n * (commands // head["slow_every"])
    assert {r["cmd"].split()[0] for r in slow} == {"DEBUG", "BLPOP"}
    assert all(r["dur_ns"] >= head["slow_ms"] * 1_000_000 for r in slow)


def test_go_perf_sees_the_workload_threads(go_capture: Path) -> None:
    meta = meta_of(go_capture)
    truth = read_truth(go_capture / "truth.jsonl")
    events = perf_events(go_capture / meta["files"]["perf_script"])
    tids = {r["tid"] for r in truth if r["kind"] == "call"}
    seen = defaultdict(set)
    for e in events:
        seen[e["tid"]].add(e["event"])
    for tid in tids:
        assert {"raw_syscalls:sys_enter", "raw_syscalls:sys_exit"} <= seen[tid], tid
    assert any("sched:sched_switch" in seen[t] for t in tids)
    slow = [r for r in truth if r.get("slow")]
    check_syscalls_inside_slow_calls(slow, events)


def test_py_capture_files(py_capture: Path) -> None:
    meta = meta_of(py_capture)
    recs = meta["pyspy"]["recordings"]
    assert set(recs) == {"chrometrace", "speedscope", "raw"}
    for fmt, rec in recs.items():
        assert (py_capture / rec["file"]).stat().st_size > 0, fmt
        assert rec["samples"] > 0, fmt
        assert rec["anchor_mono_ns"] < meta["process"]["t0"] + 2_000_000_000
    assert "# clockid: monotonic" in perf_header(py_capture / meta["files"]["perf_script"])


def test_py_truth_covers_every_call(py_capture: Path) -> None:
    truth = read_truth(py_capture / "truth.jsonl")
    head = truth[0]
    assert head["parser"] == "_HiredisParser"
    calls = [r for r in truth if r["kind"] == "call"]
    n, commands = head["threads"], head["commands"]
    want = {"connect": n, "execute_command": n * commands, "close": n}
    assert Counter(r["func"] for r in calls) == want
    assert len({(r["thread"], r["tid"]) for r in calls}) == n
    slow = [r for r in calls if r.get("slow")]
    assert slow and all(r["dur_ns"] >= head["slow_ms"] * 1_000_000 for r in slow)
    assert all("error" not in r for r in calls)


def test_pyspy_outputs_name_the_workload_threads(py_capture: Path) -> None:
    truth = read_truth(py_capture / "truth.jsonl")
    threads = {r["tid"]: r["thread"] for r in truth if r["kind"] == "call"}
    chrome = json.loads((py_capture / "pyspy.chrometrace.json").read_text())
    frames = {e["name"] for e in chrome}
    speed = json.loads((py_capture / "pyspy.speedscope.json").read_text())
    profiles = {p["name"] for p in speed["profiles"]}
    raw_roots = {line.split(";", 1)[0] for line in (py_capture / "pyspy.raw.txt").open()}
    for tid, name in threads.items():
        assert f"thread ({tid}): {name}" in frames
        assert f'Thread {tid} "{name}"' in profiles
        assert f"thread ({tid}): {name}" in raw_roots


def test_py_perf_sees_the_workload_threads(py_capture: Path) -> None:
    meta = meta_of(py_capture)
    truth = read_truth(py_capture / "truth.jsonl")
    events = perf_events(py_capture / meta["files"]["perf_script"])
    threads = {r["tid"]: r["thread"] for r in truth if r["kind"] == "call"}
    comms = defaultdict(set)
    for e in events:
        comms[e["tid"]].add(e["comm"])
    main_comm = comms[truth[0]["pid"]]
    for tid in threads:
        # perf sees every worker thread; CPython leaves them the process's name (only py-spy
        # knows the Python names, unless the workload names them with --set-comm)
        assert comms[tid] and comms[tid] <= main_comm | {"python", "python3"}, (tid, comms[tid])
    slow = [r for r in truth if r.get("slow")]
    check_syscalls_inside_slow_calls(slow, events)


@pytest.mark.parametrize("sample", ["go_hiredis", "py_hiredis"])
def test_committed_samples_are_real_captures(sample: str) -> None:
    """The bundled samples are what the capture tools wrote (not hand-edited leftovers)."""
    d = Path(__file__).resolve().parent.parent / "sample_traces" / sample
    meta = meta_of(d)
    for name in meta["files"].values():
        assert (d / name).exists(), name
    truth = read_truth(d / "truth.jsonl")
    events = perf_events(d / meta["files"]["perf_script"])
    assert meta["process"]["pid"] == truth[0]["pid"]
    slow = [r for r in truth if r.get("slow")]
    assert slow
    check_syscalls_inside_slow_calls(slow, events)
