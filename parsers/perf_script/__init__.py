"""`perf script` text (and perf.data through a local `perf script`) -> canonical tables.

    lines.py     chunked reading; record lines and callchain blocks as Arrow arrays
    records.py   record fields and per-event payloads -> the per-record columns
    stacks.py    callchain blocks of text -> interned stacks
    header.py    the --header block: clock id, reference time, host, arch
    perfdata.py  perf.data: run perf script with a fixed field list

The per-record columns, and the tables built from them, belong to ``parsers/perf_records``
(shared with the perf.data reader).

Memory is bounded by one chunk of text plus compact per-event columns, not the text.
"""

from __future__ import annotations

import io
import platform
from pathlib import Path

from ..errors import InputError
from ..inputs import open_binary
from ..model import SourceTables
from ..perf_records.columns import Records, Registries
from ..perf_records.header import PerfHeader
from ..perf_records.syscall_tables import TABLES
from .header import parse_header
from .lines import split_chunks
from .records import add_chunk
from .stacks import TextStacks

__all__ = ["parse", "parse_stream"]


def parse(
    path: str | Path,
    source: str = "perf-script",
    pid: int | None = None,
    only_pids: set[int] | None = None,
) -> SourceTables:
    """Read perf script text (plain, .gz or .zst). *pid* is unused (perf knows its pids);
    *only_pids* keeps only those processes' threads (system-wide recordings)."""
    path = str(path)
    try:
        with open_binary(path) as f:
            return parse_stream(f, path, source, only_pids)
    except (OSError, EOFError) as e:
        raise InputError(path, f"cannot read: {e}") from None


def parse_stream(
    f,
    path: str,
    source: str,
    only_pids: set[int] | None = None,
    header_lines: list[str] | None = None,
) -> SourceTables:
    from ..perf_records.tables import build_tables

    rec = Records()
    reg = Registries(stacks=TextStacks())
    header_text: list[str] = list(header_lines or [])
    header: PerfHeader | None = None
    nr_names: dict[int, str] = {}
    if not hasattr(f, "peek"):
        f = io.BufferedReader(f)
    if b"\x00" in f.peek(4096)[:4096]:
        raise InputError(path, "binary data, not perf script text", line=1)
    for chunk in split_chunks(f):
        if header is None:
            header_text += chunk.header
            header = parse_header(header_text)
            arch = header.arch or platform.machine()
            nr_names = TABLES.get(arch, TABLES["x86_64"])
        add_chunk(rec, reg, chunk, nr_names)
    if header is None:
        header = parse_header(header_text)
    if rec.rows == 0:
        where = f"line {rec.garbage_lines[0]}: " if rec.garbage_lines else ""
        raise InputError(
            path,
            f"{where}no perf script records found (expected lines like "
            "'comm  tid [cpu] secs.frac: event: ...')",
        )
    return build_tables(rec, reg, header, path, source, only_pids)
