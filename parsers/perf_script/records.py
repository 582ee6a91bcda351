"""Record lines -> the per-record columns (``perf_records.columns``), payloads -> numbers.

Every record line becomes one row of ``Records`` (thread, time, event, comm, stack). Payloads
that matter are decoded with one Arrow regex per event type over just that type's rows:

    raw_syscalls:sys_enter   NR 45 (5, 7f620c7a5fd0, 64, 0, 0, 0)     nr, first arg (hex)
    raw_syscalls:sys_exit    NR 45 = -512                               nr, return value
    syscalls:sys_enter_X     fd: 0x00000005, ubuf: 0x7f62...             fd when there is one
    syscalls:sys_exit_X      0xfffffffffffffffe                          return (signed 64-bit)
    sched:sched_switch       prev_comm=recv worker prev_pid=3767 ... prev_state=S ==> next_pid=..
    sched:sched_wakeup[_new] / sched:sched_waking   comm=... pid=3767 prio=120 target_cpu=001
    signal:signal_generate   sig=13 errno=0 code=0 comm=yes pid=3937 grp=0 res=0
    signal:signal_deliver    sig=13 errno=0 code=128 sa_handler=45d2a0 sa_flags=1c000004
    PERF_RECORD_COMM / FORK / EXIT / LOST / SWITCH   (--show-task-events / -lost- / -switch-)
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..columns import Interner
from ..perf_records.columns import (
    FD_SYSCALLS,
    NO_RESULT,
    SIGNAL_EVENTS,
    SYS_ENTER,
    SYS_EXIT,
    WAKE_EVENTS,
    Records,
    Registries,
    comm_name,
)
from .lines import Chunk

# Numbers are bounded to what fits int64 (a corrupt 30-digit value is a bad line, counted,
# not an overflow): ids 10 digits, values 18, hex 16.
RAW_ENTER = r"^NR (?P<nr>-?\d{1,10}) \((?P<a0>[0-9a-fA-F]{1,16})"
RAW_EXIT = r"^NR (?P<nr>-?\d{1,10}) = (?P<ret>-?\d{1,19})(?:\s|$)"
NAMED_FD = r"(?:^|, )fd: 0x(?P<fd>[0-9a-fA-F]{1,16})"
NAMED_RET = r"^0x(?P<ret>[0-9a-fA-F]{1,16})\s*$"
SWITCH = (
    r"prev_comm=(?P<pcomm>.*) prev_pid=(?P<ppid>-?\d{1,10}) prev_prio=-?\d+ "
    r"prev_state=(?P<state>\S+) ==> next_comm=(?P<ncomm>.*) next_pid=(?P<npid>-?\d{1,10})"
)
WAKEUP = r"comm=(?P<comm>.*) pid=(?P<pid>-?\d{1,10}) prio=-?\d+(?:.* target_cpu=(?P<cpu>\d{1,6}))?"
_SIG_HEAD = r"^sig=(?P<sig>-?\d{1,10}) errno=-?\d{1,10} code=(?P<code>-?\d{1,10})"
#: comm may hold spaces (and "pid="): greedy, up to the last pid= the fixed tail follows;
#: kernels before 3.5 printed no grp / res
SIGNAL_GENERATE = (
    _SIG_HEAD + r" comm=.* pid=(?P<pid>-?\d{1,10})"
    r"(?: grp=-?\d{1,10} res=(?P<res>-?\d{1,10}))?\s*$"
)
SIGNAL_DELIVER = _SIG_HEAD + r"(?:\s|$)"  # then sa_handler, sa_flags: not read
SIGNAL_PATTERNS = (SIGNAL_GENERATE, SIGNAL_DELIVER)  # in SIGNAL_EVENTS order

_ID = r"-?\d{1,10}"
_COMM_REC = re.compile(rf"^(?P<exec> exec)?: (?P<comm>.*):(?P<pid>{_ID})/(?P<tid>{_ID})$")
_TASK_REC = re.compile(rf"^\((?P<pid>{_ID}):(?P<tid>{_ID})\):\((?P<ppid>{_ID}):(?P<ptid>{_ID})\)")
_LOST_REC = re.compile(r"lost (?P<n>\d{1,18})")


def codes_of(names: Interner[str], values: pa.Array, normal=None) -> np.ndarray:
    """Codes of a binary/string Arrow array (nulls -> -1), one dict lookup per distinct;
    *normal*: how a value is held (e.g. ``comm_name``), applied per distinct value."""
    enc = pc.dictionary_encode(values)
    text = [
        v.decode("utf-8", "replace") if isinstance(v, bytes) else v
        for v in enc.dictionary.to_pylist()
    ]
    lut = np.array(
        [names.id(normal(v) if normal is not None and v is not None else v) for v in text] + [-1],
        np.int32,
    )
    idx = enc.indices.to_numpy(zero_copy_only=False)
    return (
        lut[np.where(np.isnan(idx), -1, idx).astype(np.int64)]
        if idx.dtype.kind == "f"
        else lut[idx]
    )


def _text(col: pa.Array) -> pa.Array:
    """Binary -> text; bytes that are not UTF-8 (a corrupt or foreign comm) are kept, with
    replacement characters, instead of failing the chunk."""
    try:
        return pc.cast(col, pa.string())
    except pa.ArrowInvalid:
        return pa.array(
            [None if v is None else v.decode("utf-8", "replace") for v in col.to_pylist()],
            pa.string(),
        )


def _ints(col: pa.Array, missing: int = -1) -> np.ndarray:
    """Decimal text -> int64; empty, null or (in damaged text) out of int64's range ->
    *missing*. perf prints syscall returns as signed 64-bit, up to 19 digits."""
    s = pc.cast(col, pa.string())
    s = pc.if_else(pc.equal(pc.utf8_length(s), 0), pa.scalar(None, pa.string()), s)
    try:
        return pc.fill_null(pc.cast(s, pa.int64()), missing).to_numpy()
    except pa.ArrowInvalid:  # a value past int64: only in damaged text, so rare and slow
        lo, hi = -(1 << 63), (1 << 63) - 1
        return np.array(
            [missing if v is None or not lo <= int(v) <= hi else int(v) for v in s.to_pylist()],
            np.int64,
        )


#: byte -> its value as a hex digit (the regexes let only hex digits through)
_HEX_DIGIT = np.zeros(256, np.uint64)
_HEX_DIGIT[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint64)
_HEX_DIGIT[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16, dtype=np.uint64)


def _hex(col: pa.Array) -> np.ndarray:
    """Hex text (the regexes allow 1-16 hex digits) -> int64, two's complement for 64-bit
    values; null or empty -> -1. Vectorised: every value left-padded to 16 digits, then 16
    shift-and-or steps over the whole column (a Python int() per value cost 0.2 s per
    million)."""
    n = len(col)
    if not n:
        return np.zeros(0, np.int64)
    s = pc.cast(col, pa.string())
    empty = pc.fill_null(pc.equal(pc.utf8_length(s), 0), True).to_numpy(zero_copy_only=False)
    padded = pc.utf8_lpad(pc.fill_null(s, ""), width=16, padding="0")
    padded = pa.concat_arrays([padded])  # offsets from 0: the digits are one n x 16 block
    data = np.frombuffer(padded.buffers()[2], np.uint8, count=16 * n).reshape(n, 16)
    digits = _HEX_DIGIT[data]
    value = np.zeros(n, np.uint64)
    for k in range(16):
        value = (value << np.uint64(4)) | digits[:, k]
    out = value.view(np.int64)
    out[empty] = -1
    return out


def add_chunk(rec: Records, reg: Registries, chunk: Chunk, nr_names: dict[int, str]) -> None:
    f = chunk.fields
    matched = pc.is_valid(f).to_numpy(zero_copy_only=False)
    if not matched.all():
        bad = np.flatnonzero(~matched)
        rec.garbage += len(bad)
        rec.garbage_lines.extend(
            chunk.line_numbers[bad[: 5 - len(rec.garbage_lines)]].tolist()
            if len(rec.garbage_lines) < 5
            else []
        )
        keep = pa.array(np.flatnonzero(matched))
        f = f.take(keep)
        cc_idx = chunk.callchains.indices.take(keep)
        lines = chunk.line_numbers[matched]
    else:
        cc_idx = chunk.callchains.indices
        lines = chunk.line_numbers
    n = len(f)
    if not n:
        return
    base = rec.rows
    rec.rows += n
    g = {name: f.field(name) for name in f.type.names}
    frac = pc.cast(g["frac"], pa.string())
    digits = pc.utf8_length(frac).to_numpy()
    rec.frac_digits.update(np.unique(digits).tolist())
    scale = 10 ** (9 - np.clip(digits, 0, 9))
    t = _ints(g["sec"], 0) * 1_000_000_000 + _ints(g["frac"], 0) * scale
    rec.position.append(lines.astype(np.int64))
    rec.tid.append(_ints(g["tid"]))
    rec.pid.append(_ints(g["pid"]))
    rec.cpu.append(_ints(g["cpu"]))
    rec.time.append(t.astype(np.int64))
    rec.comm.append(codes_of(reg.comms, _text(g["comm"]), comm_name))

    # callchains: each distinct block once
    blocks = chunk.callchains.dictionary.to_pylist()
    lut = np.array([reg.stacks.intern_block(b) for b in blocks] + [0], np.int32)
    idx = cc_idx.to_numpy(zero_copy_only=False)
    rec.stack.append(lut[idx.astype(np.int64)])

    # events: PERF_RECORD_* side-band records get their record name as the event
    is_rec = pc.not_equal(pc.utf8_length(pc.cast(g["rec"], pa.string())), 0)
    event = pc.if_else(is_rec, g["rec"], g["event"])
    ev = codes_of(reg.events, event)
    rec.event.append(ev)
    names = reg.events.values
    rows = np.arange(base, base + n)

    def rows_of(pred) -> np.ndarray:
        codes = [c for c, name in enumerate(names) if pred(name)]
        return np.flatnonzero(np.isin(ev, codes)) if codes else np.zeros(0, np.int64)

    payload = g["payload"]
    handled = np.zeros(n, bool)

    def sub(idx: np.ndarray, pattern: str) -> pa.StructArray:
        return pc.extract_regex(payload.take(pa.array(idx)), pattern)

    def decoded(idx: np.ndarray, pattern: str) -> tuple[np.ndarray, pa.StructArray]:
        """The rows *idx* whose payload matches, and its groups; the others are counted
        (and stay "other events")."""
        x = sub(idx, pattern)
        ok = pc.is_valid(x).to_numpy(zero_copy_only=False)
        rec.garbage += int((~ok).sum())
        idx, x = idx[ok], x.filter(pa.array(ok))
        handled[idx] = True
        return idx, x

    # raw_syscalls
    for direction, pattern, event_name in (
        (SYS_ENTER, RAW_ENTER, "raw_syscalls:sys_enter"),
        (SYS_EXIT, RAW_EXIT, "raw_syscalls:sys_exit"),
    ):
        idx = rows_of(lambda s, e=event_name: s == e)
        if not len(idx):
            continue
        x = sub(idx, pattern)
        ok = pc.is_valid(x).to_numpy(zero_copy_only=False)
        idx, x = idx[ok], x.filter(pa.array(ok))
        handled[idx] = True
        rec.garbage += int((~ok).sum())
        nr = _ints(x.field("nr"))
        uniq, inv = np.unique(nr, return_inverse=True)
        name = np.array(
            [reg.syscalls.id(nr_names.get(v, f"syscall_{v}")) for v in uniq.tolist()], np.int32
        )[inv.reshape(-1)]
        if direction == SYS_ENTER:
            a0 = _hex(x.field("a0"))
            fd_ok = np.isin(name, [reg.syscalls.id(s) for s in FD_SYSCALLS])
            fd = np.where(fd_ok, a0, -1)
            ret = np.zeros(len(idx), np.int64)
        else:
            fd = np.full(len(idx), -1, np.int64)
            ret = _ints(x.field("ret"), 0)
        _append(
            rec.sys,
            row=rows[idx],
            dir=np.full(len(idx), direction, np.int8),
            raw=np.ones(len(idx), np.int8),
            nr=nr,
            name=name,
            fd=fd,
            ret=ret,
        )

    # syscalls:sys_enter_NAME / sys_exit_NAME
    for direction, prefix in ((SYS_ENTER, "syscalls:sys_enter_"), (SYS_EXIT, "syscalls:sys_exit_")):
        idx = rows_of(lambda s, p=prefix: s.startswith(p))
        if not len(idx):
            continue
        handled[idx] = True
        sc_name = np.array(
            [reg.syscalls.id(names[e][len(prefix) :]) for e in ev[idx].tolist()], np.int32
        )
        if direction == SYS_ENTER:
            fd = _hex(sub(idx, NAMED_FD).field("fd"))
            ret = np.zeros(len(idx), np.int64)
        else:
            ret = _hex(sub(idx, NAMED_RET).field("ret"))
            fd = np.full(len(idx), -1, np.int64)
        _append(
            rec.sys,
            row=rows[idx],
            dir=np.full(len(idx), direction, np.int8),
            raw=np.zeros(len(idx), np.int8),
            nr=np.full(len(idx), -1, np.int64),
            name=sc_name,
            fd=fd,
            ret=ret,
        )

    idx = rows_of(lambda s: s == "sched:sched_switch")
    if len(idx):
        idx, x = decoded(idx, SWITCH)
        _append(
            rec.switch,
            row=rows[idx],
            prev=_ints(x.field("ppid")),
            state=codes_of(reg.states, x.field("state")),
            next=_ints(x.field("npid")),
        )

    for how, tracepoint in enumerate(WAKE_EVENTS):
        idx = rows_of(lambda s, tp=tracepoint: s == tp)
        if not len(idx):
            continue
        idx, x = decoded(idx, WAKEUP)
        _append(
            rec.wake,
            row=rows[idx],
            pid=_ints(x.field("pid")),
            cpu=_ints(x.field("cpu")),
            how=np.full(len(idx), how, np.int8),
        )

    for how, tracepoint in enumerate(SIGNAL_EVENTS):
        idx = rows_of(lambda s, tp=tracepoint: s == tp)
        if len(idx):
            idx, x = decoded(idx, SIGNAL_PATTERNS[how])
            _append(rec.signal, row=rows[idx], **signal_fields(x, how))

    idx = np.flatnonzero(is_rec.to_numpy(zero_copy_only=False))
    if len(idx):
        handled[idx] = True
        rest = g["recrest"].take(pa.array(idx)).to_pylist()
        for i, kind_code, text in zip(idx.tolist(), ev[idx].tolist(), rest, strict=True):
            _task_record(rec, rows[i], names[kind_code], text.decode("utf-8", "replace"))
    rec.other_rows.append(rows[~handled])


def signal_fields(x: pa.StructArray, how: int) -> dict[str, np.ndarray]:
    """The ``signal`` side table's fields of payloads matched by ``SIGNAL_PATTERNS[how]``:
    the receiver (generate's pid, -1 for deliver: its own thread) and the result,
    NO_RESULT where there is none (deliver; a generate printed without res)."""
    n = len(x)
    generate = SIGNAL_EVENTS[how] == "signal:signal_generate"
    return {
        "how": np.full(n, how, np.int8),
        "sig": _ints(x.field("sig")),
        "code": _ints(x.field("code")),
        "res": _ints(x.field("res"), NO_RESULT) if generate else np.full(n, NO_RESULT),
        "target": _ints(x.field("pid")) if generate else np.full(n, -1, np.int64),
    }


def _append(table: dict[str, list[np.ndarray]], **cols: np.ndarray) -> None:
    for k, v in cols.items():
        table[k].append(np.asarray(v))


def _task_record(rec: Records, row: int, kind: str, text: str) -> None:
    if kind == "PERF_RECORD_COMM":
        m = _COMM_REC.match(text)
        if m:
            rec.task.append(
                (
                    row,
                    "comm",
                    int(m.group("pid")),
                    int(m.group("tid")),
                    {"comm": m.group("comm"), "exec": bool(m.group("exec"))},
                )
            )
            return
    elif kind in ("PERF_RECORD_FORK", "PERF_RECORD_EXIT"):
        m = _TASK_REC.match(text)
        if m:
            rec.task.append(
                (
                    row,
                    kind[12:].lower(),
                    int(m.group("pid")),
                    int(m.group("tid")),
                    {"parent_pid": int(m.group("ppid")), "parent_tid": int(m.group("ptid"))},
                )
            )
            return
    elif kind == "PERF_RECORD_LOST":
        m = _LOST_REC.search(text)
        if m:
            rec.task.append((row, "lost", -1, -1, {"lost": int(m.group("n"))}))
            return
    elif kind == "PERF_RECORD_SWITCH":
        rec.task.append((row, "switch", -1, -1, {"direction": text.strip()}))
        return
    rec.task.append((row, "record", -1, -1, {"record": kind, "text": text.strip()}))
