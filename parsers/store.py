"""Canonical tables on disk: one Parquet file per table plus meta.json (``tracecorr tables``).

This is the road past one machine: captures from many hosts become one dataset that DuckDB,
Spark or Dask can query without tracecorr. Times stay on each source's own clock; meta.json
says which clock that is.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import __version__
from .model import TABLES, SourceTables, concat_tables

#: /2: typed attribute columns and the args long table replaced the per-row JSON ``args``
SCHEMA = "tracecorr.tables/2"


def write_tables(out: str | Path, sources: list[SourceTables]) -> dict:
    """Write ``{threads,slices,instants,stacks,args}.parquet`` and ``meta.json`` into *out*."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables = concat_tables(sources)
    for name in TABLES:
        tables[name].to_parquet(out / f"{name}.parquet", index=False)
    meta = {
        "schema": SCHEMA,
        "tracecorr": __version__,
        "sources": [s.describe() for s in sources],
        "rows": {name: len(tables[name]) for name in TABLES},
        "note": "ts/dur are integer ns on each source's own clock (sources[].clock); "
        "the stack key is (source, stack_id); an args row names its slice or instant by "
        "(source, table, row), row = its position among that source's rows of that table",
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return meta


def read_tables(directory: str | Path) -> tuple[dict[str, pd.DataFrame], dict]:
    """Read back what write_tables wrote."""
    d = Path(directory)
    tables = {name: pd.read_parquet(d / f"{name}.parquet") for name in TABLES}
    return tables, json.loads((d / "meta.json").read_text())
