"""A minimal, independent walk over a perf.data's records, for building corrupt variants of
real files in tests (no code shared with the reader under test)."""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass
class Rec:
    offset: int
    type: int
    misc: int
    size: int


def data_section(blob: bytes) -> tuple[int, int]:
    """(offset, size) of the data section from the file header."""
    return struct.unpack_from("<QQ", blob, 40)


def records(blob: bytes) -> list[Rec]:
    off, size = data_section(blob)
    end = off + size
    out = []
    while off + 8 <= end:
        typ, misc, sz = struct.unpack_from("<IHH", blob, off)
        if sz < 8:
            break
        out.append(Rec(off, typ, misc, sz))
        off += sz
    return out
