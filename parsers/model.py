"""The canonical tables every parser fills (contract: see DESIGN.md, "Canonical tables").

Every input format ends up in the same four pandas DataFrames plus two small records, in the
spirit of Perfetto's trace processor (one importer per format, shared tables):

- ``threads``  one row per OS thread a source saw:      source, pid, tid, name
- ``slices``   intervals:   source, pid, tid, ts, dur, kind, name, goid, stack_id, args
- ``instants`` point events: source, pid, tid, ts, kind, name, stack_id, args
- ``stacks``   one row per frame: source, stack_id, depth (0 = leaf), function, file, line,
               module, frame_kind (go | c | kernel | python), address
- ``Clock``    which clock the source's ``ts`` values are on, its resolution, snapshots
- ``SourceMeta`` what was read: format, version, counts by event type, what was skipped and why

Times are integer nanoseconds on the **source's own clock**; alignment (correlator.align)
adds reference-clock columns later. ``goid`` and ``stack_id`` are nullable (pandas ``Int64``):
most rows have no goroutine, many have no stack. ``stack_id`` is unique within one source, so
the key of a stack across sources is (source, stack_id). ``args`` holds per-row extras (return
value, fd, prev_state, ...) as dicts in memory and as JSON text in Parquet.

The dtype table below is the single source of truth: constructors cast to it, ``validate``
checks against it, and the Parquet writer relies on it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

# Column kinds: "int64" (never null), "Int64"/"UInt64" (nullable ints), "str" (text, nullable
# unless listed in NOT_NULL), "object" (dict or JSON text).
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
        "args": "object",
    },
    "instants": {
        "source": "str",
        "pid": "int64",
        "tid": "int64",
        "ts": "int64",
        "kind": "str",
        "name": "str",
        "stack_id": "Int64",
        "args": "object",
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
}
#: Columns a parser may leave out; they are added (all null) by the constructors.
OPTIONAL: dict[str, set[str]] = {
    "threads": {"name"},
    "slices": {"goid", "stack_id", "args"},
    "instants": {"stack_id", "args"},
    "stacks": {"address", "file", "line", "module"},
}
NOT_NULL = {"source", "kind", "frame_kind"}

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

# Low-cardinality text columns are stored as categoricals: a million "os.syscall" strings
# would otherwise cost a million Python objects.
_CATEGORICAL = {"source", "kind", "frame_kind", "module"}


class SchemaError(ValueError):
    """A parser produced a table that does not match the canonical schema."""


def _constant(value: Any, kind: str, n: int) -> Any:
    """A column of *n* copies of *value* (None: nulls) without an n-element Python list."""
    if kind == "int64":
        if value is None and n:
            raise SchemaError("required int64 column is null")
        return np.full(n, value or 0, np.int64)
    if kind in ("Int64", "UInt64"):
        data = np.full(n, 0 if value is None else value, kind.lower())
        return pd.arrays.IntegerArray(data, np.full(n, value is None))
    if kind == "str":
        codes = np.full(n, -1 if value is None else 0, np.int8)
        return pd.Categorical.from_codes(codes, categories=[] if value is None else [str(value)])
    out = np.empty(n, dtype=object)
    out[:] = [value] if n else []
    return out


def _cast(values: Any, kind: str, name: str) -> pd.Series:
    if kind in ("Int64", "UInt64") and not isinstance(values, (pd.Series, pd.arrays.IntegerArray)):
        # straight to the nullable array: through a float Series, 64-bit values (kernel
        # addresses, large ids) next to a None would lose their low bits
        return pd.Series(pd.array(values, dtype=kind))
    s = values.reset_index(drop=True) if isinstance(values, pd.Series) else pd.Series(values)
    if kind == "int64":
        if s.dtype != np.int64 and s.isna().any():
            raise SchemaError(f"column {name!r} (int64) has nulls")
        return s.astype("int64")
    if kind in ("Int64", "UInt64"):
        return s.astype(kind)
    if kind == "str":
        if isinstance(s.dtype, pd.CategoricalDtype):  # already compact (parsers build codes)
            return s
        s = s.astype("string")
        return s.astype("category") if name in _CATEGORICAL else s
    return s.astype(object)


def make_table(table: str, columns: Mapping[str, Any] | None = None, **kw: Any) -> pd.DataFrame:
    """Build a canonical table from column sequences (lists, arrays or Series).

    A scalar stands for a constant column; missing optional columns are filled with nulls;
    every column is cast to its canonical dtype. ``make_table("slices", source=..., ...)``.
    """
    cols = dict(columns or {}, **kw)
    schema = SCHEMAS[table]
    unknown = set(cols) - set(schema)
    if unknown:
        raise SchemaError(f"{table}: unknown columns {sorted(unknown)}")
    lengths = {len(v) for v in cols.values() if v is not None and not np.isscalar(v)}
    if len(lengths) > 1:
        raise SchemaError(f"{table}: columns have different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    data = {}
    for name, kind in schema.items():
        v = cols.get(name)
        if v is None and name not in OPTIONAL[table] and n:
            raise SchemaError(f"{table}: column {name!r} is required")
        if v is None or np.isscalar(v):
            v = _constant(v, kind, n)
        data[name] = _cast(v, kind, name)
    return pd.DataFrame(data, copy=False)


#: One frame of a stack as parsers hand it to stacks_table, leaf first within a stack.
FRAME_FIELDS = ("function", "file", "line", "module", "frame_kind", "address")


def stacks_table(source: str, stacks: Iterable[tuple[tuple, ...]]) -> pd.DataFrame:
    """The stacks table of *stacks*: the i-th (1-based) is stack_id i, each a sequence of
    frames ``(function, file, line, module, frame_kind, address)``, leaf first."""
    rows = [
        (sid, depth, *frame)
        for sid, frames in enumerate(stacks, start=1)
        for depth, frame in enumerate(frames)
    ]
    if not rows:
        return empty_table("stacks")
    cols = dict(zip(("stack_id", "depth", *FRAME_FIELDS), zip(*rows, strict=True), strict=True))
    return make_table("stacks", source=source, **{k: list(v) for k, v in cols.items()})


def empty_table(table: str) -> pd.DataFrame:
    return make_table(table)


def _is_text(s: pd.Series) -> bool:
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = s.dtype.categories
        return len(cats) == 0 or pd.api.types.is_string_dtype(cats)
    if pd.api.types.is_string_dtype(s.dtype) and s.dtype != object:
        return True
    if s.dtype == object:
        return bool(s.map(lambda v: v is None or v is pd.NA or isinstance(v, str)).all())
    return False


def validate_table(table: str, df: pd.DataFrame) -> None:
    """Raise SchemaError unless *df* has the canonical columns, dtypes and invariants."""
    schema = SCHEMAS[table]
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise SchemaError(f"{table}: missing columns {missing}")
    for name, kind in schema.items():
        s = df[name]
        if kind in ("int64", "Int64", "UInt64"):
            if str(s.dtype) != kind:
                raise SchemaError(f"{table}.{name}: dtype {s.dtype}, expected {kind}")
        elif kind == "str" and not _is_text(s):
            raise SchemaError(f"{table}.{name}: dtype {s.dtype}, expected text")
        if name in NOT_NULL and s.isna().any():
            raise SchemaError(f"{table}.{name}: has nulls")
    if table in ("slices", "instants") and len(df) and (df["ts"] < 0).any():
        raise SchemaError(f"{table}.ts: negative timestamps")
    if table == "slices" and len(df):
        if (df["dur"] < 0).any():
            raise SchemaError("slices.dur: negative durations")
        unknown = set(df["kind"].astype(str).unique()) - SLICE_KINDS
        if unknown:
            raise SchemaError(f"slices.kind: unknown kinds {sorted(unknown)}")
    if table == "stacks" and len(df):
        unknown = set(df["frame_kind"].astype(str).unique()) - FRAME_KINDS
        if unknown:
            raise SchemaError(f"stacks.frame_kind: unknown kinds {sorted(unknown)}")
        if df.duplicated(["source", "stack_id", "depth"]).any():
            raise SchemaError("stacks: duplicate (source, stack_id, depth)")


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
    skipped: Counter = field(default_factory=Counter)  # events dropped, by reason
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] += n

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["events"] = dict(self.events)
        d["skipped"] = dict(self.skipped)
        d["events_total"] = sum(self.events.values())
        d["skipped_total"] = sum(self.skipped.values())
        return d


@dataclass
class SourceTables:
    """One parsed source: the four canonical tables plus its clock and meta."""

    meta: SourceMeta
    clock: Clock = field(default_factory=Clock)
    threads: pd.DataFrame = field(default_factory=lambda: empty_table("threads"))
    slices: pd.DataFrame = field(default_factory=lambda: empty_table("slices"))
    instants: pd.DataFrame = field(default_factory=lambda: empty_table("instants"))
    stacks: pd.DataFrame = field(default_factory=lambda: empty_table("stacks"))

    def tables(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in TABLES}

    def validate(self) -> SourceTables:
        """Check every table against the schema and that rows belong to this source."""
        for name, df in self.tables().items():
            validate_table(name, df)
            if len(df) and set(df["source"].astype(str).unique()) != {self.meta.source}:
                raise SchemaError(f"{name}: rows from sources other than {self.meta.source!r}")
        if len(self.slices) and self.slices["stack_id"].notna().any():
            known = set(self.stacks["stack_id"].tolist())
            used = set(self.slices["stack_id"].dropna().astype("int64").tolist())
            if used - known:
                raise SchemaError(f"slices reference unknown stack ids {sorted(used - known)[:5]}")
        return self

    def describe(self) -> dict[str, Any]:
        """meta.json entry: provenance, clock, row counts."""
        return {
            **self.meta.as_dict(),
            "clock": asdict(self.clock),
            "rows": {name: len(df) for name, df in self.tables().items()},
        }


def concat_tables(sources: Iterable[SourceTables]) -> dict[str, pd.DataFrame]:
    """Stack the tables of several sources (their ``source`` column keeps them apart)."""
    sources = list(sources)
    out = {}
    for name in TABLES:
        frames = [getattr(s, name) for s in sources if len(getattr(s, name))]
        if not frames:
            out[name] = empty_table(name)
            continue
        df = pd.concat(frames, ignore_index=True)
        for col in _CATEGORICAL & set(df.columns):
            df[col] = df[col].astype("string").astype("category")
        out[name] = df
    return out


def args_to_json(values: pd.Series) -> pd.Series:
    """dict/None args -> JSON text (Parquet stores text; readers json.loads it back)."""
    return values.map(
        lambda v: (
            None
            if v is None or v is pd.NA
            else v
            if isinstance(v, str)
            else json.dumps(v, sort_keys=True, default=str)
        )
    )
