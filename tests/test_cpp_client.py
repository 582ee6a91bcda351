"""A C++ client of libhiredis, stripped, recorded with DWARF callchains (issue 26, part 3).

The workload (sample_traces/workloads/cpp_hiredis/client.cpp) calls hiredis from methods of
classes in namespaces, one of them with a 32 KiB stack buffer, and is stripped as services
ship; its unstripped build (cpp_hiredis.debug) is the oracle: ``addr2line`` on it names the
function of a frame by its DSO-relative address, as a user would.

Judged by the workload's own log: every call that took >= 20 ms has a library record on its
thread; the stack of each such record reaches the calling method (``site``), or it carries
the reason it stopped (``meta.extra["stack_stops"]``). libhiredis's ``redisBufferRead``
reads into a 16 KiB stack buffer whose pages were never touched, so perf's copy of the stack
stops inside it: those stacks reach the caller only through the splice (stops.py).
Demangled names are compared with binutils' c++filt.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tracecorr.capture.recorders import DWARF_CALLGRAPH
from tracecorr.correlator.api import analyze
from tracecorr.correlator.steps.records import stack_stops
from tracecorr.parsers.perf_data import parse
from tracecorr.parsers.perf_data.stops import (
    PERF_MAX_STACK,
    ThreadSpans,
    classify,
    dwarf_size,
    splice,
)
from tracecorr.parsers.perf_data.symbols import demangle, elf_info
from tracecorr.parsers.perf_data.unwind import Unwound

from sample_traces.capture.workloads import CppOptions, capture_cpp
from tests.conftest import read_truth, require

SLOW_NS = 20_000_000
HIREDIS = "libhiredis"
STOP_KEYS = {"kind", "text", "needed", "had", "requested", "spliced"}
KINDS = {"copy-too-small", "copy-cut", "no-cfi", "unreadable-dso", "other"}
DWARF_SIZE = int(DWARF_CALLGRAPH[1].split(",")[1])


def _tools() -> None:
    for tool in ("g++", "strip", "addr2line", "c++filt", "nm"):
        require(shutil.which(tool) is not None, f"{tool} (Debian build-essential, binutils)")
    require(Path("/usr/include/hiredis/hiredis.h").exists(), "libhiredis-dev")


@pytest.fixture(scope="module")
def cpp_client(tmp_path_factory, redis_server, perf) -> Path:
    """The stripped C++ client (3 threads, slow DEBUG SLEEPs and BLPOPs, usleep and
    nanosleep decoys) under perf with DWARF callchains, as ``tracecorr capture --dwarf``
    records them."""
    _tools()
    out = tmp_path_factory.mktemp("cpp_client")
    opts = dict(threads=3, commands=24, slow_every=4, slow_ms=30, dwarf=True)
    capture_cpp(out, CppOptions(**opts, redis_port=redis_server.port))
    return out


@pytest.fixture(scope="module")
def analysis(cpp_client):
    return analyze([str(cpp_client)])


def _perf_tables(a):
    (perf,) = [s for s in a.sources if s.meta.kind == "perf-data"]
    return perf


def _frames(stacks) -> dict[int, list[tuple]]:
    """stack id -> [(function, module, address, kind)], leaf first."""
    out: dict[int, list[tuple]] = {}
    s = stacks.sort_values(["stack_id", "depth"])
    cols = (s[c] for c in ("stack_id", "function", "module", "address", "frame_kind"))
    for sid, fn, mod, addr, kind in zip(*cols, strict=True):
        out.setdefault(int(sid), []).append((fn, mod, None if pd.isna(addr) else int(addr), kind))
    return out


def _site_frame(frames: list[tuple], binary: str) -> tuple | None:
    """The first frame outside libhiredis above its frames: the caller's, in the binary."""
    seen_lib = False
    for f in frames:
        if f[3] == "kernel":
            continue
        if f[1] and HIREDIS in f[1]:
            seen_lib = True
        elif seen_lib:
            return f if f[1] == binary else None
    return None


def _addr2line(debug: Path, binary: Path, offset: int) -> str:
    """The function ``addr2line -f -C`` names at a frame's file offset in the binary: the
    offset becomes the ELF address through the stripped binary's program headers (the
    image perf mapped), looked up in the unstripped build; parameters and a template's
    return type dropped, as the truth's "site" spells it."""
    vaddr = elf_info(str(binary)).offset_to_vaddr(offset)
    assert vaddr is not None, hex(offset)
    out = subprocess.run(
        ["addr2line", "-f", "-C", "-e", str(debug), hex(vaddr)],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    name = out[0].split("(", 1)[0]
    return re.sub(r"^(void|bool|int|long|double) ", "", name)


def _records_of(a, call: dict):
    b = a.blocking
    return b[
        (b["tid"] == call["tid"])
        & (b["start_ns"] >= call["t0"] - 1_000)
        & (b["end_ns"] <= call["t1"] + 1_000)
        & (b["in"] == "library")
    ]


def _stack_of(perf, tid: int, start_ns: int) -> int | None:
    """The stack of the syscall slice that holds a record's start (perf is on the reference
    clock: recorded with -k CLOCK_MONOTONIC)."""
    s = perf.slices
    s = s[(s["kind"] == "os.syscall") & (s["tid"] == tid)]
    hit = s[(s["ts"] <= start_ns) & (start_ns < s["ts"] + s["dur"]) & s["stack_id"].notna()]
    return int(hit["stack_id"].iloc[0]) if len(hit) else None


def test_a_clean_cpp_client_raises_no_finding(analysis):
    """Each thread its own context, every reply freed: no finding (thread-growth is Go's)."""
    assert analysis.findings == [], [(f["kind"], f["summary"]) for f in analysis.findings]


def test_every_slow_call_reaches_its_site_or_says_why(cpp_client, analysis):
    """Each logged call of >= 20 ms has a hiredis record on its thread; the record's stack
    reaches the calling method, which addr2line on the unstripped build names as the
    truth's site (the frame carries its DSO-relative address), or it has a stop reason."""
    a, perf = analysis, _perf_tables(analysis)
    binary, debug = cpp_client / "cpp_hiredis", cpp_client / "cpp_hiredis.debug"
    stops = perf.meta.extra["stack_stops"]
    frames = _frames(perf.stacks)
    truth = read_truth(cpp_client / "truth.jsonl")
    slow = [c for c in truth if c["kind"] == "call" and c["dur_ns"] >= SLOW_NS]
    assert len(slow) >= 6 and {c["site"] for c in slow} >= {
        "tc::Cache::lookup",
        "tc::admin::Stall::run",
    }
    named = spliced = 0
    for c in slow:
        recs = _records_of(a, c)
        assert len(recs) and (recs["library"] == "hiredis").all(), c
        for r in recs.itertuples():
            sid = _stack_of(perf, r.tid, r.start_ns)
            assert sid is not None, (c, r.start_ns)
            site = _site_frame(frames[sid], str(binary))
            if site is None:
                assert sid in stops and stops[sid]["kind"] in KINDS, (c, frames[sid])
                assert r.stack_stop == stops[sid]["text"], r  # the record says why
                continue
            assert site[0] == "[unknown]" and site[2] is not None  # stripped: an address
            assert _addr2line(debug, binary, site[2]) == c["site"], (c, site)
            # the report's call site is that frame, as 'dso+0xoffset (path)'
            m = re.match(r"^cpp_hiredis\+(0x[0-9a-f]+) \(", r.call_site or "")
            assert m and _addr2line(debug, binary, int(m.group(1), 16)) == c["site"], r.call_site
            named += 1
            spliced += bool(stops.get(sid, {}).get("spliced"))
    # the reads in redisBufferRead stop on its untouched pages: the splice reaches the site
    assert named >= len(slow) and spliced > 0, (named, spliced, len(slow))


def test_stack_stops_say_why_and_how_to_record(cpp_client, analysis):
    """The stops of the stripped client's stacks: the reads cut by the kernel under
    redisBufferRead's buffer (with the build fix), the copies too small for lookup's 32 KiB
    frame (with the --call-graph size that reaches past it); the aggregate counts stay."""
    perf = _perf_tables(analysis)
    stops = perf.meta.extra["stack_stops"]
    assert stops and all(set(v) == STOP_KEYS for v in stops.values())
    assert set(perf.stacks["stack_id"]) >= set(stops)
    kinds = {v["kind"] for v in stops.values()}
    assert {"copy-cut", "copy-too-small"} <= kinds <= KINDS, kinds
    frames = _frames(perf.stacks)
    for sid, v in stops.items():
        assert v["had"] <= v["requested"] == DWARF_SIZE, v  # tracecorr capture --dwarf's
        user = [f for f in frames[sid] if f[3] != "kernel"]
        if v["kind"] == "copy-cut":
            assert v["had"] < v["requested"] and v["needed"] > v["had"], v
            assert "-fstack-clash-protection" in v["text"] and "mlockall" in v["text"], v
            if [f[0] for f in user[:2]] == ["read", "redisBufferRead"]:
                assert v["needed"] == 16496, v  # its 16 KiB buffer, and 112 bytes above it
        elif v["kind"] == "copy-too-small":
            assert v["had"] == v["requested"] < v["needed"], v
            assert f"--call-graph dwarf,{dwarf_size(v['needed'])}" in v["text"], v
    unwind = perf.meta.extra["unwind"]
    assert unwind["stops"]["outside the stack copy"] >= unwind["spliced"] > 0, unwind


def test_demangled_names_equal_cxxfilts(cpp_client):
    """Every function symbol of the workload's unstripped build, demangled by pycxxfilt
    (LLVM), equals binutils' c++filt up to two notations: LLVM closes nested templates as
    ``>>`` where c++filt writes ``> >``, and writes clone suffixes as ``(.part.0.isra.0)``
    where c++filt writes ``[clone .part.0] [clone .isra.0]``."""
    nm = subprocess.run(
        ["nm", "--defined-only", str(cpp_client / "cpp_hiredis.debug")],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")  # fmt: skip
    names = sorted({p[2] for p in map(str.split, nm) if len(p) == 3 and p[1] in "TtWw"})
    mangled = [n for n in names if n.startswith("_Z")]
    assert len(mangled) > 20 and any("tc5Cache6lookup" in n for n in mangled)
    theirs = subprocess.run(
        ["c++filt"], input="\n".join(mangled) + "\n", capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(theirs) == len(mangled)
    for name, cf in zip(mangled, theirs, strict=True):
        assert demangle(name) == _llvm_notation(cf), name
    assert demangle("main") == "main" and demangle("_Zinvalid") == "_Zinvalid"
    assert demangle("_ZN2tc5admin5Stall3runEd@plt") == "tc::admin::Stall::run(double)@plt"


def _llvm_notation(cxxfilt: str) -> str:
    clones = re.compile(r"(?: \[clone (\.[^\]]+)\])+")
    s = clones.sub(lambda m: " (" + "".join(re.findall(r"\.[^\]]+", m.group(0))) + ")", cxxfilt)
    while "> >" in s:
        s = s.replace("> >", ">>")
    return s


def test_unstripped_frames_are_demangled(cpp_client, tmp_path):
    """Read with the unstripped build under a symfs (its build id is the stripped one's),
    the binary's frames are named, demangled: the sites of the truth are among them."""
    root = tmp_path / "symfs"
    target = root / str(cpp_client / "cpp_hiredis").lstrip("/")
    target.parent.mkdir(parents=True)
    shutil.copyfile(cpp_client / "cpp_hiredis.debug", target)
    st = parse(cpp_client / "perf.data", symfs=root)
    ours = st.stacks[st.stacks["module"] == str(cpp_client / "cpp_hiredis")]
    names = set(ours["function"].astype(str))
    assert "[unknown]" not in names and not any(n.startswith("_Z") for n in names), names
    bases = {n.split("(", 1)[0].removeprefix("void ") for n in names}
    truth = read_truth(cpp_client / "truth.jsonl")
    sites = {c["site"] for c in truth if c["kind"] == "call" and c["dur_ns"] >= SLOW_NS}
    assert sites <= bases, (sites, bases)


# --- the stop classification and the splice, on hand-made samples ---------------------------

SP = 0x7F00_0000_1C00  # a thread stack; the copy below ends at the next page
LIB = (0x1A4A5, "redisBufferRead", "/usr/lib/x86_64-linux-gnu/libhiredis.so.0.14", "c")


def _unw(pcs, cfas, stop="outermost frame", sp=SP, had=1024, want=None, **kw) -> Unwound:
    return Unwound(list(pcs), list(cfas), stop, sp=sp, had=had, want=want, **kw)


def test_stop_kinds_from_hand_made_samples():
    cut = _unw([1, 2], [SP + 0x30, SP + 0x4070], "outside the stack copy", want=SP + 0x4068)
    s = classify(cut, 4096, LIB)
    assert (s.kind, s.needed, s.had, s.requested, s.spliced) == (
        "copy-cut",
        16496,
        1024,
        4096,
        False,
    )
    assert f"{SP + 1024:#x}" in s.text and "-fstack-clash-protection" in s.text
    small = _unw([1], [SP + 9000], "outside the stack copy", had=4096, want=SP + 8992)
    s = classify(small, 4096, LIB)
    assert s.kind == "copy-too-small" and s.needed == 9000
    assert s.text.endswith("record with --call-graph dwarf,16384"), s.text
    huge = _unw([1], [], "outside the stack copy", had=65528, want=SP + 70000)
    assert "frame pointers" in classify(huge, 65528, LIB).text
    assert dwarf_size(4097) == 8192 and dwarf_size(40000) == PERF_MAX_STACK
    nocfi = classify(_unw([1], [], "no CFI and no frame pointer"), 4096, LIB)
    assert nocfi.kind == "no-cfi" and "libhiredis.so.0.14+0x1a4a5" in nocfi.text
    gone = _unw([1], [], "no CFI for the DSO", unreadable=True)
    assert classify(gone, 4096, LIB).kind == "unreadable-dso"
    assert classify(_unw([1], [], "CFA below the stack pointer"), 4096, LIB).kind == "other"
    assert classify(_unw([1, 2], [5, 6]), 4096, LIB) is None  # complete
    start = (0x1AB77, "_start", "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "c")
    assert classify(_unw([1], [], "no CFI and no frame pointer"), 4096, start) is None


def _splice(samples, rows, tids, sps):
    unw = list(samples)
    n = splice(unw, np.array(rows), np.array(tids, np.int32), np.array(sps, np.int64))
    return n, unw


def test_the_splice_takes_the_callers_of_the_frame_with_the_same_cfa():
    """A read cut under redisBufferRead (CFA X) gets the callers of the write's frame with
    CFA X, from the same thread's nearest sample; not across a sample that left the frame
    (stack pointer at or above X), nor from another thread; complete chains never change."""
    x = SP + 0x4070
    write = _unw([10, 11, 12, 13, 14], [SP + 0x40, x, x + 0x50, x + 0x90, x + 0x100])
    read = _unw([20, 21], [SP + 0x30, x], "outside the stack copy", want=x - 8)
    # rows: 0 write (tid 7), 1 a syscall exit below X, 2 the read; 3 another thread's read
    n, unw = _splice([write, read, read], [0, 2, 3], [7, 7, 7, 8], [SP, SP - 64, SP, SP])
    assert n == 1 and unw[0] is write and unw[2] is read
    assert unw[1].pcs == [20, 21, 12, 13, 14] and unw[1].spliced and unw[1].stop_frame == 1
    assert unw[1].ends_complete and classify(unw[1], 4096, LIB).spliced
    # the thread returned above X in between (row 1): a new activation, no splice
    n, unw = _splice([write, read], [0, 2], [7, 7, 7], [SP, x + 8, SP])
    assert n == 0 and unw[1] is read
    # the nearest donor wins, after the read as well as before it
    later = _unw([30, 31, 32, 33], [SP + 0x40, x, x + 0x60, x + 0x200])
    n, unw = _splice([write, read, later], [0, 5, 6], [7] * 7, [SP] * 7)
    assert n == 1 and unw[1].pcs == [20, 21, 32, 33]


def test_thread_spans_see_only_their_own_thread():
    spans = ThreadSpans(np.array([1, 2, 1, 2, 1]), np.array([10, 99, 20, 5, 30], np.int64))
    below = spans.stays_below(np.array([0, 0, 1]), np.array([4, 2, 3]), np.array([21, 21, 6]))
    assert below.tolist() == [True, True, True]
    assert spans.stays_below(np.array([0]), np.array([4]), np.array([20])).tolist() == [False]


def test_a_damaged_stack_neither_splices_nor_fails():
    """CFAs computed from garbage may be any u64: they match nothing, and raise nothing; a
    read below the stack pointer is no copy-size problem."""
    top = (1 << 64) - 8
    bad = _unw([1, 2], [SP, top], "outside the stack copy", want=top - 8)
    donor = _unw([3, 4, 5], [SP, top, top + 0])
    n, unw = _splice([donor, bad], [0, 1], [7, 7], [SP, SP])
    assert n == 0 and unw[1] is bad
    below = _unw([1], [SP - 64], "outside the stack copy", want=SP - 72)
    assert classify(below, 4096, LIB).kind == "other"


def test_a_record_says_why_its_stack_stopped(cpp_client, analysis):
    """A stop the splice did not carry past reaches the record (``stack_stop``), and the
    Summary counts it with the reason; spliced or complete stacks carry none."""
    perf = _perf_tables(analysis)
    stops = perf.meta.extra["stack_stops"]
    kept = [sid for sid, v in stops.items() if not v["spliced"]]
    spliced = [sid for sid, v in stops.items() if v["spliced"]]
    complete = sorted(set(perf.stacks["stack_id"].dropna().astype(int)) - set(stops))[:3]
    ids = pd.Series([*kept[:3], *spliced[:3], *complete, None])
    got = stack_stops(perf, ids)
    assert got[: len(kept[:3])] == [stops[s]["text"] for s in kept[:3]]
    assert all(x is None for x in got[len(kept[:3]) :])
    b = analysis.blocking
    said = b["stack_stop"].dropna()
    lib = b[b["in"] == "library"]
    assert sum(x["records"] for x in analysis.summary["stack_stops"]) == int(
        lib["stack_stop"].notna().sum()
    )
    assert said.isin([v["text"] for v in stops.values()]).all()
