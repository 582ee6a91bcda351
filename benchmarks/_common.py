"""Helpers for the benchmark scripts: the shared large capture, and whole-process timing.

Every figure is a ratio against an anchor tool measured in the same run on the same file,
and every command is timed as users run it: a whole process (start-up, imports, parse,
write), best of a few runs, with its peak memory: the larger of its ru_maxrss (wait4) and
the sampled sum over its processes plus the shared memory it grew (files in /dev/shm).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("TRACECORR_CACHE", Path.home() / ".cache" / "tracecorr"))
BENCH_DIR = CACHE / "bench"
#: the installed command, as users run it
TRACECORR = str(Path(sys.executable).parent / "tracecorr")


#: Runs a command and reports its peak RSS. A child's ru_maxrss includes what it had before
#: exec, which for a child forked from this (large) Python is this Python's own size; run
#: through this small trampoline, the measured command is forked from a ~9 MB process.
_TRAMPOLINE = """import os, sys
out = int(sys.argv[1])
pid = os.fork()
if pid == 0:
    os.close(out)
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
os.write(out, str(usage.ru_maxrss).encode())
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _own_rss(pid: int) -> int:
    """Resident bytes of *pid* that are its own (anonymous and file pages): shared-memory
    pages are counted once, system-wide, by ``_shmem``."""
    kib = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("RssAnon:", "RssFile:")):
            kib += int(line.split()[1])
    return kib * 1024


def _shmem() -> int:
    """Bytes in shared memory (tmpfs such as /dev/shm, and shared mappings) system-wide:
    tables a worker shipped through /dev/shm occupy memory before and while the parent maps
    them, without being in any process's RSS until touched."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Shmem:"):
            return int(line.split()[1]) * 1024
    return 0


def _tree_rss(trampoline: int) -> int:
    """Resident bytes of the measured command and all its descendants now (0 once gone):
    the trampoline's descendants, not the trampoline itself (it is not the user's command)."""
    total = 0
    try:
        todo = _children(trampoline)
    except (OSError, ValueError):
        return 0
    while todo:
        pid = todo.pop()
        try:
            total += _own_rss(pid)
            todo += _children(pid)
        except (OSError, ValueError):
            continue
    return total


class _TreeSampler(threading.Thread):
    """Peak of the summed RSS of a process tree, sampled every 10 ms: a command whose worker
    processes run at the same time uses their sum, which no single ru_maxrss shows. Shared
    memory is added as the growth of the system's Shmem since the start (run benchmarks on
    an otherwise quiet machine)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        shm_before = _shmem()
        while not self.done.wait(0.01):
            shm = max(0, _shmem() - shm_before)
            self.peak = max(self.peak, _tree_rss(self.pid) + shm)


def run_measured(
    argv: list[str], env: dict | None = None, stdout=subprocess.DEVNULL, repeat: int = 3
) -> tuple[float, int]:
    """Best wall time over *repeat* runs and the peak RSS (bytes) of the command: the larger
    of its own ru_maxrss and the sampled sum over it and its child processes."""
    best, peak = float("inf"), 0
    for _ in range(repeat):
        r, w = os.pipe()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", _TRAMPOLINE, str(w), *argv],
            env=env,
            stdout=stdout,
            stderr=subprocess.PIPE,
            pass_fds=(w,),
        )
        os.close(w)
        sampler = _TreeSampler(proc.pid)
        sampler.start()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        code = proc.wait()
        elapsed = time.perf_counter() - t0
        sampler.done.set()
        sampler.join()
        maxrss_kib = int(os.read(r, 64) or b"0")
        os.close(r)
        if code != 0:
            raise RuntimeError(f"{argv[:3]} exited {code}: {err[-1000:]}")
        best = min(best, elapsed)
        peak = max(peak, maxrss_kib * 1024, sampler.peak)
    return best, peak


def python_floor_rss(imports: str) -> int:
    """Peak RSS of a Python that only imports *imports* (the interpreter's own floor)."""
    _, rss = run_measured([sys.executable, "-c", imports], repeat=1)
    return rss


def mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def bench_capture(goroutines: int = 8, commands: int = 20_000, dwarf: bool = False) -> Path:
    """The large capture (made once, cached): the Go + cgo + hiredis workload, no slow calls
    or decoys, recorded by runtime/trace and `perf record -k CLOCK_MONOTONIC` with our events
    and frame-pointer (or DWARF) callchains; its perf.data is also printed as text."""
    sys.path.insert(0, str(ROOT))
    from sample_traces.capture import GoOptions, capture_go

    out = BENCH_DIR / f"go-perf-{goroutines}x{commands}{'-dwarf' if dwarf else ''}"
    if not (out / "capture.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        print(f"recording {goroutines} x {commands} hiredis commands under perf ...", flush=True)
        capture_go(
            out,
            GoOptions(
                goroutines=goroutines,
                commands=commands,
                slow_every=0,
                decoy_every=0,
                dwarf=dwarf,
            ),
        )
    return out


__all__ = [
    "BENCH_DIR",
    "CACHE",
    "ROOT",
    "TRACECORR",
    "bench_capture",
    "mib",
    "python_floor_rss",
    "run_measured",
]
