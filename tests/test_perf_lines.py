"""Property tests: every common `perf script` field layout parses back to the same fields.

Records are generated (comm names with spaces, digits, ':' and '/', pid/tid widths of perf
6.1 and mainline, with and without pid, cpu, time of day, ns or us times, padded or not) and
rendered the way perf's printf formats do; the chunk reader must recover every field, and
mixed-in garbage lines must be counted, never fatal.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from tracecorr.parsers.perf_records.columns import Records, Registries
from tracecorr.parsers.perf_records.syscall_tables import X86_64
from tracecorr.parsers.perf_script import parse_stream
from tracecorr.parsers.perf_script.lines import split_chunks
from tracecorr.parsers.perf_script.records import _hex, add_chunk
from tracecorr.parsers.perf_script.stacks import TextStacks

COMM_CHARS = st.sampled_from(list("abcdefghijklmnopqrstuvwxyz0123456789 :/-_.[]#"))
comm = (
    st.text(COMM_CHARS, min_size=1, max_size=15)
    .map(str.strip)
    .filter(lambda s: s and not s.startswith("#"))
)

record = st.fixed_dictionaries(
    {
        "comm": comm,
        "pid": st.integers(1, 4_194_304),
        "tid": st.integers(1, 4_194_304),
        "cpu": st.integers(0, 255),
        "sec": st.integers(0, 10**6),
        "ns": st.integers(0, 10**9 - 1),
        "kind": st.sampled_from(["enter", "exit", "switch"]),
        "nr": st.sampled_from([0, 1, 7, 45, 202, 230]),
        # errors and sizes, and any signed 64-bit value (rt_sigreturn returns the restored
        # register, 19 digits and all)
        "ret": st.integers(-4095, 2**40) | st.integers(-(2**63), 2**63 - 1),
        "state": st.sampled_from(["S", "D", "R", "R+", "t", "I"]),
    }
)
layout = st.fixed_dictionaries(
    {
        "pid": st.booleans(),
        "cpu": st.booleans(),
        "ns": st.booleans(),
        "pad": st.booleans(),
        "wide": st.booleans(),
        "tod": st.booleans(),
    }
)


def render(r: dict, lay: dict) -> str:
    parts = [f"{r['comm']:>16}" if lay["pad"] else r["comm"]]
    w = 7 if lay["wide"] else 5
    parts.append(f"{r['pid']:{w}d}/{r['tid']:<{w}d}" if lay["pid"] else f"{r['tid']:{w}d}")
    if lay["cpu"]:
        parts.append(f"[{r['cpu']:03d}]")
    if lay["tod"]:
        parts.append("2026-11-25 19:35:21.875079")
    frac = f"{r['ns']:09d}" if lay["ns"] else f"{r['ns'] // 1000:06d}"
    parts.append(f"{r['sec']:5d}.{frac}:")
    if r["kind"] == "enter":
        ev, payload = "raw_syscalls:sys_enter", f"NR {r['nr']} (5, 7f62, 64, 0, 0, 0)"
    elif r["kind"] == "exit":
        ev, payload = "raw_syscalls:sys_exit", f"NR {r['nr']} = {r['ret']}"
    else:
        ev = "sched:sched_switch"
        payload = (
            f"prev_comm={r['comm']} prev_pid={r['tid']} prev_prio=120 "
            f"prev_state={r['state']} ==> next_comm=swapper/0 next_pid=0 next_prio=120"
        )
    parts.append(f"{ev:>22}: {payload}")
    return " ".join(parts)


def records_of(text: str) -> tuple[Records, Registries]:
    rec, reg = Records(), Registries(stacks=TextStacks())
    for chunk in split_chunks(io.BytesIO(text.encode()), chunk_bytes=4096):
        add_chunk(rec, reg, chunk, X86_64)
    return rec, reg


@settings(max_examples=200, deadline=None)
@given(st.lists(record, min_size=1, max_size=40), layout)
def test_every_layout_parses_back(recs, lay):
    text = "\n".join(render(r, lay) for r in recs) + "\n"
    rec, reg = records_of(text)
    assert rec.garbage == 0 and rec.rows == len(recs)
    assert rec.column("tid").tolist() == [r["tid"] for r in recs]
    want_pid = [r["pid"] for r in recs] if lay["pid"] else [-1] * len(recs)
    assert rec.column("pid").tolist() == want_pid
    want_cpu = [r["cpu"] for r in recs] if lay["cpu"] else [-1] * len(recs)
    assert rec.column("cpu").tolist() == want_cpu
    scale = 1 if lay["ns"] else 1000
    assert rec.column("time").tolist() == [
        r["sec"] * 10**9 + r["ns"] // scale * scale for r in recs
    ]
    assert [reg.comms.values[c] for c in rec.column("comm")] == [r["comm"] for r in recs]
    sys = rec.side("sys")
    exits = [r for r in recs if r["kind"] == "exit"]
    assert sys["ret"][sys["dir"] == 2].tolist() == [r["ret"] for r in exits]
    sw = rec.side("switch")
    assert [reg.states.values[c] for c in sw["state"]] == [
        r["state"] for r in recs if r["kind"] == "switch"
    ]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(record, min_size=2, max_size=30),
    layout,
    st.lists(
        st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=60),
        min_size=1,
        max_size=5,
    ),
    st.randoms(),
)
def test_garbage_lines_are_counted_and_skipped(recs, lay, junk, rnd):
    lines = [render(r, lay) for r in recs]
    bad = [
        j
        for j in junk
        if j.strip() and not j.startswith(("\t", "#")) and not records_of(j + "\n")[0].rows
    ]
    for j in bad:
        lines.insert(rnd.randrange(len(lines) + 1), j)
    rec, _ = records_of("\n".join(lines) + "\n")
    assert rec.garbage == len(bad)
    assert rec.column("tid").tolist() == [r["tid"] for r in recs]


@settings(max_examples=60, deadline=None)
@given(st.lists(record, min_size=1, max_size=30), layout, st.integers(1, 400))
def test_chunk_boundaries_do_not_matter(recs, lay, chunk):
    text = (
        "\n".join(
            render(r, lay) + "\n\tffffffff81000130 entry+0x76 ([kernel.kallsyms])" for r in recs
        )
        + "\n"
    ).encode()
    whole, parts = Records(), Records()
    reg1, reg2 = Registries(stacks=TextStacks()), Registries(stacks=TextStacks())
    for c in split_chunks(io.BytesIO(text), chunk_bytes=1 << 20):
        add_chunk(whole, reg1, c, X86_64)
    for c in split_chunks(io.BytesIO(text), chunk_bytes=chunk):
        add_chunk(parts, reg2, c, X86_64)
    for col in ("tid", "time", "position"):
        assert np.array_equal(whole.column(col), parts.column(col))
    assert (parts.column("stack") == 1).all()


def test_a_whole_parse_of_generated_text_is_valid():
    recs = [
        dict(comm="w 1", pid=10, tid=11, cpu=0, sec=5, ns=i * 1000, kind=k, nr=0, ret=3, state="S")
        for i, k in enumerate(["enter", "exit", "switch", "enter", "exit"])
    ]
    text = "\n".join(
        render(r, dict(pid=True, cpu=True, ns=True, pad=False, wide=False, tod=False)) for r in recs
    )
    st_ = parse_stream(io.BytesIO(text.encode()), "gen", "s").validate()
    sc = st_.slices[st_.slices["kind"] == "os.syscall"]
    assert sc["dur"].tolist() == [1000, 1000] and (sc["pid"] == 10).all()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.just(""),
            st.integers(0, (1 << 64) - 1).map(lambda v: f"{v:x}"),
            st.integers(0, (1 << 64) - 1).map(lambda v: f"{v:016X}"),
        )
    ),
    st.integers(0, 3),
)
def test_hex_column_equals_int_base_16(values, skip):
    """The vectorised hex decoder against Python's int(v, 16), two's complement, -1 for
    null or empty; on a sliced Arrow array too (offsets not starting at 0)."""
    want = [
        -1 if not v else (int(v, 16) - (1 << 64) if int(v, 16) >= 1 << 63 else int(v, 16))
        for v in values
    ][skip:]
    arr = pa.array(values, pa.string()).slice(min(skip, len(values)))
    assert _hex(arr).tolist() == want
