"""Functions that fit on a screen, in the correlator and the perf.data reader.

A new function may not pass MAX_LINES; the ones that did when this rule came in (issue 24)
are listed with their length and may only shrink: split one, and lower (or drop) its entry.
"""

from __future__ import annotations

import ast

from tests.conftest import ROOT

MAX_LINES = 60
#: path:function -> its length when the rule came in: these may not grow
LONGER = {
    "correlator/render/timeline/data.py:build": 164,
    "parsers/perf_data/tables.py:assemble": 171,
    "parsers/perf_data/layout.py:sample_positions": 97,
    "correlator/render/html.py:figure": 85,
    "parsers/perf_data/records.py:_payload": 84,
    "parsers/perf_data/records.py:_chunk": 83,
    "parsers/perf_data/tables.py:_stacks": 62,
}


def _lengths() -> dict[str, int]:
    out = {}
    for root in ("correlator", "parsers/perf_data"):
        for path in sorted((ROOT / root).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    key = f"{rel}:{node.name}"
                    out[key] = max(out.get(key, 0), node.end_lineno - node.lineno + 1)
    return out


def test_functions_fit_on_a_screen():
    lengths = _lengths()
    too_long = {k: n for k, n in lengths.items() if n > LONGER.get(k, MAX_LINES)}
    assert not too_long, f"functions over {MAX_LINES} lines (or longer than listed): {too_long}"


def test_the_list_of_long_functions_is_current():
    lengths = _lengths()
    shrunk = {k: (n, lengths.get(k)) for k, n in LONGER.items() if lengths.get(k, 0) < n}
    assert not shrunk, f"shorter now: lower or drop their LONGER entries: {shrunk}"
