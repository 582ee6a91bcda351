"""A run held to time and memory bounds: what the fuzz tests ask of every parser on every
mutant (no long hang, no allocation driven by a corrupt size field)."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def within(max_seconds: float, max_peak_bytes: int) -> Iterator[None]:
    """Run the block under tracemalloc and a clock, then assert both bounds. An exception
    from the block propagates unchanged (the bounds are not checked then)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.perf_counter() - t0 < max_seconds
    assert peak < max_peak_bytes, peak
