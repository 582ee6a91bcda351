"""Go trace parse speed and memory against the Go toolchain, on a large real trace.

Makes (once; cached in $TRACECORR_CACHE/bench) a real cgo + hiredis trace: 8 goroutines x
20 000 commands through libhiredis, no perf. Then prints, measured in this run:

    parse time ratio   = our parse (file -> canonical tables) / `go tool trace -pprof=syscall`
    peak RSS ratio     = our peak RSS / trace file size   (also minus the interpreter floor)

Goals (issue 3): time ratio <= 1.0, RSS ratio <= 10. Usage:
    ~/.cache/tracecorr/venv/bin/python benchmarks/gotrace_parse.py [--commands N] [--go V]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import BENCH_DIR, mib, python_baseline_rss, run_measured  # noqa: E402
from sample_traces.capture import GoOptions, capture_go, tools  # noqa: E402

PARSE = (
    "import sys; from tracecorr.parsers.gotrace import parse; "
    "st = parse(sys.argv[1]); print(len(st.slices))"
)


def make_trace(goroutines: int, commands: int, version: str) -> Path:
    out = BENCH_DIR / f"gotrace-{version}-{goroutines}x{commands}"
    if not (out / "go.trace").exists():
        print(f"recording {goroutines} x {commands} cgo commands with Go {version} ...")
        capture_go(
            out,
            GoOptions(
                go_version=version,
                goroutines=goroutines,
                commands=commands,
                slow_every=0,
                decoy_every=0,
                perf=False,
                keep_binary=False,
            ),
        )
    return out / "go.trace"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--goroutines", type=int, default=8)
    ap.add_argument("--commands", type=int, default=20_000)
    ap.add_argument("--go", default=tools.DEFAULT_GO)
    a = ap.parse_args()
    trace = make_trace(a.goroutines, a.commands, a.go)
    size = trace.stat().st_size
    go = tools.ensure_go(a.go)
    env = tools.go_env(a.go)
    subprocess.run([str(go), "tool", "trace", "-h"], env=env, capture_output=True)  # build it
    go_t, go_rss = run_measured([str(go), "tool", "trace", "-pprof=syscall", str(trace)], env=env)
    ours_t, ours_rss = run_measured([sys.executable, "-c", PARSE, str(trace)])
    floor = python_baseline_rss("import tracecorr.parsers.gotrace, parsers.gotrace.tables")
    from tracecorr.parsers.gotrace import read_trace

    events = sum(read_trace(trace).events.values())
    print(f"trace: {trace} ({mib(size)}, {events:,} events)")
    print(f"go tool trace -pprof=syscall: {go_t:.3f} s, peak RSS {mib(go_rss)}")
    print(
        f"tracecorr parse:              {ours_t:.3f} s, peak RSS {mib(ours_rss)} "
        f"(interpreter + imports alone: {mib(floor)})"
    )
    print(f"parse time ratio (ours / go tool): {ours_t / go_t:.2f}   goal <= 1.0")
    print(
        f"peak RSS / file size:              {ours_rss / size:.1f}   goal <= 10 "
        f"(above the interpreter floor: {(ours_rss - floor) / size:.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
