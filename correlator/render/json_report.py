"""The JSON report (contract: schema ``tracecorr.report/1``, see DESIGN.md).

``to_dict`` is also what the text and Markdown renderers read, so every output says the same.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..api import Analysis

SCHEMA = "tracecorr.report/1"


def _clean(v: Any) -> Any:
    """JSON-safe: numpy scalars -> Python, NaN/NA -> None."""
    if v is None:
        return None
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    if v.__class__.__name__ in ("NAType", "NaTType"):
        return None
    if isinstance(v, list):
        return [_clean(x) for x in v]
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    return v


def to_dict(a: Analysis) -> dict:
    sources = []
    for s in a.sources:
        al = a.alignments[s.meta.source]
        sources.append(
            {
                "kind": s.meta.kind,
                "path": s.meta.path,
                "source": s.meta.source,
                "clock": s.clock.clock_id,
                "offset_ns": al.offset_ns,
                "method": al.method,
                "error_ns": al.error_ns,
                "events": int(sum(s.meta.events.values())),
                "skipped": int(sum(s.meta.skipped.values())),
                "skipped_by_reason": dict(s.meta.skipped),
                "losses": s.meta.losses(),
                "format_version": s.meta.format_version,
                "alignment_note": al.note,
                "alignment_support": al.support,
                "alignment_residual_ns": al.residual_ns,
                "threads": al.threads.as_dict() if al.threads else None,
                # where perf.data's DSO paths were looked up (--symfs, a capture's archive)
                "symfs": s.meta.extra.get("symfs"),
                # each user-space DSO the stacks touch: where it was read from, or why not
                "dsos": (s.meta.extra.get("symbols") or {}).get("user_dsos"),
            }
        )
    blocking = [
        {k: _clean(v) for k, v in row.items()} for row in a.blocking.to_dict(orient="records")
    ]
    return {
        "schema": SCHEMA,
        "library": a.library.name,
        "sources": sources,
        "blocking": blocking,
        "findings": _clean(a.findings),
        "summary": _clean(a.summary),
        "warnings": a.warnings,
        "blind": a.blind,
        "skipped_inputs": a.skipped_inputs,
    }


def to_json(a: Analysis) -> str:
    return json.dumps(to_dict(a), indent=1)
