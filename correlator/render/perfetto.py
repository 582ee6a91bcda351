"""An Analysis as a Perfetto trace (.pftrace), with the perfetto package's own protos.

Tracks: a process track per pid and a thread track per OS thread (real pids and tids), each
thread with child tracks "goroutines" (go.running / go.syscall stretches on that thread),
"syscalls", "off-CPU", "py-spy" and "blocking" (the records inside library calls). Flows go
from each library call (a goroutine's cgo span) to the syscalls inside it, and from each
record's waker (the waking thread's syscall at the wakeup, or a "wakeup" instant on its
"wakeups" track when it was not in one) to the record; a counter track counts the threads
inside library calls. Timestamps are CLOCK_MONOTONIC ns
(``timestamp_clock_id`` = BUILTIN_CLOCK_MONOTONIC); packets are streamed to the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import TracePacket, TrackEvent
from perfetto.trace_builder.proto_builder import StreamingTraceProtoBuilder

from ...parsers.model import TYPED
from ..api import Analysis
from ..schema import RECORD, Perfetto, perfetto_args

CLOCK_MONOTONIC = 3  # perfetto BuiltinClock.BUILTIN_CLOCK_MONOTONIC
SEQ = 1
CHILD_TRACKS = {
    "go.running": "goroutines",
    "go.syscall": "goroutines",
    "os.syscall": "syscalls",
    "os.offcpu": "off-CPU",
    "py.sample": "py-spy",
}


class _Writer:
    def __init__(self, f) -> None:
        self.b = StreamingTraceProtoBuilder(f)
        self.next_uuid = 1
        self.counts: dict[str, int] = {}
        self.children: dict[tuple[int, str], int] = {}

    def packet(self) -> TracePacket:
        p = self.b.create_packet()
        p.trusted_packet_sequence_id = SEQ
        return p

    def write(self, p: TracePacket) -> None:
        self.b.write_packet(p)

    def track(self, **fields) -> int:
        uuid = self.next_uuid
        self.next_uuid += 1
        p = self.packet()
        d = p.track_descriptor
        d.uuid = uuid
        if "parent" in fields:
            d.parent_uuid = fields["parent"]
        if "name" in fields:
            d.name = fields["name"]
        if "pid" in fields and "tid" not in fields:
            d.process.pid = fields["pid"]
            if fields.get("process_name"):
                d.process.process_name = fields["process_name"]
        if "tid" in fields:
            d.thread.pid = fields["pid"]
            d.thread.tid = fields["tid"]
            if fields.get("thread_name"):
                d.thread.thread_name = fields["thread_name"]
        if fields.get("counter"):
            d.counter.SetInParent()
        self.write(p)
        return uuid

    def child(self, parent: int, name: str) -> int:
        """The child track *name* of track *parent*, written the first time it is asked for,
        so a thread only gets the child tracks it has slices on."""
        key = (parent, name)
        if key not in self.children:
            self.children[key] = self.track(parent=parent, name=name)
        return self.children[key]

    def slice(
        self,
        track: int,
        ts: int,
        dur: int,
        name: str,
        category: str,
        args: dict | None = None,
        flow_out: int | list[int] | None = None,
        flow_in: int | list[int] | None = None,
    ) -> None:
        p = self.packet()
        p.timestamp = int(ts)
        p.timestamp_clock_id = CLOCK_MONOTONIC
        e = p.track_event
        e.type = TrackEvent.TYPE_SLICE_BEGIN
        e.track_uuid = track
        e.name = name
        e.categories.append(category)
        for ids, field in ((flow_out, e.flow_ids), (flow_in, e.terminating_flow_ids)):
            if ids is not None:
                field.extend([ids] if isinstance(ids, int) else ids)
        for k, v in (args or {}).items():
            if v is None:
                continue
            a = e.debug_annotations.add()
            a.name = k
            if isinstance(v, bool):
                a.bool_value = v
            elif isinstance(v, int):
                a.int_value = v
            else:
                a.string_value = str(v)
        self.write(p)
        p = self.packet()
        p.timestamp = int(ts + max(dur, 0))
        p.timestamp_clock_id = CLOCK_MONOTONIC
        p.track_event.type = TrackEvent.TYPE_SLICE_END
        p.track_event.track_uuid = track
        self.write(p)
        self.counts[category] = self.counts.get(category, 0) + 1

    def counter(self, track: int, ts: int, value: float) -> None:
        p = self.packet()
        p.timestamp = int(ts)
        p.timestamp_clock_id = CLOCK_MONOTONIC
        p.track_event.type = TrackEvent.TYPE_COUNTER
        p.track_event.track_uuid = track
        p.track_event.double_counter_value = float(value)
        self.write(p)


class _Flows(NamedTuple):
    """The flow ids, allocated before any slice is written: from each library call span to
    the perf syscalls inside it, and from each record's waker to the record."""

    call_key: dict[tuple[int, int], int]  # (tid, start) of a call -> its span
    of_call: dict[int, int]  # call span -> the flow going out of its cgo slice
    of_syscall: dict[int, int]  # syscall row -> the flow coming into it
    waker_out: dict[int, list[int]]  # syscall row -> waker flows going out of it
    waker_in: dict[int, int]  # record row -> the waker flow coming into it
    wakeups: dict[tuple[int, int, int], list[int]]  # bare wakeups -> flows going out


def _flows(a: Analysis) -> _Flows:
    """Number the call flows after their spans (from 1), and the waker flows after those."""
    calls = a.calls.reset_index(drop=True) if len(a.calls) else a.calls
    joins = a.support("syscall_joins")
    of_syscall = {row: span + 1 for row, span in joins.call_of_syscall.items()}
    of_call = {span: span + 1 for span in joins.call_of_syscall.values()}
    call_key = {}
    for i, c in enumerate(calls.itertuples()) if len(calls) else []:
        call_key[(int(c.tid), int(c.start))] = i
    waker_out, waker_in, wakeups = _waker_flows(a.blocking, joins.waker_syscall, len(calls) + 1)
    return _Flows(call_key, of_call, of_syscall, waker_out, waker_in, wakeups)


def _threads(a: Analysis, slices: pd.DataFrame) -> set[tuple[int, int]]:
    """Every (pid, tid) with a slice or a record on it: the threads that get a track."""
    threads = set()
    if len(slices):
        threads |= set(zip(slices["pid"].astype(int), slices["tid"].astype(int), strict=True))
    threads |= set(zip(a.blocking["pid"].astype(int), a.blocking["tid"].astype(int), strict=True))
    return threads


def _slice_flows(kind: str, r, flows: _Flows) -> tuple[int | list[int] | None, int | None]:
    """The flows out of and into one slice: a cgo span starts its call's flow; a syscall
    ends the flow of the call it is in and starts the flows to the records it woke."""
    flow_out = flow_in = None
    if kind == "go.syscall":
        i = flows.call_key.get((int(r.tid), int(r.ref_ts)))
        flow_out = flows.of_call.get(i) if i is not None else None
    elif kind == "os.syscall":
        flow_in = flows.of_syscall.get(r.Index)
        flow_out = flows.waker_out.get(r.Index)
    return flow_out, flow_in


def _slice_args(r, typed: list[str]) -> dict:
    """A slice's args: its goroutine and the typed attributes that apply (NA and False are
    omitted, so a slice only carries what is true of it)."""
    args = {"goroutine": None if pd.isna(r.goid) else int(r.goid)}
    for k in typed:
        v = getattr(r, k)
        if v is None or v is pd.NA or (isinstance(v, float) and v != v):
            continue
        if isinstance(v, (bool, np.bool_)):
            if v:
                args[k] = True
        else:
            args[k] = v if isinstance(v, str) else int(v)
    return args


def _write_slices(w: _Writer, slices: pd.DataFrame, thread_track: dict, flows: _Flows) -> None:
    """The slices on threads, kind by kind, each on its thread's child track for the kind;
    slices on threads without a track (no tid) are left out."""
    typed = [c for c in TYPED["slices"] if c in slices.columns]
    for kind in ("go.running", "go.syscall", "os.syscall", "os.offcpu", "py.sample"):
        s = slices[slices["kind"] == kind] if len(slices) else slices
        for r in s.itertuples():
            key = (int(r.pid), int(r.tid))
            if key not in thread_track:
                continue
            flow_out, flow_in = _slice_flows(kind, r, flows)
            track = w.child(thread_track[key], CHILD_TRACKS[kind])
            args = _slice_args(r, typed)
            w.slice(track, r.ref_ts, r.dur, str(r.name), kind, args, flow_out, flow_in)


def _write_wakeups(w: _Writer, flows: _Flows, thread_track: dict, names: dict) -> None:
    """A "wakeup" instant for each wakeup outside any recorded syscall, starting its flows;
    a waking thread seen nowhere else gets its thread track here."""
    for (pid, tid, t), ids in flows.wakeups.items():
        if (pid, tid) not in thread_track:
            thread_track[(pid, tid)] = w.track(pid=pid, tid=tid, thread_name=names.get(tid, ""))
        w.slice(w.child(thread_track[(pid, tid)], "wakeups"), t, 0, "wakeup", "wakeup", None, ids)


def _write_blocking(w: _Writer, blocking: pd.DataFrame, thread_track: dict, flows: _Flows) -> None:
    """The records on their threads' "blocking" tracks, each ending its waker's flow."""
    for r in blocking.itertuples():
        key = (int(r.pid), int(r.tid))
        if key not in thread_track:
            continue
        w.slice(
            w.child(thread_track[key], "blocking"),
            r.start_ns,
            r.dur_ns,
            f"{r.call}: {r.syscall or 'off-CPU'}",
            "blocking",
            blocking_args(r),
            None,
            flows.waker_in.get(r.Index),
        )


def _write_threads_inside(w: _Writer, a: Analysis) -> None:
    """The counter of threads inside library calls, when the capture has calls."""
    series = a.summary["native_calls"]["series"]
    if series:
        ct = w.track(name=f"threads inside {a.library.name} calls", counter=True)
        for t, v in series:
            w.counter(ct, t, v)


def export(a: Analysis, path: str | Path) -> dict:
    """Write the trace; returns what was written (slices per category, flows, tracks)."""
    slices = a.slices_on_threads()
    names = a.thread_names()
    threads = _threads(a, slices)
    with open(path, "wb") as f:
        w = _Writer(f)
        proc_track = {
            pid: w.track(pid=pid, process_name=names.get(pid, ""))
            for pid in sorted({p for p, _ in threads if p >= 0})
        }
        thread_track = {
            (p, t): w.track(pid=p, tid=t, thread_name=names.get(t, ""))
            for p, t in sorted(threads)
            if t > 0
        }
        flows = _flows(a)
        _write_slices(w, slices, thread_track, flows)
        _write_wakeups(w, flows, thread_track, names)
        _write_blocking(w, a.blocking, thread_track, flows)
        _write_threads_inside(w, a)
    return {
        "slices": w.counts,
        "waker_flows": len(flows.waker_in),
        "flows": len(flows.of_call),
        "flow_targets": len(flows.of_syscall),
        "thread_tracks": len(thread_track),
        "process_tracks": len(proc_track),
    }


def _waker_flows(
    blocking: pd.DataFrame, waker_syscall: dict[int, int | None], first_id: int
) -> tuple[dict[int, list[int]], dict[int, int], dict[tuple[int, int, int], list[int]]]:
    """Flow ids from each record's waker to the record: (syscall row -> ids going out of it,
    record row -> id coming in, (pid, tid, t) of wakeups outside any recorded syscall -> ids),
    from where ``syscall_joins`` found each wakeup. Wakers from interrupts (tid 0) have no
    thread to start from and get no flow."""
    out: dict[int, list[int]] = {}
    into: dict[int, int] = {}
    bare: dict[tuple[int, int, int], list[int]] = {}
    for fid, (idx, row) in enumerate(waker_syscall.items(), first_id):
        into[idx] = fid
        if row is not None:
            out.setdefault(row, []).append(fid)
        else:
            wk = blocking.at[idx, "waker"]
            pid = int(wk["pid"]) if wk.get("pid") is not None else -1
            bare.setdefault((pid, int(wk["tid"]), int(wk["wakeup_ns"])), []).append(fid)
    return out, into, bare


#: the args of a "blocking" slice, in order (schema.Column.perfetto)
BLOCKING_ARGS = perfetto_args()


def blocking_args(r) -> dict:
    """A record's args on its "blocking" slice, each packed as the schema says."""
    wk = getattr(r, "waker", None)
    wk = wk if isinstance(wk, dict) else None
    return {p.arg: _arg(p, r, wk) for p in BLOCKING_ARGS}


def _arg(p: Perfetto, r, wk: dict | None):
    if p.packing == "waker":
        return (
            None
            if wk is None
            else f"{wk.get('comm') or '?'} pid {wk.get('pid')} tid {wk.get('tid')}"
        )
    if p.packing == "longest_wait":
        lw = (wk or {}).get("longest_wait") or {}
        if not lw:
            return None
        return f"{lw.get('syscall') or 'off-CPU'} ({lw.get('state') or '-'}) {lw.get('dur_ns')} ns"
    v = getattr(r, _COLUMN_OF[p.arg])
    if p.packing == "joined":
        return p.sep.join(v)
    if v is None or v != v:  # null or NaN
        return None
    return int(v) if p.packing == "int" else v


_COLUMN_OF = {c.perfetto.arg: c.name for c in RECORD if c.perfetto is not None}
