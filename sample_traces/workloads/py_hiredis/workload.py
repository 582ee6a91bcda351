"""Real-capture workload for tracecorr: redis-py with the hiredis parser from named threads.

Each worker thread owns one redis-py connection (hiredis reply parser), issues fast commands
and, every ``--slow-every`` commands, a slow one (``DEBUG SLEEP`` stalls the single-threaded
server; ``BLPOP`` on an empty list waits for its timeout). Every call is logged as ground truth
in JSONL: thread name, native OS tid (``threading.get_native_id()``), ``time.monotonic_ns()``
(CLOCK_MONOTONIC on Linux) right before and after the call. Decoys block outside Redis: a
Python ``time.sleep`` and a libc ``usleep`` through ctypes; they must never be tagged hiredis.

GIL contention (``--gil-hogs N``): N more threads spin in pure Python for the whole run, so
every worker that releases the GIL around a socket call waits for it again (up to the
interpreter's switch interval per hog) before its call can return: time inside the Redis
call that is the interpreter's, not the socket's. Their runs are logged (``kind: hog``).

By default the OS threads keep the process's name (what perf prints as comm), as CPython
leaves them: only py-spy knows the Python thread names. ``--set-comm`` names each OS thread
after its Python thread with prctl(PR_SET_NAME), as some services do.

Stdlib + redis-py + hiredis only: it runs under py-spy and perf exactly as a service would.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import sys
import threading
import time

import redis

PR_SET_NAME = 15
# By soname: ctypes.util.find_library would spawn ldconfig inside the recorded process.
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def set_os_thread_name(name: str) -> None:
    """Name the calling OS thread (comm, 15 bytes max) so perf shows it."""
    _libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


class Truth:
    """Thread-safe JSONL ground-truth log."""

    def __init__(self, path: str) -> None:
        self._f = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()

    def write(self, rec: dict, flush: bool = False) -> None:
        line = json.dumps(rec, sort_keys=True)
        with self._lock:
            self._f.write(line + "\n")
            if flush:  # the header: a capture script waits for it to learn our pid
                self._f.flush()

    def close(self) -> None:
        self._f.close()


def parser_name(client: redis.Redis) -> str:
    conn = client.connection_pool.get_connection()
    try:
        return type(conn._parser).__name__
    finally:
        client.connection_pool.release(conn)


class Worker(threading.Thread):
    def __init__(
        self, idx: int, args: argparse.Namespace, truth: Truth, errors: list, go: threading.Event
    ) -> None:
        super().__init__(name=f"{args.name_prefix}{idx}")
        self.go = go
        self.rng = random.Random(idx + 1)
        self.idx = idx
        self.args = args
        self.truth = truth
        self.errors = errors
        self.seq = 0

    def record(self, kind: str, func: str, cmd: str, t0: int, t1: int, **extra) -> None:
        rec = {
            "kind": kind,
            "func": func,
            "cmd": cmd,
            "worker": self.idx,
            "thread": self.name,
            "tid": threading.get_native_id(),
            "ident": threading.get_ident(),
            "seq": self.seq,
            "t0": t0,
            "t1": t1,
            "dur_ns": t1 - t0,
        }
        rec.update(extra)
        self.truth.write(rec)
        self.seq += 1

    def call(self, client: redis.Redis, args: list[str], slow: bool) -> None:
        t0 = time.monotonic_ns()
        try:
            reply = client.execute_command(*args)
            error = None
        except redis.RedisError as exc:  # a failed call is still ground truth
            reply, error = None, str(exc)
        t1 = time.monotonic_ns()
        extra = {"slow": slow, "reply": reply if isinstance(reply, int) else None}
        if error:
            extra["error"] = error
        self.record("call", "execute_command", " ".join(args), t0, t1, **extra)

    def slow_command(self, n: int) -> list[str]:
        secs = f"{self.args.slow_ms * self.jitter() / 1000:.3f}"
        if n % 2 == 0:
            return ["DEBUG", "SLEEP", secs]
        return ["BLPOP", f"tc:pyempty:{self.idx}", secs]

    def fast_command(self, i: int, key: str) -> list[str]:
        return [["SET", key, "x" * self.args.payload], ["GET", key], ["INCR", key + ":n"]][i % 3]

    def jitter(self) -> float:
        """1x to 2x: slow and decoy lengths vary (seeded), so the workload is not periodic
        (a periodic one lets a clock offset one period off look as right as the true one)."""
        return 1.0 + self.rng.random()

    def decoy(self) -> None:
        secs = self.args.decoy_ms * self.jitter() / 1000
        t0 = time.monotonic_ns()
        time.sleep(secs)
        t1 = time.monotonic_ns()
        self.record("decoy", "time.sleep", "", t0, t1)
        t0 = time.monotonic_ns()
        _libc.usleep(int(secs * 1e6))
        t1 = time.monotonic_ns()
        self.record("decoy", "usleep", "", t0, t1)

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # reported by main, which exits non-zero
            self.errors.append(f"{self.name}: {exc!r}")

    def _run(self) -> None:
        if self.args.set_comm:
            set_os_thread_name(self.name)
        self.go.wait()
        a = self.args
        t0 = time.monotonic_ns()
        client = redis.Redis(host=a.host, port=a.port, protocol=2)
        client.ping()
        self.record("call", "connect", "PING", t0, time.monotonic_ns(), slow=False)
        key = f"tc:py:{self.idx}"
        deadline = time.monotonic() + a.duration if a.duration else None
        slow_seen = 0
        i = 0
        while (time.monotonic() < deadline) if deadline else (i < a.commands):
            if a.slow_every and (i + self.idx) % a.slow_every == a.slow_every - 1:
                self.call(client, self.slow_command(slow_seen + self.idx), slow=True)
                slow_seen += 1
            else:
                self.call(client, self.fast_command(i, key), slow=False)
            if a.decoy_every and i % a.decoy_every == a.decoy_every - 1:
                self.decoy()
            i += 1
        t0 = time.monotonic_ns()
        client.close()  # a client call too: under GIL contention it waits like any other
        self.record("call", "close", "", t0, time.monotonic_ns(), slow=False)


class GilHog(threading.Thread):
    """A CPU-bound pure-Python thread: it holds the GIL but at the interpreter's switch
    requests, until the workers are done."""

    def __init__(self, idx: int, truth: Truth, done: threading.Event, go: threading.Event):
        super().__init__(name=f"gil-hog-{idx}", daemon=True)
        self.truth, self.done, self.go = truth, done, go

    def run(self) -> None:
        self.go.wait()
        t0 = time.monotonic_ns()
        n = 0
        while not self.done.is_set():
            for i in range(2000):
                n += i * i % 7
        t1 = time.monotonic_ns()
        self.truth.write({"kind": "hog", "thread": self.name, "tid": threading.get_native_id(),
                          "t0": t0, "t1": t1, "dur_ns": t1 - t0, "work": n})  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6379)
    p.add_argument("--threads", type=int, default=3, help="worker threads, one connection each")
    p.add_argument("--commands", type=int, default=40, help="commands per thread")
    p.add_argument("--slow-every", type=int, default=8, help="every Nth command is slow; 0 = none")
    p.add_argument(
        "--slow-ms",
        type=int,
        default=200,
        help="shortest slow command, ms (each lasts 1x to 2x, seeded)",
    )
    p.add_argument("--decoy-every", type=int, default=20, help="decoy sleeps after every Nth")
    p.add_argument("--decoy-ms", type=int, default=30, help="shortest decoy sleep, ms (1x-2x)")
    p.add_argument("--duration", type=float, default=0, help="run this many seconds instead")
    p.add_argument("--start-delay", type=float, default=0, help="sleep before starting, s")
    p.add_argument("--payload", type=int, default=64, help="SET value size, bytes")
    p.add_argument("--name-prefix", default="redis-worker-", help="thread name prefix")
    p.add_argument(
        "--set-comm", action="store_true", help="name the OS threads too (prctl PR_SET_NAME)"
    )
    p.add_argument(
        "--gil-hogs", type=int, default=0, help="CPU-bound pure-Python threads (GIL contention)"
    )
    p.add_argument("--truth", default="truth.jsonl", help="ground-truth JSONL output")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    truth = Truth(args.truth)
    probe = redis.Redis(host=args.host, port=args.port, protocol=2)
    parser = parser_name(probe)
    probe.close()
    if parser != "_HiredisParser":
        print(f"py_hiredis: redis-py is using {parser}, not the hiredis parser", file=sys.stderr)
        return 1
    import hiredis  # noqa: PLC0415 - only for its version

    # Threads exist (named, registered with threading) before the header announces our pid,
    # so a profiler attaching then sees every thread with its name from its first sample;
    # they wait for the start signal.
    errors: list[str] = []
    go = threading.Event()
    workers = [Worker(i, args, truth, errors, go) for i in range(args.threads)]
    done = threading.Event()
    hogs = [GilHog(i, truth, done, go) for i in range(args.gil_hogs)]
    for w in workers + hogs:
        w.start()
    start = time.monotonic_ns()
    truth.write(
        {
            "kind": "process",
            "pid": os.getpid(),
            "main_tid": threading.get_native_id(),
            "t0": start,
            "python": sys.version.split()[0],
            "redis_py": redis.__version__,
            "hiredis": hiredis.__version__,
            "parser": parser,
            "threads": args.threads,
            "commands": args.commands,
            "slow_every": args.slow_every,
            "slow_ms": args.slow_ms,
            "decoy_every": args.decoy_every,
            "decoy_ms": args.decoy_ms,
            "duration_s": args.duration,
            "gil_hogs": args.gil_hogs,
            "switch_interval_s": sys.getswitchinterval(),
        },
        flush=True,
    )
    if args.start_delay:
        time.sleep(args.start_delay)
    go.set()
    for w in workers:
        w.join()
    done.set()
    for h in hogs:
        h.join()
    truth.write({"kind": "end", "t0": time.monotonic_ns(), "main_tid": threading.get_native_id()})
    truth.close()
    for e in errors:
        print(f"py_hiredis: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
