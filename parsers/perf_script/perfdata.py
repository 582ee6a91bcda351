"""perf.data -> `perf script` text -> the same parser, streamed through a pipe.

The field list is fixed, so the text always has what the parser needs: pid and tid, cpu,
nanosecond times, the tracepoint payload, and callchains (any ``-F`` drops tracepoint
callchains unless ip, sym and dso are listed). Symbols are resolved here, against this
machine's binaries: a perf.data from another machine is read, with a warning.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import InputError
from ..model import SourceTables
from . import parse_stream

FIELDS = "comm,pid,tid,cpu,time,event,trace,ip,sym,dso,symoff"


def perf_script_argv(
    perf: str,
    path: str,
    fields: str | None = FIELDS,
    symfs: str | None = None,
    kallsyms: str | None = None,
) -> list[str]:
    """The one way we print perf.data as text: with the header (clock, host), nanosecond
    times, task and lost events; *fields* None keeps perf's default layout. *symfs*: the
    recorded DSO paths are looked up under it (``--symfs``: a container's root, a capture's
    archive); perf then reads only files under it, the kernel's kallsyms too, so *kallsyms*
    names the file kernel symbols come from (``/proc/kallsyms`` on the recording's boot)."""
    argv = [
        perf,
        "script",
        "-i",
        path,
        "--header",
        "--ns",
        "--show-task-events",
        "--show-lost-events",
    ]
    if symfs:
        # --no-inline: perf 6.1 runs addr2line for inlined frames on the recorded path, not
        # the one under the symfs, and dies of SIGPIPE when that path is not here (measured)
        argv += ["--symfs", str(symfs), "--no-inline"]
    if symfs and kallsyms:
        argv += ["--kallsyms", kallsyms]
    return argv + ["-F", fields] if fields else argv


def same_boot(path: str) -> bool:
    """Was *path* recorded on this boot of this kernel (its kernel build id, else its
    release, is the running kernel's)? Then ``/proc/kallsyms`` names its kernel frames; an
    unreadable header says no."""
    from ..perf_data import file as F
    from ..perf_data.symbols import kernel_build_id

    try:
        with F.PerfFile.open(path) as pf:
            bid = next((b for _, b, n in pf.build_ids() if n == "[kernel.kallsyms]"), None)
            release = pf.feature_string("OSRELEASE")
    except Exception:  # noqa: BLE001 - any file the native reader cannot open: not known
        return False
    running = kernel_build_id()
    if bid and running:
        return running[: len(bid)] == bid
    return release == platform.release()


def parse(
    path: str | Path,
    source: str = "perf-data",
    pid: int | None = None,
    only_pids: set[int] | None = None,
    perf: str | None = None,
    symfs: str | None = None,
) -> SourceTables:
    """*path* printed by ``perf script`` and read as text; *symfs*: perf looks the recorded
    DSOs up there (kernel symbols from /proc/kallsyms when recorded on this boot)."""
    path = str(path)
    perf = perf or shutil.which("perf")
    if perf is None:
        raise InputError(
            path,
            "reading perf.data needs `perf` on this machine (Debian: "
            "apt-get install linux-perf); or run `perf script --header --ns` "
            "where it was recorded and pass that text",
        )
    kallsyms = "/proc/kallsyms" if symfs and same_boot(path) else None
    argv = perf_script_argv(perf, path, symfs=symfs, kallsyms=kallsyms)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
        failure: InputError | None = None
        try:
            tables = parse_stream(proc.stdout, path, source, only_pids)
        except InputError as e:
            failure, tables = e, None
        finally:
            proc.stdout.close()
            rc = proc.wait()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace").strip()
    if rc != 0 or tables is None:
        first = next((ln.strip() for ln in stderr.splitlines() if ln.strip()), "")
        if rc != 0:
            raise InputError(path, f"perf script failed (exit {rc}): {first or 'no message'}")
        raise failure  # type: ignore[misc]
    meta = tables.meta
    meta.kind = "perf-data"
    meta.extra["perf_script"] = " ".join(["perf", *argv[1:]])
    if symfs:
        meta.extra["symfs"] = symfs
    host, release = meta.extra.get("hostname"), meta.extra.get("os_release")
    if (host and host != platform.node()) or (release and release != platform.release()):
        meta.warn(
            f"recorded on {host} ({release}), read on {platform.node()} "
            f"({platform.release()}): user-space symbols were resolved against this "
            "machine's binaries and may be wrong or [unknown]; print it with perf script "
            "on the recording machine for exact stacks"
        )
    if stderr:
        meta.extra["perf_script_stderr"] = stderr.splitlines()[:10]
    return tables
