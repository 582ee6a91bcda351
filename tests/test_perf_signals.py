"""signal:signal_generate / signal:signal_deliver as os.signal instants, in both perf readers.

Oracles, none of them the code under test:
* ``perf script -F tid,time,event,trace --ns`` read line by line with re: each signal
  record's printed payload (sig, code, pid, res) gives the instant it must become;
* ``perf script -F tid,time,event,ip,sym,dso --ns``: perf's own callchain of each record;
* the workloads: a write to a closed pipe with SIGPIPE ignored (generate, res=1, no
  deliver), a handled SIGUSR1, a ``yes`` killed by SIGPIPE, a shell killing its child.
The text reader is checked against perf.data's native reader row by row, and on made-up
payloads (hypothesis) against the values they were printed from.
"""

from __future__ import annotations

import io
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tracecorr.parsers.perf_input import parse
from tracecorr.parsers.perf_records.columns import signal_name
from tracecorr.parsers.perf_script import parse_stream, perfdata

from tests.support.perf_oracle import callchains, perf_script, stack_frames, table_content

EVENTS = "signal:signal_generate,signal:signal_deliver,raw_syscalls:sys_enter,raw_syscalls:sys_exit"
COLUMNS = ["ts", "tid", "name", "sig", "signal", "sig_code", "sig_result", "sender_tid"]
#: on one line: perf prints the command line in the header, and a multi-line -c program
#: would put lines there that are not '#' lines (the try statement goes through exec)
PYTHON_SIGNALS = (
    "import os, signal; signal.signal(signal.SIGPIPE, signal.SIG_IGN); r, w = os.pipe(); "
    "os.close(r); exec('try: os.write(w, b\"x\")\\nexcept BrokenPipeError: pass'); "
    "signal.signal(signal.SIGUSR1, lambda *a: None); os.kill(os.getpid(), signal.SIGUSR1)"
)
WORKLOADS = {
    "python_ignored_and_handled": [os.path.realpath(sys.executable), "-c", PYTHON_SIGNALS],
    "yes_dies_of_sigpipe": ["sh", "-c", "yes | head -1 >/dev/null"],
    "shell_kills_child": ["sh", "-c", "sleep 5 & kill -TERM $!; wait"],
}


def _record(perf: str, out: Path, cmd: list[str]) -> Path:
    data = out / "perf.data"
    subprocess.run(
        [perf, "record", "-q", "-g", "-k", "CLOCK_MONOTONIC", "-e", EVENTS, "-o", str(data),
         "--", *cmd],
        check=True, capture_output=True,
    )  # fmt: skip
    return data


@pytest.fixture(scope="module", params=sorted(WORKLOADS))
def signal_capture(request, tmp_path_factory, perf) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp(request.param)
    return request.param, _record(perf, out, WORKLOADS[request.param])


_LINE = re.compile(
    r"^\s*(?P<tid>-?\d+)\s+(?P<s>\d+)\.(?P<ns>\d{9}):\s+signal:signal_(?P<how>generate|deliver):"
    r"\s*(?P<p>.*)$"
)


def _printed_signals(perf: str, data: Path) -> pd.DataFrame:
    """The os.signal instants perf script's payloads say there are, read naively."""
    out = []
    for line in perf_script(perf, data, "-F", "tid,time,event,trace", "--ns").splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        f = dict(re.findall(r"(\w+)=(\S*)", m["p"]))
        generate = m["how"] == "generate"
        out.append(
            {
                "ts": int(m["s"]) * 10**9 + int(m["ns"]),
                "tid": int(f["pid"]) if generate else int(m["tid"]),
                "name": signal.Signals(int(f["sig"])).name,
                "sig": int(f["sig"]),
                "signal": m["how"],
                "sig_code": int(f["code"]),
                "sig_result": int(f["res"]) if generate else None,
                "sender_tid": int(m["tid"]) if generate else None,
                "record_tid": int(m["tid"]),
            }
        )
    return pd.DataFrame(out)


def _signals(st_) -> pd.DataFrame:
    i = st_.instants
    return i[i["kind"] == "os.signal"].reset_index(drop=True)


def _na(v):
    """A cell with every kind of NA as None (Int64's NA and None differ under ==)."""
    return None if v is None or (not isinstance(v, tuple) and pd.isna(v)) else v


def _plain(df: pd.DataFrame) -> list[tuple]:
    """Rows as tuples of Python values, NA as None."""
    return [
        tuple(None if pd.isna(v) else (str(v) if isinstance(v, str) else int(v)) for v in row)
        for row in df[COLUMNS].itertuples(index=False)
    ]


@pytest.mark.capture
def test_both_readers_give_the_same_instants(signal_capture):
    _, data = signal_capture
    native = parse(data, source="s").validate()
    assert native.meta.kind == "perf-data"
    assert not [w for w in native.meta.warnings if "perf script" in w]  # no fallback
    text = perfdata.parse(data, source="s").validate()
    for table in ("instants", "slices", "threads"):
        a, b = table_content(native, table), table_content(text, table)
        assert list(a.columns) == list(b.columns) and len(a) == len(b), table
        for col in a.columns:
            assert [_na(v) for v in a[col]] == [_na(v) for v in b[col]], (table, col)
    assert len(_signals(native)) and not (native.instants["kind"] == "perf.event").any()
    assert native.meta.ledger == text.meta.ledger


@pytest.mark.capture
def test_instants_are_what_perf_script_prints(signal_capture, perf):
    name, data = signal_capture
    theirs = _printed_signals(perf, data)
    for reader in (parse, perfdata.parse):
        ours = _signals(reader(data, source="s").validate())
        assert _plain(ours) == _plain(theirs), (name, reader)
        assert (ours["pid"] == ours["tid"]).all()  # single-threaded workloads
        assert ours["stack_id"].notna().all()
    got = set(zip(theirs["name"], theirs["signal"], strict=True))
    expect = {
        "python_ignored_and_handled": {
            ("SIGPIPE", "generate"), ("SIGUSR1", "generate"), ("SIGUSR1", "deliver")
        },
        "yes_dies_of_sigpipe": {("SIGPIPE", "generate"), ("SIGKILL", "deliver")},
        "shell_kills_child": {("SIGTERM", "generate"), ("SIGCHLD", "deliver")},
    }[name]  # fmt: skip
    assert expect <= got, got
    if name == "python_ignored_and_handled":  # ignored: res 1 and never delivered
        pipe = theirs[theirs["name"] == "SIGPIPE"]
        assert (pipe["sig_result"] == 1).all() and set(pipe["signal"]) == {"generate"}
    if name == "shell_kills_child":  # sent to another process: the instant is the child's
        term = theirs[theirs["name"] == "SIGTERM"]
        assert (term["tid"] != term["sender_tid"]).all()


@pytest.mark.capture
def test_stacks_are_the_records_callchains(signal_capture, perf):
    _, data = signal_capture
    chains = callchains(perf_script(perf, data, "-F", "tid,time,event,ip,sym,dso", "--ns"))
    st_ = parse(data, source="s").validate()
    frames = stack_frames(st_.stacks)
    sig = _signals(st_)
    for row in sig.itertuples(index=False):
        on = row.sender_tid if row.signal == "generate" else row.tid
        perfs = chains[(int(on), int(row.ts), f"signal:signal_{row.signal}")]
        assert [f[0] for f in frames[int(row.stack_id)]] == [f[0] for f in perfs]
    generate = sig[sig["signal"] == "generate"]
    assert all(
        any("signal" in f[1] for f in frames[int(s)]) for s in generate["stack_id"]
    )  # the kernel's send path: __send_signal_locked, do_send_sig_info, ...


# --- the text payloads, made up -------------------------------------------------------------

INT32 = st.integers(-(2**31), 2**31 - 1)
COMM = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789 =_-:./"), min_size=1, max_size=15
).filter(lambda s: s.strip() == s)


@st.composite
def signal_records(draw) -> dict:
    generate = draw(st.booleans())
    return {
        "how": "generate" if generate else "deliver",
        "tid": draw(st.integers(1, 4_194_304)),
        "sig": draw(st.one_of(st.integers(1, 64), INT32)),
        "errno": draw(INT32),
        "code": draw(st.one_of(st.sampled_from([0, 128, -1, -6, 1, 2]), INT32)),
        "comm": draw(COMM),
        "pid": draw(st.integers(1, 4_194_304)),
        "grp": draw(st.integers(0, 1)),
        "res": draw(st.one_of(st.integers(0, 4), INT32)),
        "handler": draw(st.integers(0, 2**64 - 1)),
        "flags": draw(st.integers(0, 2**64 - 1)),
    }


def _line(k: int, r: dict) -> str:
    """A record line as perf 6.1 prints it (default fields, --ns)."""
    head = f"sig={r['sig']} errno={r['errno']} code={r['code']}"
    if r["how"] == "generate":
        payload = f"{head} comm={r['comm']} pid={r['pid']} grp={r['grp']} res={r['res']}"
    else:
        payload = f"{head} sa_handler={r['handler']:x} sa_flags={r['flags']:x}"
    event = f"signal:signal_{r['how']}:".rjust(24)
    return f"worker {r['tid']:>6} [001] {100 + k}.{k:09d}: {event} {payload}\n"


@settings(max_examples=int(os.environ.get("TRACECORR_FUZZ_EXAMPLES", "100")), deadline=None)
@given(st.lists(signal_records(), min_size=1, max_size=20))
def test_text_payloads_are_read_back(records):
    text = "".join(_line(k, r) for k, r in enumerate(records)).encode()
    sig = _signals(parse_stream(io.BytesIO(text), "made-up", "t").validate())
    expect = [
        (
            (100 + k) * 10**9 + k,
            r["pid"] if r["how"] == "generate" else r["tid"],
            signal_name(r["sig"]),
            r["sig"],
            r["how"],
            r["code"],
            r["res"] if r["how"] == "generate" else None,
            r["tid"] if r["how"] == "generate" else None,
        )
        for k, r in enumerate(records)
    ]
    assert _plain(sig) == expect


def test_signal_names():
    assert [signal_name(n) for n in (13, 11, 23, 9, 17)] == [
        "SIGPIPE", "SIGSEGV", "SIGURG", "SIGKILL", "SIGCHLD"
    ]  # fmt: skip
    assert signal_name(0) == "SIG0" and signal_name(40) == "SIG40"
    assert signal_name(-3) == "SIG-3" and signal_name(2**31 - 1) == f"SIG{2**31 - 1}"


@pytest.mark.parametrize(
    "payload",
    [
        "sig=x errno=0 code=0 comm=a pid=1 grp=0 res=0",
        "sig=13 errno=0 code=0 comm=a pid= grp=0 res=0",
        "sig=13 errno=0 code=99999999999 comm=a pid=1 grp=0 res=0",
        "sig=13 errno=0",
        "",
    ],
)
def test_a_bad_payload_is_counted_not_a_traceback(payload):
    good = {"how": "deliver", "tid": 7, "sig": 13, "errno": 0, "code": 128, "handler": 1}
    text = _line(0, good | {"flags": 4}) + (
        f"worker      7 [001] 101.000000001:  signal:signal_generate: {payload}\n"
    )
    st_ = parse_stream(io.BytesIO(text.encode()), "bad", "t").validate()
    assert st_.meta.ledger[("perf_unparsable_line", None)] == 1
    sig = _signals(st_)
    assert _plain(sig) == [(100 * 10**9, 7, "SIGPIPE", 13, "deliver", 128, None, None)]
    other = st_.instants[st_.instants["kind"] == "perf.event"]
    assert other["name"].astype(str).tolist() == ["signal:signal_generate"]


def test_the_perf_data_reader_restates_the_shared_constants():
    """perf_data/records.py restates them (a helper process must not import pandas)."""
    from tracecorr.parsers.perf_data import records as native
    from tracecorr.parsers.perf_records import columns

    assert native.SIGNAL_EVENTS == columns.SIGNAL_EVENTS
    assert native.NO_RESULT == columns.NO_RESULT


@pytest.mark.capture
def test_signals_read_with_a_helper_process_are_read_as_alone(perf, tmp_path, monkeypatch):
    """The signal side table through the pieces helpers decode (``Decoded.extend``
    renumbers its record indices): the same tables as one reader's. The parent waits until
    a helper has taken a piece (as tests/test_perf_data.py does), so that one is joined."""
    from tracecorr.parsers import sources
    from tracecorr.parsers.perf_data import pieces
    from tracecorr.parsers.perf_data import reader as perf_reader

    code = (
        "import os, signal; signal.signal(signal.SIGUSR1, lambda *a: None); "
        "[os.kill(os.getpid(), signal.SIGUSR1) for _ in range(3000)]"
    )
    data = _record(perf, tmp_path, [os.path.realpath(sys.executable), "-c", code])
    alone = sources.parse_all([(data, "perf-data", "perf")], jobs=1)[0]
    assert (_signals(alone)["name"] == "SIGUSR1").sum() >= 6000
    monkeypatch.setattr(pieces, "SPLIT_MIN_BYTES", 0)
    monkeypatch.setattr(pieces, "PIECE_BYTES", 32 << 10)
    real_split, real_collect = perf_reader.read_split, sources._collect
    seen: dict = {}

    def after_a_helper_took_one(reader, plan, helped):
        deadline = time.monotonic() + 60
        while _taken_from_back(plan) == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        return real_split(reader, plan, helped)

    def collect(helpers, want):
        seen["joined"] = got = real_collect(helpers, want)
        return got

    monkeypatch.setattr(perf_reader, "read_split", after_a_helper_took_one)
    monkeypatch.setattr(sources, "_collect", collect)
    helped = sources.parse_all([(data, "perf-data", "perf")], jobs=2)[0]
    assert seen.get("joined"), seen
    for name, table in alone.tables().items():
        pd.testing.assert_frame_equal(helped.tables()[name], table, obj=name)
    assert helped.meta.skipped == alone.meta.skipped


def _taken_from_back(plan) -> int:
    """How many pieces helpers have taken (the claims file's second counter moved down)."""
    with open(plan.claims, "rb") as f:
        _, back = struct.unpack("<qq", f.read(16))
    return plan.n - back
