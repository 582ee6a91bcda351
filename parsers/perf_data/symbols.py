"""Symbol names for addresses, chosen the way ``perf script`` (perf 6.1) chooses them.

User space. perf works in *file offsets*: a sample address becomes ``ip - map.start +
map.pgoff``, and every ELF symbol value is converted from a virtual address to a file offset
through the PT_LOAD segment that contains it. The symbol file is searched like perf's
``dso__load``: the first candidate with a ``.symtab`` (a debug-link target, perf's build-id
cache ``~/.debug``, ``/usr/lib/debug/<path>[.debug]``, ``/usr/lib/debug/.build-id/xx/...``,
then the file itself) gives the symbols, the first with a ``.dynsym`` gives the "runtime"
file (program headers); a candidate whose build id differs from the recorded one is skipped.
Symbols kept are perf's: functions and objects with a name and a section, plus NOTYPE labels
in text/data sections (not hidden); both ``.symtab`` and ``.dynsym`` are loaded. Then perf's
fixups: a zero-sized symbol ends where the next one starts (the last one at the next page
boundary plus a page), and of several symbols at one address one is kept by perf's
``choose_best_symbol``: non-zero size, then non-weak, then global, then fewer leading
underscores, then the longer name (first one on a tie). Last, perf 6.1's ``name@plt``
symbols for the ``.plt`` entries, in ``.rela.plt`` order.

Kernel. ``/proc/kallsyms`` when the recording was made on this boot (the kernel build id in
the file equals ``/sys/kernel/notes``', or the file names none) and ``_text`` has not moved,
else perf's cached copy ``~/.debug/[kernel.kallsyms]/<build-id>/kallsyms``: text and data
symbols, sized by the next symbol, aliases resolved as above. Without either, kernel frames
keep their addresses and are named ``[unknown]``.

Reading uses pyelftools for the ELF structure and numpy for the symbol arrays (a Go binary has
tens of thousands of symbols; kallsyms 120,000 lines). Every symbol file is loaded once per
process (cached by path, build id and file stamp), so parsing many files pays once.
"""

from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

try:  # LLVM's demanglers (Itanium C++, Rust v0), vendored in abi3 wheels
    import pycxxfilt
except ImportError:  # pragma: no cover - a dependency; without it names stay mangled
    pycxxfilt = None

SYM_DTYPE = np.dtype(
    [("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"), ("value", "<u8"),
     ("size", "<u8")]
)  # fmt: skip
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_GNU_IFUNC = 0, 1, 2, 10
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
SHN_UNDEF, SHN_ABS = 0, 0xFFF1
SHF_ALLOC = 0x2
PAGE = 4096


@functools.lru_cache(maxsize=1 << 16)
def demangle(name: str) -> str:
    """A C++ (Itanium ``_Z``) or Rust (v0 ``_R``, legacy ``_ZN..17h<hash>E``) symbol as
    c++filt prints it, parameters included, by LLVM's demanglers (pycxxfilt); any other
    name, or one they cannot read, as it is. Once per distinct name: a stack table repeats
    a few hundred names over millions of frames. perf script 6.1 prints names without
    their parameters (libiberty, DMGL_NO_OPTS), so C++ frames read from its text differ."""
    if pycxxfilt is None or not name.startswith(("_Z", "_R")):
        return name
    try:
        out = pycxxfilt.demangle(name)
    except (ValueError, TypeError):
        return name
    return out or name


def buildid_dir() -> Path:
    """perf's build-id cache ($PERF_BUILDID_DIR, default ~/.debug)."""
    return Path(os.environ.get("PERF_BUILDID_DIR") or Path.home() / ".debug")


@dataclass
class SymbolTable:
    """Sorted, de-duplicated symbols in one address space (file offsets or kernel VAs)."""

    start: np.ndarray  # uint64
    end: np.ndarray  # uint64, exclusive (== start only for a zero-sized symbol)
    names: list[str]

    @classmethod
    def empty(cls) -> SymbolTable:
        return cls(np.zeros(0, np.uint64), np.zeros(0, np.uint64), [])

    def lookup(self, addr: np.ndarray) -> np.ndarray:
        """Index of the symbol containing each address, -1 where none does."""
        addr = np.asarray(addr, np.uint64)
        if not len(self.start) or not len(addr):
            return np.full(len(addr), -1, np.int64)
        j = np.searchsorted(self.start, addr, side="right") - 1
        jc = np.maximum(j, 0)
        s, e = self.start[jc], self.end[jc]
        hit = (j >= 0) & ((addr < e) | ((addr == s) & (s == e)))
        out = np.where(hit, j, -1)
        # an enclosing earlier symbol (sizes that span later symbols): look a few back
        for k in np.flatnonzero(~hit & (j > 0)).tolist():
            a = int(addr[k])
            for i in range(int(j[k]) - 1, max(int(j[k]) - 16, -1), -1):
                if int(self.start[i]) <= a < int(self.end[i]):
                    out[k] = i
                    break
        return out


@dataclass
class _Sym:
    start: int
    end: int
    bind: int
    type: int
    name: str


def _underscores(s: str) -> int:
    return len(s) - len(s.lstrip("_"))


def choose_best(a: _Sym, b: _Sym) -> bool:
    """perf's choose_best_symbol: True when *a* wins over *b*."""
    la, lb = a.end - a.start, b.end - b.start
    if lb == 0 and la > 0:
        return True
    if la == 0 and lb > 0:
        return False
    wa, wb = a.bind == STB_WEAK, b.bind == STB_WEAK
    if wb and not wa:
        return True
    if wa and not wb:
        return False
    ga, gb = a.bind == STB_GLOBAL, b.bind == STB_GLOBAL
    if ga and not gb:
        return True
    if gb and not ga:
        return False
    ua, ub = _underscores(a.name), _underscores(b.name)
    if ub > ua:
        return True
    if ua > ub:
        return False
    return len(a.name) >= len(b.name)


def _module(name: str) -> str | None:
    """The ``[module]`` part of a kallsyms name (None for the kernel proper)."""
    i = name.find("[")
    return name[i:] if i >= 0 else None


def fixup(syms: list[_Sym], kallsyms: bool = False) -> list[_Sym]:
    """perf's symbols__fixup_end then symbols__fixup_duplicate, on symbols sorted by start
    (stable: equal starts keep insertion order, as perf's rb-tree does)."""
    syms.sort(key=lambda s: s.start)
    for prev, curr in zip(syms[:-1], syms[1:], strict=True):
        if prev.end == prev.start:
            if kallsyms and _module(prev.name) != _module(curr.name):
                prev.end = (prev.end + PAGE + PAGE - 1) // PAGE * PAGE
            else:
                prev.end = curr.start
    if syms and syms[-1].end == syms[-1].start:
        last = syms[-1]
        last.end = (last.start + PAGE - 1) // PAGE * PAGE + PAGE
    out: list[_Sym] = []
    for s in syms:
        if out and out[-1].start == s.start:
            if not choose_best(out[-1], s):
                out[-1] = s
            continue
        out.append(s)
    return out


def table_of(syms: list[_Sym]) -> SymbolTable:
    if not syms:
        return SymbolTable.empty()
    return SymbolTable(
        np.array([s.start for s in syms], np.uint64),
        np.array([s.end for s in syms], np.uint64),
        [s.name for s in syms],
    )


# --- ELF files ---------------------------------------------------------------------------


@dataclass
class ElfInfo:
    """What we need of one ELF file: build id, sections, PT_LOAD segments, symbols."""

    path: str
    build_id: bytes | None
    loads: list[tuple[int, int, int, int]]  # (p_vaddr, p_offset, p_filesz, p_memsz)
    has_symtab: bool
    has_dynsym: bool
    sections: list[dict] = field(default_factory=list)  # name, type, flags, addr, offset, size

    @property
    def debug_only(self) -> bool:
        """A separate debug-info file (``objcopy --only-keep-debug``, /usr/lib/debug): its
        code sections are NOBITS and its PT_LOAD offsets are not the binary's (zeroed), so
        it names symbols by address but cannot turn the recorded file offsets into
        addresses. Read alone, it would name every frame wrongly (perf 6.1 does)."""
        return any(s["name"] == ".text" and s["type"] == "SHT_NOBITS" for s in self.sections)

    def vaddr_to_offset(self, v: int) -> int | None:
        for vaddr, off, filesz, memsz in self.loads:
            if vaddr <= v < vaddr + max(filesz, memsz):
                return v - vaddr + off
        return None

    def offset_to_vaddr(self, o: int) -> int | None:
        for vaddr, off, filesz, _memsz in self.loads:
            if off <= o < off + filesz:
                return o - off + vaddr
        return None


def read_build_id(elf: ELFFile) -> bytes | None:
    for sec in elf.iter_sections():
        if sec["sh_type"] != "SHT_NOTE":
            continue
        try:
            for note in sec.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU":
                    return bytes.fromhex(note["n_desc"])
        except (ELFError, ValueError, KeyError, AttributeError):
            continue
    return None


def elf_info(path: str) -> ElfInfo | None:
    """ElfInfo of *path*, or None when it is not a readable ELF file."""
    try:
        with open_elf(path) as f:
            elf = ELFFile(f)
            loads = [
                (s["p_vaddr"], s["p_offset"], s["p_filesz"], s["p_memsz"])
                for s in elf.iter_segments()
                if s["p_type"] == "PT_LOAD"
            ]
            sections = [
                {
                    "name": s.name,
                    "type": s["sh_type"],
                    "flags": s["sh_flags"],
                    "addr": s["sh_addr"],
                    "offset": s["sh_offset"],
                    "size": s["sh_size"],
                    "link": s["sh_link"],
                    "entsize": s["sh_entsize"],
                }
                for s in elf.iter_sections()
            ]
            return ElfInfo(
                path=path,
                build_id=read_build_id(elf),
                loads=loads,
                has_symtab=any(
                    s["name"] == ".symtab" and s["type"] == "SHT_SYMTAB" for s in sections
                ),
                has_dynsym=any(
                    s["name"] == ".dynsym" and s["type"] == "SHT_DYNSYM" for s in sections
                ),
                sections=sections,
            )
    except (OSError, ELFError, ValueError, KeyError, IndexError, AssertionError, TypeError):
        return None
    except Exception:  # pyelftools raises assorted errors on damaged files
        return None


#: in-memory ELF images by pseudo path (the vdso copied from this process)
BLOBS: dict[str, bytes] = {}


def open_elf(path: str):
    """A binary stream of *path*: a file, or an in-memory image registered in BLOBS."""
    blob = BLOBS.get(path)
    if blob is not None:
        return io.BytesIO(blob)
    return open(path, "rb")  # noqa: SIM115 - the caller closes it


def _read(path: str, offset: int, size: int) -> bytes:
    with open_elf(path) as f:
        f.seek(offset)
        return f.read(size)


def _elf_symbols(syms: ElfInfo, runtime: ElfInfo, dynsym: bool) -> list[_Sym]:
    """perf's dso__load_sym_internal for one table of *syms* (file offsets via *runtime*)."""
    want = ".dynsym" if dynsym else ".symtab"
    kind = "SHT_DYNSYM" if dynsym else "SHT_SYMTAB"
    tab = next((s for s in syms.sections if s["name"] == want and s["type"] == kind), None)
    if tab is None or tab["link"] >= len(syms.sections):
        return []
    strtab = syms.sections[tab["link"]]
    if strtab["type"] == "SHT_NOBITS":
        return []
    raw = _read(syms.path, tab["offset"], tab["size"])
    n = len(raw) // SYM_DTYPE.itemsize
    arr = np.frombuffer(raw, SYM_DTYPE, count=n)
    strings = _read(syms.path, strtab["offset"], strtab["size"])
    typ = arr["info"] & 0xF
    bind = arr["info"] >> 4
    vis = arr["other"] & 3
    named = (arr["name"] != 0) & (arr["shndx"] != SHN_UNDEF)
    func = named & ((typ == STT_FUNC) | (typ == STT_GNU_IFUNC) | (typ == STT_OBJECT))
    label = named & (typ == STT_NOTYPE) & (arr["shndx"] != SHN_ABS) & (vis != 1) & (vis != 2)
    keep = (func | label) & (arr["shndx"] != SHN_ABS) & (arr["shndx"] < len(syms.sections))
    out: list[_Sym] = []
    secs = syms.sections
    rsecs = runtime.sections
    for i in np.flatnonzero(keep).tolist():
        s = arr[i]
        sec = secs[int(s["shndx"])]
        if not sec["flags"] & SHF_ALLOC:
            continue
        if sec["type"] == "SHT_NOBITS" and int(s["shndx"]) < len(rsecs):
            sec = rsecs[int(s["shndx"])]
        if label[i] and not ("text" in sec["name"] or "data" in sec["name"]):
            continue
        value = int(s["value"])
        off = runtime.vaddr_to_offset(value)
        if off is None:
            off = value - (sec["addr"] - sec["offset"])
        nend = strings.find(b"\x00", int(s["name"]))
        name = strings[int(s["name"]) : nend if nend >= 0 else len(strings)]
        size = int(s["size"])
        out.append(
            _Sym(off, off + size, int(bind[i]), int(typ[i]), name.decode("utf-8", "replace"))
        )
    return out


def load_elf_symbols(syms: ElfInfo, runtime: ElfInfo) -> SymbolTable:
    """Symbols in file-offset space: .symtab then .dynsym of *syms*, with perf's fixups,
    then the PLT entries of *runtime* (``name@plt``, added after the fixups as perf does)."""
    table: list[_Sym] = []
    for dyn in (False, True):
        if syms.has_dynsym if dyn else syms.has_symtab:
            got = _elf_symbols(syms, runtime, dyn)
            if got:
                table = fixup(table + got)
    if table:
        plt = _plt_symbols(runtime)
        if plt:
            table = sorted(table + plt, key=lambda s: s.start)
    return table_of(table)


def _plt_symbols(info: ElfInfo) -> list[_Sym]:
    """perf 6.1's dso__synthesize_plt_symbols for x86: one ``name@plt`` per .rela.plt entry,
    in relocation order, after a header entry, each ``.plt``'s entsize long."""
    secs = info.sections
    dynsym_idx = next(
        (i for i, s in enumerate(secs) if s["name"] == ".dynsym" and s["type"] == "SHT_DYNSYM"),
        None,
    )
    rel = next((s for s in secs if s["name"] in (".rela.plt", ".rel.plt")), None)
    plt = next((s for s in secs if s["name"] == ".plt"), None)
    if dynsym_idx is None or rel is None or plt is None or rel["link"] != dynsym_idx:
        return []
    if rel["type"] != "SHT_RELA" or not rel["entsize"] or not plt["entsize"]:
        return []
    dynsym = secs[dynsym_idx]
    if dynsym["link"] >= len(secs):
        return []
    strtab = secs[dynsym["link"]]
    rels = np.frombuffer(_read(info.path, rel["offset"], rel["size"]), "<u8")
    rels = rels[: len(rels) // 3 * 3].reshape(-1, 3)
    raw = _read(info.path, dynsym["offset"], dynsym["size"])
    arr = np.frombuffer(raw, SYM_DTYPE, count=len(raw) // SYM_DTYPE.itemsize)
    strings = _read(info.path, strtab["offset"], strtab["size"])
    entry = plt["entsize"]
    off = plt["offset"] + entry
    out = []
    for info_word in rels[:, 1].tolist():
        k = info_word >> 32
        name = ""
        if k < len(arr):
            at = int(arr[k]["name"])
            end = strings.find(b"\x00", at)
            name = strings[at : end if end >= 0 else len(strings)].decode("utf-8", "replace")
        out.append(_Sym(off, off + entry, STB_GLOBAL, STT_FUNC, f"{name}@plt"))
        off += entry
    return out


def debuglink(info: ElfInfo) -> str | None:
    sec = next((s for s in info.sections if s["name"] == ".gnu_debuglink"), None)
    if sec is None or sec["type"] == "SHT_NOBITS":
        return None
    raw = _read(info.path, sec["offset"], min(sec["size"], 4096))
    name = raw.split(b"\x00", 1)[0].decode("utf-8", "replace")
    return name or None


def in_symfs(symfs: str | None, path: str) -> str | None:
    """*path* (as the recording names it) under the *symfs* root, as ``perf --symfs`` looks
    it up: DIR + path (None without a symfs)."""
    return symfs.rstrip("/") + "/" + path.lstrip("/") if symfs else None


def build_id_index(root: str | Path, build_id: bytes) -> str:
    """A ``.build-id/xx/yyyy`` entry under *root* (perf's cache layout, and the one
    `tracecorr capture --archive` and ``perf archive`` write): a file or a link to one, or a
    directory holding ``elf``."""
    h = build_id.hex()
    entry = Path(root) / ".build-id" / h[:2] / h[2:]
    return str(entry / "elf") if entry.is_dir() else str(entry)


def candidates(
    path: str,
    build_id: bytes | None,
    local: ElfInfo | None,
    kind: str = "elf",
    symfs: str | None = None,
) -> list[str]:
    """Symbol-file candidates for the DSO *path*, in perf's dso__load order. With a *symfs*
    (another machine's or a container's root) each place is looked up there first, and the
    symfs's own ``.build-id`` index after perf's cache: the recorded paths are the
    recording's, and here they may name other files, or none."""
    out: list[str] = []
    d = os.path.dirname(path)
    roots = [symfs.rstrip("/"), ""] if symfs else [""]
    if local is not None:
        link = debuglink(local)
        if link:
            for r in roots:
                out += [r + os.path.join(d, link), r + os.path.join(d, ".debug", link),
                        r + "/usr/lib/debug" + os.path.join(d, link)]  # fmt: skip
    bid = build_id or (local.build_id if local else None)
    if bid:
        h = bid.hex()
        cache = buildid_dir() / ".build-id" / h[:2] / h[2:]
        out += [str(cache / kind), str(cache / "debug")]
        if symfs:
            out.append(build_id_index(symfs, bid))
    for r in roots:
        out += [r + "/usr/lib/debug" + path + ".debug", r + "/usr/lib/debug" + path]
    if bid:
        h = bid.hex()
        out += [f"{r}/usr/lib/debug/.build-id/{h[:2]}/{h[2:]}.debug" for r in roots]
    out += [in_symfs(symfs, path) or path] + ([path] if symfs else [])
    return list(dict.fromkeys(out))


def own_vdso() -> tuple[bytes, bytes | None] | None:
    """This process's vdso image and its build id (same kernel, same vdso)."""
    try:
        with open("/proc/self/maps") as f:
            m = next((ln for ln in f if ln.rstrip().endswith("[vdso]")), None)
        if m is None:
            return None
        lo, hi = (int(x, 16) for x in m.split()[0].split("-"))
        with open("/proc/self/mem", "rb") as mem:
            mem.seek(lo)
            image = mem.read(hi - lo)
    except (OSError, ValueError, OverflowError):
        return None
    BLOBS["<own vdso>"] = image
    info = elf_info("<own vdso>")
    return image, info.build_id if info else None


@dataclass(frozen=True)
class Lookup:
    """Where one recorded user-space DSO was read from, or why it could not be: what the
    outputs say once per DSO. A frame is never named, nor unwound, from a file whose build
    id differs from the recorded one (a container's ``/usr/lib/libc.so.6`` is not the
    host's), so such a DSO is a "mismatch" and its frames stay unnamed."""

    path: str  # as the recording names it
    build_id: bytes | None  # the recorded one (MMAP2, or the BUILD_ID header), if any
    status: str  # "ok", "missing" (no such file, no build-id match), "mismatch", "debug-only"
    file: str | None = None  # the file read ("ok"), or the one that did not match
    found_build_id: bytes | None = None  # that file's build id ("mismatch")

    def as_dict(self) -> dict:
        """JSON-ready (the ``symbols`` note of a source's meta)."""
        return {
            "path": self.path,
            "build_id": self.build_id.hex() if self.build_id else None,
            "status": self.status,
            "file": self.file,
            **({"found_build_id": self.found_build_id.hex()} if self.found_build_id else {}),
        }


#: symbol tables loaded in this process, by (path, build id, kind, symfs, file stamps): a
#: DSO's symbols are read once however many files are parsed
_LOADED: dict[tuple, tuple[SymbolTable, ElfInfo | None, list[str], Lookup | None]] = {}


def _stamp(path: str) -> tuple | None:
    if path in BLOBS:
        return ("blob", len(BLOBS[path]))
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _same_build(want: bytes | None, info: ElfInfo) -> bool:
    """Is *info* the file *want* names (any file, without a build id to check)?"""
    if not want:
        return True
    return bool(info.build_id) and info.build_id[: len(want)] == want


class Symbolizer:
    """Loads each DSO's symbols once; resolves file offsets to names. *symfs*: a directory
    laid out as the recording machine's (or container's) root, looked in first, as
    ``perf --symfs``; *recorded*: build ids by path from the BUILD_ID header, for DSOs
    whose MMAP records carry none. ``lookups``: how each user-space DSO asked for was
    found (``Lookup``)."""

    def __init__(
        self,
        vdso_build_id: bytes | None = None,
        same_kernel: bool = False,
        symfs: str | None = None,
        recorded: dict[str, bytes] | None = None,
    ) -> None:
        self._tables: dict[tuple[str, bytes | None], SymbolTable] = {}
        self._runtime: dict[tuple[str, bytes | None], ElfInfo | None] = {}
        self.problems: list[str] = []
        self.lookups: dict[tuple[str, bytes | None], Lookup] = {}
        self.vdso_build_id = vdso_build_id
        self.same_kernel = same_kernel
        self.symfs = symfs
        self.recorded = recorded or {}
        self._vdso_path: str | None | bool = False

    def vdso_path(self) -> str | None:
        """An ELF image of the recorded vdso: perf's cached copy (by build id), else this
        process's own vdso when it is the same image (same build id, or same kernel)."""
        if self._vdso_path is False:
            self._vdso_path = None
            bid = self.vdso_build_id
            if bid:
                h = bid.hex()
                cached = buildid_dir() / ".build-id" / h[:2] / h[2:] / "vdso"
                if cached.is_file():
                    self._vdso_path = str(cached)
            if self._vdso_path is None:
                own = own_vdso()
                if own is not None and ((bid and own[1] == bid) or (not bid and self.same_kernel)):
                    self._vdso_path = "<own vdso>"
        return self._vdso_path

    def runtime(self, path: str, build_id: bytes | None, kind: str = "elf") -> ElfInfo | None:
        """The executable file of the DSO (its program headers and .eh_frame)."""
        key = self._key(path, build_id, kind)
        if key not in self._tables:
            self._load(*key, kind)
        return self._runtime.get(key)

    def table(self, path: str, build_id: bytes | None, kind: str = "elf") -> SymbolTable:
        key = self._key(path, build_id, kind)
        if key not in self._tables:
            self._load(*key, kind)
        return self._tables[key]

    def _key(self, path: str, build_id: bytes | None, kind: str) -> tuple[str, bytes | None]:
        """(path, the build id to check files against): the MMAP record's, else the BUILD_ID
        header's for that path."""
        if build_id is None and kind == "elf":
            build_id = self.recorded.get(path)
        return path, build_id

    def _load(self, path: str, build_id: bytes | None, kind: str) -> None:
        key = (path, build_id)
        here = in_symfs(self.symfs, path) if kind == "elf" else None
        stamps = (_stamp(path), _stamp(here) if here else None)
        cache_key = (path, build_id, kind, self.symfs, stamps)
        hit = _LOADED.get(cache_key)
        if hit is None:
            before = len(self.problems)
            lookup = self._search(path, build_id, kind)
            hit = (self._tables[key], self._runtime[key], self.problems[before:], lookup)
            _LOADED[cache_key] = hit
        else:
            self.problems += hit[2]
        self._tables[key], self._runtime[key], _, lookup = hit
        if lookup is not None:
            self.lookups[key] = lookup

    def _local(self, path: str, kind: str) -> tuple[str, ElfInfo | None]:
        """The DSO's own file (under the symfs when it is there, else at its path) and its
        ElfInfo (None: not a readable ELF file, or not a file DSO)."""
        if kind != "elf":
            return path, None
        here = in_symfs(self.symfs, path)
        where = here if here and os.path.lexists(here) else path
        return where, elf_info(where)

    def _search(self, path: str, build_id: bytes | None, kind: str) -> Lookup | None:
        """Pick the symbol and runtime files of one DSO (perf's dso__load order, build ids
        checked) and say how it went (None for the vdso, which is looked up apart)."""
        key = (path, build_id)
        where, local = self._local(path, kind)
        # perf takes the build id from the file itself when the recording has none for it
        want = build_id or (local.build_id if local is not None else None)
        syms_ss = runtime_ss = None
        wrong: list[tuple[str, bytes | None]] = []
        symfs = self.symfs if kind == "elf" else None
        for cand in candidates(path, build_id, local, kind, symfs):
            info = local if cand == where and local is not None else elf_info(cand)
            if info is None:
                continue
            if not _same_build(want, info):
                wrong.append((cand, info.build_id))
                continue
            if syms_ss is None and info.has_symtab:
                syms_ss = info
            if runtime_ss is None and info.has_dynsym and not info.debug_only:
                runtime_ss = info
            if syms_ss is not None and runtime_ss is not None:
                break
        self._tables[key] = SymbolTable.empty()
        self._runtime[key] = None
        if syms_ss is None and runtime_ss is None:
            return self._not_loaded(path, build_id, kind, where, local, wrong)
        if runtime_ss is None and syms_ss.debug_only:
            # only its debug info: symbols by address, but no way from file offsets to them
            self.problems.append(f"{path}: only separate debug info here ({syms_ss.path})")
            return Lookup(path, build_id, "debug-only", syms_ss.path) if kind == "elf" else None
        self._read_symbols(path, key, syms_ss or runtime_ss, runtime_ss or syms_ss, local)
        if kind != "elf":
            return None
        return Lookup(path, build_id, "ok", (syms_ss or runtime_ss).path)

    def _not_loaded(self, path, build_id, kind, where, local, wrong) -> Lookup | None:
        """No file with symbols: the DSO's own file may still be the right one (stripped:
        its CFI unwinds); else it is missing, or only files of other builds are here."""
        key = (path, build_id)
        want = build_id or (local.build_id if local is not None else None)
        if local is not None and _same_build(want, local):
            self.problems.append(f"no symbols for {path}")
            self._runtime[key] = local
            return Lookup(path, build_id, "ok", where) if kind == "elf" else None
        if kind != "elf":
            self.problems.append(f"no symbols for {path}")
            return None
        if build_id and wrong:
            own = [w for w in wrong if w[0] in (where, path)] or wrong
            self.problems.append(f"{path}: only files of another build id here")
            return Lookup(path, build_id, "mismatch", own[0][0], own[0][1])
        self.problems.append(f"{path}: not found")
        return Lookup(path, build_id, "missing", where if os.path.lexists(where) else None)

    def _read_symbols(self, path, key, syms_ss: ElfInfo, runtime_ss: ElfInfo, local) -> None:
        try:
            self._tables[key] = load_elf_symbols(syms_ss, runtime_ss)
        except (OSError, ValueError, IndexError) as exc:
            self.problems.append(f"{path}: symbols unreadable ({exc})")
        ok_local = local if local is not None and _same_build(runtime_ss.build_id, local) else None
        self._runtime[key] = runtime_ss if runtime_ss.loads else ok_local


# --- kernel ------------------------------------------------------------------------------


_KALLSYMS_CACHE: dict[tuple, tuple[SymbolTable, int | None]] = {}
_HEX = np.full(256, 255, np.uint8)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)
_KEPT_TYPES = np.frombuffer(b"TtWwDdBb", np.uint8)


class _LineNames:
    """Symbol names decoded on demand from the kallsyms text (122k lines; a recording's
    callchains touch a few hundred of them)."""

    def __init__(self, raw: bytes, lo: np.ndarray, hi: np.ndarray) -> None:
        self.raw, self.lo, self.hi = raw, lo, hi

    def __len__(self) -> int:
        return len(self.lo)

    def __getitem__(self, i: int) -> str:
        return self.raw[int(self.lo[i]) : int(self.hi[i])].decode("utf-8", "replace")


def parse_kallsyms(raw: bytes | str) -> tuple[SymbolTable, int | None]:
    """kallsyms text -> (symbols, address of _text): perf's text and data symbols (types
    T/W/D/B, any case), zero-sized and then sized by perf's kallsyms fixups: each ends where
    the next starts, except at a kernel/module or module/module boundary and for the last
    one (next page boundary plus a page); of aliases at one address the last listed is kept
    (the others are zero-sized after the fixup, and perf prefers a sized symbol). Module
    symbols keep their ``\t[module]`` suffix. Parsed with numpy; names stay bytes until
    looked up."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "replace")
    arr = np.frombuffer(raw, np.uint8)
    lo, nl, addr = _kallsyms_lines(arr)
    typ = arr[lo + 17]
    name_lo = lo + 19
    # _text: a line whose name is exactly "_text"
    text_addr = None
    five = (nl - name_lo == 5) & (arr[np.minimum(name_lo, len(arr) - 1)] == ord("_"))
    for i in np.flatnonzero(five).tolist():
        if raw[int(name_lo[i]) : int(nl[i])] == b"_text":
            text_addr = int(addr[i])
            break
    keep = np.isin(typ, _KEPT_TYPES)
    addr, name_lo, name_hi, lo = addr[keep], name_lo[keep], nl[keep], lo[keep]
    if not len(addr):
        return SymbolTable.empty(), text_addr
    # a module symbol's line has a tab ("name\t[module]")
    tabs = np.flatnonzero(arr == 9)
    mod_tab = np.full(len(lo), -1, np.int64)
    if len(tabs):
        line = np.searchsorted(lo, tabs, side="right") - 1
        inside = (line >= 0) & (tabs < name_hi[np.maximum(line, 0)])
        mod_tab[line[inside]] = tabs[inside]
    order = np.argsort(addr, kind="stable")
    addr, name_lo, name_hi, mod_tab = addr[order], name_lo[order], name_hi[order], mod_tab[order]
    last_of_run = np.r_[addr[1:] != addr[:-1], True]
    addr, name_lo, name_hi, mod_tab = (
        addr[last_of_run],
        name_lo[last_of_run],
        name_hi[last_of_run],
        mod_tab[last_of_run],
    )
    end = _kallsyms_ends(raw, addr, name_hi, mod_tab)
    return SymbolTable(addr, end, _LineNames(raw, name_lo, name_hi)), text_addr  # type: ignore[arg-type]


def _kallsyms_lines(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(line start, line end, address) of every well-formed kallsyms line: 16 hex digits, a
    space, the type letter, a space, the name."""
    nl = np.flatnonzero(arr == 10)
    if len(arr) and (not len(nl) or nl[-1] != len(arr) - 1):
        nl = np.append(nl, len(arr))
    lo = np.r_[0, nl[:-1] + 1] if len(nl) else np.zeros(0, np.int64)
    ok = (nl - lo >= 19) & (lo + 18 < len(arr))
    lo, nl = lo[ok], nl[ok]
    ok = (arr[lo + 16] == 32) & (arr[lo + 18] == 32)
    lo, nl = lo[ok], nl[ok]
    addr = np.zeros(len(lo), np.uint64)
    ok = np.ones(len(lo), bool)
    for k in range(16):  # one hex digit at a time: no (lines x 16) temporaries
        d = _HEX[arr[lo + k]]
        ok &= d != 255
        addr = (addr << np.uint64(4)) | d.astype(np.uint64)
    return lo[ok], nl[ok], addr[ok]


def _kallsyms_ends(
    raw: bytes, addr: np.ndarray, name_hi: np.ndarray, mod_tab: np.ndarray
) -> np.ndarray:
    """perf's kallsyms fixups: each symbol ends where the next starts, except at a
    kernel/module or module/module boundary (the next page boundary plus a page) and for the
    last one."""
    page = np.uint64(PAGE)
    end = np.empty_like(addr)
    end[:-1] = addr[1:]
    boundary = (mod_tab[:-1] >= 0) != (mod_tab[1:] >= 0)
    both = np.flatnonzero((mod_tab[:-1] >= 0) & (mod_tab[1:] >= 0))
    for i in both.tolist():
        a = raw[int(mod_tab[i]) : int(name_hi[i])]
        b = raw[int(mod_tab[i + 1]) : int(name_hi[i + 1])]
        boundary[i] = a != b
    roundup = (addr[:-1] + page + page - np.uint64(1)) // page * page
    end[:-1] = np.where(boundary, roundup, end[:-1])
    end[-1] = (addr[-1] + page - np.uint64(1)) // page * page + page
    return end


def read_kallsyms(path: str) -> tuple[SymbolTable, int | None]:
    """parse_kallsyms of a file, cached per process (per boot for /proc/kallsyms)."""
    try:
        if path == "/proc/kallsyms":
            key = (path, Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        else:
            st = os.stat(path)
            key = (path, st.st_mtime_ns, st.st_size)
    except OSError:
        key = (path,)
    hit = _KALLSYMS_CACHE.get(key)
    if hit is None:
        hit = _KALLSYMS_CACHE[key] = parse_kallsyms(Path(path).read_bytes())
    return hit


def kernel_build_id() -> bytes | None:
    """The running kernel's build id, from /sys/kernel/notes."""
    try:
        raw = Path("/sys/kernel/notes").read_bytes()
    except OSError:
        return None
    off = 0
    while off + 12 <= len(raw):
        namesz, descsz, ntype = np.frombuffer(raw[off : off + 12], "<u4").tolist()
        name = raw[off + 12 : off + 12 + namesz]
        desc_at = off + 12 + ((namesz + 3) & ~3)
        desc = raw[desc_at : desc_at + descsz]
        if ntype == 3 and name.rstrip(b"\x00") == b"GNU":
            return bytes(desc)
        off = desc_at + ((descsz + 3) & ~3)
    return None


def kernel_symbols(
    recorded_build_id: bytes | None, recorded_text: int | None, release_matches: bool | None
) -> tuple[SymbolTable | None, str]:
    """Kernel symbols for this recording and where they came from (or why there are none)."""
    running = kernel_build_id()
    # perf uses /proc/kallsyms when the recorded kernel build id is the running kernel's, or
    # when the file names no build id at all (then the _text check below still applies)
    same = (
        recorded_build_id is not None
        and running is not None
        and running[: len(recorded_build_id)] == recorded_build_id
    ) or (recorded_build_id is None and release_matches is not False)

    if same:
        try:
            table, text_addr = read_kallsyms("/proc/kallsyms")
        except OSError as exc:
            table, text_addr = None, None
            why = f"/proc/kallsyms unreadable ({exc})"
        else:
            if not len(table.start) or not text_addr:
                why = "/proc/kallsyms shows no addresses (kptr_restrict; run as root)"
                table = None
            elif recorded_text is not None and text_addr != recorded_text:
                why = (
                    f"_text moved since the recording ({text_addr:#x} now, "
                    f"{recorded_text:#x} then): another boot"
                )
                table = None
            else:
                return table, "/proc/kallsyms (recorded on this boot)"
    else:
        why = "recorded on another kernel (build ids differ)"
    if recorded_build_id:
        h = recorded_build_id.hex()
        cached = buildid_dir() / "[kernel.kallsyms]" / h / "kallsyms"
        try:
            table, _ = read_kallsyms(str(cached))
            if len(table.start):
                return table, f"perf's cached {cached}"
        except OSError:
            pass
    return None, why
