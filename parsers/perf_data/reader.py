"""parse / read / decode / rows of a perf.data: the modules of this package put together
(see the package docstring for what each does)."""

from __future__ import annotations

import platform
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..memory import release_freed_memory
from ..model import SourceMeta, SourceTables
from ..perf_records.header import PerfHeader
from ..stats import BY_NAME
from . import file as F
from .pieces import Piece, Plan, read_split
from .records import DataReader, Decoded
from .tables import Assembly, assemble, header_of
from .tracing import event_formats

FORMAT_VERSION = "perf.data v2 (PERFILE2), native reader"

#: a pieces.Plan, and what collects the helpers' pieces of it (pieces.read_split)
Split = tuple[Plan, Callable[[range], Mapping[int, Piece]]]


def parse(
    path: str | Path,
    source: str = "perf-data",
    pid: int | None = None,
    only_pids: set[int] | None = None,
    split: Split | None = None,
    symfs: str | Path | None = None,
) -> SourceTables:
    """Read a perf.data file natively. *pid* is unused (perf records its pids); *only_pids*
    keeps only those processes (system-wide recordings); *split*: the records are decoded
    with helper processes (see pieces.py), to the same tables; *symfs*: a directory laid out
    as the recording's root (a container's, another machine's), where every recorded DSO
    path is looked up first, for symbols and for the unwinder's CFI (``perf --symfs``).
    ``file.Unsupported`` for a file this reader does not decode (``parsers.perf_input``
    then reads it through ``perf script``)."""
    path = str(path)
    pf = F.PerfFile.open(path)
    try:
        return read(pf, source, only_pids, split=split, symfs=str(symfs) if symfs else None)
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    except (ValueError, IndexError, KeyError, OverflowError, struct.error) as exc:
        # a safety net for damage no check above foresaw: one line, never a traceback
        raise InputError(
            path, f"internal error while decoding ({type(exc).__name__}: {exc}); please report"
        ) from exc
    finally:
        pf.close()


@dataclass
class Decoding:
    """Everything decoded from one file, before the canonical tables are built."""

    header: PerfHeader
    formats: dict
    dec: Decoded
    asm: Assembly
    warnings: list[str]
    t_decode: float


def decode(
    pf: F.PerfFile, all_stacks: bool = False, split: Split | None = None, symfs: str | None = None
) -> Decoding:
    """Header, formats, records and the text path's per-record columns of an opened file.
    Unsupported when the file needs the perf script fallback; InputError when nothing can be
    read from it.

    *all_stacks*: intern the callchain of every printed sample, in row order, so that stack
    ids are numbered exactly as the text parser numbers them. By default only the stacks the
    tables reference are made (syscall entries, switch-outs, wakeups, signals, other events;
    not syscall exits): the same stack contents for every slice and instant, fewer frames,
    and faster.

    *split*: a pieces.Plan and the function that collects the helpers' pieces; *symfs*: where
    the recorded DSO paths are looked up first (``parse``)."""
    t0 = time.perf_counter()
    warnings = list(pf.warnings)
    header = header_of(pf)
    arch = header.arch or platform.machine()
    formats, long_size, problems = event_formats(pf)
    warnings += problems
    dwarf = any(a.sample_type & F.SAMPLE_STACK_USER for a in pf.attrs)
    if dwarf and arch not in ("x86_64", "amd64"):
        raise F.Unsupported(f"DWARF unwinding of {arch} samples (this reader unwinds x86_64)")
    reader = DataReader(pf, formats, long_size, all_chains=all_stacks)
    if split is not None and split[0].all_chains == all_stacks:
        dec = read_split(reader, *split)
    else:
        dec = reader.read()
    t_decode = time.perf_counter() - t0
    if dec.n_records == 0:
        where = dec.damage_offset if dec.damage_offset is not None else pf.data.offset
        raise InputError(
            pf.path,
            "no records could be read" + (f" ({dec.warnings[0]})" if dec.warnings else ""),
            offset=where,
        )
    asm = assemble(pf, dec, formats, header, all_stacks=all_stacks, symfs=symfs)
    if asm.rec.rows == 0:
        raise InputError(
            pf.path, "no printable records (samples or task events)", offset=pf.data.offset
        )
    return Decoding(header, formats, dec, asm, warnings, t_decode)


def read(
    pf: F.PerfFile,
    source: str,
    only_pids: set[int] | None = None,
    all_stacks: bool = False,
    split: Split | None = None,
    symfs: str | None = None,
) -> SourceTables:
    """Decode an opened perf.data into canonical tables (Unsupported: caller falls back)."""
    from ..perf_records.tables import build_tables

    d = decode(pf, all_stacks=all_stacks, split=split, symfs=symfs)
    header, dec, asm, warnings, t_decode = d.header, d.dec, d.asm, d.warnings, d.t_decode
    release_freed_memory()  # the decoding's temporaries, before build_tables allocates
    t_build = time.perf_counter()
    tables = build_tables(asm.rec, asm.reg, header, pf.path, source, only_pids)
    meta = tables.meta
    meta.kind = "perf-data"
    version = header.values.get("perf version")
    meta.format_version = FORMAT_VERSION + (f" (recorded by perf {version})" if version else "")
    for w in warnings + dec.warnings + asm.warnings:
        meta.warn(w)
    # in a fixed order: the order they were met in depends on where chunks and pieces begin
    counts = {**dec.skipped, **asm.counts}
    for (stat, key), n in sorted(counts.items(), key=lambda x: BY_NAME[x[0][0]].text(x[0][1])):
        meta.count(stat, n, key)  # in the order of their reasons, as the outputs list them
    _notes(meta, dec, asm)
    if symfs:
        meta.extra["symfs"] = symfs  # which one was used, for the report's sources[]
    meta.extra["timings_s"] = {
        "decode": round(t_decode, 3),
        **{k: round(v, 3) for k, v in asm.timings.items()},
        "build_tables": round(time.perf_counter() - t_build, 3),
    }
    return tables


def _notes(meta: SourceMeta, dec: Decoded, asm: Assembly) -> None:
    """What the decoding learnt, into the source's meta: ignored records, damage, lost
    samples, the unwinder's and the symbols' notes, a recording from another machine."""
    if dec.ignored:
        meta.extra["records_ignored"] = dict(sorted(dec.ignored.items()))
    if dec.damage_offset is not None:
        meta.extra["damage_offset"] = dec.damage_offset
    if asm.notes.get("lost_samples"):
        n = asm.notes["lost_samples"]
        meta.extra["lost_samples"] = n
        meta.warn(
            f"perf counted {n} sample(s) lost in the ring buffer (PERF_RECORD_LOST_SAMPLES): "
            "there are holes in the data"
        )
    if "unwind" in asm.notes:
        meta.extra["unwind"] = asm.notes["unwind"]
    if "stack_stops" in asm.notes:
        meta.extra["stack_stops"] = asm.notes["stack_stops"]
    if "symbols" in asm.notes:
        meta.extra["symbols"] = asm.notes["symbols"]
    host, release = meta.extra.get("hostname"), meta.extra.get("os_release")
    if (host and host != platform.node()) or (release and release != platform.release()):
        meta.warn(
            f"recorded on {host} ({release}), read on {platform.node()} ({platform.release()}): "
            "user-space symbols come from this machine's files (checked by build id where the "
            "file records one) and may be [unknown]"
        )


def rows(path: str | Path, all_stacks: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The records ``perf script`` would print, one row each in its order, with the decoded
    tracepoint fields, and the stacks table (for checks against perf's own output):

    rows: ``offset tid pid cpu time event comm stack_id nr ret fd syscall prev_pid prev_state
    next_pid woken_pid target_cpu`` (NA where a field does not apply); stacks: as in the
    tables."""
    from ..model import stacks_table

    with F.PerfFile.open(path) as pf:
        d = decode(pf, all_stacks=all_stacks)
    rec, reg = d.asm.rec, d.asm.reg
    n = rec.rows
    ev = np.array(reg.events.values, dtype=object)
    comms = np.array(reg.comms.values or [""], dtype=object)
    stack = rec.column("stack")
    out = pd.DataFrame(
        {
            "offset": rec.column("position"),  # the record's byte offset in the file
            "tid": rec.column("tid"),
            "pid": rec.column("pid"),
            "cpu": rec.column("cpu"),
            "time": rec.column("time"),
            "event": ev[rec.column("event")] if n else np.zeros(0, object),
            "comm": comms[rec.column("comm")] if n else np.zeros(0, object),
            "stack_id": pd.array(np.where(stack > 0, stack, 0), dtype="Int64"),
        }
    )
    out.loc[stack == 0, "stack_id"] = pd.NA

    def put(col: str, at: np.ndarray, values) -> None:
        full = pd.array([pd.NA] * n, dtype="Int64") if col not in out else out[col].array
        full[at] = values
        out[col] = full

    def put_label(col: str, at: np.ndarray, labels: list, codes: np.ndarray) -> None:
        out[col] = None
        out.loc[at, col] = np.array(labels, dtype=object)[codes]

    sys = rec.side("sys")
    if len(sys["row"]):
        put("nr", sys["row"], sys["nr"])
        put("ret", sys["row"], sys["ret"])
        put("fd", sys["row"], sys["fd"])
        put_label("syscall", sys["row"], reg.syscalls.values, sys["name"])
    sw = rec.side("switch")
    if len(sw["row"]):
        put("prev_pid", sw["row"], sw["prev"])
        put("next_pid", sw["row"], sw["next"])
        put_label("prev_state", sw["row"], reg.states.values, sw["state"])
    wk = rec.side("wake")
    if len(wk["row"]):
        put("woken_pid", wk["row"], wk["pid"])
        put("target_cpu", wk["row"], wk["cpu"])
    frames = (
        tuple((func, None, None, dso, kind, ip) for ip, func, dso, kind in fr)
        for fr in reg.stacks.frames
    )
    return out, stacks_table("perf-data", frames)
