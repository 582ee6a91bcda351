"""Across captures: which call sites and wakers hold the most blocked time, in how many
captures, and which pitfalls recur where.

Each capture is folded into small per-key sums as its result arrives (``CaptureSums``), so the
fleet summary never needs every record of every capture in memory at once. Library time only,
as in one report's ``by_call_site``: Go runtime time inside library calls is not the
library's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from .records import NO_WAKER, waker_label

NO_SITE = "(no call site)"


def blocking_frame(table: pa.Table) -> pd.DataFrame:
    """The columns the cross-capture views group by, from a blocking table: ``call_site``
    (the call's name when no stack named a site), ``syscall``, ``waker`` (a label that stays
    the same across hosts) and ``dur_ns``; library records only."""
    lib = [x != "go-runtime" for x in table.column("in").to_pylist()]
    t = table.filter(pa.array(lib, pa.bool_())) if len(lib) else table
    site = t.column("call_site").to_pandas()
    call = t.column("call").to_pandas()
    return pd.DataFrame(
        {
            "call_site": site.fillna(call).fillna(NO_SITE).astype(str),
            "syscall": t.column("syscall").to_pandas().fillna("(off-CPU outside a syscall)"),
            "waker": [waker_label(w) for w in t.column("waker").to_pylist()],
            "dur_ns": t.column("dur_ns").to_numpy(zero_copy_only=False).astype("int64"),
        }
    )


@dataclass
class CaptureSums:
    """What the fleet summary keeps of one capture."""

    capture: str
    by_call_site: dict[str, tuple[int, int]] = field(default_factory=dict)  # count, total_ns
    by_waker: dict[str, tuple[int, int]] = field(default_factory=dict)
    findings: list[dict] = field(default_factory=list)  # kind, severity, summary

    @classmethod
    def of(cls, capture: str, blocking: pa.Table, findings: pa.Table) -> CaptureSums:
        b = blocking_frame(blocking)
        out = cls(capture)
        for key, target in (("call_site", out.by_call_site), ("waker", out.by_waker)):
            rows = b if key != "waker" else b[b["waker"] != NO_WAKER]  # as the report's by_waker
            g = rows.groupby(key)["dur_ns"].agg(["size", "sum"])
            target.update({k: (int(r["size"]), int(r["sum"])) for k, r in g.iterrows()})
        out.findings = findings.select(["kind", "severity", "summary"]).to_pylist()
        return out


def fleet_summary(sums: list[CaptureSums], top: int = 10) -> dict:
    """Top call sites and wakers by total blocked time (with the captures they appear in),
    and the findings grouped by kind with their captures."""

    def top_keys(attr: str, label: str) -> list[dict]:
        acc: dict[str, dict] = {}
        for s in sums:
            for key, (count, total) in getattr(s, attr).items():
                x = acc.setdefault(key, {label: key, "count": 0, "total_ns": 0, "captures": []})
                x["count"] += count
                x["total_ns"] += total
                x["captures"].append(s.capture)
        rows = sorted(acc.values(), key=lambda x: (-x["total_ns"], x[label]))[:top]
        for r in rows:
            r["in_captures"] = len(r["captures"])
        return rows

    kinds: dict[str, dict] = {}
    order = {"error": 0, "warning": 1, "info": 2}
    for s in sums:
        for f in s.findings:
            k = kinds.setdefault(
                f["kind"],
                {"kind": f["kind"], "severity": f["severity"], "count": 0, "captures": []},
            )
            k["count"] += 1
            if order.get(f["severity"], 3) < order.get(k["severity"], 3):
                k["severity"] = f["severity"]
            if s.capture not in k["captures"]:
                k["captures"].append(s.capture)
    findings = sorted(kinds.values(), key=lambda k: (order.get(k["severity"], 3), -k["count"]))
    return {
        "by_call_site": top_keys("by_call_site", "call_site"),
        "by_waker": top_keys("by_waker", "waker"),
        "findings_by_kind": findings,
    }


def _ms(ns: int) -> str:
    return f"{ns / 1e6:,.1f} ms"


def render_text(doc: dict) -> str:
    """The fleet's text summary: captures analysed and failed, then the cross-capture
    views (what ``tracecorr fleet`` prints)."""
    caps = doc["captures"]
    ok = [c for c in caps if c["status"] == "ok"]
    lines = [
        f"tracecorr fleet: {len(ok)} of {len(caps)} captures analysed "
        f"({doc['scheduler']}), {doc['seconds']:.1f} s",
        f"output: {doc['out']}",
    ]
    for c in caps:
        if c["status"] != "ok":
            lines.append(f"  FAILED {c['capture']}: {c['error']}")
    if not ok:
        return "\n".join(lines) + "\n"
    total = sum(c["counts"].get("blocked_ns", 0) for c in ok)
    records = sum(c["counts"].get("library_records", 0) for c in ok)
    lines += ["", f"blocked in {doc['library']}: {records} records, {_ms(total)}", ""]
    n = len(ok)
    s = doc["summary"]
    for title, rows, label in (
        ("Top call sites by blocked time", s["by_call_site"], "call_site"),
        ("Top wakers by blocked time", s["by_waker"], "waker"),
    ):
        lines.append(title)
        if not rows:
            lines.append("  (none)")
        for r in rows:
            lines.append(
                f"  {_ms(r['total_ns']):>14}  {r['count']:>7} records  "
                f"{r['in_captures']:>3}/{n} captures  {r[label]}"
            )
        lines.append("")
    lines.append("Findings by kind")
    if not s["findings_by_kind"]:
        lines.append("  (none)")
    for k in s["findings_by_kind"]:
        lines.append(
            f"  {k['severity']:<8} {k['kind']:<20} {k['count']:>3} in "
            f"{len(k['captures'])}/{n} captures: {', '.join(k['captures'])}"
        )
    return "\n".join(lines) + "\n"
