"""Native-call spans: the intervals during which a thread was inside a library call.

All times here are on the reference clock (``start``/``end`` in ns). One DataFrame per kind:

    go_spans      every cgo call of the Go trace (go.syscall slices whose top frame is a cgo
                  wrapper), with the library when the wrapper name says so (go-stack / user-
                  pattern); spans whose name does not tell are resolved later by perf
                  callchain evidence (correlate.py)
    python_runs   py-spy runs whose stack passes through the library's Python read path or
                  its native module (pyspy-stack)
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from parsers.model import SourceTables

from .align import stack_waits
from .libraries import Library, cgo_name

_CLOSURE = re.compile(r"\.func\d+(?:\.\d+)*$")


class Frames:
    """Frames of a source's stacks by stack id, looked up on demand (a perf capture can hold
    thousands of stacks; only those of reported records are ever formatted)."""

    def __init__(self, src: SourceTables) -> None:
        self.table = src.stacks.sort_values(["stack_id", "depth"]).reset_index(drop=True)
        self.ids = self.table["stack_id"].to_numpy()

    def get(self, stack_id) -> pd.DataFrame:
        if stack_id is None or pd.isna(stack_id):
            return self.table.iloc[0:0]
        sid = int(stack_id)
        lo, hi = np.searchsorted(self.ids, sid, "left"), np.searchsorted(self.ids, sid, "right")
        return self.table.iloc[lo:hi]

    def items(self):
        for sid, g in self.table.groupby("stack_id"):
            yield int(sid), g


def frames_by_stack(src: SourceTables) -> Frames:
    return Frames(src)


def format_frame(row) -> str:
    where = (
        row.file
        if isinstance(row.file, str) and row.file
        else (row.module if isinstance(row.module, str) else "")
    )
    if isinstance(row.file, str) and row.file and not pd.isna(row.line):
        where = f"{row.file.rsplit('/', 1)[-1]}:{int(row.line)}"
    return f"{row.function} ({where})" if where else str(row.function)


def stack_strings(frames: Frames, stack_id) -> list[str]:
    return [format_frame(r) for r in frames.get(stack_id).itertuples()]


def go_spans(go: SourceTables, offset: int, lib: Library) -> pd.DataFrame:
    s = go.slices[go.slices["kind"] == "go.syscall"]
    name = s["name"].astype(str)
    call = name.map(cgo_name)
    s = s[call.notna()]
    match = s["name"].astype(str).map(lib.match_cgo)
    frames = frames_by_stack(go)
    # one call site per distinct stack (a busy service has millions of calls, few stacks)
    sites = {sid: go_call_site(frames, sid) for sid in s["stack_id"].dropna().unique()}
    site = [sites.get(sid) if not pd.isna(sid) else None for sid in s["stack_id"]]
    return pd.DataFrame(
        {
            "source": s["source"].astype(str).to_numpy(),
            "pid": s["pid"].to_numpy(),
            "tid": s["tid"].to_numpy(),
            "goid": s["goid"].to_numpy(),
            "start": (s["ts"] + offset).to_numpy(),
            "end": (s["ts"] + s["dur"] + offset).to_numpy(),
            "call": call[call.notna()].to_numpy(),
            "library": np.where(match.notna(), lib.name, None),
            "evidence": [
                ["go-stack"] if m == "preset" else ["user-pattern"] if m == "user" else []
                for m in match
            ],
            "p_lost": s["args"].map(lambda a: (a or {}).get("p_lost")).to_numpy(),
            "stack_id": s["stack_id"].to_numpy(),
            "call_site": site,
        }
    )


def go_call_site(frames: Frames, stack_id) -> str | None:
    """First Go frame that is not the cgo wrapper or the runtime: who made the call."""
    for r in frames.get(stack_id).itertuples():
        fn = str(r.function)
        if "_Cfunc_" in fn or "_C2func_" in fn or "_cgo_" in fn or fn.startswith("runtime."):
            continue
        if _CLOSURE.search(fn):  # a closure inside the caller: keep looking
            continue
        return format_frame(r)
    return None


def python_runs(py: SourceTables, offset: int, lib: Library) -> pd.DataFrame:
    s = py.slices[py.slices["kind"] == "py.sample"]
    frames = frames_by_stack(py)
    info = {}
    for sid, g in frames.items():
        hits = [
            lib.match_python_frame(
                str(r.function),
                r.file if isinstance(r.file, str) else None,
                r.module if isinstance(r.module, str) else None,
                str(r.frame_kind),
            )
            for r in g.itertuples()
        ]
        if not any(hits):
            continue
        rows = list(g.itertuples())
        outer = max(i for i, h in enumerate(hits) if h)  # leaf first: the outermost hit
        site = next(
            (
                format_frame(r)
                for r in rows[outer + 1 :]
                if str(r.frame_kind) == "python"
                and not lib.in_client_package(r.file if isinstance(r.file, str) else None)
            ),
            None,
        )
        info[sid] = (
            str(rows[outer].function),
            site,
            frozenset(stack_waits([str(r.function) for r in rows])),
        )
    keep = s["stack_id"].map(lambda x: not pd.isna(x) and int(x) in info)
    s = s[keep.astype(bool)]
    sids = [int(x) for x in s["stack_id"]]
    return pd.DataFrame(
        {
            "source": s["source"].astype(str).to_numpy(),
            "pid": s["pid"].to_numpy(),
            "tid": s["tid"].to_numpy(),
            "start": (s["ts"] + offset).to_numpy(),
            "end": (s["ts"] + s["dur"] + offset).to_numpy(),
            "call": [info[x][0] for x in sids],
            "call_site": [info[x][1] for x in sids],
            "stack_id": sids,
            "blocking": s["args"].map(lambda a: bool(a.get("blocking"))).to_numpy(),
            "leaf": s["name"].astype(str).to_numpy(),
            "waits_in": [info[x][2] for x in sids],
        }
    )
