"""The `perf script --header` block: which clock the times are on, and where they came from.

# hostname : vm
# os release : 6.18.44-fc-v669
# arch : x86_64
# cmdline : /usr/bin/perf record -k CLOCK_MONOTONIC ... -- ./prog
# clockid: monotonic (1)
# reference time: 2026-11-25 19:35:03.745143 = 1795635303.745143 (TOD) = 125.614580271 (monotonic)
# missing features: ... CLOCKID ... CLOCK_DATA ...     (recorded without -k)
"""

from __future__ import annotations

import re

from ..perf_records.header import PerfHeader, seconds_to_ns

_KV = re.compile(r"^#\s*([\w ]+?)\s*:\s*(.*)$")
_REF = re.compile(r"= (\d+\.\d+) \(TOD\) = (\d+\.\d+) \((\w+)\)")
_CLOCKID = re.compile(r"^(\w+) \((-?\d+)\)")


def parse_header(lines: list[str]) -> PerfHeader:
    h = PerfHeader(present=any(line.startswith("# ========") for line in lines))
    for line in lines:
        m = _KV.match(line)
        if not m:
            continue
        key, value = m.group(1).strip(), m.group(2).strip()
        h.values.setdefault(key, value)
        if key == "clockid":
            c = _CLOCKID.match(value)
            if c:
                h.clock_name, h.clock_number = c.group(1), int(c.group(2))
        elif key == "reference time":
            r = _REF.search(value)
            if r and r.group(3) == "monotonic":
                h.reference = {
                    "mono_ns": seconds_to_ns(r.group(2)),
                    "wall_ns": seconds_to_ns(r.group(1)),
                }
        elif key == "missing features":
            h.missing = set(value.split())
    return h
