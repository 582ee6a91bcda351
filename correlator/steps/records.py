"""Step: the blocking records, one per attributed candidate (or, with py-spy alone, per
waiting py-spy run in the library). ``blocking_table`` is the one constructor of the records
table: every column of ``schema.RECORD``, in that order."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...parsers.model import column
from ..frames import Frames
from ..schema import RECORD, RECORD_LISTS
from ..step import step
from ..tables import Tables
from .attribute import IN_LIBRARY, IN_PY_RUNTIME

#: the record columns this step makes (the wakers step adds the rest)
BUILT = tuple(c.name for c in RECORD if c.step == "records")


def blocking_table(n: int = 0, names: tuple[str, ...] = BUILT, **columns) -> pd.DataFrame:
    """The blocking-records table: the columns *names* of ``schema.RECORD``, in its order.
    Columns not given are null (lists: empty), so every path builds the same schema."""
    out = {}
    for name in names:
        v = columns.pop(name, None)
        if v is None:
            v = [[] for _ in range(n)] if name in RECORD_LISTS else [None] * n
        out[name] = list(v) if not isinstance(v, (list, np.ndarray)) else v
    if columns:
        raise TypeError(f"unknown blocking columns {sorted(columns)}")
    return pd.DataFrame(out, columns=list(names))


@step(
    reads={
        "candidates": (
            *("pid", "tid", "goid", "library", "in", "call", "call_start_ns", "call_end_ns"),
            *("kind", "name", "start", "end", "off_cpu_ns", "off_cpu_state", "restarts"),
            *("censored", "evidence", "call_site", "go_stack_id", "stack_id", "run", "fd"),
            *("on_cpu_ns", "runq_ns", "tracer_stop_ns", "p_lost", "in_inferred", "source"),
        ),
        "runs": (
            "source",
            "stack_id",
            "blocking",
            "start",
            "end",
            "pid",
            "tid",
            "call",
            "call_site",
            "waits_in",
            "gil_wait",
            "read_path",
        ),
        "py_frames": (),
        "thread_names": (),
        "kernel_comms": (),
        "perf": (),
        "go": (),
        "library": (),
        "min_block_ns": (),
    },
    adds={"blocking": BUILT},
    release=True,
)
def records(t: Tables) -> dict:
    """The records table: from perf's attributed candidates, else from py-spy's waiting runs
    in the library (no perf recording to see the syscalls), else empty."""
    if t.candidates is not None:
        return {"blocking": perf_records(t)}
    if len(t.runs):
        return {"blocking": pyspy_records(t)}
    return {"blocking": blocking_table()}


def perf_records(t: Tables) -> pd.DataFrame:
    """The records of perf intervals attributed to library calls."""
    c, runs = t.candidates, t.runs
    n = len(c)
    is_sys = (c["kind"] == "os.syscall").to_numpy()
    tid = c["tid"].astype("int64").tolist()
    start, end = c["start"].astype("int64").tolist(), c["end"].astype("int64").tolist()
    go_frames = Frames(t.go.tables) if t.go is not None else None
    perf_frames = Frames(t.perf.tables)
    python_stack = [
        t.py_frames[runs.at[r, "source"]].strings(runs.at[r, "stack_id"]) if r >= 0 else []
        for r in c["run"].to_numpy()
    ]
    restarts = [
        (0 if pd.isna(r) else int(r)) if s else None
        for r, s in zip(column(c, "slices", "restarts"), is_sys, strict=True)
    ]
    go_stack = [
        go_frames.strings(s) if go_frames is not None and s is not None else []
        for s in c["go_stack_id"]
    ]
    return blocking_table(
        n,
        pid=c["pid"].astype("int64").tolist(),
        tid=tid,
        goid=c["goid"].tolist(),
        thread=[t.thread_names.get(x) for x in tid],
        comm=[t.kernel_comms.get(x) for x in tid],
        library=c["library"].tolist(),
        **{"in": c["in"].tolist()},
        call=c["call"].tolist(),
        call_start_ns=c["call_start_ns"].tolist(),
        call_end_ns=c["call_end_ns"].tolist(),
        syscall=np.where(is_sys, c["name"].astype(object).to_numpy(), None).tolist(),
        start_ns=start,
        end_ns=end,
        dur_ns=[e - s for s, e in zip(start, end, strict=True)],
        off_cpu_ns=c["off_cpu_ns"].tolist(),
        off_cpu_state=c["off_cpu_state"].tolist(),
        restarts=restarts,
        censored=c["censored"].tolist(),
        evidence=c["evidence"].tolist(),
        call_site=c["call_site"].tolist(),
        go_stack=go_stack,
        native_stack=[perf_frames.strings(s) for s in c["stack_id"]],
        python_stack=python_stack,
        on_cpu_ns=c["on_cpu_ns"].tolist(),
        runq_ns=c["runq_ns"].tolist(),
        tracer_stop_ns=c["tracer_stop_ns"].astype("int64").tolist(),
        p_lost=c["p_lost"].tolist(),
        fd=[None if pd.isna(x) else int(x) for x in column(c, "slices", "fd")],
        in_inferred=c["in_inferred"].astype(bool).tolist(),
        stack_stop=stack_stops(t.perf.tables, c["stack_id"]),
        source=c["source"].astype(str).tolist(),
    )


def stack_stops(perf, stack_ids: pd.Series) -> list[str | None]:
    """Why each record's native stack stops short of its caller, where the perf.data reader
    says so (``stack_stops``: the stack copy too small or cut by the kernel, no CFI, an
    unreadable DSO) and no splice carried it past the stop."""
    stops = perf.meta.extra.get("stack_stops") or {}
    if not stops:
        return [None] * len(stack_ids)
    by_id = {int(k): v for k, v in stops.items()}
    out = []
    for s in stack_ids:
        v = None if s is None or pd.isna(s) else by_id.get(int(s))
        out.append(v["text"] if v and not v.get("spliced") else None)
    return out


def pyspy_records(t: Tables) -> pd.DataFrame:
    """py-spy alone: waiting runs in the library; the syscall from the libc leaf frame. A
    run waiting for the GIL is the interpreter's (``python-runtime``, library null)."""
    runs = t.runs
    gil = runs["gil_wait"].to_numpy(bool) if "gil_wait" in runs else np.zeros(len(runs), bool)
    read = runs["read_path"].to_numpy(bool) if "read_path" in runs else ~gil
    long = (runs["end"] - runs["start"] >= t.min_block_ns).to_numpy(bool)
    r = runs[runs["blocking"].to_numpy(bool) & long & (read | gil)]
    gil = gil[runs["blocking"].to_numpy(bool) & long & (read | gil)]
    n = len(r)
    tid = r["tid"].astype("int64").tolist()
    start, end = r["start"].astype("int64").tolist(), r["end"].astype("int64").tolist()
    return blocking_table(
        n,
        pid=r["pid"].astype("int64").tolist(),
        tid=tid,
        thread=[t.thread_names.get(x) for x in tid],
        comm=[t.kernel_comms.get(x) for x in tid],
        library=[None if g else t.library.name for g in gil],
        **{"in": [IN_PY_RUNTIME if g else IN_LIBRARY for g in gil]},
        call=r["call"].tolist(),
        call_start_ns=start,
        call_end_ns=end,
        syscall=[min(w) if w else None for w in r["waits_in"]],
        start_ns=start,
        end_ns=end,
        dur_ns=[e - s for s, e in zip(start, end, strict=True)],
        evidence=[["pyspy-stack"] for _ in range(n)],
        call_site=r["call_site"].tolist(),
        python_stack=[
            t.py_frames[s].strings(x) for s, x in zip(r["source"], r["stack_id"], strict=True)
        ],
        in_inferred=[False] * n,
        source=r["source"].astype(str).tolist(),
    )
