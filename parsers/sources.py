"""From what the user named to parsed sources: the one input loader of the CLI and the API.

Inputs are files or capture directories, and optionally files named with their format
(``--go-trace F``); formats are detected from content. A capture directory written by our
recorders has a ``capture.json`` naming its files and what a trace cannot say about itself:
the pid of a Go trace, CLOCK_MONOTONIC when py-spy started (an anchor its clock lacks).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .detect import NOT_INPUTS, Format, by_name, detect, known_formats_text, sniff
from .errors import InputError
from .memory import release_freed_memory
from .schema import ChunkedSource
from .shipping import Shipped, discard, ship, ship_made, sweep, unship

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


def expand_inputs(paths: Sequence[str | Path], symfs: str | Path | None = None) -> Expanded:
    """Files to parse: explicit files as given; a capture directory's trace files.

    An explicit file must be readable (detect raises InputError otherwise). A directory with
    ``capture.json`` names its inputs there; any other directory contributes every file
    whose content a format recognises, and the rest is listed in ``skipped``. Of perf.data
    and its own printed text (both hold the same events) one is read: perf.data when the
    capture recorded DWARF callchains (our unwinding recovers the frames perf's lost), or
    when a *symfs* is given (the text was printed without it), the text otherwise (its
    symbols were resolved while the recorded binaries were at hand).
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
        both = {"perf-data", "perf-script"} <= names
        dwarf = both and capture_meta(p).get("perf", {}).get("callgraph") == "dwarf"
        data = dwarf or (both and symfs is not None)
        for c, fmt in found:
            if both and fmt.name == "perf-data" and not data:
                out.skipped.append(f"{c}: perf.data beside its perf script text; using the text")
            elif both and fmt.name == "perf-script" and data:
                why = (
                    "tracecorr unwinds what perf could not"
                    if dwarf
                    else "the text was printed without --symfs"
                )
                out.skipped.append(
                    f"{c}: perf script text beside perf.data; reading perf.data ({why})"
                )
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


#: capture.json file keys that are not trace inputs: the workload's ground truth, its binary
#: and the source it was built from
NOT_TRACES = ("truth", "binary", "source")


def _capture_files(d: Path) -> list[Path]:
    files = capture_meta(d).get("files", {})
    return [
        d / name for key, name in files.items() if key not in NOT_TRACES and (d / name).exists()
    ]


def capture_pid(path: str | Path) -> int | None:
    """The recorded process id from the capture.json beside *path* (Go traces do not record
    their pid; a capture directory does)."""
    pid = capture_meta(Path(path).parent).get("process", {}).get("pid")
    return int(pid) if isinstance(pid, int) else None


def capture_threads(path: str | Path) -> dict:
    """The thread ids `tracecorr capture` read from /proc beside *path* (capture.json
    ``threads``: ``pid_chain`` and, per host tid, its ``NSpid`` chain; {} when none)."""
    try:
        threads = capture_meta(Path(path).parent).get("threads", {})
    except InputError:
        return {}
    return threads if isinstance(threads, dict) else {}


def capture_symfs(path: str | Path) -> Path | None:
    """The DSO archive of the capture *path* is in (``symfs/``, written by `tracecorr
    capture --archive` for a process in another mount namespace), None when there is none:
    the recorded DSO paths are the container's, and the archive holds those files."""
    d = Path(path).parent
    try:
        meta = capture_meta(d)
    except InputError:
        return None
    if not meta:
        return None
    archive = meta.get("archive")
    name = archive.get("dir") if isinstance(archive, dict) else None
    symfs = d / (name if isinstance(name, str) and name else "symfs")
    return symfs if symfs.is_dir() else None


def parser_options(path: str | Path, fmt: str, symfs: str | Path | None = None) -> dict:
    """The format-specific arguments of *path*'s parser: a perf.data's symfs (*symfs* as
    given, else its capture's archive, ``capture_symfs``), {} for everything else."""
    if fmt != "perf-data":
        return {}
    chosen = symfs or capture_symfs(path)
    return {"symfs": str(chosen)} if chosen else {}


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
    paths: Sequence[str | Path] = (),
    flagged: Mapping[str, Sequence[str | Path]] | None = None,
    jobs: int | None = None,
    symfs: str | Path | None = None,
) -> Loaded:
    """Detect and parse every input. *flagged* maps an explicit-format option (a key of
    FLAGGED_FORMATS) to its files, which skip detection except for py-spy's three formats.
    *jobs*: processes to parse with (None: ``parse_jobs`` decides). *symfs*: where perf.data's
    DSO paths are looked up first (``--symfs``; default: a capture's archive). InputError
    for the first bad input, or when there is nothing to read."""
    return begin_loading(paths, flagged, jobs, symfs).finish()


def begin_loading(
    paths: Sequence[str | Path] = (),
    flagged: Mapping[str, Sequence[str | Path]] | None = None,
    jobs: int | None = None,
    symfs: str | Path | None = None,
) -> Loading:
    """``load_sources`` in two steps: this detects the inputs and starts the worker
    processes; ``Loading.finish`` parses the largest input here and collects the rest. The
    CLI begins before it imports the analysis (pandas and the rest, ~0.4 s), so that the
    workers start their own imports, and their share of the parse, that much earlier."""
    items: list[tuple[Path, Format]] = []
    skipped: list[str] = []
    if paths:
        ex = expand_inputs(paths, symfs)
        items += ex.inputs
        skipped += ex.skipped
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
    names = source_names(items)
    parsing = Parsing(
        [
            (path, fmt.name, name, parser_options(path, fmt.name, symfs))
            for (path, fmt), name in zip(items, names, strict=True)
        ],
        jobs,
    )
    paths_of = dict(zip(names, (path for path, _ in items), strict=True))
    return Loading(parsing, paths_of, skipped)


@dataclass
class Loading:
    """Inputs being parsed (``begin_loading``)."""

    parsing: Parsing
    paths: dict[str, Path]
    skipped: list[str]

    def finish(self) -> Loaded:
        """The parsed sources (the parent's own parse runs now)."""
        return Loaded(self.parsing.result(), dict(self.paths), list(self.skipped))

    def cancel(self) -> None:
        """Stop the workers and drop what they made, if ``finish`` was not called."""
        self.parsing.cancel()


#: Below this many bytes of inputs besides the largest, parsing them in another process
#: costs more (its start-up: importing pandas and tracecorr, ~0.6 s) than it saves.
PARALLEL_MIN_BYTES = 8 << 20


def parse_jobs(sizes: Sequence[int], split: bool = False) -> int:
    """How many processes parse inputs of these sizes: ``TRACECORR_JOBS`` if set, else one
    per CPU this process may use, when the inputs other than the largest are big enough or
    the largest is read with helpers (*split*: it was cut into pieces)."""
    env = os.environ.get("TRACECORR_JOBS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise InputError("TRACECORR_JOBS", f"{env!r} is not a number of processes") from None
    cpus = len(os.sched_getaffinity(0))
    if split:
        return cpus
    if len(sizes) < 2 or sum(sizes) - max(sizes) < PARALLEL_MIN_BYTES:
        return 1
    return min(len(sizes), cpus)


#: what to parse: (path, format name, source name[, the parser's options])
Item = tuple[Path, str, str] | tuple[Path, str, str, dict]


def parse_all(items: Sequence[Item], jobs: int | None = None) -> list[SourceTables]:
    """Parse (path, format name, source name[, the parser's options: ``parser_options``])
    items, in their order (see ``Parsing``)."""
    return Parsing(items, jobs).result()


class Parsing:
    """Items being parsed. Sources are independent until alignment, so on a multi-core
    machine the largest is parsed here (``result``) while the others are parsed in worker
    processes (``spawn``: a fresh interpreter, no state forked from a process that may hold
    threads), started at once; the tables come back through shared memory (``shipping``).
    When the largest one's format can be read in pieces (a perf.data: ``Format.splitter``,
    perf_data/pieces.py), workers also help with it: one helper task goes first (the
    helpers' pieces are wanted before the other inputs' tables, which are needed only once
    the largest is parsed), then the other inputs, then one helper for each worker left.
    *jobs* overrides ``parse_jobs`` (1 where this process may not have children: a Dask
    worker). The pool is shut down, without waiting, as soon as the last worker has shipped
    (``_shut_down_when_done``): waiting for an interpreter to tear down would cost the
    caller a tenth of a second."""

    def __init__(self, items: Sequence[Item], jobs: int | None = None) -> None:
        self.items = [(*it[:3], dict(it[3]) if len(it) > 3 else {}) for it in items]
        self.out: list[SourceTables | None] = [None] * len(items)
        self.futures: dict[int, Future] = {}
        self.helpers: list[Future] = []
        self.pool: ProcessPoolExecutor | None = None
        self.plan: Any = None
        self.done = False
        sizes = [_size(it[0]) for it in self.items]
        self.order = sorted(range(len(items)), key=lambda i: -sizes[i])
        big = self.items[self.order[0]]
        splitter = by_name(big[1]).load_splitter()
        most = parse_jobs(sizes, split=True) if jobs is None else jobs  # processes we may use
        self.plan = splitter(big[0], most - 1) if splitter is not None and most > 1 else None
        if jobs is None:  # without a split, only large other inputs are worth a worker
            jobs = most if self.plan is not None else parse_jobs(sizes)
        others = self.order[1:]
        workers = min(jobs - 1, max(len(others), 1 if self.plan is not None else 0))
        if workers <= 0:
            return
        sweep()  # shipped tables an interrupted run left behind
        try:
            self.pool = ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn")
            )
            if self.plan is not None:
                self.helpers.append(self.pool.submit(_help_shipped, self.plan))
            self.futures = {i: self.pool.submit(_parse_shipped, *self.items[i]) for i in others}
            if self.plan is not None:
                more = workers - len(others)
                self.helpers += [self.pool.submit(_help_shipped, self.plan) for _ in range(more)]
            _shut_down_when_done(self.pool, self.helpers + list(self.futures.values()))
        except BaseException:
            self.cancel()
            raise

    def result(self) -> list[SourceTables]:
        """Every item's tables: the largest parsed here, the others as the workers made
        them."""
        if self.pool is None:
            try:
                return [_parse_one(*item) for item in self.items]
            finally:
                self.cancel()
        try:
            plan, helpers = self.plan, self.helpers
            split = None if plan is None else (plan, lambda want: _collect(helpers, want))
            self.out[self.order[0]] = _parse_one(*self.items[self.order[0]], split=split)
            for i, f in self.futures.items():
                self.out[i] = _received(f.result())
        finally:
            self.cancel()
        return self.out  # type: ignore[return-value]

    def cancel(self) -> None:
        """Stop what is left (workers, files they shipped that nobody will read)."""
        if self.done:
            return
        self.done = True
        for f in self.helpers:
            f.add_done_callback(_discard_all)  # pieces not collected free their files
        for i, f in self.futures.items():
            if self.out[i] is None:  # not collected (an error above): nor is its file kept
                f.add_done_callback(_discard)
        if self.plan is not None:
            self.plan.remove()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def _collect(helpers: list[Future], want: range) -> dict[int, Any]:
    """The helpers' pieces with these indices, waiting only for the helpers that have some
    of them; a helper that failed (its process died) just has none."""
    got: dict[int, Any] = {}
    for f in as_completed(helpers):
        if f.exception() is None:
            pieces = [unship(p) for p in f.result()]
            got.update((p.index, p) for p in pieces)
        if all(j in got for j in want):
            break
    return got


def _shut_down_when_done(pool: ProcessPoolExecutor, futures: list[Future]) -> None:
    """Let the workers exit as soon as the last of them has shipped its tables, not once
    this process has finished its own (longer) parse: an idle worker would hold its
    interpreter (tens of MB; 100 MB with pandas) through this process's peak."""
    lock, left = threading.Lock(), [len(futures)]

    def one_done(_: Future) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            pool.shutdown(wait=False)

    for f in futures:
        f.add_done_callback(one_done)


def _parse_one(
    path: Path, fmt: str, name: str, options: dict | None = None, split: Any = None
) -> SourceTables:
    """One input's tables; *options*: its parser's own arguments (``parser_options``)."""
    extra = dict(options or {}) if split is None else {**(options or {}), "split": split}
    tables = by_name(fmt).load()(path, source=name, pid=capture_pid(path), **extra)
    release_freed_memory()  # the parse's temporaries: glibc would keep their pages
    return tables


def _parse_shipped(
    path: Path, fmt: str, name: str, options: dict | None = None
) -> SourceTables | ChunkedSource | Shipped:
    """_parse_one in a worker: the tables go back through shared memory (see shipping),
    each column freed here once it is written there. A format with a numpy-only parser
    (``Format.chunked``) is parsed with it, so the worker never loads pandas; the parent
    makes the DataFrames (``_received``)."""
    chunked = by_name(fmt).load_chunked()
    if chunked is None:
        return ship_made(lambda: _parse_one(path, fmt, name, options))

    def parse() -> ChunkedSource:
        cs = chunked(path, source=name, pid=capture_pid(path), **(options or {}))
        release_freed_memory()
        return cs

    return ship_made(parse)


def _help_shipped(plan: Any) -> list:
    """A helper's part of a split parse (``plan.help``), each piece shipped like tables are
    as soon as it is read: the parent, waiting for the last, waits for one piece's
    shipping, not for all of them."""
    return plan.help(ship)


def _received(item) -> SourceTables:
    """What a worker sent, as SourceTables."""
    got = unship(item)
    if isinstance(got, ChunkedSource):
        from .model import from_chunks

        return from_chunks(got)
    return got


def _discard_all(f: Future) -> None:
    if not f.cancelled() and f.exception() is None:
        for item in f.result():
            discard(item)


def _discard(f: Future) -> None:
    if not f.cancelled() and f.exception() is None:
        discard(f.result())


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
