"""DWARF call-frame unwinding of ``--call-graph dwarf`` samples (x86_64).

With ``--call-graph dwarf`` the kernel gives, per sample, the user registers at the moment of
the sample (REGS_USER) and a copy of the user stack from the stack pointer up (STACK_USER);
the callchain holds only kernel frames (perf sets ``exclude_callchain_user``). The user frames
are recovered here with each DSO's call-frame information (``.eh_frame``), read with
pyelftools; where a pc has no ``.eh_frame`` entry (Go code, hand-written assembly) the
frame-pointer chain is followed instead, as perf's unwinders fall back to doing. (A Go
binary's ``.debug_frame`` is not used: its rows ignore the stack realignment of Go assembly
such as ``runtime.callCgoMmap``, which sends a CFI unwind into the stack; Go keeps frame
pointers on amd64, and perf's chains through Go code agree with the frame-pointer walk.)

1. the first frame is the sampled ``rip``; find the FDE row for it (for caller frames
   ``pc - 1``: a return address may point past the end of the calling function);
2. CFA = a register + offset (or a DWARF expression: PLT stubs compute it from ``rip``);
   the return address and the callee-saved registers are read from the stack copy at the
   offsets the row gives; the caller's ``rsp`` is the CFA;
3. repeat until the return address is undefined (``_start``, thread start), zero, outside
   any map, outside the stack copy, the CFA falls below the stack pointer, or 127 frames.

Details met on real files: ``__restore_rt`` (augmentation "S") describes every register as a
slot of the signal frame on the stack (EXPRESSION rules) and the frame after it is exact; a
``syscall`` that is the last instruction of a function leaves ``rip`` just past its FDE, so
the first frame is retried at ``rip - 1``; pyelftools 0.33 cannot decode
``DW_CFA_GNU_args_size`` (it does not change the CFA or registers), so those instructions are
dropped before decoding.

FDEs are found through ``.eh_frame_hdr``'s sorted table and parsed one at a time, so only the
functions that appear on sampled stacks are ever decoded (libc has 3,700 FDEs; a workload
touches a few dozen). Decoded rows are cached per (DSO, pc).
"""

from __future__ import annotations

import functools
import io
import struct
from dataclasses import dataclass, field

import numpy as np
from elftools.dwarf.callframe import FDE, CallFrameInfo
from elftools.dwarf.structs import DWARFStructs

from .maps import Timeline
from .symbols import ElfInfo, Symbolizer, open_elf

MAX_FRAMES = 127
DW_CFA_GNU_args_size = 0x2E
RA = 16  # DWARF x86_64 return-address column
RSP, RBP = 7, 6
#: perf's x86 register numbers (arch/x86/include/uapi/asm/perf_regs.h) -> DWARF numbers
PERF_TO_DWARF = {0: 0, 1: 3, 2: 2, 3: 1, 4: 4, 5: 5, 6: 6, 7: 7, 8: RA}
PERF_TO_DWARF.update({16 + i: 8 + i for i in range(8)})  # r8..r15


@functools.lru_cache(maxsize=16)
def _register_plan(mask: int) -> tuple[tuple[int, int], ...]:
    """(position in the REGS_USER array, DWARF register) for the registers we use."""
    plan, k = [], 0
    for bit in range(64):
        if mask >> bit & 1:
            d = PERF_TO_DWARF.get(bit)
            if d is not None:
                plan.append((k, d))
            k += 1
    return tuple(plan)


def regs_by_dwarf(mask: int, values: list[int]) -> dict[int, int]:
    """REGS_USER values (in mask bit order) keyed by DWARF register number."""
    return {d: values[k] for k, d in _register_plan(mask) if k < len(values)}


class Stop(Exception):
    """The unwind cannot continue (normal end of a chain)."""


@dataclass
class Row:
    """One CFI row, flattened: CFA rule, register rules, signal-frame flag."""

    cfa_reg: int | None
    cfa_off: int
    cfa_expr: list[int] | None
    rules: dict[int, tuple[str, object]]
    signal: bool


class Cfi:
    """Call-frame information of one ELF file, decoded lazily per FDE."""

    def __init__(self, info: ElfInfo) -> None:
        self.info = info
        self._eh: CallFrameInfo | None = None
        self._eh_addr = 0
        self._table: np.ndarray | None = None  # (initial_location, fde offset) from the hdr
        self._fde_cache: dict[int, FDE | None] = {}
        self._rows: dict[int, Row | None] = {}
        self._open_eh()

    def _section(self, name: str) -> dict | None:
        return next((s for s in self.info.sections if s["name"] == name), None)

    def _open_eh(self) -> None:
        eh = self._section(".eh_frame")
        if eh is None or eh["type"] == "SHT_NOBITS" or not eh["size"]:
            return
        with open_elf(self.info.path) as f:
            f.seek(eh["offset"])
            data = f.read(eh["size"])
            hdr = self._section(".eh_frame_hdr")
            hdr_data = b""
            if hdr is not None and hdr["type"] != "SHT_NOBITS":
                f.seek(hdr["offset"])
                hdr_data = f.read(hdr["size"])
        structs = DWARFStructs(little_endian=True, dwarf_format=32, address_size=8)
        self._eh = CallFrameInfo(io.BytesIO(data), len(data), eh["addr"], structs, True)
        self._eh_addr = eh["addr"]
        # one FDE at a time needs pyelftools' CallFrameInfo._parse_entry_at (0.31 - 0.33)
        lazy = hasattr(self._eh, "_parse_entry_at")
        self._table = _hdr_table(hdr_data, hdr["addr"] if hdr else 0) if lazy else None
        if self._table is None:  # no usable index: parse every entry once
            try:
                entries = self._eh.get_entries()
            except Exception:
                entries = []
            fdes = sorted(
                (e for e in entries if isinstance(e, FDE)), key=lambda e: e["initial_location"]
            )
            self._table = np.array(
                [(e["initial_location"], e.offset) for e in fdes], np.int64
            ).reshape(-1, 2)
            for e in fdes:
                self._fde_cache[e.offset] = e

    def _eh_fde(self, pc: int) -> FDE | None:
        t = self._table
        if self._eh is None or t is None or not len(t):
            return None
        j = int(np.searchsorted(t[:, 0], pc, side="right")) - 1
        if j < 0:
            return None
        off = int(t[j, 1])
        fde = self._fde_cache.get(off, 0)
        if fde == 0:
            try:
                e = self._eh._parse_entry_at(off)
                fde = e if isinstance(e, FDE) else None
            except Exception:
                fde = None
            self._fde_cache[off] = fde
        if fde is None:
            return None
        lo = fde["initial_location"]
        return fde if lo <= pc < lo + fde["address_range"] else None

    def row(self, pc: int) -> Row | None:
        """The CFI row in effect at vaddr *pc*, or None."""
        if pc in self._rows:
            return self._rows[pc]
        fde = self._eh_fde(pc)
        out = None
        if fde is not None:
            out = _row_of(fde, pc)
        self._rows[pc] = out
        return out


def _hdr_table(hdr: bytes, hdr_addr: int) -> np.ndarray | None:
    """(initial_location, .eh_frame offset) pairs from .eh_frame_hdr's search table, or None
    when the header uses an encoding other than the usual datarel sdata4."""
    if len(hdr) < 12 or hdr[0] != 1:
        return None
    ptr_enc, count_enc, table_enc = hdr[1], hdr[2], hdr[3]
    if table_enc != 0x3B or count_enc != 0x03 or ptr_enc != 0x1B:
        return None
    eh_ptr = hdr_addr + 4 + struct.unpack_from("<i", hdr, 4)[0]
    count = struct.unpack_from("<I", hdr, 8)[0]
    if 12 + 8 * count > len(hdr):
        return None
    pairs = np.frombuffer(hdr, "<i4", count=2 * count, offset=12).reshape(-1, 2).astype(np.int64)
    out = np.empty((count, 2), np.int64)
    out[:, 0] = hdr_addr + pairs[:, 0]
    out[:, 1] = hdr_addr + pairs[:, 1] - eh_ptr
    return out


def _row_of(fde: FDE, pc: int) -> Row | None:
    try:
        table = fde.get_decoded().table
    except Exception:
        try:
            fde.instructions = [i for i in fde.instructions if i.opcode != DW_CFA_GNU_args_size]
            fde._decoded_table = None
            table = fde.get_decoded().table
        except Exception:
            return None
    best = None
    for r in table:
        if r["pc"] <= pc:
            best = r
        else:
            break
    if best is None:
        return None
    cfa = best["cfa"]
    rules = {}
    for k, v in best.items():
        if isinstance(k, int):
            rules[k] = (v.type, v.arg)
    aug = fde.cie.header.get("augmentation", b"") if fde.cie is not None else b""
    return Row(
        cfa.reg, cfa.offset or 0, list(cfa.expr) if cfa.expr else None, rules, b"S" in (aug or b"")
    )


# --- DWARF expressions -------------------------------------------------------------------


def _leb128(b: list[int], i: int, signed: bool) -> tuple[int, int]:
    """(value, next index) of the LEB128 number at b[i]."""
    v, shift = 0, 0
    while True:
        if i >= len(b):
            raise Stop("expression ends early")
        x = b[i]
        i += 1
        v |= (x & 0x7F) << shift
        shift += 7
        if not x & 0x80:
            if signed and x & 0x40:
                v -= 1 << shift
            return v, i


def _uleb(b: list[int], i: int) -> tuple[int, int]:
    return _leb128(b, i, False)


def _sleb(b: list[int], i: int) -> tuple[int, int]:
    return _leb128(b, i, True)


M64 = (1 << 64) - 1


def evaluate(expr: list[int], regs: dict[int, int], read, push: int | None = None) -> int:
    """A DWARF expression as CFI uses them (breg, literals, arithmetic, deref)."""
    stack: list[int] = [] if push is None else [push]
    i = 0
    while i < len(expr):
        op = expr[i]
        i += 1
        if 0x70 <= op <= 0x8F:  # DW_OP_breg0..31
            off, i = _sleb(expr, i)
            if op - 0x70 not in regs:
                raise Stop("expression uses an unknown register")
            stack.append((regs[op - 0x70] + off) & M64)
        elif 0x30 <= op <= 0x4F:  # DW_OP_lit0..31
            stack.append(op - 0x30)
        elif op == 0x23:  # plus_uconst
            v, i = _uleb(expr, i)
            stack.append((stack.pop() + v) & M64)
        elif op in (0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11):
            size = {0x08: 1, 0x09: 1, 0x0A: 2, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8, 0x0F: 8}.get(op)
            if op in (0x10, 0x11):
                v, i = (_uleb if op == 0x10 else _sleb)(expr, i)
            else:
                raw = bytes(expr[i : i + size])
                if len(raw) < size:
                    raise Stop("expression ends early")
                v = int.from_bytes(raw, "little", signed=op % 2 == 1)
                i += size
            stack.append(v & M64)
        elif op == 0x06:  # deref
            stack.append(read(stack.pop()))
        elif op == 0x12:  # dup
            stack.append(stack[-1])
        elif op == 0x13:  # drop
            stack.pop()
        elif op == 0x16:  # swap
            stack[-1], stack[-2] = stack[-2], stack[-1]
        elif op in _BINOPS:
            b, a = stack.pop(), stack.pop()
            stack.append(_BINOPS[op](a, b) & M64)
        elif op == 0x1F:  # neg
            stack.append(-stack.pop() & M64)
        elif op == 0x20:  # not
            stack.append(~stack.pop() & M64)
        else:
            raise Stop(f"DWARF op {op:#x} not supported")
    if not stack:
        raise Stop("empty expression")
    return stack[-1]


_BINOPS = {
    0x1A: lambda a, b: a & b,  # and
    0x21: lambda a, b: a | b,  # or
    0x22: lambda a, b: a + b,  # plus
    0x1C: lambda a, b: a - b,  # minus
    0x1E: lambda a, b: a * b,  # mul
    0x24: lambda a, b: a << b if b < 64 else 0,  # shl
    0x25: lambda a, b: a >> b,  # shr
    0x27: lambda a, b: a ^ b,  # xor
    0x29: lambda a, b: int(a == b),  # eq
    0x2A: lambda a, b: int(a >= b),  # ge
    0x2B: lambda a, b: int(a > b),  # gt
    0x2C: lambda a, b: int(a <= b),  # le
    0x2D: lambda a, b: int(a < b),  # lt
    0x2E: lambda a, b: int(a != b),  # ne
}


# --- the unwinder ------------------------------------------------------------------------


def _cfa_of(row, regs: dict[int, int], read) -> int:
    """The frame's CFA by its row: a register plus an offset, or a DWARF expression. It is
    known before anything is read from the frame (the splice in stops.py relies on it)."""
    if row.cfa_expr is not None:
        return evaluate(row.cfa_expr, regs, read)
    if row.cfa_reg not in regs:
        raise Stop("CFA register unknown")
    return (regs[row.cfa_reg] + row.cfa_off) & M64


def _apply_row(row, regs: dict[int, int], read, cfa: int) -> dict[int, int]:
    """One CFI row applied at *cfa*: the caller's registers (before RSP is set to it)."""
    new = dict(regs)
    for reg, (kind, arg) in row.rules.items():
        if kind == "OFFSET":
            new[reg] = read(cfa + arg)
        elif kind == "VAL_OFFSET":
            new[reg] = (cfa + arg) & M64
        elif kind == "REGISTER":
            if arg in regs:
                new[reg] = regs[arg]
            else:
                new.pop(reg, None)
        elif kind == "EXPRESSION":
            new[reg] = read(evaluate(list(arg), regs, read, push=cfa))
        elif kind == "VAL_EXPRESSION":
            new[reg] = evaluate(list(arg), regs, read, push=cfa)
        elif kind == "UNDEFINED":
            new.pop(reg, None)
    return new


def _check_step(row, regs: dict[int, int], new: dict[int, int], cfa: int, pc: int) -> None:
    """Stop where the caller's frame cannot be trusted (perf's unwinders stop there too)."""
    if RA not in row.rules or row.rules[RA][0] == "UNDEFINED":
        raise Stop("outermost frame")
    if RA not in new:
        raise Stop("return address undefined")
    ra = new[RA]
    if ra == 0:
        raise Stop("return address 0")
    if cfa < regs[RSP] and not row.signal:
        raise Stop("CFA below the stack pointer")
    if cfa == regs[RSP] and ra == pc:
        raise Stop("no progress")


def _frame_pointer_step(regs: dict[int, int], read) -> dict[int, int]:
    """The caller's registers by the rbp chain: [rbp] = caller's rbp, [rbp+8] = return
    address, caller's rsp = rbp + 16 (Go keeps frame pointers on amd64)."""
    rbp = regs.get(RBP)
    if rbp is None or rbp < regs[RSP]:
        raise Stop("no CFI and no frame pointer")
    ra = read(rbp + 8)
    if ra == 0:
        raise Stop("return address 0")
    new = dict(regs)
    new[RBP] = read(rbp)
    new[RSP] = rbp + 16
    new[RA] = ra
    return new


@dataclass
class UnwindStats:
    samples: int = 0
    frames: int = 0
    stops: dict[str, int] = field(default_factory=dict)

    def stop(self, why: str) -> None:
        self.stops[why] = self.stops.get(why, 0) + 1


#: decoded CFI per ELF file in this process (path, file stamp) -> Cfi
_CFI_CACHE: dict[tuple, Cfi | None] = {}


def cfi_of(info: ElfInfo) -> Cfi | None:
    from .symbols import _stamp

    key = (info.path, _stamp(info.path))
    if key not in _CFI_CACHE:
        try:
            _CFI_CACHE[key] = Cfi(info)
        except Exception:  # pyelftools raises assorted errors on damaged files
            _CFI_CACHE[key] = None
    return _CFI_CACHE[key]


#: the stop reasons that end a chain where it ends (an outermost frame): every other one
#: stops the unwinding inside user code, and says why in stops.py
COMPLETE = ("outermost frame", "return address undefined", "return address 0")
OUTSIDE = "outside the stack copy"
NO_CFI_DSO = "no CFI for the DSO"


@dataclass
class Unwound:
    """One sample's unwinding: the user pcs (leaf first; callers are return addresses) and
    what the stop reasons in stops.py are made of.

    ``cfas[i]`` is frame i's CFA (its caller's stack pointer) wherever it was computed:
    ``len(cfas) == len(pcs)`` when the last frame's CFA is known, which needs only
    registers (the splice in stops.py matches frames of two samples by it). ``want`` is the
    stack address that could not be read (stop ``outside the stack copy``); ``unreadable``
    says the pc's DSO could not be read here (stop ``no CFI for the DSO``). A spliced chain
    (stops.py) keeps its own stop, ``own`` the number of frames it unwound itself, and
    ``end``, the stop where its donor's chain ended."""

    pcs: list[int]
    cfas: list[int]
    stop: str
    sp: int = 0
    had: int = 0  # bytes of the stack copy (dyn_size)
    want: int | None = None
    unreadable: bool = False
    spliced: bool = False
    end: str | None = None
    own: int | None = None

    @property
    def stop_frame(self) -> int:
        """The index of the frame where this sample's own unwinding stopped."""
        return (self.own or len(self.pcs)) - 1

    @property
    def complete(self) -> bool:
        """Did this sample's own unwinding reach an outermost frame?"""
        return self.stop in COMPLETE

    @property
    def ends_complete(self) -> bool:
        """Does the chain, spliced or not, end at an outermost frame?"""
        return (self.end or self.stop) in COMPLETE


class _Reader:
    """Reads u64s of the stack copy by address; remembers the first address outside it."""

    def __init__(self, stack: bytes, base: int) -> None:
        self.stack, self.base, self.limit = stack, base, len(stack) - 8
        self.want: int | None = None

    def __call__(self, addr: int) -> int:
        k = addr - self.base
        if k < 0 or k > self.limit:
            if self.want is None:
                self.want = addr
            raise Stop(OUTSIDE)
        return struct.unpack_from("<Q", self.stack, k)[0]


class Unwinder:
    """Unwinds user stacks of samples against the maps of their process."""

    def __init__(self, timeline: Timeline, symbolizer: Symbolizer) -> None:
        self.timeline = timeline
        self.symbolizer = symbolizer
        self._cfi: dict[int, Cfi | None] = {}
        self._unreadable: set[int] = set()  # DSOs whose file could not be read here
        self._where: dict[tuple[int, int], tuple[Cfi, int] | str] = {}
        self.stats = UnwindStats()

    def _cfi_of(self, dso: int) -> Cfi | None:
        if dso not in self._cfi:
            d = self.timeline.dsos[dso]
            cfi = None
            info = None
            if d.kind == "file":
                info = self.symbolizer.runtime(d.name, d.build_id)
            elif d.kind == "vdso":
                path = self.symbolizer.vdso_path()
                if path is not None:
                    info = self.symbolizer.runtime(path, self.symbolizer.vdso_build_id, "vdso")
            if info is not None:
                cfi = cfi_of(info)
            elif d.kind in ("file", "vdso"):
                self._unreadable.add(dso)
            self._cfi[dso] = cfi
        return self._cfi[dso]

    def dso_of(self, vid: int, pc: int) -> int | None:
        """The DSO (timeline index) mapped at *pc* in map version *vid*, or None."""
        version = self.timeline.versions[vid]
        j = version.find(pc)
        return None if j < 0 else int(version.dso[j])

    def _locate(self, vid: int, pc: int) -> tuple[Cfi, int]:
        """The CFI and ELF virtual address of *pc* in map version *vid* (cached: the same
        code addresses recur on sample after sample)."""
        hit = self._where.get((vid, pc))
        if hit is None:
            hit = self._where[(vid, pc)] = self._locate_uncached(vid, pc)
        if isinstance(hit, str):
            raise Stop(hit)
        return hit

    def _locate_uncached(self, vid: int, pc: int) -> tuple[Cfi, int] | str:
        version = self.timeline.versions[vid]
        j = version.find(pc)
        if j < 0:
            return "pc outside any map"
        cfi = self._cfi_of(int(version.dso[j]))
        if cfi is None:
            return NO_CFI_DSO
        vaddr = cfi.info.offset_to_vaddr(pc - int(version.start[j]) + int(version.pgoff[j]))
        if vaddr is None:
            return "pc outside the file's segments"
        return cfi, vaddr

    def unwind(
        self, vid: int, regs: dict[int, int], stack: bytes, max_frames: int = MAX_FRAMES
    ) -> list[int]:
        """User pcs, leaf first; callers are return addresses (not yet decremented)."""
        return self.unwind_sample(vid, regs, stack, max_frames).pcs

    def unwind_sample(
        self, vid: int, regs: dict[int, int], stack: bytes, max_frames: int = MAX_FRAMES
    ) -> Unwound:
        """The sample's user frames, their CFAs and why the unwinding stopped (Unwound)."""
        self.stats.samples += 1
        if RA not in regs or RSP not in regs:
            self.stats.stop("no registers")
            return Unwound([], [], "no registers", had=len(stack))
        read = _Reader(stack, regs[RSP])
        out = Unwound([regs[RA]], [], "depth limit", sp=regs[RSP], had=len(stack))
        try:
            self._walk(vid, dict(regs), read, out, max_frames)
        except Stop as s:
            out.stop = str(s)
        except (IndexError, struct.error, KeyError, TypeError, ValueError):
            out.stop = "malformed CFI"
        out.want = read.want if out.stop == OUTSIDE else None
        if out.stop == NO_CFI_DSO:
            dso = self.dso_of(vid, out.pcs[-1])
            out.unreadable = dso in self._unreadable
        self.stats.stop(out.stop)
        self.stats.frames += len(out.pcs)
        return out

    def _walk(self, vid: int, regs: dict[int, int], read, out: Unwound, max_frames: int) -> None:
        """Step from frame to frame, appending each caller's pc and each frame's CFA to
        *out* (a CFA as soon as it is known: before the frame's slots are read)."""
        pcs, cfas = out.pcs, out.cfas
        exact = True
        while len(pcs) < max_frames:
            pc = regs[RA]
            cfi, vaddr = self._locate(vid, pc)
            row = cfi.row(vaddr if exact else vaddr - 1)
            if row is None and exact:
                row = cfi.row(vaddr - 1)  # a syscall ending the function
            if row is None:
                # no .eh_frame entry (Go code, some hand-written assembly): follow the
                # frame-pointer chain, as perf's unwinders do
                rbp = regs.get(RBP)
                if rbp is not None and rbp >= regs[RSP]:
                    cfas.append(rbp + 16)
                regs = _frame_pointer_step(regs, read)
                pcs.append(regs[RA])
                exact = False
                continue
            cfa = _cfa_of(row, regs, read)
            cfas.append(cfa)
            new = _apply_row(row, regs, read, cfa)
            _check_step(row, regs, new, cfa, pc)
            new[RSP] = cfa
            regs = new
            pcs.append(new[RA])
            exact = row.signal
