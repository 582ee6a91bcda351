"""The canonical tables' contract as data: column names, kinds and meanings, the clock and
provenance records. No pandas here: a streaming writer (``tracecorr tables`` on a big Go
trace) builds Parquet from numpy and Arrow with this alone; ``model`` builds DataFrames.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# Column kinds: "int64" (never null), "Int64"/"UInt64" (nullable ints), "str" (text, nullable
# unless listed in NOT_NULL), "bool" (never null; False = not so), "boolean" (nullable: NA =
# not known or does not apply).
SCHEMAS: dict[str, dict[str, str]] = {
    "threads": {"source": "str", "pid": "int64", "tid": "int64", "name": "str"},
    "slices": {
        "source": "str",
        "pid": "int64",
        "tid": "int64",
        "ts": "int64",
        "dur": "int64",
        "kind": "str",
        "name": "str",
        "goid": "Int64",
        "stack_id": "Int64",
    },
    "instants": {
        "source": "str",
        "pid": "int64",
        "tid": "int64",
        "ts": "int64",
        "kind": "str",
        "name": "str",
        "stack_id": "Int64",
    },
    "stacks": {
        "source": "str",
        "stack_id": "int64",
        "depth": "int64",
        "function": "str",
        "file": "str",
        "line": "Int64",
        "module": "str",
        "frame_kind": "str",
        "address": "UInt64",
    },
    "args": {"source": "str", "table": "str", "row": "int64", "key": "str", "value": "str"},
}
#: Typed attribute columns a table may carry, with their meaning. Present only when the
#: source produces them; in the order listed.
TYPED: dict[str, dict[str, tuple[str, str]]] = {
    "slices": {
        "fd": ("Int64", "os.syscall: the file descriptor it worked on (fd syscalls)"),
        "ret": ("Int64", "os.syscall: return value (NA while unfinished)"),
        "nr": ("Int64", "os.syscall: syscall number (raw_syscalls)"),
        "restarts": ("Int64", "os.syscall: interrupted-and-restarted pieces merged into it"),
        "state": ("str", "os.offcpu: the state it left the CPU in (S, D, R, R+, t, ...)"),
        "runq_ns": ("Int64", "os.offcpu: wakeup -> running again (NA: wakeup not seen)"),
        "end_by": ("str", "os.offcpu: what ended it (switch-in, next-event, trace-end)"),
        "p_lost": ("boolean", "go.syscall: the runtime handed its P to another thread"),
        "blocking": ("boolean", "py.sample: the stack shows the thread waiting in the kernel"),
        "start_unknown": ("bool", "it began before the recording did"),
        "end_unknown": ("bool", "still open when the recording ended (or was cut)"),
        "lost_inside": ("bool", "the recorder lost events while it lasted"),
    },
    "instants": {
        "waker_tid": ("Int64", "os.wakeup: the thread that woke tid (stack_id: its callchain)"),
        "waker_pid": ("Int64", "os.wakeup: its process"),
        "cpu": ("Int64", "os.wakeup: the CPU tid was to run on"),
        "parent_pid": ("Int64", "os.fork: the creating process"),
        "parent_tid": ("Int64", "os.fork: the creating thread"),
        "count": ("Int64", "perf.lost: events lost; py.stack_count: samples"),
        "proc": ("Int64", "go.proc_steal: the P the runtime took from tid (blocked in a call)"),
        "thief_tid": ("Int64", "go.proc_steal: the thread that took it"),
        "sig": ("Int64", "os.signal: the signal number (name: its SIG* name)"),
        "signal": ("str", "os.signal: generate (sent to tid) or deliver (tid handles it)"),
        "sig_code": ("Int64", "os.signal: si_code (0 SI_USER, 128 SI_KERNEL, -6 SI_TKILL ...)"),
        "sig_result": (
            "Int64",
            "os.signal: generate's result (0 delivered, 1 ignored, 2 already pending, "
            "3 overflow, 4 info lost); NA for deliver",
        ),
        "sender_tid": ("Int64", "os.signal: generate's sending thread (stack_id: its callchain)"),
    },
}
#: Columns a parser may leave out; they are added (all null) by the constructors.
OPTIONAL: dict[str, set[str]] = {
    "threads": {"name"},
    "slices": {"goid", "stack_id"},
    "instants": {"stack_id"},
    "stacks": {"address", "file", "line", "module"},
    "args": set(),
}
NOT_NULL = {"source", "kind", "frame_kind", "table", "key"}
ARGS_TABLES = frozenset({"slices", "instants"})

SLICE_KINDS = frozenset(
    {
        "go.running",
        "go.syscall",
        "go.blocked",
        "go.runnable",
        "os.syscall",
        "os.offcpu",
        "py.sample",
    }
)
FRAME_KINDS = frozenset({"go", "c", "kernel", "python"})
CLOCK_IDS = frozenset({"monotonic", "perf_clock", "relative", "unknown"})

TABLES = tuple(SCHEMAS)

# Low-cardinality text columns are stored as categoricals (dictionary-encoded in Parquet): a
# million "os.syscall" strings would otherwise cost a million Python objects.
CATEGORICAL = {
    "source",
    "kind",
    "name",
    "frame_kind",
    "module",
    "state",
    "end_by",
    "table",
    "key",
}


def column_kind(table: str, name: str) -> str | None:
    """The kind of column *name* of *table* (contract or typed), None if it has none."""
    if name in SCHEMAS[table]:
        return SCHEMAS[table][name]
    typed = TYPED.get(table, {}).get(name)
    return typed[0] if typed else None


class SchemaError(ValueError):
    """A parser produced a table that does not match the canonical schema."""


@dataclass
class Clock:
    """Which clock a source's timestamps are on, and what else it tells about time.

    ``snapshots`` are simultaneous readings of several clocks, e.g. a Go ClockSnapshot
    ``{"trace_ns": ..., "mono_ns": ..., "wall_ns": ...}`` or perf's reference time
    ``{"mono_ns": ..., "wall_ns": ...}``.
    """

    clock_id: str = "unknown"
    resolution_ns: int = 1
    snapshots: list[dict[str, int]] = field(default_factory=list)
    note: str = ""

    def __post_init__(self) -> None:
        if self.clock_id not in CLOCK_IDS:
            raise SchemaError(f"clock_id {self.clock_id!r} not in {sorted(CLOCK_IDS)}")


@dataclass
class SourceMeta:
    """What a parser read: the provenance and the honest accounting of one source."""

    source: str
    kind: str  # go-trace | perf-script | pyspy-chrometrace | pyspy-speedscope | pyspy-raw
    path: str = ""
    format_version: str = ""
    events: Counter = field(default_factory=Counter)  # events read, by type
    skipped: Counter = field(default_factory=Counter)  # events dropped, by reason text
    ledger: Counter = field(default_factory=Counter)  # (stat, key) -> n: parsers/stats.py
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def count(self, stat: str, n: int = 1, key: str | None = None) -> None:
        """Count *n* of a declared loss (``parsers/stats.py``) into the ledger; a dropped
        event also under its reason text in ``skipped``."""
        from .stats import BY_NAME, count

        count(self.ledger, stat, n, key)
        if n and BY_NAME[stat].dropped:
            self.skipped[BY_NAME[stat].text(key)] += int(n)

    def losses(self) -> list[dict]:
        """The ledger as the outputs print it (``stats.losses``)."""
        from .stats import losses

        return losses(self.ledger, self.extra)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["events"] = dict(self.events)
        d["skipped"] = dict(self.skipped)
        del d["ledger"]
        d["losses"] = self.losses()
        d["events_total"] = sum(self.events.values())
        d["skipped_total"] = sum(self.skipped.values())
        return d


@dataclass
class Chunk:
    """Some rows of one canonical table as plain numpy columns: what a streaming reader hands
    a writer (Parquet row groups, a DataFrame) without building a DataFrame per chunk.

    ``columns`` maps a column to a numpy array (codes into ``categories[name]`` for text
    columns given that way, else values) or to a scalar for a constant column; ``nulls``
    marks null rows (True) of the nullable columns that have any.
    """

    table: str
    n: int
    columns: dict[str, Any]
    nulls: dict[str, np.ndarray] = field(default_factory=dict)
    categories: dict[str, list] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.n


def narrow_codes(chunk: Chunk) -> Chunk:
    """Categorical codes in the narrowest integer type for their categories (the one pandas
    keeps them in): shipped that way, a worker's chunk is not copied again by the parent to
    become a Categorical."""
    for name, cats in chunk.categories.items():
        v = chunk.columns.get(name)
        if isinstance(v, np.ndarray) and v.dtype.kind == "i":
            n = len(cats)
            want = (
                np.int8
                if n < 127
                else np.int16
                if n < 32767
                else np.int32
                if n < 2**31 - 1
                else np.int64
            )
            if v.dtype.itemsize > np.dtype(want).itemsize:
                chunk.columns[name] = v.astype(want)
    return chunk


@dataclass
class ChunkedSource:
    """One parsed source as Chunks (numpy only): what a worker process hands back, so that
    it never loads pandas (an interpreter with pandas is 70 MB more, through the parent's
    peak); ``model.from_chunks`` makes the DataFrames, without copying the columns."""

    meta: SourceMeta
    clock: Clock
    chunks: dict[str, Chunk]
