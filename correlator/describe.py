"""Records' structs said in words, for every reader of them (the summary, the fleet)."""

from __future__ import annotations


def waited_in(waker: dict) -> str | None:
    """What a waker was doing meanwhile, in words: the syscall of its longest wait, or its
    off-CPU state when that wait was outside a syscall (None: no wait recorded)."""
    lw = waker.get("longest_wait") or {}
    return lw.get("syscall") or (f"off-CPU ({lw['state']})" if lw else None)
