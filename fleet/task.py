"""One capture, analysed where a Dask worker runs it: the unit of work of ``tracecorr fleet``.

``plan_captures`` turns the command line into captures (a directory is one; files are grouped
by the directory they sit in). ``analyse_capture`` is the task: plain data in, plain data out
(pickled by Dask), so it runs the same in a local cluster, a remote one, or a plain loop.

A capture that cannot be read is a result with its one-line error, not an exception: one bad
pod's capture must not cost the fleet the other ninety-nine. An exception that escapes is a
bug or a dying machine; Dask retries it, and the fleet records what remains.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from ..parsers.errors import InputError
from ..parsers.sources import capture_meta


@dataclass(frozen=True)
class CaptureSpec:
    name: str  # unique within the fleet and safe as a directory name (the partition value)
    inputs: tuple[str, ...]  # a capture directory, or files of one directory
    directory: str


@dataclass(frozen=True)
class Options:
    library: str = "hiredis"
    native_calls: tuple[str, ...] = ()
    min_block_ms: float = 1.0
    #: where perf.data's DSO paths are looked up first (on the worker's machine), else each
    #: capture's own archive
    symfs: str | None = None


@dataclass
class CaptureResult:
    name: str
    path: str
    ok: bool
    error: str | None = None
    host: dict = field(default_factory=dict)
    window: dict | None = None
    counts: dict = field(default_factory=dict)
    sources: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    worker: str | None = None
    seconds: float = 0.0
    tables: dict[str, pa.Table] | None = None

    def entry(self) -> dict:
        """The capture's line in fleet.json (everything but the tables)."""
        return {
            "capture": self.name,
            "path": self.path,
            "status": "ok" if self.ok else "error",
            "error": self.error,
            "host": self.host,
            "window": self.window,
            "counts": self.counts,
            "sources": self.sources,
            "warnings": self.warnings,
            "worker": self.worker,
            "seconds": round(self.seconds, 3),
        }


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def plan_captures(paths: Sequence[str]) -> list[CaptureSpec]:
    """Captures from the command line, in its order: each directory is one, files are
    grouped by their directory. Names come from the directory names, made unique."""
    groups: dict[str, list[str]] = {}
    for p in paths:
        path = Path(os.path.abspath(p))  # workers may run elsewhere: never relative
        key = str(path) if path.is_dir() or not path.exists() else str(path.parent)
        groups.setdefault(key, [])
        if path.exists() and not path.is_dir():
            groups[key].append(str(path))
    specs: list[CaptureSpec] = []
    used: set[str] = set()
    for directory, files in groups.items():
        base = _UNSAFE.sub("_", os.path.basename(directory)).strip("._")
        base = base or "capture"
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}-{n}"
        used.add(name)
        specs.append(CaptureSpec(name, tuple(files) or (directory,), directory))
    return specs


def analyse_capture(spec: CaptureSpec, options: Options) -> CaptureResult:
    """Analyse one capture as ``tracecorr report --json`` would, into Arrow tables."""
    from ..correlator.api import analyze
    from ..correlator.render.json_report import to_dict
    from .records import capture_tables

    t0 = time.perf_counter()
    result = CaptureResult(spec.name, spec.directory, ok=False, worker=_worker_address())
    with contextlib.suppress(InputError, AttributeError):  # the analysis names a bad file
        host = capture_meta(Path(spec.directory)).get("host")
        result.host = dict(host) if isinstance(host, dict) else {}
    try:
        a = analyze(
            list(spec.inputs),
            library_name=options.library,
            native_calls=list(options.native_calls),
            min_block_ms=options.min_block_ms,
            symfs=options.symfs,
            jobs=1,  # one core per capture; a Dask worker's process may not fork children
        )
    except InputError as exc:
        result.error = str(exc)
        result.seconds = time.perf_counter() - t0
        return result
    report = to_dict(a)
    result.tables = capture_tables(a, report)
    result.ok = True
    result.window = _window(a)
    result.sources = [
        {k: s[k] for k in ("kind", "path", "method", "error_ns", "events", "skipped")}
        for s in report["sources"]
    ]
    result.warnings = list(report["warnings"]) + [f"skipped {x}" for x in a.skipped_inputs]
    summary = report["summary"]
    result.counts = {
        "blocking_rows": len(report["blocking"]),  # the dataset's rows: library and runtime
        "library_records": summary["records"],  # blocked in the library (the report's count)
        "blocked_ns": summary["blocked_ns"],
        "runtime_records": summary["runtime"]["records"],
        "calls": int(len(a.calls)),
        "findings": len(report["findings"]),
        "threads": summary["threads"],
        "goroutines": summary["goroutines"],
    }
    result.seconds = time.perf_counter() - t0
    return result


def _window(a) -> dict | None:
    """First and last event of the capture's aligned sources, on the reference clock."""
    lo = hi = None
    for s in a.sources:
        off = a.alignments[s.meta.source].offset_ns
        if off is None or not len(s.slices):
            continue
        start = int(s.slices["ts"].min()) + off
        end = int((s.slices["ts"] + s.slices["dur"]).max()) + off
        lo = start if lo is None else min(lo, start)
        hi = end if hi is None else max(hi, end)
    return None if lo is None else {"start_ns": lo, "end_ns": hi, "dur_ns": hi - lo}


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"  # run outside Dask (tests, a plain loop)
