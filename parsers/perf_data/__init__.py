"""perf.data read natively -> the same canonical tables as the ``perf script`` text path.

    file.py      header, attrs, feature sections; refuses pipe mode, -z, --threads dirs
    tracing.py   tracepoint format texts -> field offsets; prev_state letters from print fmt
    layout.py    sample and trailer layouts from sample_type; sizes checked against records
    records.py   the data section in chunks: header walk, numpy decode, callchains deduped
    order.py     perf script's delivery order (ordered-events queue, FINISHED_ROUND)
    maps.py      per-process maps and thread comms replayed in delivery order
    symbols.py   ELF / kallsyms symbols with perf's choices (file offsets, aliases)
    unwind.py    DWARF CFI unwinding of --call-graph dwarf samples (x86_64)
    stops.py     why a DWARF stack stopped inside user code; the splice past cut copies
    resolve.py   callchains -> frames exactly as perf script prints them
    tables.py    the per-record columns (perf_records.columns) for build_tables
    pieces.py    the data section decoded by several processes at once (guessed cuts, checked)
    reader.py    parse / read / decode / rows: the above put together

Why: ``perf script`` prints ~1 KB of text per sample and the text parser must read it back;
reading the binary records directly is several times faster and needs no ``perf`` binary.
The tables are built by the one ``perf_records.tables.build_tables`` from the same per-record
columns the text parser fills, so both paths agree by construction; the tests compare them on
real captures.

What this reader does not handle (pipe-mode files, ``perf record -z``, directory format,
other-endian files, DWARF unwinding on other architectures) is read through ``perf script``
instead, by :mod:`tracecorr.parsers.perf_input` (``parse`` here raises ``file.Unsupported``
for them), with a warning saying why.
Truncated or corrupt files give the records before the damage and a warning with the byte
offset; an unreadable header is an :class:`~tracecorr.parsers.errors.InputError`.
"""

from __future__ import annotations

__all__ = ["decode", "parse", "read", "rows"]

#: what ``reader`` provides; imported on first use, so that a worker process that only
#: decodes records (pieces.py) loads numpy, not pandas
_READER = {"decode", "parse", "read", "rows", "Decoding", "FORMAT_VERSION"}


def __getattr__(name: str):
    if name in _READER:
        from . import reader

        return getattr(reader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
