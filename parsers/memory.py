"""Giving freed memory back to the OS between large steps.

numpy frees big temporaries, but glibc keeps freed heap pages mapped once its dynamic mmap
threshold has grown, so a parser that works generation by generation would still see its
resident size creep up to the sum of its peaks. ``malloc_trim(0)`` returns those pages; it
costs about a millisecond and is a no-op where glibc is not the allocator.
"""

from __future__ import annotations

import ctypes

try:
    _trim = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc
    _trim = None


def release_freed_memory() -> None:
    if _trim is not None:
        _trim(0)
