"""The perf.data container: file header, event attributes, feature sections.

Layout (perf's ``perf.data-file-format.txt``, checked against perf 6.1 files; see
/work/shared/notes/perf_data_format.md): a 104-byte header with the ``PERFILE2`` magic, the
attrs section (one ``perf_event_attr`` plus an ``{offset, size}`` of its id array per event),
the data section (the records, read by :mod:`.records`), and after the data one
``{offset, size}`` per feature bit set in the header's 256-bit bitmap.

Every offset and size read here is checked against the file size before anything is sliced
or allocated, so a hostile header cannot make us read out of bounds or allocate gigabytes.
What this reader does not handle is reported as :class:`Unsupported` (the caller falls back to
``perf script``): pipe-mode files, other-endian files, ``perf record -z`` (COMPRESSED) and
``--threads`` directories (DIR_FORMAT). A file that is not perf.data, or whose header cannot
be read, is an :class:`InputError` with the byte offset.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

MAGIC = b"PERFILE2"
MAGIC_SWAPPED = b"2ELIFREP"
MAGIC_V1 = b"PERFFILE"
FILE_HEADER = struct.Struct("<8sQQ2Q2Q2Q32s")  # 104 bytes
PIPE_HEADER_SIZE = 16
ATTR_VER0_SIZE = 64  # the smallest perf_event_attr ever written
MAX_ATTR_SIZE = 4096  # far above any real perf_event_attr (136 bytes in 2024)

# Feature bits (perf's util/header.h, enum HEADER_*); names as `perf script --header` prints
# them in "missing features".
FEATURE_NAMES = {
    1: "TRACING_DATA",
    2: "BUILD_ID",
    3: "HOSTNAME",
    4: "OSRELEASE",
    5: "VERSION",
    6: "ARCH",
    7: "NRCPUS",
    8: "CPUDESC",
    9: "CPUID",
    10: "TOTAL_MEM",
    11: "CMDLINE",
    12: "EVENT_DESC",
    13: "CPU_TOPOLOGY",
    14: "NUMA_TOPOLOGY",
    15: "BRANCH_STACK",
    16: "PMU_MAPPINGS",
    17: "GROUP_DESC",
    18: "AUXTRACE",
    19: "STAT",
    20: "CACHE",
    21: "SAMPLE_TIME",
    22: "MEM_TOPOLOGY",
    23: "CLOCKID",
    24: "DIR_FORMAT",
    25: "BPF_PROG_INFO",
    26: "BPF_BTF",
    27: "COMPRESSED",
    28: "CPU_PMU_CAPS",
    29: "CLOCK_DATA",
    30: "HYBRID_TOPOLOGY",
    31: "PMU_CAPS",
}
FEAT = {name: bit for bit, name in FEATURE_NAMES.items()}

#: clockid values perf names in its header ("# clockid: monotonic (1)")
CLOCK_NAMES = {0: "realtime", 1: "monotonic", 4: "monotonic_raw", 7: "boottime", 11: "tai"}

# perf_event_attr.sample_type bits
SAMPLE_IP = 1 << 0
SAMPLE_TID = 1 << 1
SAMPLE_TIME = 1 << 2
SAMPLE_ADDR = 1 << 3
SAMPLE_READ = 1 << 4
SAMPLE_CALLCHAIN = 1 << 5
SAMPLE_ID = 1 << 6
SAMPLE_CPU = 1 << 7
SAMPLE_PERIOD = 1 << 8
SAMPLE_STREAM_ID = 1 << 9
SAMPLE_RAW = 1 << 10
SAMPLE_BRANCH_STACK = 1 << 11
SAMPLE_REGS_USER = 1 << 12
SAMPLE_STACK_USER = 1 << 13
SAMPLE_WEIGHT = 1 << 14
SAMPLE_DATA_SRC = 1 << 15
SAMPLE_IDENTIFIER = 1 << 16
SAMPLE_TRANSACTION = 1 << 17
SAMPLE_REGS_INTR = 1 << 18
SAMPLE_PHYS_ADDR = 1 << 19
SAMPLE_AUX = 1 << 20
SAMPLE_CGROUP = 1 << 21
SAMPLE_DATA_PAGE_SIZE = 1 << 22
SAMPLE_CODE_PAGE_SIZE = 1 << 23
SAMPLE_WEIGHT_STRUCT = 1 << 24

# read_format bits
READ_TOTAL_TIME_ENABLED = 1 << 0
READ_TOTAL_TIME_RUNNING = 1 << 1
READ_ID = 1 << 2
READ_GROUP = 1 << 3
READ_LOST = 1 << 4

PERF_TYPE_TRACEPOINT = 2


class Unsupported(Exception):
    """A valid perf.data this reader does not decode (the caller falls back to perf script)."""


@dataclass
class Section:
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass
class EventAttr:
    """The fields of one ``perf_event_attr`` that decide the record layouts."""

    index: int
    type: int
    size: int
    config: int
    sample_type: int
    read_format: int
    flags: int
    branch_sample_type: int
    sample_regs_user: int
    sample_stack_user: int
    clockid: int
    sample_regs_intr: int
    ids: list[int] = field(default_factory=list)
    name: str = ""

    def flag(self, bit: int) -> bool:
        return bool(self.flags >> bit & 1)

    @property
    def sample_id_all(self) -> bool:
        return self.flag(18)


def _u32(buf, off: int) -> int:
    return struct.unpack_from("<I", buf, off)[0]


def _u64(buf, off: int) -> int:
    return struct.unpack_from("<Q", buf, off)[0]


def _cstr(raw: bytes) -> str:
    """A NUL-terminated (and NUL-padded) string; bad bytes become U+FFFD, never an error."""
    return raw.split(b"\x00", 1)[0].decode("utf-8", "replace")


@dataclass
class PerfFile:
    """An opened perf.data: header, attrs and feature sections, read lazily from a mmap."""

    path: str
    read_at: Callable[[int, int], bytes]
    file_size: int
    attr_size: int
    attrs_section: Section
    data: Section
    feature_bits: set[int]
    features: dict[int, Section]
    attrs: list[EventAttr]
    warnings: list[str] = field(default_factory=list)
    _fd: int | None = None

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> PerfFile:
        path = str(path)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise InputError(path, f"cannot open: {exc.strerror or exc}") from None
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                raise InputError(path, "empty file, not perf.data", offset=0)

            def read_at(off: int, n: int) -> bytes:
                return os.pread(fd, n, off)

            pf = cls._parse(path, read_at, size)
            pf._fd = fd
            return pf
        except OSError as exc:
            os.close(fd)
            raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def from_bytes(cls, path: str, data: bytes) -> PerfFile:
        """A perf.data held in memory (tests, mutated copies)."""
        if not data:
            raise InputError(path, "empty file, not perf.data", offset=0)
        return cls._parse(path, lambda off, n: data[off : off + n], len(data))

    @classmethod
    def _parse(cls, path: str, read_at, size: int) -> PerfFile:
        head = read_at(0, FILE_HEADER.size)
        _check_file_header(path, head, size)
        _, _, attr_size, a_off, a_size, d_off, d_size, _, _, bitmap = FILE_HEADER.unpack_from(head)
        # bit n = u64[n // 64] >> (n % 64) & 1, i.e. byte n // 8, bit n % 8 (little endian)
        bits = {i for i in range(256) if bitmap[i // 8] >> (i % 8) & 1}
        _check_sections(path, size, attr_size, a_off, a_size, d_off, bits)
        warnings: list[str] = []
        data = Section(d_off, d_size)
        features: dict[int, Section] = {}
        if d_size == 0 and size > d_off:
            # perf record did not finish (killed): the header never got its data size, and the
            # features were never written. Read every record there is.
            data = Section(d_off, size - d_off)
            warnings.append(
                f"the header's data size is 0 (perf record did not finish?): reading records "
                f"up to the end of the file at offset {size}; no feature sections"
            )
            bits = set()
        elif d_off + d_size > size:
            data = Section(d_off, size - d_off)
            warnings.append(
                f"file truncated at offset {size} inside the data section (which should end at "
                f"{d_off + d_size}): reading the complete records before it; no feature sections"
            )
            bits = set()
        else:
            features = _feature_table(read_at, size, d_off + d_size, bits, warnings)
        attrs = _read_attrs(path, read_at, size, attr_size, Section(a_off, a_size))
        pf = cls(
            path, read_at, size, attr_size, Section(a_off, a_size), data, bits, features, attrs
        )
        pf.warnings = warnings
        pf._name_events()
        return pf

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> PerfFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- features ------------------------------------------------------------------------

    def feature(self, name: str) -> bytes | None:
        """The payload of feature *name* (a copy), or None when it is absent."""
        sec = self.features.get(FEAT[name])
        if sec is None:
            return None
        return self.read_at(sec.offset, sec.size)

    def feature_string(self, name: str) -> str | None:
        raw = self.feature(name)
        if raw is None or len(raw) < 4:
            return None
        n = _u32(raw, 0)
        if 4 + n > len(raw):
            self.warnings.append(f"feature {name}: string longer than its section; ignored")
            return None
        return _cstr(raw[4 : 4 + n])

    def feature_strings(self, name: str) -> list[str] | None:
        """A ``u32 n`` + n strings feature (CMDLINE)."""
        raw = self.feature(name)
        if raw is None or len(raw) < 4:
            return None
        n, off, out = _u32(raw, 0), 4, []
        for _ in range(min(n, len(raw) // 4)):
            if off + 4 > len(raw):
                break
            ln = _u32(raw, off)
            if off + 4 + ln > len(raw):
                break
            out.append(_cstr(raw[off + 4 : off + 4 + ln]))
            off += 4 + ln
        return out

    def missing_features(self) -> set[str]:
        return {name for bit, name in FEATURE_NAMES.items() if bit not in self.feature_bits}

    def clock_data(self) -> tuple[int, int, int] | None:
        """(clockid, tod_ns, clockid_ns) from CLOCK_DATA: one instant on both clocks."""
        raw = self.feature("CLOCK_DATA")
        if raw is None or len(raw) < 24:
            return None
        version, clockid, tod_ns, clk_ns = struct.unpack_from("<IIQQ", raw, 0)
        if version != 1:
            self.warnings.append(f"CLOCK_DATA version {version} (expected 1); ignored")
            return None
        return clockid, tod_ns, clk_ns

    def event_desc(self) -> dict[int, str]:
        """Event id -> name (``raw_syscalls:sys_enter``) from EVENT_DESC."""
        raw = self.feature("EVENT_DESC")
        out: dict[int, str] = {}
        if raw is None or len(raw) < 8:
            return out
        nr, sz = struct.unpack_from("<II", raw, 0)
        off = 8
        for _ in range(nr):
            if sz < ATTR_VER0_SIZE or off + sz + 8 > len(raw):
                break
            off += sz
            nr_ids, slen = struct.unpack_from("<II", raw, off)
            off += 8
            if off + slen + 8 * nr_ids > len(raw):
                break
            name = _cstr(raw[off : off + slen])
            off += slen
            for i in range(nr_ids):
                out[_u64(raw, off + 8 * i)] = name
            off += 8 * nr_ids
        return out

    def build_ids(self) -> list[tuple[int, bytes, str]]:
        """(pid, build-id bytes, filename) entries of the BUILD_ID feature."""
        raw = self.feature("BUILD_ID")
        out: list[tuple[int, bytes, str]] = []
        if raw is None:
            return out
        off, n = 0, len(raw)
        while off + 8 <= n:
            _type, misc, size = struct.unpack_from("<IHH", raw, off)
            if size < 8 + 4 + 24 or off + size > n:
                break
            pid = struct.unpack_from("<i", raw, off + 8)[0]
            bid = raw[off + 12 : off + 12 + 20]
            if misc & 0x8000:  # PERF_RECORD_MISC_BUILD_ID_SIZE: byte 20 holds the length
                bid = raw[off + 12 : off + 12 + min(raw[off + 12 + 20], 20)]
            else:
                bid = bid.rstrip(b"\x00") or bid
            out.append((pid, bid, _cstr(raw[off + 36 : off + size])))
            off += size
        return out

    def _name_events(self) -> None:
        names = self.event_desc()
        for a in self.attrs:
            a.name = next((names[i] for i in a.ids if i in names), a.name)


def _check_file_header(path: str, head: bytes, size: int) -> None:
    """The magic and the header size: InputError for what is not a perf.data (or is cut in
    its header), Unsupported for the kinds this reader does not decode."""
    if head[:8] == MAGIC_SWAPPED or head[:8] == MAGIC_V1[::-1]:
        raise Unsupported("other-endian (big-endian) perf.data")
    if head[:8] == MAGIC_V1:
        raise Unsupported("perf.data version 1 (PERFFILE magic)")
    if head[:8] != MAGIC:
        raise InputError(path, "not a perf.data file (no PERFILE2 magic)", offset=0)
    if size < 16:
        raise InputError(path, "truncated in the file header", offset=size)
    header_size = _u64(head, 8)
    if header_size == PIPE_HEADER_SIZE:
        raise Unsupported("pipe-mode perf.data (perf record -o -)")
    if size < FILE_HEADER.size:
        raise InputError(path, "truncated in the file header", offset=size)
    if header_size < FILE_HEADER.size:
        raise InputError(
            path, f"file header of {header_size} bytes (expected {FILE_HEADER.size})", offset=8
        )


def _check_sections(
    path: str, size: int, attr_size: int, a_off: int, a_size: int, d_off: int, bits: set[int]
) -> None:
    """The attrs and data sections lie in the file, and no feature asks for a mode this
    reader does not decode (directory format, compressed records)."""
    if not ATTR_VER0_SIZE + 16 <= attr_size <= MAX_ATTR_SIZE + 16:
        raise InputError(path, f"implausible attr entry size {attr_size}", offset=16)
    if a_size % attr_size or a_size == 0:
        raise InputError(
            path, f"attrs section of {a_size} bytes is not a multiple of {attr_size}", offset=32
        )
    if a_off < FILE_HEADER.size or a_off + a_size > size:
        raise InputError(
            path, f"attrs section [{a_off}, +{a_size}) lies outside the file", offset=24
        )
    if d_off < FILE_HEADER.size or d_off > size:
        raise InputError(path, f"data section offset {d_off} lies outside the file", offset=40)
    if 24 in bits:
        raise Unsupported("directory-format perf.data (perf record --threads)")
    if 27 in bits:
        raise Unsupported("compressed records (perf record -z)")


def _feature_table(
    read_at, size: int, at: int, bits: set[int], warnings: list[str]
) -> dict[int, Section]:
    """One {offset, size} per set bit (increasing bit order), just after the data."""
    out: dict[int, Section] = {}
    table = read_at(at, 16 * len(bits))
    outside = []
    for k, bit in enumerate(sorted(bits)):
        pos = 16 * k
        if pos + 16 > len(table):
            warnings.append(
                f"feature table truncated at offset {size}: features from "
                f"{FEATURE_NAMES.get(bit, bit)} on are missing"
            )
            break
        off, sz = struct.unpack_from("<QQ", table, pos)
        if off + sz > size or off < FILE_HEADER.size:
            outside.append(str(FEATURE_NAMES.get(bit, bit)))
            continue
        out[bit] = Section(off, sz)
    if outside:
        warnings.append(
            f"{len(outside)} feature section(s) lie outside the file (size {size}) and were "
            f"ignored: {' '.join(outside[:8])}{' ...' if len(outside) > 8 else ''} (feature "
            f"table at offset {at})"
        )
    return out


ATTR_FIELDS = struct.Struct("<IIQQQQQ")  # type, size, config, period, sample_type, read_fmt, flags


def _read_attrs(path: str, read_at, size: int, attr_size: int, sec: Section) -> list[EventAttr]:
    attrs = []
    buf = read_at(sec.offset, sec.size)
    for i in range(sec.size // attr_size):
        off = i * attr_size
        typ, asize, config, _period, stype, rfmt, flags = ATTR_FIELDS.unpack_from(buf, off)
        body = attr_size - 16
        if asize == 0:  # perf before attr.size existed
            asize = ATTR_VER0_SIZE
        if asize > body or asize < ATTR_VER0_SIZE:
            raise InputError(
                path, f"attr {i}: size {asize} does not fit its entry", offset=sec.offset + off + 4
            )

        def field_at(o: int, fmt: str, default: int = 0, _off=off, _asize=asize) -> int:
            n = struct.calcsize(fmt)
            return struct.unpack_from(fmt, buf, _off + o)[0] if o + n <= _asize else default

        ids_off, ids_size = struct.unpack_from("<QQ", buf, off + body)
        if ids_size % 8 or ids_off + ids_size > size:
            raise InputError(
                path,
                f"attr {i}: id array [{ids_off}, +{ids_size}) is outside the file",
                offset=sec.offset + off,
            )
        n_ids = ids_size // 8
        ids = list(struct.unpack_from(f"<{n_ids}Q", read_at(ids_off, ids_size))) if n_ids else []
        attrs.append(
            EventAttr(
                index=i,
                type=typ,
                size=asize,
                config=config,
                sample_type=stype,
                read_format=rfmt,
                flags=flags,
                branch_sample_type=field_at(72, "<Q"),
                sample_regs_user=field_at(80, "<Q"),
                sample_stack_user=field_at(88, "<I"),
                clockid=field_at(92, "<i"),
                sample_regs_intr=field_at(96, "<Q"),
                ids=ids,
                name=f"{'tracepoint' if typ == PERF_TYPE_TRACEPOINT else 'event'}:{typ}:{config}",
            )
        )
    return attrs
