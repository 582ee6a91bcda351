"""Which name a thread is shown by, the same in every renderer."""

from __future__ import annotations

from ..parsers.model import SourceTables


def thread_names(sources: list[SourceTables]) -> dict[int, str]:
    """OS thread id -> the first non-empty name any of *sources* gives it."""
    out: dict[int, str] = {}
    for s in sources:
        for tid, name in zip(s.threads["tid"], s.threads["name"], strict=True):
            if isinstance(name, str) and name and int(tid) not in out:
                out[int(tid)] = name
    return out
