"""Tracepoint formats (the TRACING_DATA feature) and field decoding driven by them.

A tracepoint sample's RAW payload is the kernel's binary record of that event. Its layout is
described, per kernel, by the event's format text (``/sys/kernel/tracing/events/*/*/format``),
which ``perf record`` copies into the file. Offsets and sizes therefore always come from those
texts, never from constants: common fields can shift between kernels (older PREEMPT_RT sets add
fields), ``sched_wakeup`` lost its ``success`` field in 5.14, and the ``prev_state`` letters of
``sched_switch`` (and the bit that means "preempted") changed over the years. The letters are
computed by evaluating the event's own ``print fmt`` expression, as libtraceevent does for
``perf script``, so the state names equal what ``perf script`` prints.

TRACING_DATA layout (perf's util/trace-event-read.c): ``\\x17\\x08\\x44tracing``, a version
string, endianness, ``sizeof(long)``, page size, ``header_page`` and ``header_event`` texts,
the ftrace formats, then per system its event formats, then kallsyms, printk formats and (0.6)
saved cmdlines. Only the event formats are kept.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .file import PERF_TYPE_TRACEPOINT, PerfFile

MAGIC = b"\x17\x08\x44tracing"
MAX_FORMAT_TEXT = 1 << 20  # a real format text is a few KiB

_FIELD = re.compile(
    r"field:(?P<decl>[^;]*);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);\s*signed:(?P<signed>\d+);"
)
_DECL_NAME = re.compile(r"(\w+)\s*(?:\[[^\]]*\])?\s*$")


@dataclass(frozen=True)
class Field:
    name: str
    offset: int
    size: int
    signed: bool
    array: bool
    data_loc: bool


@dataclass
class EventFormat:
    system: str
    name: str
    id: int
    fields: dict[str, Field]
    print_fmt: str

    @property
    def full_name(self) -> str:
        return f"{self.system}:{self.name}"


def parse_format(system: str, text: str) -> EventFormat | None:
    """One format text -> EventFormat (None if it has no name or ID)."""
    name = re.search(r"^name:\s*(\S+)", text, re.M)
    ident = re.search(r"^ID:\s*(\d+)", text, re.M)
    if not name or not ident:
        return None
    fields: dict[str, Field] = {}
    for m in _FIELD.finditer(text):
        decl = m.group("decl").strip()
        nm = _DECL_NAME.search(decl)
        if not nm:
            continue
        fields[nm.group(1)] = Field(
            name=nm.group(1),
            offset=int(m.group("off")),
            size=int(m.group("size")),
            signed=m.group("signed") == "1",
            array="[" in decl,
            data_loc=decl.startswith("__data_loc"),
        )
    pf = re.search(r"^print fmt:\s*(.*)$", text, re.M | re.S)
    return EventFormat(
        system, name.group(1), int(ident.group(1)), fields, pf.group(1).strip() if pf else ""
    )


@dataclass
class TracingData:
    """The event formats of a TRACING_DATA section, by tracepoint id (= attr.config)."""

    version: str = ""
    long_size: int = 8
    formats: dict[int, EventFormat] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"needs {n} bytes at {self.pos}, section has {len(self.data)}")

    def u8(self) -> int:
        self.need(1)
        self.pos += 1
        return self.data[self.pos - 1]

    def u32(self) -> int:
        self.need(4)
        self.pos += 4
        return struct.unpack_from("<I", self.data, self.pos - 4)[0]

    def u64(self) -> int:
        self.need(8)
        self.pos += 8
        return struct.unpack_from("<Q", self.data, self.pos - 8)[0]

    def cstr(self) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise ValueError(f"unterminated string at {self.pos}")
        s = self.data[self.pos : end].decode("utf-8", "replace")
        self.pos = end + 1
        return s

    def text(self, n: int) -> str:
        if n > MAX_FORMAT_TEXT:
            raise ValueError(f"format text of {n} bytes at {self.pos}")
        self.need(n)
        self.pos += n
        return self.data[self.pos - n : self.pos].decode("utf-8", "replace")


def parse_tracing_data(data: bytes) -> TracingData:
    """Event formats from a TRACING_DATA payload. Damage stops the walk; the formats read
    before it are kept and the damage is described in ``problems``."""
    out = TracingData()
    cur = _Cursor(data)
    try:
        cur.need(len(MAGIC))
        if data[: len(MAGIC)] != MAGIC:
            raise ValueError("no tracing-data magic")
        cur.pos = len(MAGIC)
        out.version = cur.cstr()
        big_endian = cur.u8()
        if big_endian:
            raise ValueError("big-endian tracing data")
        out.long_size = cur.u8()
        cur.u32()  # page size
        for expect in ("header_page", "header_event"):
            if cur.cstr() != expect:
                raise ValueError(f"expected {expect}")
            cur.text(cur.u64())
        for _ in range(cur.u32()):  # ftrace formats
            cur.text(cur.u64())
        for _ in range(cur.u32()):
            system = cur.cstr()
            for _ in range(cur.u32()):
                fmt = parse_format(system, cur.text(cur.u64()))
                if fmt is not None:
                    out.formats[fmt.id] = fmt
    except (ValueError, struct.error) as exc:
        out.problems.append(f"TRACING_DATA unreadable ({exc}); kept {len(out.formats)} formats")
    return out


def local_formats(
    ids: set[int], roots: tuple[str, ...] = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
) -> dict[int, EventFormat]:
    """Formats of tracepoints *ids* from this machine's tracefs (what perf itself does when a
    file has no TRACING_DATA): right only for a recording made on this kernel."""
    out: dict[int, EventFormat] = {}
    for root in roots:
        events = Path(root) / "events"
        try:
            systems = sorted(p for p in events.iterdir() if p.is_dir())
        except OSError:
            continue
        for sysdir in systems:
            try:
                evdirs = list(sysdir.iterdir())
            except OSError:
                continue
            for ev in evdirs:
                try:
                    ident = int((ev / "id").read_text())
                except (OSError, ValueError):
                    continue
                if ident in ids:
                    try:
                        fmt = parse_format(sysdir.name, (ev / "format").read_text())
                    except OSError:
                        continue
                    if fmt is not None:
                        out[ident] = fmt
            if len(out) == len(ids):
                return out
        if out:
            return out
    return out


# --- reading fields out of RAW payloads --------------------------------------------------


def gather_int(buf: np.ndarray, pos: np.ndarray, size: int, signed: bool) -> np.ndarray:
    """Little-endian integers of *size* bytes at byte positions *pos* of *buf* (uint8), as
    int64 (unsigned 64-bit values keep their bits: two's complement, as perf prints them).

    RAW payloads start 4 bytes past an 8-byte boundary, so most fields are 4-byte aligned:
    those are read through a u32 view (an 8-byte field as two halves); others byte by byte."""
    if size not in (1, 2, 4, 8):
        raise ValueError(f"field size {size}")
    if not len(pos):
        return np.zeros(0, np.int64)
    if size in (4, 8) and len(buf) >= 4 and not (pos % 4).any():
        u32 = buf[: len(buf) // 4 * 4].view(np.uint32)
        k = pos // 4
        if size == 4:
            lo = u32[k]
            return lo.view(np.int32).astype(np.int64) if signed else lo.astype(np.int64)
        v = u32[k].astype(np.uint64) | (u32[k + 1].astype(np.uint64) << np.uint64(32))
        return v.view(np.int64)
    raw = buf[pos[:, None] + np.arange(size)]
    dt = np.dtype(f"<{'i' if signed else 'u'}{size}")
    vals = np.ascontiguousarray(raw).view(dt).reshape(-1)
    if size == 8:
        return vals.view(np.int64) if not signed else vals.astype(np.int64)
    return vals.astype(np.int64)


# --- print fmt evaluation (for sched_switch's prev_state letters) -------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>0[xX][0-9a-fA-F]+|\d+)[uUlL]*
      | (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<op>->|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^~!?:(),{}\[\]<>])
      | (?P<name>[A-Za-z_]\w*)
    )""",
    re.X,
)
_TYPE_WORDS = {
    "unsigned", "signed", "long", "int", "short", "char", "void", "bool", "size_t", "pid_t",
    "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "__u8", "__u16", "__u32", "__u64",
    "__s8", "__s16", "__s32", "__s64", "const",
}  # fmt: skip
MASK64 = (1 << 64) - 1


class FmtError(ValueError):
    pass


def _c_int(text: str) -> int:
    """A C integer literal's value: ``0x`` hex, a leading ``0`` octal, else decimal, with
    any U/L suffix. Print fmts are C, and Python's ``int(text, 0)`` refuses ``010`` (found by
    the fuzz test: a damaged fmt said ``00000040``)."""
    t = text.rstrip("uUlL")
    try:
        if t[:2] in ("0x", "0X"):
            return int(t, 16)
        if len(t) > 1 and t[0] == "0":
            return int(t, 8)
        return int(t)
    except ValueError:
        raise FmtError(f"not a C integer literal: {text!r}") from None


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FmtError(f"cannot tokenize at {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _unescape(lit: str) -> str:
    body = lit[1:-1]
    return body.encode("utf-8").decode("unicode_escape", "replace")


class _Expr:
    """A tiny recursive-descent evaluator for the C expressions of ``print fmt`` arguments:
    integer arithmetic, comparisons, ``?:``, casts, ``REC->field``, string literals and
    libtraceevent's ``__print_flags`` / ``__print_symbolic``."""

    def __init__(self, tokens: list[tuple[str, str]], rec: dict[str, int]) -> None:
        self.t, self.i, self.rec = tokens, 0, rec

    def peek(self, k: int = 0) -> tuple[str, str]:
        return self.t[self.i + k] if self.i + k < len(self.t) else ("", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if value is not None and tok[1] != value:
            raise FmtError(f"expected {value!r}, got {tok[1]!r}")
        if not tok[0]:
            raise FmtError("unexpected end")
        self.i += 1
        return tok

    def parse(self):
        v = self.ternary()
        if self.i != len(self.t):
            raise FmtError(f"trailing {self.peek()[1]!r}")
        return v

    def ternary(self):
        cond = self.binary(0)
        if self.peek()[1] == "?":
            self.take("?")
            a = self.ternary()
            self.take(":")
            b = self.ternary()
            return a if _truth(cond) else b
        return cond

    _LEVELS = (
        ("||",),
        ("&&",),
        ("|",),
        ("^",),
        ("&",),
        ("==", "!="),
        ("<", ">", "<=", ">="),
        ("<<", ">>"),
        ("+", "-"),
        ("*", "/", "%"),
    )

    def binary(self, level: int):
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek()[0] == "op" and self.peek()[1] in self._LEVELS[level]:
            op = self.take()[1]
            right = self.binary(level + 1)
            left = _apply(op, left, right)
        return left

    def unary(self):
        kind, val = self.peek()
        if kind == "op" and val in ("-", "~", "!", "+"):
            self.take()
            v = _int(self.unary())
            return {"-": -v, "~": ~v & MASK64, "!": int(not v), "+": v}[val]
        if val == "(" and self._is_cast():
            self.take("(")
            words = []
            while self.peek()[1] != ")":
                words.append(self.take()[1])
            self.take(")")
            return _cast(words, self.unary())
        return self.primary()

    def _is_cast(self) -> bool:
        k = 1
        seen = False
        while True:
            kind, val = self.peek(k)
            if val == ")":
                return seen
            if kind == "name" and val in _TYPE_WORDS or val == "*":
                seen = True
                k += 1
                continue
            return False

    def primary(self):
        kind, val = self.take()
        if kind == "num":
            return _c_int(val)
        if kind == "str":
            return _unescape(val)
        if val == "(":
            v = self.ternary()
            self.take(")")
            return v
        if kind == "name" and val == "REC":
            self.take("->")
            name = self.take()[1]
            if name not in self.rec:
                raise FmtError(f"REC->{name} not available")
            v = self.rec[name]
            if self.peek()[1] == "[":
                raise FmtError("array fields are not evaluated")
            return v
        if kind == "name" and self.peek()[1] == "(":
            return self.call(val)
        raise FmtError(f"unexpected {val!r}")

    def _table(self) -> list[tuple[int, str]]:
        out = []
        while self.peek()[1] == ",":
            self.take(",")
            self.take("{")
            v = _int(self.ternary())
            self.take(",")
            s = self.ternary()
            self.take("}")
            out.append((v, str(s)))
        return out

    def call(self, fn: str):
        self.take("(")
        if fn == "__print_flags":
            val = _int(self.ternary())
            self.take(",")
            delim = str(self.ternary())
            table = self._table()
            self.take(")")
            return print_flags(val, delim, table)
        if fn == "__print_symbolic":
            val = _int(self.ternary())
            table = self._table()
            self.take(")")
            return next((s for v, s in table if v == val), f"0x{val & MASK64:x}")
        raise FmtError(f"function {fn} is not evaluated")


def print_flags(val: int, delim: str, table: list[tuple[int, str]]) -> str:
    """libtraceevent's __print_flags: names of the set flags in table order, joined by
    *delim*; leftover bits in hex; a 0-valued entry names the value 0."""
    parts = []
    for fval, name in table:
        if val == 0 and fval == 0:
            parts.append(name)
            break
        if fval > 0 and val & fval == fval:
            parts.append(name)
            val &= ~fval
    if val:
        parts.append(f"0x{val & MASK64:x}")
    return delim.join(parts)


def _truth(v) -> bool:
    return bool(v) if isinstance(v, int) else True  # a string literal is a non-null pointer


def _int(v) -> int:
    if not isinstance(v, int):
        raise FmtError("string used as a number")
    return v


def _apply(op: str, a, b):
    a, b = _int(a), _int(b)
    if op in ("/", "%") and b == 0:
        raise FmtError("division by zero")
    return {
        "||": lambda: int(bool(a) or bool(b)),
        "&&": lambda: int(bool(a) and bool(b)),
        "|": lambda: a | b,
        "^": lambda: a ^ b,
        "&": lambda: a & b,
        "==": lambda: int(a == b),
        "!=": lambda: int(a != b),
        "<": lambda: int(a < b),
        ">": lambda: int(a > b),
        "<=": lambda: int(a <= b),
        ">=": lambda: int(a >= b),
        "<<": lambda: (a << b) & MASK64,
        ">>": lambda: a >> b,
        "+": lambda: a + b,
        "-": lambda: a - b,
        "*": lambda: a * b,
        "/": lambda: int(a / b),
        "%": lambda: a % b,
    }[op]()


def _cast(words: list[str], v):
    if "*" in words or not isinstance(v, int):
        return v
    bits = 64
    if "char" in words or words[-1] in ("u8", "s8", "__u8", "__s8"):
        bits = 8
    elif "short" in words or words[-1] in ("u16", "s16", "__u16", "__s16"):
        bits = 16
    elif "long" not in words and (
        "int" in words or words[-1] in ("u32", "s32", "__u32", "__s32", "pid_t")
    ):
        bits = 32
    v &= (1 << bits) - 1
    unsigned = "unsigned" in words or words[-1].startswith(("u", "__u")) or words[-1] == "size_t"
    if not unsigned and v >> (bits - 1):
        v -= 1 << bits
    return v


_SPEC = re.compile(r"%(?:%|[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|z|j|t|L)?[diouxXcsp])")


def split_print_fmt(print_fmt: str) -> tuple[str, list[str]]:
    """``"fmt", arg, arg`` -> (fmt, [arg texts]), splitting at top-level commas."""
    m = re.match(r'\s*("(?:[^"\\]|\\.)*")\s*(.*)$', print_fmt, re.S)
    if not m:
        raise FmtError("print fmt has no format string")
    fmt, rest = _unescape(m.group(1)), m.group(2).strip()
    args, depth, cur, in_str, esc = [], 0, [], False, False
    if rest.startswith(","):
        rest = rest[1:]
    for ch in rest:
        if in_str:
            cur.append(ch)
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        args.append("".join(cur).strip())
    return fmt, args


def _format_one(spec: str, v) -> str:
    conv = spec[-1]
    if conv == "s":
        return str(v)
    if isinstance(v, str):
        return v
    if conv in "di":
        return str(v if v < 1 << 63 else v - (1 << 64))
    if conv in "xX":
        s = f"{v & MASK64:x}"
        return s.upper() if conv == "X" else s
    return str(v)


def field_text(fmt: EventFormat, label: str, rec: dict[str, int]) -> str:
    """What perf script prints after ``label=`` (e.g. ``prev_state=``) for a record whose
    fields are *rec*: the arguments of the conversions that follow the label in the print
    fmt, evaluated and formatted. FmtError if the expression is beyond this evaluator."""
    text, args = split_print_fmt(fmt.print_fmt)
    specs = [m for m in _SPEC.finditer(text) if m.group() != "%%"]
    if len(specs) != len(args):
        raise FmtError(f"{len(specs)} conversions for {len(args)} arguments")
    start = next((k for k, m in enumerate(specs) if text[: m.start()].endswith(label)), None)
    if start is None:
        raise FmtError(f"{label!r} not in the print fmt")
    out = []
    k = start
    while k < len(specs):
        out.append(_format_one(specs[k].group(), _Expr(_tokens(args[k]), rec).parse()))
        if k + 1 < len(specs) and specs[k + 1].start() != specs[k].end():
            break
        k += 1
    return "".join(out)


def state_names(fmt: EventFormat, values: np.ndarray) -> tuple[dict[int, str], str | None]:
    """prev_state value -> letters as perf script prints them (S, D, R, R+, I, ...), and a
    problem description when the print fmt could not be evaluated (then a table read from
    its __print_flags entries is used)."""
    out: dict[int, str] = {}
    problem = None
    for v in np.unique(values).tolist():
        try:
            out[v] = field_text(fmt, "prev_state=", {"prev_state": v})
        except (FmtError, RecursionError, KeyError, IndexError) as exc:
            problem = f"sched_switch prev_state print fmt not evaluated ({exc})"
            break
    if problem is None:
        return out, None
    table = []
    for v, s in re.findall(r'\{\s*(0x[0-9a-fA-F]+|\d+)\s*,\s*"([^"]*)"\s*\}', fmt.print_fmt):
        try:
            table.append((_c_int(v), s))
        except FmtError:
            continue  # a damaged entry: the others still name their states
    if not table:
        return {v: str(v) for v in np.unique(values).tolist()}, problem + "; states left as numbers"
    mask = max(v for v, _ in table) * 2 - 1
    out = {}
    for v in np.unique(values).tolist():
        letters = print_flags(v & mask, "|", table) if v & mask else "R"
        out[v] = letters + ("+" if v & (mask + 1) else "")
    return out, problem + "; letters from its flag table"


def event_formats(pf: PerfFile) -> tuple[dict[int, EventFormat], int, list[str]]:
    """The tracepoint formats of an opened perf.data (*pf*, a file.PerfFile), by id: from
    its TRACING_DATA section, else this machine's tracefs (said in the warnings); the long
    size the tracing data declares (8 if none); what went wrong. Names the file's
    tracepoint attrs after their formats, as perf does when EVENT_DESC names none."""
    warnings: list[str] = []
    raw = pf.feature("TRACING_DATA")
    formats: dict[int, EventFormat] = {}
    long_size = 8
    if raw is not None:
        td = parse_tracing_data(raw)
        formats, long_size = td.formats, td.long_size or 8
        warnings += td.problems
    tp_ids = {a.config for a in pf.attrs if a.type == PERF_TYPE_TRACEPOINT}
    missing = tp_ids - set(formats)
    if missing:
        local = local_formats(missing)
        if local:
            formats.update(local)
            warnings.append(
                f"tracepoint formats for ids {sorted(local)} taken from this machine's tracefs "
                "(the file has none for them): right only if it was recorded on this kernel"
            )
        still = missing - set(local)
        if still:
            warnings.append(
                f"no format for tracepoint ids {sorted(still)}: their samples are kept as "
                "perf.event instants without fields"
            )
    for a in pf.attrs:  # no EVENT_DESC: name tracepoints by their format
        if a.name.startswith("tracepoint:") and a.config in formats:
            a.name = formats[a.config].full_name
    return formats, long_size, warnings
