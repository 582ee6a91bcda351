"""Property tests: cut and corrupted real traces give results or the declared error, fast.

"Results" means canonical tables that pass validation; "the declared error" is InputError
naming the file and a byte offset. Never another exception, never a long hang, never an
allocation driven by a corrupt size field.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tracecorr.parsers.errors import InputError
from tracecorr.parsers.gotrace import parse

from tests.conftest import SAMPLES
from tests.support.bounds import within

TRACE = (SAMPLES / "go_hiredis" / "go.trace").read_bytes()
MAX_SECONDS = 5.0
MAX_PEAK_BYTES = 64 << 20


def outcome(data: bytes, tmp: Path) -> str:
    p = tmp / "t.trace"
    p.write_bytes(data)
    with within(MAX_SECONDS, MAX_PEAK_BYTES):
        try:
            st_ = parse(p)
            st_.validate()
            result = "tables"
        except InputError as e:
            assert str(e).startswith(str(p)), e
            assert e.offset is not None or "cannot" in e.message or "no complete" in e.message, e
            result = "error"
    return result


# TRACECORR_FUZZ_EXAMPLES=5000 for a longer hunt than CI's
SETTINGS = settings(
    max_examples=int(os.environ.get("TRACECORR_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@SETTINGS
@given(cut=st.integers(0, len(TRACE)))
def test_any_truncation(tmp_path, cut):
    r = outcome(TRACE[:cut], tmp_path)
    if cut == len(TRACE):
        assert r == "tables"


@SETTINGS
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(TRACE) - 1), st.integers(0, 255)), min_size=1, max_size=8
    )
)
def test_any_byte_mutation(tmp_path, edits):
    data = bytearray(TRACE)
    for pos, val in edits:
        data[pos] = val
    outcome(bytes(data), tmp_path)


@SETTINGS
@given(
    start=st.integers(16, len(TRACE) - 1),
    length=st.integers(1, 4096),
    junk=st.binary(min_size=0, max_size=64),
)
def test_any_splice(tmp_path, start, length, junk):
    outcome(TRACE[:start] + junk + TRACE[start + length :], tmp_path)


def test_huge_size_field_is_refused_before_allocating(tmp_path):
    # a batch header claiming 2^62 bytes of data
    big = bytes([0x01, 0x01, 0x01, 0x01]) + bytes([0x80] * 8 + [0x40])
    assert outcome(TRACE[:16] + big + b"\x00" * 32, tmp_path) == "error"
