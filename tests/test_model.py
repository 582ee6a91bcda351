"""The canonical tables: constructors cast to the contract, validation catches violations."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tracecorr.parsers.columns import str_values
from tracecorr.parsers.model import (
    SCHEMAS,
    Clock,
    SchemaError,
    SourceMeta,
    SourceTables,
    args_of,
    args_table,
    column,
    concat_tables,
    empty_table,
    keep_rows,
    make_table,
    validate_table,
)
from tracecorr.parsers.store import read_tables, write_tables


def slices(**over):
    cols = dict(
        source="s",
        pid=[10, 10],
        tid=[11, 12],
        ts=[100, 200],
        dur=[5, 0],
        kind=["os.syscall", "go.syscall"],
        name=["read", "main._Cfunc_redisCommand"],
        goid=[None, 7],
        stack_id=[1, None],
        ret=[3, None],
        p_lost=[None, True],
        end_unknown=[False, True],
    )
    cols.update(over)
    return make_table("slices", cols)


def stacks(source="s"):
    return make_table(
        "stacks",
        source=source,
        stack_id=[1, 1],
        depth=[0, 1],
        function=["read", "redisBufferRead"],
        module=["libc.so.6", "libhiredis"],
        frame_kind=["c", "c"],
        address=[0xFFFFFFFF81415B70, None],
    )


def test_constructor_casts_to_contract_dtypes():
    df = slices()
    assert {c: str(t) for c, t in df.dtypes.items()} == {
        "source": "category",
        "pid": "int64",
        "tid": "int64",
        "ts": "int64",
        "dur": "int64",
        "kind": "category",
        "name": "category",
        "goid": "Int64",
        "stack_id": "Int64",
        "ret": "Int64",
        "p_lost": "boolean",
        "end_unknown": "bool",
    }
    assert df["goid"].isna().tolist() == [True, False]
    validate_table("slices", df)


def test_typed_columns_absent_read_as_null_and_unknown_ones_are_refused():
    df = slices()
    assert (
        column(df, "slices", "fd").isna().all() and str(column(df, "slices", "fd").dtype) == "Int64"
    )
    assert not column(df, "slices", "lost_inside").any()
    with pytest.raises(SchemaError, match="unknown columns"):
        validate_table("slices", df.assign(colour=["red", "blue"]))
    with pytest.raises(SchemaError, match="expected bool"):
        validate_table("slices", df.assign(end_unknown=df["end_unknown"].astype(object)))


def test_args_rows_point_into_their_table_and_survive_filtering():
    meta = SourceMeta(source="s", kind="perf-script")
    inst = make_table(
        "instants",
        source="s",
        pid=[1, 2, 1],
        tid=[1, 2, 1],
        ts=[1, 2, 3],
        kind="perf.record",
        name=["a", "b", "c"],
    )
    args = args_table("s", "instants", [1, 2], [{"text": "B"}, {"text": "C", "n": 3}])
    SourceTables(meta=meta, instants=inst, args=args).validate()
    with pytest.raises(SchemaError, match="rows outside"):
        SourceTables(meta=meta, instants=inst.iloc[:1], args=args).validate()
    kept, a = keep_rows({"instants": inst}, args, {"instants": (inst["pid"] == 1).to_numpy()})
    SourceTables(meta=meta, instants=kept["instants"], args=a).validate()
    assert args_of(a, "instants", "text").to_dict() == {1: "C"}  # "c" is now row 1
    assert kept["instants"]["name"].tolist() == ["a", "c"]


def test_every_empty_table_is_valid():
    for name in SCHEMAS:
        df = empty_table(name)
        assert list(df.columns) == list(SCHEMAS[name])
        validate_table(name, df)


def test_kernel_addresses_fit():
    df = stacks()
    assert df["address"].dtype == "UInt64" and df["address"][0] == 0xFFFFFFFF81415B70


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.drop(columns=["goid"]), "missing columns"),
        (lambda d: d.assign(ts=d["ts"].astype("float64")), "expected int64"),
        (lambda d: d.assign(goid=d["goid"].astype("float64")), "expected Int64"),
        (lambda d: d.assign(dur=[-1, 0]), "negative durations"),
        (lambda d: d.assign(ts=[-5, 0]), "negative timestamps"),
        (lambda d: d.assign(kind=["os.syscall", "bogus"]), "unknown kinds"),
        (lambda d: d.assign(kind=[None, "os.syscall"]), "has nulls"),
        (lambda d: d.assign(name=[1, 2]), "expected text"),
    ],
)
def test_validation_catches(mutate, message):
    with pytest.raises(SchemaError, match=message):
        validate_table("slices", mutate(slices()))


def test_constructor_rejects_bad_columns():
    with pytest.raises(SchemaError, match="unknown columns"):
        make_table("threads", source="s", pid=[1], tid=[1], name=["x"], colour=["red"])
    with pytest.raises(SchemaError, match="different lengths"):
        make_table("threads", source="s", pid=[1, 2], tid=[1], name=["x"])
    with pytest.raises(SchemaError, match="required"):
        make_table("threads", source="s", tid=[1])
    with pytest.raises(SchemaError, match="has nulls"):
        make_table("threads", source="s", pid=[None], tid=[1])


def test_source_tables_checks_stack_references_and_ownership():
    meta = SourceMeta(source="s", kind="perf-script")
    st_ok = SourceTables(meta=meta, slices=slices(), stacks=stacks())
    st_ok.validate()
    with pytest.raises(SchemaError, match="unknown stack ids"):
        SourceTables(meta=meta, slices=slices(stack_id=[9, None]), stacks=stacks()).validate()
    with pytest.raises(SchemaError, match="other than"):
        SourceTables(meta=meta, slices=slices(source="t"), stacks=stacks()).validate()
    with pytest.raises(SchemaError, match="duplicate"):
        validate_table("stacks", pd.concat([stacks(), stacks()], ignore_index=True))
    with pytest.raises(SchemaError, match="clock_id"):
        Clock(clock_id="sundial")


def test_meta_accounts_for_skips():
    m = SourceMeta(source="s", kind="perf-script")
    m.events["sys_enter"] += 3
    m.count("perf_unparsable_line")
    m.count("perf_unparsable_line", 2)
    m.count("perf_lost_events", 5)  # a note: counted in the ledger, not as dropped
    d = m.as_dict()
    assert d["skipped"] == {"unparsable lines": 3} and d["skipped_total"] == 3
    assert [(x["name"], x["severity"], x["count"]) for x in d["losses"]] == [
        ("perf_unparsable_line", "error", 3),
        ("perf_lost_events", "data-loss", 5),
    ]
    with pytest.raises(KeyError, match="undeclared stat"):
        m.count("something new")
    assert d["events_total"] == 3


def test_parquet_roundtrip_keeps_dtypes_and_values(tmp_path):
    a = SourceTables(
        meta=SourceMeta(source="s", kind="perf-script"),
        clock=Clock("monotonic", 1, [{"mono_ns": 5, "wall_ns": 9}]),
        slices=slices(),
        stacks=stacks(),
    )
    b = SourceTables(
        meta=SourceMeta(source="t", kind="go-trace"),
        clock=Clock("monotonic", 64),
        slices=slices(source="t"),
        stacks=stacks("t"),
        threads=make_table("threads", source="t", pid=[10], tid=[11], name=[None]),
    )
    meta = write_tables(tmp_path, [a.validate(), b.validate()])
    tables, meta_back = read_tables(tmp_path)
    assert meta_back == json.loads(json.dumps(meta, default=str))
    assert meta_back["rows"] == {"threads": 1, "slices": 4, "instants": 0, "stacks": 4, "args": 0}
    assert [s["clock"]["resolution_ns"] for s in meta_back["sources"]] == [1, 64]
    for name, df in tables.items():
        validate_table(name, df)
    s = tables["slices"]
    assert s["goid"].isna().tolist()[:2] == [True, False] and s["goid"][1] == 7
    assert s["ret"][0] == 3 and pd.isna(s["ret"][1])
    assert s["p_lost"].isna().tolist()[:2] == [True, False] and s["end_unknown"].tolist()[:2] == [
        False,
        True,
    ]
    assert tables["stacks"]["address"].dtype == "UInt64"
    assert sorted(s["source"].astype(str).unique()) == ["s", "t"]


def test_concat_of_nothing_is_empty_but_valid():
    out = concat_tables([])
    for name, df in out.items():
        validate_table(name, df)


ROW_FIELDS = ("pid", "tid", "ts", "dur", "kind", "name", "goid", "stack_id")
row = st.fixed_dictionaries(
    {
        "pid": st.integers(0, 2**22),
        "tid": st.integers(0, 2**22),
        "ts": st.integers(0, 2**62),
        "dur": st.integers(0, 2**40),
        "kind": st.sampled_from(
            sorted(
                [
                    "go.running",
                    "go.syscall",
                    "os.syscall",
                    "os.offcpu",
                    "py.sample",
                    "go.blocked",
                    "go.runnable",
                ]
            )
        ),
        "name": st.text(max_size=20),
        "goid": st.none() | st.integers(0, 2**40),
        "stack_id": st.none(),
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(row, max_size=30))
def test_any_well_formed_rows_validate_and_roundtrip(tmp_path_factory, rows):
    cols = {k: [r[k] for r in rows] for k in ROW_FIELDS} if rows else {}
    df = make_table("slices", dict(cols, source="x") if rows else None)
    validate_table("slices", df)
    d = tmp_path_factory.mktemp("rt")
    write_tables(d, [SourceTables(meta=SourceMeta(source="x", kind="t"), slices=df)])
    back, _ = read_tables(d)
    got = back["slices"]
    assert got["ts"].tolist() == df["ts"].tolist()
    assert got["goid"].isna().tolist() == df["goid"].isna().tolist()
    assert got["name"].tolist() == df["name"].tolist()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.sampled_from(["read", "futex", "S", "", "nan", "é"]))),
    st.sampled_from(["category", "string", "object"]),
)
def test_str_values_is_astype_str(values, dtype):
    """The codes path of str_values equals pandas' own astype(str), nulls included."""
    s = pd.Series(values, dtype=dtype)
    got = str_values(s)
    want = s.astype(str).to_numpy(object)
    assert got.dtype == object and len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert (g == w and type(g) is type(w)) or (pd.isna(g) and pd.isna(w)), (g, w)
