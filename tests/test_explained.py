"""Every slow call explained, on fresh real captures judged by the workloads' own logs: the
time inside a library call that is not the library's belongs to the caller's own code, to the
Python interpreter (the GIL) or to the tracer, and the report says whose it is.

The caller's code: the Go workload's C shim (``-mode shim``) sleeps in its own nanosleep
before it calls redisCommandArgv, inside the same cgo call (``-wrapper-every``), and logs that
window (``wrapper_t0``/``wrapper_t1``). DWARF callchains show the whole C part of the cgo call,
so the record is exact: ``in: caller``, never the library's.
"""

from __future__ import annotations

import pandas as pd
import pytest
from tracecorr.correlator.api import analyze
from tracecorr.correlator.render.text import render

from sample_traces.capture import GoOptions, capture_go
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
