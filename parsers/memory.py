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


def prefer_arrow_system_allocator() -> bool:
    """Make Arrow's C++ default allocator the system one, for a process that streams tables
    to Parquet. Must run before pyarrow is imported (the library reads the setting once);
    returns whether it could, and a user's own ARROW_DEFAULT_MEMORY_POOL wins.

    Why: Arrow's default (mimalloc) keeps the pages it frees, and the Parquet writer
    allocates through it whatever ``pyarrow.set_memory_pool`` says; streaming a 14 MB Go
    trace left 20 MB resident there (benchmarks/tables_go.py). Not the default everywhere:
    reading perf script text with Arrow's CSV reader is 10 % slower on the system allocator.
    """
    import os
    import sys

    if "pyarrow" in sys.modules:
        return False
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    return True
