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


def export(a: Analysis, path: str | Path) -> dict:
    """Write the trace; returns what was written (slices per category, flows, tracks)."""
    slices = a.slices_on_threads()
    names = a.thread_names()
    threads = set()
    if len(slices):
        threads |= set(zip(slices["pid"].astype(int), slices["tid"].astype(int), strict=True))
    threads |= set(zip(a.blocking["pid"].astype(int), a.blocking["tid"].astype(int), strict=True))
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
        children: dict[tuple, int] = {}

        def child(p: int, t: int, name: str) -> int:
            key = (p, t, name)
            if key not in children:
                children[key] = w.track(parent=thread_track[(p, t)], name=name)
            return children[key]

        # flows: each library call span -> the perf syscalls inside it
        calls = a.calls.reset_index(drop=True) if len(a.calls) else a.calls
        joins = a.support("syscall_joins")
        flow_of_syscall = {row: span + 1 for row, span in joins.call_of_syscall.items()}
        flow_of_call = {span: span + 1 for span in joins.call_of_syscall.values()}
        call_key = {}
        for i, c in enumerate(calls.itertuples()) if len(calls) else []:
            call_key[(int(c.tid), int(c.start))] = i
        waker_out, waker_in, wakeups = _waker_flows(a.blocking, joins.waker_syscall, len(calls) + 1)

        typed = [c for c in TYPED["slices"] if c in slices.columns]
        for kind in ("go.running", "go.syscall", "os.syscall", "os.offcpu", "py.sample"):
            s = slices[slices["kind"] == kind] if len(slices) else slices
            for r in s.itertuples():
                key = (int(r.pid), int(r.tid))
                if key not in thread_track:
                    continue
                flow_out = flow_in = None
                if kind == "go.syscall":
                    i = call_key.get((int(r.tid), int(r.ref_ts)))
                    flow_out = flow_of_call.get(i) if i is not None else None
                elif kind == "os.syscall":
                    flow_in = flow_of_syscall.get(r.Index)
                    flow_out = waker_out.get(r.Index)
                args = {"goroutine": None if pd.isna(r.goid) else int(r.goid)}
                for k in typed:  # the typed attributes that apply (NA and False: omitted)
                    v = getattr(r, k)
                    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
                        continue
                    if isinstance(v, (bool, np.bool_)):
                        if v:
                            args[k] = True
                    else:
                        args[k] = v if isinstance(v, str) else int(v)
                w.slice(
                    child(*key, CHILD_TRACKS[kind]),
                    r.ref_ts,
                    r.dur,
                    str(r.name),
                    kind,
                    args,
                    flow_out,
                    flow_in,
                )
        for (pid, tid, t), flows in wakeups.items():
            if (pid, tid) not in thread_track:
                thread_track[(pid, tid)] = w.track(pid=pid, tid=tid, thread_name=names.get(tid, ""))
            w.slice(child(pid, tid, "wakeups"), t, 0, "wakeup", "wakeup", None, flows)
        for r in a.blocking.itertuples():
            key = (int(r.pid), int(r.tid))
            if key not in thread_track:
                continue
            w.slice(
                child(*key, "blocking"),
                r.start_ns,
                r.dur_ns,
                f"{r.call}: {r.syscall or 'off-CPU'}",
                "blocking",
                blocking_args(r),
                None,
                waker_in.get(r.Index),
            )
        series = a.summary["native_calls"]["series"]
        if series:
            ct = w.track(name=f"threads inside {a.library.name} calls", counter=True)
            for t, v in series:
                w.counter(ct, t, v)
    return {
        "slices": w.counts,
        "waker_flows": len(waker_in),
        "flows": len(flow_of_call),
        "flow_targets": len(flow_of_syscall),
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
