"""`perf script` text -> per-record columns, in large chunks, with numpy and Arrow kernels.

The text is read in chunks cut at record boundaries (a line that does not start with a TAB:
only a TAB starts a callchain frame line). In each chunk numpy finds the lines and classifies
them by their first byte; the record lines and the callchain blocks that follow them are
exposed to Arrow as zero-copy binary arrays over the chunk; one RE2 pattern (Arrow's
``extract_regex``) splits every record line into fields, and callchain blocks are
dictionary-encoded, so each distinct callchain is parsed once however often it occurs.

Column widths are not fixed (comm is padded only without callchains, pid/tid widths differ
between perf versions, the event name is right-aligned to the longest one), so the pattern
anchors on what is certain: ``[comm] [pid/]tid [[cpu]] [tod] secs.frac: [period] event: ...``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CHUNK_BYTES = 32 << 20
TAB, NL, HASH = 9, 10, 35

#: One record line. Groups left empty by a layout come back as b"". (A greedy payload is
#: about 20 % faster in RE2 than a lazy one followed by optional trailing space.) Numbers are
#: bounded to what fits their column (a corrupt 30-digit tid is a bad line, not an overflow).
RECORD_PATTERN = (
    r"^\s*(?:(?P<comm>.*?)\s+)?(?:(?P<pid>-?\d{1,10})/)?(?P<tid>-?\d{1,10})\s+"
    r"(?:\[(?P<cpu>\d{1,6})\]\s+)?"
    r"(?:(?P<tod>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s+)?(?P<sec>\d{1,12})\.(?P<frac>\d{1,9}):\s*"
    r"(?:(?P<period>\d+)\s+)?(?:(?P<rec>PERF_RECORD_\w+)(?P<recrest>.*)|"
    r"(?P<event>[^\s:]\S*?):(?:\s+(?P<payload>.*))?)$"
)


@dataclass
class Chunk:
    """The records of one chunk: Arrow arrays, one element per record line."""

    fields: pa.StructArray  # RECORD_PATTERN groups; null where the line did not match
    callchains: pa.DictionaryArray  # the block after each record (frames, blank lines)
    line_numbers: np.ndarray  # 1-based line number of each record line
    header: list[str] = field(default_factory=list)  # '#' lines (the --header block)
    n_lines: int = 0


def read_chunks(f: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> Iterator[memoryview]:
    """The text in pieces of about *chunk_bytes*, each cut just before a record line.

    Each piece is read straight into a fresh buffer (readinto, after the previous piece's
    unfinished tail), so the bytes are copied once; pieces are zero-copy views of it.
    """
    carry = b""
    while True:
        buf = bytearray(len(carry) + chunk_bytes)
        buf[: len(carry)] = carry
        got = f.readinto(memoryview(buf)[len(carry) :])
        if not got:
            if carry:
                yield memoryview(bytes(carry))
            return
        size = len(carry) + got
        view = memoryview(buf)[:size]
        cut = _last_record_start(buf, size)
        if cut <= 0:
            carry = bytes(view)
            continue
        yield view[:cut]
        carry = bytes(view[cut:])


def split_chunks(f: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> Iterator[Chunk]:
    """Chunks split into records, the next one prepared on a second thread while the caller
    works on the current one (numpy and Arrow release the GIL in their kernels)."""
    from concurrent.futures import ThreadPoolExecutor

    lines_before = 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for data in read_chunks(f, chunk_bytes):
            future = pool.submit(split_chunk, data)
            if pending is not None:
                chunk = pending.result()
                chunk.line_numbers += lines_before
                lines_before += chunk.n_lines
                yield chunk
            pending = future
        if pending is not None:
            chunk = pending.result()
            chunk.line_numbers += lines_before
            yield chunk


def _last_record_start(buf: bytearray, size: int) -> int:
    """Offset of the last line start (before the final, maybe partial, line) that is not
    a frame line; 0 if none."""
    end = buf.rfind(b"\n", 0, size)  # the final line may be partial: never cut after it
    while end > 0:
        i = buf.rfind(b"\n", 0, end)
        if i < 0:
            return 0
        if buf[i + 1] != TAB:
            return i + 1
        end = i
    return 0


def split_chunk(data: memoryview) -> Chunk:
    """Records of one chunk; line numbers are counted from the chunk's start."""
    arr = np.frombuffer(data, np.uint8)
    nl = np.flatnonzero(arr == NL)
    n_lines = len(nl)
    if not len(nl) or nl[-1] != len(arr) - 1:
        nl = np.append(nl, len(arr))  # last line without its newline
    starts = np.empty_like(nl)
    starts[0] = 0
    starts[1:] = nl[:-1] + 1
    first = arr[np.minimum(starts, len(arr) - 1)] if len(arr) else starts
    blank = starts == nl
    comment = (first == HASH) & ~blank
    record = ~blank & ~comment & (first != TAB)
    ri = np.flatnonzero(record)
    header = [
        bytes(data[s:e]).decode("utf-8", "replace")
        for s, e in zip(starts[comment].tolist(), nl[comment].tolist(), strict=True)
    ]
    # alternating segments [record line][block after it], contiguous over the chunk
    n = len(ri)
    idx_type = np.int32 if len(data) < 1 << 31 else np.int64
    offsets = np.empty(2 * n + 1, idx_type)
    offsets[0:-1:2] = starts[ri]
    offsets[1:-1:2] = nl[ri]
    offsets[-1] = len(data)
    typ = pa.binary() if idx_type is np.int32 else pa.large_binary()
    segs = pa.Array.from_buffers(typ, 2 * n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    lines = segs.take(pa.array(np.arange(0, 2 * n, 2)))
    blocks = segs.take(pa.array(np.arange(1, 2 * n, 2)))
    return Chunk(
        fields=pc.extract_regex(lines, RECORD_PATTERN),
        callchains=pc.dictionary_encode(blocks),
        line_numbers=ri + 1,
        header=header,
        n_lines=n_lines,
    )
