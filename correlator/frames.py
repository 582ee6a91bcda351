"""Stack frames of a source, looked up by stack id and formatted for reports.

A perf capture can hold thousands of distinct stacks and a Go trace tens of thousands; only
those of reported records are ever formatted, so frames are looked up on demand from the
stacks table sorted once by (stack_id, depth).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from ..parsers.model import SourceTables


class Frames:
    """The frames of one source's stacks, by stack id (leaf first)."""

    def __init__(self, src: SourceTables) -> None:
        self.table = src.stacks.sort_values(["stack_id", "depth"]).reset_index(drop=True)
        self.ids = self.table["stack_id"].to_numpy()
        self._strings: dict[int, list[str]] = {}
        self._cols = None  # (function, file, line, module) as object arrays, made on first use

    def get(self, stack_id) -> pd.DataFrame:
        if stack_id is None or pd.isna(stack_id):
            return self.table.iloc[0:0]
        sid = int(stack_id)
        lo, hi = np.searchsorted(self.ids, sid, "left"), np.searchsorted(self.ids, sid, "right")
        return self.table.iloc[lo:hi]

    def strings(self, stack_id) -> list[str]:
        """The stack as report lines, 'function (file:line)' or 'function (module)'."""
        if stack_id is None or pd.isna(stack_id):
            return []
        sid = int(stack_id)
        out = self._strings.get(sid)
        if out is None:
            if self._cols is None:
                t = self.table
                self._cols = tuple(
                    t[c].astype(object).to_numpy() if c in t else np.full(len(t), None, object)
                    for c in ("function", "file", "line", "module", "address")
                )
            lo = int(np.searchsorted(self.ids, sid, "left"))
            hi = int(np.searchsorted(self.ids, sid, "right"))
            out = self._strings[sid] = [
                _format(f, file, line, mod, addr)
                for f, file, line, mod, addr in zip(*(c[lo:hi] for c in self._cols), strict=True)
            ]
        return list(out)

    def items(self) -> Iterator[tuple[int, pd.DataFrame]]:
        for sid, g in self.table.groupby("stack_id"):
            yield int(sid), g


def format_frame(row) -> str:
    return _format(row.function, row.file, row.line, row.module, getattr(row, "address", None))


def unnamed(function) -> bool:
    """No symbol for the frame: perf's '[unknown]', or nothing."""
    return not isinstance(function, str) or not function or function.startswith("[unknown")


def _format(function, file, line, module, address=None) -> str:
    """'function (file:line)', or 'function (module)' without a file; a frame no symbol
    names, in a known DSO, as 'dso+0xoffset (module)' (the offset in the DSO, as perf
    prints it), so that it can still be symbolised (addr2line, debuginfod: the DSO's build
    id is in the report's sources)."""
    known = isinstance(module, str) and module.startswith("/")
    if unnamed(function) and known and address is not None and not pd.isna(address):
        function = f"{module.rsplit('/', 1)[-1]}+{int(address):#x}"
    where = file if isinstance(file, str) and file else (module if isinstance(module, str) else "")
    if isinstance(file, str) and file and line is not None and not pd.isna(line):
        where = f"{file.rsplit('/', 1)[-1]}:{int(line)}"
    return f"{function} ({where})" if where else str(function)
