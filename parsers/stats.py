"""Every way an input can lose or skip something, declared once: the ledger of losses.

As Perfetto's trace processor keeps ``stats.h`` (name, severity, source, description) and
its importers only increment, our readers and steps only count into a source's ledger
(``SourceMeta.count(name, n, key)``); what a loss means, how bad it is and how to avoid it
at capture time is said here, and the text report, the JSON report's ``sources[].losses``
and ``tracecorr tables``' meta.json print it from here alike.

Severity: ``info`` (something we do not import, nothing the analysis needs), ``data-loss``
(events the recorder or we lost: results may miss or misplace what they covered),
``error`` (the input is damaged or inconsistent there).

``key``: a stat that differs by a detail (the record type, the payload's name) is counted per
key; its reason text fills ``{key}`` in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

INFO, DATA_LOSS, ERROR = "info", "data-loss", "error"
SEVERITY_ORDER = {ERROR: 0, DATA_LOSS: 1, INFO: 2}


@dataclass(frozen=True)
class Stat:
    name: str
    severity: str
    source: str  # the reader that counts it: go-trace, perf-script, perf-data, pyspy
    reason: str  # what was dropped, in words ({key}: the detail of a keyed stat)
    avoid: str = ""  # how to avoid it at capture time ("": nothing to do)
    dropped: bool = True  # an event dropped (counted in sources[].skipped); else a note

    def text(self, key: str | None = None) -> str:
        return self.reason.format(key=key) if key is not None else self.reason


_PERF_BUFFER = "record with a larger buffer (perf record -m 512 or more) or fewer events"
_DSO_FILES = (
    "capture with `tracecorr capture` (--archive copies the DSOs of a process in another mount "
    "namespace into the capture), or read with --symfs DIR holding the recorded files"
)
STATS: tuple[Stat, ...] = (
    # py-spy
    Stat("pyspy_malformed_event", ERROR, "pyspy", "malformed event"),
    Stat("pyspy_end_without_begin", ERROR, "pyspy", "E without a matching B"),
    Stat("pyspy_event_phase", INFO, "pyspy", "event phase {key}"),
    Stat("pyspy_frame_out_of_range", ERROR, "pyspy", "sample with a frame index out of range"),
    Stat("pyspy_unparsable_line", ERROR, "pyspy", "line that is not 'frame;frame;... count'"),
    # perf script text and the perf record tables
    Stat(
        "perf_named_syscall_event",
        INFO,
        "perf",
        "syscalls:* event beside raw_syscalls (raw ones paired)",
        "record raw_syscalls:sys_enter/sys_exit alone (tracecorr capture does)",
    ),
    Stat(
        "perf_clone_child_exit",
        INFO,
        "perf",
        "first sys_exit of a new thread (the child side of clone)",
    ),
    Stat(
        "perf_exit_without_enter",
        DATA_LOSS,
        "perf",
        "sys_exit without its sys_enter (lost?)",
        _PERF_BUFFER,
    ),
    Stat(
        "perf_duplicate_syscall_event",
        INFO,
        "perf",
        "syscall event recorded twice (same thread, time and syscall)",
        "record each syscall tracepoint once (not both -e raw_syscalls:* and -e 'syscalls:*')",
    ),
    Stat("perf_unparsable_line", ERROR, "perf-script", "unparsable lines"),
    Stat(
        "perf_unparsable_frame_line",
        ERROR,
        "perf-script",
        "unparsable callchain frame lines",
    ),
    # perf.data
    Stat(
        "perf_data_after_damage",
        ERROR,
        "perf-data",
        "records after damage (reading stopped)",
        "let perf record stop cleanly (SIGINT, not SIGKILL) and copy the whole file",
    ),
    Stat("perf_data_unknown_record", INFO, "perf-data", "unknown record type {key}"),
    Stat(
        "perf_data_unknown_event_id", ERROR, "perf-data", "sample of an event id not in the header"
    ),
    Stat("perf_data_time_overflow", ERROR, "perf-data", "sample with a time past 2**63 (corrupt)"),
    Stat(
        "perf_data_sample_sizes",
        ERROR,
        "perf-data",
        "sample whose sizes do not fit the record (corrupt)",
    ),
    Stat(
        "perf_data_short_payload",
        ERROR,
        "perf-data",
        "{key} payload shorter than its format (corrupt)",
    ),
    Stat(
        "perf_data_short_trailer",
        ERROR,
        "perf-data",
        "side-band record too short for its trailer (corrupt)",
    ),
    Stat("perf_data_short_record", ERROR, "perf-data", "{key} record too short (corrupt)"),
    # user-space DSOs the stacks touch (a container's paths, another machine's files): their
    # frames are left unnamed, and DWARF unwinding stops at them (notes: nothing dropped)
    Stat(
        "perf_dso_missing",
        DATA_LOSS,
        "perf-data",
        "frames left unnamed in {key}: no such file here, nor one of its build id",
        _DSO_FILES,
        dropped=False,
    ),
    Stat(
        "perf_dso_build_id_mismatch",
        DATA_LOSS,
        "perf-data",
        "frames left unnamed in {key}: the file here has another build id than the recorded one",
        _DSO_FILES,
        dropped=False,
    ),
    Stat(
        "perf_dso_debug_only",
        DATA_LOSS,
        "perf-data",
        "frames left unnamed in {key}: only its separate debug info is here (no file offsets)",
        _DSO_FILES,
        dropped=False,
    ),
    # the Go execution trace
    Stat("go_inconsistent", ERROR, "go-trace", "inconsistent: {key}"),
    Stat(
        "go_cpu_sample",
        INFO,
        "go-trace",
        "CPUSample (CPU profile samples are not imported)",
    ),
    Stat(
        "go_experimental_batch",
        INFO,
        "go-trace",
        "ExperimentalBatch (experimental events are not imported)",
    ),
    # what the recorder lost (notes: counted from the source's own accounting, not dropped)
    Stat(
        "perf_lost_events",
        DATA_LOSS,
        "perf",
        "events perf lost (PERF_RECORD_LOST: its ring buffer was full)",
        _PERF_BUFFER,
        dropped=False,
    ),
    Stat(
        "perf_lost_samples",
        DATA_LOSS,
        "perf-data",
        "samples perf lost (PERF_RECORD_LOST_SAMPLES)",
        _PERF_BUFFER,
        dropped=False,
    ),
    Stat(
        "perf_syscall_exits_lost",
        DATA_LOSS,
        "perf",
        "syscalls whose sys_exit perf lost (their end bounded by what holds them)",
        _PERF_BUFFER,
        dropped=False,
    ),
)
BY_NAME = {s.name: s for s in STATS}
assert len(BY_NAME) == len(STATS)

#: the notes taken from a source's own accounting (SourceMeta.extra), by stat
NOTES = {
    "perf_lost_events": "lost_events",
    "perf_lost_samples": "lost_samples",
    "perf_syscall_exits_lost": "syscall_exits_lost",
}


def count(ledger: Counter, name: str, n: int = 1, key: str | None = None) -> None:
    """Count *n* of the stat *name* (with its *key*) into *ledger*: ``{(name, key): n}``."""
    if name not in BY_NAME:
        raise KeyError(f"undeclared stat {name!r} (declare it in parsers/stats.py)")
    if n:
        ledger[(name, key)] += int(n)


def losses(ledger: Counter, extra: dict | None = None) -> list[dict]:
    """The ledger as the outputs print it: one entry per stat and key, worst first, with
    its severity, what it means and how to avoid it; the notes of *extra* (a source's own
    accounting of what its recorder lost) among them."""
    rows = dict(ledger)
    for name, k in NOTES.items():
        n = (extra or {}).get(k)
        if isinstance(n, int) and n > 0:
            rows[(name, None)] = n
    out = []
    for (name, key), n in rows.items():
        s = BY_NAME[name]
        out.append(
            {
                "name": name,
                "key": key,
                "severity": s.severity,
                "count": int(n),
                "reason": s.text(key),
                "avoid": s.avoid or None,
                "dropped": s.dropped,
            }
        )
    return sorted(out, key=lambda x: (SEVERITY_ORDER[x["severity"]], -x["count"], x["reason"]))
