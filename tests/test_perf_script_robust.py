"""Property tests: mutated real `perf script` text gives tables or one InputError, never a
traceback: truncations, byte flips (invalid UTF-8, digits turned into huge numbers), runs of
0xff, duplicated and dropped chunks. Skipped lines are counted; bad bytes in names are kept
with replacement characters."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tracecorr.parsers.errors import InputError
from tracecorr.parsers.perf_script import parse

from tests.conftest import SAMPLES

#: the header and the first records of the committed Go sample (enough for every event kind)
TEXT = gzip.decompress((SAMPLES / "go_hiredis" / "perf.script.txt.gz").read_bytes())[:300_000]
TEXT = TEXT[: TEXT.rindex(b"\n\n") + 2]
MAX_SECONDS = 10.0

SETTINGS = settings(
    max_examples=int(os.environ.get("TRACECORR_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def outcome(data: bytes, tmp: Path) -> str:
    p = tmp / "perf.txt"
    p.write_bytes(data)
    t0 = time.perf_counter()
    try:
        parse(p).validate()
        result = "tables"
    except InputError as e:
        assert str(e).startswith(str(p)), e
        result = "error"
    assert time.perf_counter() - t0 < MAX_SECONDS
    return result


def test_the_unmutated_excerpt_parses(tmp_path):
    assert outcome(TEXT, tmp_path) == "tables"


@SETTINGS
@given(cut=st.integers(0, len(TEXT)))
def test_any_truncation(tmp_path, cut):
    outcome(TEXT[:cut], tmp_path)


@SETTINGS
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(TEXT) - 1), st.integers(0, 255)), min_size=1, max_size=12
    )
)
def test_any_byte_mutation(tmp_path, edits):
    data = bytearray(TEXT)
    for pos, val in edits:
        data[pos] = val
    outcome(bytes(data), tmp_path)


@SETTINGS
@given(
    start=st.integers(0, len(TEXT) - 1),
    length=st.integers(1, 200),
    digits=st.integers(15, 60),
)
def test_digit_runs_become_huge_numbers(tmp_path, start, length, digits):
    """A tid, time, NR, return value or address of 15 to 60 digits (OverflowError once)."""
    outcome(TEXT[:start] + b"9" * digits + TEXT[start + length :], tmp_path)


@SETTINGS
@given(
    start=st.integers(0, len(TEXT) - 1),
    length=st.integers(0, 4096),
    run=st.integers(1, 64),
    dup=st.booleans(),
)
def test_ff_runs_and_duplicated_chunks(tmp_path, start, length, run, dup):
    piece = TEXT[start : start + length]
    middle = piece + piece if dup else b"\xff" * run
    outcome(TEXT[:start] + middle + TEXT[start + length :], tmp_path)


def test_invalid_utf8_in_a_comm_is_kept_replaced(tmp_path):
    lines = [
        ln.replace(b"go_hiredis", b"go_\xff\xfeiredis", 1) if ln.startswith(b"go_hiredis ") else ln
        for ln in TEXT.split(b"\n")
    ]
    p = tmp_path / "perf.txt"
    p.write_bytes(b"\n".join(lines))
    st_ = parse(p).validate()
    assert any("\ufffd" in str(n) for n in st_.threads["name"].dropna())


def test_the_cli_never_shows_a_traceback_for_mutants(tmp_path):
    mutants = [
        TEXT[: len(TEXT) // 3],
        TEXT.replace(b"NR 0 ", b"NR 99999999999999999999999999 ", 3),
        TEXT[:5000] + b"\xff" * 200 + TEXT[5000:],
        b"\x00" + TEXT,
    ]
    for k, data in enumerate(mutants):
        p = tmp_path / f"m{k}.txt"
        p.write_bytes(data)
        r = subprocess.run(
            [sys.executable, "-m", "tracecorr", "tables", str(p), "-o", str(tmp_path / f"o{k}")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode in (0, 2), r.stderr
        assert "Traceback" not in r.stderr, r.stderr
        if r.returncode == 2:
            assert r.stderr.count("\n") == 1 and str(p) in r.stderr
