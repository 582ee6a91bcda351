"""One capture's results as Arrow tables with fixed schemas: the rows of the fleet datasets.

Every capture's partition must have the same schema, whatever it found (no findings, no
waker, a Python service without goroutines), or DuckDB and Spark refuse to read the dataset
as one table. So the schemas are derived from ``correlator/schema.py``, the declaration of
every correlator column, never inferred from the first rows.

- ``blocking``: one row per record of ``tracecorr report --json``'s ``blocking`` list, the same
  fields with the same nesting (``waker`` a struct, ``critical_path`` a list of structs), so a
  row read back is the report's record.
- ``findings``: the columns worth querying (kind, severity, pid, goroutines...) and
  ``detail``, the whole finding as the report's JSON, since each kind has its own fields.
- ``calls``: the library calls (``Analysis.calls``), one row per call, on the reference clock.
"""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa

from ..correlator import schema
from ..correlator.api import Analysis
from ..correlator.describe import waited_in
from ..correlator.render.json_report import to_dict

#: the Arrow type of each schema.py column type
_TYPES = {
    "int": pa.int64(),
    "str": pa.string(),
    "bool": pa.bool_(),
    "strings": pa.list_(pa.string()),
    "ints": pa.list_(pa.int64()),
}


def arrow_type(type_: str) -> pa.DataType:
    """A schema.py column type as Arrow: structs field by field, ``list:X`` as a list."""
    if type_ in _TYPES:
        return _TYPES[type_]
    if type_.startswith("list:"):
        return pa.list_(arrow_type(type_[5:]))
    return pa.struct([(c.name, arrow_type(c.type)) for c in schema.STRUCTS[type_]])


BLOCKING = pa.schema([(c.name, arrow_type(c.type)) for c in schema.RECORD])
FINDINGS = pa.schema(
    [(c.name, arrow_type(c.type)) for c in schema.FINDINGS]
    + [("detail", pa.string())]  # the whole finding, as the JSON report has it
)
#: the library calls, with their exported names (``start`` is ``start_ns`` here)
_CALL_COLUMNS = [c for c in schema.CALLS if c.export]
CALLS = pa.schema(
    [(c.export, arrow_type("str" if c.type == "category" else c.type)) for c in _CALL_COLUMNS]
)

SCHEMAS = {"blocking": BLOCKING, "findings": FINDINGS, "calls": CALLS}
NO_WAKER = "(no waker recorded)"


def unknown_fields(value, type_: pa.DataType, path: str = "") -> list[str]:
    """Fields of *value* (a record, at any depth: the waker's ``longest_wait``, each hop of
    ``critical_path``) that *type_* has no place for. Arrow drops such keys silently."""
    if isinstance(value, dict) and pa.types.is_struct(type_):
        names = {type_.field(i).name: type_.field(i).type for i in range(type_.num_fields)}
        out = [f"{path}{k}" for k in value if k not in names]
        for k, v in value.items():
            if k in names:
                out += unknown_fields(v, names[k], f"{path}{k}.")
        return out
    if isinstance(value, list) and pa.types.is_list(type_):
        return [x for v in value for x in unknown_fields(v, type_.value_type, path)]
    return []


_BLOCKING_ROW = pa.struct(list(BLOCKING))


def blocking_table(records: list[dict]) -> pa.Table:
    """The report's blocking records as rows. A field the schema does not know, at any
    depth, is a bug here (the report grew a field): refused, never silently dropped."""
    for r in records:
        extra = unknown_fields(r, _BLOCKING_ROW)
        if extra:
            raise ValueError(f"blocking record fields missing from the dataset schema: {extra}")
    return pa.Table.from_pylist(records, schema=BLOCKING)


def findings_table(findings: list[dict]) -> pa.Table:
    rows = [
        {
            **{k: f.get(k) for k in FINDINGS.names if k != "detail"},
            "detail": json.dumps(f, sort_keys=True),
        }
        for f in findings
    ]
    return pa.Table.from_pylist(rows, schema=FINDINGS)


def calls_table(calls: pd.DataFrame) -> pa.Table:
    if not len(calls):
        return CALLS.empty_table()
    cols = calls.assign(dur_ns=calls["end"] - calls["start"])
    arrays = [
        pa.array(_exported(cols[c.name], c.type), f.type, from_pandas=True)
        for c, f in zip(_CALL_COLUMNS, CALLS, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=CALLS)


def _exported(col: pd.Series, type_: str) -> pd.Series:
    """A calls column as the dataset holds it: categoricals as text (null stays null)."""
    if type_ == "category":
        return col.astype("string")
    return pd.Series(col)


def capture_tables(a: Analysis, report: dict | None = None) -> dict[str, pa.Table]:
    """The three tables of one analysed capture (*report*: its ``to_dict``, if made)."""
    report = report if report is not None else to_dict(a)
    return {
        "blocking": blocking_table(report["blocking"]),
        "findings": findings_table(report["findings"]),
        "calls": calls_table(a.calls),
    }


def waker_label(waker: dict | None) -> str:
    """What held a record up, in a few words that stay the same across hosts: the waker's
    command and what it waited in meanwhile (pids, tids and addresses differ from run to
    run; "redis-server in clock_nanosleep" does not)."""
    if not waker:
        return NO_WAKER
    meanwhile = waited_in(waker)
    comm = waker.get("comm") or "?"
    return f"{comm} in {meanwhile}" if meanwhile else comm
