"""The correlator's steps hold to their declarations (correlator/step.py, schema.py).

Statically: every column a step adds is declared in the schema, under that step's name; every
column it reads was added by a parser or an earlier step. On real captures: each step, run
again on inputs cut down to what it declares it reads, gives the same result, and adds no
column it does not declare. The README's Architecture table is the one the steps make."""

from __future__ import annotations

import re

import pytest
from tracecorr.correlator import pipeline, schema
from tracecorr.correlator.api import analyze
from tracecorr.correlator.libraries import library
from tracecorr.correlator.render.json_report import to_json
from tracecorr.correlator.step import step
from tracecorr.correlator.tables import Tables
from tracecorr.parsers.schema import SCHEMAS, TYPED
from tracecorr.parsers.sources import begin_loading

from tests.conftest import ROOT, SAMPLES

#: set before the first step
INPUTS = {"sources", "paths", "library", "min_block_ns", "pyspy_offset_ns", "warnings"}
#: the canonical columns a frame starts from (the parsers' slices)
_SLICES = set(SCHEMAS["slices"]) | set(TYPED["slices"])
CANONICAL = {"intervals": _SLICES, "aligned_slices": _SLICES}
CAPTURES = [
    SAMPLES / "go_hiredis",
    SAMPLES / "py_hiredis",
    *sorted((SAMPLES / "regressions").iterdir()),
]


def _declared(field: str) -> dict[str, str]:
    return {c.name: c.step for c in schema.FRAMES.get(field, ())}


def test_every_step_reads_what_came_before_and_adds_what_the_schema_declares():
    fields = set(Tables.field_names())
    available: dict[str, set[str]] = {}
    set_fields = set(INPUTS)
    for s in pipeline.STEPS + pipeline.SUPPORT:
        assert set(s.reads) <= fields and set(s.adds) <= fields, s.name
        for name, cols in s.reads.items():
            assert name in set_fields, f"{s.name} reads {name}, which no earlier step sets"
            missing = {c for c in cols if c != "*"} - available.get(name, set())
            if name in schema.FRAMES:
                assert not missing, f"{s.name} reads {name} columns no earlier step adds: {missing}"
        for name, cols in s.adds.items():
            set_fields.add(name)
            if name not in schema.FRAMES:
                assert not cols, f"{s.name}: {name} is not a frame"
                continue
            declared = _declared(name)
            inherited = set(CANONICAL.get(name, set()))
            if "*" in cols:
                for r, rc in s.reads.items():
                    if "*" in rc and r in available:
                        inherited |= available[r]
            for c in cols:
                if c == "*" or c in inherited or c in available.get(name, set()):
                    continue
                assert c in declared, f"{s.name} adds {name}.{c}, not declared in schema.py"
                assert declared[c] == s.name, f"{name}.{c} is declared as {declared[c]}'s"
            available[name] = available.get(name, set()) | inherited | {c for c in cols if c != "*"}


def test_every_declared_column_is_added_by_its_step():
    by_name = {s.name: s for s in pipeline.STEPS + pipeline.SUPPORT}
    for field, cols in schema.FRAMES.items():
        for c in cols:
            if c.step == "export":  # written by the exporters (fleet's dur_ns)
                continue
            assert c.step in by_name, f"{field}.{c.name}: no step {c.step}"
            # added to this frame, or to the one it carries on (calls are cgo's rows)
            adds = {x for cols_ in by_name[c.step].adds.values() for x in cols_}
            assert c.name in adds, f"{c.step} does not add {field}.{c.name}"


def _tables(path) -> tuple[Tables, list[str]]:
    loaded = begin_loading([str(path)], {}, 1).finish()
    return Tables(
        sources=loaded.sources,
        paths=loaded.paths,
        library=library("hiredis", []),
        min_block_ns=1_000_000,
        warnings=tuple(loaded.warnings()),
    ), loaded.skipped


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_steps_hold_to_their_declarations_on_real_captures(path):
    t, skipped = _tables(path)
    checked = pipeline.run(t, check=True)
    # the checked run is the run: the report is the one analyze gives
    from tracecorr.correlator.api import analysis_of

    assert to_json(analysis_of(checked, skipped)) == to_json(analyze([str(path)]))
    assert checked.blocking is not None and list(checked.blocking.columns) == schema.RECORD_NAMES
    # and the renderers' support steps, on what an Analysis keeps
    pipeline.run(pipeline.kept_for_support(checked), pipeline.SUPPORT, check=True)


def _small_tables() -> Tables:
    t, _ = _tables(SAMPLES / "go_hiredis")
    return pipeline.run(t, pipeline.STEPS[:3])  # up to perf_intervals


def test_a_step_adding_an_undeclared_column_fails():
    @step(reads={"intervals": ("*",)}, adds={"intervals": ("start",)})
    def sneaky(t: Tables) -> dict:
        return {"intervals": t.intervals.assign(surprise=1)}

    with pytest.raises(pipeline.ContractError, match="undeclared intervals columns"):
        pipeline.run(_small_tables(), [sneaky], check=True)


def test_a_step_reading_an_undeclared_column_fails():
    @step(reads={"intervals": ("start",)}, adds={"candidates": ("*",)})
    def nosy(t: Tables) -> dict:
        iv = t.intervals
        return {"candidates": iv[iv["dur"] > 0][["start"]]}  # dur: not declared

    with pytest.raises(pipeline.ContractError, match="reads undeclared"):
        pipeline.run(_small_tables(), [nosy], check=True)


def test_a_step_reading_an_undeclared_field_fails():
    @step(reads={"intervals": ("start",)}, adds={"min_block_ns": ()})
    def peeks(t: Tables) -> dict:
        return {"min_block_ns": len(t.perf.tables.slices)}  # perf: not declared

    with pytest.raises(pipeline.ContractError):
        pipeline.run(_small_tables(), [peeks], check=True)


def test_readme_architecture_is_the_steps():
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- steps:begin -->\n(.*?)<!-- steps:end -->", text, re.S)
    assert m, "README.md has no generated steps table"
    assert m.group(1) == pipeline.architecture_markdown(), (
        "README's steps table is stale: run python tools/gen_readme_steps.py"
    )
