"""Giving freed memory back to the OS between large steps, and keeping it within a loop.

numpy frees big temporaries, but glibc keeps freed heap pages mapped once its dynamic mmap
threshold has grown, so a process whose steps differ in shape would see its resident size
creep up to the sum of their peaks. ``malloc_trim(0)`` returns those pages between such
steps; it costs about a millisecond and is a no-op where glibc is not the allocator.

Not inside a loop whose rounds allocate alike (a trace's generations, a writer's chunks):
there the next round would fault every page back in. Streaming the bench Go trace to Parquet
with a trim per generation and per chunk took 245 000 page faults and 0.6 s of system time,
a fifth of the command; without them, and glibc set as ``settle_for_streaming`` sets it,
about 110 000 and 0.3 s, at the same peak (benchmarks/tables_go.py).
"""

from __future__ import annotations

import ctypes

try:
    _libc = ctypes.CDLL("libc.so.6")
    _trim, _mallopt = _libc.malloc_trim, _libc.mallopt
except (OSError, AttributeError):  # not glibc
    _trim = _mallopt = None
# glibc's malloc.h
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
STREAM_MMAP_THRESHOLD = 1 << 20
STREAM_TRIM_THRESHOLD = 4 << 20
FRAMES_MMAP_THRESHOLD = 4 << 20
FRAMES_TRIM_THRESHOLD = 16 << 20


def release_freed_memory() -> None:
    if _trim is not None:
        _trim(0)


def settle_for_streaming() -> bool:
    """glibc's malloc set for a process that streams: a parser whose rounds allocate alike
    and a Parquet writer thread that frees what the parser made. Call it before the threads
    start; returns whether glibc took every setting.

    - One arena for every thread (M_ARENA_MAX = 1): what one thread frees, the other reuses,
      instead of each arena keeping its own freed pages.
    - Blocks of STREAM_MMAP_THRESHOLD and more are mapped and unmapped whole, and the heap's
      free top is returned past STREAM_TRIM_THRESHOLD. glibc's own thresholds grow with the
      largest block freed (to 32 MiB) and keep more of a generation's freed pages: in our
      runs on the bench Go trace, 2-4 MiB more peak than these, for about 0.05 s less.
    """
    return _set(
        (_M_ARENA_MAX, 1),
        (_M_MMAP_THRESHOLD, STREAM_MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, STREAM_TRIM_THRESHOLD),
    )


def settle_for_large_frames() -> bool:
    """glibc's malloc set for a process that builds, joins and drops tables of millions of
    rows one step after another (``tracecorr report``); returns whether glibc took it.

    Blocks of FRAMES_MMAP_THRESHOLD and more are mapped and unmapped whole, and the heap's
    free top is returned past FRAMES_TRIM_THRESHOLD. glibc's own thresholds grow with the
    largest block freed (to 32 MiB), so the many 4-32 MiB columns of a step stayed in the
    heap once freed, where the next step could not always reuse them: on the bench capture
    the report peaked 45-50 MiB higher with them (`farm-bench`, 5 pairs), for 4 % less
    time. Only for the process itself: worker processes keep glibc's defaults.
    """
    return _set(
        (_M_MMAP_THRESHOLD, FRAMES_MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, FRAMES_TRIM_THRESHOLD)
    )


def _set(*settings: tuple[int, int]) -> bool:
    """mallopt each (parameter, value); whether glibc took them all (every one is tried)."""
    if _mallopt is None:
        return False
    return all([_mallopt(param, value) for param, value in settings])


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


#: the named policies a command starts with: what each process does with glibc's malloc
#: and Arrow's allocator (the functions above say why)
POLICIES = {
    # ``tracecorr report``: tables of millions of rows built and dropped step after step
    "report": (settle_for_large_frames,),
    # ``tracecorr tables`` on inputs written as read: a parser and a Parquet writer thread
    "tables-streaming": (prefer_arrow_system_allocator, settle_for_streaming),
}


def use(policy: str) -> bool:
    """Apply the named policy (see POLICIES) to this process; whether every setting took."""
    return all([apply() for apply in POLICIES[policy]])


def between_steps() -> None:
    """What the pipeline does after a step that dropped large temporaries (Step.release)."""
    release_freed_memory()
