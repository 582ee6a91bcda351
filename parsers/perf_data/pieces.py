"""The data section decoded by several processes at once, exactly as one reader would.

Records are a chain: each header's size says where the next record starts, so nobody can
start in the middle of the section without knowing where a record starts there. This module
guesses, and checks every guess by reading:

- ``plan`` cuts the section into pieces of about ``PIECE_BYTES``. Each cut is a word that
  starts a run of chained headers (``cut_at``: the word's size leads to another plausible
  header, and so on for ``RUN`` records). Inside a record, such a run is most unlikely, but
  nothing here relies on that.
- Pieces are handed out once each (``Claims``): the parent reads from the front, helpers
  (worker processes) from the back, so the split follows how fast each of them goes, and
  neither waits for a share it was given in advance.
- A piece counts only if the reading before it, begun at a start known to be a record's,
  ended exactly at its cut: then a record starts there, so the piece was read from a real
  record start. The first piece starts at the section's start, so this holds piece by
  piece. A wrong cut costs time, never records: at the first piece that does not join,
  the parent reads on, in order, from the last record it knows starts, and what the
  helpers read after that point is dropped.

Merging (``Decoded.extend``) renumbers what a piece's own reader numbered from zero (record
indices, FINISHED_ROUND counts, callchain ids, syscall-name codes), so the result is the
one reader's, column for column; damage stops reading where one reader would have
stopped. The helpers' pieces come back through shared memory (``shipping``). A helper
imports numpy, not pandas (the package's ``__init__`` is lazy for that reason).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..shipping import PREFIX, SHM_DIR, SWEPT_SUFFIXES, shm_usable
from . import file as F
from .records import CHUNK_BYTES, DataReader, Decoded, header_candidates
from .tracing import event_formats

#: Below this many bytes of records, a helper's start-up (a fresh interpreter with numpy,
#: ~0.15 s of CPU) buys too little: the parent decodes ~300 MB a second.
SPLIT_MIN_BYTES = 64 << 20
PIECE_BYTES = 16 << 20  # small enough that the last piece taken leaves no one idle long
MAX_PIECES = 256
CUT_WINDOW = 256 << 10  # bytes scanned for a cut
RUN = 32  # chained headers that make a cut
MAX_TRIES = 4096  # candidate headers tried per cut before giving up on it
CLAIMS_SUFFIX = SWEPT_SUFFIXES[1]  # so that shipping.sweep removes one a dead parent left


class Claims:
    """Pieces 0 .. n-1, each handed out once: from the front to the parent, from the back to
    helpers. Two counters (next front, end of what the back has not taken) in a 16-byte
    file that every process locks (flock) while taking one; ~20 us a piece."""

    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def create(cls, n: int) -> Claims:
        where = SHM_DIR if shm_usable() else None
        fd, path = tempfile.mkstemp(
            prefix=f"{PREFIX}{os.getpid()}-", suffix=CLAIMS_SUFFIX, dir=where
        )
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<qq", 0, n))
        return cls(path)

    def take(self, front: bool) -> int | None:
        """The next piece from the front (or the back); None when none is left."""
        return self._update(lambda lo, hi: (lo + 1, hi, lo) if front else (lo, hi - 1, hi - 1))

    def close_front(self) -> int | None:
        """Take no more: the pieces from the returned index on were taken from the back
        (None: the claims file is gone)."""
        return self._update(lambda lo, hi: (hi, hi, hi), empty_too=True)

    def _update(self, step: Callable, empty_too: bool = False):
        try:
            f = open(self.path, "r+b")  # noqa: SIM115 (closed below, after the lock)
        except FileNotFoundError:  # the parent is done with them
            return None
        with f:
            fcntl.flock(f, fcntl.LOCK_EX)
            lo, hi = struct.unpack("<qq", f.read(16))
            if lo >= hi and not empty_too:
                return None
            lo, hi, got = step(lo, hi)
            f.seek(0)
            f.write(struct.pack("<qq", lo, hi))
            return got

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


@dataclass
class Piece:
    """What a helper read of piece *index*: the records from its cut (``dec``) and where its
    reading stopped (``end``: the next cut when a record ends there). ``dec`` is None when
    the helper could not read it, and *problem* says why (for whoever debugs: the parent
    reads the piece itself and meets the same error in order)."""

    index: int
    dec: Decoded | None
    end: int
    problem: str | None = None


@dataclass
class Plan:
    """The cuts of one perf.data's data section (piece j is ``cuts[j]`` .. ``cuts[j+1]``;
    the first is the section's start, the last its end) and the claims file."""

    path: str
    cuts: list[int]
    claims: str
    chunk_bytes: int = CHUNK_BYTES
    all_chains: bool = False  # as the parent's reader (DataReader.all_chains)

    @property
    def n(self) -> int:
        return len(self.cuts) - 1

    def help(self, keep: Callable[[Piece], Any] = lambda p: p) -> list:
        """A helper's part: pieces taken from the back until none is left, each passed to
        *keep* as soon as it is read (to ship it to the parent)."""
        return read_from_back(self, keep)

    def remove(self) -> None:
        Claims(self.claims).remove()


def plan(
    path: str | Path,
    helpers: int,
    piece_bytes: int | None = None,
    min_bytes: int | None = None,
) -> Plan | None:
    """Cuts for reading *path* with *helpers* other processes, in pieces of about
    *piece_bytes* (``PIECE_BYTES``); None when it is not worth it (no helper, or fewer than
    *min_bytes* of records: ``SPLIT_MIN_BYTES``) or not possible (a file the native reader
    refuses: the parse says why)."""
    piece_bytes = PIECE_BYTES if piece_bytes is None else piece_bytes
    min_bytes = SPLIT_MIN_BYTES if min_bytes is None else min_bytes
    if helpers < 1:
        return None
    try:
        pf = F.PerfFile.open(str(path))
    except (F.Unsupported, InputError, OSError):
        return None
    with pf:
        sec = pf.data
        size = sec.end - sec.offset
        if size < max(min_bytes, 2 * 8):
            return None
        n = max(2, min(MAX_PIECES, size // max(piece_bytes, 8)))
        cuts = [sec.offset]
        for j in range(1, n):
            cut = cut_at(pf, sec.offset + size * j // n)
            if cut is not None and cut > cuts[-1]:
                cuts.append(cut)
        cuts.append(sec.end)
    if len(cuts) < 3:
        return None
    try:
        claims = Claims.create(len(cuts) - 1)
    except OSError:  # nowhere to write 16 bytes: read alone
        return None
    return Plan(str(path), cuts, claims.path)


def cut_at(pf: F.PerfFile, at: int) -> int | None:
    """The first offset at or after *at* (on the 8-byte grid of the data section) where
    ``RUN`` plausible headers follow each other by their sizes, or reach the end of the
    window scanned; None if there is none in ``CUT_WINDOW`` bytes."""
    sec = pf.data
    at = sec.offset + -(-(at - sec.offset) // 8) * 8
    data = pf.read_at(at, min(CUT_WINDOW, sec.end - at))
    n_words = len(data) // 8
    cand, size = header_candidates(data)
    if not len(cand):
        return None
    size_at = np.zeros(n_words, np.int64)
    size_at[cand] = size
    sizes = size_at.tolist()  # 0 where no plausible header is
    for c in cand[:MAX_TRIES].tolist():
        k, links = c, 0
        while links < RUN:
            k += sizes[k]
            if k >= n_words:
                break  # ran off the window with every link plausible
            if not sizes[k]:
                links = -1
                break
            links += 1
        if links >= 1:
            return at + 8 * c
    return None


def read_from_back(plan: Plan, keep: Callable[[Piece], Any] = lambda p: p) -> list:
    """Decode pieces taken from the back until none is left; what *keep* makes of each."""
    claims = Claims(plan.claims)
    j = claims.take(front=False)
    if j is None:
        return []
    out: list = []
    with F.PerfFile.open(plan.path) as pf:
        formats, long_size, _ = event_formats(pf)
        while j is not None:
            out.append(keep(read_piece(plan, pf, formats, long_size, j)))
            j = claims.take(front=False)
    return out


def read_piece(plan: Plan, pf: F.PerfFile, formats: dict, long_size: int, j: int) -> Piece:
    """Piece *j*, read with a reader of its own from its cut. One that fails to decode (an
    error the parent would meet too, and raise or report) comes without records: the parent
    reads it itself."""
    reader = DataReader(pf, formats, long_size, plan.chunk_bytes, plan.all_chains)
    try:
        end = reader.read_range(plan.cuts[j], plan.cuts[j + 1])
    except Exception as exc:  # noqa: BLE001 (the parent meets it again, in order)
        return Piece(j, None, plan.cuts[j], f"{type(exc).__name__}: {exc}")
    return Piece(j, reader.out, end)


def read_split(
    reader: DataReader, plan: Plan, helped: Callable[[range], Mapping[int, Piece]]
) -> Decoded:
    """The parent's part, and the joining: read pieces from the front with *reader*, then
    join the helpers' (``helped(indices)`` waits for them) while each starts where the
    reading before it ended, and read on in order from the first that does not."""
    claims = Claims(plan.claims)
    out = reader.out
    pos = plan.cuts[0]
    while (j := claims.take(front=True)) is not None:
        pos = reader.read_range(pos, plan.cuts[j + 1])
        if out.damage is not None:
            break
    first_theirs = claims.close_front()
    if first_theirs is None:  # the claims file is gone: read everything here
        first_theirs = plan.n
    # (when the parent's reading did not end at the helpers' first cut, none of their
    # pieces can join: no waiting for them then)
    if out.damage is None and pos == plan.cuts[first_theirs] and first_theirs < plan.n:
        pieces = helped(range(first_theirs, plan.n))
        for j in range(first_theirs, plan.n):
            p = pieces.get(j)
            if p is None or p.dec is None or pos != plan.cuts[j] or out.damage is not None:
                break
            out.extend(p.dec)
            pos = p.end
    if out.damage is None and pos < plan.cuts[-1]:
        reader.read_range(pos, plan.cuts[-1])  # a cut that was no record start: read on
    return out.seal()
