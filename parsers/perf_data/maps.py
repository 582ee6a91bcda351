"""Per-process memory maps over time, and thread names over time, as perf keeps them.

``perf script`` symbolises a sample with the maps its process had when the sample was
delivered, and prints the thread's comm as of then. Both are replayed here from the side-band
records, in delivery order (:mod:`.order`):

* MMAP / MMAP2 insert a map into the process (pid) of the record; a map overlapping older
  ones cuts them, keeping the parts outside it (perf's ``maps__fixup_overlappings``).
  Records with pid -1 describe the kernel.
* FORK of a new process gives the child a copy of its parent's maps at that moment (threads
  share their process's maps); synthesised forks (``PERF_RECORD_MISC_FORK_EXEC``) do not.
* COMM with the exec flag changes the comm only: the old image's maps stay until the new
  image's maps overlap them, as in perf. This is also what is right: the exec COMM is
  emitted early in ``execve``, and samples taken later in the same syscall (a switch-out in
  ``load_elf_binary``) still carry the old image's user registers, whose ``__execve`` frame
  only the old maps can name.
* A thread's comm: COMM sets it; FORK gives the child the parent's comm (or ``:tid`` when
  the parent never had one); an unknown thread is ``:tid`` and thread 0 is ``swapper``.

Every change to a process's maps makes a new immutable *version*; a sample's version is the
one current at its delivery position, found with ``searchsorted`` per process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .records import K_COMM, K_FORK, K_MMAP, SideRecord

PROT_EXEC = 4
MISC_FORK_EXEC = 1 << 13  # PERF_RECORD_MISC_FORK_EXEC (synthesised fork of an existing task)


@dataclass(frozen=True)
class Dso:
    """What a map is backed by, and how perf names it."""

    name: str  # as perf prints it: the file path, [vdso], [kernel.kallsyms], ...
    kind: str  # "file", "vdso", or "anon" (no file: addresses are printed as they are)
    build_id: bytes | None = None


def is_anon(name: str) -> bool:
    return name == "//anon" or name.startswith(("/dev/zero", "/anon_hugepage"))


def is_no_dso(name: str) -> bool:
    return name.startswith(("[stack", "/SYSV")) or name == "[heap]"


@dataclass(frozen=True)
class MapVersion:
    """The maps of one process at one moment, sorted by start, non-overlapping."""

    start: np.ndarray  # uint64
    end: np.ndarray  # uint64 (exclusive)
    pgoff: np.ndarray  # uint64
    dso: np.ndarray  # int64 index into Timeline.dsos

    def find(self, ip: int) -> int:
        """Index of the map containing *ip*, or -1."""
        j = int(np.searchsorted(self.start, np.uint64(ip), side="right")) - 1
        if j >= 0 and ip < int(self.end[j]):
            return j
        return -1


EMPTY = MapVersion(
    np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.int64)
)


@dataclass
class KernelMap:
    start: int
    end: int
    pgoff: int
    name: str


@dataclass
class Timeline:
    """Maps and comms replayed in delivery order (see the module docstring)."""

    dsos: list[Dso] = field(default_factory=list)
    versions: list[MapVersion] = field(default_factory=lambda: [EMPTY])
    kernel: list[KernelMap] = field(default_factory=list)
    map_changes: dict[int, tuple[list[int], list[int]]] = field(default_factory=dict)
    comm_changes: dict[int, tuple[list[int], list[str]]] = field(default_factory=dict)
    _dso_ids: dict[tuple[str, bytes | None], int] = field(default_factory=dict)
    _current: dict[int, list[tuple[int, int, int, int]]] = field(default_factory=dict)
    _comm: dict[int, str] = field(default_factory=dict)

    def dso_id(self, name: str, kind: str, build_id: bytes | None) -> int:
        key = (name, build_id if kind == "file" else None)
        i = self._dso_ids.get(key)
        if i is None:
            i = self._dso_ids[key] = len(self.dsos)
            self.dsos.append(Dso(name, kind, build_id))
        return i

    # -- replay ---------------------------------------------------------------------------

    def replay(self, side: list[SideRecord], position: dict[int, int]) -> None:
        """Apply side records in delivery order; *position* maps a record's g to its delivery
        position (records not delivered are skipped)."""
        for rec in sorted((r for r in side if r.g in position), key=lambda r: position[r.g]):
            pos = position[rec.g]
            f = rec.fields
            if rec.kind == K_MMAP:
                self._mmap(pos, f, rec.misc)
            elif rec.kind == K_FORK:
                self._fork(pos, f, rec.misc)
            elif rec.kind == K_COMM:
                self._set_comm(pos, f["tid"], f["comm"])

    def _set_comm(self, pos: int, tid: int, comm: str | None) -> None:
        if comm is None:
            self._comm.pop(tid, None)
        else:
            self._comm[tid] = comm
        p, c = self.comm_changes.setdefault(tid, ([], []))
        p.append(pos)
        c.append(comm if comm is not None else default_comm(tid))

    def _fork(self, pos: int, f: dict, misc: int) -> None:
        parent_comm = self._comm.get(f["ptid"])
        self._set_comm(pos, f["tid"], parent_comm)
        if f["pid"] != f["ppid"] and not misc & MISC_FORK_EXEC:
            self._set_maps(pos, f["pid"], list(self._current.get(f["ppid"], [])))

    def _mmap(self, pos: int, f: dict, misc: int) -> None:
        name = f["filename"]
        start, length, pgoff = f["start"], f["len"], f["pgoff"]
        if length == 0 or start + length > (1 << 64):
            return
        if f["pid"] == -1 or (misc & 7) == 1:  # kernel (cpumode kernel)
            if name.startswith("[kernel.kallsyms]") or not self.kernel:
                self.kernel = [m for m in self.kernel if not m.name.startswith("[kernel.kallsyms]")]
            self.kernel.append(KernelMap(start, start + length, pgoff, name))
            return
        prot = f.get("prot", PROT_EXEC)
        if name.startswith("[vdso"):
            d = self.dso_id("[vdso]", "vdso", None)
            pgoff = 0
        elif is_anon(name) or is_no_dso(name):
            if prot & PROT_EXEC:
                name = f"/tmp/perf-{f['pid']}.map"
            d = self.dso_id(name, "anon", None)
        else:
            d = self.dso_id(name, "file", f.get("build_id"))
        maps = _insert(self._current.get(f["pid"], []), (start, start + length, pgoff, d))
        self._set_maps(pos, f["pid"], maps)

    def _set_maps(self, pos: int, pid: int, maps: list[tuple[int, int, int, int]]) -> None:
        self._current[pid] = maps
        if maps:
            arr = np.array(maps, dtype=np.uint64).reshape(-1, 4)
            v = MapVersion(arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy(),
                           arr[:, 3].astype(np.int64))  # fmt: skip
        else:
            v = EMPTY
        self.versions.append(v)
        p, ids = self.map_changes.setdefault(pid, ([], []))
        p.append(pos)
        ids.append(len(self.versions) - 1)

    # -- lookups --------------------------------------------------------------------------

    def versions_at(self, pid: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Map version of each (pid, delivery position); 0 (no maps) where none."""
        out = np.zeros(len(pid), np.int64)
        if not len(pid):
            return out
        for p in np.unique(pid).tolist():
            ch = self.map_changes.get(p)
            if not ch:
                continue
            sel = np.flatnonzero(pid == p)
            cpos = np.asarray(ch[0], np.int64)
            j = np.searchsorted(cpos, pos[sel], side="right") - 1
            ids = np.asarray(ch[1], np.int64)
            out[sel] = np.where(j >= 0, ids[np.maximum(j, 0)], 0)
        return out

    def comm_codes(self, tid: np.ndarray, pos: np.ndarray, code_of) -> np.ndarray:
        """perf's comm of each (tid, delivery position) — changes at that position included
        — as codes given by *code_of(name)* (called once per distinct name and thread)."""
        out = np.zeros(len(tid), np.int32)
        if not len(tid):
            return out
        order = np.argsort(tid, kind="stable")
        ts = tid[order]
        bounds = np.flatnonzero(np.r_[True, ts[1:] != ts[:-1], True])
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            t = int(ts[a])
            sel = order[a:b]
            ch = self.comm_changes.get(t)
            if not ch:
                out[sel] = code_of(default_comm(t))
                continue
            cpos = np.asarray(ch[0], np.int64)
            j = np.searchsorted(cpos, pos[sel], side="right") - 1
            codes = np.array([code_of(c) for c in ch[1]] + [code_of(default_comm(t))], np.int32)
            out[sel] = codes[np.where(j >= 0, j, len(ch[1]))]
        return out

    def kernel_map(self, ip: int) -> KernelMap | None:
        for m in self.kernel:
            if m.start <= ip < m.end:
                return m
        return None


def default_comm(tid: int) -> str:
    return "swapper" if tid == 0 else f":{tid}"


def _insert(
    maps: list[tuple[int, int, int, int]], new: tuple[int, int, int, int]
) -> list[tuple[int, int, int, int]]:
    """*maps* (sorted, disjoint) with *new* inserted; overlapped maps keep their parts
    before and after it (the after part's file offset moves along)."""
    s, e = new[0], new[1]
    out = []
    for m in maps:
        ms, me, mp, md = m
        if me <= s or ms >= e:
            out.append(m)
            continue
        if ms < s:
            out.append((ms, s, mp, md))
        if me > e:
            out.append((e, me, mp + (e - ms), md))
    out.append(new)
    out.sort()
    return out
