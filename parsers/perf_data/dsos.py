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
* when no user-space DSO at all could be read, one warning says so first.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .symbols import Lookup, Symbolizer

#: per-DSO warnings before the rest are summed up in one line
MAX_WARNED = 10

FIX = "pass --symfs DIR (the recording's root, e.g. the container's), or capture with " + (
    "`tracecorr capture --archive`"
)
STAT = {"missing": "perf_dso_missing", "mismatch": "perf_dso_build_id_mismatch"}


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
    symbolizer: Symbolizer, frames: list[tuple], occurrences: np.ndarray, header: dict, out
) -> None:
    """Note, count and warn about the user-space DSOs the stacks touched (module docstring):
    *frames* are the distinct stacks' frames, *occurrences* how many rows have each, *header*
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
    if len(bad) == len(lookups):
        out.warnings.append(
            f"none of the {len(lookups)} user-space DSO(s) the stacks touch could be read "
            f"here (e.g. {bad[0].path}): user frames are left unnamed and DWARF stacks stop "
            f"at them; {FIX}"
        )
    for x in bad[:MAX_WARNED]:
        out.warnings.append(warning(x, symbolizer.symfs))
    if len(bad) > MAX_WARNED:
        rest = bad[MAX_WARNED:]
        out.warnings.append(
            f"{len(rest)} more DSO(s) could not be read (their frames are left unnamed): "
            + ", ".join(x.path for x in rest[:20])
        )
