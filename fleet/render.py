"""The diff as text (``tracecorr diff``'s stdout) and Markdown (``--markdown``): both read the
tracecorr.diff/1 document, so every output says the same."""

from __future__ import annotations


def _ms(ns: int | None) -> str:
    return "-" if ns is None else f"{ns / 1e6:,.2f}"


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{(ratio - 1) * 100:+.0f}%"


def _verdict(row: dict, doc: dict) -> str:
    if row["significant"] is None:
        return "too few records"
    p = row["p_adjusted"]
    if row["significant"]:
        return f"{row['direction'].upper()} (p={p:.2g})"
    if p < doc["test"]["alpha"]:
        return f"{row['direction']}, median within {doc['test']['min_change']:.0%} (p={p:.2g})"
    return f"no significant change (p={p:.2g})"


def _rows(view: list[dict], key: str, doc: dict) -> list[list[str]]:
    out = []
    for r in view:
        b, a, c = r["before"], r["after"], r["change"]
        both = b["count"] and a["count"]
        out.append(
            [
                str(r[key]),
                f"{b['count']} / {a['count']}",
                f"{_ms(b['p50_ns'])} -> {_ms(a['p50_ns'])}",
                f"{_ms(b['p99_ns'])} -> {_ms(a['p99_ns'])}",
                f"{_ms(b['total_ns'])} -> {_ms(a['total_ns'])}",
                _pct(c["p50_ratio"]) if both else "-",
                _verdict(r, doc) if both else ("gone" if b["count"] else "new"),
            ]
        )
    return out


HEAD = ["", "records", "p50 ms", "p99 ms", "total ms", "p50 change", "verdict"]
VIEWS = (
    ("By call site", "by_call_site", "call_site"),
    ("By syscall", "by_syscall", "syscall"),
    ("By waker", "by_waker", "waker"),
)


def _side(label: str, s: dict) -> str:
    return (
        f"{label}: {s['path']} ({s['kind']}, {len(s['captures'])} capture(s)): "
        f"{s['records']} records, {_ms(s['blocked_ns'])} ms blocked, {s['findings']} findings"
    )


def render_text(doc: dict) -> str:
    t = doc["test"]
    lines = [
        f"tracecorr diff: time blocked in {doc['library']}",
        _side("before", doc["before"]),
        _side("after ", doc["after"]),
        f"significance: {t['method']}, alpha {t['alpha']}, median moved >= "
        f"{t['min_change']:.0%}, >= {t['min_records']} records per side",
        "",
    ]
    for title, view, key in VIEWS:
        lines.append(title)
        rows = _rows(doc[view], key, doc)
        if not rows:
            lines += ["  (no records)", ""]
            continue
        table = [[key.replace("_", " "), *HEAD[1:]], *rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(HEAD))]
        for r in table:
            lines.append(
                "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            )
        lines.append("")
    lines += _findings_lines(doc["findings"], markdown=False)
    return "\n".join(lines) + "\n"


def _findings_lines(f: dict, markdown: bool) -> list[str]:
    bullet = "- " if markdown else "  "
    lines = ["## Findings", ""] if markdown else ["Findings"]
    if not f["by_kind"]:
        lines.append(f"{bullet}(none on either side)")
    for k in f["by_kind"]:
        lines.append(f"{bullet}{k['kind']}: {k['before']} -> {k['after']} ({k['change']:+d})")
    for label, items in (("new", f["new"]), ("gone", f["gone"])):
        for x in items:
            where = ", ".join(x["call_sites"]) or "no call site"
            lines.append(
                f"{bullet}{label.upper()}: {x['kind']} ({x['severity']}) at {where}, "
                f"in {', '.join(x['captures'])}"
            )
    return lines


def render_markdown(doc: dict) -> str:
    t = doc["test"]
    lines = [
        f"# tracecorr diff: time blocked in {doc['library']}",
        "",
        f"- {_side('before', doc['before'])}",
        f"- {_side('after', doc['after'])}",
        f"- significance: {t['method']}, alpha {t['alpha']}, median moved >= "
        f"{t['min_change']:.0%}, >= {t['min_records']} records per side",
        "",
    ]
    for title, view, key in VIEWS:
        lines += [f"## {title}", ""]
        rows = _rows(doc[view], key, doc)
        if not rows:
            lines += ["(no records)", ""]
            continue
        lines.append("| " + " | ".join([key.replace("_", " "), *HEAD[1:]]) + " |")
        lines.append("|" + "---|" * len(HEAD))
        for r in rows:
            cells = [c.replace("|", "\\|") for c in r]
            cells[0] = f"`{cells[0]}`"
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += _findings_lines(doc["findings"], markdown=True)
    return "\n".join(lines) + "\n"
