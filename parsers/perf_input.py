"""perf.data as users hand it over: read natively (``perf_data``), or, for what the native
reader does not decode (pipe mode, ``-z``, directory format, ...), printed by a local ``perf
script`` and read by the text parser (``perf_script.perfdata``), with a warning saying why.

The "perf-data" format's parser (``parsers/detect.py``). The two readers never call each
other: this module chooses between them.
"""

from __future__ import annotations

from pathlib import Path

from .errors import InputError
from .model import SourceTables
from .perf_data import file as F


def parse(
    path: str | Path,
    source: str = "perf-data",
    pid: int | None = None,
    only_pids: set[int] | None = None,
    split=None,
    symfs: str | Path | None = None,
) -> SourceTables:
    """A perf.data file's canonical tables (see ``perf_data.parse``; *split*: read with
    helper processes, native reader only; *symfs*: where the recorded DSO paths are looked
    up first, a container's root or a capture's archive, for either reader)."""
    from .perf_data import parse as native

    symfs = str(symfs) if symfs else None
    try:
        return native(path, source, pid, only_pids, split=split, symfs=symfs)
    except F.Unsupported as exc:
        return through_perf_script(str(path), source, pid, only_pids, str(exc), symfs)


def through_perf_script(
    path: str, source: str, pid, only_pids, why: str, symfs: str | None = None
) -> SourceTables:
    """The file printed by ``perf script`` (``--symfs`` *symfs* when given) and read as
    text; *why*: what the native reader does not handle, said in a warning and in
    ``meta.extra["native_reader"]``."""
    from .perf_script import perfdata

    try:
        tables = perfdata.parse(path, source=source, pid=pid, only_pids=only_pids, symfs=symfs)
    except InputError as exc:
        raise InputError(
            path, f"{why}: not read natively, and through `perf script`: {exc.message}"
        ) from None
    tables.meta.warn(
        f"read through `perf script`: the native perf.data reader does not handle {why}"
    )
    tables.meta.extra["native_reader"] = f"fallback: {why}"
    return tables
