"""The Go execution trace event table (wire formats go 1.22 - go 1.26), as data.

One row per event type: its wire id, name, the names of its arguments in wire order (``dt``
first for timed events), which arguments are stack ids and string ids, and the first format
version that has it. The decoder and the state machine are driven by this table, as in
golang/exp ``trace/internal/tracev2/events.go`` (read for understanding; this is our own
transcription, checked against real traces of every version by the tests).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EventSpec:
    id: int
    name: str
    args: tuple[str, ...]  # wire order; "dt" first for timed events
    timed: bool = True
    stacks: tuple[str, ...] = ()  # args holding stack ids (own stack first)
    strings: tuple[str, ...] = ()  # args holding string ids
    since: int = 22  # first format version (go 1.NN) with this event

    @property
    def nargs(self) -> int:
        return len(self.args)


def _timed(id_: int, name: str, *args: str, stacks=(), strings=(), since=22) -> EventSpec:
    return EventSpec(id_, name, ("dt", *args), True, tuple(stacks), tuple(strings), since)


def _structural(id_: int, name: str, *args: str, since=22) -> EventSpec:
    return EventSpec(id_, name, tuple(args), False, since=since)


SPECS: list[EventSpec] = [
    _structural(1, "EventBatch", "gen", "m", "time", "size"),
    _structural(2, "Stacks"),
    _structural(3, "Stack", "id", "nframes"),
    _structural(4, "Strings"),
    _structural(5, "String", "id"),
    _structural(6, "CPUSamples"),
    _structural(7, "CPUSample", "time", "m", "p", "g", "stack"),
    _structural(8, "Frequency", "freq"),
    _timed(9, "ProcsChange", "procs_value", "stack", stacks=["stack"]),
    _timed(10, "ProcStart", "p", "p_seq"),
    _timed(11, "ProcStop"),
    _timed(12, "ProcSteal", "p", "p_seq", "m"),
    _timed(13, "ProcStatus", "p", "pstatus"),
    _timed(14, "GoCreate", "new_g", "new_stack", "stack", stacks=["stack", "new_stack"]),
    _timed(15, "GoCreateSyscall", "new_g"),
    _timed(16, "GoStart", "g", "g_seq"),
    _timed(17, "GoDestroy"),
    _timed(18, "GoDestroySyscall"),
    _timed(19, "GoStop", "reason_string", "stack", stacks=["stack"], strings=["reason_string"]),
    _timed(20, "GoBlock", "reason_string", "stack", stacks=["stack"], strings=["reason_string"]),
    _timed(21, "GoUnblock", "g", "g_seq", "stack", stacks=["stack"]),
    _timed(22, "GoSyscallBegin", "p_seq", "stack", stacks=["stack"]),
    _timed(23, "GoSyscallEnd"),
    _timed(24, "GoSyscallEndBlocked"),
    _timed(25, "GoStatus", "g", "m", "gstatus"),
    _timed(26, "STWBegin", "kind_string", "stack", stacks=["stack"], strings=["kind_string"]),
    _timed(27, "STWEnd"),
    _timed(28, "GCActive", "gc_seq"),
    _timed(29, "GCBegin", "gc_seq", "stack", stacks=["stack"]),
    _timed(30, "GCEnd", "gc_seq"),
    _timed(31, "GCSweepActive", "p"),
    _timed(32, "GCSweepBegin", "stack", stacks=["stack"]),
    _timed(33, "GCSweepEnd", "swept_value", "reclaimed_value"),
    _timed(34, "GCMarkAssistActive", "g"),
    _timed(35, "GCMarkAssistBegin", "stack", stacks=["stack"]),
    _timed(36, "GCMarkAssistEnd"),
    _timed(37, "HeapAlloc", "heapalloc_value"),
    _timed(38, "HeapGoal", "heapgoal_value"),
    _timed(39, "GoLabel", "label_string", strings=["label_string"]),
    _timed(
        40,
        "UserTaskBegin",
        "task",
        "parent_task",
        "name_string",
        "stack",
        stacks=["stack"],
        strings=["name_string"],
    ),
    _timed(41, "UserTaskEnd", "task", "stack", stacks=["stack"]),
    _timed(
        42,
        "UserRegionBegin",
        "task",
        "name_string",
        "stack",
        stacks=["stack"],
        strings=["name_string"],
    ),
    _timed(
        43,
        "UserRegionEnd",
        "task",
        "name_string",
        "stack",
        stacks=["stack"],
        strings=["name_string"],
    ),
    _timed(
        44,
        "UserLog",
        "task",
        "key_string",
        "value_string",
        "stack",
        stacks=["stack"],
        strings=["key_string", "value_string"],
    ),
    _timed(45, "GoSwitch", "g", "g_seq", since=23),
    _timed(46, "GoSwitchDestroy", "g", "g_seq", since=23),
    _timed(
        47,
        "GoCreateBlocked",
        "new_g",
        "new_stack",
        "stack",
        stacks=["stack", "new_stack"],
        since=23,
    ),
    _timed(48, "GoStatusStack", "g", "m", "gstatus", "stack", stacks=["stack"], since=23),
    _structural(49, "ExperimentalBatch", "exp", "gen", "m", "time", "size", since=23),
    _structural(50, "Sync", since=25),
    _timed(51, "ClockSnapshot", "mono", "sec", "nsec", since=25),
    _structural(52, "EndOfGeneration", since=26),
]

BY_ID: dict[int, EventSpec] = {s.id: s for s in SPECS}
BY_NAME: dict[str, int] = {s.name: s.id for s in SPECS}
EV = type("EV", (), {s.name: s.id for s in SPECS})  # EV.GoStart == 16

#: Most arguments a timed event has after dt (GoStatusStack, UserTaskBegin, UserLog: 4).
MAX_ARGS = max(s.nargs - 1 for s in SPECS if s.timed)


def timed_nargs(version: int) -> list[int]:
    """Number of varints (dt included) per event type byte for regular batches; 0 = invalid.

    ClockSnapshot is timed but only legal inside a sync batch, so it is invalid here.
    """
    table = [0] * 256
    for s in SPECS:
        if s.timed and s.since <= version and s.name != "ClockSnapshot":
            table[s.id] = s.nargs
    return table


#: Header versions we read: go 1.22 (first with OS thread ids) to go 1.26.
KNOWN_VERSIONS = (22, 23, 25, 26)
NEWEST = KNOWN_VERSIONS[-1]
OLDEST_V1, NEWEST_V1 = 5, 21  # the old per-P format: no OS thread ids, refused

MAX_BATCH_SIZE = 64 << 10
MAX_FRAMES = 128
MAX_STRING = 1 << 10
NO_THREAD = (1 << 64) - 1
