"""Canonical tables on disk: one Parquet file per table plus meta.json (``tracecorr tables``).

This is the road past one machine: captures from many hosts become one dataset that DuckDB,
Spark or Dask can query without tracecorr. Times stay on each source's own clock; meta.json
says which clock that is.

Every file has one fixed schema, the contract's columns plus every typed attribute column
(null where a source does not produce it, False for flags), so files from any capture stack
into one dataset. Text columns of few values are dictionary-encoded (categoricals when read
back with pandas).

Sources that can stream (a Go trace, read one generation at a time) are written as they are
read, one row group per chunk, so that writing a big trace's tables never holds them in
memory; the others are parsed whole and written. Nothing here imports pandas unless a
source needs it, so the streaming path stays small.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from .errors import InputError
from .schema import CATEGORICAL, SCHEMAS, TABLES, TYPED, Chunk, column_kind

if TYPE_CHECKING:
    from .sources import Expanded

# Arrow's own allocator keeps freed pages for reuse; a writer that streams chunk after chunk
# would see its resident size grow to the sum of its peaks. The system allocator gives them
# back (and is no slower here: measured 2.9 s against 3.3 s on a 14 MB Go trace).
pa.set_memory_pool(pa.system_memory_pool())

#: Rows per Parquet row group: the writer holds a row group's encoded pages until it is done,
#: so this bounds its memory (measured on a 3 M-slice Go trace: 256 Ki rows 220 MB peak,
#: 64 Ki rows 194 MB), and row groups this size still read efficiently.
ROW_GROUP_ROWS = 1 << 16

#: Columns whose values are mostly distinct: dictionary-encoding them costs a hash table per
#: column and gains nothing (the others, ids and names, repeat and shrink a lot).
UNIQUE_VALUES = frozenset({"ts", "dur", "address", "ret", "runq_ns", "row", "value"})

#: /2: typed attribute columns and the args long table replaced the per-row JSON ``args``
SCHEMA = "tracecorr.tables/2"
_ARROW = {
    "int64": pa.int64(),
    "Int64": pa.int64(),
    "UInt64": pa.uint64(),
    "bool": pa.bool_(),
    "boolean": pa.bool_(),
}
_DICT = pa.dictionary(pa.int32(), pa.string())


def arrow_schema(table: str) -> pa.Schema:
    """The one Parquet schema of *table*: contract columns, then every typed column."""
    fields = []
    for name in (*SCHEMAS[table], *TYPED.get(table, {})):
        kind = column_kind(table, name)
        t = (_DICT if name in CATEGORICAL else pa.string()) if kind == "str" else _ARROW[kind]
        fields.append(pa.field(name, t, nullable=kind not in ("int64", "bool")))
    return pa.schema(fields)


def _buffer_array(typ: pa.DataType, values: np.ndarray, null: np.ndarray | None) -> pa.Array:
    """A fixed-width Arrow array straight from numpy buffers. (``pa.array`` would import
    pandas to ask whether its argument is a pandas object, 50 MB for nothing here.)"""
    n = len(values)
    validity = None
    if null is not None and np.any(null):
        validity = pa.py_buffer(np.packbits(~np.asarray(null, bool), bitorder="little"))
    if typ == pa.bool_():
        data = pa.py_buffer(np.packbits(np.asarray(values, bool), bitorder="little"))
    else:
        data = pa.py_buffer(np.ascontiguousarray(values, dtype=typ.to_pandas_dtype()))
    return pa.Array.from_buffers(typ, n, [validity, data], null_count=-1)


def _string_array(values, null: np.ndarray | None = None) -> pa.Array:
    """Arrow strings from Python strings (None: null); bad bytes are kept replaced."""
    vals = list(values)
    nulls = np.array([v is None for v in vals], bool) if null is None else np.asarray(null, bool)
    enc = [
        b"" if z else str(v).encode("utf-8", "replace") for v, z in zip(vals, nulls, strict=True)
    ]
    offsets = np.zeros(len(enc) + 1, np.int64)
    offsets[1:] = np.cumsum([len(e) for e in enc])
    if offsets[-1] < 1 << 31:
        offsets = offsets.astype(np.int32)
        typ = pa.string()
    else:
        typ = pa.large_string()
    validity = pa.py_buffer(np.packbits(~nulls, bitorder="little")) if nulls.any() else None
    arr = pa.Array.from_buffers(
        typ, len(enc), [validity, pa.py_buffer(offsets), pa.py_buffer(b"".join(enc))], null_count=-1
    )
    return arr if typ == pa.string() else arr.cast(pa.string())


def _arrow_column(chunk: Chunk, f: pa.Field) -> pa.Array:
    n, name = chunk.n, f.name
    kind = column_kind(chunk.table, name)
    if name not in chunk.columns:
        if kind == "bool":
            return _buffer_array(pa.bool_(), np.zeros(n, bool), None)
        return pa.nulls(n, f.type)
    v = chunk.columns[name]
    null = chunk.nulls.get(name)
    if name in chunk.categories:
        codes = np.broadcast_to(np.asarray(v, np.int32), n)
        if null is not None:
            codes = np.where(null, 0, codes).astype(np.int32)
        idx = _buffer_array(pa.int32(), codes, null)
        arr = pa.DictionaryArray.from_arrays(idx, _string_array(chunk.categories[name]))
        return arr if f.type == _DICT else arr.cast(f.type)
    if kind == "str":
        vals = [v] * n if np.isscalar(v) or v is None else v
        arr = _string_array(vals, null)
        return arr.dictionary_encode().cast(f.type) if f.type == _DICT else arr
    if np.isscalar(v) or v is None:
        v = np.full(n, 0 if v is None else v)
        null = np.ones(n, bool) if chunk.columns[name] is None else null
    return _buffer_array(f.type, np.asarray(v), null)


def to_arrow(chunk: Chunk) -> pa.RecordBatch:
    schema = arrow_schema(chunk.table)
    return pa.RecordBatch.from_arrays([_arrow_column(chunk, f) for f in schema], schema=schema)


def frame_to_arrow(table: str, df) -> pa.Table:
    """A canonical DataFrame as an Arrow table of *table*'s fixed schema."""
    schema = arrow_schema(table)
    t = pa.Table.from_pandas(df, preserve_index=False)
    cols = []
    for f in schema:
        kind = column_kind(table, f.name)
        if f.name in t.column_names:
            c = t.column(f.name)
            if f.type == _DICT and not pa.types.is_dictionary(c.type):
                c = c.cast(pa.string()).dictionary_encode()
            cols.append(c.cast(f.type))
        elif kind == "bool":
            cols.append(pa.chunked_array([np.zeros(len(df), bool)]))
        else:
            cols.append(pa.chunked_array([pa.nulls(len(df), f.type)]))
    return pa.Table.from_arrays(cols, schema=schema)


class _Background:
    """One worker thread running jobs in order, at most *depth* waiting: Arrow conversion
    and Parquet encoding release the GIL, so a stream's next chunk is parsed meanwhile,
    while no more than a couple of chunks are held. A failed job's error is raised on the
    next submit or at close."""

    def __init__(self, depth: int = 2) -> None:
        self.jobs: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="tracecorr-parquet", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            if self.error is None:
                try:
                    job()
                except BaseException as exc:  # handed to the caller's thread
                    self.error = exc

    def submit(self, job) -> None:
        self._raise()
        self.jobs.put(job)

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


@dataclass
class TablesWriter:
    """One Parquet file per table in a directory, written incrementally, in order, by a
    background thread."""

    out: Path
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    _writers: dict[str, pq.ParquetWriter] = field(default_factory=dict)
    _bg: _Background = field(default_factory=_Background)

    def _writer(self, table: str) -> pq.ParquetWriter:
        w = self._writers.get(table)
        if w is None:
            schema = arrow_schema(table)
            w = self._writers[table] = pq.ParquetWriter(
                self.out / f"{table}.parquet",
                schema,
                use_dictionary=[f.name for f in schema if f.name not in UNIQUE_VALUES],
            )
        return w

    def write_chunk(self, chunk: Chunk) -> None:
        if chunk.n:
            self.rows[chunk.table] += chunk.n
            self._bg.submit(lambda: self._write_chunk(chunk))

    def _write_chunk(self, chunk: Chunk) -> None:
        batch = to_arrow(chunk)
        w = self._writer(chunk.table)
        for start in range(0, chunk.n, ROW_GROUP_ROWS):
            w.write_batch(batch.slice(start, ROW_GROUP_ROWS))

    def write_frame(self, table: str, df) -> None:
        if len(df):
            self.rows[table] += len(df)
            self._bg.submit(lambda: self._writer(table).write_table(frame_to_arrow(table, df)))

    def close(self) -> None:
        self._bg.close()
        for table in TABLES:  # every table has a file, empty ones too
            self._writer(table)
        for w in self._writers.values():
            w.close()


def describe(meta, clock, rows: dict[str, int]) -> dict[str, Any]:
    """meta.json entry of one source: provenance, clock, row counts."""
    return {**meta.as_dict(), "clock": asdict(clock), "rows": rows}


def _meta_json(out: Path, sources: list[dict], rows: dict[str, int]) -> dict:
    meta = {
        "schema": SCHEMA,
        "tracecorr": __version__,
        "sources": sources,
        "rows": rows,
        "note": "ts/dur are integer ns on each source's own clock (sources[].clock); "
        "the stack key is (source, stack_id); an args row names its slice or instant by "
        "(source, table, row), row = its position among that source's rows of that table",
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return meta


def write_tables(out: str | Path, sources: list) -> dict:
    """Write parsed sources (SourceTables) as ``{threads,...,args}.parquet`` + meta.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    w = TablesWriter(out)
    described = []
    for s in sources:
        before = dict(w.rows)
        for name, df in s.tables().items():
            w.write_frame(name, df)
        described.append(describe(s.meta, s.clock, _delta(w.rows, before)))
    w.close()
    return _meta_json(out, described, w.rows)


@dataclass
class Written:
    meta: dict
    skipped: list[str]
    warnings: list[str]


def write_inputs(
    out: str | Path,
    paths: Sequence[str | Path],
    ex: Expanded | None = None,
    symfs: str | Path | None = None,
) -> Written:
    """``tracecorr tables``: detect, read and write every input, streaming the sources that
    can stream. *ex*: the inputs already expanded from *paths* (by a caller that looked at
    them first); *symfs*: where perf.data's DSO paths are looked up first (default: a
    capture's archive). InputError for the first bad input."""
    from .sources import capture_pid, expand_inputs, parse_all, parser_options, source_names

    ex = expand_inputs(paths, symfs) if ex is None else ex
    if not ex.inputs:
        from .detect import known_formats_text

        raise InputError(
            ", ".join(map(str, paths)),
            f"no trace inputs found (tracecorr reads: {known_formats_text()})",
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    w = TablesWriter(out)
    described, warnings = [], []
    for (path, fmt), name in zip(ex.inputs, source_names(ex.inputs), strict=True):
        before = dict(w.rows)
        if fmt.streamer:
            src = fmt.stream()(path, source=name, pid=capture_pid(path))
            for chunk in _checked(src.chunks()):
                w.write_chunk(chunk)
            meta, clock = src.meta, src.clock
        else:
            # with helper processes where the format reads in pieces (a large perf.data)
            st = parse_all([(path, fmt.name, name, parser_options(path, fmt.name, symfs))])[0]
            for table, df in st.tables().items():
                w.write_frame(table, df)
            meta, clock = st.meta, st.clock
        described.append(describe(meta, clock, _delta(w.rows, before)))
        warnings += [f"{path}: {x}" for x in meta.warnings]
    w.close()
    return Written(_meta_json(out, described, w.rows), ex.skipped, warnings)


def _checked(chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    for c in chunks:
        lengths = {len(v) for v in c.columns.values() if not np.isscalar(v)}
        if lengths - {c.n}:
            raise ValueError(f"{c.table} chunk: columns of lengths {lengths}, n = {c.n}")
        yield c


def _delta(now: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: now[k] - before.get(k, 0) for k in now}


def read_tables(directory: str | Path) -> tuple[dict, dict]:
    """Read back what the writers wrote, as canonical DataFrames: typed columns that are
    null throughout (not produced by any source) are left out again."""
    import pandas as pd

    d = Path(directory)
    mapper = {
        pa.int64(): pd.Int64Dtype(),
        pa.uint64(): pd.UInt64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
    }
    tables = {}
    for name in TABLES:
        df = pq.read_table(d / f"{name}.parquet").to_pandas(types_mapper=mapper.get)
        for col in list(df.columns):
            kind = column_kind(name, col)
            if col in TYPED.get(name, {}) and kind != "bool" and df[col].isna().all():
                df = df.drop(columns=col)
            elif kind in ("int64", "bool"):
                df[col] = df[col].astype(kind)
            elif kind == "str" and col not in CATEGORICAL:
                df[col] = df[col].astype("string")
        tables[name] = df
    return tables, json.loads((d / "meta.json").read_text())
