"""py-spy's three formats from one real recording, and aligning py-spy onto perf's clock."""

from __future__ import annotations

import json

import pytest
from tracecorr.correlator.align import align_pyspy
from tracecorr.parsers import pyspy
from tracecorr.parsers.errors import InputError
from tracecorr.parsers.perf_script import parse as parse_perf
from tracecorr.parsers.pyspy import parse
from tracecorr.parsers.waits import wrapper_syscalls

from tests.conftest import SAMPLES, read_truth

FORMATS = {
    "chrometrace": "pyspy.chrometrace.json",
    "speedscope": "pyspy.speedscope.json",
    "raw": "pyspy.raw.txt",
}


def load(capture):
    meta = json.loads((capture / "capture.json").read_text())
    pid = meta["process"]["pid"]
    return meta, {k: parse(capture / v, source=k, pid=pid).validate() for k, v in FORMATS.items()}


def leaf_share(st) -> dict:
    """Per OS thread, the share of samples (or of time) per leaf function."""
    if len(st.slices):
        s = st.slices[~st.slices["end_unknown"]]
        w = s.groupby(["tid", s["name"].astype(str)])["dur"].sum()
    else:
        i = st.instants
        w = i.assign(n=i["count"]).groupby(["tid", i["name"].astype(str)])["n"].sum()
    return (w / w.groupby(level=0).transform("sum")).to_dict()


@pytest.mark.parametrize("capture", ["committed", "fresh"])
def test_three_formats_name_the_same_threads_and_agree(capture, request):
    cap = (
        SAMPLES / "py_hiredis" if capture == "committed" else request.getfixturevalue("py_capture")
    )
    meta, st = load(cap)
    truth = read_truth(cap / "truth.jsonl")
    workers = {r["tid"]: r["thread"] for r in truth if r["kind"] == "call"}
    for fmt, t in st.items():
        names = dict(zip(t.threads["tid"], t.threads["name"], strict=True))
        for tid, name in workers.items():
            assert names.get(tid) == name, (fmt, tid)
        assert (t.threads["pid"] == meta["process"]["pid"]).all()
        assert not t.meta.warnings, (fmt, t.meta.warnings)
    assert st["chrometrace"].meta.extra["timeline"] is True
    for fmt in ("speedscope", "raw"):
        assert st[fmt].meta.extra["timeline"] is False
        assert "cannot be placed on a timeline" in st[fmt].meta.extra["note"]
    # same recording window, three samplers: each worker's dominant leaf agrees, and its
    # share of samples agrees within what independent sampling allows
    shares = {fmt: leaf_share(t) for fmt, t in st.items()}
    for tid in workers:
        top = {
            fmt: max((v, k[1]) for k, v in sh.items() if k[0] == tid)[1]
            for fmt, sh in shares.items()
        }
        assert len(set(top.values())) == 1, top
        vals = [sh[(tid, top["raw"])] for sh in shares.values()]
        assert max(vals) - min(vals) < 0.2, vals
    # native frames keep their library, Python frames their file and line
    stacks = st["raw"].stacks
    native = stacks[stacks["frame_kind"] == "c"]
    assert native["module"].astype(str).str.contains(r"\.so").any()
    python = stacks[stacks["frame_kind"] == "python"]
    files = python["file"].astype(str)
    assert (files.str.endswith(".py") | files.str.startswith("<")).all()  # <frozen ...> too
    assert python.loc[files.str.endswith(".py"), "line"].notna().all()


def test_speedscope_and_raw_counts_are_aggregates_of_every_sample():
    meta, st = load(SAMPLES / "py_hiredis")
    for fmt in ("speedscope", "raw"):
        n = st[fmt].instants["count"].sum()
        samples = meta["pyspy"]["recordings"][fmt]["samples"]
        threads = len(st[fmt].threads)
        # py-spy counts one sample per tick; each tick has one stack per (idle) thread
        assert samples <= n <= samples * threads


@pytest.mark.parametrize("capture", ["committed", "fresh"])
def test_alignment_by_event_matching_puts_waits_on_their_calls(capture, request):
    cap = (
        SAMPLES / "py_hiredis" if capture == "committed" else request.getfixturevalue("py_capture")
    )
    meta = json.loads((cap / "capture.json").read_text())
    py = parse(cap / FORMATS["chrometrace"], source="py", pid=meta["process"]["pid"])
    perf = parse_perf(cap / meta["files"]["perf_script"], source="perf")
    a = align_pyspy(py, perf)  # no anchor: the data alone
    assert a.method == "event-matching" and a.support >= 4
    assert a.error_ns <= 10_000_000  # one sampling period at 100 Hz
    anchor = meta["pyspy"]["recordings"]["chrometrace"]["anchor_mono_ns"]
    assert abs(a.offset_ns - anchor) < 100_000_000  # the anchor is good to start-up time
    with_anchor = align_pyspy(py, perf, anchor_ns=anchor)
    assert with_anchor.offset_ns == a.offset_ns and not with_anchor.warnings
    # every slow call: the samples at its middle show the thread waiting in the kernel
    s = py.slices.assign(
        rs=lambda d: d["ts"] + a.offset_ns, re=lambda d: d["ts"] + d["dur"] + a.offset_ns
    )
    slow = [
        r
        for r in read_truth(cap / "truth.jsonl")
        # made slow on purpose (a wait in the server); a first PING can also pass 100 ms
        # while py-spy attaches and both threads start (futex waits for the GIL, seen in CI)
        if r["kind"] == "call" and r["slow"] and r["dur_ns"] >= 100_000_000
    ]
    assert slow
    for c in slow:
        mid = (c["t0"] + c["t1"]) // 2
        cover = s[(s["tid"] == c["tid"]) & (s["rs"] <= mid) & (s["re"] >= mid)]
        assert len(cover) == 1 and cover["blocking"].iloc[0], c
        assert wrapper_syscalls(str(cover["name"].iloc[0])) & {"poll", "recvfrom", "read"}
    # a wrong user offset is reported against the data
    off = align_pyspy(py, perf, user_offset=a.offset_ns + 500_000_000)
    assert off.offset_ns == a.offset_ns and "disagrees with the data" in off.warnings[0]


def test_without_common_threads_the_anchor_is_used_and_said():
    meta, st = load(SAMPLES / "py_hiredis")
    go_perf = parse_perf(SAMPLES / "go_hiredis" / "perf.script.txt.gz")
    a = align_pyspy(st["chrometrace"], go_perf, anchor_ns=123)
    assert (a.method, a.offset_ns) == ("anchor", 123) and "no OS thread" in a.note


def test_truncated_chrometrace_keeps_complete_events(tmp_path):
    data = (SAMPLES / "py_hiredis" / FORMATS["chrometrace"]).read_bytes()
    cut = tmp_path / "cut.json"
    cut.write_bytes(data[: len(data) // 2])
    st = parse(cut).validate()
    assert len(st.slices) > 0
    assert any("truncated JSON" in w for w in st.meta.warnings)
    assert any("never closed" in w for w in st.meta.warnings)


def test_without_threads_flag_the_pyspy_id_is_kept_and_said(tmp_path):
    events = json.loads((SAMPLES / "py_hiredis" / FORMATS["chrometrace"]).read_text())
    drop = {id(e) for e in events if e["name"].startswith("thread (")}
    p = tmp_path / "nothreads.json"
    p.write_text(json.dumps([e for e in events if id(e) not in drop]))
    st = parse(p)
    assert (st.threads["tid"] > 1 << 32).all()  # pthread idents, not OS tids
    assert any("--threads" in w for w in st.meta.warnings)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"[]", "no samples"),
        (b'{"profiles": []}', "no shared.frames"),
        (b"not a stack\n", "no 'frame;frame"),
        (b"{bad json", "not valid JSON"),
    ],
)
def test_bad_input(tmp_path, content, message):
    p = tmp_path / "bad"
    p.write_bytes(content)
    with pytest.raises(InputError, match=message):
        parse(p)


def test_leaf_wrappers_map_to_syscalls():
    assert wrapper_syscalls("__libc_recv") == {"recvfrom"}
    assert wrapper_syscalls("__GI___poll") == {"poll", "ppoll"}
    assert wrapper_syscalls("clock_nanosleep") == {"clock_nanosleep", "nanosleep"}
    assert wrapper_syscalls("PyEval_EvalFrame") == set()


@pytest.mark.parametrize(
    ("name", "filename", "kind"),
    [
        ("Worker.call", "/srv/app/workload.py", "python"),
        ("<module>", "<string>", "python"),
        ("read_response", "redis/_parsers/hiredis.py:238", "python"),
        ("poll", "/usr/lib/x86_64-linux-gnu/libc.so.6", "c"),
        ("poll", "libc.so.6", "c"),
        ("sock_recv_guts", "/build/Python-3.11.7/Modules/socketmodule.c", "c"),
        ("sock_recv_guts", "socketmodule.c", "c"),
        ("0x7f7785ea3f16", "", "c"),
        ("main", "python3.11", "c"),
        # torn reads of --nonblocking (seen in CI): neither Python's nor native
        ("SET tc:py:1 xxxx", "tc:py:1", "python"),
        ("", "\u00b0", "python"),
    ],
)
def test_frame_kind_from_the_file_py_spy_names(name, filename, kind):
    frame = pyspy._frame(name, filename, 0)
    assert frame[4] == kind
    assert pyspy.torn_frame(frame) == (filename in ("tc:py:1", "\u00b0"))
