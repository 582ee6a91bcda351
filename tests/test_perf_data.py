"""The native perf.data reader on real captures, checked against perf's own output.

Oracles, none of them the code under test:
* the text path: ``perf script`` text of the same file, read by parsers/perf_script (the
  default layout the brief names, and the field list the perf.data path uses);
* ``perf script -F tid,time,event,trace --ns`` read line by line with re (tracepoint fields);
* ``perf script -F tid,time,event,ip,sym,dso`` (perf's own callchains, DWARF unwinding
  included);
* the workloads' behaviour: every redis-cli invocation blocks in a hiredis read, ``sleep`` and
  the shell do not.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tracecorr.parsers import detect
from tracecorr.parsers.errors import InputError
from tracecorr.parsers.perf_data import read, rows
from tracecorr.parsers.perf_data.file import PerfFile
from tracecorr.parsers.perf_input import parse
from tracecorr.parsers.perf_records.columns import Records
from tracecorr.parsers.perf_script import parse_stream, perfdata

from sample_traces.capture import GoOptions, capture_go
from tests.conftest import require
from tests.support.perf_oracle import (
    callchains,
    is_kernel_frame,
    perf_script,
    stack_frames,
    table_content,
    trace_fields,
)

pytestmark = pytest.mark.capture

EVENTS = "raw_syscalls:sys_enter,raw_syscalls:sys_exit,sched:sched_switch,sched:sched_wakeup"
NOT_CODE = ("[unknown]", "[stack]", "[heap]")


def _text_tables(perf: str, data: Path, source: str):
    """The text path on perf script's default layout with header and task/lost events."""
    argv = perfdata.perf_script_argv(perf, str(data), fields=None)
    text = subprocess.run(argv, capture_output=True, check=True).stdout
    return parse_stream(io.BytesIO(text), str(data), source).validate()


def _assert_same_tables(native, text, label: str, same_numbering: bool = False) -> None:
    """Every row of slices, instants and threads equal, stacks compared by their frames;
    with *same_numbering* the stacks tables themselves are equal (ids included)."""
    for table in ("slices", "instants", "threads"):
        a, b = table_content(native, table), table_content(text, table)
        assert list(a.columns) == list(b.columns), (label, table)
        assert len(a) == len(b), (label, table, len(a), len(b))
        for col in a.columns:
            x, y = a[col].tolist(), b[col].tolist()
            diff = [i for i, (p, q) in enumerate(zip(x, y, strict=True)) if not _same(p, q)]
            assert not diff, (label, table, col, diff[:3], x[diff[0]], y[diff[0]])
    if same_numbering:  # both interned every printed callchain in row order
        pd.testing.assert_frame_equal(
            native.stacks.drop(columns="source").reset_index(drop=True),
            text.stacks.drop(columns="source").reset_index(drop=True),
            check_categorical=False,
        )
    else:  # only the stacks the tables use: a subset of the text path's
        ours, theirs = stack_frames(native.stacks), stack_frames(text.stacks)
        assert set(ours.values()) <= set(theirs.values())
    pd.testing.assert_frame_equal(
        native.args.drop(columns="source").reset_index(drop=True),
        text.args.drop(columns="source").reset_index(drop=True),
        check_categorical=False,
    )


def _same(p, q) -> bool:
    def na(v):
        return v is None or (not isinstance(v, tuple) and pd.isna(v))

    if na(p) or na(q):
        return na(p) and na(q)
    return p == q


# --- 1. the oracle: the text path on the same perf.data -----------------------------------


@pytest.mark.parametrize("capture", ["go_capture", "py_capture"])
def test_tables_equal_the_text_parsers(request, perf, capture):
    data = request.getfixturevalue(capture) / "perf.data"
    native = parse(data, source="p").validate()
    assert native.meta.kind == "perf-data" and "native reader" in native.meta.format_version
    assert not [w for w in native.meta.warnings if "perf script" in w]  # no fallback
    assert len(native.slices) > 100 and native.slices["stack_id"].notna().any()
    default = _text_tables(perf, data, "p")
    _assert_same_tables(native, default, "default layout")
    # the field list the perf.data path prints: pids too
    text = perfdata.parse(data, source="p").validate()
    _assert_same_tables(native, text, "perfdata")
    # every printed callchain interned in row order: the stack ids themselves are equal
    with PerfFile.open(data) as pf:
        numbered = read(pf, "p", all_stacks=True).validate()
    _assert_same_tables(numbered, default, "all stacks", same_numbering=True)
    assert native.clock == text.clock
    for key in ("hostname", "os_release", "arch", "cmdline"):
        assert native.meta.extra[key] == text.meta.extra[key]
    assert dict(native.meta.events) == dict(text.meta.events)


# --- 2. tracepoint fields, sample by sample ------------------------------------------------


def test_every_sample_has_perf_scripts_fields(go_capture, perf):
    data = go_capture / "perf.data"
    ours, _ = rows(data)
    ours = ours[~ours["event"].str.startswith("PERF_RECORD_")].reset_index(drop=True)
    theirs = trace_fields(perf_script(perf, data, "-F", "tid,time,event,trace", "--ns"))
    assert len(ours) == len(theirs) > 1000
    for col in ("tid", "time", "event"):
        assert ours[col].tolist() == theirs[col].tolist(), col
    for col in ("nr", "ret", "prev_pid", "next_pid", "woken_pid", "target_cpu"):
        want = theirs[col]
        have = ours[col] if col in ours else pd.Series([pd.NA] * len(ours))
        known = want.notna()
        assert known.any(), col
        assert (have[known].astype("int64") == want[known].astype("int64")).all(), col
        # fields an event does not have are NA (a syscall entry's ret is the text path's 0)
        other = ~known & ~((col == "ret") & (theirs["event"] == "raw_syscalls:sys_enter"))
        assert have[other].isna().all(), col
    states = theirs["prev_state"].notna()
    assert ours.loc[states, "prev_state"].tolist() == theirs.loc[states, "prev_state"].tolist()
    assert "S" in set(theirs.loc[states, "prev_state"])  # the workload sleeps in reads


# --- 3. DWARF: kernel frames equal perf's, perf's user frames within ours -----------------


@pytest.fixture(scope="module")
def go_dwarf_capture(tmp_path_factory, redis_server, perf, go_toolchain) -> Path:
    out = tmp_path_factory.mktemp("go_dwarf")
    capture_go(
        out,
        GoOptions(
            goroutines=2,
            commands=12,
            slow_every=4,
            slow_ms=30,
            decoy_every=6,
            decoy_ms=20,
            dwarf=True,
            redis_port=redis_server.port,
        ),
    )
    return out


@pytest.fixture(scope="module")
def redis_cli_capture(tmp_path_factory, redis_server, perf) -> Path:
    """A shell loop of redis-cli invocations (hiredis compiled in) and decoys, recorded with
    DWARF callchains."""
    require(shutil.which("redis-cli") is not None, "redis-cli (Debian redis-tools)")
    out = tmp_path_factory.mktemp("redis_cli")
    port = redis_server.port
    loop = (
        f"for i in 1 2 3 4; do redis-cli -p {port} DEBUG SLEEP 0.05 >/dev/null; "
        f"redis-cli -p {port} BLPOP tracecorr:nothing 0.1 >/dev/null; sleep 0.05; done"
    )
    subprocess.run(
        [perf, "record", "-q", "-k", "CLOCK_MONOTONIC", "-e", EVENTS, "--call-graph",
         "dwarf,8192", "-m", "64M", "-o", str(out / "perf.data"), "--", "sh", "-c", loop],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


def _dwarf_figures(perf: str, data: Path) -> dict:
    """Sample by sample: do the kernel frames equal perf's, and are perf's user frames
    (addresses, inline repeats folded) equal to, a prefix of, or a subsequence of ours?"""
    ours, stacks = rows(data)
    frames = stack_frames(stacks)
    theirs = callchains(perf_script(perf, data, "--ns", "-F", "tid,time,event,ip,sym,dso"))
    fig = {"samples": 0, "kernel_equal": 0, "user_equal": 0, "user_prefix": 0,
           "user_subsequence": 0, "user_other": 0, "perf_no_user": 0, "ours_longer": 0,
           "perf_hiredis": 0, "ours_hiredis": 0, "hiredis_lost": 0, "perf_bogus": 0}  # fmt: skip
    for r in ours[ours["stack_id"].notna()].itertuples():
        chain = theirs.get((r.tid, r.time, r.event))
        assert chain is not None, (r.tid, r.time, r.event)
        mine = frames[int(r.stack_id)]
        fig["samples"] += 1
        k_theirs = [f[:3] for f in chain if is_kernel_frame(f)]
        k_mine = [f[:3] for f in mine if f[3] == "kernel"]
        fig["kernel_equal"] += k_theirs == k_mine
        # where perf's own unwind fails it prints a non-code frame: address -1 or 2**32 in
        # no map, or a [stack] address; those are not frames to find in ours
        u_all = [f for f in chain if not is_kernel_frame(f)]
        u_theirs = [f[0] for f in u_all if f[2] not in NOT_CODE]
        fig["perf_bogus"] += len(u_theirs) < len(u_all)
        u_theirs = [a for i, a in enumerate(u_theirs) if i == 0 or a != u_theirs[i - 1]]
        u_mine = [f[0] for f in mine if f[3] != "kernel"]
        fig["ours_longer"] += len(u_mine) > len(u_theirs)
        theirs_redis = any(f[1].startswith("redis") for f in chain)
        ours_redis = any(f[1].startswith("redis") for f in mine)
        fig["perf_hiredis"] += theirs_redis
        fig["ours_hiredis"] += ours_redis
        fig["hiredis_lost"] += theirs_redis and not ours_redis
        if not u_theirs:
            fig["perf_no_user"] += 1
        elif u_theirs == u_mine:
            fig["user_equal"] += 1
        elif u_mine[: len(u_theirs)] == u_theirs:
            fig["user_prefix"] += 1
        elif _subsequence(u_theirs, u_mine):
            fig["user_subsequence"] += 1
        else:
            fig["user_other"] += 1
    return fig


def _subsequence(small: list, big: list) -> bool:
    it = iter(big)
    return all(any(a == b for b in it) for a in small)


@pytest.mark.parametrize("capture", ["go_dwarf_capture", "redis_cli_capture"])
def test_dwarf_kernel_frames_equal_perfs_and_user_frames_extend_them(request, perf, capture):
    data = request.getfixturevalue(capture) / "perf.data"
    fig = _dwarf_figures(perf, data)
    print(capture, json.dumps(fig))
    n = fig["samples"]
    assert n > 200
    assert fig["kernel_equal"] == n
    # perf's own unwind often stops early (at the libc leaf for redis-cli): its frames are
    # then a prefix or a subsequence of ours
    within = fig["user_equal"] + fig["user_prefix"] + fig["user_subsequence"] + fig["perf_no_user"]
    assert within >= 0.99 * n, fig
    # where perf reaches hiredis we do too; perf's own unwinding of the short-lived redis-cli
    # processes reaches it in anything from none to nearly all of them, from run to run
    assert fig["hiredis_lost"] == 0 and fig["ours_hiredis"] >= max(fig["perf_hiredis"], 1), fig


# --- 4. redis-cli: every blocking read passes through hiredis, decoys do not --------------


def _blocking(st, min_ns: int = 20_000_000) -> pd.DataFrame:
    s = st.slices
    return s[(s["kind"] == "os.syscall") & (s["dur"] >= min_ns)].reset_index(drop=True)


def test_redis_cli_blocking_reads_are_in_hiredis_and_decoys_are_not(redis_cli_capture, perf):
    data = redis_cli_capture / "perf.data"
    st = parse(data).validate()
    assert st.meta.extra["unwind"]["samples"] > 100
    names = dict(zip(st.threads["tid"], st.threads["name"].astype(str), strict=True))
    frames = stack_frames(st.stacks)
    block = _blocking(st)
    by_comm = {c: block[block["tid"].map(names) == c] for c in ("redis-cli", "sleep", "sh")}
    cli = by_comm["redis-cli"]
    # 4 iterations x (DEBUG SLEEP, BLPOP timeout): one blocking read per invocation
    assert sorted(cli["name"].astype(str).unique()) in (["recvfrom"], ["read"], ["poll"])
    assert len(cli) == 8 and cli["tid"].nunique() == 8
    for sid in cli["stack_id"]:
        fns = [f[1] for f in frames[int(sid)]]
        hired = [f for f in frames[int(sid)] if f[1].startswith("redis")]
        assert hired and all(f[2] == "/usr/bin/redis-cli" for f in hired), fns
        assert {"redisGetReply", "redisBufferRead"} & set(fns), fns
    assert len(by_comm["sleep"]) == 4 and len(by_comm["sh"]) >= 8  # the decoys did block
    for comm in ("sleep", "sh"):
        for sid in by_comm[comm]["stack_id"].dropna():
            assert not any(f[1].startswith("redis") for f in frames[int(sid)]), comm
    # for reference: perf's own unwinding of the same syscall entries
    theirs = callchains(perf_script(perf, data, "--ns", "-F", "tid,time,event,ip,sym,dso"))
    perf_hiredis = sum(
        any(f[1].startswith("redis") for f in theirs[(t, ts, "raw_syscalls:sys_enter")])
        for t, ts in zip(cli["tid"], cli["ts"], strict=True)
    )
    print(f"blocking redis-cli reads through hiredis: ours 8 of 8, perf's own {perf_hiredis} of 8")


@pytest.fixture
def native_perf_data_format(monkeypatch):
    """Route perf.data inputs of the API to the native reader (detect.py still names the
    perf script path; see the report)."""
    formats = [
        dataclasses.replace(f, parser="tracecorr.parsers.perf_data:parse")
        if f.name == "perf-data"
        else f
        for f in detect.FORMATS
    ]
    monkeypatch.setattr(detect, "FORMATS", formats)


def test_redis_cli_end_to_end(redis_cli_capture, native_perf_data_format):
    from tracecorr.correlator.api import analyze

    a = analyze([], perf_data=[str(redis_cli_capture / "perf.data")], min_block_ms=20)
    assert a.sources[0].meta.kind == "perf-data"
    assert "native reader" in a.sources[0].meta.format_version
    b = a.blocking
    st = a.sources[0]
    names = dict(zip(st.threads["tid"], st.threads["name"].astype(str), strict=True))
    assert len(b) == 8, b[["tid", "syscall", "dur_ns"]]
    assert b["tid"].nunique() == 8
    assert (b["tid"].map(names) == "redis-cli").all()
    assert (b["pid"] == b["tid"]).all()  # single-threaded processes
    assert (b["library"] == "hiredis").all()


# --- other files: fallbacks, lost events, system-wide, no -k --------------------------------


def _record(perf: str, out: Path, *args: str, cmd: list[str] | None = None) -> Path:
    data = out / "perf.data"
    subprocess.run(
        [perf, "record", "-q", *args, "-o", str(data), "--",
         *(cmd or ["sh", "-c", "for i in 1 2 3; do sleep 0.01; done"])],
        check=True, capture_output=True,
    )  # fmt: skip
    return data


def test_pipe_mode_falls_back_to_perf_script_and_says_why(perf, tmp_path):
    data = tmp_path / "pipe.data"
    with open(data, "wb") as f:
        subprocess.run(
            [perf, "record", "-q", "-k", "CLOCK_MONOTONIC", "-e", EVENTS, "-g", "-o", "-", "--",
             "sh", "-c", "sleep 0.01"],
            check=True, stdout=f, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    st = parse(data).validate()
    assert any("pipe-mode" in w and "perf script" in w for w in st.meta.warnings)
    assert st.meta.extra["native_reader"].startswith("fallback")
    assert (st.slices["name"] == "clock_nanosleep").any()


def test_compressed_records_fall_back(perf, tmp_path):
    try:
        data = _record(perf, tmp_path, "-z", "-e", EVENTS, "-g")
    except subprocess.CalledProcessError as exc:
        require(False, f"perf record -z (perf built with zstd): {exc.stderr[-200:]!r}")
    st = parse(data).validate()
    assert any("compressed" in w for w in st.meta.warnings)


def test_lost_events_are_kept_as_in_the_text_path(perf, tmp_path):
    code = "import os\nfor _ in range(300000): os.getppid()\n"
    data = _record(
        perf, tmp_path, "-m", "1", "-k", "CLOCK_MONOTONIC", "-e",
        "raw_syscalls:sys_enter,raw_syscalls:sys_exit",
        cmd=[os.path.realpath(shutil.which("python3") or "python3"), "-c", code],
    )  # fmt: skip
    native = parse(data, source="l").validate()
    text = perfdata.parse(data, source="l").validate()
    assert native.meta.extra["lost_events"] == text.meta.extra["lost_events"] > 0
    assert native.meta.extra["lost_samples"] > 0  # LOST_SAMPLES: perf script prints none
    _assert_same_tables(native, text, "lost")


def test_system_wide_recording_and_pid_filter(perf, tmp_path):
    data = _record(perf, tmp_path, "-a", "-k", "CLOCK_MONOTONIC", "-e", EVENTS)
    text = perfdata.parse(data, source="a").validate()
    native = parse(data, source="a").validate()
    assert native.slices["pid"].nunique() > 1
    _assert_same_tables(native, text, "system-wide")
    pid = int(native.threads.loc[native.threads["name"] == "sleep", "pid"].iloc[0])
    mine = parse(data, source="a", only_pids={pid})
    assert len(mine.slices) and (mine.slices["pid"] == pid).all()


def test_other_wakeup_tracepoints(perf, tmp_path):
    events = "raw_syscalls:sys_enter,raw_syscalls:sys_exit,sched:sched_switch,"
    events += "sched:sched_waking,sched:sched_wakeup_new"
    data = _record(
        perf, tmp_path, "-k", "CLOCK_MONOTONIC", "-e", events, "-g",
        cmd=["sh", "-c", "sleep 0.01 & sleep 0.02; wait"],
    )  # fmt: skip
    native = parse(data, source="w").validate()
    _assert_same_tables(native, perfdata.parse(data, source="w").validate(), "waking")
    wake = native.instants[native.instants["kind"] == "os.wakeup"]
    assert len(wake) and wake["stack_id"].notna().any()
    if "how" in Records().wake:  # the text path names which tracepoint woke
        assert {"waking", "wakeup_new"} <= set(wake["name"].astype(str))


def test_recording_without_k_is_on_perf_clock(perf, tmp_path):
    data = _record(perf, tmp_path, "-e", EVENTS, "-g")
    native = parse(data, source="n").validate()
    assert native.clock.clock_id == "perf_clock" and not native.clock.snapshots
    _assert_same_tables(native, perfdata.parse(data, source="n").validate(), "no -k")


def test_not_perf_data_is_one_error(tmp_path):
    p = tmp_path / "x.data"
    p.write_bytes(b"hello, this is not perf data" * 10)
    with pytest.raises(InputError, match="not a perf.data file") as e:
        parse(p)
    assert e.value.offset == 0


# --- perf script's delivery order, against a literal queue ---------------------------------


def _perf_queue_order(time, queued, seg, n_rounds) -> list[int]:
    """perf's ordered-events queue, one event at a time (util/ordered-events.c): queued
    events sorted by time (ties in arrival order); a FINISHED_ROUND flushes those at or before
    next_flush, then next_flush = the largest time queued (nothing when the queue is empty);
    untimed events go out as they are read; the end flushes everything."""
    out, pending = [], []
    next_flush, max_ts = 0, 0
    i, n = 0, len(time)
    for k in range(n_rounds + 1):
        while i < n and seg[i] == k:
            if not queued[i]:
                out.append(i)
            else:
                t = int(time[i])
                if not pending or t >= pending[-1][0]:
                    max_ts = t  # the new event is the tail
                pending.append((t, i))
                pending.sort()  # (time, arrival) order
            i += 1
        if k == n_rounds:
            out += [j for _, j in pending]
        elif pending:
            out += [j for t, j in pending if t <= next_flush]
            pending = [(t, j) for t, j in pending if t > next_flush]
            next_flush = max_ts
    return out


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_delivery_order_is_perfs_queue(data):
    from tracecorr.parsers.perf_data.order import _simulate, delivery_order

    n = data.draw(st.integers(1, 60))
    n_rounds = data.draw(st.integers(0, 8))
    seg = np.sort(np.array(data.draw(st.lists(st.integers(0, n_rounds), min_size=n, max_size=n))))
    base = np.array(data.draw(st.lists(st.integers(1, 40), min_size=n, max_size=n)))
    time_ = (np.cumsum(base) - data.draw(st.integers(0, 30)) * (np.arange(n) % 3)).clip(1)
    queued = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n))) | (
        data.draw(st.booleans())
    )
    want = _perf_queue_order(time_, queued, seg, n_rounds)
    assert _simulate(time_, queued, seg, n_rounds).tolist() == want
    assert delivery_order(time_, queued, seg, n_rounds).tolist() == want


def test_a_perf_data_read_with_a_helper_process_is_read_as_alone(go_capture, monkeypatch):
    """``sources.parse_all`` cuts a large perf.data into pieces that worker processes help
    decode (perf_data/pieces.py). Here the pieces are made small so that this capture is cut
    into many, and the parent waits until a helper has taken one before it starts, so that
    the helper's pieces, shipped back through shared memory, are among those joined."""
    from tracecorr.parsers import sources
    from tracecorr.parsers.perf_data import pieces
    from tracecorr.parsers.perf_data import reader as perf_reader

    data = go_capture / "perf.data"
    alone = sources.parse_all([(data, "perf-data", "perf")], jobs=1)[0]
    monkeypatch.setattr(pieces, "SPLIT_MIN_BYTES", 0)
    monkeypatch.setattr(pieces, "PIECE_BYTES", 32 << 10)
    real_split, real_collect = perf_reader.read_split, sources._collect
    seen: dict = {}

    def after_a_helper_took_one(reader, plan, helped):
        seen["pieces"] = plan.n
        deadline = time.monotonic() + 60
        while _taken_from_back(plan) == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        return real_split(reader, plan, helped)

    def collect(helpers, want):
        got = real_collect(helpers, want)
        seen["joined"] = sorted(got)
        return got

    monkeypatch.setattr(perf_reader, "read_split", after_a_helper_took_one)
    monkeypatch.setattr(sources, "_collect", collect)
    helped = sources.parse_all([(data, "perf-data", "perf")], jobs=2)[0]
    assert seen["pieces"] >= 8 and seen.get("joined"), seen
    for name, table in alone.tables().items():
        pd.testing.assert_frame_equal(helped.tables()[name], table, obj=name)
    assert helped.meta.warnings == alone.meta.warnings
    assert helped.meta.skipped == alone.meta.skipped


def _taken_from_back(plan) -> int:
    """How many pieces helpers have taken (the claims file's second counter moved down)."""
    with open(plan.claims, "rb") as f:
        _, back = struct.unpack("<qq", f.read(16))
    return plan.n - back
