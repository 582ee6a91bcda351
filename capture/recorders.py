"""The recorders' command lines, in one place, so that `tracecorr capture`, the sample-capture
script, the tests and the README record the same way.

perf records on CLOCK_MONOTONIC (``-k CLOCK_MONOTONIC``) so that its timestamps share the Go
trace's clock exactly, with syscall enter/exit and the scheduler events, and callchains (frame
pointers, or ``--dwarf`` to see through libc into the library). py-spy samples with what
correlation needs: native frames, idle (blocked) threads and OS thread ids. The Go trace comes
from the service's ``/debug/pprof/trace``.
"""

from __future__ import annotations

import functools
import gzip
import math
import platform
import re
import shutil
import subprocess
import time
from pathlib import Path

from ..parsers.perf_script.perfdata import perf_script_argv

__all__ = [
    "DWARF_CALLGRAPH",
    "PERF_EVENTS",
    "PYSPY_SUFFIX",
    "SCHEMA",
    "CaptureError",
    "go_trace_url",
    "mono_ns",
    "perf_record_argv",
    "perf_script",
    "perf_script_argv",
    "pyspy_output_name",
    "pyspy_record_argv",
    "tool_version",
]

#: capture.json's schema, written by `tracecorr capture` and the sample-capture script alike
SCHEMA = "tracecorr.capture/1"

#: the perf events every capture records. sched_waking, not sched_wakeup: waking fires in
#: the waker's own context (try_to_wake_up), so perf -p PEER records redis-server waking us;
#: sched_wakeup may fire on the woken thread's CPU from an IPI, in the context of whatever
#: ran there, which names a wrong waker or none
PERF_EVENTS = (
    "raw_syscalls:sys_enter",
    "raw_syscalls:sys_exit",
    "sched:sched_switch",
    "sched:sched_waking",
    # signals (rare; Go's SIGURG preemption the most frequent): a SIGPIPE delivered inside a
    # native call is the broken-connection finding's proof, and whether the process survived
    "signal:signal_generate",
    "signal:signal_deliver",
)

#: DWARF unwinding at full tracepoint rate loses samples with the default buffer; a 4 KiB
#: stack copy and a 64 MiB ring kept losses to a handful in a 4 s run (shared notes).
#: Kept at 4 KiB when the splice came in (issue 26), by measurement: the stripped C++ client
#: (8 threads x 300 commands, 1.4 s, 64 MiB ring) wrote 137 / 260 / 423 / 591 / 573 MB with
#: dwarf,4096 / 8192 / 16384 / 32768 / 65528 and lost 0 / 0 / 3 407 / 8 220 / 17 153 samples
#: (none / none / 18 % / 44 % / 77 %): the blocking syscalls (>= 20 ms) it kept fell from
#: 271 / 283 to 232 / 169 / 90. With the splice (parsers/perf_data/stops.py) the stacks of
#: every one of them reached a frame of the client's own binary at every size; by their own
#: unwinding alone, 4 of 271 at 4 KiB and 64 of 90 at 65528. A larger copy buys what the
#: splice already gives (frames above a large frame) and pays in lost records; the reads
#: under libhiredis's redisBufferRead stop on untouched stack pages at any size.
DWARF_CALLGRAPH = ("--call-graph", "dwarf,4096", "-m", "64M")


class CaptureError(RuntimeError):
    """A recorder, a preflight check or the workload failed: one line saying what and why."""


def mono_ns() -> int:
    """CLOCK_MONOTONIC now, in ns: the clock every capture's times are on."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def tool_version(argv: list[str]) -> str:
    """First line a tool prints for its version, or why it could not say."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable: {exc}"
    out = (proc.stdout or proc.stderr).strip().splitlines()
    return out[0] if out else ""


def perf_record_argv(
    perf: str,
    output: Path,
    dwarf: bool = False,
    monotonic: bool = True,
    pids: list[int] | None = None,
    system_wide: bool = False,
) -> list[str]:
    """``perf record`` of our events into *output*; the caller appends ``-- COMMAND`` (or
    perf records *pids*, the service and its peers such as redis-server, until stopped).
    *system_wide* records every CPU (``-a``): every process, the wakers of our threads
    included, at a size cost. *monotonic* False leaves perf on its default clock
    (perf_clock), as many recordings in the wild are."""
    argv = [
        perf,
        "record",
        *(["-k", "CLOCK_MONOTONIC"] if monotonic else []),
        "-e",
        ",".join(PERF_EVENTS),
    ]
    if system_wide:
        argv += ["-a"]
    elif pids:
        argv += ["-p", ",".join(str(p) for p in pids)]
    argv += ["-o", str(output)]
    argv += list(DWARF_CALLGRAPH) if dwarf else ["-g"]
    if buildid_mmap_supported(perf):
        argv += ["--buildid-mmap"]
    return argv


#: perf 5.12 and Linux 5.12 added build ids to MMAP2 records (perf record --buildid-mmap)
BUILDID_MMAP_SINCE = (5, 12)


def _version(text: str) -> tuple[int, int] | None:
    m = re.search(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


@functools.lru_cache(maxsize=8)
def buildid_mmap_supported(perf: str) -> bool:
    """Can this perf and kernel put each mapped file's build id into its MMAP2 record
    (``--buildid-mmap``)? The kernel reads it when the file is mapped, in the process's own
    mount namespace: the only build ids a recording of a containerised or short-lived
    process can have (perf reads the header's BUILD_ID table from the paths after the
    recording, when the process and its namespace may be gone, and for the DSOs of sampled
    ips only: a tracepoint's are kernel ones). The reader checks every DSO it reads against
    them, so that no frame is named from a file of another build."""
    kernel = _version(platform.release())
    tool = _version(tool_version([perf, "--version"]))
    return bool(kernel and tool and min(kernel, tool) >= BUILDID_MMAP_SINCE)


def perf_script(
    perf: str,
    data: Path,
    out: Path,
    compress: bool = False,
    fields: str | None = None,
    symfs: Path | None = None,
) -> dict:
    """Print *data* as text into *out* (gzip when *compress*); what ran, and the sizes.

    *fields* None prints perf's default layout (the committed samples keep it, so the text
    parser is exercised on what users have); `tracecorr capture` passes the fixed field list.
    *symfs*: the DSOs are read from there (a capture's archive of a process in another mount
    namespace: its paths are not the host's), kernel symbols from this boot's kallsyms
    (perf would look for them under the symfs too).
    """
    kallsyms = "/proc/kallsyms" if symfs else None
    argv = perf_script_argv(
        perf, str(data), fields=fields, symfs=str(symfs) if symfs else None, kallsyms=kallsyms
    )
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as f:
        proc = subprocess.run(argv, stdout=f, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise CaptureError(f"perf script failed ({proc.returncode}): {proc.stderr.decode()[-400:]}")
    text_bytes = tmp.stat().st_size
    if compress:
        with open(tmp, "rb") as src, gzip.open(out, "wb", compresslevel=9) as dst:
            shutil.copyfileobj(src, dst)
        tmp.unlink()
    else:
        tmp.rename(out)
    return {
        "argv": argv,
        "file": out.name,
        "text_bytes": text_bytes,
        "stderr": proc.stderr.decode(errors="replace").strip(),
    }


def pyspy_record_argv(
    pyspy: str,
    fmt: str,
    output: Path,
    pid: int | None = None,
    rate: int = 100,
    duration_s: float | None = None,
    nonblocking: bool = False,
    native: bool = True,
) -> list[str]:
    """py-spy with native frames, idle (blocked) threads and OS thread ids. *nonblocking*
    reads the target without stopping it (no ptrace stops, less exact stacks); *native*
    False leaves native frames out (they fail on a process in another PID namespace)."""
    argv = [
        pyspy,
        "record",
        # py-spy cannot read native stacks without stops
        *(["--native"] if native and not nonblocking else []),
        "--idle",
        "--threads",
        "--rate",
        str(rate),
        "--format",
        fmt,
        "-o",
        str(output),
    ]
    if nonblocking:
        argv += ["--nonblocking"]
    if pid is not None:
        argv += ["--pid", str(pid)]
    if duration_s is not None:
        argv += ["--duration", str(max(1, math.ceil(duration_s)))]  # py-spy takes whole seconds
    return argv


PYSPY_SUFFIX = {"chrometrace": "json", "speedscope": "json", "raw": "txt"}


def pyspy_output_name(fmt: str) -> str:
    return f"pyspy.{fmt}.{PYSPY_SUFFIX[fmt]}"


def go_trace_url(base: str, seconds: float) -> str:
    """The execution-trace URL of a net/http/pprof endpoint, for whole seconds covering the
    window (``http://host:6060``, ``.../debug/pprof`` and ``.../debug/pprof/trace`` all work)."""
    base = base.rstrip("/")
    if not base.endswith("/debug/pprof/trace"):
        base = (base if base.endswith("/debug/pprof") else base + "/debug/pprof") + "/trace"
    return f"{base}?seconds={max(1, math.ceil(seconds))}"
