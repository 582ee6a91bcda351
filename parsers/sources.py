"""From what the user named to parsed sources: the one input loader of the CLI and the API.

Inputs are files or capture directories, and optionally files named with their format
(``--go-trace F``); formats are detected from content. A capture directory written by our
recorders has a ``capture.json`` naming its files and what a trace cannot say about itself:
the pid of a Go trace, CLOCK_MONOTONIC when py-spy started (an anchor its clock lacks).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .detect import NOT_INPUTS, Format, by_name, detect, known_formats_text, sniff
from .errors import InputError

if TYPE_CHECKING:
    from .model import SourceTables

#: explicit-format options of ``tracecorr report``: format name -> formats it may hold
#: (py-spy files are detected, since py-spy writes three formats)
FLAGGED_FORMATS = {
    "go-trace": ("go-trace",),
    "perf-script": ("perf-script",),
    "perf-data": ("perf-data",),
    "pyspy": ("pyspy-chrometrace", "pyspy-speedscope", "pyspy-raw"),
}


@dataclass
class Expanded:
    inputs: list[tuple[Path, Format]]  # what to parse, with the format that reads it
    skipped: list[str]  # one line per file of a directory we did not take, with why


def expand_inputs(paths: Sequence[str | Path]) -> Expanded:
    """Files to parse: explicit files as given; a capture directory's trace files.

    An explicit file must be readable (detect raises InputError otherwise). A directory with
    ``capture.json`` names its inputs there; any other directory contributes every file
    whose content a format recognises, and the rest is listed in ``skipped``. perf.data
    beside its own printed text is skipped in favour of the text: both hold the same
    events, and the text needs no local perf.
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
            else:
                found.append((c, fmt))
        names = {fmt.name for _, fmt in found}
        for c, fmt in found:
            if fmt.name == "perf-data" and "perf-script" in names:
                out.skipped.append(f"{c}: perf.data beside its perf script text; using the text")
            else:
                out.inputs.append((c, fmt))
    return out


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


def capture_meta(directory: Path) -> dict:
    """The ``capture.json`` of a capture directory ({} when there is none)."""
    meta = directory / "capture.json"
    if not meta.exists():
        return {}
    try:
        return json.loads(meta.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(str(meta), f"unreadable capture metadata: {exc}") from exc


def _capture_files(d: Path) -> list[Path]:
    files = capture_meta(d).get("files", {})
    return [
        d / name
        for key, name in files.items()
        if key not in ("truth", "binary") and (d / name).exists()
    ]


def capture_pid(path: str | Path) -> int | None:
    """The recorded process id from the capture.json beside *path* (Go traces do not record
    their pid; a capture directory does)."""
    pid = capture_meta(Path(path).parent).get("process", {}).get("pid")
    return int(pid) if isinstance(pid, int) else None


def pyspy_anchor(path: str | Path) -> int | None:
    """CLOCK_MONOTONIC just before py-spy started writing *path*, from the capture.json
    beside it (an anchor for py-spy's relative clock, good to process start-up time)."""
    p = Path(path)
    try:
        recs = capture_meta(p.parent).get("pyspy", {}).get("recordings", {})
    except InputError:
        return None
    for rec in recs.values():
        if rec.get("file") == p.name:
            return rec.get("anchor_mono_ns")
    return None


@dataclass
class Loaded:
    """Parsed sources, in input order, with where each came from and what was left out."""

    sources: list[SourceTables] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)  # source name -> file
    skipped: list[str] = field(default_factory=list)

    def warnings(self) -> list[str]:
        return [f"{s.meta.source}: {w}" for s in self.sources for w in s.meta.warnings]


def load_sources(
    paths: Sequence[str | Path] = (), flagged: Mapping[str, Sequence[str | Path]] | None = None
) -> Loaded:
    """Detect and parse every input. *flagged* maps an explicit-format option (a key of
    FLAGGED_FORMATS) to its files, which skip detection except for py-spy's three formats.
    InputError for the first bad input, or when there is nothing to read."""
    items: list[tuple[Path, Format]] = []
    out = Loaded()
    if paths:
        ex = expand_inputs(paths)
        items += ex.inputs
        out.skipped += ex.skipped
    for option, files in (flagged or {}).items():
        allowed = FLAGGED_FORMATS[option]
        for f in files:
            p = Path(f)
            if not p.exists():
                raise InputError(str(f), "no such file or directory")
            fmt = detect(p) if len(allowed) > 1 else by_name(allowed[0])
            if fmt.name not in allowed:
                raise InputError(str(f), f"given as --{option}, but it is {fmt.description}")
            items.append((p, fmt))
    if not items:
        where = ", ".join(str(p) for p in paths) or "(no inputs)"
        raise InputError(where, f"no trace inputs found (tracecorr reads: {known_formats_text()})")
    for (path, fmt), name in zip(items, source_names(items), strict=True):
        out.sources.append(fmt.load()(path, source=name, pid=capture_pid(path)))
        out.paths[name] = path
    return out
