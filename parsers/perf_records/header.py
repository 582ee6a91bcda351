"""What the perf readers know of a recording's header: host, arch, command line, and which
clock the times are on (``perf script --header``'s block, or perf.data's feature sections)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


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
