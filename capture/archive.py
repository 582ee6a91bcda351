"""The DSOs of a captured process, kept in the capture directory (``--archive``).

A containerised service lives in its own mount namespace: perf.data records its DSOs by the
paths the container sees (``/app/service``, ``/app/lib/libfoo.so``), which the host does not
have, or has as other files, and neither has the laptop that reads the capture later. While
the process lives its files are readable through ``/proc/PID/root/<path>``; by the time
perf.data is written it may have exited. So:

* ``snapshot`` (at capture start) copies, or hard-links, the file of every executable
  file-backed mapping of the process (``/proc/PID/maps``), read through ``/proc/PID/root``,
  into ``DIR/symfs/<path as recorded>``;
* ``finish`` (once perf.data is written) takes the mappings of files mapped since, reads
  perf.data with the native reader against that tree, and keeps the DSOs its stacks touch
  (the report's needs: the DSOs named or unwound through), adds the touched DSOs of the
  other recorded processes (peers) from the host where their build ids match, drops the
  rest, and writes a build-id index, ``symfs/.build-id/xx/yyyy -> ../../<path>``, as
  ``perf archive`` does. capture.json's ``archive`` lists the files with their build ids.

``tracecorr report DIR`` then uses ``DIR/symfs`` as its symfs, and `tracecorr capture` prints
perf script with it: the capture reads the same anywhere. Default: on when the process is in
another mount namespace than ours (its paths are not ours), else off.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..parsers.perf_data.symbols import elf_info
from .nspid import other_namespace

#: the archive's directory in the capture (capture.json ``archive.dir``)
DIR = "symfs"
#: at most this many bytes of peers' DSOs are copied from the host (a system-wide capture
#: touches every process's)
HOST_FILL_BYTES = 512 << 20


@dataclass
class Snapshot:
    """The process's mapped files, copied at capture start (``snapshot``)."""

    pid: int
    root: Path  # DIR/symfs: the files at their recorded paths
    mount_namespace: str  # "other", "same", or "unknown" (/proc/PID/ns/mnt unreadable)
    enabled: bool
    files: dict[str, str] = field(default_factory=dict)  # recorded path -> "link" | "copy"
    failed: dict[str, str] = field(default_factory=dict)  # recorded path -> why

    def take(self) -> None:
        """Copy every executable file mapping of the process not copied yet (a library
        loaded since is mapped now); nothing when it has exited."""
        for path, span in executable_mappings(self.pid).items():
            if path not in self.files and path not in self.failed:
                try:
                    self.files[path] = _copy(_mapped_file(self.pid, path, span), self.root, path)
                except OSError as exc:
                    self.failed[path] = exc.strerror or str(exc)


def executable_mappings(pid: int) -> dict[str, str]:
    """The files of *pid*'s executable mappings, as /proc/PID/maps names them to us (what
    perf, attaching, records), each with its first mapping's address range, in map order
    ({} when the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) == 6 and "x" in parts[1] and parts[5].startswith("/"):
            out.setdefault(parts[5].removesuffix(" (deleted)"), parts[0])
    return out


def _mapped_file(pid: int, path: str, span: str) -> Path:
    """The file the mapping holds, opened through ``/proc/PID/map_files/START-END``: the
    very inode mapped, whatever the path says. A chrooted process's maps name its files
    from our root through mounts only its namespace has, a path neither we nor
    ``/proc/PID/root`` can follow (measured); map_files needs CAP_SYS_ADMIN, else the path
    through /proc/PID/root is tried."""
    lo, _, hi = span.partition("-")  # maps pads to 8 digits, map_files does not
    direct = Path(f"/proc/{pid}/map_files/{int(lo, 16):x}-{int(hi, 16):x}")
    try:
        os.stat(direct)
        return direct
    except OSError:
        return Path(f"/proc/{pid}/root{path}")


def in_tree(root: Path, path: str) -> Path:
    """Where the recorded *path* lives in the archive *root* (as ``--symfs`` looks it up)."""
    return root / path.lstrip("/")


def _copy(src: Path, root: Path, path: str) -> str:
    """*src* into the tree at *path*: a hard link where it can be (same mount; it keeps the
    content the process mapped even if the file is replaced), else a copy."""
    dst = in_tree(root, path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return "copy"
    try:
        os.link(src, dst)
        return "link"
    except OSError:
        shutil.copyfile(src, dst)
        return "copy"


def snapshot(pid: int, out: Path, archive: bool | None = None) -> Snapshot:
    """Start the archive of *pid* in *out*: copy its mapped files now, while it lives
    (*archive* None: only when it is in another mount namespace)."""
    other = other_namespace(pid, "mnt")
    ns = "unknown" if other is None else ("other" if other else "same")
    snap = Snapshot(pid, out / DIR, ns, enabled=archive if archive is not None else bool(other))
    if snap.enabled:
        snap.take()
    return snap


def touched_dsos(data: Path, root: Path) -> list[dict] | None:
    """The user-space DSOs perf.data's stacks touch, read against the tree *root* (the
    native reader's ``symbols.user_dsos``: path, recorded build id, status, file); None when
    the native reader cannot read the file (then everything is kept)."""
    from ..parsers.errors import InputError
    from ..parsers.perf_data import file as F
    from ..parsers.perf_data import parse

    try:
        tables = parse(data, symfs=str(root))
    except (F.Unsupported, InputError):
        return None
    return list(tables.meta.extra.get("symbols", {}).get("user_dsos", []))


def finish(snap: Snapshot, out: Path, meta: dict) -> Path | None:
    """Keep what the report needs (module docstring) and describe it in capture.json's
    ``archive``; the symfs to print perf script with, None without an archive."""
    if not snap.enabled:
        meta["archive"] = {"dir": None, "files": [], "mount_namespace": snap.mount_namespace}
        return None
    snap.take()  # libraries mapped since the start, if the process still runs
    data = out / "perf.data"
    dsos = touched_dsos(data, snap.root) if data.exists() and data.stat().st_size else []
    keep = set(snap.files) if dsos is None else _needed(snap, dsos)
    for path in set(snap.files) - keep:
        in_tree(snap.root, path).unlink(missing_ok=True)
        del snap.files[path]
    _prune(snap.root)
    files = [_describe(snap.root, p) for p in sorted(snap.files)]
    _index(snap.root, files)
    meta["archive"] = {
        "dir": DIR if files else None,
        "files": files,
        "mount_namespace": snap.mount_namespace,
        "pid": snap.pid,
        "touched": None if dsos is None else len(dsos),
        "failed": [{"path": p, "error": e} for p, e in sorted(snap.failed.items())],
    }
    if not files:
        shutil.rmtree(snap.root, ignore_errors=True)
        return None
    return snap.root


def _needed(snap: Snapshot, dsos: list[dict]) -> set[str]:
    """The snapshot's files the stacks touched and that are the recorded build (a file
    replaced since it was mapped is not); touched DSOs of other processes are added from
    the host where they are the recorded build."""
    keep: set[str] = set()
    budget = HOST_FILL_BYTES
    for d in dsos:
        path = d["path"]
        if path in snap.files:
            if d["status"] == "ok":
                keep.add(path)
            else:
                snap.failed[path] = f"snapshot is not the recorded build ({d['status']})"
            continue
        host = Path(path)
        if d["status"] != "ok" or not host.is_file() or host.stat().st_size > budget:
            continue
        want = d.get("build_id")
        info = elf_info(path)
        if info is None or (want and (info.build_id or b"").hex()[: len(want)] != want):
            continue
        try:
            snap.files[path] = _copy(host, snap.root, path)
        except OSError:
            continue
        budget -= host.stat().st_size
        keep.add(path)
    return keep


def _describe(root: Path, path: str) -> dict:
    f = in_tree(root, path)
    info = elf_info(str(f))
    bid = info.build_id.hex() if info is not None and info.build_id else None
    return {"path": path, "build_id": bid, "bytes": f.stat().st_size}


def _index(root: Path, files: list[dict]) -> None:
    """``root/.build-id/xx/yyyy -> ../../<path>`` for every file with a build id (perf's
    layout: a reader finds a DSO by build id whatever its path)."""
    for f in files:
        bid = f["build_id"]
        if not bid:
            continue
        link = root / ".build-id" / bid[:2] / bid[2:]
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to("../../" + f["path"].lstrip("/"))


def _prune(root: Path) -> None:
    """Remove the directories left empty under *root*, deepest first."""
    for d, _, _ in sorted(os.walk(root), key=lambda x: -x[0].count(os.sep)):
        if Path(d) != root and not os.listdir(d):
            os.rmdir(d)
