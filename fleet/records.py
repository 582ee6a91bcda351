"""One capture's results as Arrow tables with fixed schemas: the rows of the fleet datasets.

Every capture's partition must have the same schema, whatever it found (no findings, no
waker, a Python service without goroutines), or DuckDB and Spark refuse to read the dataset
as one table. So the schemas are written down here, not inferred from the first rows.

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

from ..correlator.api import Analysis
from ..correlator.render.json_report import to_dict
from ..correlator.wakers import waited_in

_I64, _STR, _BOOL = pa.int64(), pa.string(), pa.bool_()
_STRINGS = pa.list_(_STR)
_WAIT = pa.struct(
    [
        ("syscall", _STR),
        ("state", _STR),
        ("start_ns", _I64),
        ("end_ns", _I64),
        ("dur_ns", _I64),
    ]
)
_WAKER = pa.struct(
    [
        ("pid", _I64),
        ("tid", _I64),
        ("comm", _STR),
        ("wakeup_ns", _I64),
        ("stack", _STRINGS),
        ("longest_wait", _WAIT),
    ]
)
_HOP = pa.struct(
    [
        ("pid", _I64),
        ("tid", _I64),
        ("comm", _STR),
        ("what", _STR),
        ("start_ns", _I64),
        ("end_ns", _I64),
    ]
)
_CENSORED = pa.struct([("reason", _STR), ("bound_by", _STR)])

BLOCKING = pa.schema(
    [
        ("pid", _I64),
        ("tid", _I64),
        ("goid", _I64),
        ("thread", _STR),
        ("comm", _STR),
        ("library", _STR),
        ("in", _STR),
        ("call", _STR),
        ("call_start_ns", _I64),
        ("call_end_ns", _I64),
        ("syscall", _STR),
        ("start_ns", _I64),
        ("end_ns", _I64),
        ("dur_ns", _I64),
        ("off_cpu_ns", _I64),
        ("off_cpu_state", _STR),
        ("restarts", _I64),
        ("censored", _CENSORED),
        ("evidence", _STRINGS),
        ("call_site", _STR),
        ("go_stack", _STRINGS),
        ("native_stack", _STRINGS),
        ("python_stack", _STRINGS),
        ("waker", _WAKER),
        ("critical_path", pa.list_(_HOP)),
        ("on_cpu_ns", _I64),
        ("runq_ns", _I64),
        ("tracer_stop_ns", _I64),
        ("p_lost", _BOOL),
        ("fd", _I64),
        ("in_inferred", _BOOL),
        ("waker_note", _STR),
        ("source", _STR),
    ]
)

FINDINGS = pa.schema(
    [
        ("kind", _STR),
        ("severity", _STR),
        ("summary", _STR),
        ("pid", _I64),
        ("fd", _I64),
        ("goroutines", pa.list_(_I64)),
        ("threads", pa.list_(_I64)),
        ("call_sites", _STRINGS),
        ("first_ns", _I64),
        ("last_ns", _I64),
        ("count", _I64),
        ("calls", _I64),
        ("detail", _STR),  # the whole finding, as the JSON report has it
    ]
)

CALLS = pa.schema(
    [
        ("source", _STR),
        ("pid", _I64),
        ("tid", _I64),
        ("goid", _I64),
        ("call", _STR),
        ("library", _STR),
        ("call_site", _STR),
        ("start_ns", _I64),
        ("end_ns", _I64),
        ("dur_ns", _I64),
        ("library_blocked_ns", _I64),
        ("runtime_ns", _I64),
        ("p_wait_ns", _I64),
        ("p_lost", _BOOL),
        ("evidence", _STR),
    ]
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
    c = calls
    cols = {
        "source": c["source"].astype(str),
        "pid": c["pid"],
        "tid": c["tid"],
        "goid": c["goid"],
        "call": c["call"].astype(str),
        "library": c["library"].astype(str),
        "call_site": c["call_site"].astype("string"),
        "start_ns": c["start"],
        "end_ns": c["end"],
        "dur_ns": c["end"] - c["start"],
        "library_blocked_ns": c["library_blocked_ns"],
        "runtime_ns": c["runtime_ns"],
        "p_wait_ns": c["p_wait_ns"],
        "p_lost": c["p_lost"],
        "evidence": c["evidence"].astype("string"),
    }
    arrays = [pa.array(pd.Series(cols[f.name]), f.type, from_pandas=True) for f in CALLS]
    return pa.Table.from_arrays(arrays, schema=CALLS)


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
