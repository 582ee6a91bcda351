"""Step: py-spy's runs in the library, on the reference clock."""

from __future__ import annotations

import pandas as pd

from ..calls import python_runs as runs_of
from ..frames import Frames
from ..schema import RUNS
from ..step import step
from ..tables import Tables


@step(reads={"py": (), "library": ()}, adds={"runs": tuple(c.name for c in RUNS), "py_frames": ()})
def python_runs(t: Tables) -> dict:
    """Runs of py-spy samples inside the library's Python read path or native module, every
    aligned py-spy recording's in one table (``calls.python_runs``)."""
    parts = [runs_of(a.tables, a.offset_ns, t.library) for a in t.py if a.offset_ns is not None]
    return {
        "runs": pd.concat(parts or [pd.DataFrame()], ignore_index=True),
        "py_frames": {a.tables.meta.source: Frames(a.tables) for a in t.py},
    }
