"""Every slow call explained, on fresh real captures judged by the workloads' own logs: the
time inside a library call that is not the library's belongs to the caller's own code, to the
Python interpreter (the GIL) or to the tracer, and the report says whose it is.

The caller's code: the Go workload's C shim (``-mode shim``) sleeps in its own nanosleep
before it calls redisCommandArgv, inside the same cgo call (``-wrapper-every``), and logs that
window (``wrapper_t0``/``wrapper_t1``). DWARF callchains show the whole C part of the cgo call,
so the record is exact: ``in: caller``, never the library's.

The GIL and the tracer: redis-py threads beside CPU-bound pure-Python threads, under py-spy's
default mode. perf alone is the oracle of the GIL waits: CPython's take_gil is the only futex
wait that times out (the switch interval); py-spy's ptrace stops are perf's state ``t``.
"""

from __future__ import annotations

import pandas as pd
import pytest
from tracecorr.correlator.api import analyze
from tracecorr.correlator.render.text import render

from sample_traces.capture import GoOptions, PyOptions, capture_go, capture_py
from tests.conftest import read_truth
from tests.test_report import SLOW_NS, check_against_truth

pytestmark = pytest.mark.capture
TOL_NS = 1_000  # perf and the workload read the same CLOCK_MONOTONIC


@pytest.fixture(scope="module")
def go_wrapper(tmp_path_factory, redis_server, perf, go_toolchain):
    """Go 1.22 (as the held-out capture), DWARF, shim: every 3rd command's shim first waits
    15 ms in its own nanosleep; slow commands every 6th (DEBUG SLEEP, BLPOP)."""
    out = tmp_path_factory.mktemp("go_wrapper")
    opts = GoOptions(go_version="1.22", goroutines=2, commands=24, slow_every=6, slow_ms=25,
                     decoy_every=0, mode="shim", dwarf=True, wrapper_every=3, wrapper_ms=15,
                     redis_port=redis_server.port)  # fmt: skip
    capture_go(out, opts)
    return out


def overlap(r: dict, t0: int, t1: int) -> int:
    return max(0, min(r["end_ns"], t1) - max(r["start_ns"], t0))


def rows(frame) -> list[dict]:
    """The records as dicts (``in`` is a keyword: itertuples renames it)."""
    return frame.to_dict("records")


def test_the_wrappers_own_wait_is_the_callers(go_wrapper):
    truth = read_truth(go_wrapper / "truth.jsonl")
    waits = [c for c in truth if "wrapper_t0" in c]
    assert len(waits) >= 10
    a = analyze([str(go_wrapper)])
    assert a.findings == []  # a clean workload: each goroutine its own context
    b = a.blocking
    for c in waits:
        t0, t1 = c["wrapper_t0"], c["wrapper_t1"]
        mine = [r for r in rows(b[b["tid"] == c["tid"]]) if overlap(r, t0, t1)]
        caller = [r for r in mine if r["in"] == "caller"]
        # the whole wait is the caller's, on the logged goroutine, and none of it hiredis's
        assert sum(overlap(r, t0, t1) for r in caller) >= 0.8 * (t1 - t0), (c, mine)
        assert all(r["goid"] == c["goid"] and pd.isna(r["library"]) for r in caller), caller
        assert all(r["in"] != "library" for r in mine), (c, mine)
        for r in caller:
            user = [f for f in r["native_stack"] if "[kernel" not in f]
            assert not any("libhiredis" in f or f.startswith("redis") for f in user), user
            assert any("_Cfunc_tcw_redis_command" in f for f in user), user
    # the hiredis calls are still found, exactly: library records only inside logged calls
    assert check_against_truth(a, go_wrapper, "perf-callchain", tol_ns=TOL_NS) > 0
    calls = {(c["tid"], c["t0"], c["t1"]) for c in truth if c["kind"] == "call"}
    for r in rows(b[b["in"] == "library"]):
        assert any(
            tid == r["tid"] and t0 - TOL_NS <= r["start_ns"] and r["end_ns"] <= t1 + TOL_NS
            for tid, t0, t1 in calls
        ), r
    # reported apart: in the Summary, and in each call's split
    caller = b[b["in"] == "caller"]
    s = a.summary
    assert s["caller"]["records"] == len(caller) and s["caller"]["ns"] == caller["dur_ns"].sum()
    assert s["records"] == int((b["in"] == "library").sum())
    assert s["latency_split"]["caller_ns"] == caller["dur_ns"].sum()
    text = render(a)
    assert "The callers' own code inside hiredis calls" in text
    assert f"{len(caller)} record(s)" in text


def test_a_wrapper_the_user_names_is_the_library(go_wrapper):
    """``--native-call 'tcw_*'``: the user says the wrapper is their library call, so its own
    wait is that library's blocking."""
    truth = read_truth(go_wrapper / "truth.jsonl")
    waits = [(c["tid"], c["wrapper_t0"], c["wrapper_t1"]) for c in truth if "wrapper_t0" in c]
    a = analyze([str(go_wrapper)], native_calls=["tcw_*"])
    b = a.blocking
    assert not (b["in"] == "caller").any()
    named = [
        r for r in rows(b)
        if any(tid == r["tid"] and overlap(r, t0, t1) for tid, t0, t1 in waits)
    ]  # fmt: skip
    assert len(named) >= len(waits) * 0.8
    assert all(r["in"] == "library" and r["library"] == "hiredis" for r in named)
    assert all("user-pattern" in r["evidence"] for r in named)


def test_slow_calls_are_covered(go_wrapper):
    """Every call of >= 20 ms has records covering >= 80 % of its wall time (the union of
    their overlaps with the logged window)."""
    truth = read_truth(go_wrapper / "truth.jsonl")
    b = analyze([str(go_wrapper)]).blocking
    slow = [c for c in truth if c["kind"] == "call" and c["dur_ns"] >= SLOW_NS]
    assert slow
    for c in slow:
        mine = b[(b["tid"] == c["tid"]) & (b["start_ns"] < c["t1"]) & (b["end_ns"] > c["t0"])]
        assert covered(mine, c["t0"], c["t1"]) >= 0.8 * (c["t1"] - c["t0"]), (c, mine)


def covered(records, t0: int, t1: int) -> int:
    """ns of [t0, t1) that the records' union covers."""
    ends = zip(records["start_ns"], records["end_ns"], strict=True)
    spans = sorted((max(s, t0), min(e, t1)) for s, e in ends)
    total, end = 0, t0
    for s, e in spans:
        s = max(s, end)
        if e > s:
            total += e - s
            end = e
    return total


@pytest.fixture(scope="module")
def py_gil(tmp_path_factory, redis_server, perf, pyspy):
    """redis-py + hiredis, three worker threads and two CPU-bound pure-Python threads (GIL
    contention), py-spy in its default mode (it stops the threads to sample them)."""
    out = tmp_path_factory.mktemp("py_gil")
    opts = PyOptions(threads=3, commands=24, slow_every=8, slow_ms=40, decoy_every=12,
                     decoy_ms=20, gil_hogs=2, formats=["chrometrace"],
                     redis_port=redis_server.port)  # fmt: skip
    capture_py(out, opts)
    return out


def timed_futex_waits(a, c: dict) -> int:
    """The oracle, from perf alone: ns the thread spent in futex waits that timed out
    (ETIMEDOUT) inside the logged call. CPython's only timed futex wait is take_gil's (the
    switch interval); the workload's locks never time out."""
    perf = next(s for s in a.sources if s.meta.kind.startswith("perf")).slices
    f = perf[
        (perf["kind"] == "os.syscall").to_numpy()
        & (perf["name"] == "futex").to_numpy()
        & (perf["ret"] == -110).fillna(False).to_numpy(bool)
        & (perf["tid"] == c["tid"]).to_numpy()
        & (perf["ts"] >= c["t0"]).to_numpy()
        & (perf["ts"] + perf["dur"] <= c["t1"]).to_numpy()
    ]
    return int(f["dur"].sum())


def test_python_calls_that_waited_for_the_gil_say_so(py_gil):
    truth = read_truth(py_gil / "truth.jsonl")
    calls = [c for c in truth if c["kind"] == "call"]
    workers = {c["thread"] for c in calls}
    a = analyze([str(py_gil)])
    assert a.findings == []  # each thread its own client; no Go runtime to start threads
    b = a.blocking
    gil = b[b["in"] == "python-runtime"]
    assert len(gil) > 20
    assert (gil["syscall"] == "futex").all() and gil["library"].isna().all()
    assert set(gil["thread"]) <= workers  # never the CPU-bound threads: they hold the GIL
    err = max(x.error_ns or 0 for x in a.alignments.values())

    def inside(r: dict, tol: int) -> bool:
        return any(
            c["tid"] == r["tid"] and c["t0"] - tol <= r["start_ns"] and r["end_ns"] <= c["t1"] + tol
            for c in calls
        )

    # sampled in its wait: inside a logged call (within the py-spy clock's error); inferred
    # (between two samples in the client): stated, and rarely outside a call
    sampled = [r for r in rows(gil) if not r["in_inferred"]]
    assert sampled and all(inside(r, err) for r in sampled)
    apart = b[b["in"].isin(["python-runtime", "tracer"])]
    outside = sum(r["dur_ns"] for r in rows(apart) if not inside(r, TOL_NS))
    assert outside <= 0.05 * apart["dur_ns"].sum(), outside
    # the oracle's GIL waits are found: per slow call, most of its timed futex waits
    for c in calls:
        oracle = timed_futex_waits(a, c)
        if c["dur_ns"] < SLOW_NS or oracle < 10_000_000:
            continue
        mine = gil[
            (gil["tid"] == c["tid"]) & (gil["start_ns"] < c["t1"]) & (gil["end_ns"] > c["t0"])
        ]
        assert covered(mine, c["t0"], c["t1"]) >= 0.5 * oracle, (c, oracle)
    # the library's own records are still exact
    lib = b[b["in"] == "library"]
    assert len(lib) and all(inside(r, TOL_NS) for r in rows(lib))
    s = a.summary
    assert s["python_runtime"]["records"] == len(gil)
    assert s["python_runtime"]["ns"] == gil["dur_ns"].sum()
    text = render(a)
    assert "Waiting for Python's GIL inside hiredis calls" in text
    assert "py-spy --nonblocking avoids it" in text


def test_python_slow_calls_are_covered(py_gil):
    """Every call of >= 20 ms wall time: its records (the library's, the GIL's, the tracer's)
    cover >= 80 % of it, but for a few the sampling leaves short (at most 15 %: a socket
    wait py-spy never sampled, between samples of the thread waiting for the GIL, is not
    claimed for the library; measured: 1 of 55, 3 of 29, 6 of 47 with three recorders)."""
    truth = read_truth(py_gil / "truth.jsonl")
    a = analyze([str(py_gil)])
    b = a.blocking
    slow = [c for c in truth if c["kind"] == "call" and c["dur_ns"] >= SLOW_NS]
    assert len(slow) >= 20
    short = []
    for c in slow:
        mine = b[(b["tid"] == c["tid"]) & (b["start_ns"] < c["t1"]) & (b["end_ns"] > c["t0"])]
        if covered(mine, c["t0"], c["t1"]) < 0.8 * (c["t1"] - c["t0"]):
            short.append(c)
    assert len(short) <= 0.15 * len(slow), short
    stops = a.summary["tracer_stops"]
    assert stops["stops"] > 0 and stops["ns"] > 0
    tracer = b[b["in"] == "tracer"]
    assert (tracer["off_cpu_state"] == "t").all() and tracer["library"].isna().all()
    assert (tracer["tracer_stop_ns"] == tracer["dur_ns"]).all()


def test_each_calls_split_adds_up_to_its_time(go_wrapper):
    """Each Go call's split: the parts add up to its time (until its goroutine ran again),
    a slow command's library wait is at least what the server was told to wait (DEBUG
    SLEEP, BLPOP's timeout: the workload's log), and the shim's own wait is the caller's."""
    truth = read_truth(go_wrapper / "truth.jsonl")
    a = analyze([str(go_wrapper)])
    calls = a.calls.set_index(["tid", "start"], drop=False)
    parts = ["library_blocked_ns", "runtime_ns", "caller_ns", "python_runtime_ns", "tracer_ns",
             "runq_ns", "short_wait_ns", "on_cpu_ns"]  # fmt: skip
    total = calls[parts].sum(axis=1)
    assert (total == calls["end"] - calls["start"] + calls["p_wait_ns"].fillna(0)).all()
    assert (calls[parts] >= 0).all().all()
    checked = 0
    for c in truth:
        if c["kind"] != "call" or c["func"] != "tcw_redis_command":
            continue
        mine = calls[(calls["tid"] == c["tid"]) & (calls["start"] <= c["t0"])
                     & (calls["end"] >= c["t1"])]  # fmt: skip
        assert len(mine) == 1, c
        row = mine.iloc[0]
        words = c["cmd"].split()
        if c.get("slow") and words[0] in ("DEBUG", "BLPOP") and "error" not in c:
            asked = int(float(words[-1]) * 1e9)
            assert row["library_blocked_ns"] >= asked - 1_000_000, (c, row.to_dict())
            checked += 1
        if "wrapper_t0" in c:
            assert row["caller_ns"] >= 0.8 * (c["wrapper_t1"] - c["wrapper_t0"]), c
    assert checked >= 4
