"""``tracecorr tables``: what is written to Parquet is what the parsers produce.

A Go trace is written as it is read (one row group per generation's chunk, never the whole
table in memory); every other source is parsed whole. Either way, reading the files back
must give the parser's own tables, value for value, and the files must share one schema so
that captures stack into one dataset.
"""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
from tracecorr.parsers import gotrace
from tracecorr.parsers.model import TABLES, validate_table
from tracecorr.parsers.sources import capture_pid
from tracecorr.parsers.store import arrow_schema, read_tables

from tests.conftest import SAMPLES


def tables_cli(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [sys.executable, "-m", "tracecorr", "tables", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return r


def same_rows(got: pd.DataFrame, want: pd.DataFrame, cols: list[str]) -> None:
    a = got[cols].reset_index(drop=True)
    b = want[cols].reset_index(drop=True)
    for c in cols:
        x, y = a[c], b[c]
        if isinstance(y.dtype, pd.CategoricalDtype) or y.dtype == object:
            x, y = x.astype(object), y.astype(object)
        assert x.isna().tolist() == y.isna().tolist(), c
        assert x[x.notna()].tolist() == y[y.notna()].tolist(), c


def test_streamed_go_trace_reads_back_as_the_parser_tables(tmp_path):
    trace = SAMPLES / "go_hiredis" / "go.trace"
    tables_cli(str(trace), "-o", str(tmp_path))
    back, meta = read_tables(tmp_path)
    want = gotrace.parse(trace, source=meta["sources"][0]["source"], pid=capture_pid(trace))
    key = ["goid", "ts", "kind"]
    got_s = back["slices"].sort_values(key, kind="stable").reset_index(drop=True)
    want_s = want.slices.sort_values(key, kind="stable").reset_index(drop=True)
    assert len(got_s) == len(want_s) > 0
    same_rows(got_s, want_s, list(want_s.columns))
    for name in ("threads", "stacks", "instants"):
        w = getattr(want, name)
        assert len(back[name]) == len(w), name
        same_rows(back[name], w, list(w.columns))
    for name, df in back.items():
        validate_table(name, df)
    assert meta["sources"][0]["rows"]["slices"] == len(want_s)


def test_every_file_has_the_one_schema_whatever_the_sources(tmp_path):
    """A Go-only capture and a perf + py-spy capture give files of identical schemas."""
    tables_cli(str(SAMPLES / "go_hiredis" / "go.trace"), "-o", str(tmp_path / "go"))
    tables_cli(str(SAMPLES / "py_hiredis"), "-o", str(tmp_path / "py"))
    for name in TABLES:
        a = pq.read_schema(tmp_path / "go" / f"{name}.parquet").remove_metadata()
        b = pq.read_schema(tmp_path / "py" / f"{name}.parquet").remove_metadata()
        assert a.equals(b), name
        assert a.equals(arrow_schema(name)), name
    # typed columns a source does not produce are null, flags false
    s = pq.read_table(tmp_path / "go" / "slices.parquet").to_pandas()
    assert s["fd"].isna().all() and not s["lost_inside"].any()
    p = pq.read_table(tmp_path / "py" / "slices.parquet").to_pandas()
    assert p["fd"].notna().any() and p["p_lost"].isna().all()


def test_streaming_a_go_trace_loads_neither_pandas_nor_arrows_caching_allocator(tmp_path):
    """What keeps ``tracecorr tables`` within its memory goal (benchmarks/tables_go.py):
    pandas is 40 MB resident on import and the streaming path never needs it; Arrow's
    default C++ allocator (mimalloc) keeps what the Parquet writer frees, so nothing may
    have been allocated through it."""
    code = (
        "import sys\n"
        "from tracecorr.cli import cli\n"
        f"cli.main(['tables', {str(SAMPLES / 'go_hiredis' / 'go.trace')!r}, '-o', "
        f"{str(tmp_path / 'o')!r}], standalone_mode=False)\n"
        "import pyarrow as pa\n"
        "print('pandas' in sys.modules, pa.mimalloc_memory_pool().max_memory(),"
        " pa.system_memory_pool().max_memory() > 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-3:] == ["False", "0", "True"]


_MMAPPED_AFTER_A_BIGGER_FREE = """
import ctypes, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split())]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
freed, asked, args = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
if args:
    from tracecorr.cli import cli
    cli.main(args, standalone_mode=False)
libc.free(libc.malloc(freed))  # glibc's own threshold grows to this when it is freed
before = libc.mallinfo2().hblks
p = libc.malloc(asked)
print(libc.mallinfo2().hblks - before)
libc.free(p)
"""


def _mapped(freed: int, asked: int, *command: str) -> str:
    """In a fresh interpreter, after *command* (a tracecorr command line, if any): is a block
    of *asked* bytes mapped whole, once one of *freed* bytes was freed? ("1" or "0")"""
    r = subprocess.run(
        [sys.executable, "-c", _MMAPPED_AFTER_A_BIGGER_FREE, str(freed), str(asked), *command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.split()[-1]


def test_tables_sets_glibc_for_streaming(tmp_path):
    """``tables`` on streamed inputs fixes glibc's mmap threshold at 1 MiB
    (memory.settle_for_streaming), so a 2 MiB block is mapped whole even after a 4 MiB one
    was freed, where glibc's growing threshold keeps it in the heap (a plain interpreter)."""
    trace = str(SAMPLES / "go_hiredis" / "go.trace")
    assert _mapped(4 << 20, 2 << 20) == "0"
    assert _mapped(4 << 20, 2 << 20, "tables", trace, "-o", str(tmp_path / "o")) == "1"


def test_report_sets_glibc_for_large_frames(tmp_path):
    """``report`` fixes glibc's mmap threshold at 4 MiB (memory.settle_for_large_frames): an
    8 MiB block is mapped whole after a 16 MiB one was freed; 2 MiB ones stay in the heap."""
    sample = str(SAMPLES / "go_hiredis")
    assert _mapped(16 << 20, 8 << 20) == "0"
    assert _mapped(16 << 20, 8 << 20, "report", sample, "-q") == "1"
    assert _mapped(16 << 20, 2 << 20, "report", sample, "-q") == "0"
