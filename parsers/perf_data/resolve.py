"""Callchains -> frames exactly as ``perf script`` prints them.

A callchain is a list of u64 entries, leaf first, where entries at or above ``2**64 - 4095``
are context markers (``PERF_CONTEXT_KERNEL`` / ``_USER`` / ``_HV``) saying which address space
the following entries belong to (user until the first marker, as in perf's
``thread__resolve_callchain_sample``). Each address becomes a frame
``(address, function, dso, frame_kind)`` the way perf's ``sample__fprintf_callchain`` prints
it, so that frames equal the text path's (``parsers/perf_script/stacks.py`` parses them):

* kernel addresses inside the kernel map are printed as they are, with the kallsyms symbol
  (or ``[unknown]``) and dso ``[kernel.kallsyms]``; outside it, ``[unknown] ([unknown])``;
* user addresses inside a map are printed as the *file offset* ``ip - start + pgoff`` (the
  address itself for anonymous memory), with the symbol of that offset in the map's DSO and
  the DSO's path, ``[vdso]`` or ``/tmp/perf-PID.map``; outside every map,
  ``[unknown] ([unknown])`` with the address;
* hypervisor addresses have no map: ``[unknown] ([unknown])``;
* a guest context marker makes perf drop the whole chain; so do we;
* user-space C++ and Rust names are demangled (``symbols.demangle``), with their parameters
  as c++filt prints them; perf script 6.1 prints them without.

All distinct (map version, chain) pairs are resolved together: markers are applied with
segmented cumulative maxima, kernel addresses are looked up once each, user addresses once per
(map version, address) with ``searchsorted`` on the version's maps and once per (DSO, file
offset) in the DSO's symbols. Only building the final tuples is per frame.
"""

from __future__ import annotations

import numpy as np

from ..perf_records.stacks import frame_kind
from .maps import Timeline
from .symbols import Symbolizer, SymbolTable, demangle

CONTEXT_MAX = (1 << 64) - 4095
CTX_HV = (1 << 64) - 32
CTX_KERNEL = (1 << 64) - 128
CTX_USER = (1 << 64) - 512
MODE_USER, MODE_KERNEL, MODE_HV = 0, 1, 2

Frame = tuple[int, str, str, str]


def _unknown(ip: int) -> Frame:
    return (ip, "[unknown]", "[unknown]", frame_kind(ip, "[unknown]"))


class Resolver:
    """Address -> frame, for many chains at once (see the module docstring)."""

    def __init__(
        self, timeline: Timeline, symbolizer: Symbolizer, kernel: SymbolTable | None
    ) -> None:
        self.tl = timeline
        self.sym = symbolizer
        self.kernel = kernel

    def _kernel(self, ips: np.ndarray) -> list[Frame]:
        """Frames of distinct kernel addresses."""
        names: list[str | None] = [None] * len(ips)
        if self.kernel is not None and len(ips):
            idx = self.kernel.lookup(ips)
            knames = self.kernel.names
            names = [knames[i].split("\t", 1)[0] if i >= 0 else None for i in idx.tolist()]
        out = []
        for a, nm in zip(ips.tolist(), names, strict=True):
            if self.tl.kernel_map(a) is None:
                out.append(_unknown(a))
            else:
                out.append((a, nm or "[unknown]", "[kernel.kallsyms]", "kernel"))
        return out

    def _symbol_names(self, d: int, foffs: np.ndarray) -> list[str | None]:
        dso = self.tl.dsos[d]
        table = None
        if dso.kind == "file":
            table = self.sym.table(dso.name, dso.build_id)
        elif dso.kind == "vdso":
            path = self.sym.vdso_path()
            if path is not None:
                table = self.sym.table(path, self.sym.vdso_build_id, kind="vdso")
        if table is None:
            return [None] * len(foffs)
        idx = table.lookup(foffs)
        return [demangle(table.names[i]) if i >= 0 else None for i in idx.tolist()]

    def _user(self, versions: np.ndarray, ips: np.ndarray) -> list[Frame]:
        """Frames of distinct (map version, user address) pairs."""
        n = len(ips)
        dso = np.full(n, -1, np.int64)
        foff = ips.copy()
        for v in np.unique(versions).tolist():
            sel = np.flatnonzero(versions == v)
            mv = self.tl.versions[v]
            if not len(mv.start):
                continue
            a = ips[sel]
            j = np.searchsorted(mv.start, a, side="right") - 1
            jc = np.maximum(j, 0)
            inside = (j >= 0) & (a < mv.end[jc])
            d = np.where(inside, mv.dso[jc], -1)
            kinds = self.tl.dsos
            anon = np.array([k >= 0 and kinds[k].kind == "anon" for k in d.tolist()], bool)
            off = np.where(anon, a, a - mv.start[jc] + mv.pgoff[jc])
            dso[sel] = d
            foff[sel] = np.where(inside, off, a)
        out: list[Frame | None] = [None] * n
        for i in np.flatnonzero(dso < 0).tolist():
            out[i] = _unknown(int(ips[i]))
        for d in np.unique(dso[dso >= 0]).tolist():
            sel = np.flatnonzero(dso == d)
            offs, inv = np.unique(foff[sel], return_inverse=True)
            names = self._symbol_names(d, offs)
            name = self.tl.dsos[d].name
            frames = [(o, nm or "[unknown]", name, frame_kind(o, name))
                      for o, nm in zip(offs.tolist(), names, strict=True)]  # fmt: skip
            for i, k in zip(sel.tolist(), inv.reshape(-1).tolist(), strict=True):
                out[i] = frames[k]
        return out  # type: ignore[return-value]

    def resolve(
        self,
        versions: list[int],
        chains: list[np.ndarray],
        users: list[list[int] | None] | None = None,
    ) -> list[tuple[Frame, ...]]:
        """Frames of each (version, callchain[, unwound user pcs]) — the user pcs leaf first,
        the first exact and the others return addresses (looked up and printed at ``ra - 1``,
        as perf prints unwound callers)."""
        m = len(chains)
        ent, own, fixed = _entries(chains, users or [None] * m)
        if not len(ent):
            return [()] * m
        drop = np.zeros(m, bool)
        marker, mode = _context_modes(ent, own, fixed, drop)
        keep = ~marker & ~drop[own]
        frame_of = np.full(len(ent), -1, np.int64)
        table: list[Frame] = []
        kern = np.flatnonzero(keep & (mode == MODE_KERNEL))
        if len(kern):
            uk, inv = np.unique(ent[kern], return_inverse=True)
            frame_of[kern] = len(table) + inv.reshape(-1)
            table += self._kernel(uk)
        hv = np.flatnonzero(keep & (mode == MODE_HV))
        if len(hv):
            uh, inv = np.unique(ent[hv], return_inverse=True)
            frame_of[hv] = len(table) + inv.reshape(-1)
            table += [_unknown(a) for a in uh.tolist()]
        usr = np.flatnonzero(keep & (mode == MODE_USER))
        if len(usr):
            ver = np.asarray(versions, np.int64)[own[usr]]
            for v in np.unique(ver).tolist():  # distinct addresses per map version
                sel = usr[ver == v]
                ua, inv = np.unique(ent[sel], return_inverse=True)
                frame_of[sel] = len(table) + inv.reshape(-1)
                table += self._user(np.full(len(ua), v, np.int64), ua)
        bounds = np.searchsorted(own, np.arange(m + 1))
        fo = frame_of.tolist()
        out = []
        for k in range(m):
            ids = fo[bounds[k] : bounds[k + 1]]
            out.append(() if drop[k] else tuple(table[i] for i in ids if i >= 0))
        return out


def _entries(
    chains: list[np.ndarray], users: list[list[int] | None]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every chain's entries as one array: (entry, its chain, its fixed mode: -1 = from the
    context markers). With unwound user pcs, each chain's kernel part then its user part;
    callers are looked up (and printed) at ra - 1."""
    m = len(chains)
    lens = np.fromiter((len(c) for c in chains), np.int64, m)
    ent = np.concatenate(chains).astype(np.uint64) if lens.sum() else np.zeros(0, np.uint64)
    own = np.repeat(np.arange(m), lens)
    fixed = np.full(len(ent), -1, np.int8)
    if any(users):
        pcs = [[u[0]] + [max(p - 1, 0) for p in u[1:]] if u else [] for u in users]
        ulens = np.fromiter((len(p) for p in pcs), np.int64, m)
        uent = np.fromiter((a for p in pcs for a in p), np.uint64, int(ulens.sum()))
        order = np.argsort(np.concatenate([own, np.repeat(np.arange(m), ulens)]), kind="stable")
        ent = np.concatenate([ent, uent])[order]
        own = np.concatenate([own, np.repeat(np.arange(m), ulens)])[order]
        fixed = np.concatenate([fixed, np.full(len(uent), MODE_USER, np.int8)])[order]
    return ent, own, fixed


def _context_modes(
    ent: np.ndarray, own: np.ndarray, fixed: np.ndarray, drop: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(marker, mode): which entries are context markers (PERF_CONTEXT_*), and each entry's
    mode (kernel, hypervisor, user) from the last marker before it in its chain (user by
    default, or its fixed mode). Chains with a guest context are marked in *drop*."""
    n = len(ent)
    marker = (fixed < 0) & (ent >= np.uint64(CONTEXT_MAX))
    if marker.any():
        guest = marker & ~np.isin(ent, np.array([CTX_HV, CTX_KERNEL, CTX_USER], np.uint64))
        drop[np.unique(own[guest])] = True
    code = np.where(
        ent == np.uint64(CTX_KERNEL),
        MODE_KERNEL,
        np.where(ent == np.uint64(CTX_HV), MODE_HV, MODE_USER),
    ).astype(np.int8)
    first_of = np.r_[True, own[1:] != own[:-1]]
    start_idx = np.maximum.accumulate(np.where(first_of, np.arange(n), 0))
    last = np.maximum.accumulate(np.where(marker, np.arange(n), -1))
    mode = np.where(last >= start_idx, code[np.maximum(last, 0)], MODE_USER).astype(np.int8)
    return marker, np.where(fixed >= 0, fixed, mode)
