"""Why a DWARF stack stopped inside user code, and the splice that unwinds past a cut copy.

With ``--call-graph dwarf,SIZE`` the kernel copies the user stack from the stack pointer up,
SIZE bytes at most, in the sampling context (an NMI or a tracepoint), where it cannot fault
pages in: the copy ends at the first page that is not present. Two ways it falls short:

* ``copy-too-small``: the copy is as long as requested (dyn_size == size) and the return
  address lies beyond it; a larger SIZE reaches it (perf takes up to 65528);
* ``copy-cut``: the kernel stopped before SIZE (dyn_size < size), at a page boundary: the
  pages under a large stack frame were never touched. Measured on Debian's libhiredis 0.14:
  ``redisBufferRead`` keeps a 16 KiB buffer on its stack (``sub $0x4018,%rsp``) and ``read``
  fills only its first bytes, so every reply's read had 1 to 1.5 KiB of copy and its return
  address 16 488 bytes above the stack pointer, with any SIZE up to 65528; frame pointers
  and LBR do not help either. What does: building with ``-fstack-clash-protection`` (the
  frame's pages are probed as it is allocated), or touching thread stacks in advance
  (``mlockall``).

and two ways the CFI itself is missing: ``no-cfi`` (no ``.eh_frame`` row for the pc, and no
frame pointer to follow) and ``unreadable-dso`` (the DSO's file is not here, or is another
build). Anything else is ``other``, with the unwinder's own reason.

The splice (``splice``): a stopped frame's CFA is exact (a register plus an offset, known
before anything is read from the frame). The thread's nearest sample, before or after, that
has a frame with the same CFA and callers above it ran in the same activation of the caller,
provided no sample of the thread in between had its stack pointer at or above that CFA (the
activation was not left). Its caller frames are then this stack's: the functions are right,
the callers' lines may not be (their pcs are the other sample's call sites), so such a stack
is marked ``spliced``. In hiredis's case the donor is the ``write`` of the same
``redisGetReply``, whose ``redisBufferWrite`` frame has the ``redisBufferRead`` frame's CFA.
A donor whose own chain stopped (at a caller's 32 KiB frame, say) gives what it has, and the
spliced chain goes on from its end in the next round. A complete chain is never changed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .unwind import MAX_FRAMES, NO_CFI_DSO, OUTSIDE, Unwound

#: the largest user stack copy perf record asks for (``--call-graph dwarf,65528``)
PERF_MAX_STACK = 65528
PAGE = 4096
#: where a chain ends without CFI that says so: the dynamic loader's entry, and a new
#: thread's first instructions in clone (before its CFI marks the outermost frame)
OUTERMOST = frozenset({"_start", "_dl_start_user", "clone3", "__clone3", "clone", "__clone"})
UNREADABLE_FIX = (
    "pass --symfs DIR (the recording's root), or capture with `tracecorr capture --archive`"
)


@dataclass(frozen=True)
class StackStop:
    """Why one stack's unwinding stopped inside user code (``meta.extra["stack_stops"]``):
    *needed* the bytes of stack copy the next return address needed (None when the stop was
    not the copy's), *had* the bytes the sample held, *requested* what the recording asked
    for (the sample's stack size), *spliced* whether its outer frames come from another
    sample of the thread."""

    kind: str
    text: str
    needed: int | None
    had: int
    requested: int
    spliced: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def dwarf_size(needed: int) -> int:
    """The ``--call-graph dwarf,SIZE`` that copies *needed* bytes: a power of two (perf's
    sizes are multiples of 8), at most perf's 65528."""
    size = 1 << max(needed - 1, 1).bit_length()
    return min(size, PERF_MAX_STACK)


def classify(u: Unwound, requested: int, last: tuple | None) -> StackStop | None:
    """The stop of a sample's unwinding, or None when its chain is complete (an outermost
    frame, the loader's entry, a thread's start) or has no user frame at all. *requested*:
    the sample's stack size; *last*: the frame where the sample's own unwinding stopped
    (``u.stop_frame``) as resolved ``(address, function, dso, kind)``: it names where the
    CFI was missing."""
    if u.complete or not u.pcs or last is None:
        return None
    if last[1] in OUTERMOST:
        return None
    if u.stop == OUTSIDE and u.want is not None and u.want >= u.sp:
        return _copy_stop(u, requested)
    where = _where(last)
    if u.unreadable:
        text = f"{last[2]} could not be read here (missing, or another build): its CFI is "
        return _stop("unreadable-dso", text + f"unknown; {UNREADABLE_FIX}", u, requested)
    if u.stop == NO_CFI_DSO:
        return _stop("no-cfi", f"no CFI at {where}: {last[2]} has no .eh_frame", u, requested)
    if u.stop == "no CFI and no frame pointer":
        return _stop("no-cfi", f"no CFI at {where}, and no frame pointer", u, requested)
    return _stop("other", f"unwinding stopped at {where}: {u.stop}", u, requested)


def _stop(kind: str, text: str, u: Unwound, requested: int, needed=None) -> StackStop:
    return StackStop(kind, text, needed, u.had, requested, u.spliced)


def _where(frame: tuple) -> str:
    """A frame as a user can look it up: ``dso+0xoffset`` (and its function when named)."""
    address, function, dso = frame[0], frame[1], frame[2]
    at = f"{dso}+{address:#x}" if address is not None else str(dso)
    return at if function in (None, "[unknown]") else f"{function} ({at})"


def _copy_stop(u: Unwound, requested: int) -> StackStop:
    """copy-too-small or copy-cut (module docstring), with the option or build fix."""
    needed = u.want + 8 - u.sp
    if u.had >= requested:
        if needed > PERF_MAX_STACK:
            fix = (
                f"more than perf copies ({PERF_MAX_STACK} bytes at most): record the callers "
                "with frame pointers (-fno-omit-frame-pointer, --call-graph fp)"
            )
        else:
            fix = f"record with --call-graph dwarf,{dwarf_size(needed)}"
        text = f"stack copy too small: needed {needed} bytes, had {u.had}: {fix}"
        return _stop("copy-too-small", text, u, requested, needed)
    end = u.sp + u.had
    text = f"stack copy cut short by the kernel at {end:#x}: "
    if end % PAGE == 0:
        text += (
            f"stack pages under a large frame were never touched (needed {needed} bytes, had "
            f"{u.had} of {requested}); build with -fstack-clash-protection or pre-touch "
            "thread stacks (mlockall)"
        )
    else:
        text += f"needed {needed} bytes, had {u.had} of {requested}"
    return _stop("copy-cut", text, u, requested, needed)


# --- the splice ----------------------------------------------------------------------------


#: splice rounds: a chain spliced onto a donor that itself stopped may go on from the
#: donor's end with another donor (the loader's start-up frames, deep library calls)
MAX_ROUNDS = 4


def splice(unw: list[Unwound | None], rows: np.ndarray, tid: np.ndarray, sp: np.ndarray) -> int:
    """Give each stopped sample of *unw* whose last frame's CFA is known the caller frames of
    its donor (module docstring), in rounds while chains grow; how many were spliced.
    *rows*: each sample's row; *tid*, *sp*: every row's thread and user stack pointer (0:
    unknown), so that samples that were not unwound still tell where their thread was."""
    active = [i for i, u in enumerate(unw) if _stopped_with_cfa(u)]
    spans = ThreadSpans(tid, sp) if active else None
    done: set[int] = set()
    for _ in range(MAX_ROUNDS):
        if not active:
            break
        joined = _splice_round(unw, active, rows, tid, spans)
        done.update(joined)
        active = [i for i in joined if _stopped_with_cfa(unw[i])]
    return len(done)


def _splice_round(unw, want: list[int], rows, tid, spans) -> list[int]:
    """One round of the splice for the samples *want*: those that got caller frames."""
    q_cfa = _addresses([unw[i].cfas[-1] for i in want], len(want))
    q = np.array(want, np.int64)[q_cfa > 0]  # a CFA past 2**63 is no user address
    q_cfa = q_cfa[q_cfa > 0]
    q_tid = tid[rows[q]]
    d_sample, d_frame, d_cfa = _donor_frames(unw, rows, tid, q_tid, q_cfa)
    if not len(d_sample):
        return []
    donor, frame = _nearest_donors(q, q_cfa, d_sample, d_frame, d_cfa, rows, tid, spans)
    joined = [
        (i, _joined(unw[i], unw[s], j))
        for i, s, j in zip(q.tolist(), donor.tolist(), frame.tolist(), strict=True)
        if s >= 0
    ]
    for i, u in joined:  # after every donor was read: a round's donors are its inputs
        unw[i] = u
    return [i for i, _ in joined]


def _stopped_with_cfa(u: Unwound | None) -> bool:
    """Does the chain end before an outermost frame whose CFA is known?"""
    return u is not None and not u.ends_complete and bool(u.pcs) and len(u.cfas) == len(u.pcs)


def _joined(u: Unwound, donor: Unwound, j: int) -> Unwound:
    """*u* with the callers of the donor's frame *j* (the one with u's last CFA) after it."""
    pcs = (u.pcs + donor.pcs[j + 1 :])[:MAX_FRAMES]
    cfas = (u.cfas + donor.cfas[j + 1 :])[: len(pcs)]
    end = donor.end or donor.stop
    own = u.own or len(u.pcs)
    return Unwound(pcs, cfas, u.stop, u.sp, u.had, u.want, u.unreadable, True, end, own)


def _donor_frames(
    unw: list[Unwound | None], rows: np.ndarray, tid: np.ndarray, q_tid, q_cfa
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sample, frame, CFA) of every frame that has a caller above it, in the samples of the
    threads that have a stopped sample, and whose CFA is one a stopped sample needs."""
    threads = np.isin(tid[rows], np.unique(q_tid))
    cand = [i for i in np.flatnonzero(threads).tolist() if unw[i] is not None]
    if not cand:
        return (np.zeros(0, np.int64),) * 3
    # frames with a caller above them: the last frame's pc has none
    ends = [min(len(unw[i].cfas), len(unw[i].pcs) - 1) for i in cand]
    lens = np.array(ends, np.int64)
    total = int(lens.sum())
    flat = (c for i, e in zip(cand, ends, strict=True) for c in unw[i].cfas[:e])
    cfa = _addresses(flat, total)
    sample = np.repeat(np.array(cand, np.int64), lens)
    frame = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
    keep = np.isin(cfa, q_cfa)
    return sample[keep], frame[keep], cfa[keep]


def _addresses(values, n: int) -> np.ndarray:
    """u64 addresses as int64: a CFA computed from a damaged stack may be any u64 (masked to
    64 bits); those past 2**63 come out negative and match no user-space CFA."""
    return np.fromiter(values, np.uint64, n).view(np.int64)


def _nearest_donors(q, q_cfa, d_sample, d_frame, d_cfa, rows, tid, between):
    """For each stopped sample q: the nearest donor (sample, frame), before or after it, on
    its thread with its CFA and no sample between them whose stack pointer is at or above
    that CFA; (-1, -1) where there is none."""
    n = len(tid) + 1
    pairs = np.concatenate([np.c_[tid[rows[q]], q_cfa], np.c_[tid[rows[d_sample]], d_cfa]])
    _, key = np.unique(pairs, axis=0, return_inverse=True)
    key = key.reshape(-1).astype(np.int64)
    q_key, d_key = key[: len(q)], key[len(q) :]
    q_row, d_row = rows[q], rows[d_sample]
    order = np.argsort(d_key * n + d_row, kind="stable")
    d_comp = (d_key * n + d_row)[order]
    comp = q_key * n + q_row
    before = np.searchsorted(d_comp, comp, side="left") - 1
    after = np.searchsorted(d_comp, comp, side="right")
    best = np.full(len(q), -1, np.int64)
    gap = np.full(len(q), np.iinfo(np.int64).max)
    for cand in (before, after):
        ok = (cand >= 0) & (cand < len(d_comp))
        c = order[np.clip(cand, 0, max(len(order) - 1, 0))]
        ok &= d_key[c] == q_key
        ok &= between.stays_below(d_row[c], q_row, q_cfa)
        dist = np.abs(d_row[c] - q_row)
        take = ok & (dist < gap)  # the earlier one on a tie: it is tried first
        best[take], gap[take] = c[take], dist[take]
    found = best >= 0
    donor = np.where(found, d_sample[np.maximum(best, 0)], -1)
    frame = np.where(found, d_frame[np.maximum(best, 0)], -1)
    return donor, frame


class ThreadSpans:
    """Whether a thread's stack pointer stayed below a CFA over every sample between two of
    its rows: the rows with a known stack pointer, ordered by (thread, row), and the maxima
    of their stack pointers over any run of that order (``RangeMax``)."""

    def __init__(self, tid: np.ndarray, sp: np.ndarray) -> None:
        known = np.flatnonzero(sp > 0)
        self.tid, self.n = tid, len(tid) + 1
        key = self._key(tid[known], known)
        order = np.argsort(key, kind="stable")
        self.key = key[order]
        self.max = RangeMax(sp[known][order])

    def _key(self, tids: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(thread, row) as one sortable int64 (thread ids are 32-bit, -1 for unknown)."""
        return (tids.astype(np.int64) + 1) * self.n + rows

    def stays_below(self, a: np.ndarray, b: np.ndarray, cfa: np.ndarray) -> np.ndarray:
        """For rows a and b of one thread each: every known stack pointer of that thread
        strictly between them is below *cfa*."""
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        tids = self.tid[lo]
        start = np.searchsorted(self.key, self._key(tids, lo), side="right")
        stop = np.searchsorted(self.key, self._key(tids, hi), side="left")
        return self.max.query(start, stop - 1) < cfa


NONE = np.iinfo(np.int64).min


class RangeMax:
    """max(values[lo..hi]) for many spans at once, vectorised: the maxima of blocks of
    BLOCK values in a sparse table for the whole blocks inside a span, the partial blocks
    at its two ends read directly. Memory: the values plus ~log2(n / BLOCK) arrays of
    n / BLOCK (a sparse table of every value would be log2(n) copies of them)."""

    BLOCK = 64
    BATCH = 1 << 14  # spans per gather: BATCH x BLOCK values at a time

    def __init__(self, values: np.ndarray) -> None:
        nb = max(-(-len(values) // self.BLOCK), 1)
        self.v = np.full(nb * self.BLOCK, NONE)
        self.v[: len(values)] = values
        self.levels = [self.v.reshape(nb, self.BLOCK).max(axis=1)]
        k = 1
        while 2 * k <= nb:
            prev = self.levels[-1]
            self.levels.append(np.maximum(prev[:-k], prev[k:]))
            k *= 2

    def query(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """The maximum over [lo, hi] (inclusive) of each span; NONE for an empty one."""
        lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
        out = np.full(len(lo), NONE)
        for s in range(0, len(lo), self.BATCH):
            sl = slice(s, s + self.BATCH)
            out[sl] = self._query(lo[sl], hi[sl])
        return out

    def _part(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """The maximum of each run [first, last] of at most BLOCK values (NONE if empty)."""
        at = first[:, None] + np.arange(self.BLOCK)
        vals = self.v[np.minimum(at, len(self.v) - 1)]
        return np.where(at <= last[:, None], vals, NONE).max(axis=1, initial=NONE)

    def _query(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        B = self.BLOCK
        empty = lo > hi
        lo, hi = np.where(empty, 0, lo), np.where(empty, 0, hi)
        best = self._part(lo, np.minimum(hi, (lo // B + 1) * B - 1))  # lo's block
        best = np.maximum(best, self._part(np.maximum(lo, hi // B * B), hi))  # hi's block
        b0, b1 = lo // B + 1, hi // B - 1  # the whole blocks strictly between
        inner = b0 <= b1
        lvl = np.floor(np.log2(np.where(inner, b1 - b0 + 1, 1))).astype(np.int64)
        for k in np.unique(lvl[inner]).tolist():
            m = inner & (lvl == k)
            t = self.levels[k]
            best[m] = np.maximum(best[m], np.maximum(t[b0[m]], t[b1[m] - (1 << k) + 1]))
        return np.where(empty, NONE, best)
