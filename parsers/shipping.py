"""Parsed tables from a worker process to its parent through a file in shared memory.

Sent the ordinary way, a worker's tables (a Go trace's: three million slices, ~180 MB of
columns) are pickled into one bytes object in the worker, written through a pipe, read back
piece by piece into another bytes object in the parent and unpickled there into a third
copy, by the executor's thread, which competes for the GIL with the parent's own parsing:
about half a second, with the parent holding the data twice for a while.

Instead the worker pickles with protocol 5, whose out-of-band buffers are the columns'
memory, and writes those buffers to one file under /dev/shm; the parent maps the file
copy-on-write (the arrays stay writable, as unpickled ones are) and unpickles around the
mapping: no copy and no pipe for the data, and the file is unlinked as soon as it is
mapped. ``ship_made`` drops the object once pickled, so each column is freed in the worker
as soon as it is written: the worker and the file never hold the tables twice over.
Without a writable /dev/shm, or when writing fails (a full tmpfs), the tables travel the
ordinary way.

A file outlives its reader only if the parent dies between the worker's write and its own
read (killed, or interrupted while waiting). Each file's name carries the parent's pid, and
``sweep`` (run before every parallel parse) removes those whose parent is gone, so memory
lost that way comes back on the next run.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .memory import release_freed_memory

SHM_DIR = "/dev/shm"
PREFIX, SUFFIX = "tracecorr-", ".tables"  # tracecorr-<parent pid>-<random>.tables
#: other files a parent keeps there while its workers run (perf_data/pieces.py's claims)
SWEPT_SUFFIXES = (SUFFIX, ".claims")
ALIGN = 64  # each buffer starts on a cache line: aligned arrays


@dataclass
class Shipped:
    """A pickled object whose buffers wait in the file at *path*."""

    path: str
    head: bytes  # the pickle, without the buffers
    spans: list[tuple[int, int]]  # (offset, length) of each buffer in the file


def shm_usable() -> bool:
    """Whether files can be kept in shared memory (a writable /dev/shm)."""
    return os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK)


def ship(obj: Any) -> Any:
    """What a worker returns for *obj*: a Shipped, or *obj* itself where shared memory is
    not available (or writing failed)."""
    return ship_made(lambda: obj)


def ship_made(make: Callable[[], Any]) -> Any:
    """``ship(make())``, without holding the object and its copy in shared memory at once:
    once pickled, the object is dropped, so its buffers (the columns) are owned by the
    pickle alone and each is freed as soon as it is written. Should writing fail, the
    object is made again and returned as it is."""
    if not shm_usable():
        return make()
    buffers: list[pickle.PickleBuffer | None] = []
    box = [make()]
    head = pickle.dumps(box[0], protocol=5, buffer_callback=buffers.append)
    box.clear()
    fd, path = tempfile.mkstemp(prefix=f"{PREFIX}{os.getppid()}-", suffix=SUFFIX, dir=SHM_DIR)
    try:
        spans = _write(fd, buffers)
    except (OSError, BufferError):
        os.unlink(path)
        buffers.clear()
        return make()
    return Shipped(path, head, spans)


#: While shipping, freed memory is handed back to the OS every this many bytes.
_TRIM_EVERY = 16 << 20


def _write(fd: int, buffers: list[pickle.PickleBuffer | None]) -> list[tuple[int, int]]:
    """Write the buffers, each released once written (its memory freed if the pickle was
    its last owner)."""
    spans, pos, freed = [], 0, 0
    with os.fdopen(fd, "wb") as f:
        for i, b in enumerate(buffers):
            assert b is not None
            raw = b.raw()
            pad = -pos % ALIGN
            f.write(b"\0" * pad)
            pos += pad
            f.write(raw)
            spans.append((pos, raw.nbytes))
            pos += raw.nbytes
            freed += raw.nbytes
            raw.release()
            b.release()
            buffers[i] = None  # the column's last owner, when the object was dropped
            if freed >= _TRIM_EVERY:
                release_freed_memory()
                freed = 0
    release_freed_memory()
    return spans


def unship(item: Any) -> Any:
    """The object a worker shipped (anything else is returned as it is)."""
    if not isinstance(item, Shipped):
        return item
    try:
        with open(item.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) if size else b""
    finally:
        os.unlink(item.path)
    view = memoryview(data)
    return pickle.loads(item.head, buffers=[view[a : a + n] for a, n in item.spans])


def discard(item: Any) -> None:
    """Remove the file of a Shipped that will not be unshipped (nothing for anything else)."""
    if isinstance(item, Shipped):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(item.path)


def sweep() -> int:
    """Remove shipped files left by parents that no longer run; how many were removed."""
    removed = 0
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return 0
    for name in names:
        if not (name.startswith(PREFIX) and name.endswith(SWEPT_SUFFIXES)):
            continue
        pid = name[len(PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(SHM_DIR, name))
                removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
