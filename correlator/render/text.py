"""The text and Markdown reports: sources, summary, the longest records and their stacks."""

from __future__ import annotations

import math

from ..api import Analysis
from ..schema import text_columns
from .html import deep_link
from .json_report import to_dict

TOP = 10


def _ms(ns) -> str:
    if ns is None or (isinstance(ns, float) and math.isnan(ns)):
        return "?"
    if ns < 1_000_000:
        return f"{ns / 1e3:.0f} us"
    return f"{ns / 1e6:.1f} ms" if ns < 1_000_000_000 else f"{ns / 1e9:.2f} s"


#: how a cell of "Longest records" shows a record's column (schema.Text.format)
CELL_FORMATS = {
    "str": lambda x, k, t0: str(x[k]),
    "ms": lambda x, k, t0: _ms(x[k]),
    "maybe_ms": lambda x, k, t0: _ms(x[k]) if x[k] is not None else "?",
    "since_t0": lambda x, k, t0: f"+{_ms(x[k] - t0)}",
    "maybe": lambda x, k, t0: "-" if x[k] is None else str(x[k]),
    "dash": lambda x, k, t0: x[k] or "-",
    "call": lambda x, k, t0: (x[k] or "-") + _IN_TAGS.get(x["in"], ""),
    "syscall": lambda x, k, t0: x[k] or "(off-CPU)",
    "off_cpu": lambda x, k, t0: f"{_ms(x[k])} {x['off_cpu_state'] or ''}".strip(),
    "joined": lambda x, k, t0: ",".join(x[k]),
}


def _losses(sources: list[dict], h, markdown: bool) -> list[str]:
    """What each source lost or skipped (the ledger, parsers/stats.py), worst first."""
    rows = [
        [x["source"], loss["severity"], f"{loss['count']:,}", loss["reason"], loss["avoid"] or ""]
        for x in sources
        for loss in x.get("losses", [])
    ]
    if not rows:
        return []
    header = ["source", "severity", "count", "what", "to avoid it"]
    return ["", h("Losses"), *_table(rows, header, markdown)]


def _table(rows: list[list[str]], header: list[str], markdown: bool) -> list[str]:
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return out + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return ["  " + fmt.format(*header)] + ["  " + fmt.format(*r) for r in rows]


def _findings(findings: list[dict], blocking: list[dict], h, markdown: bool) -> list[str]:
    """The pitfalls, worst first, each one sentence with the fix, then who and when."""
    if not findings:
        return []
    starts = [x["start_ns"] for x in blocking] + [f["first_ns"] for f in findings if f["first_ns"]]
    t0 = min(starts) if starts else 0
    out = [h(f"Findings ({len(findings)})")]
    for f in findings:
        mark = f"**{f['severity']}**" if markdown else f["severity"].upper()
        out.append(f"- {mark} {f['kind']}: {f['summary']}")
        where = []
        if f.get("fd") is not None:
            where.append(f"pid {f['pid']} fd {f['fd']}")
        if f.get("goroutines"):
            where.append("goroutines " + ", ".join(map(str, f["goroutines"])))
        if f.get("threads"):
            where.append("threads " + ", ".join(map(str, f["threads"][:12])))
        if f.get("first_ns") is not None:
            where.append(f"from +{_ms(f['first_ns'] - t0)} to +{_ms(f['last_ns'] - t0)}")
        if where:
            out.append(("  " if markdown else "    ") + "; ".join(where))
    return out + [""]


def _who(x: dict) -> str:
    if not x.get("tid"):
        return x.get("comm") or "(interrupt)"
    return f"{x.get('comm') or '?'} (pid {x.get('pid')}, tid {x['tid']})"


def _wakers(s: dict, blocking: list[dict], h, markdown: bool) -> list[str]:
    """Who woke the blocked calls, by blocked time; or why the capture cannot say."""
    if s.get("by_waker"):
        rows = [
            [
                str(r["records"]),
                _ms(r["blocked_ns"]),
                r["comm"] or "?",
                r["meanwhile"] or "-",
                r["frame"] or "-",
            ]
            for r in s["by_waker"][:TOP]
        ]
        seen = f"{s['wakers_seen']} of {s['records']} record(s) have their waker"
        return ["", h("Wakers"), seen] + _table(
            rows, ["records", "blocked", "waker", "waker meanwhile in", "woken from"], markdown
        )
    if s.get("waker_note") and blocking:
        return ["", h("Wakers"), s["waker_note"]]
    return []


def _why(x: dict, t0: int, markdown: bool) -> list[str]:
    """The waker of one record, what it waited on meanwhile, and the chain behind it."""
    pad = "  - " if markdown else "  "
    wk = x["waker"]
    out = [f"{pad}woken by {_who(wk)} at +{_ms(wk['wakeup_ns'] - t0)}"]
    frames = [f for f in wk.get("stack") or [] if "[kernel" not in f][:3]
    if frames:
        out.append(f"{pad}  from " + " <- ".join(frames))
    lw = wk.get("longest_wait")
    if lw:
        what = lw["syscall"] or "off-CPU"
        state = {"S": "asleep", "D": "in uninterruptible sleep", "R": "running"}.get(
            lw.get("state") or "", lw.get("state") or ""
        )
        out.append(
            f"{pad}meanwhile the waker was in {what} ({state}) for {_ms(lw['dur_ns'])} "
            f"of the record's {_ms(x['dur_ns'])}"
        )
    path = x.get("critical_path") or []
    if len(path) > 1:
        out.append(
            f"{pad}critical path: "
            + " <- ".join(
                (p.get("what") or _who(p))
                if not p.get("tid")
                else _who(p) + (f" in {p['what']}" if p.get("what") else "")
                for p in path
            )
        )
    return out


def _title(a: Analysis, markdown: bool) -> str:
    """The report's first line: which library, and (in text) the block threshold it used."""
    if markdown:
        return f"# tracecorr report: blocking inside {a.library.name} calls"
    return (
        f"tracecorr report: blocking syscalls inside {a.library.name} calls "
        f"(min block {_ms(a.min_block_ns)})"
    )


def _error(error_ns) -> str:
    """A source's clock-alignment error: in ns when small, else as a duration."""
    if error_ns is None:
        return "-"
    return f"±{_ms(error_ns)}" if error_ns >= 100_000 else f"±{error_ns} ns"


def _threads(tm: dict | None) -> str:
    """How a source's thread ids were put onto perf's, in a few words ("-": perf's own)."""
    if tm is None:
        return "-"
    if tm["method"] == "same-threads":
        return "same"
    n = tm["mapped"] + len(tm["unmapped"]) + len(tm["ambiguous"])
    return f"{tm['method']} {tm['mapped']}/{n}"


def _sources(sources: list[dict], h, markdown: bool) -> list[str]:
    """Each input source with its clock, how it was aligned, and how many events it gave."""
    rows = [
        [
            x["source"],
            x["format_version"],
            x["clock"],
            "-" if x["offset_ns"] is None else f"{x['offset_ns']} ns",
            x["method"],
            _error(x["error_ns"]),
            _threads(x.get("threads")),
            f"{x['events']:,}",
            f"{x['skipped']:,}",
        ]
        for x in sources
    ]
    header = ["source", "format", "clock", "offset", "method", "error", "threads", "events",
              "skipped"]  # fmt: skip
    return [h("Sources"), *_table(rows, header, markdown)]


def _runtime_share(s: dict, lib: str) -> list[str]:
    """The Go runtime's part of the blocked time, kept apart so it is not blamed on *lib*."""
    split, rt = s["latency_split"], s["runtime"]
    if not (rt["records"] or split["p_wait_ns"]):
        return []
    return [
        f"Go runtime time in or after {lib} calls (not {lib}'s): "
        f"{rt['records']} record(s), {_ms(rt['ns'])}; "
        f"{split['calls_losing_p']} call(s) returned without their P and waited "
        f"{_ms(split['p_wait_ns'])} for one."
    ]


#: the records table's tag after the call for a record that is not the library's time
_IN_TAGS = {
    "go-runtime": " [runtime]",
    "python-runtime": " [GIL]",
    "caller": " [caller]",
    "tracer": " [tracer]",
}


def _not_the_library(s: dict, lib: str) -> list[str]:
    """Time inside *lib*'s calls that the callchains or py-spy give to someone else."""
    out = []
    py = s.get("python_runtime", {})
    if py.get("records"):
        out.append(
            f"Waiting for Python's GIL inside {lib} calls (not {lib}'s: another thread held "
            f"the interpreter): {py['records']} record(s), {_ms(py['ns'])}."
        )
    cl = s.get("caller", {})
    if cl.get("records"):
        out.append(
            f"The callers' own code inside {lib} calls (not {lib}'s: a wrapper's syscalls "
            f"before or after it called {lib}, by the callchain): {cl['records']} record(s), "
            f"{_ms(cl['ns'])}" + _syscalls(cl) + "."
        )
    return out


def _tracer(s: dict, lib: str) -> list[str]:
    """The profiler's own cost: py-spy's ptrace stops, over the capture and inside calls."""
    stops, within = s.get("tracer_stops") or {}, s["tracer_stop_ns"]
    if not stops.get("stops"):
        if not within:
            return []
        return [
            f"Stopped by a tracer (the profiler's own cost, e.g. py-spy): "
            f"{_ms(within)} inside the records."
        ]
    return [
        f"A tracer stopped the threads {stops['stops']:,} time(s) for {_ms(stops['ns'])} "
        f"in all (py-spy's ptrace, on {stops['threads']} thread(s)), {_ms(within)} of it "
        f"inside {lib} calls: the profiler's cost, not {lib}'s; py-spy --nonblocking "
        f"avoids it."
    ]


def _syscalls(part: dict) -> str:
    """' in nanosleep 3, read 1' from an apart-section's by_syscall."""
    rows = part.get("by_syscall") or []
    return (" in " + ", ".join(f"{r['syscall']} {r['count']}" for r in rows[:4])) if rows else ""


def _summary(s: dict, lib: str, h) -> list[str]:
    """The totals in a few sentences; the optional ones only when the capture has them."""
    nc = s["native_calls"]
    out = [
        h("Summary"),
        f"{s['records']} blocking record(s), {_ms(s['blocked_ns'])} blocked in total, "
        f"{_ms(s['off_cpu_ns'])} off CPU; {s['threads']} thread(s), "
        f"{s['goroutines']} goroutine(s); P handed off in {s['p_lost']}.",
    ]
    if nc["calls"]:
        out.append(
            f"{nc['calls']} Go calls into {lib} on {nc['threads']} thread(s); "
            f"at most {nc['max_threads']} thread(s) inside {lib} at once."
        )
    out += _runtime_share(s, lib)
    out += _not_the_library(s, lib)
    if s["censored"]:
        out.append(
            "Partly seen by perf, bounded by the Go trace or py-spy: "
            + ", ".join(f"{k} {v}" for k, v in sorted(s["censored"].items()))
        )
    out += _tracer(s, lib)
    for x in s.get("stack_stops", [])[:3]:
        out.append(f"Native stacks cut short in {x['records']} record(s): {x['why']}")
    if s["evidence"]:
        out.append("Evidence: " + ", ".join(f"{k} {v}" for k, v in sorted(s["evidence"].items())))
    return out


#: the breakdowns of the summary: (title, summary key, the column that names a row)
BREAKDOWNS = (
    ("By call site", "by_call_site", "call_site"),
    ("By syscall", "by_syscall", "syscall"),
    ("By thread", "by_thread", "tid"),
    ("By goroutine", "by_goroutine", "goid"),
)


def _breakdown_row(r: dict, key: str, label: str) -> list[str]:
    """One row of a breakdown; a thread is named with its name and pid, not just its tid."""
    who = str(r.get(label))
    if key == "by_thread":
        who = f"{r['tid']} {r.get('thread') or ''} (pid {r['pid']})"
    return [str(r["count"]), _ms(r["total_ns"]), _ms(r["p50_ns"]), _ms(r["max_ns"]), who]


def _breakdowns(s: dict, h, markdown: bool) -> list[str]:
    """The blocked time by call site, syscall, thread and goroutine, the top rows of each."""
    out = []
    for title, key, label in BREAKDOWNS:
        if not s[key]:
            continue
        rows = [_breakdown_row(r, key, label) for r in s[key][:TOP]]
        header = ["count", "total", "p50", "max", label.replace("_", " ")]
        out += ["", h(title), *_table(rows, header, markdown)]
    return out


def _timeline_links(longest: list[dict], t0: int, html_page: str, h, markdown: bool) -> list[str]:
    """A link per longest record that opens the timeline page around it."""
    out = ["", h("The longest records in the timeline page")]
    for x in longest:
        link = deep_link(html_page, x["start_ns"], x["end_ns"], goid=x["goid"], pad=0.5)
        what = f"+{_ms(x['start_ns'] - t0)} {_ms(x['dur_ns'])} tid {x['tid']}" + (
            "" if x["goid"] is None else f" goroutine {x['goid']}"
        )
        out.append(f"- [{what}]({link})" if markdown else f"  {what}: {link}")
    return out


def _stacks(top: dict, h, markdown: bool) -> list[str]:
    """The Go, native and Python stacks of one record, the innermost frames of each."""
    out = ["", h("Stacks of the longest record")]
    for name in ("go_stack", "native_stack", "python_stack"):
        if top[name]:
            out.append(f"{name.replace('_', ' ')}:")
            out += [("    " if not markdown else "    - ") + f for f in top[name][:12]]
    return out


def _longest(blocking: list[dict], h, markdown: bool, html_page: str | None) -> list[str]:
    """The longest records as a table (optionally linked into the timeline page), then why
    the very longest blocked and its stacks."""
    out = ["", h(f"Longest {min(TOP, len(blocking))} records")]
    t0 = min(x["start_ns"] for x in blocking)
    longest = sorted(blocking, key=lambda x: -x["dur_ns"])[:TOP]
    cells = text_columns()
    rows = [[CELL_FORMATS[t.format](x, c.name, t0) for c, t in cells] for x in longest]
    out += _table(rows, [t.header for _, t in cells], markdown)
    if html_page:
        out += _timeline_links(longest, t0, html_page, h, markdown)
    top = longest[0]
    if top.get("waker"):
        out += ["", h("Why the longest record blocked")]
        out += _why(top, t0, markdown)
    return out + _stacks(top, h, markdown)


def render(a: Analysis, markdown: bool = False, html_page: str | None = None) -> str:
    """The report; with *html_page* (the timeline page written in the same run, as a path
    relative to where the report is read) each of the longest records gets a link that
    opens the page at that moment, with half its length of context on either side."""
    d = to_dict(a)
    s = d["summary"]
    h = (lambda t: f"## {t}") if markdown else (lambda t: t)
    out = [_title(a, markdown), ""]
    if d["blind"]:
        out += [h("Cannot see"), *(f"- {b}" for b in d["blind"]), ""]
    out += _findings(d["findings"], d["blocking"], h, markdown)
    out += _sources(d["sources"], h, markdown)
    out += _losses(d["sources"], h, markdown)
    out.append("")
    out += _summary(s, a.library.name, h)
    out += _breakdowns(s, h, markdown)
    out += _wakers(s, d["blocking"], h, markdown)
    if d["blocking"]:
        out += _longest(d["blocking"], h, markdown, html_page)
    elif d["blind"]:
        out += ["", "No blocking record, but not a clean result: the sources could not be "
                "joined (see Cannot see, above)."]  # fmt: skip
    else:
        out += [
            "",
            f"No blocking syscall of {_ms(a.min_block_ns)} or more inside a {a.library.name} call.",
        ]
    rest = [w for w in d["warnings"] if w not in d["blind"]]
    if rest:
        out += ["", h("Warnings")] + [f"- {w}" for w in rest]
    return "\n".join(out) + "\n"
