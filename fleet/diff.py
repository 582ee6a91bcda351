"""Before and after: two sides compared by call site, syscall, waker and finding kind
(``tracecorr diff``, schema ``tracecorr.diff/1``).

A side is a capture (analysed here), a saved JSON report (``tracecorr.report/1``) or a fleet
output directory (its Parquet datasets, every capture pooled). Each is reduced to the same
thing: the library's blocking records (call site, syscall, waker, duration) and the
findings.

Whether a change is more than noise is decided per group with the Mann–Whitney U test (scipy)
on the blocking durations of both sides: it assumes no distribution (blocked times are
skewed and multi-modal), and compares whole samples rather than one percentile. A group is
tested only with at least ``MIN_RECORDS`` records on each side; p-values are adjusted with
Holm's method across the groups of one view, since a diff tests many call sites at once. A
change counts as significant when the adjusted p-value is under ``alpha`` and the median moved
by at least ``min_change`` (a fraction, either way: x1.1 or /1.1): with tens of thousands of
records, a 1 % shift is "significant" to the test but not to anyone reading a profile. The
direction comes from the test's own effect size, the probability that a record after is
slower than one before (``prob_after_slower``), so a tail that moved with the median still
is named.

The test treats records as independent draws. They are not quite: records of one capture
come in phases, and a fleet side pools its captures, so one bad host can make a call site
significant for the whole fleet. Read a fleet diff's call sites with the per-capture view of
``tracecorr fleet`` beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..parsers.detect import sniff
from ..parsers.errors import InputError
from .dataset import FLEET_JSON, is_fleet_dir, read_fleet_json, read_table
from .records import NO_WAKER, blocking_table
from .summary import blocking_frame
from .task import Options

SCHEMA = "tracecorr.diff/1"
REPORT_SCHEMA = "tracecorr.report/1"
MIN_RECORDS = 8
ALPHA = 0.01
MIN_CHANGE = 0.10


@dataclass
class Side:
    path: str
    kind: str  # capture | report | fleet
    library: str
    blocking: pd.DataFrame  # call_site, syscall, waker, dur_ns: library records only
    findings: list[dict] = field(default_factory=list)  # each with its "capture"
    captures: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        return {
            "path": self.path,
            "kind": self.kind,
            "library": self.library,
            "captures": self.captures,
            "records": int(len(self.blocking)),
            "blocked_ns": int(self.blocking["dur_ns"].sum()) if len(self.blocking) else 0,
            "findings": len(self.findings),
        }


def load_side(path: str, options: Options) -> Side:
    """A side from a fleet output directory, a JSON report, or a capture (a directory or
    trace files are analysed as ``tracecorr report`` would)."""
    p = Path(path)
    if not p.exists():
        raise InputError(path, "no such file or directory")
    if p.is_file() and p.name == FLEET_JSON:
        p = p.parent
    if is_fleet_dir(p):
        return _fleet_side(p)
    if p.is_file() and sniff(p) is None:  # not a trace format: a saved report?
        try:
            report = _json_report(p)
        except OSError as exc:
            raise InputError(path, f"unreadable: {exc.strerror or exc}") from exc
        if report is not None:
            return _report_side(path, "report", report)
    from ..correlator.api import analyze
    from ..correlator.render.json_report import to_dict

    a = analyze(
        [path],
        library_name=options.library,
        native_calls=list(options.native_calls),
        min_block_ms=options.min_block_ms,
        symfs=options.symfs,
    )
    return _report_side(path, "capture", to_dict(a))


def _json_report(p: Path) -> dict | None:
    """The report in *p* (a file no trace format recognised); None when it is no tracecorr
    document (analysed, to say what it is not); InputError for another tracecorr document
    (tables metadata, a diff)."""
    with open(p, "rb") as f:
        head = f.read(1)
    if head not in (b"{", b"["):
        return None
    try:
        doc = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError):
        return None
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if not (isinstance(schema, str) and schema.startswith("tracecorr.")):
        return None
    if schema != REPORT_SCHEMA:
        raise InputError(str(p), f"JSON with schema {schema!r}, not a {REPORT_SCHEMA} report")
    return doc


def _report_side(path: str, kind: str, report: dict) -> Side:
    name = Path(path).name
    try:
        blocking = blocking_frame(blocking_table(report["blocking"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(path, f"malformed {REPORT_SCHEMA} report: {exc}") from exc
    findings = [{**f, "capture": name} for f in report.get("findings", [])]
    return Side(path, kind, report.get("library", "?"), blocking, findings, [name])


def _fleet_side(out: Path) -> Side:
    doc = read_fleet_json(out)
    cols = ["call_site", "call", "syscall", "dur_ns", "in", "waker"]
    blocking = blocking_frame(read_table(out, "blocking", cols))
    findings = []
    for row in read_table(out, "findings", ["detail", "capture"]).to_pylist():
        findings.append({**json.loads(row["detail"]), "capture": row["capture"]})
    caps = [c["capture"] for c in doc["captures"] if c["status"] == "ok"]
    return Side(str(out), "fleet", doc.get("library", "?"), blocking, findings, caps)


def stats(durations: np.ndarray) -> dict:
    """count, total, p50 and p99 of blocked time (ns; percentiles interpolated, rounded)."""
    if not len(durations):
        return {"count": 0, "total_ns": 0, "p50_ns": None, "p99_ns": None}
    return {
        "count": int(len(durations)),
        "total_ns": int(durations.sum()),
        "p50_ns": int(round(float(np.median(durations)))),
        "p99_ns": int(round(float(np.percentile(durations, 99)))),
    }


def _change(b: dict, a: dict) -> dict:
    def delta(k):
        return None if b[k] is None or a[k] is None else a[k] - b[k]

    def ratio(k):
        return None if not b[k] or a[k] is None else round(a[k] / b[k], 4)

    return {
        "count": a["count"] - b["count"],
        "total_ns": a["total_ns"] - b["total_ns"],
        "p50_ns": delta("p50_ns"),
        "p99_ns": delta("p99_ns"),
        "total_ratio": ratio("total_ns"),
        "p50_ratio": ratio("p50_ns"),
    }


def holm(pvalues: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def compare_by(
    before: pd.DataFrame,
    after: pd.DataFrame,
    key: str,
    alpha: float = ALPHA,
    min_change: float = MIN_CHANGE,
) -> list[dict]:
    """One view of the diff: per value of *key*, both sides' stats, the change, and whether
    it exceeds the noise (see the module docstring)."""
    from scipy.stats import mannwhitneyu

    b_groups = {k: g.to_numpy() for k, g in before.groupby(key)["dur_ns"]}
    a_groups = {k: g.to_numpy() for k, g in after.groupby(key)["dur_ns"]}
    empty = np.zeros(0, dtype="int64")
    rows, tested = [], []
    for k in sorted(set(b_groups) | set(a_groups)):
        b, a = b_groups.get(k, empty), a_groups.get(k, empty)
        sb, sa = stats(b), stats(a)
        row = {key: k, "before": sb, "after": sa, "change": _change(sb, sa)}
        row.update(significant=None, p_adjusted=None, prob_after_slower=None, direction=None)
        if sb["count"] and sa["count"]:
            row["direction"] = _direction(float(np.sign(sa["p50_ns"] - sb["p50_ns"])) / 2 + 0.5)
        if len(b) >= MIN_RECORDS and len(a) >= MIN_RECORDS:
            test = mannwhitneyu(a, b, alternative="two-sided")
            slower = float(test.statistic) / (len(a) * len(b))  # P(after > before), ties half
            row["prob_after_slower"] = round(slower, 4)
            row["direction"] = _direction(slower)
            tested.append((row, float(test.pvalue)))
        rows.append(row)
    for (row, _), p_adj in zip(tested, holm([p for _, p in tested]), strict=True):
        row["p_adjusted"] = float(f"{p_adj:.3g}")
        b50, a50 = row["before"]["p50_ns"], row["after"]["p50_ns"]
        same_way = (a50 > b50) == (row["direction"] == "worse")  # median and ranks agree
        row["significant"] = bool(p_adj < alpha and _moved(b50, a50, min_change) and same_way)
    rows.sort(key=lambda r: (-abs(r["change"]["total_ns"]), str(r[key])))
    return rows


def _direction(prob_after_slower: float) -> str:
    if prob_after_slower > 0.5:
        return "worse"
    return "better" if prob_after_slower < 0.5 else "same"


def _moved(before: int, after: int, min_change: float) -> bool:
    """Did the median move by *min_change* or more, either way (x(1+m) or /(1+m))?"""
    if before <= 0 or after <= 0:
        return before != after
    return abs(np.log(after / before)) >= np.log1p(min_change) - 1e-12


def _finding_key(f: dict) -> tuple[str, tuple[str, ...]]:
    """What identifies a pitfall across runs: its kind and call sites (pids, fds and
    goroutine ids are different in every run)."""
    return f["kind"], tuple(sorted(f.get("call_sites") or ()))


def _group_findings(findings: list[dict]) -> dict[tuple, dict]:
    out: dict[tuple, dict] = {}
    for f in findings:
        k = _finding_key(f)
        x = out.setdefault(
            k,
            {
                "kind": k[0],
                "call_sites": list(k[1]),
                "severity": f.get("severity"),
                "summary": f.get("summary"),
                "count": 0,
                "captures": [],
            },
        )
        x["count"] += 1
        if f["capture"] not in x["captures"]:
            x["captures"].append(f["capture"])
    return out


def compare_findings(before: list[dict], after: list[dict]) -> dict:
    b, a = _group_findings(before), _group_findings(after)
    kinds = sorted({k for k, _ in b} | {k for k, _ in a})
    by_kind = []
    for kind in kinds:
        nb = sum(x["count"] for (k, _), x in b.items() if k == kind)
        na = sum(x["count"] for (k, _), x in a.items() if k == kind)
        by_kind.append({"kind": kind, "before": nb, "after": na, "change": na - nb})
    return {
        "by_kind": by_kind,
        "new": [a[k] for k in a if k not in b],
        "gone": [b[k] for k in b if k not in a],
    }


def diff(before: Side, after: Side, alpha: float = ALPHA, min_change: float = MIN_CHANGE) -> dict:
    """The whole comparison, as the tracecorr.diff/1 document."""
    if before.library != after.library:
        raise InputError(
            after.path,
            f"records the {after.library} library, {before.path} the {before.library} "
            "library: unrelated sides",
        )
    woken = {  # as the report's by_waker: the records a waker was recorded for
        side: frame[frame["waker"] != NO_WAKER]
        for side, frame in (("before", before.blocking), ("after", after.blocking))
    }
    views = {
        f"by_{key}": compare_by(before.blocking, after.blocking, key, alpha, min_change)
        for key in ("call_site", "syscall")
    }
    views["by_waker"] = compare_by(woken["before"], woken["after"], "waker", alpha, min_change)
    return {
        "schema": SCHEMA,
        "library": before.library,
        "test": {
            "method": "Mann-Whitney U, two-sided, Holm-adjusted per view",
            "independence": "records are treated as independent draws",
            "alpha": alpha,
            "min_change": min_change,
            "min_records": MIN_RECORDS,
        },
        "before": before.describe(),
        "after": after.describe(),
        **views,
        "findings": compare_findings(before.findings, after.findings),
    }
