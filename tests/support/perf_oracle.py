"""Reading `perf script` output the slow obvious way, as an oracle for the native perf.data
reader: one regex per line, no shared code with either parser under test."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
from tracecorr.parsers.perf_script.stacks import parse_frame

KERNEL_SPACE = 0xFFFF800000000000


def perf_script(perf: str, data: Path, *args: str) -> str:
    proc = subprocess.run([perf, "script", "-i", str(data), *args], capture_output=True, check=True)
    return proc.stdout.decode("utf-8", "replace")


_TRACE = re.compile(
    r"^\s*(?P<tid>-?\d+)\s+(?P<s>\d+)\.(?P<ns>\d{9}):\s+(?P<ev>[^\s:]+:[^\s:]+):\s*(?P<p>.*)$"
)


def trace_fields(text: str) -> pd.DataFrame:
    """One row per line of ``perf script -F tid,time,event,trace --ns``: tid, time, event,
    and the fields the tables read (NR, ret, prev_pid, prev_state, next_pid, woken pid,
    target cpu), NA where they do not apply."""
    out = []
    for line in text.splitlines():
        m = _TRACE.match(line)
        if not m:
            continue
        p = m["p"]
        row = {
            "tid": int(m["tid"]),
            "time": int(m["s"]) * 10**9 + int(m["ns"]),
            "event": m["ev"],
            "nr": None, "ret": None, "prev_pid": None, "prev_state": None, "next_pid": None,
            "woken_pid": None, "target_cpu": None,
        }  # fmt: skip
        if m["ev"] == "raw_syscalls:sys_enter":
            row["nr"] = int(re.match(r"NR (-?\d+)", p)[1])
        elif m["ev"] == "raw_syscalls:sys_exit":
            nr, ret = re.match(r"NR (-?\d+) = (-?\d+)", p).groups()
            row["nr"], row["ret"] = int(nr), int(ret)
        elif m["ev"] == "sched:sched_switch":
            row["prev_pid"] = int(re.search(r" prev_pid=(-?\d+)", p)[1])
            row["prev_state"] = re.search(r" prev_state=(\S+)", p)[1]
            row["next_pid"] = int(re.search(r" next_pid=(-?\d+)", p)[1])
        elif m["ev"].startswith("sched:sched_wak"):
            row["woken_pid"] = int(re.search(r" pid=(-?\d+)", p)[1])
            cpu = re.search(r" target_cpu=(\d+)", p)
            row["target_cpu"] = int(cpu[1]) if cpu else None
        out.append(row)
    df = pd.DataFrame(out)
    # nullable ints: through float64, a 19-digit ret (rt_sigreturn's restored register)
    # would lose its low digits
    ints = ("nr", "ret", "prev_pid", "next_pid", "woken_pid", "target_cpu")
    for col in ints:
        if col in df:
            df[col] = pd.array(
                [None if v is None or v != v else int(v) for v in (r[col] for r in out)],
                dtype="Int64",
            )
    return df


_HEAD = re.compile(
    r"^\s*(?P<tid>-?\d+)\s+(?P<s>\d+)\.(?P<ns>\d{9}):\s+(?P<ev>[^\s:]+:[^\s:]+):?\s*$"
)


def callchains(text: str) -> dict[tuple[int, int, str], list[tuple]]:
    """(tid, time, event) -> frames (address, function, dso) of
    ``perf script --ns -F tid,time,event,ip,sym,dso``."""
    out: dict[tuple[int, int, str], list[tuple]] = {}
    cur = None
    for line in text.split("\n"):
        if not line.strip():
            cur = None
            continue
        if line[0] in " \t" and cur is not None and not _HEAD.match(line):
            f = parse_frame(line)
            if f is not None:
                out[cur].append(f)
            continue
        m = _HEAD.match(line)
        cur = (int(m["tid"]), int(m["s"]) * 10**9 + int(m["ns"]), m["ev"]) if m else None
        if cur is not None:
            out[cur] = []
    return out


def is_kernel_frame(frame: tuple) -> bool:
    addr, _func, dso = frame[:3]
    return dso == "[kernel.kallsyms]" or (dso == "[unknown]" and KERNEL_SPACE <= addr < 2**64 - 1)


def stack_frames(stacks: pd.DataFrame) -> dict[int, tuple]:
    """stack_id -> ((address, function, module, frame_kind), ...) leaf first."""
    s = stacks.sort_values(["stack_id", "depth"])
    return {
        int(sid): tuple(
            zip(
                g["address"].tolist(),
                g["function"].astype(str).tolist(),
                g["module"].astype(str).tolist(),
                g["frame_kind"].astype(str).tolist(),
                strict=True,
            )
        )
        for sid, g in s.groupby("stack_id", sort=False)
    }


def table_content(st, table: str) -> pd.DataFrame:
    """A table with stack ids replaced by their frames and text columns as str, in its row
    order, so that two sources can be compared row by row whatever their stack numbering."""
    frames = stack_frames(st.stacks)
    df = getattr(st, table).copy()
    if "stack_id" in df:
        df["stack"] = [frames.get(int(x)) if pd.notna(x) else None for x in df["stack_id"]]
        df = df.drop(columns=["stack_id"])
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype) or df[c].dtype == object:
            df[c] = df[c].astype(object).where(df[c].notna(), None)
            df[c] = [str(v) if v is not None and not isinstance(v, tuple) else v for v in df[c]]
    df = df.drop(columns=["source"]).reset_index(drop=True)
    if table == "instants" and len(df):
        # the text parser lists wakeups grouped by tracepoint within each 32 MiB text chunk,
        # an artifact of its chunking: compare the wakeup rows in (time, thread) order
        wake = np.flatnonzero((df["kind"] == "os.wakeup").to_numpy())
        order = df.iloc[wake].sort_values(["ts", "tid", "name"], kind="stable").index
        df.iloc[wake] = df.loc[order].to_numpy()
    return df
