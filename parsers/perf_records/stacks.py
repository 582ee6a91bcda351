"""Interned stacks: global ids (1, 2, ...; 0 = no stack) for distinct frame sequences,
leaf first, as both perf readers hand them to ``build_tables``."""

from __future__ import annotations

from ..columns import Interner

KERNEL_SPACE = 0xFFFF800000000000

Frame = tuple[int | None, str, str | None, str]  # (address, function, dso, frame_kind)


def frame_kind(ip: int | None, dso: str | None) -> str:
    """kernel for kallsyms / vmlinux / modules (or an unresolved kernel-space address)."""
    if dso is not None and (dso.startswith("[kernel") or dso.endswith(".ko")):
        return "kernel"
    if dso in (None, "[unknown]") and ip is not None and ip >= KERNEL_SPACE:
        return "kernel"
    return "c"


class StackTable:
    """Global stack ids for distinct frame sequences (``intern_frames``); the text parser's
    subclass interns callchain blocks of text too."""

    def __init__(self) -> None:
        self.stacks: Interner[tuple[Frame, ...]] = Interner(first=1)
        self.bad_frame_lines = 0  # text lines in a callchain block that are not frames

    @property
    def frames(self) -> list[tuple[Frame, ...]]:
        """The frames of stack id i at index i - 1."""
        return self.stacks.values

    def intern_frames(self, frames: tuple[Frame, ...]) -> int:
        return self.stacks.id(frames) if frames else 0
