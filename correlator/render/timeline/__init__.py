"""The postmortem timeline page's parts: ``data`` turns an Analysis into lanes and compact
columnar arrays, ``icicle`` builds the blocked-time tree, ``timeline.js`` and ``timeline.css``
draw them in the browser. ``correlator/render/html.py`` assembles the page."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent


def asset(name: str) -> str:
    """The text of a browser asset shipped next to this module (read at build time, inlined
    into the page so it works offline from one file)."""
    return (ASSETS / name).read_text(encoding="utf-8")
