"""perf script parse speed and memory against `perf script` itself, on a large real capture.

Records (once; cached in $TRACECORR_CACHE/bench) the Go + cgo + hiredis workload under
`perf record -k CLOCK_MONOTONIC -g` with syscall and scheduler tracepoints (about a million
samples with frame-pointer callchains), prints it with `perf script --header --ns
--show-task-events --show-lost-events`, then measures in this run:

    parse time ratio = our parse of that text / perf script's own time printing the same
                       perf.data to /dev/null
    peak RSS ratio   = our peak RSS / text size

Goals (issue 4): both <= 1.0. Usage:
    ~/.cache/tracecorr/venv/bin/python benchmarks/perf_parse.py [--goroutines N --commands N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tracecorr.capture.recorders import perf_script_argv  # noqa: E402

from benchmarks._common import BENCH_DIR, mib, python_baseline_rss, run_measured  # noqa: E402
from sample_traces.capture import GoOptions, capture_go, tools  # noqa: E402

PARSE = (
    "import sys; from tracecorr.parsers.perf_script import parse; "
    "st = parse(sys.argv[1]); print(len(st.slices))"
)


def make_capture(goroutines: int, commands: int) -> Path:
    out = BENCH_DIR / f"perf-{goroutines}x{commands}"
    if not (out / "perf.script.txt").exists():
        print(f"recording {goroutines} x {commands} hiredis commands under perf ...")
        capture_go(
            out, GoOptions(goroutines=goroutines, commands=commands, slow_every=0, decoy_every=0)
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--goroutines", type=int, default=8)
    ap.add_argument("--commands", type=int, default=10_000)
    a = ap.parse_args()
    cap = make_capture(a.goroutines, a.commands)
    text = cap / "perf.script.txt"
    size = text.stat().st_size
    perf = tools.perf_path()
    perf_t, perf_rss = run_measured(perf_script_argv(perf, str(cap / "perf.data"), fields=None))
    ours_t, ours_rss = run_measured([sys.executable, "-c", PARSE, str(text)])
    floor = python_baseline_rss("import tracecorr.parsers.perf_script, parsers.perf_script.tables")
    from tracecorr.parsers.perf_script import parse

    st = parse(text)
    records = sum(st.meta.events.values())
    print(f"text: {text} ({mib(size)}, {records:,} records, {len(st.slices):,} slices)")
    print(
        f"perf script > /dev/null: {perf_t:.3f} s ({size / perf_t / 1e6:.0f} MB/s), "
        f"peak RSS {mib(perf_rss)}"
    )
    print(
        f"tracecorr parse:         {ours_t:.3f} s ({size / ours_t / 1e6:.0f} MB/s), "
        f"peak RSS {mib(ours_rss)} (interpreter + imports alone: {mib(floor)})"
    )
    print(f"parse time ratio (ours / perf script): {ours_t / perf_t:.2f}   goal <= 1.0")
    print(f"peak RSS / text size:                  {ours_rss / size:.2f}   goal <= 1.0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
