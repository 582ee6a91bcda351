"""Decoded records -> the per-record columns (``perf_records.columns``) -> ``build_tables``.

The canonical tables are built by the one builder both perf readers use
(``parsers/perf_records/tables.py:build_tables``), so both paths produce the same tables by
construction, once the per-record columns are the same. This module fills them with the
records ``perf script --show-task-events --show-lost-events`` would print:

* rows: the records ``perf script`` prints (samples, COMM, FORK, EXIT, LOST), in its
  delivery order (:mod:`.order`), with the pid/tid/cpu/time it prints (a side-band record's
  sample_id_all trailer: time 0 and tid 0 for records perf synthesised) and the comm it prints
  (the thread's comm as of that record, :mod:`.maps`);
* ``sys`` / ``switch`` / ``wake`` / ``signal``: the tracepoint fields, read from the payloads at the
  offsets of the file's format texts, with the conventions ``perf_records.columns`` states
  (syscall names from the arch's table, ``fd`` from the first argument of fd syscalls,
  ``prev_state`` letters as perf prints them);
* ``task``: (row, kind, pid, tid, extra) for comm / fork / exit / lost;
* stacks: the callchains of the rows the tables read (syscall entries, switch-outs, wakeups,
  signals, other events: not syscall exits), interned in row order; with ``all_stacks``
  every printed callchain, so that stack ids are numbered exactly as the text parser numbers
  them. In DWARF mode the user part comes from our unwinder. (The tests compare every
  slice's and instant's stack with the text path's, so a new use of another row's stack in
  build_tables shows.)

``rec.position`` holds each row's byte offset in the file.
"""

from __future__ import annotations

import platform
import time as _time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..perf_records.columns import FD_SYSCALLS, SYS_ENTER, Records, Registries, comm_name
from ..perf_records.header import PerfHeader
from ..perf_records.syscall_tables import TABLES
from . import file as F
from .dsos import dso_losses
from .maps import Timeline
from .order import delivery_order
from .records import (
    K_COMM,
    K_EXIT,
    K_FORK,
    K_LOST,
    K_LOST_SAMPLES,
    K_MMAP,
    K_SAMPLE,
    PRINTED_KINDS,
    Decoded,
)
from .resolve import Resolver
from .stops import classify, splice
from .symbols import Symbolizer, kernel_symbols
from .tracing import EventFormat, state_names
from .unwind import Unwinder, Unwound, regs_by_dwarf

SIDE_EVENT = {
    K_COMM: "PERF_RECORD_COMM",
    K_FORK: "PERF_RECORD_FORK",
    K_EXIT: "PERF_RECORD_EXIT",
    K_LOST: "PERF_RECORD_LOST",
}
TASK_KIND = {K_COMM: "comm", K_FORK: "fork", K_EXIT: "exit", K_LOST: "lost"}


@dataclass
class Assembly:
    """What build_tables needs, plus what the decoding learnt on the way."""

    rec: Records
    reg: Registries
    timings: dict[str, float] = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: where the recorded DSO paths are looked up first (``perf --symfs``)
    symfs: str | None = None
    #: losses ledger counts, {(stat, key): n}, for the reader's SourceMeta.count
    counts: dict[tuple[str, str | None], int] = field(default_factory=dict)


def header_of(pf: F.PerfFile) -> PerfHeader:
    """The ``perf script --header`` facts the text path reads, from the feature sections."""
    h = PerfHeader(present=True)
    for key, feat in (
        ("hostname", "HOSTNAME"),
        ("os release", "OSRELEASE"),
        ("perf version", "VERSION"),
        ("arch", "ARCH"),
    ):
        v = pf.feature_string(feat)
        if v is not None:
            h.values[key] = v
    cmd = pf.feature_strings("CMDLINE")
    if cmd is not None:
        h.values["cmdline"] = " ".join(cmd)
    cd = pf.clock_data()
    if cd is not None:
        clockid, tod_ns, clk_ns = cd
        h.clock_number = clockid
        h.clock_name = F.CLOCK_NAMES.get(clockid, f"clockid{clockid}")
        h.values["clockid"] = f"{h.clock_name} ({clockid})"
        if h.clock_name == "monotonic":
            # perf prints the TOD side with microseconds; the text path reads that
            h.reference = {"mono_ns": clk_ns, "wall_ns": tod_ns // 1000 * 1000}
    h.missing = pf.missing_features()
    return h


def assemble(
    pf: F.PerfFile,
    dec: Decoded,
    formats: dict[int, EventFormat],
    header: PerfHeader,
    all_stacks: bool = False,
    symfs: str | None = None,
) -> Assembly:
    """Rows in delivery order, side tables, task events and stacks (module docstring); the
    decoded columns are released as they are consumed. *symfs*: the directory the recorded
    DSO paths are looked up in first (a container's root, a capture's archive)."""
    t0 = _time.perf_counter()
    timings: dict[str, float] = {}
    rows_g, position, row_of = _delivery_rows(dec)
    timings["order"] = _time.perf_counter() - t0

    # --- maps and comms, replayed in delivery order
    t1 = _time.perf_counter()
    tl, side_of, pos_rows = _replay_maps(dec, rows_g, position)
    del position
    r_kind, r_tid, comm_tid = _row_threads(dec, rows_g, side_of)
    timings["replay"] = _time.perf_counter() - t1

    rec, reg = _row_columns(pf, dec, rows_g, r_kind, r_tid)
    rec.comm.append(tl.comm_codes(comm_tid, pos_rows, lambda c: reg.comms.id(comm_name(c))))
    del comm_tid

    # --- side tables
    _syscall_table(dec, header, row_of, rec, reg)
    _switch_table(dec, formats, row_of, rec, reg)
    _wake_table(dec, row_of, rec)
    _signal_table(dec, row_of, rec)
    del row_of
    other = _other_rows(rec, r_kind)
    rec.other_rows.append(other)
    rec.task.extend(_task_events(rows_g, r_kind, side_of))
    lost_samples = sum(s.fields["lost"] for s in dec.side if s.kind == K_LOST_SAMPLES)

    # --- stacks
    t2 = _time.perf_counter()
    out = Assembly(rec, reg, symfs=symfs)
    stack = _stacks(pf, dec, tl, rows_g, r_kind, pos_rows, other, rec, all_stacks, out)
    rec.stack.append(stack)
    timings["stacks"] = _time.perf_counter() - t2
    out.timings.update(timings)
    out.notes["lost_samples"] = lost_samples
    # the decoded columns are in Records now: give their memory back before build_tables
    for cols in (dec.rec, dec.sys, dec.switch, dec.wake, dec.signal):
        cols.clear()
    return out


def _delivery_rows(dec: Decoded) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kernel-record index of each printed row, in perf script's delivery order; each
    record's place in that order, -1 for invalid ones; each record's row, -1 for the ones
    not printed). The ordering columns are freed here as soon as they are consumed: every
    one of them has a row per record, and the file may hold tens of millions."""
    rc = dec.rec
    kind = rc.get("kind", np.int8)
    n = len(kind)
    tm = rc.get("time")  # kept in rc for the rows' times
    valid = rc.get("valid", bool)
    queued = rc.get("queued", bool)
    order = delivery_order(tm, queued, rc.get("seg"), dec.n_rounds)
    del queued
    for name in ("queued", "seg"):
        rc.parts.pop(name, None)  # consumed: every column freed as soon as it is (n rows)
    order = order[valid[order]]
    idx = np.int32 if n < 1 << 31 else np.int64  # record positions: half of int64
    position = np.full(n, -1, idx)
    position[order] = np.arange(len(order), dtype=idx)
    printed = valid & np.isin(kind, PRINTED_KINDS)
    rows_g = order[printed[order]]
    del order, printed, valid
    rc.parts.pop("valid", None)
    row_of = np.full(n, -1, idx)
    row_of[rows_g] = np.arange(len(rows_g), dtype=idx)
    return rows_g, position, row_of


def _replay_maps(
    dec: Decoded, rows_g: np.ndarray, position: np.ndarray
) -> tuple[Timeline, dict, np.ndarray]:
    """(the maps and comms replayed in delivery order, the side-band record of each record
    index that has one, each row's place in the delivery order). The caller frees
    *position* after this: the rows' places are all that is read of it later."""
    tl = Timeline()
    tl.replay(dec.side, {r.g: int(position[r.g]) for r in dec.side if position[r.g] >= 0})
    side_of = {r.g: r for r in dec.side}
    return tl, side_of, position[rows_g]


def _row_threads(
    dec: Decoded, rows_g: np.ndarray, side_of: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(each row's record kind, its tid, the tid whose comm it prints). A task event prints
    the comm of the thread it names, not of the trailer's tid. The per-record kind and tid
    columns are freed once the rows' copies are taken."""
    rc = dec.rec
    r_kind = rc.get("kind", np.int8)[rows_g]
    rc.parts.pop("kind", None)
    r_tid = rc.get("tid")[rows_g]
    rc.parts.pop("tid", None)
    comm_tid = r_tid.copy()
    for i in np.flatnonzero(r_kind != K_SAMPLE).tolist():
        s = side_of.get(int(rows_g[i]))
        if s is not None and "tid" in s.fields and s.kind != K_LOST:
            comm_tid[i] = s.fields["tid"]
    return r_kind, r_tid, comm_tid


def _row_columns(
    pf: F.PerfFile, dec: Decoded, rows_g: np.ndarray, r_kind: np.ndarray, r_tid: np.ndarray
) -> tuple[Records, Registries]:
    """The records' per-row columns but comm (offset, tid, pid, cpu, time, event), and the
    registries their codes index; each per-record column is freed once the rows' copy is
    taken, except what the stacks read later (pid, attr, chain; off when unwinding)."""
    rc = dec.rec
    rec = Records()
    reg = Registries()
    rec.rows = len(rows_g)
    rec.frac_digits = {9}
    # the text parser's dtypes: int64 numbers, int32 codes
    rec.position.append(rc.get("off")[rows_g])  # each row's byte offset in the file
    # thread, process and CPU stay int32 (as decoded) through the pairing, half the memory
    # of the text parser's int64; the tables are int64 all the same (make_table casts)
    rec.tid.append(r_tid)
    rec.pid.append(rc.get("pid")[rows_g])
    rec.cpu.append(rc.get("cpu")[rows_g])
    rec.time.append(rc.get("time")[rows_g])
    rc.parts.pop("time", None)
    rec.event.append(_event_codes(pf, dec, rows_g, r_kind, reg))
    for name in ("cpu", "misc") + (() if dec.dwarf else ("off",)):
        rc.parts.pop(name, None)  # consumed: free them early (unwinding reads "off")
    return rec, reg


def _event_codes(
    pf: F.PerfFile, dec: Decoded, rows_g: np.ndarray, r_kind: np.ndarray, reg: Registries
) -> np.ndarray:
    """Each row's event code: samples by attr name, side records by PERF_RECORD_* name,
    coded in order of first appearance as the text parser codes them."""
    names = [a.name for a in pf.attrs]
    key = np.where(
        r_kind == K_SAMPLE, dec.rec.get("attr", np.int16)[rows_g].astype(np.int64) + 8, r_kind
    )
    present = np.flatnonzero(np.bincount(key, minlength=len(names) + 8))
    first = [int(np.argmax(key == v)) for v in present.tolist()]
    lut = np.zeros(len(names) + 8, np.int32)
    for _, v in sorted(zip(first, present.tolist(), strict=True)):
        lut[v] = reg.events.id(names[v - 8] if v >= 8 else SIDE_EVENT[v])
    return lut[key]


def _syscall_table(
    dec: Decoded, header: PerfHeader, row_of: np.ndarray, rec: Records, reg: Registries
) -> None:
    """The ``sys`` side table of the printed rows: syscall names from the arch's table (raw
    tracepoints) or the tracepoint's name, ``fd`` only for fd syscalls' entries. The decoded
    columns are released as their sorted copies are made, and those when this returns."""
    arch = header.arch or platform.machine()
    nr_names = TABLES.get(arch, TABLES["x86_64"])
    sys, srow = _in_row_order(dec.sys, ("g", "dir", "raw", "nr", "named", "fd", "ret"), row_of)
    dec.sys.clear()
    if not len(srow):
        return
    is_raw = sys["raw"] == 1
    code = np.zeros(len(srow), np.int32)
    for v in np.unique(sys["nr"][is_raw]).tolist():
        code[is_raw & (sys["nr"] == v)] = reg.syscalls.id(nr_names.get(v, f"syscall_{v}"))
    for v in np.unique(sys["named"][~is_raw]).tolist():
        code[~is_raw & (sys["named"] == v)] = reg.syscalls.id(dec.named_syscalls[v])
    fd_codes = [reg.syscalls.get(s) for s in FD_SYSCALLS]
    fd_ok = np.isin(code, [c for c in fd_codes if c is not None])
    fd = np.where(is_raw & (sys["dir"] == SYS_ENTER), np.where(fd_ok, sys["fd"], -1), sys["fd"])
    rec.sys["row"].append(srow)
    rec.sys["dir"].append(sys["dir"].astype(np.int8))
    rec.sys["raw"].append(sys["raw"].astype(np.int8))
    rec.sys["nr"].append(sys["nr"])
    rec.sys["name"].append(code)
    rec.sys["fd"].append(fd)
    rec.sys["ret"].append(sys["ret"])
    # returning frees the unsorted and uncast columns: tens of MB


def _switch_table(
    dec: Decoded,
    formats: dict[int, EventFormat],
    row_of: np.ndarray,
    rec: Records,
    reg: Registries,
) -> None:
    """The ``switch`` side table of the printed rows, with ``prev_state`` letters as perf
    prints them (from the sched_switch format's print fmt); the decoded columns are
    released as their sorted copies are made, and those when this returns."""
    sw, swrow = _in_row_order(dec.switch, ("g", "prev", "state", "next"), row_of)
    dec.switch.clear()
    if not len(swrow):
        return
    fmt = next((f for f in formats.values() if f.full_name == "sched:sched_switch"), None)
    states = sw["state"]
    if fmt is not None:
        letters, problem = state_names(fmt, states)
        if problem:
            dec.warnings.append(problem)
    else:
        letters = {v: str(v) for v in np.unique(states).tolist()}
    scode = np.zeros(len(states), np.int32)
    for v in np.unique(states).tolist():
        scode[states == v] = reg.states.id(letters[v])
    rec.switch["row"].append(swrow)
    rec.switch["prev"].append(sw["prev"].astype(np.int64))
    rec.switch["state"].append(scode)
    rec.switch["next"].append(sw["next"].astype(np.int64))


def _wake_table(dec: Decoded, row_of: np.ndarray, rec: Records) -> None:
    """The ``wake`` side table of the printed rows; the decoded columns are released as
    their sorted copies are made, and those when this returns."""
    wk, wrow = _in_row_order(dec.wake, ("g", "pid", "cpu", "how"), row_of)
    dec.wake.clear()
    if not len(wrow):
        return
    rec.wake["row"].append(wrow)
    rec.wake["pid"].append(wk["pid"].astype(np.int64))
    rec.wake["cpu"].append(wk["cpu"].astype(np.int64))
    if "how" in rec.wake:  # which wakeup tracepoint, where the text path records it
        rec.wake["how"].append(wk["how"].astype(np.int8))


def _signal_table(dec: Decoded, row_of: np.ndarray, rec: Records) -> None:
    """The ``signal`` side table of the printed rows, in row order as the text path's; the
    decoded columns are released as their sorted copies are made."""
    names = ("g", "how", "sig", "code", "res", "target")
    sg, srow = _in_row_order(dec.signal, names, row_of)
    dec.signal.clear()
    if not len(srow):
        return
    rec.signal["row"].append(srow)
    rec.signal["how"].append(sg["how"].astype(np.int8))
    for k in names[2:]:
        rec.signal[k].append(sg[k].astype(np.int64))


def _other_rows(rec: Records, r_kind: np.ndarray) -> np.ndarray:
    """The sample rows of no side table (build_tables makes "other events" of them)."""
    typed = np.zeros(rec.rows, bool)
    for part in (rec.sys["row"], rec.switch["row"], rec.wake["row"], rec.signal["row"]):
        for r in part:
            typed[r] = True
    return np.flatnonzero((r_kind == K_SAMPLE) & ~typed)


def _task_events(rows_g: np.ndarray, r_kind: np.ndarray, side_of: dict) -> list[tuple]:
    """(row, kind, pid, tid, extra) of each printed comm / fork / exit / lost record, in
    row order (``Records.task``)."""
    task: list[tuple] = []
    for i in np.flatnonzero(r_kind != K_SAMPLE).tolist():
        s = side_of.get(int(rows_g[i]))
        if s is None:
            continue
        f = s.fields
        if s.kind == K_COMM:
            task.append((i, "comm", f["pid"], f["tid"], {"comm": f["comm"], "exec": f["exec"]}))
        elif s.kind in (K_FORK, K_EXIT):
            task.append(
                (i, TASK_KIND[s.kind], f["pid"], f["tid"],
                 {"parent_pid": f["ppid"], "parent_tid": f["ptid"]})
            )  # fmt: skip
        elif s.kind == K_LOST:
            task.append((i, "lost", -1, -1, {"lost": f["lost"]}))
    return task


def _in_row_order(cols, names, row_of: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A side table's columns for the printed rows, sorted by row (the text parser appends
    them in row order)."""
    row = row_of[cols.get("g")]
    sel = np.flatnonzero(row >= 0)
    sel = sel[np.argsort(row[sel], kind="stable")]
    out = {}
    for k in names:  # each column freed as its sorted copy is made
        out[k] = cols.get(k)[sel]
        cols.parts.pop(k, None)
    return out, row[sel].astype(np.int64)


def _stacks(pf, dec, tl, rows_g, r_kind, pos_rows, other, rec, all_stacks, out) -> np.ndarray:
    """Stack id of each row (0 = none); the stops of the DWARF stacks that ended inside
    user code go to ``out.notes["stack_stops"]`` (stops.py)."""
    chain = dec.rec.get("chain")[rows_g]
    stack = np.zeros(len(rows_g), np.int32)
    idx = np.flatnonzero(_wants_stack(dec, rec, r_kind, chain, other, all_stacks))
    if not len(idx):
        return stack
    header = out.notes.setdefault("symbols", {})
    symbolizer, resolver = _symbol_sources(pf, dec, tl, r_kind, header, out)
    pids = dec.rec.get("pid")[rows_g[idx]]
    versions = tl.versions_at(pids, pos_rows[idx])
    chains = chain[idx]
    unw, uid = _user_stacks(pf, dec, tl, symbolizer, rows_g, idx, versions, rec, out)
    users = [(u.pcs or None) if u is not None else None for u in unw]
    inv, reps = _first_seen(_combine(versions, chains, uid))
    empty = np.zeros(0, np.uint64)
    frames = resolver.resolve(
        versions[reps].tolist(),
        [dec.chains.chains[c] if c >= 0 else empty for c in chains[reps].tolist()],
        [users[i] for i in reps.tolist()],
    )
    lut = np.array([out.reg.stacks.intern_frames(f) for f in frames], np.int32)
    stack[idx] = lut[inv]
    if dec.dwarf:
        requested = dec.rec.get("stack_size")[rows_g[idx]]
        out.notes["stack_stops"] = _stack_stops(unw, requested, reps, frames, lut)
    header["dsos"] = len(tl.dsos)
    if symbolizer.problems:
        header["problems"] = symbolizer.problems[:20]
    occurrences = np.bincount(inv, minlength=len(frames))
    # the process image of each distinct stack: pid and comm (an exec changes the comm)
    image = pids[reps].astype(np.int64) * (1 << 32) + rec.comm[-1][idx[reps]].astype(np.int64)
    dso_losses(symbolizer, frames, occurrences, header, out, image)
    return stack


def _stack_stops(unw, requested: np.ndarray, reps: np.ndarray, frames, lut) -> dict:
    """{stack id: StackStop as a dict} of the distinct stacks whose unwinding stopped inside
    user code, each described by the first sample that has it."""
    stops: dict[int, dict] = {}
    for k, i in enumerate(reps.tolist()):
        u = unw[i]
        sid = int(lut[k])
        if u is None or sid == 0 or sid in stops:
            continue
        user = [f for f in frames[k] if f[3] != "kernel"]  # one per pc, leaf first
        at = min(u.stop_frame, len(user) - 1)
        stop = classify(u, int(requested[i]), user[at] if user else None)
        if stop is not None:
            stops[sid] = stop.as_dict()
    return dict(sorted(stops.items()))


def _wants_stack(dec, rec, r_kind, chain, other, all_stacks) -> np.ndarray:
    """Which rows get a stack: the samples with a callchain (or a stack copy to unwind) whose
    stacks build_tables reads, or every one of them with *all_stacks* (not in DWARF mode,
    where unwinding the rest would only cost time)."""
    needed = np.zeros(len(r_kind), bool)
    # rows whose stacks build_tables reads: syscall entries (a syscall's stack is its first
    # entry's), switch-outs, wakeups (the waker's stack), signals and other events; not
    # syscall exits
    if rec.sys["row"]:
        sys_rows = np.concatenate(rec.sys["row"])
        sys_dir = np.concatenate(rec.sys["dir"])
        needed[sys_rows[sys_dir == SYS_ENTER]] = True
    for part in rec.switch["row"] + rec.wake["row"] + rec.signal["row"]:
        needed[part] = True
    needed[other] = True
    want = (r_kind == K_SAMPLE) & ((chain >= 0) | dec.dwarf)
    if not all_stacks or dec.dwarf:
        want &= needed
    return want


def _symbol_sources(pf, dec, tl, r_kind, header: dict, out) -> tuple[Symbolizer, Resolver]:
    """The symbolizer and the resolver of callchains: kernel symbols chosen by the recorded
    build id and release (which one is said in *header*, the ``symbols`` note; a warning
    when the kernel frames stay unnamed); user-space DSOs looked up under the symfs first,
    and checked against the build ids the recording holds (MMAP2 records, else the
    BUILD_ID header: ``perf record --buildid-mmap`` writes only the former)."""
    release = pf.feature_string("OSRELEASE")
    same_release = None if release is None else release == platform.release()
    bids = pf.build_ids()
    kbid = next((b for p, b, name in bids if name == "[kernel.kallsyms]"), None)
    kbid = kbid or _kernel_mmap_build_id(dec)
    vbid = next((b for p, b, name in bids if name == "[vdso]"), None)
    ktext = next((m.pgoff for m in tl.kernel if m.name.startswith("[kernel.kallsyms]")), None)
    ktable, ksource = kernel_symbols(kbid, ktext, same_release)
    header["kernel"] = ksource
    if ktable is None and (r_kind == K_SAMPLE).any():
        out.warnings.append(f"kernel frames left unnamed: {ksource}")
    recorded = {name: b for p, b, name in bids if name.startswith("/")}
    symbolizer = Symbolizer(vbid, bool(same_release), symfs=out.symfs, recorded=recorded)
    if out.symfs:
        header["symfs"] = out.symfs
    return symbolizer, Resolver(tl, symbolizer, ktable)


def _kernel_mmap_build_id(dec: Decoded) -> bytes | None:
    """The kernel's build id from its MMAP2 record (``--buildid-mmap`` recordings have no
    BUILD_ID header)."""
    for r in dec.side:
        name = str(r.fields.get("filename", ""))
        if r.kind == K_MMAP and r.fields.get("build_id") and name.startswith("[kernel.kallsyms]"):
            return r.fields["build_id"]
    return None


def _user_stacks(
    pf, dec, tl, symbolizer, rows_g, idx, versions, rec, out
) -> tuple[list[Unwound | None], np.ndarray]:
    """(the unwinding of each sample of rows *idx*, None where there was none, spliced past
    cut stack copies (stops.py); an id per distinct list of user pcs, -1 for none). Without
    DWARF samples, none and -1 each: the user part is in the callchain then."""
    if not dec.dwarf:
        return [None] * len(idx), np.full(len(idx), -1, np.int64)
    t = _time.perf_counter()
    unw = _unwind(pf, dec, tl, symbolizer, rows_g[idx], versions, out)
    out.timings["unwind"] = _time.perf_counter() - t
    t = _time.perf_counter()
    sp = dec.rec.get("user_sp")[rows_g]  # every row's: the samples not unwound count too
    out.notes["unwind"]["spliced"] = splice(unw, idx, rec.column("tid"), sp)
    out.timings["splice"] = _time.perf_counter() - t
    ukey: dict[tuple, int] = {}
    uid = np.array(
        [ukey.setdefault(tuple(u.pcs), len(ukey)) if u and u.pcs else -1 for u in unw], np.int64
    )
    return unw, uid


def _first_seen(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(id of each row's key, numbered in order of first appearance; the row where each
    id first appears). By hashing (pandas' factorize) where the key is one int64: a
    million rows of a few thousand distinct keys, without sorting them."""
    if key.dtype == np.int64:
        ids = pd.factorize(key)[0].astype(np.int64)
        seen = np.maximum.accumulate(ids)  # ids first appear in increasing order
        return ids, np.flatnonzero(np.r_[True, ids[1:] > seen[:-1]])
    uk, first, inv = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return rank[inv.reshape(-1)], first[order]


def _combine(*cols: np.ndarray) -> np.ndarray:
    """One sortable key per row for columns of ids >= -1: a single int64 when the ranges
    allow (fast np.unique), else a structured array."""
    spans = [int(c.max()) + 2 if len(c) else 1 for c in cols]
    if float(np.prod(np.array(spans, np.float64))) < 2.0**62:
        key = np.zeros(len(cols[0]), np.int64)
        for c, span in zip(cols, spans, strict=True):
            key = key * span + (c + 1)
        return key
    out = np.empty(len(cols[0]), dtype=[(f"f{i}", np.int64) for i in range(len(cols))])
    for i, c in enumerate(cols):
        out[f"f{i}"] = c
    return out


def _unwind(pf, dec, tl, symbolizer, gs, versions, out) -> list[Unwound | None]:
    """The unwinding of the samples *gs* (kernel-record indices), read back from the file."""
    rc = dec.rec
    off = rc.get("off")[gs]
    regs_at = rc.get("regs_at")[gs]
    abi = rc.get("regs_abi")[gs]
    stack_at = rc.get("stack_at")[gs]
    dyn = rc.get("stack_dyn")[gs]
    attr_of = rc.get("attr", np.int16)[gs]
    unwinder = Unwinder(tl, symbolizer)
    unw: list[Unwound | None] = []
    for i in range(len(gs)):
        if regs_at[i] < 0 or abi[i] != 2 or stack_at[i] < 0:  # 2: PERF_SAMPLE_REGS_ABI_64
            unwinder.stats.stop("no 64-bit user registers" if abi[i] != 2 else "no stack copy")
            unw.append(None)
            continue
        a = pf.attrs[int(attr_of[i])]
        nregs = bin(a.sample_regs_user).count("1")
        start = int(off[i])
        end = start + int(stack_at[i]) + int(dyn[i])
        lo = start + int(regs_at[i])
        raw = pf.read_at(lo, end - lo)
        if len(raw) < end - lo:
            unw.append(None)
            continue
        values = list(np.frombuffer(raw, "<u8", count=nregs).tolist())
        regs = regs_by_dwarf(a.sample_regs_user, values)
        stack = raw[int(stack_at[i]) - int(regs_at[i]) :]
        unw.append(unwinder.unwind_sample(int(versions[i]), regs, stack))
    st = unwinder.stats
    out.notes["unwind"] = {
        "samples": st.samples,
        "frames": st.frames,
        "stops": dict(sorted(st.stops.items(), key=lambda kv: -kv[1])),
    }
    return unw
