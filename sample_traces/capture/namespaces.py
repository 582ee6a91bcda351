"""Run a workload as a container would, without docker: its own PID namespace, and its own
mount namespace in which the service lives at a path the host does not have.

    pid:    ``unshare --pid --fork --mount-proc``: the workload's getpid()/gettid() (what it
            logs, and what the Go runtime uses as M ids) are the namespace's ids, while perf,
            recording from outside, sees the host's.
    mount:  ``unshare --mount``: a private root (a tmpfs holding recursive binds of every
            top-level host directory) with the capture directory mounted at ``/app``, chrooted
            into. The service runs as ``/app/<binary>`` and loads its libhiredis from
            ``/app/lib`` (a copy of the host's): perf.data records those paths, which exist
            neither on the host nor on the machine that reads the capture.

Both at once is the usual container. Every id the workload logs is the namespace's; the host
pid of the workload is found through ``/proc/*/status`` ``NSpid`` (``host_pid``).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

#: where the capture directory appears inside the mount namespace
APP = "/app"

#: mounts the private root, then runs "$@" chrooted into it (sh -c SCRIPT sh ROOT OUT ARGV...)
_ROOT_SCRIPT = "; ".join(  # one line: perf's header prints the command line as it is
    [
        'set -e; R="$1"; OUT="$2"; shift 2',
        'mount -t tmpfs tracecorr-root "$R"',
        'for d in /*; do n="${d#/}"',
        'if [ -L "$d" ]; then cp -P "$d" "$R/$n"',
        'elif [ -d "$d" ] && [ "$n" != proc ] && [ "$n" != app ]; then '
        'mkdir -p "$R/$n"; mount --rbind "$d" "$R/$n"; fi',
        "done",
        'mkdir -p "$R/proc" "$R/app"',
        'mount --bind "$OUT" "$R/app"',
        'mount -t proc proc "$R/proc"',
        # The set-up's burst of (DWARF) samples can overflow perf's ring buffer just as the
        # service execs, and a lost COMM/MMAP leaves its binary unnamed: let perf drain first.
        "sleep 0.3",
        'exec chroot "$R" "$@"',
    ]
)


def library_copy(out: Path, soname: str = "libhiredis.so") -> Path:
    """A copy of the host's libhiredis in ``out/lib`` (seen as ``/app/lib`` inside), so that
    the library's recorded path is one the host does not have."""
    import ctypes.util

    found = ctypes.util.find_library(soname.removeprefix("lib").split(".so")[0])
    if not found:
        raise FileNotFoundError(f"{soname} not found on this host")
    src = next(
        p
        for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/lib")
        if (p := Path(d) / found).exists()
    )
    lib = out / "lib"
    lib.mkdir(exist_ok=True)
    shutil.copy2(src.resolve(), lib / found)
    return lib / found


#: the namespace's init runs the workload, then lingers: when a PID namespace's init exits the
#: kernel kills everything left in it, a sampler inside (py-spy) before it wrote its file
_LINGER = '"$@"; rc=$?; sleep {s}; exit $rc'


def container_argv(
    argv: list[str], out: Path, pid: bool = True, mount: bool = False, linger_s: float = 0
) -> list[str]:
    """*argv* run in new namespaces. With *mount*, paths under *out* in *argv* must already be
    spelled as the namespace sees them (``inside(out, path)``). *linger_s*: the namespace
    outlives the workload by this long (for tools running inside it)."""
    if linger_s:
        argv = ["sh", "-c", _LINGER.format(s=linger_s), "sh", *argv]
    prefix = ["unshare"]
    if pid:
        prefix += ["--pid", "--fork"] + ([] if mount else ["--mount-proc"])
    if not mount:
        return prefix + argv
    root = out / ".root"
    root.mkdir(exist_ok=True)
    env = ["env", f"LD_LIBRARY_PATH={APP}/lib"]
    return (
        prefix
        + ["--mount", "--propagation", "private", "sh", "-c", _ROOT_SCRIPT, "sh"]
        + [
            str(root),
            str(out),
            *env,
            *argv,
        ]
    )


def enter(host_pid: int, argv: list[str]) -> list[str]:
    """*argv* run inside *host_pid*'s PID and mount namespaces (``nsenter``), where it sees
    the namespace's /proc and ids."""
    return ["nsenter", "-t", str(host_pid), "-p", "-m", *argv]


def inside(out: Path, path: Path | str) -> str:
    """*path* (under *out*) as the mount namespace sees it."""
    return APP + "/" + str(Path(path).resolve().relative_to(out.resolve()))


def nspid(pid: int) -> list[int]:
    """The ``NSpid`` chain of a host pid (host first, innermost namespace last)."""
    return nspid_of(Path(f"/proc/{pid}/status")) or [pid]


def host_pid(ancestor: int, ns_pid: int, timeout: float = 30) -> int:
    """The host pid of the process that is *ns_pid* in its namespace, among *ancestor*'s
    descendants (the ``unshare`` we started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        todo = [ancestor]
        while todo:
            p = todo.pop()
            try:
                chain = nspid(p)
                kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
            except OSError:
                continue
            if len(chain) > 1 and chain[-1] == ns_pid:
                return p
            todo += [int(k) for k in kids]
        time.sleep(0.01)
    raise TimeoutError(f"no descendant of {ancestor} is pid {ns_pid} in its namespace")


class NSpidLog:
    """Ground truth for thread-id mapping: every thread in another PID namespace than ours,
    with its ``NSpid`` chain, read from ``/proc`` every *period* while the workload runs (a
    context manager). Tests compare the report's mapping with it; the report never sees it
    (it is not capture.json's ``threads``, which only ``tracecorr capture`` writes)."""

    def __init__(self, period: float = 0.02) -> None:
        import threading

        self.period = period
        self.chains: dict[int, list[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ours = os.readlink("/proc/self/ns/pid")

    def __enter__(self) -> NSpidLog:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.look()
            self._stop.wait(self.period)

    def look(self) -> None:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if os.readlink(proc / "ns" / "pid") == self._ours:
                    continue
                tasks = list((proc / "task").iterdir())
            except OSError:
                continue
            for t in tasks:
                try:
                    chain = nspid_of(t / "status")
                except OSError:
                    continue
                if len(chain) > 1:
                    self.chains[chain[0]] = chain


def nspid_of(status: Path) -> list[int]:
    for line in status.read_text().splitlines():
        if line.startswith("NSpid:"):
            return [int(x) for x in line.split()[1:]]
    return []
