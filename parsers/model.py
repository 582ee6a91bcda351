"""The canonical tables every parser fills (contract: see DESIGN.md, "Canonical tables").

Every input format ends up in the same five pandas DataFrames plus two small records, in the
spirit of Perfetto's trace processor (one importer per format, shared tables):

- ``threads``  one row per OS thread a source saw:      source, pid, tid, name
- ``slices``   intervals:   source, pid, tid, ts, dur, kind, name, goid, stack_id
               + typed attribute columns (``TYPED``): fd, ret, restarts, state, runq_ns, ...
- ``instants`` point events: source, pid, tid, ts, kind, name, stack_id
               + typed attribute columns: waker_tid, cpu, parent_pid, parent_tid, count
- ``stacks``   one row per frame: source, stack_id, depth (0 = leaf), function, file, line,
               module, frame_kind (go | c | kernel | python), address
- ``args``     rare, free-form attributes as a long table (as Perfetto's args table):
               source, table (slices | instants), row, key, value
- ``Clock``    which clock the source's ``ts`` values are on, its resolution, snapshots
- ``SourceMeta`` what was read: format, version, counts by event type, what was skipped and why

Times are integer nanoseconds on the **source's own clock**; alignment (correlator.align)
adds reference-clock columns later. ``goid`` and ``stack_id`` are nullable (pandas ``Int64``):
most rows have no goroutine, many have no stack. ``stack_id`` is unique within one source, so
the key of a stack across sources is (source, stack_id).

No table holds a Python object per row: a 3 M-row table costs numbers. What the analysis
reads about a row is a typed column; a table carries only the typed columns its source
produces (a Go trace has no ``fd``), so a Go trace's millions of slices do not pay for perf's
attributes; ``column()`` reads one that may be absent as all-null. An ``args`` row names its
slice or instant by ``row``, the 0-based position of that row among its source's rows of that
table.

The dtype tables below are the single source of truth: constructors cast to them,
``validate`` checks against them, and the Parquet writer relies on them.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from .schema import (
    ARGS_TABLES,
    CATEGORICAL,
    CLOCK_IDS,
    FRAME_KINDS,
    NOT_NULL,
    OPTIONAL,
    SCHEMAS,
    SLICE_KINDS,
    TABLES,
    TYPED,
    Chunk,
    ChunkedSource,
    Clock,
    SchemaError,
    SourceMeta,
    column_kind,
)

__all__ = [
    "ARGS_TABLES",
    "CLOCK_IDS",
    "FRAME_KINDS",
    "NOT_NULL",
    "OPTIONAL",
    "SCHEMAS",
    "SLICE_KINDS",
    "TABLES",
    "TYPED",
    "Chunk",
    "Clock",
    "SchemaError",
    "SourceMeta",
    "SourceTables",
    "args_of",
    "args_table",
    "column",
    "column_kind",
    "concat_frames",
    "concat_tables",
    "empty_table",
    "frame",
    "from_chunks",
    "keep_rows",
    "make_table",
    "stacks_table",
    "validate_table",
    "with_all_columns",
]


def _constant(value: Any, kind: str, n: int) -> Any:
    """A column of *n* copies of *value* (None: nulls) without an n-element Python list."""
    if kind == "int64":
        if value is None and n:
            raise SchemaError("required int64 column is null")
        return np.full(n, value or 0, np.int64)
    if kind in ("Int64", "UInt64"):
        data = np.full(n, 0 if value is None else value, kind.lower())
        return pd.arrays.IntegerArray(data, np.full(n, value is None))
    if kind == "bool":
        return np.full(n, bool(value))
    if kind == "boolean":
        return pd.arrays.BooleanArray(np.full(n, bool(value)), np.full(n, value is None))
    codes = np.full(n, -1 if value is None else 0, np.int8)
    return pd.Categorical.from_codes(codes, categories=[] if value is None else [str(value)])


def _cast(values: Any, kind: str, name: str) -> pd.Series:
    if kind in ("Int64", "UInt64") and not isinstance(values, (pd.Series, pd.arrays.IntegerArray)):
        if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
            # no nulls: the array itself, with an all-valid mask (no copy)
            data = values.astype(kind.lower(), copy=False)
            return pd.Series(pd.arrays.IntegerArray(data, np.zeros(len(data), bool)), copy=False)
        # straight to the nullable array: through a float Series, 64-bit values (kernel
        # addresses, large ids) next to a None would lose their low bits
        return pd.Series(pd.array(values, dtype=kind), copy=False)
    if kind == "boolean" and not isinstance(values, (pd.Series, pd.arrays.BooleanArray)):
        return pd.Series(pd.array(values, dtype="boolean"), copy=False)
    if isinstance(values, pd.Series):
        s = values.reset_index(drop=True)
    elif isinstance(values, pd.api.extensions.ExtensionArray) or (
        isinstance(values, np.ndarray) and values.flags.writeable
    ):
        # a column built for this table: no copy (pandas 3 copies arrays by default, which
        # held every column of a 3 M-row table twice while the frame was being made)
        s = pd.Series(values, copy=False)
    else:
        s = pd.Series(values)
    if kind in ("int64", "bool"):
        if s.dtype != np.dtype(kind) and s.isna().any():
            raise SchemaError(f"column {name!r} ({kind}) has nulls")
        return s.astype(kind)
    if kind in ("Int64", "UInt64", "boolean"):
        return s.astype(kind)
    if isinstance(s.dtype, pd.CategoricalDtype):  # already compact (parsers build codes)
        return s
    s = s.astype("string")
    return s.astype("category") if name in CATEGORICAL else s


def make_table(table: str, columns: Mapping[str, Any] | None = None, /, **kw: Any) -> pd.DataFrame:
    """Build a canonical table from column sequences (lists, arrays or Series).

    A scalar stands for a constant column; missing optional columns are filled with nulls;
    typed attribute columns (``TYPED``) are kept when given; every column is cast to its
    canonical dtype. ``make_table("slices", source=..., ..., fd=...)``.
    """
    cols = dict(columns or {}, **kw)
    schema = SCHEMAS[table]
    typed = TYPED.get(table, {})
    unknown = set(cols) - set(schema) - set(typed)
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
    for name, (kind, _) in typed.items():
        if name in cols:
            v = cols[name]
            data[name] = _cast(
                _constant(v, kind, n) if v is None or np.isscalar(v) else v, kind, name
            )
    return pd.DataFrame(data, copy=False)


def frame(chunk: Chunk) -> pd.DataFrame:
    """The canonical DataFrame of a Chunk (no per-row Python objects for coded columns)."""
    cols: dict[str, Any] = {}
    for name, v in chunk.columns.items():
        kind = column_kind(chunk.table, name)
        null = chunk.nulls.get(name)
        if name in chunk.categories:
            codes = np.asarray(v)
            if null is not None:
                codes = np.where(null, -1, codes)
            v = pd.Categorical.from_codes(codes, categories=chunk.categories[name])
        elif null is not None and kind in ("Int64", "UInt64"):
            v = pd.arrays.IntegerArray(
                np.asarray(v).astype(kind.lower(), copy=False), np.asarray(null, bool)
            )
        elif null is not None and kind == "boolean":
            v = pd.arrays.BooleanArray(np.asarray(v, bool), np.asarray(null, bool))
        elif kind == "str" and isinstance(v, np.ndarray) and v.dtype != object:
            v = v.astype(object)
        cols[name] = v
    return make_table(chunk.table, cols) if chunk.n else empty_table(chunk.table)


def from_chunks(cs: ChunkedSource) -> SourceTables:
    """The SourceTables of a ChunkedSource (its columns become the tables' own)."""
    return SourceTables(
        meta=cs.meta, clock=cs.clock, **{name: frame(c) for name, c in cs.chunks.items()}
    )


def column(df: pd.DataFrame, table: str, name: str) -> pd.Series:
    """Column *name* of a canonical table, or an all-null one of its typed dtype when the
    source did not produce it (False for flags)."""
    if name in df.columns:
        return df[name]
    kind = column_kind(table, name)
    if kind is None:
        raise KeyError(f"{table} has no column {name!r}")
    return pd.Series(_constant(None, kind, len(df)), index=df.index, name=name)


def args_of(args: pd.DataFrame, table: str, key: str) -> pd.Series:
    """The values of one free-form attribute, indexed by row (of *table*, one source)."""
    a = args[(args["table"] == table).to_numpy() & (args["key"] == key).to_numpy()]
    return pd.Series(a["value"].to_numpy(), index=a["row"].to_numpy(), name=key)


def args_table(source: str, table: str, rows: Iterable[int], items: Iterable[dict]) -> pd.DataFrame:
    """An args long table from one dict of attributes per row (rare rows only)."""
    out: dict[str, list] = {"row": [], "key": [], "value": []}
    for row, attrs in zip(rows, items, strict=True):
        for k, v in attrs.items():
            if v is None:
                continue
            out["row"].append(int(row))
            out["key"].append(str(k))
            out["value"].append(str(v))
    if not out["row"]:
        return empty_table("args")
    return make_table("args", source=source, table=table, **out)


def keep_rows(
    tables: Mapping[str, pd.DataFrame], args: pd.DataFrame, keep: Mapping[str, np.ndarray]
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Filter tables by boolean masks and renumber the args rows that point into them."""
    out = dict(tables)
    parts = [args[~args["table"].isin(list(keep))]] if len(args) else []
    for name, mask in keep.items():
        out[name] = tables[name][mask].reset_index(drop=True)
        if len(args):
            new_row = np.cumsum(mask) - 1
            a = args[(args["table"] == name).to_numpy()]
            a = a[mask[a["row"].to_numpy()]]
            parts.append(a.assign(row=new_row[a["row"].to_numpy()]))
    merged = pd.concat(parts, ignore_index=True) if parts else args
    return out, merged if len(merged) else empty_table("args")


#: One frame of a stack as parsers hand it to stacks_table, leaf first within a stack.
FRAME_FIELDS = ("function", "file", "line", "module", "frame_kind", "address")


def stacks_table(source: str, stacks: Iterable[tuple[tuple, ...]]) -> pd.DataFrame:
    """The stacks table of *stacks*: the i-th (1-based) is stack_id i, each a sequence of
    frames ``(function, file, line, module, frame_kind, address)``, leaf first.

    Stacks share most of their frames (a few thousand distinct frames make hundreds of
    thousands of rows), so each distinct frame is converted once and the rows take their
    columns from the distinct frames by id: no Python object per row."""
    ids: dict[tuple, int] = {}
    distinct: list[tuple] = []
    fid, sid, depth = array("q"), array("q"), array("q")
    for stack_id, frames in enumerate(stacks, start=1):
        for frame in frames:
            i = ids.get(frame)
            if i is None:
                i = ids[frame] = len(distinct)
                distinct.append(frame)
            fid.append(i)
        n = len(frames)
        sid.extend([stack_id] * n)
        depth.extend(range(n))
    if not len(fid):
        return empty_table("stacks")
    return _stacks_frame(
        source,
        distinct,
        np.frombuffer(fid, np.int64),
        np.frombuffer(sid, np.int64),
        np.frombuffer(depth, np.int64),
    )


def stacks_table_of(
    source: str, stacks: Sequence[tuple], frame: Callable[[Any], tuple]
) -> pd.DataFrame:
    """``stacks_table`` of stacks whose frames are in a parser's own form, which *frame*
    turns into the six fields (it must map distinct frames to distinct tuples). The
    frames of every stack are numbered in one hashing pass (pandas' factorize, in order
    of first appearance as stacks_table numbers them) and converted once each: a perf
    capture's hundreds of thousands of frame rows are a few thousand distinct frames."""
    lengths = np.fromiter(map(len, stacks), np.int64, len(stacks))
    total = int(lengths.sum())
    if not total:
        return empty_table("stacks")
    fid, uniques = pd.factorize(np.fromiter(chain.from_iterable(stacks), object, total))
    sid = np.repeat(np.arange(1, len(stacks) + 1, dtype=np.int64), lengths)
    depth = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return _stacks_frame(source, [frame(f) for f in uniques], fid.astype(np.int64), sid, depth)


def _stacks_frame(
    source: str, distinct: list[tuple], take: np.ndarray, sid: np.ndarray, depth: np.ndarray
) -> pd.DataFrame:
    """The stacks table from the distinct frames and, per row, its frame, stack and depth."""
    cols: dict[str, Any] = {}
    schema = SCHEMAS["stacks"]
    for k, name in enumerate(FRAME_FIELDS):
        values = [f[k] for f in distinct]
        kind = schema[name]
        if kind in ("Int64", "UInt64"):
            cols[name] = pd.array(values, dtype=kind).take(take)
        elif name in CATEGORICAL:
            # categories as make_table would sort them; codes taken per row
            cat = pd.Categorical(pd.array(values, dtype="string"))
            cols[name] = pd.Categorical.from_codes(cat.codes[take], dtype=cat.dtype)
        else:
            cols[name] = pd.array(values, dtype="string").take(take)
    return make_table("stacks", source=source, stack_id=sid, depth=depth, **cols)


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
    extra = [c for c in df.columns if column_kind(table, c) is None]
    if extra:
        raise SchemaError(f"{table}: unknown columns {extra}")
    for name in df.columns:
        kind = column_kind(table, name)
        s = df[name]
        if kind in ("int64", "Int64", "UInt64", "bool", "boolean"):
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
class SourceTables:
    """One parsed source: the five canonical tables plus its clock and meta."""

    meta: SourceMeta
    clock: Clock = field(default_factory=Clock)
    threads: pd.DataFrame = field(default_factory=lambda: empty_table("threads"))
    slices: pd.DataFrame = field(default_factory=lambda: empty_table("slices"))
    instants: pd.DataFrame = field(default_factory=lambda: empty_table("instants"))
    stacks: pd.DataFrame = field(default_factory=lambda: empty_table("stacks"))
    args: pd.DataFrame = field(default_factory=lambda: empty_table("args"))

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
        for table in ARGS_TABLES:
            rows = self.args.loc[(self.args["table"] == table).to_numpy(), "row"]
            if len(rows) and (rows.min() < 0 or rows.max() >= len(getattr(self, table))):
                raise SchemaError(f"args: rows outside the {table} table")
        if len(self.args) and not set(self.args["table"].astype(str)) <= ARGS_TABLES:
            raise SchemaError(f"args: table must be one of {sorted(ARGS_TABLES)}")
        return self

    def describe(self) -> dict[str, Any]:
        """meta.json entry: provenance, clock, row counts."""
        return {
            **self.meta.as_dict(),
            "clock": asdict(self.clock),
            "rows": {name: len(df) for name, df in self.tables().items()},
        }


def with_all_columns(table: str, frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """*frames* of one table with the union of their typed columns, the absent ones added
    all-null in their own dtype (so stacking them never turns Int64 into float or object)."""
    present = {c for f in frames for c in f.columns}
    order = [c for c in (*SCHEMAS[table], *TYPED.get(table, {})) if c in present]
    order += [c for c in dict.fromkeys(c for f in frames for c in f.columns) if c not in order]
    return [
        f.assign(
            **{
                c: column(f, table, c)
                for c in order
                if c not in f.columns and column_kind(table, c)
            }
        ).reindex(columns=order)
        for f in frames
    ]


def concat_tables(sources: Iterable[SourceTables]) -> dict[str, pd.DataFrame]:
    """Stack the tables of several sources (their ``source`` column keeps them apart)."""
    sources = list(sources)
    out = {}
    for name in TABLES:
        frames = [getattr(s, name) for s in sources if len(getattr(s, name))]
        if not frames:
            out[name] = empty_table(name)
            continue
        df = concat_frames(with_all_columns(name, frames))
        for col in CATEGORICAL & set(df.columns):
            if not isinstance(df[col].dtype, pd.CategoricalDtype):
                df[col] = df[col].astype("string").astype("category")
        out[name] = df
    return out


def concat_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """``pd.concat`` that keeps categorical columns categorical (their categories united
    first), instead of going through one Python string object per row."""
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    cats = [
        c
        for c in frames[0].columns
        if all(c in f.columns and isinstance(f[c].dtype, pd.CategoricalDtype) for f in frames)
    ]
    if cats:
        frames = [f.copy(deep=False) for f in frames]
        for c in cats:
            if len({f[c].cat.categories.dtype for f in frames}) > 1:  # object vs string
                for f in frames:
                    cat = f[c].cat
                    f[c] = pd.Categorical.from_codes(
                        cat.codes, categories=pd.Index(cat.categories.tolist(), dtype=object)
                    )
            union = pd.api.types.union_categoricals([f[c] for f in frames], ignore_order=True)
            for f in frames:
                f[c] = f[c].cat.set_categories(union.categories)
    return pd.concat(frames, ignore_index=True)
