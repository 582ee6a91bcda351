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
from dataclasses import dataclass, field
from decimal import Decimal

_KV = re.compile(r"^#\s*([\w ]+?)\s*:\s*(.*)$")
_REF = re.compile(r"= (\d+\.\d+) \(TOD\) = (\d+\.\d+) \((\w+)\)")
_CLOCKID = re.compile(r"^(\w+) \((-?\d+)\)")


def seconds_to_ns(text: str) -> int:
    """'125.614580271' -> 125614580271, exactly (no float rounding)."""
    return int(Decimal(text.strip()) * 1_000_000_000)


@dataclass
class PerfHeader:
    present: bool = False
    values: dict[str, str] = field(default_factory=dict)
    clock_name: str | None = None  # e.g. "monotonic", from "# clockid: monotonic (1)"
    clock_number: int | None = None
    reference: dict[str, int] | None = None  # {"mono_ns", "wall_ns"} at record start
    missing: set[str] = field(default_factory=set)

    @property
    def arch(self) -> str | None:
        return self.values.get("arch")

    @property
    def hostname(self) -> str | None:
        return self.values.get("hostname")

    @property
    def os_release(self) -> str | None:
        return self.values.get("os release")

    @property
    def cmdline(self) -> str | None:
        return self.values.get("cmdline")

    def clock_id(self) -> str:
        """Canonical clock id of the time field (see parsers.model.CLOCK_IDS)."""
        if self.clock_name == "monotonic":
            return "monotonic"
        if self.clock_name is None and (
            "CLOCKID" in self.missing or (self.present and "-k" not in (self.cmdline or ""))
        ):
            return "perf_clock"
        return "unknown"


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
