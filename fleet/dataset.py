"""The fleet's output directory: Parquet datasets partitioned by capture, and fleet.json.

    OUT/blocking/capture=<name>/part-0.parquet    one file per capture and table (Hive layout)
    OUT/findings/capture=<name>/part-0.parquet
    OUT/calls/capture=<name>/part-0.parquet
    OUT/fleet.json                                schema tracecorr.fleet/1: per capture, host,
                                                  window, counts, errors; the cross-capture summary

The Hive layout is what DuckDB (``read_parquet('OUT/blocking/*/*.parquet',
hive_partitioning=true)``), Spark, pyarrow and ``pandas.read_parquet('OUT/blocking')`` all read
as one table with a ``capture`` column, with no tracecorr code. A partition is written to a
temporary name and renamed into place, so a reader never sees half a file, and a capture with
no rows still gets an empty file (its schema), so every capture shows up in every table.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..parsers.errors import InputError
from .records import SCHEMAS

SCHEMA = "tracecorr.fleet/1"
FLEET_JSON = "fleet.json"


def prepare(out: Path) -> None:
    """Make *out* ready for a new fleet run: created if missing; a previous fleet output
    (finished or interrupted: fleet.json is written first) is cleared, since its partitions
    would mix with this run's; anything else is refused."""
    if out.exists() and not out.is_dir():
        raise InputError(str(out), "exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / FLEET_JSON).exists():
            raise InputError(str(out), "not empty and not a tracecorr fleet output: not touched")
        for table in SCHEMAS:
            shutil.rmtree(out / table, ignore_errors=True)
        (out / FLEET_JSON).unlink()
    out.mkdir(parents=True, exist_ok=True)


def write_partition(out: Path, table: str, capture: str, data: pa.Table) -> Path:
    """Write one capture's rows of one table (atomically: temporary name, then rename)."""
    part = out / table / f"capture={capture}"
    part.mkdir(parents=True, exist_ok=True)
    final = part / "part-0.parquet"
    tmp = part / ".part-0.parquet.tmp"
    pq.write_table(data, tmp, compression="zstd")
    os.replace(tmp, final)
    return final


def write_fleet_json(out: Path, doc: dict) -> None:
    tmp = out / f".{FLEET_JSON}.tmp"
    tmp.write_text(json.dumps({"schema": SCHEMA, **doc}, indent=1))
    os.replace(tmp, out / FLEET_JSON)


def is_fleet_dir(path: Path) -> bool:
    return path.is_dir() and (path / FLEET_JSON).exists()


def read_fleet_json(out: Path) -> dict:
    try:
        doc = json.loads((out / FLEET_JSON).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(str(out / FLEET_JSON), f"unreadable: {exc}") from exc
    if doc.get("schema") != SCHEMA:
        raise InputError(str(out / FLEET_JSON), f"schema {doc.get('schema')!r}, not {SCHEMA}")
    return doc


def read_table(out: Path, table: str, columns: list[str] | None = None) -> pa.Table:
    """One dataset of a fleet output, every capture, with its ``capture`` column (read the
    way any Parquet reader would: pyarrow's Hive partitioning)."""
    root = out / table
    if not root.is_dir():
        return SCHEMAS[table].append(pa.field("capture", pa.string())).empty_table()
    dataset = ds.dataset(
        root,
        schema=SCHEMAS[table].append(pa.field("capture", pa.string())),
        format="parquet",
        partitioning="hive",
        ignore_prefixes=[".", "_"],
    )
    return dataset.to_table(columns=columns)
