"""Raw reader: the 16-byte header, then top-level batches, streamed from a file.

Nothing here interprets events: a batch is (kind, gen, m, time, data, file offset). Sizes read
from the file are checked against the format's limits before anything is allocated, so a
corrupt size field can never make us read or allocate more than one maximal batch (64 KiB).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from .events import EV, KNOWN_VERSIONS, MAX_BATCH_SIZE, NEWEST, NEWEST_V1

HEADER_SIZE = 16
_HEADER = re.compile(rb"go 1\.(\d{1,3}) trace\x00+$")


class TraceFormatError(Exception):
    """Corrupt or unsupported trace bytes at a file offset (``parsers.errors.InputError``
    is made from it by the package entry point)."""

    def __init__(self, offset: int, message: str) -> None:
        self.offset = offset
        self.message = message
        super().__init__(f"offset {offset}: {message}")


class Truncated(Exception):
    """The file ended inside a batch: everything before ``offset`` is intact."""

    def __init__(self, offset: int, message: str) -> None:
        self.offset = offset
        self.message = message
        super().__init__(f"offset {offset}: {message}")


@dataclass(frozen=True)
class Header:
    version: int  # as written: go 1.NN
    read_as: int  # the known format we decode it with
    warning: str = ""


def read_header(f: BinaryIO) -> Header:
    raw = f.read(HEADER_SIZE)
    m = _HEADER.match(raw) if len(raw) == HEADER_SIZE else None
    if not m:
        if raw.startswith(b"go 1.") and len(raw) < HEADER_SIZE:
            raise Truncated(len(raw), "file ends inside the 16-byte header")
        raise TraceFormatError(0, f"not a Go execution trace (header {raw[:16]!r})")
    version = int(m.group(1))
    if version <= NEWEST_V1:
        raise TraceFormatError(
            0,
            f"Go 1.{version} trace format (Go 1.21 and older) is not supported: it records "
            "no OS thread ids, so it cannot be joined with perf; record with Go 1.22 or newer",
        )
    if version > NEWEST:
        return Header(
            version,
            NEWEST,
            f"trace format go 1.{version} is newer than the newest "
            f"known (go 1.{NEWEST}); reading it as go 1.{NEWEST}",
        )
    if version not in KNOWN_VERSIONS:  # e.g. a hypothetical 'go 1.24': read with the one below
        read_as = max(v for v in KNOWN_VERSIONS if v < version)
        return Header(
            version,
            read_as,
            f"trace format go 1.{version} was never released; reading it as go 1.{read_as}",
        )
    return Header(version, version)


@dataclass(frozen=True)
class Batch:
    kind: str  # "events" | "experimental" | "end-of-generation"
    gen: int
    m: int
    time: int  # trace-clock ticks at the start of the batch
    data: bytes
    offset: int  # file offset of the batch's first byte
    data_offset: int  # file offset of data[0]
    exp: int = 0  # experiment id for experimental batches


class _Source:
    """A file read in large blocks, with the current absolute offset."""

    def __init__(self, f: BinaryIO, offset: int, block: int = 1 << 20) -> None:
        self.f = f
        self.block = block
        self.buf = b""
        self.pos = 0
        self.base = offset  # file offset of buf[0]

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def _fill(self, need: int) -> bool:
        """Make at least *need* bytes available at pos; False at EOF."""
        while len(self.buf) - self.pos < need:
            more = self.f.read(max(self.block, need))
            if not more:
                return False
            self.base += self.pos
            self.buf = self.buf[self.pos :] + more
            self.pos = 0
        return True

    def at_eof(self) -> bool:
        return not self._fill(1)

    def byte(self) -> int:
        if not self._fill(1):
            raise Truncated(self.offset, "file ends inside a batch header")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def uvarint(self, what: str) -> int:
        start = self.offset
        result = shift = 0
        for _ in range(10):
            b = self.byte()
            result |= (b & 0x7F) << shift
            if b < 0x80:
                if result >= 1 << 64:
                    raise TraceFormatError(start, f"{what}: varint overflows 64 bits")
                return result
            shift += 7
        raise TraceFormatError(start, f"{what}: varint longer than 10 bytes")

    def take(self, n: int) -> bytes:
        if not self._fill(n):
            raise Truncated(self.offset, f"file ends inside a batch ({n} bytes of data expected)")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out


def read_batches(f: BinaryIO, header: Header) -> Iterator[Batch]:
    """Every top-level item after the header, in file order. Raises Truncated at a cut."""
    src = _Source(f, HEADER_SIZE)
    while not src.at_eof():
        offset = src.offset
        typ = src.byte()
        if typ == EV.EndOfGeneration and header.read_as >= 26:
            yield Batch("end-of-generation", 0, 0, 0, b"", offset, offset)
            continue
        exp = 0
        if typ == EV.ExperimentalBatch and header.read_as >= 23:
            kind = "experimental"
            exp = src.byte()
        elif typ == EV.EventBatch:
            kind = "events"
        else:
            raise TraceFormatError(offset, f"expected a batch, found byte 0x{typ:02x}")
        gen = src.uvarint("batch generation")
        m = src.uvarint("batch thread id")
        time = src.uvarint("batch timestamp")
        size = src.uvarint("batch size")
        if gen == 0:
            raise TraceFormatError(offset, "batch with generation 0")
        if size > MAX_BATCH_SIZE:
            raise TraceFormatError(
                offset, f"batch size {size} exceeds the format's maximum {MAX_BATCH_SIZE}"
            )
        data_offset = src.offset
        data = src.take(size)
        yield Batch(kind, gen, m, time, data, offset, data_offset, exp)


class VarintError(Exception):
    """A bad varint at *pos* (relative to the buffer tokenised)."""

    def __init__(self, pos: int, message: str) -> None:
        self.pos, self.message = pos, message


def varint_tokens(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets and values of every varint in *buf* (which ends on a varint end).

    Values are assembled byte position by byte position over the tokens still that long:
    most tokens are one or two bytes, so this touches each byte once, without per-byte
    64-bit temporaries.
    """
    idx = np.int32 if len(buf) < 1 << 31 else np.int64  # positions: half the memory of int64
    ends = np.flatnonzero(buf < 0x80).astype(idx)
    starts = np.empty_like(ends)
    if not len(ends):
        return starts, np.zeros(0, np.uint64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    length = (ends - starts + 1).astype(np.int8)
    if length.max() > 10:
        raise VarintError(int(starts[np.argmax(length > 10)]), "varint longer than 10 bytes")
    ten = np.flatnonzero(length == 10)
    if len(ten) and (buf[ends[ten]] > 1).any():
        raise VarintError(
            int(starts[ten[np.argmax(buf[ends[ten]] > 1)]]), "varint overflows 64 bits"
        )
    vals = (buf[starts] & 0x7F).astype(np.uint64)
    longer = np.flatnonzero(length > 1)
    k = 1
    while len(longer):
        vals[longer] |= (buf[starts[longer] + k] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
        k += 1
        longer = longer[length[longer] > k]
    return starts, vals
