"""perf records -> the canonical tables.

os.syscall  one logical syscall (restarts merged) on its thread; name = syscall; stack =
            the callchain at its (first) sys_enter; typed columns nr, ret, fd, restarts,
            and start_unknown / end_unknown at the recording's edges, lost_inside when perf
            lost events during it
os.offcpu   switch-out -> running again; name = state = prev_state (S, D, R, R+, t, ...);
            stack = the switch-out callchain (why it slept); runq_ns (NA = unknown), end_by
instants    os.wakeup (tid = the woken thread, waker_tid, cpu), os.signal (tid = the
            receiving thread; name = SIGPIPE, ...; sig, signal = generate / deliver,
            sig_code, sig_result, sender_tid; stack = the record's callchain: the sender's
            for generate), os.comm / os.fork / os.exit (task events; parent_pid /
            parent_tid), perf.lost (count),
            perf.switch, perf.event (any other event, name = event); their rare details
            (exec, the raw record text) go to the args table
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..columns import pair_order
from ..model import SourceTables, args_table, keep_rows, make_table, stacks_table_of
from . import clock_of, new_meta
from .columns import NO_RESULT, SIGNAL_HOW, WAKE_HOW, Records, Registries, signal_name
from .header import PerfHeader
from .lost import lost_windows, overlaps
from .sched import END_NAMES, END_TRACE, off_cpu
from .syscalls import EXIT_LOST, START_UNKNOWN, UNFINISHED, pair_syscalls


def _pid_map(rec: Records, tid: np.ndarray, pid: np.ndarray) -> dict[int, int]:
    known = pid >= 0
    # the last pid each thread was seen with (one entry per thread, not per row): found by
    # hashing (the rows are millions, the threads few), then in tid order
    tid_k, pid_k = tid[known], pid[known]
    last = ~pd.Index(tid_k).duplicated(keep="last")
    tids, pids = tid_k[last], pid_k[last]
    o = np.argsort(tids)
    out = dict(zip(tids[o].tolist(), pids[o].tolist(), strict=True))
    for _, kind, p, t, _extra in rec.task:
        if kind in ("comm", "fork", "exit") and p >= 0 and t >= 0:
            out.setdefault(t, p)
    return out


def _pids_of(tids: np.ndarray, pid_of: dict[int, int]) -> np.ndarray:
    if not pid_of:
        return np.full(len(tids), -1, np.int64)
    keys = np.fromiter(pid_of.keys(), np.int64, len(pid_of))
    vals = np.fromiter(pid_of.values(), np.int64, len(pid_of))
    o = np.argsort(keys)
    keys, vals = keys[o], vals[o]
    j = np.minimum(np.searchsorted(keys, tids), len(keys) - 1)
    return np.where(keys[j] == tids, vals[j], -1)


def _names(
    sys_names: np.ndarray, sys_code: np.ndarray, states: np.ndarray, state_code: np.ndarray
) -> pd.Categorical | np.ndarray:
    """The slices' name column (syscall names, then off-CPU states) from the registries'
    codes: the categorical make_table would make of the strings (the names present, sorted),
    built from the few distinct names instead of a million strings."""
    labels = np.concatenate([sys_names, states])
    code = np.concatenate([sys_code, len(sys_names) + state_code])
    if not len(code) or not all(isinstance(x, str) for x in labels):
        return labels[code] if len(code) else np.zeros(0, object)
    present = np.flatnonzero(np.bincount(code, minlength=len(labels)))
    distinct = list(dict.fromkeys(labels[present].tolist()))
    cat = pd.Categorical(pd.array(distinct, dtype="string"))
    lut = np.full(len(labels), -1, np.int64)
    where = dict(zip(distinct, cat.codes.tolist(), strict=True))
    lut[present] = [where[x] for x in labels[present].tolist()]
    return pd.Categorical.from_codes(lut[code], dtype=cat.dtype)


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
    sys = rec.take_side("sys")  # only the pairing reads it: it frees the columns as it goes
    if (sys["raw"] == 1).any() and (sys["raw"] == 0).any():
        named = sys["raw"] == 0
        meta.count("perf_named_syscall_event", int(named.sum()))
        sys = {k: v[~named] for k, v in sys.items()}
    restart = reg.syscalls.get("restart_syscall")
    thread_end = {t: int(time[row]) for row, kind, _, t, _x in rec.task if kind == "exit"}
    born = {t for _, kind, _, t, _x in rec.task if kind == "fork"}
    sc = pair_syscalls(sys, tid, time, first_time, thread_end, last_time, born, restart)
    if sc.clone_children:
        meta.count("perf_clone_child_exit", sc.clone_children)
    exits_lost = int(((sc.flags & EXIT_LOST) != 0).sum())
    if exits_lost:
        meta.extra["syscall_exits_lost"] = exits_lost
        meta.warn(
            f"{exits_lost} syscall(s) whose sys_exit perf lost: kept with end_unknown, "
            "bounded by the thread's next syscall"
        )
    if sc.dropped_exits:
        meta.count("perf_exit_without_enter", sc.dropped_exits)
    if sc.duplicates:
        meta.count("perf_duplicate_syscall_event", sc.duplicates)
    lost = sorted((int(time[row]), x["lost"]) for row, kind, _, _, x in rec.task if kind == "lost")
    lost_rows = np.array([row for row, kind, _, _, _x in rec.task if kind == "lost"], np.int64)
    windows = lost_windows(time, rec.column("cpu"), lost_rows)
    if lost:  # [last record kept, LOST record] per loss, merged: where data may be missing
        meta.extra["lost_windows_ns"] = [[int(a), int(b)] for a, b in zip(*windows, strict=True)][
            :100
        ]
    lost_inside = overlaps(sc.start, sc.end, *windows)

    oc = off_cpu(rec.side("switch"), rec.side("wake"), tid, time, last_time)
    states = np.array(reg.states.values or [""], dtype=object)
    sys_names = np.array(reg.syscalls.values or [""], dtype=object)

    # --- slices: syscalls, then off-CPU intervals
    n_sc, n_oc = len(sc.tid), len(oc.tid)
    state_names = states[oc.state] if n_oc else np.zeros(0, object)
    runq = np.where(
        np.isin(state_names, ["R", "R+"]),
        oc.end - oc.start,
        np.where(oc.wakeup >= 0, oc.end - oc.wakeup, -1),
    )
    unfinished = (sc.flags & (UNFINISHED | EXIT_LOST)) != 0
    sc_stack = np.where(sc.enter_row >= 0, stack[np.maximum(sc.enter_row, 0)], 0)
    s_tid = np.concatenate([sc.tid, oc.tid])
    no_sc = np.zeros(n_oc, bool)  # the off-CPU rows of a syscall-only flag

    def on_syscalls(values: np.ndarray, null: np.ndarray) -> pd.arrays.IntegerArray:
        return pd.arrays.IntegerArray(
            np.concatenate([values, np.zeros(n_oc, np.int64)]).astype(np.int64),
            np.concatenate([null, np.ones(n_oc, bool)]),
        )

    state_cats = list(dict.fromkeys(reg.states.values))
    # codes, not a million-element object array for pandas to hash (syscall rows: none)
    state_code = np.array([state_cats.index(v) if v in state_cats else -1 for v in states], int)
    state_cat = pd.Categorical.from_codes(
        np.concatenate([np.full(n_sc, -1), state_code[oc.state] if n_oc else np.zeros(0, int)]),
        categories=state_cats,
    )
    end_by = pd.Categorical.from_codes(
        np.concatenate([np.full(n_sc, -1, np.int8), oc.end_kind.astype(np.int8)]),
        categories=list(END_NAMES),
    )
    slices = make_table(
        "slices",
        source=source,
        pid=_pids_of(s_tid, pid_of),
        tid=s_tid,
        ts=np.concatenate([sc.start, oc.start]),
        dur=np.maximum(np.concatenate([sc.end - sc.start, oc.end - oc.start]), 0),
        kind=pd.Categorical.from_codes(
            np.concatenate([np.zeros(n_sc, np.int8), np.ones(n_oc, np.int8)]),
            categories=["os.syscall", "os.offcpu"],
        ),
        name=_names(sys_names, sc.name, states, oc.state if n_oc else np.zeros(0, np.int64)),
        stack_id=_stack_col(np.concatenate([sc_stack, stack[oc.out_row]])),
        fd=on_syscalls(sc.fd, sc.fd < 0),
        ret=on_syscalls(sc.ret, unfinished),
        nr=on_syscalls(sc.nr, sc.nr < 0),
        restarts=on_syscalls(sc.restarts, np.zeros(n_sc, bool)),
        state=state_cat,
        runq_ns=pd.arrays.IntegerArray(
            np.concatenate([np.zeros(n_sc, np.int64), np.maximum(runq, 0)]).astype(np.int64),
            np.concatenate([np.ones(n_sc, bool), runq < 0]),
        ),
        end_by=end_by,
        start_unknown=np.concatenate([(sc.flags & START_UNKNOWN) != 0, no_sc]),
        end_unknown=np.concatenate([unfinished, oc.end_kind == END_TRACE]),
        lost_inside=np.concatenate([lost_inside, no_sc]),
    )
    unknown_runq = int((runq < 0).sum())
    if unknown_runq:
        meta.extra["runq_unknown"] = unknown_runq
    ends = np.bincount(oc.end_kind, minlength=3)
    meta.extra["offcpu_end"] = {END_NAMES[i]: int(ends[i]) for i in range(3)}
    meta.extra["syscall_restarts_merged"] = int(sc.restarts.sum())

    # --- instants, and the rare details of some of them in the args table
    instants, args = _instants(rec, reg, tid, time, comm, stack, pid_of, source)

    # --- threads: every thread seen, named by its last comm
    all_tids = tid  # threads that emitted records (wakeup targets elsewhere are instants)
    order = pair_order(tid, time)
    last_of_tid = order[np.append(tid[order][1:] != tid[order][:-1], True)]
    # perf prints ":TID" for a thread whose COMM it never saw (lost, or before the recording)
    name_of = {
        int(t): reg.comms.values[c] if c >= 0 and reg.comms.values[c] != f":{t}" else None
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
        keep = list(only_pids)
        kept, args = keep_rows(
            {"slices": slices, "threads": threads, "instants": instants},
            args,
            {
                "slices": slices["pid"].isin(keep).to_numpy(),
                "threads": threads["pid"].isin(keep).to_numpy(),
                "instants": instants["pid"].isin(keep).to_numpy(),
            },
        )
        slices, threads, instants = kept["slices"], kept["threads"], kept["instants"]
        meta.extra["only_pids"] = sorted(keep)

    _account(meta, rec, reg, lost, header, pid_of, unknown_runq, len(oc.tid))
    out = SourceTables(
        meta=meta,
        clock=clock_of(header, rec.frac_digits),
        threads=threads,
        slices=slices,
        instants=instants,
        stacks=_stacks_table(reg, source),
        args=args,
    )
    return out


#: task records -> instant kind
_TASK_KINDS = {
    "comm": "os.comm",
    "fork": "os.fork",
    "exit": "os.exit",
    "lost": "perf.lost",
    "switch": "perf.switch",
}


def _wake_names(wake: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Which tracepoint each wakeup came from (readers that do not say: "wakeup")."""
    how = wake.get("how")
    if how is None or len(how) != n:
        return np.full(n, "wakeup", object)
    return np.asarray(WAKE_HOW, object)[how.astype(np.int64)]


def _instants(
    rec, reg, tid, time, comm, stack, pid_of, source
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Wakeups (vectorised: there are many), task records and other events (few), then
    signals (vectorised; last, so the args rows of the task records and other events keep
    their places)."""
    wake = rec.side("wake")
    o = np.argsort(wake["row"], kind="stable")  # record order, whatever order a reader used
    wake = {k: (v[o] if len(v) == len(o) else v) for k, v in wake.items()}
    w_row = wake["row"]
    w_tid = wake["pid"]  # the woken thread: the instant belongs to it
    parts = [
        dict(
            tid=w_tid,
            ts=time[w_row],
            kind=np.full(len(w_row), "os.wakeup", object),
            name=_wake_names(wake, len(w_row)),
            stack_id=stack[w_row].astype(np.int64),  # the waker's callchain as it woke tid
            waker_tid=tid[w_row],
            waker_pid=_pids_of(tid[w_row], pid_of),
            cpu=wake["cpu"],
        )
    ]
    rows: dict[str, list] = {
        k: []
        for k in ("tid", "ts", "kind", "name", "stack_id", "parent_pid", "parent_tid", "count")
    }
    details: list[dict] = []
    for row, kind, _pid, t, extra in rec.task:
        rows["tid"].append(t if t >= 0 else int(tid[row]))
        rows["ts"].append(int(time[row]))
        rows["kind"].append(_TASK_KINDS.get(kind, "perf.record"))
        rows["name"].append(extra.get("comm") or extra.get("record") or kind)
        rows["stack_id"].append(0)
        rows["parent_pid"].append(extra.get("parent_pid", -1))
        rows["parent_tid"].append(extra.get("parent_tid", -1))
        rows["count"].append(extra.get("lost", -1))
        details.append(
            {k: v for k, v in extra.items() if k in ("direction", "record", "text")}
            | ({"exec": True} if extra.get("exec") else {})
        )
    other = np.concatenate(rec.other_rows) if rec.other_rows else np.zeros(0, np.int64)
    ev = rec.column("event")
    for row in other.tolist():
        rows["tid"].append(int(tid[row]))
        rows["ts"].append(int(time[row]))
        rows["kind"].append("perf.event")
        rows["name"].append(reg.events.values[ev[row]])
        rows["stack_id"].append(int(stack[row]))
        for k in ("parent_pid", "parent_tid", "count"):
            rows[k].append(-1)
        details.append({"comm": reg.comms.values[comm[row]] if comm[row] >= 0 else None})
    parts.append(
        {
            k: np.asarray(v, dtype=object if k in ("kind", "name") else np.int64)
            for k, v in rows.items()
        }
    )
    signals = _signal_part(rec, tid, time, stack)
    parts.append(signals)

    def col(name: str, n: int, part: dict) -> np.ndarray:
        return part.get(name, np.full(n, -1, np.int64))

    lens = [len(p["ts"]) for p in parts]
    cols = {}
    for name in (
        "tid",
        "ts",
        "kind",
        "name",
        "stack_id",
        "waker_tid",
        "waker_pid",
        "cpu",
        "parent_pid",
        "parent_tid",
        "count",
    ):
        cols[name] = np.concatenate([col(name, n, p) for n, p in zip(lens, parts, strict=True)])
    nullable = {
        k: cols[k] < 0
        for k in ("stack_id", "waker_tid", "waker_pid", "cpu", "parent_pid", "parent_tid", "count")
    }
    nullable["stack_id"] = cols["stack_id"] <= 0
    instants = make_table(
        "instants",
        source=source,
        pid=_pids_of(cols["tid"], pid_of),
        tid=cols["tid"],
        ts=cols["ts"],
        kind=pd.Categorical(cols["kind"]),
        name=cols["name"],
        **{
            k: pd.arrays.IntegerArray(cols[k].astype(np.int64), null)
            for k, null in nullable.items()
        },
        **_signal_columns(signals, lens[0] + lens[1]),
    )
    args = args_table(source, "instants", range(lens[0], lens[0] + len(details)), details)
    return instants, args


def _signal_part(
    rec: Records, tid: np.ndarray, time: np.ndarray, stack: np.ndarray
) -> dict[str, np.ndarray]:
    """The os.signal instants, in record order (the readers append their side tables in
    different orders). Each belongs to the thread that receives the signal: generate fires
    in the sender's context and names the receiver in its payload, deliver fires in the
    receiver's own; the sender (generate's record thread) is kept as sender_tid."""
    sg = rec.side("signal")
    o = np.argsort(sg["row"], kind="stable")
    sg = {k: v[o].astype(np.int64) for k, v in sg.items()}
    row, generate = sg["row"], sg["how"] == SIGNAL_HOW.index("generate")
    uniq, inv = np.unique(sg["sig"], return_inverse=True)
    names = np.array([signal_name(v) for v in uniq.tolist()] + [""], object)
    return dict(
        tid=np.where(generate, sg["target"], tid[row]),
        ts=time[row],
        kind=np.full(len(row), "os.signal", object),
        name=names[inv.reshape(-1)] if len(row) else np.zeros(0, object),
        stack_id=stack[row].astype(np.int64),
        how=sg["how"],
        sig=sg["sig"],
        code=sg["code"],
        res=np.where(generate, sg["res"], NO_RESULT),
        sender=tid[row].astype(np.int64),
        generate=generate,
    )


def _signal_columns(sg: dict[str, np.ndarray], before: int) -> dict[str, object]:
    """The os.signal typed columns over all instants, the signals being the last rows: NA
    on the *before* rows of other kinds, and where a signal has no such value (deliver's
    result and sender; a result the payload did not carry)."""
    na = np.ones(before, bool)

    def ints(values: np.ndarray, null: np.ndarray) -> pd.arrays.IntegerArray:
        return pd.arrays.IntegerArray(
            np.concatenate([np.zeros(before, np.int64), values]).astype(np.int64),
            np.concatenate([na, null]),
        )

    always = np.zeros(len(sg["sig"]), bool)  # every signal has one
    how = np.asarray(SIGNAL_HOW, object)[sg["how"]] if len(sg["how"]) else np.zeros(0, object)
    return dict(
        sig=ints(sg["sig"], always),
        signal=np.concatenate([np.full(before, None, object), how]),
        sig_code=ints(sg["code"], always),
        sig_result=ints(sg["res"], sg["res"] == NO_RESULT),
        sender_tid=ints(sg["sender"], ~sg["generate"]),
    )


def _stacks_table(reg: Registries, source: str) -> pd.DataFrame:
    return stacks_table_of(source, reg.stacks.frames, _frame_fields)


def _frame_fields(frame: tuple) -> tuple:
    """A perf frame (ip, function, dso, kind) as the stacks table's six fields."""
    ip, func, dso, kind = frame
    return (func, None, None, dso, kind, ip)


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
        meta.count("perf_unparsable_line", rec.garbage)
        meta.warn(
            f"{rec.garbage} line(s) that are not perf script records were skipped "
            f"(first at line {', '.join(map(str, rec.garbage_lines))})"
        )
    if reg.stacks.bad_frame_lines:
        meta.count("perf_unparsable_frame_line", reg.stacks.bad_frame_lines)
    if lost:
        total = sum(n for _, n in lost)
        meta.extra["lost_events"] = total
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
            "no sched_waking/sched_wakeup seen for blocked threads (recorded "
            "without -a?): runqueue delay unknown"
        )
    if not pid_of:
        meta.warn("no pids in the text (print with -F +pid or --show-task-events): pid -1")
