"""`tracecorr tables` on a large Go trace, against `go tool trace -pprof=syscall`.

Both as users run them, whole processes on the same trace (the Go + cgo + hiredis workload,
8 goroutines x 20 000 commands; made once and cached in $TRACECORR_CACHE/bench):

    time ratio  = `tracecorr tables go.trace -o DIR` / `go tool trace -pprof=syscall go.trace`
    RSS ratio   = peak RSS of `tracecorr tables` / trace file size
                  (also above the interpreter's own floor: Python + numpy + pyarrow)

Goals (issue 12): time ratio <= 1.0, RSS ratio <= 10. Usage:
    ~/.cache/tracecorr/venv/bin/python benchmarks/tables_go.py [--goroutines N --commands N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (  # noqa: E402
    TRACECORR,
    bench_capture,
    mib,
    python_floor_rss,
    run_measured,
)
from sample_traces.capture import tools  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--goroutines", type=int, default=8)
    ap.add_argument("--commands", type=int, default=20_000)
    a = ap.parse_args()
    trace = bench_capture(a.goroutines, a.commands) / "go.trace"
    size = trace.stat().st_size
    version = tools.DEFAULT_GO
    go, env = tools.ensure_go(version), tools.go_env(version)
    subprocess.run([str(go), "tool", "trace", "-h"], env=env, capture_output=True)  # build it
    go_t, go_rss = run_measured([str(go), "tool", "trace", "-pprof=syscall", str(trace)], env=env)
    with tempfile.TemporaryDirectory() as out:
        ours_t, ours_rss = run_measured([TRACECORR, "tables", str(trace), "-o", out])
    floor = python_floor_rss("import numpy, pyarrow.parquet, tracecorr.cli")
    print(f"trace: {trace} ({mib(size)})")
    print(f"go tool trace -pprof=syscall:  {go_t:.2f} s, peak RSS {mib(go_rss)}")
    print(f"tracecorr tables:              {ours_t:.2f} s, peak RSS {mib(ours_rss)}")
    print(f"time ratio (ours / go tool):   {ours_t / go_t:.2f}   goal <= 1.0")
    print(
        f"peak RSS / file size:          {ours_rss / size:.1f}   goal <= 10 "
        f"(above the interpreter floor of {mib(floor)}: {(ours_rss - floor) / size:.1f}; "
        f"go tool: {go_rss / size:.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
