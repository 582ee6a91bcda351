"""The one perf record layer: the per-record columns both perf readers fill, and the
canonical tables built from them.

    columns.py         Records + Registries: one row per record perf script prints, the
                       side tables (syscalls, switches, wakeups, task events), the rules the
                       readers share (fd syscalls, wakeup tracepoints, comm_name)
    stacks.py          interned stacks (frame tuples -> ids), frame kinds
    header.py          PerfHeader: host, arch, command line, clock
    syscall_tables.py  syscall numbers -> names, per arch
    syscalls.py        enter/exit -> logical syscalls (pairs, ERESTART* runs merged, edges)
    sched.py           sched_switch / wakeup -> off-CPU intervals, state, runqueue delay
    tables.py          build_tables: the columns -> the canonical tables

``perf_script`` (text) and ``perf_data`` (binary) each fill ``Records``; neither imports the
other. ``parsers/perf_input.py`` reads a perf.data natively, or through ``perf script`` and
the text parser when the native reader cannot.
"""

from __future__ import annotations

from ..model import Clock, SourceMeta
from .header import PerfHeader


def clock_of(header: PerfHeader, frac_digits: set[int]) -> Clock:
    resolution = 1 if frac_digits == {9} else 1000
    clock_id = header.clock_id()
    note = {
        "monotonic": "perf record -k CLOCK_MONOTONIC: times are CLOCK_MONOTONIC",
        "perf_clock": "recorded without -k: perf_clock (sched_clock), not CLOCK_MONOTONIC; "
        "align by event matching",
        "unknown": "no perf header (print with perf script --header): clock unknown",
    }[clock_id]
    if resolution == 1000:
        note += "; times printed with 6 decimals (truncated to us): print with --ns"
    snapshots = [header.reference] if header.reference else []
    return Clock(clock_id, resolution, snapshots, note)


def new_meta(source: str, path: str, header: PerfHeader) -> SourceMeta:
    version = header.values.get("perf version", "")
    meta = SourceMeta(
        source=source,
        kind="perf-script",
        path=path,
        format_version=f"perf {version}" if version else "perf script text",
    )
    for key in ("hostname", "os release", "arch", "cmdline"):
        if key in header.values:
            meta.extra[key.replace(" ", "_")] = header.values[key]
    return meta
