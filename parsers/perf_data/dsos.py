"""What the user-space DSOs' lookups cost the stacks, said once per DSO and counted.

A recording names its DSOs by the paths the process saw: a containerised service's
``/app/service`` and ``/app/lib/libfoo.so`` live in its own mount namespace, and on the
machine that reads the capture they are absent, or other files. ``symbols.Symbolizer``
never names nor unwinds a frame from a file whose build id differs from the recorded one;
this module turns its ``lookups`` into what the user is told (never a silent ``[unknown]``):

* the ``symbols`` note lists every user-space DSO the stacks touched, with the file read;
* a DSO not found (``perf_dso_missing``) or found only in another build
  (``perf_dso_build_id_mismatch``) is counted in the losses ledger, keyed by its path, as
  the frames left unnamed, and warned about once, naming the fix (``--symfs``, a capture's
  archive);
* when no user-space DSO at all could be read, one warning says so, and the symbols note
  keeps it as ``unreadable``: the report opens with it (``blind``).
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from .symbols import Lookup, Symbolizer

#: per-DSO warnings before the rest are summed up in one line
MAX_WARNED = 10

FIX = "pass --symfs DIR (the recording's root, e.g. the container's), or capture with " + (
    "`tracecorr capture --archive`"
)
STAT = {
    "missing": "perf_dso_missing",
    "mismatch": "perf_dso_build_id_mismatch",
    "debug-only": "perf_dso_debug_only",
}


def _hex(b: bytes | None) -> str:
    return b.hex() if b else "none"


def warning(lookup: Lookup, symfs: str | None) -> str:
    """The one line said about a DSO that could not be read."""
    path = lookup.path
    if lookup.status == "mismatch":
        here = "" if lookup.file in (path, None) else f" ({lookup.file})"
        return (
            f"{path}: the file here{here} has build id {_hex(lookup.found_build_id)}, the "
            f"recording says {_hex(lookup.build_id)}: its frames are left unnamed; {FIX}"
        )
    if lookup.status == "debug-only":
        return (
            f"{path}: only its separate debug info is here ({lookup.file}), whose program "
            f"headers hold no file offsets: its frames are left unnamed rather than named "
            f"wrongly; {FIX}"
        )
    where = f" (nor under the symfs {symfs})" if symfs else ""
    bid = f", build id {lookup.build_id.hex()}" if lookup.build_id else ""
    what = "not found here" if lookup.file is None else "not a readable ELF file here"
    return f"{path}{bid}: {what}{where}: its frames are left unnamed; {FIX}"


def frames_in(frames: list[tuple], occurrences: np.ndarray, paths: set[str]) -> Counter:
    """Frames of the sampled stacks in each DSO of *paths*: each distinct stack's frames
    times the rows that have it."""
    n: Counter = Counter()
    if not paths:
        return n
    for fr, k in zip(frames, occurrences.tolist(), strict=True):
        for f in fr:
            if f[2] in paths:
                n[f[2]] += k
    return n


def dso_losses(
    symbolizer: Symbolizer,
    frames: list[tuple],
    occurrences: np.ndarray,
    header: dict,
    out,
    stack_images: np.ndarray | None = None,
) -> None:
    """Note, count and warn about the user-space DSOs the stacks touched (module docstring):
    *frames* are the distinct stacks' frames, *occurrences* how many rows have each,
    *stack_images* each distinct stack's process image (pid << 32 | comm code), *header*
    the ``symbols`` note, *out* the Assembly (its ``counts`` and ``warnings``)."""
    lookups = sorted(symbolizer.lookups.values(), key=lambda x: x.path)
    if not lookups:
        return
    header["user_dsos"] = [x.as_dict() for x in lookups]
    bad = [x for x in lookups if x.status in STAT]
    if not bad:
        return
    n = frames_in(frames, occurrences, {x.path for x in bad})
    for x in bad:
        key = (STAT[x.status], x.path)
        out.counts[key] = out.counts.get(key, 0) + n[x.path]
    pid, theirs = _main_image(frames, occurrences, stack_images)
    if theirs and theirs <= {x.path for x in bad} and "unreadable" not in header:
        # the report opens with it (the correlator's ``blind``): C stacks cannot prove a
        # library call, so zero records then is not a clean result
        whose = f"process {pid}'s" if pid is not None else "the stacks'"
        header["unreadable"] = (
            f"none of the {len(theirs)} user-space DSO(s) of {whose} stacks could be read "
            f"here (e.g. {sorted(theirs)[0]}): user frames are left unnamed and DWARF stacks "
            f"stop at them, so C callchains prove no library call. Likely: the service ran "
            f"in its own mount namespace (a container) or on another machine; {FIX}"
        )
        out.warnings.append(header["unreadable"])
    for x in bad[:MAX_WARNED]:
        out.warnings.append(warning(x, symbolizer.symfs))
    if len(bad) > MAX_WARNED:
        rest = bad[MAX_WARNED:]
        out.warnings.append(
            f"{len(rest)} more DSO(s) could not be read (their frames are left unnamed): "
            + ", ".join(x.path for x in rest[:20])
        )


def _main_image(
    frames: list[tuple], occurrences: np.ndarray, stack_images: np.ndarray | None
) -> tuple[int | None, set[str]]:
    """The process image (pid and comm) with the most stacked rows, the service's: perf
    records the launchers of a process too, and its own pid before its exec, whose DSOs
    are the host's. Its pid and the user-space DSOs in at least 1% of its stacks but the
    dynamic loader (every stack's when the images are not known)."""
    if stack_images is None or not len(stack_images):
        pid, mine = None, np.ones(len(frames), bool)
    else:
        images = np.asarray(stack_images, np.int64)
        ids, inv = np.unique(images, return_inverse=True)
        top = int(ids[np.argmax(np.bincount(inv, weights=occurrences))])
        pid, mine = top >> 32, images == top
    weight: dict[str, float] = {}
    for fr, m, n in zip(frames, mine.tolist(), occurrences.tolist(), strict=True):
        if m:
            for path in {f[2] for f in fr}:
                if isinstance(path, str) and path.startswith("/") and not _LOADER.match(path):
                    weight[path] = weight.get(path, 0.0) + n
    # a DSO in fewer than 1% of the image's stacks is noise: a sample taken inside execve
    # still shows the launcher's (the host's) libc under the new comm
    least = _NOISE * float(occurrences[mine].sum())
    return pid, {path for path, n in weight.items() if n >= least}


#: the share of a process image's stacks below which a DSO they touch is left out of
#: "none of its DSOs could be read"
_NOISE = 0.01

#: the dynamic loader (ld-linux-x86-64.so.2, ld-musl-x86_64.so.1...): it runs at start-up and
#: says nothing of the calls the report is about, and a container may share the host's path
_LOADER = re.compile(r".*/ld-(linux|musl)[^/]*\.so[^/]*$")
