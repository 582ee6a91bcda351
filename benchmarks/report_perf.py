"""`tracecorr report` on a large capture, against `perf script` printing its perf.data.

All as users run them, whole processes on the same capture (the Go + cgo + hiredis workload,
8 goroutines x 20 000 commands, perf with frame-pointer callchains; made once and cached in
$TRACECORR_CACHE/bench). The anchor is `perf script -i perf.data > /dev/null`:

    report from perf.data  = `tracecorr report --go-trace T --perf-data perf.data -q` / anchor
    report from the text   = `tracecorr report --go-trace T --perf-script TEXT -q` / anchor
    decode alone           = reading perf.data into the canonical tables, in one process
                             (perf_data.parse: no helper process) / anchor
    RSS ratio              = peak RSS of the perf.data report / perf.data size

Goals (issue 12): report from perf.data <= 0.5 (stretch 0.25), from the text <= 1.0,
RSS ratio <= 2. Usage:
    ~/.cache/tracecorr/venv/bin/python benchmarks/report_perf.py [--goroutines N --commands N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import TRACECORR, bench_capture, mib, run_measured  # noqa: E402

DECODE = "import sys; from tracecorr.parsers.perf_data import parse; parse(sys.argv[1])"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--goroutines", type=int, default=8)
    ap.add_argument("--commands", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    cap = bench_capture(a.goroutines, a.commands)
    data, text, trace = cap / "perf.data", cap / "perf.script.txt", cap / "go.trace"
    size = data.stat().st_size
    r = a.repeat
    anchor_t, anchor_rss = run_measured(["perf", "script", "-i", str(data)], repeat=r)
    rows = [
        (
            "report from perf.data",
            [TRACECORR, "report", "--go-trace", str(trace), "--perf-data", str(data), "-q"],
            0.5,
        ),
        (
            "report from the text",
            [TRACECORR, "report", "--go-trace", str(trace), "--perf-script", str(text), "-q"],
            1.0,
        ),
        ("decode perf.data alone", [sys.executable, "-c", DECODE, str(data)], 0.1),
    ]
    print(
        f"capture: {cap} (perf.data {mib(size)}, text {mib(text.stat().st_size)}, "
        f"go.trace {mib(trace.stat().st_size)})"
    )
    print(
        f"anchor: perf script -i perf.data > /dev/null: {anchor_t:.2f} s, "
        f"peak RSS {mib(anchor_rss)}"
    )
    for label, argv, goal in rows:
        t, rss = run_measured(argv, repeat=r)
        print(
            f"{label:24} {t:6.2f} s  ratio {t / anchor_t:.2f} (goal <= {goal})  "
            f"peak RSS {mib(rss)} = {rss / size:.2f} x perf.data"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
