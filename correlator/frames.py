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
            out = self._strings[sid] = [format_frame(r) for r in self.get(sid).itertuples()]
        return list(out)

    def items(self) -> Iterator[tuple[int, pd.DataFrame]]:
        for sid, g in self.table.groupby("stack_id"):
            yield int(sid), g


def format_frame(row) -> str:
    where = (
        row.file
        if isinstance(row.file, str) and row.file
        else (row.module if isinstance(row.module, str) else "")
    )
    if isinstance(row.file, str) and row.file and not pd.isna(row.line):
        where = f"{row.file.rsplit('/', 1)[-1]}:{int(row.line)}"
    return f"{row.function} ({where})" if where else str(row.function)
