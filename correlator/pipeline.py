"""The correlator as a list of steps, in order: aligned sources in, records and findings out.

``run`` passes one ``Tables`` value from step to step (each returns the fields it sets) and
hands freed memory back after the steps that drop large temporaries. With ``check=True``
(the tests) it also holds every step to its declaration: it may add to a frame only the
columns it declares, and, run again on inputs cut down to the columns it declares it reads,
it must give the same result.

``architecture_markdown`` writes the README's Architecture table from these declarations.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..parsers import memory
from .step import Step
from .steps.align_sources import align
from .steps.attribute import attribute
from .steps.call_spans import call_spans
from .steps.call_split import call_split
from .steps.callchain_hint import callchain_hint
from .steps.candidates import candidates
from .steps.censor import censor
from .steps.connections import connections
from .steps.findings import findings
from .steps.join_calls import join_calls
from .steps.latency_split import latency_split
from .steps.library_calls import library_calls
from .steps.order_records import order_records
from .steps.perf_intervals import perf_intervals
from .steps.perf_stacks import perf_stacks
from .steps.python_runs import python_runs
from .steps.records import records
from .steps.render_support import aligned_slices, goroutine_sites, syscall_joins
from .steps.summary import summary
from .steps.threads import threads
from .steps.unseen_calls import unseen_calls
from .steps.wakers import wakers
from .tables import Tables

STEPS: tuple[Step, ...] = (
    align,
    threads,
    perf_intervals,
    perf_stacks,
    call_spans,
    connections,
    library_calls,
    python_runs,
    candidates,
    join_calls,
    attribute,
    censor,
    latency_split,
    records,
    unseen_calls,
    wakers,
    order_records,
    call_split,
    callchain_hint,
    summary,
    findings,
)


#: what the renderers ask for, run on first use (``Analysis.support``), in this order
SUPPORT: tuple[Step, ...] = (aligned_slices, goroutine_sites, syscall_joins)


def kept_for_support(t: Tables) -> Tables:
    """*t* cut down to the fields the SUPPORT steps read: what an Analysis keeps (the working
    frames of a large capture, intervals and candidates, are let go)."""
    read = {name for s in SUPPORT for name in s.reads}
    return Tables(**{name: getattr(t, name) for name in read})


class ContractError(AssertionError):
    """A step did something its declaration does not say."""


def run(t: Tables, steps: Sequence[Step] = STEPS, check: bool = False) -> Tables:
    for s in steps:
        updates = s.run(t)
        if check:
            _check(s, t, updates)
        t = t.with_(updates)
        if s.release:
            memory.between_steps()
    return t


def _check(s: Step, before: Tables, updates: dict) -> None:
    undeclared = set(updates) - set(s.adds)
    if undeclared:
        raise ContractError(f"step {s.name} sets undeclared fields {sorted(undeclared)}")
    for name, value in updates.items():
        old = getattr(before, name)
        if isinstance(value, pd.DataFrame):
            had = set(old.columns) if isinstance(old, pd.DataFrame) else set()
            new = set(value.columns) - had
            allowed = set(s.adds[name])
            if "*" not in allowed and new - allowed:
                raise ContractError(
                    f"step {s.name} adds undeclared {name} columns {sorted(new - allowed)}"
                )
    try:
        again = s.run(_cut_to_reads(s, before))
    except Exception as e:  # noqa: BLE001 - any failure on the cut inputs is the finding
        raise ContractError(f"step {s.name} reads undeclared fields or columns: {e!r}") from e
    for name, value in updates.items():
        _same(s, name, value, again.get(name))


def _cut_to_reads(s: Step, t: Tables) -> Tables:
    """*t* with every frame the step reads cut down to the columns it declares (a frame it
    passes on whole, ``*``, is kept); the fields it does not read are emptied."""
    cut = {}
    for name in Tables.field_names():
        value = getattr(t, name)
        if name not in s.reads:
            cut[name] = getattr(Tables(), name)
            continue
        cols = s.reads[name]
        if isinstance(value, pd.DataFrame) and "*" not in cols:
            cut[name] = value[[c for c in cols if c in value.columns]]
        else:
            cut[name] = value
    return Tables(**cut)


def _same(s: Step, name: str, a, b) -> None:
    if isinstance(a, pd.DataFrame):
        if not isinstance(b, pd.DataFrame):
            raise ContractError(f"step {s.name}: {name} depends on fields it does not declare")
        cols = list(s.adds[name]) if "*" not in s.adds[name] else list(a.columns)
        cols = [c for c in cols if c in a.columns]
        try:
            pd.testing.assert_frame_equal(a[cols], b[cols])
        except (AssertionError, KeyError) as e:
            raise ContractError(f"step {s.name}: {name} reads undeclared columns: {e}") from e
    elif not _equal(a, b):
        raise ContractError(f"step {s.name}: {name} depends on fields it does not declare")


def _equal(a, b) -> bool:
    """Values equal, containers element by element; an object without its own ``==`` (a
    Frames lookup) by type alone."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and not isinstance(a, str):
        return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))
    if type(a).__eq__ is object.__eq__:
        return type(a) is type(b)
    return bool(a == b)


def architecture_markdown(steps: Sequence[Step] = STEPS) -> str:
    """The README's table of the steps: order, file, what each adds, and its one line."""
    rows = ["| # | step | file | adds | what it does |", "|---|---|---|---|---|"]
    for i, s in enumerate(steps, 1):
        adds = "; ".join(_added(name, cols) for name, cols in s.adds.items())
        rows.append(f"| {i} | `{s.name}` | `{s.file}` | {adds} | {_first_sentence(s.doc)} |")
    return "\n".join(rows) + "\n"


def _added(name: str, cols: tuple[str, ...]) -> str:
    """``intervals``, ``candidates (new)``, ``calls + library, evidence``."""
    named = [c for c in cols if c != "*"]
    if not cols:
        return f"`{name}`"
    if "*" in cols and not named:
        return f"`{name}` (new)"
    return f"`{name}` + " + ", ".join(named)


def _first_sentence(doc: str) -> str:
    text = doc.replace("``", "`")
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]
