"""The vectorised helpers the report's hot paths use, each against the slower code it
replaced (kept here as the oracle) or against numpy/pandas doing the same thing, on random
inputs full of ties: the same answers, not only the same speed."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import weakref

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tracecorr.correlator.joins import holding_span
from tracecorr.parsers import gotrace, shipping, sources
from tracecorr.parsers.columns import pair_order
from tracecorr.parsers.model import stacks_table, stacks_table_of

from tests.conftest import SAMPLES

small = st.integers(0, 6)


def merge_asof_holding(records: pd.DataFrame, spans: pd.DataFrame, tolerance: int) -> np.ndarray:
    """The join written with pandas.merge_asof (the code holding_span replaced), spans sorted
    stably: of a thread's spans starting together, the last in row order holds."""
    r = records.assign(row=np.arange(len(records))).sort_values("start")
    sp = spans.assign(span=np.arange(len(spans)), span_start=spans["start"], span_end=spans["end"])
    sp = sp[["tid", "span_start", "span_end", "span"]].sort_values("span_start", kind="stable")
    m = pd.merge_asof(r, sp, left_on="start", right_on="span_start", by="tid", direction="backward")
    inside = (m["start"] >= m["span_start"] - tolerance) & (m["end"] <= m["span_end"] + tolerance)
    m.loc[~inside.fillna(False).astype(bool), "span"] = np.nan
    out = np.full(len(records), -1)
    ok = m["span"].notna().to_numpy()
    out[m["row"].to_numpy()[ok]] = m["span"].to_numpy()[ok].astype(int)
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(small, small, small), min_size=1, max_size=25),
    st.lists(st.tuples(small, small, small), min_size=1, max_size=25),
    st.integers(0, 2),
)
def test_holding_span_is_the_merge_asof_join(spans, records, tolerance):
    sp = pd.DataFrame(
        [(t, s, s + d) for t, s, d in spans], columns=["tid", "start", "end"], dtype="int64"
    )
    rec = pd.DataFrame(
        [(t, s, s + d) for t, s, d in records], columns=["tid", "start", "end"], dtype="int64"
    )
    got = holding_span(
        rec["tid"].to_numpy(), rec["start"].to_numpy(), rec["end"].to_numpy(), sp, tolerance
    )
    assert got.tolist() == merge_asof_holding(rec, sp, tolerance).tolist()
    for i, row in enumerate(got):  # and what it means, from the definition
        if row >= 0:
            s, r = sp.iloc[row], rec.iloc[i]
            assert s["tid"] == r["tid"] and s["start"] - tolerance <= r["start"]
            assert r["end"] <= s["end"] + tolerance


@given(st.lists(st.tuples(st.integers(-5, 5), st.integers(-(2**40), 2**40)), max_size=60))
def test_pair_order_is_lexsort(pairs):
    a = np.array([p[0] for p in pairs], np.int64)
    b = np.array([p[1] for p in pairs], np.int64)
    assert pair_order(a, b).tolist() == np.lexsort((b, a)).tolist()


def test_pair_order_falls_back_when_one_key_cannot_hold_both():
    a = np.array([2**40, 0, 2**40, 1], np.int64)
    b = np.array([2**40, -(2**40), 0, 5], np.int64)
    assert pair_order(a, b).tolist() == np.lexsort((b, a)).tolist()


@given(
    st.lists(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=5), min_size=1, max_size=12)
)
def test_stacks_table_of_is_stacks_table(stacks):
    def frame(name: str) -> tuple:
        return (f"fn_{name}", f"{name}.c", 7, "lib.so", "c", 0x1000 + ord(name))

    want = stacks_table("s", [tuple(frame(f) for f in st_) for st_ in stacks])
    got = stacks_table_of("s", [tuple(st_) for st_ in stacks], frame)
    pd.testing.assert_frame_equal(got, want)


def tables() -> dict:
    rng = np.random.default_rng(1)
    return {
        "slices": pd.DataFrame(
            {
                "ts": rng.integers(0, 2**50, 10_000),
                "tid": pd.array(rng.integers(0, 9, 10_000), dtype="Int64"),
                "kind": pd.Categorical(rng.choice(["go.running", "os.syscall"], 10_000)),
            }
        ),
        "note": "a Python object beside the columns",
    }


def test_shipping_round_trip_through_shared_memory():
    if not (os.path.isdir(shipping.SHM_DIR) and os.access(shipping.SHM_DIR, os.W_OK)):
        pytest.skip("no writable /dev/shm")
    obj = tables()
    sent = shipping.ship(obj)
    assert isinstance(sent, shipping.Shipped) and os.path.exists(sent.path)
    sent = pickle.loads(pickle.dumps(sent))  # as the executor sends it to the parent
    back = shipping.unship(sent)
    assert not os.path.exists(sent.path)  # unlinked once mapped
    pd.testing.assert_frame_equal(back["slices"], obj["slices"])
    assert back["note"] == obj["note"]
    back["slices"].loc[0, "ts"] = -1  # writable, as unpickled columns are
    assert back["slices"]["ts"].iloc[0] == -1


def test_shipping_what_is_made_frees_each_column_once_written(monkeypatch):
    """``ship_made``: the worker never holds the tables and their copy in shared memory at
    once (a column is gone by the time the file is written; with ``ship``, whose caller
    holds the object, it is not); what comes back equals what was made; a failed write
    makes them again."""
    if not (os.path.isdir(shipping.SHM_DIR) and os.access(shipping.SHM_DIR, os.W_OK)):
        pytest.skip("no writable /dev/shm")
    made, owners, alive_after_write = [], [], []
    write = shipping._write

    def watched_write(*a, **k):
        spans = write(*a, **k)
        alive_after_write.append(owners[-1]() is not None)
        return spans

    monkeypatch.setattr(shipping, "_write", watched_write)

    def make():
        ts = np.random.default_rng(len(made)).integers(0, 2**50, 100_000)
        owners.append(weakref.ref(ts))
        obj = {"slices": pd.DataFrame({"ts": ts}, copy=False)}
        made.append(obj["slices"].copy())
        return obj

    sent = shipping.ship_made(make)
    assert isinstance(sent, shipping.Shipped)
    back = shipping.unship(pickle.loads(pickle.dumps(sent)))
    pd.testing.assert_frame_equal(back["slices"], made[0])
    held = make()
    shipping.unship(shipping.ship(held))
    assert alive_after_write == [False, True]

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shipping, "_write", full)
    again = shipping.ship_made(make)
    assert len(made) == 4 and isinstance(again, dict)  # made once more, sent as it is
    pd.testing.assert_frame_equal(again["slices"], made[3])


def test_shipping_without_shared_memory_sends_the_object(monkeypatch, tmp_path):
    monkeypatch.setattr(shipping, "SHM_DIR", str(tmp_path / "missing"))
    obj = tables()
    assert shipping.ship(obj) is obj
    assert shipping.unship(obj) is obj


def test_sweep_removes_only_files_of_dead_parents(monkeypatch, tmp_path):
    monkeypatch.setattr(shipping, "SHM_DIR", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"{shipping.PREFIX}{dead.pid}-x1{shipping.SUFFIX}"
    live = tmp_path / f"{shipping.PREFIX}{os.getpid()}-x2{shipping.SUFFIX}"
    other = tmp_path / "someone-else.tables"
    for f in (stale, live, other):
        f.write_bytes(b"x")
    sent = shipping.ship(tables())  # named after this process's parent: alive
    assert shipping.sweep() == 1
    assert not stale.exists() and live.exists() and other.exists()
    shipping.discard(sent)
    assert not os.path.exists(sent.path)


def test_a_go_trace_worker_needs_no_pandas_and_sends_the_same_tables(tmp_path):
    """A worker parses a Go trace into numpy chunks (pandas is 70 MB more through the
    parent's peak); the parent's DataFrames equal the parser's own."""
    trace = SAMPLES / "go_hiredis" / "go.trace"
    code = (
        "import pickle, sys\n"
        "from pathlib import Path\n"
        "from tracecorr.parsers import sources\n"
        f"sent = sources._parse_shipped(Path({str(trace)!r}), 'go-trace', 'go')\n"
        "sys.stdout.buffer.write(pickle.dumps(('pandas' in sys.modules, sent)))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    loaded_pandas, sent = pickle.loads(r.stdout)
    assert loaded_pandas is False
    got = sources._received(sent)
    want = gotrace.parse(trace, source="go", pid=sources.capture_pid(trace))
    for name in ("slices", "threads", "stacks", "instants"):
        pd.testing.assert_frame_equal(getattr(got, name), getattr(want, name), check_exact=True)
    assert got.meta.as_dict() == want.meta.as_dict()
