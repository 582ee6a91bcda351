"""Which parser reads a file: decided from content, never from names.

Each format is data: a name, what it is, a sniffer over the first decompressed bytes, and the
parser to call (imported lazily, so detecting a py-spy file never imports the Go reader).
Files that are recognised but are not traces (a workload's ground truth) are named as such.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InputError, UnknownFormat
from .inputs import read_head

if TYPE_CHECKING:
    from .model import SourceTables


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    sniff: Callable[[bytes], bool]
    parser: str = ""  # "module:function" taking (path, source=, pid=) -> SourceTables
    #: "module:function" taking the same, returning a stream of Chunks (see store.py), for
    #: formats that can be written without holding their tables in memory
    streamer: str = ""
    #: "module:function" taking the same, returning a ChunkedSource (numpy only): what a
    #: worker process parses with, so that it need not load pandas
    chunked: str = ""
    #: "module:function" taking (path, helpers) and returning None or a plan (with a
    #: ``help()`` method run by each helper process, and ``remove()``) with which the
    #: parser, given ``split=(plan, collect)``, reads one large file with helpers
    splitter: str = ""

    def load(self) -> Callable[..., SourceTables]:
        return _function(self.parser)

    def load_chunked(self) -> Callable | None:
        return _function(self.chunked) if self.chunked else None

    def load_splitter(self) -> Callable | None:
        return _function(self.splitter) if self.splitter else None

    def stream(self) -> Callable:
        return _function(self.streamer)


def _function(spec: str) -> Callable:
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


_GO_TRACE = re.compile(rb"^go 1\.(\d+) trace\x00")
_PERF_SAMPLE = re.compile(
    rb"^\s*\S.*?\s+\d+(?:/\d+)?\s+(?:\[\d+\]\s+)?\d+\.\d+:\s+(?:\d+\s+)?[\w:.-]+:", re.M
)
_RAW_LINE = re.compile(rb"^[^\n]*;[^\n]* \d+$|^[^\n;]+ \d+$", re.M)


def _is_go_trace(head: bytes) -> bool:
    return bool(_GO_TRACE.match(head))


def _is_perf_data(head: bytes) -> bool:
    return head.startswith(b"PERFILE2")


def _is_perf_script(head: bytes) -> bool:
    if b"\x00" in head[:4096]:
        return False
    if head.startswith(b"# ========") and b"# perf version" in head:
        return True
    return bool(_PERF_SAMPLE.search(head[:16384]))


def _is_chrometrace(head: bytes) -> bool:
    h = head.lstrip()
    return h.startswith(b"[") and b'"cat":"py-spy"' in h[:4096]


def _is_speedscope(head: bytes) -> bool:
    h = head.lstrip()
    return h.startswith(b"{") and b"speedscope.app/file-format-schema.json" in h[:4096]


def _is_pyspy_raw(head: bytes) -> bool:
    if b"\x00" in head or not head.strip():
        return False
    lines = [ln for ln in head.split(b"\n")[:50] if ln.strip()]
    if len(head) == 64 * 1024:  # the last line may be cut by the head window
        lines = lines[:-1]
    return (
        bool(lines) and all(_RAW_LINE.match(ln) for ln in lines) and any(b";" in ln for ln in lines)
    )


def _is_truth(head: bytes) -> bool:
    first = head.split(b"\n", 1)[0]
    try:
        rec = json.loads(first)
    except ValueError:
        return False
    return isinstance(rec, dict) and rec.get("kind") == "process" and "pid" in rec


#: In detection order.
FORMATS: list[Format] = [
    Format(
        "go-trace",
        "Go execution trace (runtime/trace)",
        _is_go_trace,
        "tracecorr.parsers.gotrace:parse",
        "tracecorr.parsers.gotrace:stream",
        "tracecorr.parsers.gotrace:parse_chunks",
    ),
    Format(
        "perf-data",
        "perf.data (read natively; `perf script` for what the reader does not handle)",
        _is_perf_data,
        "tracecorr.parsers.perf_input:parse",
        splitter="tracecorr.parsers.perf_data.pieces:plan",
    ),
    Format(
        "pyspy-chrometrace",
        "py-spy --format chrometrace",
        _is_chrometrace,
        "tracecorr.parsers.pyspy:parse",
    ),
    Format(
        "pyspy-speedscope",
        "py-spy --format speedscope",
        _is_speedscope,
        "tracecorr.parsers.pyspy:parse",
    ),
    Format(
        "perf-script", "`perf script` text", _is_perf_script, "tracecorr.parsers.perf_script:parse"
    ),
    Format(
        "pyspy-raw",
        "py-spy --format raw (collapsed stacks)",
        _is_pyspy_raw,
        "tracecorr.parsers.pyspy:parse",
    ),
]
#: Files a capture directory holds that are not trace inputs.
NOT_INPUTS: list[Format] = [
    Format("ground-truth", "a workload's ground-truth JSONL", _is_truth),
]


def known_formats_text() -> str:
    return ", ".join(f.name for f in FORMATS)


def by_name(name: str) -> Format:
    return next(f for f in FORMATS if f.name == name)


def sniff(path: str | Path) -> Format | None:
    """The format of *path* (a trace, or a known non-trace), or None."""
    head = read_head(path)
    for fmt in FORMATS + NOT_INPUTS:
        if fmt.sniff(head):
            return fmt
    return None


def detect(path: str | Path) -> Format:
    """The format whose parser can read *path*; InputError with a useful line otherwise."""
    p = Path(path)
    if p.is_dir():
        raise InputError(str(p), "is a directory (use parsers.sources.expand_inputs)")
    fmt = sniff(p)
    if fmt is None:
        raise UnknownFormat(str(p), f"unknown format (tracecorr reads: {known_formats_text()})")
    if fmt in NOT_INPUTS:
        raise UnknownFormat(str(p), f"{fmt.description}, not a trace")
    return fmt
