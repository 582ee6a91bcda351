"""perf records -> the canonical tables.

os.syscall  one logical syscall (restarts merged) on its thread; name = syscall; stack =
            the callchain at its (first) sys_enter; args: nr, ret, fd, restarts, and
            start_unknown / unfinished at the recording's edges, lost_inside when perf
            lost events during it
os.offcpu   switch-out -> running again; name = prev_state (S, D, R, R+, t, ...); stack =
            the switch-out callchain (why it slept); args: runq_ns (None = unknown), end
instants    os.wakeup (tid = the woken thread), os.comm / os.fork / os.exit (task events),
            perf.lost, perf.switch, perf.event (any other event, name = event)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..model import SourceTables, make_table, stacks_table
from . import clock_of, new_meta
from .header import PerfHeader
from .records import Records, Registries
from .sched import END_NAMES, off_cpu
from .syscalls import START_UNKNOWN, UNFINISHED, pair_syscalls


def _pid_map(rec: Records, tid: np.ndarray, pid: np.ndarray) -> dict[int, int]:
    known = pid >= 0
    out = dict(zip(tid[known].tolist(), pid[known].tolist(), strict=True))
    for _, kind, p, t, _extra in rec.task:
        if kind in ("comm", "fork", "exit") and p >= 0 and t >= 0:
            out.setdefault(t, p)
    return out


def _pids_of(tids: np.ndarray, pid_of: dict[int, int]) -> np.ndarray:
    return np.array([pid_of.get(t, -1) for t in tids.tolist()], np.int64)


def _stack_col(stack: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(stack.astype(np.int64), stack == 0)


def build_tables(
    rec: Records,
    reg: Registries,
    header: PerfHeader,
    path: str,
    source: str,
    only_pids: set[int] | None,
) -> SourceTables:
    meta = new_meta(source, path, header)
    tid, pid, time = rec.column("tid"), rec.column("pid"), rec.column("time")
    event, comm, stack = rec.column("event"), rec.column("comm"), rec.column("stack")
    real = ~np.isin(
        event, [c for c, name in enumerate(reg.events.values) if name.startswith("PERF_RECORD_")]
    )
    # perf's synthetic records (the perf-exec COMM) carry time 0: not the recording's start
    first_time = int(time[real].min()) if real.any() else int(time.min())
    last_time = int(time.max())
    pid_of = _pid_map(rec, tid, pid)

    counts = np.bincount(event, minlength=len(reg.events.values))
    for code, name in enumerate(reg.events.values):
        if counts[code]:
            meta.events[name] = int(counts[code])

    # syscalls: raw_syscalls when recorded (they cover every syscall); else syscalls:*
    sys = rec.side("sys")
    if (sys["raw"] == 1).any() and (sys["raw"] == 0).any():
        named = sys["raw"] == 0
        meta.skip("syscalls:* event beside raw_syscalls (raw ones paired)", int(named.sum()))
        sys = {k: v[~named] for k, v in sys.items()}
    restart = reg.syscalls.get("restart_syscall")
    thread_end = {t: int(time[row]) for row, kind, _, t, _x in rec.task if kind == "exit"}
    born = {t for _, kind, _, t, _x in rec.task if kind == "fork"}
    sc = pair_syscalls(sys, tid, time, first_time, thread_end, last_time, born, restart)
    if sc.clone_children:
        meta.skip("first sys_exit of a new thread (the child side of clone)", sc.clone_children)
    if sc.dropped_enters:
        meta.skip("sys_enter without its sys_exit (lost?)", sc.dropped_enters)
    if sc.dropped_exits:
        meta.skip("sys_exit without its sys_enter (lost?)", sc.dropped_exits)
    lost = sorted((int(time[row]), x["lost"]) for row, kind, _, _, x in rec.task if kind == "lost")
    lost_t = np.array([t for t, _ in lost], np.int64)
    lost_inside = (
        np.searchsorted(lost_t, sc.end, "left") - np.searchsorted(lost_t, sc.start, "right")
    ) > 0

    oc = off_cpu(rec.side("switch"), rec.side("wake"), tid, time, last_time)
    states = np.array(reg.states.values or [""], dtype=object)
    sys_names = np.array(reg.syscalls.values or [""], dtype=object)

    # --- slices
    sc_args = [
        _syscall_args(nr, ret, fd, rs, fl, li)
        for nr, ret, fd, rs, fl, li in zip(
            sc.nr.tolist(),
            sc.ret.tolist(),
            sc.fd.tolist(),
            sc.restarts.tolist(),
            sc.flags.tolist(),
            lost_inside.tolist(),
            strict=True,
        )
    ]
    sc_stack = np.where(sc.enter_row >= 0, stack[np.maximum(sc.enter_row, 0)], 0)
    state_names = states[oc.state] if len(oc.state) else np.zeros(0, object)
    runq = np.where(
        np.isin(state_names, ["R", "R+"]),
        oc.end - oc.start,
        np.where(oc.wakeup >= 0, oc.end - oc.wakeup, -1),
    )
    oc_args = [
        {"state": s, "runq_ns": (q if q >= 0 else None), "end": END_NAMES[e]}
        for s, q, e in zip(state_names.tolist(), runq.tolist(), oc.end_kind.tolist(), strict=True)
    ]
    s_tid = np.concatenate([sc.tid, oc.tid])
    slices = make_table(
        "slices",
        source=source,
        pid=_pids_of(s_tid, pid_of),
        tid=s_tid,
        ts=np.concatenate([sc.start, oc.start]),
        dur=np.maximum(np.concatenate([sc.end - sc.start, oc.end - oc.start]), 0),
        kind=pd.Categorical.from_codes(
            np.concatenate([np.zeros(len(sc.tid), np.int8), np.ones(len(oc.tid), np.int8)]),
            categories=["os.syscall", "os.offcpu"],
        ),
        name=np.concatenate(
            [sys_names[sc.name] if len(sc.name) else np.zeros(0, object), state_names]
        ),
        stack_id=_stack_col(np.concatenate([sc_stack, stack[oc.out_row]])),
        args=np.array(sc_args + oc_args + [None], dtype=object)[:-1],
    )
    unknown_runq = int(sum(1 for a in oc_args if a["runq_ns"] is None))
    if unknown_runq:
        meta.extra["runq_unknown"] = unknown_runq
    ends = np.bincount(oc.end_kind, minlength=3)
    meta.extra["offcpu_end"] = {END_NAMES[i]: int(ends[i]) for i in range(3)}
    meta.extra["syscall_restarts_merged"] = int(sc.restarts.sum())

    # --- instants
    inst = _instants(rec, reg, tid, time, comm, stack, pid_of)
    instants = make_table("instants", source=source, **inst) if inst["ts"] else None

    # --- threads: every thread seen, named by its last comm
    all_tids = tid  # threads that emitted records (wakeup targets elsewhere are instants)
    order = np.lexsort((time, tid))
    last_of_tid = order[np.append(tid[order][1:] != tid[order][:-1], True)]
    name_of = {
        int(t): reg.comms.values[c] if c >= 0 else None
        for t, c in zip(tid[last_of_tid].tolist(), comm[last_of_tid].tolist(), strict=True)
    }
    uniq = np.unique(all_tids[all_tids > 0]) if len(all_tids) else all_tids
    threads = make_table(
        "threads",
        source=source,
        pid=_pids_of(uniq, pid_of),
        tid=uniq,
        name=[name_of.get(t) for t in uniq.tolist()],
    )

    if only_pids is not None:
        keep = set(only_pids)
        slices = slices[slices["pid"].isin(keep)].reset_index(drop=True)
        threads = threads[threads["pid"].isin(keep)].reset_index(drop=True)
        if instants is not None:
            instants = instants[instants["pid"].isin(keep)].reset_index(drop=True)
        meta.extra["only_pids"] = sorted(keep)

    _account(meta, rec, reg, lost, header, pid_of, unknown_runq, len(oc.tid))
    out = SourceTables(
        meta=meta,
        clock=clock_of(header, rec.frac_digits),
        threads=threads,
        slices=slices,
        stacks=_stacks_table(reg, source),
    )
    if instants is not None:
        out.instants = instants
    return out


def _syscall_args(nr, ret, fd, restarts, flags, lost_inside) -> dict:
    d = {"ret": ret if not flags & UNFINISHED else None}
    if nr >= 0:
        d["nr"] = nr
    if fd >= 0:
        d["fd"] = fd
    if restarts:
        d["restarts"] = restarts
    if flags & START_UNKNOWN:
        d["start_unknown"] = True
    if flags & UNFINISHED:
        d["unfinished"] = True
    if lost_inside:
        d["lost_inside"] = True
    return d


def _instants(rec, reg, tid, time, comm, stack, pid_of) -> dict:
    out: dict[str, list] = {k: [] for k in ("pid", "tid", "ts", "kind", "name", "stack_id", "args")}

    def add(t_id, ts, kind, name, stack_id, args):
        out["pid"].append(pid_of.get(t_id, -1))
        out["tid"].append(t_id)
        out["ts"].append(ts)
        out["kind"].append(kind)
        out["name"].append(name)
        out["stack_id"].append(stack_id or None)
        out["args"].append(args)

    wake = rec.side("wake")
    for row, woken, cpu in zip(
        wake["row"].tolist(), wake["pid"].tolist(), wake["cpu"].tolist(), strict=True
    ):
        add(
            woken,
            int(time[row]),
            "os.wakeup",
            "wakeup",
            0,
            {"waker_tid": int(tid[row]), "target_cpu": cpu if cpu >= 0 else None},
        )
    for row, kind, _pid, t, extra in rec.task:
        t_id = t if t >= 0 else int(tid[row])
        name = extra.get("comm") or extra.get("record") or kind
        add(
            t_id,
            int(time[row]),
            {
                "comm": "os.comm",
                "fork": "os.fork",
                "exit": "os.exit",
                "lost": "perf.lost",
                "switch": "perf.switch",
            }.get(kind, "perf.record"),
            name,
            0,
            extra,
        )
    other = np.concatenate(rec.other_rows) if rec.other_rows else np.zeros(0, np.int64)
    names = reg.events.values
    ev = rec.column("event")
    for row in other.tolist():
        add(
            int(tid[row]),
            int(time[row]),
            "perf.event",
            names[ev[row]],
            int(stack[row]),
            {"comm": reg.comms.values[comm[row]] if comm[row] >= 0 else None},
        )
    return out


def _stacks_table(reg: Registries, source: str) -> pd.DataFrame:
    return stacks_table(
        source,
        (
            tuple((func, None, None, dso, kind, ip) for ip, func, dso, kind in frames)
            for frames in reg.stacks.frames
        ),
    )


def _account(
    meta,
    rec: Records,
    reg: Registries,
    lost,
    header: PerfHeader,
    pid_of,
    unknown_runq: int,
    n_offcpu: int,
) -> None:
    if rec.garbage:
        meta.skip("unparsable lines", rec.garbage)
        meta.warn(
            f"{rec.garbage} line(s) that are not perf script records were skipped "
            f"(first at line {', '.join(map(str, rec.garbage_lines))})"
        )
    if reg.stacks.bad_frame_lines:
        meta.skip("unparsable callchain frame lines", reg.stacks.bad_frame_lines)
    if lost:
        total = sum(n for _, n in lost)
        meta.extra["lost_events"] = total
        meta.extra["lost_windows_ns"] = [t for t, _ in lost][:100]
        meta.warn(
            f"perf lost {total} event(s) in {len(lost)} place(s) (PERF_RECORD_LOST): "
            "syscalls spanning them are flagged lost_inside; there may be no data there"
        )
    if not header.present:
        meta.warn("no perf header (perf script --header): the clock is unknown")
    elif header.clock_id() != "monotonic":
        meta.warn("recorded without -k CLOCK_MONOTONIC: times are on perf_clock and need alignment")
    if n_offcpu and unknown_runq == n_offcpu:
        meta.extra["runq_note"] = (
            "no sched_wakeup seen for blocked threads (recorded "
            "without -a?): runqueue delay unknown"
        )
    if not pid_of:
        meta.warn("no pids in the text (print with -F +pid or --show-task-events): pid -1")
