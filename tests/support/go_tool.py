"""The Go toolchain's own reading of a trace (`go tool trace -d=parsed`), as reference data.

Used only by tests: the toolchain is the oracle our native parser is checked against.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

_EVENT = re.compile(r"^M=(-?\d+) P=(-?\d+) G=(-?\d+) (\w+) Time=(-?\d+)(.*)$")
# Go 1.22 prints 'Resource=Goroutine(1) Reason="" GoID=1 A->B', later ones 'GoID=1 A->B Reason=""'
_GOID = re.compile(r" GoID=(\d+)")
_STATES = re.compile(r" (\w+)->(\w+)(?: |$)")
_REASON = re.compile(r' Reason="((?:[^"\\]|\\.)*)"')
_FRAME = re.compile(r"^\t(\S.*) @ 0x([0-9a-f]+)$")
_FILE = re.compile(r"^\t\t(.*):(\d+)$")


@dataclass
class GoTransition:
    m: int
    time: int
    goid: int
    frm: str
    to: str
    reason: str
    prev_time: int  # time of the event printed just before (the Go reader bumps past it)
    stack: list[tuple[str, str, int, int]] = field(default_factory=list)  # func, file, line, pc


def dump_flag(go: Path, env: dict) -> str:
    """Go 1.22 and 1.23's cmd/trace spell the parsed dump -d=1 ('-d=int'); later -d=parsed."""
    usage = subprocess.run(
        [str(go), "tool", "trace", "-h"], capture_output=True, text=True, env=env, timeout=600
    )
    return "-d=1" if "-d=int" in usage.stdout + usage.stderr else "-d=parsed"


def go_tool_transitions(go: Path, trace: Path, env: dict) -> list[GoTransition]:
    proc = subprocess.run(
        [str(go), "tool", "trace", dump_flag(go, env), str(trace)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"go tool trace failed: {proc.stderr[-2000:]}")
    return parse_dump(proc.stdout)


def parse_dump(text: str) -> list[GoTransition]:
    out: list[GoTransition] = []
    cur: GoTransition | None = None
    in_transition_stack = False
    prev_time = -1
    for line in text.splitlines():
        m = _EVENT.match(line)
        if m:
            cur, in_transition_stack = None, False
            last_time, prev_time = prev_time, int(m.group(5))
            if m.group(4) == "StateTransition":
                rest = m.group(6)
                g, st, r = _GOID.search(rest), _STATES.search(rest), _REASON.search(rest)
                if g and st:
                    cur = GoTransition(
                        int(m.group(1)),
                        int(m.group(5)),
                        int(g.group(1)),
                        st.group(1),
                        st.group(2),
                        r.group(1) if r else "",
                        last_time,
                    )
                    out.append(cur)
            continue
        if cur is None:
            continue
        if line.startswith("TransitionStack="):
            in_transition_stack = True
        elif line.startswith("Stack="):
            in_transition_stack = False
        elif in_transition_stack:
            f = _FRAME.match(line)
            if f:
                cur.stack.append((f.group(1), "", 0, int(f.group(2), 16)))
                continue
            f = _FILE.match(line)
            if f and cur.stack:
                fn, _, _, pc = cur.stack[-1]
                cur.stack[-1] = (fn, f.group(1), int(f.group(2)), pc)
    return out
