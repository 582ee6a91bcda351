"""Which name a thread is shown by: the same in every record and every renderer.

``comm`` is the kernel's name of a thread (perf's comm). ``thread`` is the most telling
name: a Python thread's name from py-spy ("redis-worker-0") when the kernel only has the
process's comm for it ("python3": CPython does not name OS threads), else the comm (Go
threads are only ever the process name; a thread that named itself keeps its name).
"""

from __future__ import annotations

from ..parsers.model import SourceTables

PYSPY_KINDS = ("pyspy-chrometrace", "pyspy-speedscope", "pyspy-raw")


def _names(sources: list[SourceTables], pyspy: bool) -> dict[int, str]:
    out: dict[int, str] = {}
    for s in sources:
        if (s.meta.kind in PYSPY_KINDS) != pyspy:
            continue
        for tid, name in zip(s.threads["tid"], s.threads["name"], strict=True):
            if isinstance(name, str) and name and int(tid) not in out:
                out[int(tid)] = name
    return out


def kernel_comms(sources: list[SourceTables]) -> dict[int, str]:
    """OS thread id -> its comm, from the first source other than py-spy that names it."""
    return _names(sources, pyspy=False)


def thread_names(sources: list[SourceTables]) -> dict[int, str]:
    """OS thread id -> the most telling name (see the module docstring)."""
    comms = kernel_comms(sources)
    pyspy = _names(sources, pyspy=True)
    pid_of = {
        int(t): int(p)
        for s in sources
        for t, p in zip(s.threads["tid"], s.threads["pid"], strict=True)
        if int(p) > 0
    }
    out = dict(comms)
    for tid, name in pyspy.items():
        comm = comms.get(tid)
        process_comm = comms.get(pid_of.get(tid, -1))
        if comm is None or comm == process_comm:
            out[tid] = name
    return out
