"""`tracecorr fleet` with 2 local Dask workers against 8 sequential `tracecorr report` runs.

Both as users run them, whole commands on the same 8 captures (copies of one mid-size capture:
the Go + cgo + hiredis workload, 4 goroutines x 3000 commands with a slow command every 50th,
recorded under perf; made once and cached in $TRACECORR_CACHE/bench):

    anchor   = sh -c 'for c in pod-0 ... pod-7; do tracecorr report $c --json $c.json -q; done'
    by hand  = the same reports, 2 at a time (xargs -P 2): what parallelism alone gives on
               this machine, with no Dask
    ours     = tracecorr fleet pod-0 ... pod-7 -o OUT --workers 2 -q

Printed: the times, fleet / anchor (2 workers on 2 cores: 0.5 at best) and fleet / by hand,
and the Dask overhead per capture: the worker-seconds the fleet spent beyond the reports run
2 at a time, ((ours - by hand) x workers) / captures; it includes starting the local
cluster, and gains back the imports each separate report pays. Usage:
    ~/.cache/tracecorr/venv/bin/python benchmarks/fleet.py [--captures 8 --workers 2]
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import BENCH_DIR, ROOT, TRACECORR, mib, run_measured  # noqa: E402


def mid_capture() -> Path:
    sys.path.insert(0, str(ROOT))
    from sample_traces.capture import GoOptions, capture_go

    out = BENCH_DIR / "go-mid-4x3000"
    if not (out / "capture.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        print("recording the mid-size capture (4 x 3000 hiredis commands) ...", flush=True)
        capture_go(
            out,
            GoOptions(goroutines=4, commands=3000, slow_every=50, slow_ms=5, decoy_every=0),
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captures", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    cap = mid_capture()
    size = sum(f.stat().st_size for f in cap.iterdir() if f.is_file())
    with tempfile.TemporaryDirectory(prefix="tracecorr-fleet-bench-") as tmp:
        pods = []
        for i in range(a.captures):
            pod = Path(tmp) / f"pod-{i}"
            pod.symlink_to(cap, target_is_directory=True)
            pods.append(pod)
        loop = "; ".join(f"{shlex.quote(TRACECORR)} report {p} --json {p}.json -q" for p in pods)
        anchor_t, anchor_rss = run_measured(["sh", "-c", f"set -e; {loop}"], repeat=a.repeat)
        listing = " ".join(str(p) for p in pods)
        by_hand = (
            f"printf '%s\\n' {listing} | xargs -P {a.workers} -I{{}} "
            f"{shlex.quote(TRACECORR)} report {{}} --json {{}}.json -q"
        )
        hand_t, _ = run_measured(["sh", "-c", by_hand], repeat=a.repeat)
        ours = [TRACECORR, "fleet", *map(str, pods), "-o", f"{tmp}/out"]
        ours += ["--workers", str(a.workers), "-q"]
        t, rss = run_measured(ours, repeat=a.repeat)
    n, w = a.captures, a.workers
    print(f"capture: {cap} ({mib(size)} on disk), {n} copies")
    print(
        f"anchor: {n} sequential `tracecorr report --json`: {anchor_t:.2f} s "
        f"({anchor_t / n:.2f} s per capture), peak RSS {mib(anchor_rss)}"
    )
    print(
        f"fleet, {w} local workers: {t:.2f} s  ratio {t / anchor_t:.2f} "
        f"(ideal {1 / w:.2f})  peak RSS {mib(rss)} (all processes)"
    )
    print(
        f"by hand: the reports {w} at a time (xargs -P {w}): {hand_t:.2f} s "
        f"(ratio {hand_t / anchor_t:.2f}: this machine's own scaling)"
    )
    print(
        f"fleet / by hand: {t / hand_t:.2f}; Dask overhead per capture: "
        f"{(t - hand_t) * w / n:.2f} worker-seconds"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
