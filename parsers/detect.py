"""Which parser fits a file or a capture directory: decided from content, never from names.

Each format is data: a name, what it is, a sniffer over the first decompressed bytes, and the
parser to call (imported lazily, so detecting a py-spy file never imports the Go reader). A
format whose parser has not been written yet is still recognised, so the user is told what
the file is and that this version cannot read it, instead of "unknown format".
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, UnknownFormat
from .inputs import read_head
from .model import SourceTables


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    sniff: Callable[[bytes], bool]
    parser: str | None = None  # "module:function" taking (path, source=, pid=) -> SourceTables

    def load(self) -> Callable[..., SourceTables]:
        if self.parser is None:
            raise LookupError(self.name)
        module, func = self.parser.split(":")
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


#: In detection order. ``parser`` is filled in by each parser's issue as it lands.
FORMATS: list[Format] = [
    Format("go-trace", "Go execution trace (runtime/trace)", _is_go_trace, "parsers.gotrace:parse"),
    Format(
        "perf-data",
        "perf.data (read through a local `perf script`)",
        _is_perf_data,
        "parsers.perf_script.perfdata:parse",
    ),
    Format(
        "pyspy-chrometrace", "py-spy --format chrometrace", _is_chrometrace, "parsers.pyspy:parse"
    ),
    Format("pyspy-speedscope", "py-spy --format speedscope", _is_speedscope, "parsers.pyspy:parse"),
    Format("perf-script", "`perf script` text", _is_perf_script, "parsers.perf_script:parse"),
    Format(
        "pyspy-raw", "py-spy --format raw (collapsed stacks)", _is_pyspy_raw, "parsers.pyspy:parse"
    ),
]
#: Files a capture directory holds that are not trace inputs.
NOT_INPUTS: list[Format] = [
    Format("ground-truth", "a workload's ground-truth JSONL", _is_truth),
]


def readable_formats() -> list[str]:
    return [f.name for f in FORMATS if f.parser is not None]


def known_formats_text() -> str:
    names = readable_formats()
    return ", ".join(names) if names else "none yet"


def sniff(path: str | Path) -> Format | None:
    """The format of *path* (any parser state), or None when nothing recognises it."""
    head = read_head(path)
    for fmt in FORMATS + NOT_INPUTS:
        if fmt.sniff(head):
            return fmt
    return None


def detect(path: str | Path) -> Format:
    """The format whose parser can read *path*; InputError with a useful line otherwise."""
    p = Path(path)
    if p.is_dir():
        raise InputError(str(p), "is a directory (use expand_inputs)")
    fmt = sniff(p)
    if fmt is None:
        raise UnknownFormat(str(p), f"unknown format (tracecorr reads: {known_formats_text()})")
    if fmt in NOT_INPUTS:
        raise UnknownFormat(str(p), f"{fmt.description}, not a trace")
    if fmt.parser is None:
        raise UnknownFormat(
            str(p),
            f"looks like {fmt.description}, which this version cannot "
            f"read yet (tracecorr reads: {known_formats_text()})",
        )
    return fmt


def source_names(inputs: list[tuple[Path, Format]]) -> list[str]:
    """A short unique name per input: ``<format>:<file name>`` (``#2``... on clashes)."""
    names: list[str] = []
    for path, fmt in inputs:
        base = f"{fmt.name}:{path.name}"
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}#{n}"
        names.append(name)
    return names


@dataclass
class Expanded:
    inputs: list[tuple[Path, Format]]  # what to parse, with the format that reads it
    skipped: list[str]  # one line per file of a directory we did not take, with why


def expand_inputs(paths: list[str | Path]) -> Expanded:
    """Files to parse: explicit files as given; a capture directory's trace files.

    An explicit file must be readable (detect raises InputError otherwise). A directory with
    ``capture.json`` (written by our capture tools) names its inputs there; any other
    directory contributes every file whose content a format recognises, and the rest is
    listed in ``skipped``. perf.data beside its own printed text is skipped in favour of the
    text: both hold the same events, and the text needs no local perf.
    """
    out = Expanded([], [])
    for item in paths:
        p = Path(item)
        if not p.exists():
            raise InputError(str(p), "no such file or directory")
        if not p.is_dir():
            out.inputs.append((p, detect(p)))
            continue
        found: list[tuple[Path, Format]] = []
        for c in _capture_files(p) or sorted(c for c in p.iterdir() if c.is_file()):
            fmt = sniff(c)
            if fmt is None:
                out.skipped.append(f"{c}: unknown format")
            elif fmt in NOT_INPUTS:
                out.skipped.append(f"{c}: {fmt.description}, not a trace")
            elif fmt.parser is None:
                out.skipped.append(f"{c}: {fmt.description}, which this version cannot read yet")
            else:
                found.append((c, fmt))
        names = {fmt.name for _, fmt in found}
        for c, fmt in found:
            if fmt.name == "perf-data" and "perf-script" in names:
                out.skipped.append(f"{c}: perf.data beside its perf script text; using the text")
            else:
                out.inputs.append((c, fmt))
    return out


def _capture_meta(d: Path) -> dict:
    meta = d / "capture.json"
    if not meta.exists():
        return {}
    try:
        return json.loads(meta.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(str(meta), f"unreadable capture metadata: {exc}") from exc


def _capture_files(d: Path) -> list[Path]:
    files = _capture_meta(d).get("files", {})
    return [
        d / name
        for key, name in files.items()
        if key not in ("truth", "binary") and (d / name).exists()
    ]


def capture_pid(path: str | Path) -> int | None:
    """The recorded process id from the capture.json beside *path*, when there is one.

    Go traces do not record their pid; a capture directory does.
    """
    pid = _capture_meta(Path(path).parent).get("process", {}).get("pid")
    return int(pid) if isinstance(pid, int) else None
