"""The data section: records walked in bounded chunks and decoded into compact columns.

Each chunk (4 MiB of records by default, read with ``pread`` so the file is never mapped as a
whole) is walked: each record's size says where the next starts. The words that could be
headers are found with numpy, and when each one's size leads exactly to the next they are
the records (``_walk_chained``: every chunk of the benchmark's 429 MB -g file); otherwise a loop
over the headers decides (DWARF stack copies hold many words that look like headers). A range
of the section can be read on its own, from a record start (``read_range``, used by
pieces.py to read with helper processes). Everything else is vectorised: the fixed
sample fields are gathers of 64-bit words, tracepoint fields are read at the offsets of the
event's format text, and callchains are deduplicated within the chunk by hashing their CSR
rows, then once more across chunks by their bytes, so a callchain that recurs a million times
is stored and later symbolised once (callchains of syscall exits, which the tables never read,
are not even extracted). Side-band records (COMM, FORK, EXIT, MMAP, LOST, ...)
are few and decoded in Python.

Damage is contained: a record whose size is 0, not a multiple of 8 or runs past the data stops
the walk (everything before it is kept and the offset reported); a sample whose counts
(callchain ``nr``, RAW size, stack size) do not fit its own size is skipped and counted; an
unknown record type is skipped and counted.
"""

from __future__ import annotations

import struct
from array import array
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..columns import whole
from ..stats import count
from . import file as F
from .layout import SampleLayout, SamplePositions, TrailerLayout, sample_positions
from .tracing import EventFormat, gather_int

CHUNK_BYTES = 4 << 20  # small chunks: their buffers are reused by malloc instead of re-faulted

# record types (uapi perf_event.h; perf's util/event.h for 64+)
MMAP, LOST, COMM, EXIT, THROTTLE, UNTHROTTLE, FORK, READ, SAMPLE, MMAP2 = range(1, 11)
LOST_SAMPLES = 13
LAST_KERNEL_TYPE = 21  # PERF_RECORD_AUX_OUTPUT_HW_ID in perf 6.1
HEADER_TRACING_DATA, FINISHED_ROUND, AUXTRACE = 66, 68, 71
COMPRESSED, COMPRESSED2 = 81, 83
LAST_USER_TYPE = 83
RECORD_NAMES = {
    1: "MMAP", 2: "LOST", 3: "COMM", 4: "EXIT", 5: "THROTTLE", 6: "UNTHROTTLE", 7: "FORK",
    8: "READ", 9: "SAMPLE", 10: "MMAP2", 11: "AUX", 12: "ITRACE_START", 13: "LOST_SAMPLES",
    14: "SWITCH", 15: "SWITCH_CPU_WIDE", 16: "NAMESPACES", 17: "KSYMBOL", 18: "BPF_EVENT",
    19: "CGROUP", 20: "TEXT_POKE", 21: "AUX_OUTPUT_HW_ID", 64: "HEADER_ATTR",
    65: "HEADER_EVENT_TYPE", 66: "HEADER_TRACING_DATA", 67: "HEADER_BUILD_ID",
    68: "FINISHED_ROUND", 69: "ID_INDEX", 70: "AUXTRACE_INFO", 71: "AUXTRACE",
    72: "AUXTRACE_ERROR", 73: "THREAD_MAP", 74: "CPU_MAP", 75: "STAT_CONFIG", 76: "STAT",
    77: "STAT_ROUND", 78: "EVENT_UPDATE", 79: "TIME_CONV", 80: "HEADER_FEATURE",
    81: "COMPRESSED", 82: "FINISHED_INIT", 83: "COMPRESSED2",
}  # fmt: skip

# what a kernel record becomes
K_SAMPLE, K_COMM, K_FORK, K_EXIT, K_LOST, K_MMAP, K_LOST_SAMPLES, K_OTHER = range(8)
KIND_OF_TYPE = {
    SAMPLE: K_SAMPLE,
    COMM: K_COMM,
    FORK: K_FORK,
    EXIT: K_EXIT,
    LOST: K_LOST,
    MMAP: K_MMAP,
    MMAP2: K_MMAP,
    LOST_SAMPLES: K_LOST_SAMPLES,
}
PRINTED_KINDS = (K_SAMPLE, K_COMM, K_FORK, K_EXIT, K_LOST)  # rows of `perf script`
#: kernel record type -> kind (K_OTHER for the types we do not decode)
KIND_LUT = np.full(LAST_KERNEL_TYPE + 1, K_OTHER, np.int8)
for _t, _k in KIND_OF_TYPE.items():
    KIND_LUT[_t] = _k

# event categories (by tracepoint name) whose payloads become typed side tables
CAT_OTHER, CAT_SYS_ENTER, CAT_SYS_EXIT, CAT_NAMED_ENTER, CAT_NAMED_EXIT = range(5)
CAT_SWITCH, CAT_WAKE, CAT_SIGNAL = 5, 6, 7
#: in the order of the ``how`` codes (perf_records.columns.WAKE_EVENTS)
WAKE_EVENTS = ("sched:sched_wakeup", "sched:sched_waking", "sched:sched_wakeup_new")
#: perf_records.columns.SIGNAL_EVENTS and NO_RESULT, restated: importing perf_records
#: loads pandas, which a helper process reading pieces must not
SIGNAL_EVENTS = ("signal:signal_generate", "signal:signal_deliver")
NO_RESULT = -(1 << 63)
MAX_TIME = (1 << 63) - 1


def category(name: str) -> int:
    if name == "raw_syscalls:sys_enter":
        return CAT_SYS_ENTER
    if name == "raw_syscalls:sys_exit":
        return CAT_SYS_EXIT
    if name.startswith("syscalls:sys_enter_"):
        return CAT_NAMED_ENTER
    if name.startswith("syscalls:sys_exit_"):
        return CAT_NAMED_EXIT
    if name == "sched:sched_switch":
        return CAT_SWITCH
    if name in WAKE_EVENTS:
        return CAT_WAKE
    if name in SIGNAL_EVENTS:
        return CAT_SIGNAL
    return CAT_OTHER


def _cstr(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", "replace")


@dataclass
class SideRecord:
    """A decoded side-band record (g = its index among kernel records, in file order)."""

    g: int
    kind: int
    misc: int
    fields: dict


@dataclass
class Columns:
    """Per-column lists of per-chunk arrays, concatenated once at the end."""

    parts: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, **cols: np.ndarray) -> None:
        for k, v in cols.items():
            self.parts.setdefault(k, []).append(np.asarray(v))

    def get(self, name: str, dtype=np.int64) -> np.ndarray:
        """The whole column (concatenated on first use, then kept as one array)."""
        return whole(self.parts.get(name, []), dtype)

    def clear(self) -> None:
        self.parts.clear()


class ChainStore:
    """Distinct callchains (raw u64 entries, context markers included), ids 0, 1, ..."""

    def __init__(self) -> None:
        self.ids: dict[bytes, int] = {}
        self.chains: list[np.ndarray] = []
        rng = np.random.default_rng(0x7ACEC0)
        self._mult = rng.integers(1, 2**63, size=(2, 256), dtype=np.uint64) | np.uint64(1)

    def _multipliers(self, n: int) -> np.ndarray:
        if n > self._mult.shape[1]:
            rng = np.random.default_rng(n)
            extra = rng.integers(1, 2**63, size=(2, n - self._mult.shape[1]), dtype=np.uint64)
            self._mult = np.concatenate([self._mult, extra | np.uint64(1)], axis=1)
        return self._mult

    def intern(self, entries: np.ndarray, nr: np.ndarray) -> np.ndarray:
        """Global chain ids of the chains given as CSR (*entries* concatenated, *nr* each)."""
        n = len(nr)
        out = np.full(n, -1, np.int64)
        if n == 0:
            return out
        ptr = np.zeros(n + 1, np.int64)
        np.cumsum(nr, out=ptr[1:])
        has = nr > 0
        h = np.zeros(n, np.uint64)
        if ptr[-1]:
            pos = np.arange(ptr[-1], dtype=np.int64) - np.repeat(ptr[:-1], nr)
            mult = self._multipliers(int(nr.max()) + 1)
            with np.errstate(over="ignore"):
                mixed = (entries ^ np.uint64(0x9E3779B97F4A7C15)) * mult[0][pos]
                mixed ^= mixed >> np.uint64(29)
            h[has] = np.add.reduceat(mixed, ptr[:-1][has])
        with np.errstate(over="ignore"):
            key = h * np.uint64(0x100000001B3) + nr.astype(np.uint64)
        # collisions are caught below by comparing every chain with its representative
        _, first, inv = np.unique(key, return_index=True, return_inverse=True)
        inv = inv.reshape(-1)
        rep = first[inv]
        # exact check: every chain equals its representative entry by entry
        same = np.ones(n, bool)
        if ptr[-1]:
            same &= nr[rep] == nr
            at = np.minimum(np.repeat(ptr[rep], nr) + pos, len(entries) - 1)
            diff = entries[at] != entries
            bad_entry = np.flatnonzero(diff)
            if len(bad_entry):
                sample_of = np.repeat(np.arange(n), nr)
                same[np.unique(sample_of[bad_entry])] = False
        local = np.full(len(first), -1, np.int64)
        for u, i in enumerate(first.tolist()):
            local[u] = self.id_of(entries[ptr[i] : ptr[i + 1]])
        out = local[inv]
        for i in np.flatnonzero(~same).tolist():  # hash collision: intern by bytes
            out[i] = self.id_of(entries[ptr[i] : ptr[i + 1]])
        return out

    def id_of(self, chain: np.ndarray) -> int:
        """The id of *chain* (raw entries), a new one if it was not seen."""
        key = chain.tobytes()
        cid = self.ids.get(key)
        if cid is None:
            cid = self.ids[key] = len(self.chains)
            self.chains.append(chain.copy())
        return cid


@dataclass
class WalkResult:
    offsets: np.ndarray  # record starts (bytes from the chunk start), complete records only
    consumed: int  # bytes of complete records (where the next chunk starts)
    damage: str | None = None  # what stopped the walk (None: clean or incomplete tail)
    damage_at: int | None = None  # chunk-relative byte offset of the damage


def walk(data: bytes) -> WalkResult:
    """Record starts in *data* (complete records only), and where the next chunk starts.
    Vectorised where it can be (``_walk_chained``), else a loop over the headers."""
    fast = _walk_chained(data)
    return fast if fast is not None else walk_headers(data)


def header_candidates(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(word index, size in words) of every 8-byte word of *data* that could be a record
    header: a size that is a non-zero multiple of 8 and a type perf writes (kernel types
    1..21, perf's own 64..83; FINISHED_ROUND, a bare header, only with size 8). Every real
    header of a known type is among them. Inside records, the raw tracepoint payload's first
    word (its u32 size, then the common fields) is the usual impostor, with type 68."""
    n_words = len(data) // 8
    s16 = np.frombuffer(data, np.uint16, count=n_words * 4)[3::4]
    m = (s16 & 7) == 0
    m &= s16 != 0
    cand = np.flatnonzero(m)
    if not len(cand):
        return cand, cand
    size = s16[cand]
    t = np.frombuffer(data, np.uint32, count=n_words * 2)[2 * cand]
    ok = ((t >= 1) & (t <= LAST_KERNEL_TYPE)) | ((t >= 64) & (t <= LAST_USER_TYPE))
    ok &= (t != FINISHED_ROUND) | (size == 8)
    return cand[ok], (size[ok] >> 3).astype(np.int64)


def _walk_chained(data: bytes) -> WalkResult | None:
    """The walk without a loop, when it is certain: if the candidate headers
    (``header_candidates``) start at byte 0 and each one's size leads exactly to the next,
    they are the records, because the loop would step from each to the next and no further
    (the last runs to or past the end). Anything else (an impostor inside a record, a
    record of a type not among the candidates, damage) returns None: the loop decides."""
    n_words = len(data) // 8
    if n_words == 0:
        return None
    cand, size = header_candidates(data)
    if not len(cand) or cand[0] != 0:
        return None
    nxt = cand + size
    if int(nxt[-1]) < n_words or not np.array_equal(cand[1:], nxt[:-1]):
        return None
    starts, ends = cand * 8, nxt * 8
    if int(ends[-1]) <= len(data):
        return WalkResult(starts, int(ends[-1]))
    return WalkResult(starts[:-1], int(ends[-2]) if len(starts) > 1 else 0)


def walk_headers(data: bytes) -> WalkResult:
    """The walk as a plain loop over headers (size at bytes 6-7 of each; about 130 ns a
    record), validated with numpy afterwards (sizes below 8 or not 8-aligned are damage).
    ``walk`` uses it when the vectorised check cannot decide (DWARF stack copies are full
    of words that look like headers)."""
    n = len(data) & ~1
    h16 = memoryview(data)[:n].cast("H")
    found = array("q")
    add = found.append
    i = 3  # u16 index of the first record's size
    try:
        while True:
            s = h16[i]
            if s < 8:  # 0 would loop forever; no record is shorter than its header
                break
            add(i)
            i += s >> 1
    except IndexError:
        pass
    starts = (np.frombuffer(found, np.int64) - 3) * 2
    stop_small = (i - 3) * 2 if i < len(h16) else None  # where a size < 8 stopped us
    u16 = np.frombuffer(data, np.uint16, count=n // 2)
    sizes = u16[starts // 2 + 3].astype(np.int64) if len(starts) else np.zeros(0, np.int64)
    bad = np.flatnonzero((sizes < 8) | (sizes % 8 != 0))
    if len(bad):
        k = int(bad[0])
        return WalkResult(
            starts[:k],
            int(starts[k]),
            f"record size {int(sizes[k])} is not a multiple of 8",
            int(starts[k]),
        )
    ends = starts + sizes
    complete = ends <= len(data)
    k = int(np.argmin(complete)) if not complete.all() else len(starts)
    starts = starts[:k]
    consumed = int(ends[k - 1]) if k else 0
    if k == len(complete) and stop_small is not None and stop_small + 8 <= len(data):
        size = int(u16[stop_small // 2 + 3])
        return WalkResult(starts, consumed, f"record size {size}", stop_small)
    return WalkResult(starts, consumed)


@dataclass
class Decoded:
    """Everything the data section held, as columns over kernel records in file order."""

    rec: Columns = field(default_factory=Columns)  # off, kind, time, queued, seg, tid, pid,...
    sys: Columns = field(default_factory=Columns)
    switch: Columns = field(default_factory=Columns)
    wake: Columns = field(default_factory=Columns)
    signal: Columns = field(default_factory=Columns)
    side: list[SideRecord] = field(default_factory=list)
    chains: ChainStore = field(default_factory=ChainStore)
    named_syscalls: list[str] = field(default_factory=list)
    n_records: int = 0
    n_rounds: int = 0
    skipped: Counter = field(default_factory=Counter)
    ignored: Counter = field(default_factory=Counter)  # known record types we do not need
    warnings: list[str] = field(default_factory=list)
    damage_offset: int | None = None
    damage: str | None = None  # what stopped reading; its warning is made by ``seal``
    dwarf: bool = False

    def seal(self) -> Decoded:
        """The damage warning, once every piece is in: it counts the records kept."""
        if self.damage is not None:
            self.warnings.append(
                f"{self.damage}: stopped reading there; the {self.n_records} complete records "
                "before it are kept"
            )
        return self

    def extend(self, later: Decoded) -> None:
        """Append what was decoded from the records that follow these in the file (a piece
        decoded on its own, see pieces.py), as if one reader had read on: record indices,
        round numbers, callchain ids and syscall-name codes continue from here."""
        g0, r0 = np.int32(self.n_records), np.int32(self.n_rounds)
        chain_id = np.array([self.chains.id_of(c) for c in later.chains.chains] + [-1], np.int32)
        name_code = [self.named(name) for name in later.named_syscalls] + [-1]
        shift = {
            "rec": {"seg": lambda a: a + r0, "chain": lambda a: chain_id[a]},  # -1 stays -1
            "sys": {"g": lambda a: a + g0, "named": lambda a: np.array(name_code, a.dtype)[a]},
            "switch": {"g": lambda a: a + g0},
            "wake": {"g": lambda a: a + g0},
            "signal": {"g": lambda a: a + g0},
        }
        for table, moves in shift.items():
            ours, theirs = getattr(self, table), getattr(later, table)
            for name, parts in theirs.parts.items():
                move = moves.get(name)
                ours.parts.setdefault(name, []).extend(
                    move(p) if move is not None else p for p in parts
                )
            theirs.clear()
        for r in later.side:
            r.g += self.n_records
        self.side += later.side
        self.n_records += later.n_records
        self.n_rounds += later.n_rounds
        self.skipped.update(later.skipped)
        self.ignored.update(later.ignored)
        self.warnings += later.warnings
        if later.damage is not None:
            self.damage, self.damage_offset = later.damage, later.damage_offset

    def named(self, name: str) -> int:
        """The code of a syscall named by its tracepoint (syscalls:sys_enter_NAME), in order
        of first appearance."""
        if name not in self.named_syscalls:
            self.named_syscalls.append(name)
        return self.named_syscalls.index(name)


def _header_fields(words: np.ndarray, offs: np.ndarray) -> tuple[np.ndarray, ...]:
    """(type, misc, size) of the records starting at byte offsets *offs* of a chunk, from
    their headers (u32 type, u16 misc, u16 size), as int64."""
    hdr = words[offs // 8]
    types = (hdr & np.uint64(0xFFFFFFFF)).astype(np.int64)
    misc = ((hdr >> np.uint64(32)) & np.uint64(0xFFFF)).astype(np.int64)
    sizes = (hdr >> np.uint64(48)).astype(np.int64)
    return types, misc, sizes


class _PayloadFields:
    """Tracepoint fields read from the RAW payloads of one event's samples, at the offsets
    of its format text (*fmt*). ``ok``: the samples still valid; one whose payload is
    shorter than a field read is no longer, and is counted as skipped (by event *name*)."""

    def __init__(
        self,
        u8: np.ndarray,
        pos: SamplePositions,
        ok: np.ndarray,
        fmt: EventFormat,
        name: str,
        skipped: Counter,
    ) -> None:
        self.u8, self.pos, self.ok, self.fmt = u8, pos, ok, fmt
        self.name, self.skipped = name, skipped

    def read(self, field_name: str, size: int | None = None, signed: bool | None = None):
        """The field of every sample (0 where not ``ok``), *size* and *signed* overriding
        the format's; None when the format has no such field or its size is not 1, 2, 4
        or 8 bytes."""
        fd = self.fmt.fields.get(field_name)
        if fd is None:
            return None
        sz = size or fd.size
        if sz not in (1, 2, 4, 8):
            return None
        fits = self.pos.raw_size >= fd.offset + sz
        short = self.ok & ~fits
        if short.any():
            count(self.skipped, "perf_data_short_payload", int(short.sum()), key=self.name)
        self.ok = self.ok & fits
        at = np.where(self.ok, self.pos.raw_byte + fd.offset, 0)
        return gather_int(self.u8, at, sz, fd.signed if signed is None else signed)


class DataReader:
    """Decodes the data section of one perf.data (see the module docstring)."""

    def __init__(
        self,
        pf: F.PerfFile,
        formats: dict[int, EventFormat],
        long_size: int = 8,
        chunk_bytes: int = CHUNK_BYTES,
        all_chains: bool = False,
    ) -> None:
        self.pf = pf
        # callchains of syscall exits are never read by the tables (a syscall's stack is its
        # entry's): skip them unless asked
        self.all_chains = all_chains
        self.formats = formats
        self.long_size = long_size
        self.chunk_bytes = chunk_bytes
        attrs = pf.attrs
        if not attrs:
            raise F.Unsupported("no event attributes")
        self.layouts = [SampleLayout.of(a) for a in attrs]
        self.trailers = [TrailerLayout.of(a) for a in attrs]
        types = {a.sample_type for a in attrs}
        self.by_identifier = len(types) > 1
        if self.by_identifier and not all(a.sample_type & F.SAMPLE_IDENTIFIER for a in attrs):
            raise F.Unsupported("events with different sample types and no IDENTIFIER")
        ids, owners = [], []
        for a in attrs:
            for i in a.ids:
                ids.append(i)
                owners.append(a.index)
        order = np.argsort(np.array(ids, np.uint64), kind="stable")
        self.id_keys = np.array(ids, np.uint64)[order]
        self.id_attr = np.array(owners, np.int64)[order]
        self.id_word = self.layouts[0].fixed.get("identifier") or self.layouts[0].fixed.get("id")
        self.cats = [
            category(a.name) if a.type == F.PERF_TYPE_TRACEPOINT else CAT_OTHER for a in attrs
        ]
        self.dwarf = any(a.sample_type & F.SAMPLE_STACK_USER for a in attrs)
        self.out = Decoded(dwarf=self.dwarf)

    # -- driver ---------------------------------------------------------------------------

    def read(self) -> Decoded:
        """Walk and decode every chunk; stop at the first damage (said in warnings)."""
        self.read_range(self.pf.data.offset, self.pf.data.end)
        return self.out.seal()

    def read_range(self, start: int, end: int) -> int:
        """Decode the records from *start* (where a record starts) up to *end*, into
        ``self.out``; where reading stopped. That is *end* when a record ends there, or
        damage stopped it (``out.damage``). Before the data's end, a record running past
        *end* is not damage: *end* was not a record boundary (a guessed cut, see pieces.py)
        and the start of that record is returned."""
        pos, last = start, end >= self.pf.data.end
        end = min(end, self.pf.data.end)
        while pos < end:
            data = self.pf.read_at(pos, min(self.chunk_bytes, end - pos))
            if not data:
                self._damage(pos, "data section ends early (read returned nothing)")
                break
            w = walk(data)
            offs = w.offsets
            stop = False
            if len(offs):
                stop = self._chunk(data, pos, offs)
            if stop:
                break
            if w.damage is not None:
                self._damage(pos + (w.damage_at or 0), w.damage)
                break
            if w.consumed == 0 or (pos + len(data) >= end and w.consumed < len(data)):
                at = pos + w.consumed
                if at < end and last:
                    self._damage(
                        at,
                        f"truncated record at offset {at} (the data ends at {end})",
                        plain=True,
                    )
                elif at < end:
                    return at
                break
            pos += w.consumed
        return end if self.out.damage is None else self.out.damage_offset

    def _damage(self, at: int, what: str, plain: bool = False) -> None:
        self.out.damage_offset = at
        self.out.damage = what if plain else f"{what} at offset {at}"
        count(self.out.skipped, "perf_data_after_damage")

    # -- one chunk ------------------------------------------------------------------------

    def _chunk(self, data: bytes, base: int, offs: np.ndarray) -> bool:
        """Decode the records of one chunk. True when a record we must not go past was met."""
        words = np.frombuffer(data, np.uint64, count=len(data) // 8)
        u8 = np.frombuffer(data, np.uint8)
        types, misc, sizes = _header_fields(words, offs)
        offs, types, misc, sizes, stop = self._before_payload_records(
            base, offs, types, misc, sizes
        )
        kernel, seg = self._count_record_types(types)
        ki = np.flatnonzero(kernel)
        if not len(ki):
            return stop
        rec_offset, rec_type, rec_misc, rec_size = offs[ki], types[ki], misc[ki], sizes[ki]
        n = len(ki)
        g0 = self.out.n_records
        rec_index = np.arange(g0, g0 + n, dtype=np.int64).astype(np.int32)
        rec_cols = self._new_columns(base + rec_offset, rec_type, rec_misc, seg[ki])
        is_sample = rec_type == SAMPLE
        if is_sample.any():
            sample_idx = np.flatnonzero(is_sample)
            self._samples(words, u8, sample_idx, rec_offset, rec_size, rec_index, rec_cols)
        side_idx = np.flatnonzero(~is_sample)
        if len(side_idx):
            self._side(
                words, data, side_idx, rec_offset, rec_size, rec_type, rec_misc, rec_index,
                rec_cols,
            )  # fmt: skip
        rec_cols["queued"] = rec_cols["valid"] & (rec_cols["time"] != 0)
        self.out.rec.add(**rec_cols)
        self.out.n_records += n
        return stop

    def _before_payload_records(
        self, base: int, offs: np.ndarray, types: np.ndarray, misc: np.ndarray, sizes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
        """The chunk's records up to the first that carries a payload after itself
        (AUXTRACE, HEADER_TRACING_DATA), and whether there was one: such records are not
        expected in a file-mode perf.data of these events, so reading stops before them
        (as damage) rather than guess. Compressed records are refused (Unsupported)."""
        special = np.flatnonzero(
            (types == AUXTRACE)
            | (types == HEADER_TRACING_DATA)
            | (types == COMPRESSED)
            | (types == COMPRESSED2)
        )
        if not len(special):
            return offs, types, misc, sizes, False
        k = int(special[0])
        t = int(types[k])
        if t in (COMPRESSED, COMPRESSED2):
            raise F.Unsupported("compressed records (perf record -z)")
        offs, types, misc, sizes = offs[:k], types[:k], misc[:k], sizes[:k]
        self._damage(
            base + int(offs[-1] + sizes[-1]) if k else base,
            f"{RECORD_NAMES[t]} record (payload after the record) not supported",
        )
        return offs, types, misc, sizes, True

    def _count_record_types(self, types: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(which records are kernel records, the FINISHED_ROUNDs before each record). The
        records of unknown types are counted as skipped, perf's own known records but
        FINISHED_ROUND as ignored, and the rounds are added to ``out.n_rounds``."""
        rounds = types == FINISHED_ROUND
        kernel = (types >= 1) & (types <= LAST_KERNEL_TYPE)
        known_user = (types >= 64) & (types <= LAST_USER_TYPE)
        unknown = ~kernel & ~known_user
        if unknown.any():
            for t, c in Counter(types[unknown].tolist()).items():
                count(self.out.skipped, "perf_data_unknown_record", c, key=str(t))
        for t, c in Counter(types[known_user & ~rounds].tolist()).items():
            self.out.ignored[RECORD_NAMES.get(t, str(t))] += c
        seg = self.out.n_rounds + np.cumsum(rounds) - rounds  # rounds before each record
        self.out.n_rounds += int(rounds.sum())
        return kernel, seg

    def _new_columns(
        self, off: np.ndarray, rec_type: np.ndarray, rec_misc: np.ndarray, seg: np.ndarray
    ) -> dict[str, np.ndarray]:
        """The columns of the chunk's kernel records (file offsets *off*), before their
        samples and side-band records fill them: unknown values (-1, 0) and every record
        valid. The kernel record types we do not decode are counted as ignored."""
        n = len(off)
        cols = {
            "off": off,
            "kind": KIND_LUT[rec_type],
            "time": np.zeros(n, np.int64),
            "queued": np.zeros(n, bool),
            "valid": np.ones(n, bool),
            "seg": seg.astype(np.int32),
            "tid": np.full(n, -1, np.int32),
            "pid": np.full(n, -1, np.int32),
            "cpu": np.full(n, -1, np.int32),
            "attr": np.full(n, -1, np.int16),
            "chain": np.full(n, -1, np.int32),
            "misc": rec_misc.astype(np.uint16),
        }
        if self.dwarf:
            cols["regs_at"] = np.full(n, -1, np.int32)
            cols["regs_abi"] = np.zeros(n, np.int8)
            cols["stack_at"] = np.full(n, -1, np.int32)
            cols["stack_dyn"] = np.zeros(n, np.int32)
            cols["stack_size"] = np.zeros(n, np.int32)  # requested (what the kernel reserved)
            cols["user_sp"] = np.zeros(n, np.int64)  # 0: no 64-bit user registers
        other = cols["kind"] == K_OTHER
        if other.any():
            for t, c in Counter(rec_type[other].tolist()).items():
                self.out.ignored[RECORD_NAMES.get(t, str(t))] += c
        return cols

    def _attr_of(self, ids: np.ndarray) -> np.ndarray:
        """attr index of each event id; -1 for ids not in the header. Id 0 is what perf's
        synthesised records carry: perf reads them with the first event (evlist__id2evsel)."""
        if len(self.pf.attrs) == 1 and not len(self.id_keys):
            return np.zeros(len(ids), np.int64)
        j = np.searchsorted(self.id_keys, ids)
        jc = np.minimum(j, max(len(self.id_keys) - 1, 0))
        ok = (j < len(self.id_keys)) & (self.id_keys[jc] == ids) if len(self.id_keys) else j < 0
        out = np.where(ok, self.id_attr[jc] if len(self.id_keys) else 0, -1)
        return np.where(ids == 0, 0, out)

    def _samples(self, w, u8, si, k_off, k_size, g, cols) -> None:
        start = k_off[si] // 8
        size_w = k_size[si] // 8
        if len(self.pf.attrs) == 1:
            attr = np.zeros(len(si), np.int64)
        elif self.id_word is not None:
            has = size_w > self.id_word
            attr = np.where(has, self._attr_of(w[start + np.where(has, self.id_word, 0)]), -1)
        else:
            attr = np.full(len(si), -1, np.int64)
        unknown = attr < 0
        if unknown.any():
            count(self.out.skipped, "perf_data_unknown_event_id", int(unknown.sum()))
            cols["valid"][si[unknown]] = False
        for a in np.unique(attr[~unknown]).tolist():
            sel = np.flatnonzero(attr == a)
            self._sample_group(w, u8, si[sel], start[sel], size_w[sel], a, g, cols)

    def _sample_group(self, w, u8, si, start, size_w, a: int, g, cols) -> None:
        lay = self.layouts[a]
        pos = sample_positions(w, start, size_w, lay)
        ok = pos.valid.copy()
        f = lay.fixed
        if "time" in f:
            t = w[start + f["time"]]
            late = t > np.uint64(MAX_TIME)
            if (late & ok).any():
                count(self.out.skipped, "perf_data_time_overflow", int((late & ok).sum()))
            ok &= ~late
            cols["time"][si] = np.where(ok, t, 0).astype(np.int64)
        if "tid" in f:
            pt = w[start + f["tid"]]
            cols["pid"][si] = (pt & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32)
            cols["tid"][si] = (pt >> np.uint64(32)).astype(np.uint32).view(np.int32)
        if "cpu" in f:
            cols["cpu"][si] = (
                (w[start + f["cpu"]] & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32)
            )
        cols["attr"][si] = a
        bad = ~pos.valid
        if bad.any():
            count(self.out.skipped, "perf_data_sample_sizes", int(bad.sum()))
        # callchains
        cat = self.cats[a]
        if lay.has(F.SAMPLE_CALLCHAIN) and (self.all_chains or cat != CAT_SYS_EXIT):
            nr = np.where(ok, pos.cc_nr, 0)
            total = int(nr.sum())
            if total:
                ptr0 = np.zeros(len(nr), np.int64)
                np.cumsum(nr[:-1], out=ptr0[1:])
                idx = np.repeat(pos.cc_pos + 1 - ptr0, nr) + np.arange(total)
                entries = w[idx]
            else:
                entries = np.zeros(0, np.uint64)
            ids = self.out.chains.intern(entries, nr)
            cols["chain"][si] = np.where(ok & (nr > 0), ids, -1)
        if self.dwarf and lay.has(F.SAMPLE_STACK_USER):
            rel = start * 8
            cols["regs_at"][si] = np.where(ok & (pos.regs_pos >= 0), pos.regs_pos * 8 - rel, -1)
            cols["regs_abi"][si] = np.minimum(pos.regs_abi, 2)
            cols["stack_at"][si] = np.where(ok & (pos.stack_pos >= 0), pos.stack_pos * 8 - rel, -1)
            cols["stack_dyn"][si] = np.where(ok, pos.stack_dyn, 0)
            cols["stack_size"][si] = np.where(ok, pos.stack_size, 0)
            cols["user_sp"][si] = _user_sp(w, pos, ok, self.pf.attrs[a].sample_regs_user)
        # tracepoint payloads
        attr = self.pf.attrs[a]
        fmt = self.formats.get(attr.config) if attr.type == F.PERF_TYPE_TRACEPOINT else None
        if cat != CAT_OTHER and fmt is not None and lay.has(F.SAMPLE_RAW):
            ok = self._payload(u8, pos, ok, cat, fmt, g[si], attr.name)
        cols["valid"][si] = ok

    def _payload(self, u8, pos, ok, cat: int, fmt: EventFormat, g, name: str) -> np.ndarray:
        """Typed side-table rows from the RAW payloads; samples whose payload is shorter
        than the fields read are invalid."""
        fields = _PayloadFields(u8, pos, ok, fmt, name, self.out.skipped)
        if cat in (CAT_SYS_ENTER, CAT_SYS_EXIT):
            self._raw_syscalls(fields, cat == CAT_SYS_ENTER, g)
        elif cat in (CAT_NAMED_ENTER, CAT_NAMED_EXIT):
            self._named_syscalls(fields, cat == CAT_NAMED_ENTER, g, name)
        elif cat == CAT_SWITCH:
            self._switches(fields, g)
        elif cat == CAT_WAKE:
            self._wakeups(fields, g, name)
        elif cat == CAT_SIGNAL:
            self._signals(fields, g, name)
        return fields.ok

    def _raw_syscalls(self, fields: _PayloadFields, entry: bool, g: np.ndarray) -> None:
        """``sys`` rows of raw_syscalls:sys_enter (*entry*) or sys_exit samples: the syscall
        number, and the first argument (a possible fd) of an entry or the return value of
        an exit. Nothing without the ``id`` field."""
        n = len(g)
        nr = fields.read("id")
        if nr is None:
            return
        if entry:
            a0 = fields.read("args", size=self.long_size, signed=False)
            fd = a0 if a0 is not None else np.full(n, -1, np.int64)
            ret = np.zeros(n, np.int64)
            direction = 1
        else:
            r = fields.read("ret")
            ret = r if r is not None else np.zeros(n, np.int64)
            fd = np.full(n, -1, np.int64)
            direction = 2
        ok = fields.ok
        self.out.sys.add(
            g=g[ok], dir=np.full(int(ok.sum()), direction, np.int8),
            raw=np.ones(int(ok.sum()), np.int8), nr=nr[ok],
            named=np.full(int(ok.sum()), -1, np.int16),
            fd=fd[ok], ret=ret[ok],
        )  # fmt: skip

    def _named_syscalls(
        self, fields: _PayloadFields, entry: bool, g: np.ndarray, name: str
    ) -> None:
        """``sys`` rows of syscalls:sys_enter_NAME (*entry*) or sys_exit_NAME samples: the
        syscall named by the tracepoint, and its ``fd`` argument or return value."""
        n = len(g)
        prefix = "syscalls:sys_enter_" if entry else "syscalls:sys_exit_"
        code = self.out.named(name[len(prefix) :])
        if entry:
            v = fields.read("fd")
            fd = v if v is not None else np.full(n, -1, np.int64)
            ret = np.zeros(n, np.int64)
            direction = 1
        else:
            v = fields.read("ret")
            ret = v if v is not None else np.full(n, -1, np.int64)
            fd = np.full(n, -1, np.int64)
            direction = 2
        ok = fields.ok
        m = int(ok.sum())
        self.out.sys.add(
            g=g[ok], dir=np.full(m, direction, np.int8), raw=np.zeros(m, np.int8),
            nr=np.full(m, -1, np.int64), named=np.full(m, code, np.int16), fd=fd[ok],
            ret=ret[ok],
        )  # fmt: skip

    def _switches(self, fields: _PayloadFields, g: np.ndarray) -> None:
        """``switch`` rows of sched:sched_switch samples; nothing if a field is missing."""
        prev, state, nxt = (
            fields.read("prev_pid"),
            fields.read("prev_state"),
            fields.read("next_pid"),
        )
        if prev is None or state is None or nxt is None:
            return
        ok = fields.ok
        self.out.switch.add(
            g=g[ok],
            prev=prev[ok].astype(np.int32),
            state=state[ok],
            next=nxt[ok].astype(np.int32),
        )

    def _wakeups(self, fields: _PayloadFields, g: np.ndarray, name: str) -> None:
        """``wake`` rows of the wakeup tracepoints' samples (*name* says which); nothing
        without the ``pid`` field."""
        n = len(g)
        pid = fields.read("pid")
        if pid is None:
            return
        cpu = fields.read("target_cpu")
        cpu = cpu if cpu is not None else np.full(n, -1, np.int64)
        ok = fields.ok
        m = int(ok.sum())
        self.out.wake.add(
            g=g[ok],
            pid=pid[ok].astype(np.int32),
            cpu=cpu[ok].astype(np.int32),
            how=np.full(m, WAKE_EVENTS.index(name), np.int8),  # which wakeup tracepoint
        )

    def _signals(self, fields: _PayloadFields, g: np.ndarray, name: str) -> None:
        """``signal`` rows of the signal tracepoints' samples (*name* says which): generate's
        ``pid`` is the receiver (it fires in the sender's context), its ``result`` the
        outcome (NO_RESULT for deliver, or a format without it: the text prints no res).
        Nothing without ``sig`` and ``code`` (and generate's ``pid``), as the text path."""
        generate = name == "signal:signal_generate"
        sig, code = fields.read("sig"), fields.read("code")
        target = fields.read("pid") if generate else np.full(len(g), -1, np.int64)
        if sig is None or code is None or target is None:
            return
        res = fields.read("result") if generate else None
        res = res if res is not None else np.full(len(g), NO_RESULT, np.int64)
        ok = fields.ok
        self.out.signal.add(
            g=g[ok],
            how=np.full(int(ok.sum()), SIGNAL_EVENTS.index(name), np.int8),
            sig=sig[ok].astype(np.int32),
            code=code[ok].astype(np.int32),
            res=res[ok],  # int64: NO_RESULT
            target=target[ok].astype(np.int32),
        )

    # -- side-band records ----------------------------------------------------------------

    def _side(
        self,
        words: np.ndarray,
        chunk: bytes,
        side_idx: np.ndarray,
        rec_offset: np.ndarray,
        rec_size: np.ndarray,
        rec_type: np.ndarray,
        rec_misc: np.ndarray,
        rec_index: np.ndarray,
        rec_cols: dict[str, np.ndarray],
    ) -> None:
        """The side-band records of a chunk (*words*: as u64 words, *chunk*: its bytes):
        *side_idx* says which of its kernel records they are; *rec_offset*, *rec_size*,
        *rec_type*, *rec_misc*: each kernel record's byte offset in the chunk, size, type
        and misc bits; *rec_index*: its index among the file's kernel records; *rec_cols*:
        their columns, filled here from the sample_id_all trailers (time, pid, tid, cpu).
        The types we decode become ``out.side`` records."""
        side_offset, side_size = rec_offset[side_idx], rec_size[side_idx]
        end_word = (side_offset + side_size) // 8  # one past each record's last word
        side_attr = (
            self._attr_of(words[end_word - 1])
            if self.by_identifier
            else np.zeros(len(side_idx), np.int64)
        )
        trailer_words = np.array(
            [self.trailers[a].words if a >= 0 else 0 for a in side_attr.tolist()]
        )
        kept = (side_attr >= 0) & (side_size >= 8 + 8 * trailer_words)
        if (~kept).any():
            count(self.out.skipped, "perf_data_short_trailer", int((~kept).sum()))
        self._side_trailers(words, side_idx, end_word, side_attr, kept, rec_cols)
        rec_cols["valid"][side_idx] = kept
        decoded = (KIND_LUT[rec_type[side_idx]] != K_OTHER) & kept
        for nth in np.flatnonzero(decoded).tolist():
            rec_i = int(side_idx[nth])
            attr = int(side_attr[nth])
            typ, misc = int(rec_type[rec_i]), int(rec_misc[rec_i])
            body_end = int(side_size[nth]) - 8 * int(trailer_words[nth])
            fields = self._decode_side(chunk, int(side_offset[nth]), body_end, typ, misc)
            if fields is None:
                rec_cols["valid"][rec_i] = False
                count(self.out.skipped, "perf_data_short_record", key=RECORD_NAMES[typ])
                continue
            if attr >= 0 and not self.trailers[attr].words and "time" in fields:
                rec_cols["time"][rec_i] = fields["time"] if fields["time"] <= MAX_TIME else 0
            self.out.side.append(SideRecord(int(rec_index[rec_i]), KIND_OF_TYPE[typ], misc, fields))

    def _side_trailers(
        self,
        words: np.ndarray,
        side_idx: np.ndarray,
        end_word: np.ndarray,
        side_attr: np.ndarray,
        kept: np.ndarray,
        rec_cols: dict[str, np.ndarray],
    ) -> None:
        """time, pid, tid and cpu of the *kept* side-band records from their sample_id_all
        trailers, counted back from each record's *end_word* as its event's trailer layout
        says. A time past MAX_TIME is written as 0 and its record no longer *kept*."""
        for attr in np.unique(side_attr[side_attr >= 0]).tolist():
            from_end = self.trailers[attr].from_end
            of_attr = np.flatnonzero((side_attr == attr) & kept)
            ends = end_word[of_attr]
            rows = side_idx[of_attr]  # their places among the chunk's kernel records
            if "time" in from_end:
                times = words[ends - from_end["time"]]
                late = times > np.uint64(MAX_TIME)
                kept[of_attr[late]] = False
                rec_cols["time"][rows] = np.where(late, 0, times).astype(np.int64)
            if "tid" in from_end:
                pid_tid = words[ends - from_end["tid"]]
                rec_cols["pid"][rows] = (
                    (pid_tid & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32)
                )
                rec_cols["tid"][rows] = (pid_tid >> np.uint64(32)).astype(np.uint32).view(np.int32)
            if "cpu" in from_end:
                rec_cols["cpu"][rows] = (
                    (words[ends - from_end["cpu"]] & np.uint64(0xFFFFFFFF))
                    .astype(np.uint32)
                    .view(np.int32)
                )

    @staticmethod
    def _decode_side(data: bytes, off: int, body_end: int, typ: int, misc: int) -> dict | None:
        """Fields of one side-band record (body = bytes 8 .. body_end of the record)."""
        body = data[off + 8 : off + body_end]
        try:
            if typ == COMM:
                pid, tid = struct.unpack_from("<ii", body)
                return {
                    "pid": pid,
                    "tid": tid,
                    "comm": _cstr(body[8:]),
                    "exec": bool(misc & 0x2000),
                }
            if typ in (FORK, EXIT):
                pid, ppid, tid, ptid, t = struct.unpack_from("<iiiiQ", body)
                return {"pid": pid, "ppid": ppid, "tid": tid, "ptid": ptid, "time": t}
            if typ == LOST:
                eid, lost = struct.unpack_from("<QQ", body)
                return {"id": eid, "lost": min(lost, MAX_TIME)}  # int64 columns downstream
            if typ == LOST_SAMPLES:
                return {"lost": min(struct.unpack_from("<Q", body)[0], MAX_TIME)}
            if typ == MMAP:
                pid, tid, start, length, pgoff = struct.unpack_from("<iiQQQ", body)
                prot = 1 if misc & 0x2000 else 5  # PERF_RECORD_MISC_MMAP_DATA: not executable
                return {
                    "pid": pid, "tid": tid, "start": start, "len": length, "pgoff": pgoff,
                    "prot": prot, "filename": _cstr(body[32:]), "build_id": None, "mmap2": False,
                }  # fmt: skip
            if typ == MMAP2:
                pid, tid, start, length, pgoff = struct.unpack_from("<iiQQQ", body)
                build_id = None
                if misc & 0x4000:  # PERF_RECORD_MISC_MMAP_BUILD_ID
                    bsize = body[32]
                    build_id = bytes(body[36 : 36 + min(bsize, 20)])
                prot, flags = struct.unpack_from("<II", body, 56)
                return {
                    "pid": pid, "tid": tid, "start": start, "len": length, "pgoff": pgoff,
                    "prot": prot, "flags": flags, "filename": _cstr(body[64:]),
                    "build_id": build_id, "mmap2": True,
                }  # fmt: skip
        except (struct.error, IndexError):
            return None
        return None


#: perf's x86 register number of the stack pointer (PERF_REG_X86_SP)
PERF_REG_SP = 7


def _user_sp(w: np.ndarray, pos, ok: np.ndarray, mask: int) -> np.ndarray:
    """Each sample's user stack pointer (0 where it has no 64-bit user registers), read with
    the records: the unwinder's splice asks of every sample of a thread, unwound or not,
    whether it ran above a frame (``stops.py``)."""
    if not mask >> PERF_REG_SP & 1:
        return np.zeros(len(ok), np.int64)
    k = bin(mask & ((1 << PERF_REG_SP) - 1)).count("1")  # SP's place in the dump
    has = ok & (pos.regs_pos >= 0) & (pos.regs_abi == 2)  # 2: PERF_SAMPLE_REGS_ABI_64
    sp = w[np.where(has, pos.regs_pos + k, 0)]
    return np.where(has, sp, 0).astype(np.int64)
