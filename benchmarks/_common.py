"""Helpers for the benchmark scripts: timing and peak memory of a child process."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("TRACECORR_CACHE", Path.home() / ".cache" / "tracecorr"))
BENCH_DIR = CACHE / "bench"


def run_measured(
    argv: list[str], env: dict | None = None, stdout=subprocess.DEVNULL, repeat: int = 3
) -> tuple[float, int]:
    """Best wall time over *repeat* runs and the peak RSS (bytes) of the child, via wait4."""
    best, peak = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise RuntimeError(f"{argv[:3]} exited {code}: {err[-1000:]}")
        best = min(best, elapsed)
        peak = max(peak, usage.ru_maxrss * 1024)
    return best, peak


def python_baseline_rss(imports: str) -> int:
    """Peak RSS of a Python that only imports *imports* (the interpreter's own floor)."""
    _, rss = run_measured([sys.executable, "-c", imports], repeat=1)
    return rss


def mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


__all__ = ["BENCH_DIR", "CACHE", "ROOT", "mib", "python_baseline_rss", "resource", "run_measured"]
