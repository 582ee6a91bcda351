"""Callchain blocks -> interned stacks (frame-pointer or DWARF, kernel and user frames).

A block is the text after a record line: TAB-indented frame lines, leaf first,

    \\tffffffff821f8298 __schedule+0x618 ([kernel.kallsyms])
    \\t           f82ec read+0x4c (/usr/lib/x86_64-linux-gnu/libc.so.6)
    \\t    7f406ecd98a8 [unknown] ([unknown])
    \\t          10a974 __libc_recv (/usr/lib/x86_64-linux-gnu/libc.so.6)  (no symoff)
    \\t          10a974 __libc_recv                                       (-F ip,sym: no dso)

Each distinct block is parsed once; stacks are keyed by their frames, so the same callchain
printed with or without offsets or trailing blank lines is one stack.
"""

from __future__ import annotations

import re

from ..perf_records.stacks import Frame, StackTable, frame_kind

_OFFSET = re.compile(r"\+0x[0-9a-fA-F]+$")


def parse_frame(line: str) -> tuple[int | None, str, str | None] | None:
    """(address, function, dso) of one frame line, or None if it is not one."""
    body = line.strip()
    if not body:
        return None
    ip_text, _, rest = body.partition(" ")
    try:
        ip = int(ip_text, 16)
    except ValueError:
        return None
    if not 0 <= ip < 1 << 64:  # a corrupt address: not a frame
        return None
    rest = rest.strip()
    dso = None
    if rest.endswith(")"):
        i = rest.rfind(" (")
        if i >= 0:
            rest, dso = rest[:i].rstrip(), rest[i + 2 : -1]
        elif rest.startswith("("):  # no symbol at all: "(dso)"
            rest, dso = "", rest[1:-1]
    func = _OFFSET.sub("", rest) or "[unknown]"
    return ip, func, dso


class TextStacks(StackTable):
    """Callchain blocks of ``perf script`` text interned by their bytes first (a block
    repeats millions of times), then by their frames."""

    def __init__(self) -> None:
        super().__init__()
        self._blocks: dict[bytes, int] = {}  # block text -> id, across chunks
        # frame line -> frame (None: not a frame line): distinct blocks share most lines
        self._lines: dict[bytes, Frame | None] = {}

    def intern_block(self, block: bytes) -> int:
        sid = self._blocks.get(block)
        if sid is None:
            sid = self._blocks[block] = self.intern_frames(self._parse_block(block))
        return sid

    def _parse_block(self, block: bytes) -> tuple[Frame, ...]:
        frames = []
        lines = self._lines
        for raw in block.split(b"\n"):
            if not raw.startswith(b"\t"):
                continue
            if raw in lines:
                frame = lines[raw]
            else:
                frame = lines[raw] = _frame(raw)
            if frame is None:
                self.bad_frame_lines += 1
                continue
            frames.append(frame)
        return tuple(frames)


def _frame(raw: bytes) -> Frame | None:
    parsed = parse_frame(raw.decode("utf-8", "replace"))
    if parsed is None:
        return None
    ip, func, dso = parsed
    if dso == "inlined":  # perf --inline: a frame inlined into the next one
        return (ip, func, None, "c")
    return (ip, func, dso, frame_kind(ip, dso))
