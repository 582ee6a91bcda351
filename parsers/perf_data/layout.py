"""Where each field sits in a SAMPLE record and in the sample_id_all trailer of other records.

The layout of a sample follows from its event's ``sample_type`` bits (kernel
``perf_output_sample``; perf's ``evsel__parse_sample``): a fixed prefix of one word per field
(IDENTIFIER, IP, TID, TIME, ADDR, ID, STREAM_ID, CPU, PERIOD), then variable-length parts
(READ, CALLCHAIN, RAW, BRANCH_STACK, REGS_USER, STACK_USER, ...), then a few more words. Offsets
are derived from the bits of each file, never assumed: perf 6.1's ``--call-graph dwarf`` adds
ADDR and DATA_SRC, which shift every later field by one word.

:func:`sample_positions` computes, for many samples at once, the word positions of the
variable parts, and checks every count against the record's own size before it is used, so a
corrupt ``nr`` or stack size can never make us read or allocate past the record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import file as F

FIXED_ORDER = (
    (F.SAMPLE_IDENTIFIER, "identifier"),
    (F.SAMPLE_IP, "ip"),
    (F.SAMPLE_TID, "tid"),
    (F.SAMPLE_TIME, "time"),
    (F.SAMPLE_ADDR, "addr"),
    (F.SAMPLE_ID, "id"),
    (F.SAMPLE_STREAM_ID, "stream_id"),
    (F.SAMPLE_CPU, "cpu"),
    (F.SAMPLE_PERIOD, "period"),
)
# the trailer of non-sample records (kernel perf_event__output_id_sample), in order
TRAILER_ORDER = (
    (F.SAMPLE_TID, "tid"),
    (F.SAMPLE_TIME, "time"),
    (F.SAMPLE_ID, "id"),
    (F.SAMPLE_STREAM_ID, "stream_id"),
    (F.SAMPLE_CPU, "cpu"),
    (F.SAMPLE_IDENTIFIER, "identifier"),
)
BRANCH_HW_INDEX = 1 << 17


@dataclass(frozen=True)
class SampleLayout:
    sample_type: int
    fixed: dict[str, int]  # field -> word index from the record start (header = word 0)
    var_start: int  # first word after the fixed prefix
    read_words: int  # READ size when not a group read
    read_group: bool
    read_group_entry: int  # words per group member
    read_group_head: int  # words before the members (nr, enabled, running)
    branch_hw_idx: bool
    regs_user: int  # number of registers dumped (popcount of the mask)
    regs_intr: int
    tail_words_before_intr: int  # WEIGHT, DATA_SRC, TRANSACTION
    tail_words_after_intr: int  # PHYS_ADDR, CGROUP, DATA_PAGE_SIZE, CODE_PAGE_SIZE

    @classmethod
    def of(cls, attr: F.EventAttr) -> SampleLayout:
        st = attr.sample_type
        fixed: dict[str, int] = {}
        w = 1
        for bit, name in FIXED_ORDER:
            if st & bit:
                fixed[name] = w
                w += 1
        rf = attr.read_format
        en_run = bool(rf & F.READ_TOTAL_TIME_ENABLED) + bool(rf & F.READ_TOTAL_TIME_RUNNING)
        per = 1 + bool(rf & F.READ_ID) + bool(rf & F.READ_LOST)
        before = (
            bool(st & (F.SAMPLE_WEIGHT | F.SAMPLE_WEIGHT_STRUCT))
            + bool(st & F.SAMPLE_DATA_SRC)
            + bool(st & F.SAMPLE_TRANSACTION)
        )
        after = (
            bool(st & F.SAMPLE_PHYS_ADDR)
            + bool(st & F.SAMPLE_CGROUP)
            + bool(st & F.SAMPLE_DATA_PAGE_SIZE)
            + bool(st & F.SAMPLE_CODE_PAGE_SIZE)
        )
        return cls(
            sample_type=st,
            fixed=fixed,
            var_start=w,
            read_words=en_run + per,
            read_group=bool(rf & F.READ_GROUP),
            read_group_entry=per,
            read_group_head=1 + en_run,
            branch_hw_idx=bool(attr.branch_sample_type & BRANCH_HW_INDEX),
            regs_user=bin(attr.sample_regs_user).count("1"),
            regs_intr=bin(attr.sample_regs_intr).count("1"),
            tail_words_before_intr=before,
            tail_words_after_intr=after,
        )

    def has(self, bit: int) -> bool:
        return bool(self.sample_type & bit)


@dataclass
class SamplePositions:
    """Word positions (absolute in the chunk's u64 view) of the variable parts of samples.
    Entries of samples that are not ``valid`` are meaningless."""

    valid: np.ndarray
    cc_pos: np.ndarray  # word of the callchain's nr (-1 without CALLCHAIN)
    cc_nr: np.ndarray
    raw_byte: np.ndarray  # byte offset of the RAW payload (after its u32 size)
    raw_size: np.ndarray
    regs_pos: np.ndarray  # word of the first user register (-1 if none)
    regs_abi: np.ndarray
    stack_pos: np.ndarray  # word where the user stack copy starts (-1 if none)
    stack_size: np.ndarray
    stack_dyn: np.ndarray  # valid bytes of the copy


def sample_positions(
    w: np.ndarray, start: np.ndarray, size_w: np.ndarray, lay: SampleLayout
) -> SamplePositions:
    """Positions of the variable parts of the samples starting at words *start* (sizes in
    words *size_w*); a sample whose counts do not fit its size exactly is marked invalid."""
    n = len(start)
    walk = _PartsWalk(w, start, size_w, lay.var_start)
    minus = np.full(n, -1, np.int64)
    zeros = np.zeros(n, np.int64)
    cc_pos, cc_nr = minus, zeros
    raw_byte, raw_size = minus, zeros
    regs_pos, regs_abi = minus, zeros
    stack_pos, stack_size, stack_dyn = minus, zeros, zeros

    if lay.has(F.SAMPLE_READ):
        walk.skip_read(lay)
    if lay.has(F.SAMPLE_CALLCHAIN):
        cc_pos, cc_nr = walk.callchain()
    if lay.has(F.SAMPLE_RAW):
        raw_byte, raw_size = walk.raw()
    if lay.has(F.SAMPLE_BRANCH_STACK):
        walk.skip_branch_stack(lay.branch_hw_idx)
    if lay.has(F.SAMPLE_REGS_USER):
        regs_pos, regs_abi = walk.regs_user(lay.regs_user)
    if lay.has(F.SAMPLE_STACK_USER):
        stack_pos, stack_size, stack_dyn = walk.stack_user()
    walk.pos = walk.pos + lay.tail_words_before_intr
    if lay.has(F.SAMPLE_REGS_INTR):
        walk.skip_regs_intr(lay.regs_intr)
    walk.pos = walk.pos + lay.tail_words_after_intr
    if lay.has(F.SAMPLE_AUX):
        walk.skip_aux()
    valid = walk.valid & (walk.pos == walk.end)
    return SamplePositions(
        valid, cc_pos, cc_nr, raw_byte, raw_size, regs_pos, regs_abi, stack_pos, stack_size,
        stack_dyn,
    )  # fmt: skip


class _PartsWalk:
    """Many samples' variable parts walked in step, in ``sample_type`` order: ``pos`` is the
    word where each sample's next part starts, ``valid`` whether its counts have fit its
    record so far. Each step reads a part's count, checks it against the room left in the
    record (so a corrupt count never makes us read or allocate past it) and moves past it."""

    def __init__(self, w: np.ndarray, start: np.ndarray, size_w: np.ndarray, var_start: int):
        self.w = w
        self.start = start
        self.end = start + size_w  # one past the last word
        self.valid = size_w >= var_start
        self.pos = start + var_start
        self.last = np.maximum(self.end - 1, start)

    def word(self, p: np.ndarray) -> np.ndarray:
        """u64 at p (clamped inside the record; callers invalidate out-of-range reads)."""
        return self.w[np.minimum(np.maximum(p, self.start), self.last)]

    def room(self, p: np.ndarray) -> np.ndarray:
        """Words left in the record from word *p* (0 past its end), as uint64 like counts."""
        return np.maximum(self.end - p, 0).astype(np.uint64)

    def take_count(self, at: np.ndarray, first_item: np.ndarray, per: int = 1) -> np.ndarray:
        """The count stored at word *at*, checked: its items (*per* words each, from word
        *first_item*) must fit in the record. int64, 0 where the sample is invalid."""
        count = self.word(at)
        ok = self.valid & (at < self.end) & (count <= self.room(first_item) // np.uint64(per))
        self.valid = ok
        return np.where(ok, count, 0).astype(np.int64)

    def skip_read(self, lay: SampleLayout) -> None:
        """Past READ: a fixed size, or a group's members counted by its nr."""
        if lay.read_group:
            nr = self.take_count(self.pos, self.pos + lay.read_group_head, lay.read_group_entry)
            self.pos = self.pos + lay.read_group_head + nr * lay.read_group_entry
        else:
            self.pos = self.pos + lay.read_words

    def callchain(self) -> tuple[np.ndarray, np.ndarray]:
        """(word of each callchain's nr, its nr), and past it."""
        cc_pos = self.pos
        cc_nr = self.take_count(cc_pos, cc_pos + 1)
        self.pos = cc_pos + 1 + cc_nr
        return cc_pos, cc_nr

    def raw(self) -> tuple[np.ndarray, np.ndarray]:
        """(byte offset of each RAW payload, after its u32 size; its size), and past it."""
        pos = self.pos
        rsize = self.word(pos) & np.uint64(0xFFFFFFFF)
        rwords = (rsize + np.uint64(4 + 7)) // np.uint64(8)  # u32 size + data, 8-aligned
        ok = self.valid & (pos < self.end) & (rwords <= self.room(pos))
        self.valid = ok
        raw_size = np.where(ok, rsize, 0).astype(np.int64)
        raw_byte = pos * 8 + 4
        self.pos = pos + np.where(ok, rwords, 0).astype(np.int64)
        return raw_byte, raw_size

    def skip_branch_stack(self, hw_idx: bool) -> None:
        """Past BRANCH_STACK: nr, the hw_idx word if the attr asks for it, 3 words a branch."""
        hw = int(hw_idx)
        nr = self.take_count(self.pos, self.pos + 1 + hw, 3)
        self.pos = self.pos + 1 + hw + 3 * nr

    def regs_user(self, n_regs: int) -> tuple[np.ndarray, np.ndarray]:
        """(word of each sample's first user register, -1 without them; its abi), and past
        them. An abi of 0 (PERF_SAMPLE_REGS_ABI_NONE) means no registers follow."""
        pos = self.pos
        abi = self.word(pos)
        ok = self.valid & (pos < self.end)
        nregs = np.where(abi != 0, n_regs, 0)
        ok &= nregs.astype(np.uint64) <= self.room(pos + 1)
        self.valid = ok
        regs_abi = np.where(ok, abi, 0).astype(np.int64)
        regs_pos = np.where(nregs > 0, pos + 1, -1)
        self.pos = pos + 1 + np.where(ok, nregs, 0)
        return regs_pos, regs_abi

    def stack_user(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(word where each user stack copy starts, -1 without one; its size in bytes; the
        valid bytes of it, dyn_size), and past them."""
        pos = self.pos
        ssize = self.word(pos)
        ok = self.valid & (pos < self.end) & (ssize % np.uint64(8) == 0)
        swords = ssize // np.uint64(8)
        # size, data, and dyn_size (only when size != 0)
        ok &= swords + (ssize != 0).astype(np.uint64) <= self.room(pos + 1)
        self.valid = ok
        sw = np.where(ok, swords, 0).astype(np.int64)
        stack_size = sw * 8
        stack_pos = np.where(sw > 0, pos + 1, -1)
        dyn = np.where(sw > 0, self.word(pos + 1 + sw), 0)
        stack_dyn = np.minimum(dyn, stack_size.astype(np.uint64)).astype(np.int64)
        self.pos = pos + 1 + sw + (sw > 0)
        return stack_pos, stack_size, stack_dyn

    def skip_regs_intr(self, n_regs: int) -> None:
        """Past REGS_INTR: its abi, then the registers unless the abi is 0."""
        pos = self.pos
        abi = self.word(pos)
        self.valid = self.valid & (pos < self.end)
        self.pos = pos + 1 + np.where(abi != 0, n_regs, 0)

    def skip_aux(self) -> None:
        """Past AUX: its size in bytes, then the data, 8-aligned."""
        pos = self.pos
        asize = self.word(pos)
        awords = (asize + np.uint64(7)) // np.uint64(8)
        ok = self.valid & (pos < self.end) & (awords <= self.room(pos + 1))
        self.valid = ok
        self.pos = pos + 1 + np.where(ok, awords, 0).astype(np.int64)


@dataclass(frozen=True)
class TrailerLayout:
    """Where the sample_id_all fields sit, counted back from the record's end (in words)."""

    words: int
    from_end: dict[str, int]  # field -> words before the end (1 = last word)

    @classmethod
    def of(cls, attr: F.EventAttr) -> TrailerLayout:
        if not attr.sample_id_all:
            return cls(0, {})
        names = [name for bit, name in TRAILER_ORDER if attr.sample_type & bit]
        k = len(names)
        return cls(k, {name: k - i for i, name in enumerate(names)})
