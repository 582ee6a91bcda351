"""py-spy output (chrometrace, speedscope, raw) -> canonical tables.

chrometrace is a timeline: B/E events per Python thread, emitted only when a thread's sampled
stack changes, with ``ts`` in microseconds since py-spy started (a relative clock: CLOCK_MONOTONIC
at an instant the file does not record, see correlator.align). Each run of samples with one
stack becomes a ``py.sample`` slice (name = leaf frame, stack = the frames). Its edges are only
as good as the sampling (about one period; py-spy samples at exponentially spaced times).

speedscope (per-thread samples with weights, no times) and raw (collapsed stacks with counts)
cannot be placed on a timeline: they give the same stacks, and per thread and stack a
``py.stack_count`` instant with its ``count`` (ts = 0 means "no time"), and meta says so.

Thread identity: with ``--threads`` the root frame ``thread (OS_TID): name`` (speedscope:
profile name ``Thread OS_TID "name"``) gives the OS thread id that perf and Go use; without
it only py-spy's own id (the pthread ident) is known, which is kept and said.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

from .columns import Interner
from .errors import InputError
from .inputs import open_binary
from .model import Clock, SourceMeta, SourceTables, make_table, stacks_table
from .waits import is_wait_frame

_THREAD = re.compile(r"^thread \((?:(?P<tid>\d+)|0x(?P<hex>[0-9a-fA-F]+))\)(?::\s?(?P<name>.*))?$")
_PROCESS = re.compile(r"^process \d+:")
_PROFILE = re.compile(r'^(?:Process (?P<pid>\d+) )?Thread (?P<tid>\d+) "(?P<name>.*)"$')
_RAW_FRAME = re.compile(r"^(?P<name>.*?)(?: \((?P<where>[^()]*)\))?$")

UNKNOWN_TIME = 0


#: what a native frame's file looks like in py-spy's output: a shared object, a C/C++/Rust/asm
#: source file, or an executable
_NATIVE_SOURCE = (".c", ".cc", ".cpp", ".cxx", ".h", ".hpp", ".rs", ".s", ".S")
_EXECUTABLE = re.compile(r"^[A-Za-z0-9_.+-]+$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]+$")


def _python_file(f: str) -> bool:
    return f.endswith(".py") or f.startswith("<") or ".py:" in f


def _native_file(name: str, f: str) -> bool:
    """Does *f* name where native code lives? py-spy's native frames carry an absolute path,
    a library or executable name, or a C source file; an unsymbolized one is an address."""
    base = f.rsplit("/", 1)[-1]
    return (
        not f
        or f.startswith("/")
        or ".so" in base
        or base.endswith(_NATIVE_SOURCE)
        or bool(_EXECUTABLE.match(base))
        or bool(_ADDRESS.match(name))
    )


def _frame(name: str, filename: str | None, line: int | None) -> tuple:
    """(function, file, line, module, frame_kind) of one py-spy frame.

    A frame whose file is neither Python's nor native (``tc:py:1``, ``\u00b0``) is a Python
    frame py-spy read while the interpreter rewrote it: ``--nonblocking`` reads a running
    process, and its code objects can be torn. It stays a Python frame (``torn_frame``
    counts them); taking it for native code would say the recording had native frames.
    """
    f = filename or ""
    if _python_file(f) or not _native_file(name, f):
        return (name, f, line or None, None, "python")
    module = f.rsplit("/", 1)[-1] if f else None
    if module and ".so" not in module and module.endswith(_NATIVE_SOURCE):
        return (name, f, line or None, None, "c")  # sock_recv (socketmodule.c:3567)
    return (name, None, None, module, "c")


def torn_frame(frame: tuple) -> bool:
    """Is *frame* a Python frame whose file py-spy read as neither Python's nor native?"""
    return frame[4] == "python" and bool(frame[1]) and not _python_file(frame[1])


class _Stacks:
    """Distinct py-spy stacks (leaf-first frame tuples) -> ids 1, 2, ... (0 = empty)."""

    def __init__(self) -> None:
        self.stacks: Interner[tuple] = Interner(first=1)

    @property
    def frames(self) -> list[tuple]:
        return self.stacks.values

    def intern(self, leaf_first: tuple) -> int:
        return self.stacks.id(leaf_first) if leaf_first else 0

    def table(self, source: str):
        return stacks_table(source, (tuple((*f, None) for f in frames) for frames in self.frames))


def is_blocking(frames: tuple) -> bool:
    """Does a sampled stack show its thread waiting in the kernel (a native wait frame)?"""
    return any(f[4] == "c" and is_wait_frame(f[0]) for f in frames)


def _thread_of(root: str) -> tuple[int | None, str | None] | None:
    m = _THREAD.match(root)
    if not m:
        return None
    return (int(m.group("tid")) if m.group("tid") else None), m.group("name")


def _load_json(path: str, data: bytes, meta: SourceMeta):
    try:
        return json.loads(data)
    except ValueError as e:
        if not data.lstrip().startswith(b"["):
            raise InputError(path, f"not valid JSON: {e.msg}", offset=e.pos) from None
    # a chrometrace cut short (py-spy killed before it finished writing): keep the complete
    # events before the cut
    text = data.decode("utf-8", "replace")
    dec = json.JSONDecoder()
    pos = text.index("[") + 1
    events = []
    while True:
        while pos < len(text) and text[pos] in " \r\n\t,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            break
        try:
            obj, pos = dec.raw_decode(text, pos)
        except ValueError:
            meta.warn(
                f"truncated JSON: read {len(events)} complete events, stopped at byte offset {pos}"
            )
            meta.extra["truncated_at"] = pos
            break
        events.append(obj)
    return events


def parse(path: str | Path, source: str = "pyspy", pid: int | None = None) -> SourceTables:
    path = str(path)
    try:
        with open_binary(path) as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise InputError(path, f"cannot read: {e}") from None
    head = data.lstrip()[:1]
    if head == b"[":
        return _chrometrace(path, data, source)
    if head == b"{":
        return _speedscope(path, data, source, pid)
    return _raw(path, data, source, pid)


def _chrometrace(path: str, data: bytes, source: str) -> SourceTables:
    meta = SourceMeta(
        source=source, kind="pyspy-chrometrace", path=path, format_version="py-spy chrometrace"
    )
    events = _load_json(path, data, meta)
    if not isinstance(events, list):
        raise InputError(path, "chrometrace: expected a JSON array of events")
    stacks = _Stacks()
    open_frames: dict[int, list] = defaultdict(list)  # py-spy tid -> root-first frames
    runs: dict[int, list] = defaultdict(list)  # tid -> [(ts, stack tuple)]
    pids: dict[int, int] = {}
    last_ts = 0
    for i, e in enumerate(events):
        try:
            ph, tid, ts = e["ph"], int(e["tid"]), int(e["ts"])
            name = e["name"]
        except (KeyError, TypeError, ValueError):
            meta.count("pyspy_malformed_event")
            continue
        meta.events[ph] += 1
        pids[tid] = int(e.get("pid", -1))
        frames = open_frames[tid]
        if ph == "B":
            a = e.get("args") or {}
            frames.append((name, a.get("filename"), a.get("line")))
        elif ph == "E":
            if not frames:
                meta.count("pyspy_end_without_begin")
                continue
            frames.pop()
        else:
            meta.count("pyspy_event_phase", key=repr(ph))
            continue
        last_ts = max(last_ts, ts)
        nxt = events[i + 1] if i + 1 < len(events) else None
        if not (isinstance(nxt, dict) and nxt.get("tid") == e["tid"] and nxt.get("ts") == ts):
            runs[tid].append((ts, tuple(frames)))  # the stack after all changes at ts
    unbalanced = sum(1 for f in open_frames.values() if f)
    if unbalanced:
        meta.warn(
            f"{unbalanced} thread(s) with frames never closed (a cut file?): their last "
            "slice ends at the last event"
        )
    if not runs:
        raise InputError(path, "chrometrace has no samples")
    rows = {k: [] for k in ("pid", "tid", "ts", "dur", "name", "stack_id", "blocking")}
    end_unknown = []
    threads: dict[int, tuple[int, str | None]] = {}
    no_os_tid = 0
    blocking_seen = False
    for pytid, seq in runs.items():
        os_tid, tname = None, None
        for k, (ts, frames) in enumerate(seq):
            end = seq[k + 1][0] if k + 1 < len(seq) else last_ts
            if not frames:
                continue  # the thread's stack was empty (between samples of other threads)
            body = list(frames)
            ident = _thread_of(body[0][0]) if body[0][1] in ("", None) else None
            if ident is not None:
                os_tid, tname = ident[0] or os_tid, ident[1] or tname
                body = body[1:]
            body = [f for f in body if not _PROCESS.match(f[0])]
            leaf_first = tuple(_frame(*f) for f in reversed(body))
            blocking_seen |= is_blocking(leaf_first)
            tid = os_tid if os_tid is not None else pytid
            rows["pid"].append(pids.get(pytid, -1))
            rows["tid"].append(tid)
            rows["ts"].append(ts * 1000)
            rows["dur"].append(max(end - ts, 0) * 1000)
            rows["name"].append(leaf_first[0][0] if leaf_first else "(thread root)")
            rows["stack_id"].append(stacks.intern(leaf_first) or None)
            rows["blocking"].append(is_blocking(leaf_first))
            # still open when py-spy wrote the file: a thread that exited earlier keeps its
            # last stack open until then, so the end is not known
            end_unknown.append(k + 2 >= len(seq) and end == last_ts)
        if os_tid is None:
            no_os_tid += 1
        threads[os_tid if os_tid is not None else pytid] = (pids.get(pytid, -1), tname)
    _identity_notes(meta, no_os_tid, blocking_seen, stacks)
    meta.extra["timeline"] = True
    clock = Clock(
        "relative",
        1000,
        [],
        "py-spy chrometrace: microseconds since py-spy started "
        "(CLOCK_MONOTONIC at an instant not in the file); align by event matching",
    )
    return SourceTables(
        meta=meta,
        clock=clock,
        threads=make_table(
            "threads",
            source=source,
            pid=[p for p, _ in threads.values()],
            tid=list(threads),
            name=[n for _, n in threads.values()],
        ),
        slices=make_table(
            "slices", source=source, kind="py.sample", end_unknown=end_unknown, **rows
        ),
        stacks=stacks.table(source),
    )


def _identity_notes(meta: SourceMeta, no_os_tid: int, blocking_seen: bool, stacks: _Stacks) -> None:
    native = any(f[4] == "c" for frames in stacks.frames for f in frames)
    meta.extra["native_frames"] = native
    torn = sum(any(torn_frame(f) for f in frames) for frames in stacks.frames)
    if torn:
        meta.warn(
            f"{torn} distinct stack(s) hold frames py-spy could not read whole (a file that is "
            "neither Python's nor native: --nonblocking reads the process while it runs); "
            "kept as Python frames"
        )
    if no_os_tid:
        meta.warn(
            f"{no_os_tid} thread(s) without an OS thread id (record with py-spy "
            "--threads): keyed by py-spy's thread id, which perf and Go do not know"
        )
    if not native:
        meta.warn(
            "no native frames (recorded without --native, e.g. with --nonblocking): which "
            "syscall a thread waits in is inferred from the client's socket-read frames"
        )
    elif not blocking_seen:
        meta.warn(
            "no sample shows a thread waiting in a syscall: recorded without --idle? "
            "(then blocked threads are not sampled at all)"
        )


def _aggregate(
    path: str,
    source: str,
    kind: str,
    counts: Counter,
    threads: dict,
    meta: SourceMeta,
    stacks: _Stacks,
    blocking_seen: bool,
    no_os_tid: int,
) -> SourceTables:
    _identity_notes(meta, no_os_tid, blocking_seen, stacks)
    meta.extra["timeline"] = False
    meta.extra["note"] = (
        f"py-spy {kind} has no timestamps: aggregate stack counts only "
        "(py.stack_count instants, ts = 0); it cannot be placed on a timeline"
    )
    keys = list(counts)
    inst = make_table(
        "instants",
        source=source,
        pid=[threads.get(t, (-1, None))[0] for t, _ in keys],
        tid=[t for t, _ in keys],
        ts=UNKNOWN_TIME,
        kind="py.stack_count",
        name=[stacks.frames[s - 1][0][0] if s else "(empty)" for _, s in keys],
        stack_id=[s or None for _, s in keys],
        count=[counts[k] for k in keys],
    )
    return SourceTables(
        meta=meta,
        clock=Clock("unknown", 1, [], f"py-spy {kind}: no timestamps"),
        threads=make_table(
            "threads",
            source=source,
            pid=[p for p, _ in threads.values()],
            tid=list(threads),
            name=[n for _, n in threads.values()],
        ),
        instants=inst,
        stacks=stacks.table(source),
    )


def _speedscope(path: str, data: bytes, source: str, pid: int | None) -> SourceTables:
    meta = SourceMeta(
        source=source, kind="pyspy-speedscope", path=path, format_version="speedscope"
    )
    doc = _load_json(path, data, meta)
    try:
        frames = doc["shared"]["frames"]
        profiles = doc["profiles"]
    except (KeyError, TypeError):
        raise InputError(path, "speedscope: no shared.frames / profiles") from None
    if not profiles:
        raise InputError(path, "speedscope: no profiles")
    meta.format_version = f"speedscope ({doc.get('exporter', 'unknown exporter')})"
    stacks, counts, threads = _Stacks(), Counter(), {}
    blocking_seen, no_os_tid = False, 0
    for i, prof in enumerate(profiles):
        m = _PROFILE.match(prof.get("name", ""))
        tid = int(m.group("tid")) if m else -(i + 1)
        if not m:
            no_os_tid += 1
        threads[tid] = (
            int(m.group("pid")) if m and m.group("pid") else (pid if pid is not None else -1),
            m.group("name") if m else prof.get("name"),
        )
        for sample in prof.get("samples", []):
            meta.events["sample"] += 1
            try:
                root_first = [frames[j] for j in sample]
            except (IndexError, TypeError):
                meta.count("pyspy_frame_out_of_range")
                continue
            leaf_first = tuple(
                _frame(f.get("name", "?"), f.get("file"), f.get("line"))
                for f in reversed(root_first)
            )
            blocking_seen |= is_blocking(leaf_first)
            counts[(tid, stacks.intern(leaf_first))] += 1
    return _aggregate(
        path, source, "speedscope", counts, threads, meta, stacks, blocking_seen, no_os_tid
    )


def _raw(path: str, data: bytes, source: str, pid: int | None) -> SourceTables:
    meta = SourceMeta(source=source, kind="pyspy-raw", path=path, format_version="collapsed")
    stacks, counts, threads = _Stacks(), Counter(), {}
    blocking_seen, no_os_tid_threads = False, set()
    for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        stack_text, _, count = line.rpartition(" ")
        if not stack_text or not count.isdigit():
            meta.count("pyspy_unparsable_line")
            if len(meta.warnings) < 1:
                meta.warn(f"unparsable line {n} skipped")
            continue
        parts = stack_text.split(";")
        ident = _thread_of(parts[0])
        tid, tname = (
            (ident[0] if ident and ident[0] is not None else -1),
            (ident[1] if ident else None),
        )
        if ident:
            parts = parts[1:]
        if tid == -1:
            no_os_tid_threads.add(tname)
        parts = [p for p in parts if not _PROCESS.match(p)]
        leaf_first = []
        for p in reversed(parts):
            m = _RAW_FRAME.match(p)
            name, where = m.group("name"), m.group("where")
            file, line_no = where, None
            if where and ":" in where and where.rsplit(":", 1)[1].isdigit():
                file, line_no = where.rsplit(":", 1)[0], int(where.rsplit(":", 1)[1])
            leaf_first.append(_frame(name, file, line_no))
        leaf_first = tuple(leaf_first)
        blocking_seen |= is_blocking(leaf_first)
        meta.events["stack"] += 1
        counts[(tid, stacks.intern(leaf_first))] += int(count)
        threads.setdefault(tid, (pid if pid is not None else -1, tname))
    if not counts:
        raise InputError(path, "no 'frame;frame;... count' lines (py-spy --format raw)")
    return _aggregate(
        path, source, "raw", counts, threads, meta, stacks, blocking_seen, len(no_os_tid_threads)
    )
