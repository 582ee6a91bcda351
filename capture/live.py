"""`tracecorr capture`: record every source of a live process, aligned from the start.

Half of the alignment trouble is made at capture time (perf on its own clock, py-spy without
--idle or --native, a Go trace started seconds later). This records, for the same window:

    perf     perf record -k CLOCK_MONOTONIC, syscall enter/exit + sched_switch/wakeup with
             callchains (frame pointers, or --dwarf), limited to the pid; then perf script
             text with the header, printed with the field list the parser expects
    Go       /debug/pprof/trace?seconds=N from the service's net/http/pprof endpoint
    py-spy   record --native --idle --threads --format chrometrace --pid, with CLOCK_MONOTONIC
             just before it started as an anchor (alignment still checks it against perf)

and leaves a directory that `tracecorr report DIR` reads as is: the files and capture.json
(what ran, versions, flags, CLOCK_MONOTONIC and wall start/stop, what failed). A recorder that
fails does not lose the others' data; Ctrl-C stops all of them cleanly and still writes the
directory.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..parsers.perf_records.header import seconds_to_ns
from ..parsers.perf_script.header import parse_header
from ..parsers.perf_script.perfdata import FIELDS
from . import archive
from .nspid import ThreadIds, other_namespace
from .recorders import (
    PERF_EVENTS,
    SCHEMA,
    CaptureError,
    go_trace_url,
    mono_ns,
    perf_record_argv,
    perf_script,
    pyspy_record_argv,
    tool_version,
)


@dataclass
class Plan:
    pid: int
    duration_s: float
    out: Path
    go_trace_url: str | None = None
    pyspy: bool = False
    dwarf: bool = False
    perf: str = ""
    pyspy_bin: str = ""
    peers: list[int] = field(default_factory=list)  # recorded too: the service's wakers
    system_wide: bool = False  # perf record -a: every process (large files)
    #: copy the DSOs the stacks touch into DIR/symfs (archive.py); None: when the process is
    #: in another mount namespace (its paths are not ours)
    archive: bool | None = None


def preflight(
    pid: int,
    duration_s: float,
    out: Path,
    go_trace_url: str | None,
    pyspy: bool,
    dwarf: bool,
    peers: list[int] | None = None,
    system_wide: bool = False,
) -> Plan:
    """Check everything that can be checked before recording, so a capture does not fail
    half-way: the processes exist, perf and py-spy are there, tracepoints are allowed, the
    pprof endpoint answers."""
    if duration_s <= 0:
        raise CaptureError("--duration must be positive")
    for p in [pid, *(peers or [])]:
        if not Path(f"/proc/{p}").exists():
            raise CaptureError(f"pid {p}: no such process")
    perf = shutil.which("perf")
    if perf is None:
        raise CaptureError("perf not found: install it (Debian: apt-get install linux-perf)")
    if os.geteuid() != 0:
        try:
            paranoid = int(Path("/proc/sys/kernel/perf_event_paranoid").read_text())
        except (OSError, ValueError):
            paranoid = 2
        if paranoid > -1:
            raise CaptureError(
                f"not root and kernel.perf_event_paranoid = {paranoid}: "
                "tracepoints need root (or sysctl kernel.perf_event_paranoid=-1)"
            )
    plan = Plan(
        pid,
        duration_s,
        out,
        go_trace_url,
        pyspy,
        dwarf,
        perf=perf,
        peers=[p for p in dict.fromkeys(peers or []) if p != pid],
        system_wide=system_wide,
    )
    if pyspy:
        found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(found).exists():
            raise CaptureError(
                "py-spy not found: install tracecorr's recorders with "
                "pip install 'tracecorr[capture]' (or pip install py-spy)"
            )
        plan.pyspy_bin = found
    if go_trace_url:
        base = go_trace_url.rstrip("/")
        probe = base if base.endswith("/debug/pprof") else base + "/debug/pprof/"
        try:
            with urllib.request.urlopen(probe, timeout=3) as r:
                r.read(64)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise CaptureError(f"pprof endpoint {probe} unreachable: {e}") from None
    return plan


@dataclass
class _GoFetch:
    url: str
    path: Path
    stop: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    bytes: int = 0
    done: bool = False
    end_mono_ns: int | None = None

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=30) as r, open(self.path, "wb") as f:
                while not self.stop.is_set():
                    chunk = r.read(1 << 16)
                    if not chunk:
                        break
                    f.write(chunk)
                    self.bytes += len(chunk)
        except (urllib.error.URLError, OSError) as e:
            self.error = str(e)
        finally:
            self.end_mono_ns = mono_ns()
            self.done = True


def _stop_on_signals():
    """Make SIGINT and SIGTERM stop the capture early (what was recorded is kept), as perf
    record does, even when the shell started us with SIGINT ignored (``cmd &`` in a script,
    nohup), where Python would leave it ignored. Returns what restores the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in old:
        signal.signal(sig, signal.default_int_handler)

    def restore() -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    return restore


def run(plan: Plan, progress=None) -> dict:
    """Record; returns capture.json's content (also written into plan.out)."""
    out = plan.out
    out.mkdir(parents=True, exist_ok=True)
    snap = archive.snapshot(plan.pid, out, plan.archive)  # its DSOs, while it surely lives
    comm = (
        Path(f"/proc/{plan.pid}/comm").read_text().strip()
        if Path(f"/proc/{plan.pid}/comm").exists()
        else ""
    )
    meta: dict = {
        "schema": SCHEMA,
        "created_wall": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {
            "node": platform.node(),
            "kernel": platform.release(),
            "machine": platform.machine(),
        },
        "process": {"pid": plan.pid, "comm": comm},
        "duration_s": plan.duration_s,
        "files": {},
        "steps": [],
        "failures": [],
        "interrupted": False,
    }
    threads = ThreadIds(plan.pid)  # the service's tids in its own PID namespace, and ours
    threads.look()
    procs: dict[str, subprocess.Popen] = {}
    started: dict[str, int] = {}
    perf_argv = perf_record_argv(
        plan.perf,
        out / "perf.data",
        plan.dwarf,
        pids=[plan.pid, *plan.peers],
        system_wide=plan.system_wide,
    )
    meta["perf_scope"] = {"peers": plan.peers, "system_wide": plan.system_wide}
    perf_argv += ["--", "sleep", str(plan.duration_s)]
    meta["start_mono_ns"], meta["start_wall_ns"] = mono_ns(), time.time_ns()
    logs = {}

    def launch(name: str, argv: list[str]) -> None:
        logs[name] = open(out / f"{name}.log", "wb")  # noqa: SIM115 - closed below
        started[name] = mono_ns()
        try:
            procs[name] = subprocess.Popen(argv, stdout=logs[name], stderr=subprocess.STDOUT)
        except OSError as e:
            meta["failures"].append({"recorder": name, "error": str(e)})
        meta["steps"].append({"name": name, "argv": argv, "start_mono_ns": started[name]})

    launch("perf", perf_argv)
    go = None
    if plan.go_trace_url:
        go = _GoFetch(go_trace_url(plan.go_trace_url, plan.duration_s), out / "go.trace")
        meta["steps"].append({"name": "go trace", "url": go.url, "start_mono_ns": mono_ns()})
        threading.Thread(target=go.run, daemon=True).start()
    if plan.pyspy:
        # py-spy 0.4's native unwinding fails on a process in another PID namespace
        # (UNW_EBADREG, measured): Python frames only there, and capture.json says so
        native = not other_namespace(plan.pid)
        meta["pyspy_native"] = native
        launch(
            "py-spy",
            pyspy_record_argv(
                plan.pyspy_bin,
                "chrometrace",
                out / "pyspy.chrometrace.json",
                pid=plan.pid,
                duration_s=plan.duration_s,
                native=native,
            ),
        )
    deadline = time.monotonic() + plan.duration_s + 30
    ended: dict[str, int] = {}
    restore = _stop_on_signals()
    try:
        while True:
            for n, p in procs.items():
                if n not in ended and p.poll() is not None:
                    ended[n] = mono_ns()
            alive = [n for n, p in procs.items() if p.poll() is None]
            if go is not None and not go.done:
                alive.append("go trace")
            if not alive:
                break
            threads.look()
            if time.monotonic() > deadline:
                meta["failures"].append({"recorder": ",".join(alive), "error": "overran"})
                break
            if progress:
                elapsed = (mono_ns() - meta["start_mono_ns"]) / 1e9
                size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
                progress(elapsed, max(plan.duration_s - elapsed, 0), size, alive)
            time.sleep(0.25)
    except KeyboardInterrupt:
        meta["interrupted"] = True
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)  # perf and py-spy write their files on SIGINT
        for name, p in procs.items():
            try:
                p.wait(timeout=30)
                ended.setdefault(name, mono_ns())
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                meta["failures"].append({"recorder": name, "error": "did not stop on SIGINT"})
        if go is not None:
            go.stop.set()
            for _ in range(40):
                if go.done:
                    break
                time.sleep(0.05)
        for f in logs.values():
            f.close()
        restore()
    threads.look()
    meta["threads"] = threads.as_meta()
    meta["stop_mono_ns"], meta["stop_wall_ns"] = mono_ns(), time.time_ns()
    for step in meta["steps"]:
        p = procs.get(step["name"])
        if p is not None:
            step["returncode"] = p.returncode
            step["log"] = f"{step['name']}.log"
            step["end_mono_ns"] = ended.get(step["name"])
        elif step["name"] == "go trace" and go is not None:
            step["end_mono_ns"] = go.end_mono_ns
    _finish(plan, meta, procs, go, started, snap)
    # the window every recorder covered: perf's from its samples (the process outlives its
    # recording while it writes perf.data), the others' from when they ran
    covered = [
        (s["start_mono_ns"], s.get("end_mono_ns") or meta["stop_mono_ns"])
        for s in meta["steps"]
        if s["name"] != "perf"
    ]
    if "samples_mono_ns" in meta.get("perf", {}):
        covered.append(tuple(meta["perf"]["samples_mono_ns"]))
    if covered:
        meta["common_window_mono_ns"] = [max(a for a, _ in covered), min(b for _, b in covered)]
    (out / "capture.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _sample_window(text: Path) -> list[int] | None:
    """[first, last] sample time (CLOCK_MONOTONIC ns) from perf script's --header lines."""
    try:
        with open(text, encoding="utf-8", errors="replace") as f:
            lines = [ln for ln, _ in zip(f, range(80), strict=False) if ln.startswith("#")]
    except OSError:
        return None
    v = parse_header(lines).values
    try:
        window = [seconds_to_ns(v["time of first sample"]), seconds_to_ns(v["time of last sample"])]
    except (KeyError, ArithmeticError, ValueError):
        return None
    # perf record --buildid-mmap skips the pass that finds them: it writes zeros; then the
    # first and last sample lines of the text say it
    return window if window[1] > 0 else _sample_lines_window(text)


#: a sample line's time: followed by its event (``sys:name:``), which perf's synthesised
#: records (PERF_RECORD_COMM ... at time 0, before perf had attached) do not have
_SAMPLE_TIME = re.compile(rb"\s(\d+)\.(\d{9}):\s+[\w.-]+:[\w.-]+:")


def _sample_lines_window(text: Path) -> list[int] | None:
    """[first, last] sample time (ns) from the text's first and last sample lines (perf
    attaching to a process with DWARF callchains starts sampling some 0.4 s after it
    starts: the window begins at its first sample, measured)."""
    try:
        with open(text, "rb") as f:
            head = f.read(1 << 20)
            f.seek(max(0, text.stat().st_size - (1 << 20)))
            tail = f.read()
    except OSError:
        return None
    first = next(iter(_SAMPLE_TIME.findall(head)), None)
    last = (_SAMPLE_TIME.findall(tail) or [None])[-1]
    if first is None or last is None:
        return None
    return [int(first[0]) * 10**9 + int(first[1]), int(last[0]) * 10**9 + int(last[1])]


def _finish(
    plan: Plan,
    meta: dict,
    procs: dict,
    go: _GoFetch | None,
    started: dict,
    snap: archive.Snapshot | None = None,
) -> None:
    out = plan.out
    data = out / "perf.data"
    # the DSOs perf.data's stacks touch (*snap*: copied at the start): perf script reads
    # them from there, as the report will
    symfs = archive.finish(snap, out, meta) if snap is not None else None
    if data.exists() and data.stat().st_size > 0:
        meta["files"]["perf_data"] = "perf.data"
        try:
            perf_script(plan.perf, data, out / "perf.script.txt", fields=FIELDS, symfs=symfs)
            meta["files"]["perf_script"] = "perf.script.txt"
        except CaptureError as e:
            meta["failures"].append({"recorder": "perf script", "error": str(e)[-500:]})
        meta["perf"] = {
            "version": tool_version([plan.perf, "--version"]),
            "clock": "CLOCK_MONOTONIC",
            "callgraph": "dwarf" if plan.dwarf else "fp",
            "events": ",".join(PERF_EVENTS),
        }
        window = _sample_window(out / "perf.script.txt")
        if window:
            meta["perf"]["samples_mono_ns"] = window
    else:
        meta["failures"].append(
            {"recorder": "perf", "error": "no perf.data written (see perf.log)"}
        )
    if go is not None:
        if go.error:
            meta["failures"].append({"recorder": "go trace", "error": go.error})
        if go.bytes:
            meta["files"]["go_trace"] = "go.trace"
            meta["go"] = {"url": go.url, "bytes": go.bytes}
    if plan.pyspy:
        f = out / "pyspy.chrometrace.json"
        if f.exists() and f.stat().st_size > 0:
            meta["files"]["pyspy_chrometrace"] = f.name
            meta["pyspy"] = {
                "version": tool_version([plan.pyspy_bin, "--version"]),
                "recordings": {
                    "chrometrace": {"file": f.name, "anchor_mono_ns": started.get("py-spy")}
                },
            }
        else:
            meta["failures"].append({"recorder": "py-spy", "error": "no output (see py-spy.log)"})
