"""Every column of every correlator table, as data: its type, its meaning, the step that adds
it, and how each output spells it. ``parsers/schema.py`` is the same for the canonical input
tables; this is its continuation past alignment.

What is derived from here rather than written again:

- the blocking records' columns and their order (``RECORD``; the JSON report's ``blocking``
  objects have these keys, in this order: the contract columns of DESIGN.md, then extras),
- the fleet's Arrow schemas (``arrow_schema``: ``fleet/records.py``),
- the timeline page's records document (``Column.page``: the page's short key and how the
  value is packed), the Perfetto export's args of a blocking slice (``Column.perfetto``) and
  the text report's "Longest records" table (``Column.text``),
- the README's Architecture section (``pipeline.architecture_markdown``) and the steps'
  contracts, checked in ``tests/test_steps.py``: a step may add only the columns declared
  here with its name, and read only columns an earlier step (or a parser) added.

Types: ``int`` (int64, null allowed where the meaning says so), ``str``, ``bool``, ``float``,
``strings`` (a list of str), ``set`` (a Python set of str, working columns only), ``object``
(working: any Python value), ``category`` (str as a pandas categorical), or the name of a
struct below (``censored``, ``waker``, ``longest_wait``, ``hop``), ``list:hop`` for a list
of them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    """How the timeline page carries a record column: its key in the records document and the
    packing (``time``: ns since the page's t0; ``int``; ``text``: a string-table id;
    ``stack``: a stack id; ``flag``: 0/1; ``maybe_bool``; ``runtime``: 1 when the record is
    the Go runtime's; ``joined``: the list joined with ", "; ``censored``: reason and bound
    in words; ``goid``; ``waker``: an index into the page's wakers)."""

    key: str
    packing: str


@dataclass(frozen=True)
class Perfetto:
    """An arg of the Perfetto export's "blocking" slice: its name and how the value is
    written (``int``, ``str``, ``joined``: list joined by *sep*, ``waker``, ``longest_wait``:
    a summary in words)."""

    arg: str
    packing: str
    sep: str = "\n"


@dataclass(frozen=True)
class Text:
    """A cell of the text (and Markdown) report's "Longest records" table: header, format
    (a name in ``render/text.py``'s CELL_FORMATS) and its place from the left."""

    header: str
    format: str
    at: int


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    meaning: str
    step: str
    contract: bool = False  # part of DESIGN.md's JSON contract (tracecorr.report/1)
    page: Page | None = None
    perfetto: Perfetto | None = None
    text: Text | None = None
    export: str | None = None  # its name in the fleet dataset (None: not exported)


def _table(*cols: Column) -> tuple[Column, ...]:
    names = [c.name for c in cols]
    assert len(set(names)) == len(names), names
    return cols


#: perf's syscalls and off-CPU intervals on the reference clock (the canonical ``slices``
#: columns of parsers/schema.py, plus these)
INTERVALS = _table(
    Column("start", "int", "start on the reference clock (ns)", "perf_intervals"),
    Column("end", "int", "end on the reference clock (ns)", "perf_intervals"),
    Column("start_open", "bool", "perf did not see its start (capture start)", "perf_intervals"),
    Column(
        "end_open",
        "bool",
        "perf did not see its end for sure (capture end, or events lost while it lasted)",
        "perf_intervals",
    ),
    Column("lost", "bool", "perf lost events while it lasted", "perf_intervals"),
    Column("conn", "int", "its connection (row of connections; -1: none)", "connections"),
)

#: every cgo call of the Go trace (``cgo``), then the library calls among them (``calls``)
CALL_SPANS = _table(
    Column("source", "category", "the Go trace it came from", "call_spans", export="source"),
    Column("pid", "int", "process id", "call_spans", export="pid"),
    Column("tid", "int", "OS thread (the Go trace's M)", "call_spans", export="tid"),
    Column("goid", "int", "goroutine id", "call_spans", export="goid"),
    Column("start", "int", "call start, reference clock (ns)", "call_spans", export="start_ns"),
    Column("end", "int", "call end, reference clock (ns)", "call_spans", export="end_ns"),
    Column(
        "call",
        "category",
        "the C function called (the cgo wrapper's target)",
        "call_spans",
        export="call",
    ),
    Column(
        "match",
        "category",
        '"preset" | "user" | NA: does the wrapper\'s name say it calls the library',
        "call_spans",
    ),
    Column(
        "p_lost", "bool", "the goroutine lost its P during the call", "call_spans", export="p_lost"
    ),
    Column(
        "p_wait_ns",
        "int",
        "after a call that lost its P: the goroutine's wait (runnable) until it ran again",
        "call_spans",
        export="p_wait_ns",
    ),
    Column("stack_id", "int", "the Go stack of the call (the Go trace's stacks)", "call_spans"),
    Column(
        "call_site",
        "category",
        "the Go caller (first frame outside cgo)",
        "call_spans",
        export="call_site",
    ),
)
CALLS = _table(
    *(c for c in CALL_SPANS if c.name != "match"),
    Column("library", "category", "the library it calls", "library_calls", export="library"),
    Column(
        "evidence",
        "category",
        "why it is a library call: go-stack, user-pattern, perf-callchain, fd (comma-joined)",
        "library_calls",
        export="evidence",
    ),
    Column("dur_ns", "int", "end - start (written by exporters)", "export", export="dur_ns"),
    Column(
        "library_blocked_ns",
        "int",
        "time of its blocking records in the library",
        "call_split",
        export="library_blocked_ns",
    ),
    Column(
        "runtime_ns",
        "int",
        "time of its records in the Go runtime (in the call, or waiting for a P after it)",
        "call_split",
        export="runtime_ns",
    ),
    Column(
        "caller_ns",
        "int",
        "time of its records in the caller's own C code inside the call (a wrapper's)",
        "call_split",
        export="caller_ns",
    ),
    Column(
        "python_runtime_ns",
        "int",
        "time of its records in the Python interpreter (waiting for the GIL)",
        "call_split",
        export="python_runtime_ns",
    ),
    Column(
        "tracer_ns",
        "int",
        "time a tracer stopped its thread in it (py-spy's ptrace), in records or not",
        "call_split",
        export="tracer_ns",
    ),
    Column(
        "runq_ns",
        "int",
        "outside its records: time its thread waited for a CPU (perf: state R)",
        "call_split",
        export="runq_ns",
    ),
    Column(
        "short_wait_ns",
        "int",
        "outside its records: off CPU in waits shorter than a record (min block)",
        "call_split",
        export="short_wait_ns",
    ),
    Column(
        "on_cpu_ns",
        "int",
        "the rest: on CPU (the split's parts add up to dur_ns + p_wait_ns)",
        "call_split",
        export="on_cpu_ns",
    ),
)

#: py-spy's runs in the library's read path or native module
RUNS = _table(
    Column("source", "str", "the py-spy recording", "python_runs"),
    Column("pid", "int", "process id", "python_runs"),
    Column("tid", "int", "OS thread", "python_runs"),
    Column("start", "int", "run start, reference clock (ns)", "python_runs"),
    Column("end", "int", "run end, reference clock (ns)", "python_runs"),
    Column("call", "str", "the outermost library frame's function", "python_runs"),
    Column("call_site", "str", "the first frame outside the client package", "python_runs"),
    Column("stack_id", "int", "its py-spy stack", "python_runs"),
    Column("blocking", "bool", "py-spy saw the thread waiting (idle)", "python_runs"),
    Column("leaf", "str", "the leaf frame's name", "python_runs"),
    Column("waits_in", "set", "the syscalls the run waits in", "python_runs"),
    Column("gil_wait", "bool", "its native stack waits for the GIL", "python_runs"),
    Column(
        "read_path",
        "bool",
        "through the library's read path (else client code waiting for the GIL)",
        "python_runs",
    ),
)

#: a file descriptor of one process between its opening and its close
CONNECTIONS = _table(
    Column("conn", "int", "connection id (row number)", "connections"),
    Column("pid", "int", "process id", "connections"),
    Column("fd", "int", "file descriptor", "connections"),
    Column("start_ns", "int", "first syscall on it (its open when seen)", "connections"),
    Column("end_ns", "int", "last syscall on it (its close when seen)", "connections"),
    Column("opened", "bool", "its opening syscall was seen", "connections"),
    Column("closed", "bool", "its close was seen", "connections"),
    Column("socket", "bool", "a socket syscall worked on it", "connections"),
    Column("syscalls", "int", "syscalls seen on it", "connections"),
)
#: every syscall on a connection: where attribute looks, without a callchain, for the
#: syscalls a call made on its connections
CONN_SYSCALLS = _table(
    Column("tid", "int", "OS thread", "connections"),
    Column("start", "int", "syscall start", "connections"),
    Column("end", "int", "syscall end", "connections"),
)
#: one row per syscall on a connection made inside a library call
CONN_USE = _table(
    Column("conn", "int", "the connection", "library_calls"),
    Column("pid", "int", "process id", "library_calls"),
    Column("tid", "int", "OS thread", "library_calls"),
    Column("goid", "int", "goroutine (-1: none known)", "library_calls"),
    Column("call_start", "int", "the library call's start", "library_calls"),
    Column("call_end", "int", "the library call's end", "library_calls"),
    Column("syscall", "str", "the syscall", "library_calls"),
    Column("start", "int", "the syscall's start", "library_calls"),
    Column("ret", "int", "the syscall's return value (-errno: it failed)", "library_calls"),
)

#: the candidates: long perf intervals (all INTERVALS columns), and what the steps learn
CANDIDATES = _table(
    Column("span", "float", "row of calls holding it on its thread (NaN: none)", "join_calls"),
    Column(
        "after_call",
        "bool",
        "it lies after the C call returned (the thread waiting for the goroutine's P)",
        "join_calls",
    ),
    Column("run", "int", "row of the py-spy run vouching for it (-1: none)", "join_calls"),
    Column(
        "gil_by",
        "int",
        "a wait for the GIL by py-spy: 0 not, 1 sampled in it, 2 between client samples",
        "join_calls",
    ),
    Column("goid", "object", "goroutine of the holding call", "attribute"),
    Column("call", "object", "the library call", "attribute"),
    Column("call_start_ns", "object", "the call's start", "attribute"),
    Column("call_end_ns", "object", "the call's end", "attribute"),
    Column("call_site", "object", "the call's caller", "attribute"),
    Column("p_lost", "object", "the holding Go call lost its P", "attribute"),
    Column("evidence", "object", "what vouches for it (list)", "attribute"),
    Column("go_stack_id", "object", "the holding Go call's stack id", "attribute"),
    Column(
        "in",
        "object",
        '"library", "go-runtime", "python-runtime", "caller" or "tracer"',
        "attribute",
    ),
    Column("in_inferred", "bool", "``in`` was inferred (no callchain)", "attribute"),
    Column("library", "object", "the library's name when ``in`` is library", "attribute"),
    Column("censored", "object", "why perf saw only part of it (dict) or None", "censor"),
    Column("off_cpu_ns", "object", "off-CPU time inside it", "latency_split"),
    Column("off_cpu_state", "object", "the off-CPU state most of it was spent in", "latency_split"),
    Column("runq_ns", "object", "wakeup -> running delay (None: no wakeup seen)", "latency_split"),
    Column("on_cpu_ns", "object", "the rest: on CPU", "latency_split"),
    Column("tracer_stop_ns", "int", "stopped by a tracer (t/T) inside it", "latency_split"),
)

CENSORED = _table(
    Column("reason", "str", "perf-lost | capture-start | capture-end", "censor"),
    Column("bound_by", "str", "the source whose span bounds the unseen edge", "censor"),
)
LONGEST_WAIT = _table(
    Column(
        "syscall", "str", "the syscall the waker waited in (None: off CPU outside one)", "wakers"
    ),
    Column("state", "str", "its off-CPU state", "wakers"),
    Column("start_ns", "int", "wait start", "wakers"),
    Column("end_ns", "int", "wait end", "wakers"),
    Column("dur_ns", "int", "wait length", "wakers"),
)
WAKER = _table(
    Column("pid", "int", "waker's process (0: an interrupt)", "wakers"),
    Column("tid", "int", "waker's thread (0: an interrupt)", "wakers"),
    Column("comm", "str", "waker's command name", "wakers"),
    Column("wakeup_ns", "int", "when it woke the record's thread", "wakers"),
    Column("stack", "strings", "the waker's stack at the wakeup", "wakers"),
    Column("longest_wait", "longest_wait", "what the waker itself waited in meanwhile", "wakers"),
)
HOP = _table(
    Column("pid", "int", "process of this hop's thread", "wakers"),
    Column("tid", "int", "thread", "wakers"),
    Column("comm", "str", "command name", "wakers"),
    Column("what", "str", "what it waited in", "wakers"),
    Column("start_ns", "int", "its wait's start", "wakers"),
    Column("end_ns", "int", "its wait's end (or the wakeup)", "wakers"),
)
STRUCTS = {"censored": CENSORED, "waker": WAKER, "longest_wait": LONGEST_WAIT, "hop": HOP}

_T = Text
#: one row per blocking syscall (or off-CPU interval) inside a library call: the JSON report's
#: ``blocking`` objects (contract columns first, then extras)
RECORD = _table(
    Column("pid", "int", "process id", "records", True, Page("pid", "int")),
    Column(
        "tid", "int", "OS thread id", "records", True, Page("tid", "int"), text=_T("tid", "str", 2)
    ),
    Column(
        "goid",
        "int",
        "goroutine id (null: no Go trace, or not in a Go call)",
        "records",
        True,
        Page("goid", "goid"),
        Perfetto("goroutine", "int"),
        _T("goid", "maybe", 3),
    ),
    Column(
        "thread",
        "str",
        "thread name",
        "records",
        True,
        Page("thread", "text"),
        text=_T("thread", "dash", 4),
    ),
    Column("comm", "str", "the kernel's comm of the thread", "records", True),
    Column(
        "library",
        "str",
        "the library blocked in (null: the Go or Python runtime's time, or the caller's)",
        "records",
        True,
        Page("library", "text"),
        Perfetto("library", "str"),
    ),
    Column(
        "in",
        "str",
        '"library" | "go-runtime" | "python-runtime" | "caller" | "tracer"',
        "records",
        True,
        Page("rt", "runtime"),
    ),
    Column(
        "call",
        "str",
        "the library call",
        "records",
        True,
        Page("call", "text"),
        text=_T("call", "call", 5),
    ),
    Column(
        "call_start_ns", "int", "the call's start (ns)", "records", True, Page("call_start", "time")
    ),
    Column("call_end_ns", "int", "the call's end (ns)", "records", True, Page("call_end", "time")),
    Column(
        "syscall",
        "str",
        "the syscall (null: off CPU outside one)",
        "records",
        True,
        Page("syscall", "text"),
        text=_T("syscall", "syscall", 6),
    ),
    Column(
        "start_ns",
        "int",
        "record start (ns)",
        "records",
        True,
        Page("start", "time"),
        text=_T("start", "since_t0", 0),
    ),
    Column("end_ns", "int", "record end (ns)", "records", True, Page("end", "time")),
    Column("dur_ns", "int", "record length (ns)", "records", True, text=_T("dur", "ms", 1)),
    Column(
        "off_cpu_ns",
        "int",
        "off-CPU time inside it",
        "records",
        True,
        Page("off", "int"),
        Perfetto("off_cpu_ns", "int"),
        _T("off-CPU", "off_cpu", 7),
    ),
    Column(
        "off_cpu_state",
        "str",
        "the state most of the off-CPU time was spent in",
        "records",
        True,
        Page("state", "text"),
        Perfetto("off_cpu_state", "str"),
    ),
    Column(
        "restarts",
        "int",
        "restarted pieces merged into the syscall",
        "records",
        True,
        Page("restarts", "int"),
    ),
    Column(
        "censored",
        "censored",
        "why perf saw only part of it, and what bounds it (null: seen whole)",
        "records",
        True,
        Page("censored", "censored"),
    ),
    Column(
        "evidence",
        "strings",
        "what vouches that it was the library's",
        "records",
        True,
        Page("evidence", "joined"),
        Perfetto("evidence", "joined", ","),
        _T("evidence", "joined", 9),
    ),
    Column(
        "call_site",
        "str",
        "the caller of the library call",
        "records",
        True,
        Page("site", "text"),
        Perfetto("call_site", "str"),
    ),
    Column(
        "go_stack",
        "strings",
        "Go stack of the call, leaf first",
        "records",
        True,
        Page("go", "stack"),
        Perfetto("go_stack", "joined"),
    ),
    Column(
        "native_stack",
        "strings",
        "perf callchain, leaf first",
        "records",
        True,
        Page("native", "stack"),
        Perfetto("native_stack", "joined"),
    ),
    Column(
        "python_stack",
        "strings",
        "py-spy stack, leaf first",
        "records",
        True,
        Page("py", "stack"),
        Perfetto("python_stack", "joined"),
    ),
    Column(
        "waker",
        "waker",
        "the thread that woke it (null: none recorded)",
        "wakers",
        True,
        Page("waker", "waker"),
        Perfetto("waker", "waker"),
    ),
    Column("critical_path", "list:hop", "the chain of wakeups behind the waker", "wakers", True),
    Column("on_cpu_ns", "int", "on-CPU time inside it", "records", page=Page("oncpu", "int")),
    Column(
        "runq_ns",
        "int",
        "wakeup -> running (null: no wakeup seen)",
        "records",
        page=Page("runq", "int"),
        text=_T("runq", "maybe_ms", 8),
    ),
    Column("tracer_stop_ns", "int", "stopped by a tracer (py-spy's ptrace stops)", "records"),
    Column("p_lost", "bool", "the Go call lost its P", "records", page=Page("plost", "maybe_bool")),
    Column("fd", "int", "the syscall's file descriptor", "records", page=Page("fd", "int")),
    Column(
        "in_inferred",
        "bool",
        "``in`` inferred without a callchain",
        "records",
        page=Page("inferred", "flag"),
    ),
    Column("waker_note", "str", "why no waker is given", "wakers"),
    Column(
        "stack_stop",
        "str",
        "why its native stack stops short (the stack copy, CFI, DSO) and how to record it",
        "records",
    ),
    Column("source", "str", "the source of the record (perf or py-spy)", "records"),
)
#: a waker's longest wait on Perfetto: an arg of its own after the waker's
RECORD_PERFETTO_EXTRA = (Perfetto("waker_longest_wait", "longest_wait"),)

#: the columns every finding has (each kind adds its own fields: see findings.py)
FINDINGS = _table(
    Column("kind", "str", "the pitfall", "findings"),
    Column("severity", "str", "error | warning | info", "findings"),
    Column("summary", "str", "one line, in words", "findings"),
    Column("pid", "int", "process", "findings"),
    Column("fd", "int", "the connection's fd", "findings"),
    Column("goroutines", "ints", "goroutines involved", "findings"),
    Column("threads", "ints", "threads involved", "findings"),
    Column("call_sites", "strings", "call sites involved", "findings"),
    Column("first_ns", "int", "first evidence", "findings"),
    Column("last_ns", "int", "last evidence", "findings"),
    Column("count", "int", "occurrences", "findings"),
    Column("calls", "int", "library calls involved", "findings"),
)

#: when each thread was created (perf fork records) or first seen (the Go trace)
THREAD_STARTS = _table(
    Column("pid", "int", "process", "findings"),
    Column("tid", "int", "thread", "findings"),
    Column("first_ns", "int", "creation, or first seen", "findings"),
)

#: every source's slices (the canonical columns of parsers/schema.py) on the reference clock
ALIGNED_SLICES = _table(
    Column(
        "ref_ts",
        "int",
        "start on the reference clock (NA: its source is not aligned)",
        "aligned_slices",
    ),
)

#: the Tables fields that hold frames, and their declared columns (working columns for
#: intervals and candidates come after the canonical slice columns)
FRAMES: dict[str, tuple[Column, ...]] = {
    "intervals": INTERVALS,
    "cgo": CALL_SPANS,
    "calls": CALLS,
    "runs": RUNS,
    "connections": CONNECTIONS,
    "conn_syscalls": CONN_SYSCALLS,
    "conn_use": CONN_USE,
    "candidates": INTERVALS + CANDIDATES,
    "blocking": RECORD,
    "thread_starts": THREAD_STARTS,
    "aligned_slices": ALIGNED_SLICES,
}

RECORD_NAMES = [c.name for c in RECORD]
RECORD_LISTS = tuple(c.name for c in RECORD if c.type in ("strings", "list:hop"))
CONTRACT = [c.name for c in RECORD if c.contract]


def column(table: tuple[Column, ...], name: str) -> Column:
    return next(c for c in table if c.name == name)


def page_columns() -> list[Column]:
    return [c for c in RECORD if c.page is not None]


def perfetto_args() -> list[Perfetto]:
    out = [c.perfetto for c in RECORD if c.perfetto is not None]
    at = next(i for i, p in enumerate(out) if p.packing == "waker") + 1
    return out[:at] + list(RECORD_PERFETTO_EXTRA) + out[at:]


def text_columns() -> list[tuple[Column, Text]]:
    cells = [(c, c.text) for c in RECORD if c.text is not None]
    return sorted(cells, key=lambda ct: ct[1].at)
