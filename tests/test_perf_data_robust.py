"""Property tests: cut and corrupted real perf.data files give tables or the declared error.

"Tables" means canonical tables that pass validation, with the damage said in
``meta.warnings`` (and counted in ``meta.skipped``); "the declared error" is InputError naming
the file. Never another exception, never a long hang, never an allocation driven by a corrupt
size field. The inputs are mutations of a small real recording made by the test session.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tracecorr.parsers.errors import InputError
from tracecorr.parsers.perf_data import file as F
from tracecorr.parsers.perf_data import pieces, rows
from tracecorr.parsers.perf_data.pieces import read_split
from tracecorr.parsers.perf_data.records import (
    DataReader,
    Decoded,
    _walk_chained,
    walk,
    walk_headers,
)
from tracecorr.parsers.perf_data.tracing import event_formats
from tracecorr.parsers.perf_input import parse

from tests.support.bounds import within
from tests.support.perf_file import data_section, records

pytestmark = pytest.mark.capture

EVENTS = "raw_syscalls:sys_enter,raw_syscalls:sys_exit,sched:sched_switch,sched:sched_wakeup"
MAX_SECONDS = 20.0  # a fallback through `perf script` included
MAX_PEAK_BYTES = 256 << 20

SAMPLE, COMM, ID_INDEX, THREAD_MAP = 9, 3, 69, 73


def _record(perf: str, out: Path, *callgraph: str) -> bytes:
    data = out / "perf.data"
    subprocess.run(
        [perf, "record", "-q", "-k", "CLOCK_MONOTONIC", "-e", EVENTS, *callgraph,
         "-o", str(data), "--", "sh", "-c", "sleep 0.01; true"],
        check=True, capture_output=True,
    )  # fmt: skip
    parse(data).validate()  # warm the symbol caches outside the measured runs
    return data.read_bytes()


@pytest.fixture(scope="module")
def small(tmp_path_factory, perf) -> bytes:
    return _record(perf, tmp_path_factory.mktemp("small"), "-g")


@pytest.fixture(scope="module")
def small_dwarf(tmp_path_factory, perf) -> bytes:
    return _record(perf, tmp_path_factory.mktemp("small_dwarf"), "--call-graph", "dwarf,1024")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mutants")


def outcome(blob: bytes, tmp: Path, name: str = "m.data"):
    """'tables' (validated) or 'error' (InputError naming the file), within the bounds."""
    p = tmp / name
    p.write_bytes(blob)
    with within(MAX_SECONDS, MAX_PEAK_BYTES):
        try:
            result = parse(p).validate()
        except InputError as e:
            assert str(e).startswith(str(p)), e
            assert "internal error" not in str(e), e  # the safety net never caught it
            result = e
    return result


# TRACECORR_FUZZ_EXAMPLES=2000 for a longer hunt than CI's
SETTINGS = settings(
    max_examples=int(os.environ.get("TRACECORR_FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(data=st.data())
def test_any_truncation(small, workdir, data):
    cut = data.draw(st.integers(0, len(small)))
    r = outcome(small[:cut], workdir)
    off, size = data_section(small)
    if cut >= off + size // 2:  # half the records are there: they must be read
        assert not isinstance(r, InputError), r


@SETTINGS
@given(data=st.data())
def test_any_byte_mutation(small, workdir, data):
    blob = bytearray(small)
    for _ in range(data.draw(st.integers(1, 8))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    outcome(bytes(blob), workdir)


@SETTINGS
@given(data=st.data())
def test_any_duplicated_chunk(small, workdir, data):
    start = data.draw(st.integers(0, len(small) - 1))
    length = data.draw(st.integers(1, 8192))
    at = data.draw(st.integers(0, len(small)))
    outcome(small[:at] + small[start : start + length] + small[at:], workdir)


@SETTINGS
@given(data=st.data())
def test_any_run_of_ff(small, workdir, data):
    start = data.draw(st.integers(0, len(small) - 1))
    length = data.draw(st.integers(1, 512))
    blob = bytearray(small)
    blob[start : start + length] = b"\xff" * len(blob[start : start + length])
    outcome(bytes(blob), workdir)


@settings(SETTINGS, max_examples=max(10, SETTINGS.max_examples // 4))
@given(data=st.data())
def test_any_mutation_of_a_dwarf_file(small_dwarf, workdir, data):
    outcome(_records_mutated(small_dwarf, data, 1, 8), workdir)


def _records_mutated(blob: bytes, data, least: int, most: int) -> bytes:
    """*blob* with *least* to *most* bytes of its data section set to drawn values."""
    out = bytearray(blob)
    off, size = data_section(blob)
    for _ in range(data.draw(st.integers(least, most))):
        out[data.draw(st.integers(off, off + size - 1))] = data.draw(st.integers(0, 255))
    return bytes(out)


# --- the damage is said, and what is before it is kept ------------------------------------


def test_truncation_keeps_every_complete_record_before_the_cut(small, workdir):
    recs = records(small)
    samples = [r for r in recs if r.type == SAMPLE]
    victim = samples[len(samples) * 2 // 3]
    cut = victim.offset + victim.size // 2  # in the middle of a sample
    full, _ = rows(_write(workdir, "full.data", small))
    trunc_st = outcome(small[:cut], workdir, "cut.data")
    assert not isinstance(trunc_st, InputError)
    text = " ".join(trunc_st.meta.warnings)
    assert f"offset {cut}" in text and f"offset {victim.offset}" in text, text
    assert trunc_st.meta.skipped["records after damage (reading stopped)"] == 1
    trunc, _ = rows(workdir / "cut.data")
    size_of = {r.offset: r.size for r in recs}
    want = sorted(o for o in full["offset"] if o + size_of[o] <= cut)
    assert sorted(trunc["offset"]) == want and len(want) > 20
    # the records before the cut decode to the same fields
    keep = full[full["offset"].isin(want)].sort_values("offset").reset_index(drop=True)
    got = trunc.sort_values("offset").reset_index(drop=True)
    for col in ("tid", "time", "event", "nr", "ret", "prev_pid", "next_pid"):
        assert keep[col].astype(str).tolist() == got[col].astype(str).tolist(), col


def _write(d: Path, name: str, blob: bytes) -> Path:
    (d / name).write_bytes(blob)
    return d / name


def _put(blob: bytes, at: int, fmt: str, value: int) -> bytes:
    b = bytearray(blob)
    struct.pack_into(fmt, b, at, value)
    return bytes(b)


def test_hostile_callchain_and_raw_sizes_skip_the_sample(small, workdir):
    first = next(r for r in records(small) if r.type == SAMPLE)
    # -g tracepoint samples: ip, pid|tid, time, id, cpu, period, then nr at word 7
    at = first.offset + 56
    nr = struct.unpack_from("<Q", small, at)[0]
    for value in (1 << 60, nr + 1):
        st_ = outcome(_put(small, at, "<Q", value), workdir)
        assert st_.meta.skipped["sample whose sizes do not fit the record (corrupt)"] == 1
    # the RAW payload's u32 size, after the callchain
    raw_at = at + 8 * (1 + nr)
    st_ = outcome(_put(small, raw_at, "<I", 0xFFFFFFFF), workdir)
    assert st_.meta.skipped["sample whose sizes do not fit the record (corrupt)"] == 1


def test_hostile_stack_size_skips_the_sample(small_dwarf, workdir):
    first = next(r for r in records(small_dwarf) if r.type == SAMPLE)
    body = small_dwarf[first.offset : first.offset + first.size]
    # the user stack copy's size word is followed by 1024 bytes and dyn_size; find it
    at = next(
        first.offset + k
        for k in range(8, first.size - 8, 8)
        if struct.unpack_from("<Q", body, k)[0] == 1024
    )
    st_ = outcome(_put(small_dwarf, at, "<Q", 1 << 40), workdir)
    assert st_.meta.skipped["sample whose sizes do not fit the record (corrupt)"] == 1


def test_hostile_section_sizes(small, workdir):
    # data section claiming 2**62 bytes: read what is there, say so
    st_ = outcome(_put(small, 48, "<Q", 1 << 62), workdir)
    assert any("truncated" in w and "data section" in w for w in st_.meta.warnings)
    # attrs section past the end: the header is unreadable
    err = outcome(_put(small, 32, "<Q", 1 << 40), workdir)
    assert isinstance(err, InputError) and err.offset is not None
    # a feature section past the end: ignored, with a warning
    off, size = data_section(small)
    st_ = outcome(_put(small, off + size + 8, "<Q", 1 << 62), workdir)
    assert any("outside the file" in w for w in st_.meta.warnings)


def test_record_size_past_the_end_stops_with_the_offset(small, workdir):
    recs = records(small)
    last = recs[-1]
    st_ = outcome(_put(small, last.offset + 6, "<H", 0xFFF8), workdir)
    assert any(f"offset {last.offset}" in w for w in st_.meta.warnings), st_.meta.warnings


def test_unknown_record_types_are_skipped_and_counted(small, workdir):
    reference = outcome(small, workdir, "ref.data")
    for typ, new in ((ID_INDEX, 250), (THREAD_MAP, 41)):
        rec = next(r for r in records(small) if r.type == typ)
        st_ = outcome(_put(small, rec.offset, "<I", new), workdir)
        assert st_.meta.skipped[f"unknown record type {new}"] == 1
        assert st_.slices.equals(reference.slices) and st_.stacks.equals(reference.stacks)


def test_bad_bytes_in_comm_become_replacement_characters(small, workdir):
    rec = next(r for r in records(small) if r.type == COMM and r.misc & 0x2000)
    blob = bytearray(small)
    blob[rec.offset + 16 : rec.offset + 20] = b"\xffs\xfeh"  # comm starts after pid, tid
    st_ = outcome(bytes(blob), workdir)
    names = set(st_.threads["name"].astype(str))
    assert any("\ufffd" in n for n in names), names


def test_unreadable_headers_are_one_error(small, workdir):
    for blob, where in (
        (small[:50], 50),  # cut in the file header
        (_put(small, 16, "<Q", 7), 16),  # attr entry size 7
        (b"PERFILE2" + b"\x00" * 8, 16),  # nothing after the magic
    ):
        err = outcome(blob, workdir)
        assert isinstance(err, InputError) and err.offset == where, (err, where)


@pytest.mark.parametrize(
    "patch, why",
    [
        (lambda b: b"2ELIFREP" + b[8:], "other-endian"),
        (lambda b: b[:8] + struct.pack("<Q", 16) + b[16:], "pipe-mode"),
        (lambda b: _put(b, 72, "<Q", struct.unpack_from("<Q", b, 72)[0] | 1 << 24), "directory"),
        (lambda b: _put(b, 72, "<Q", struct.unpack_from("<Q", b, 72)[0] | 1 << 27), "compressed"),
    ],
)
def test_what_the_reader_does_not_decode_is_declared(small, patch, why):
    with pytest.raises(F.Unsupported, match=why):
        F.PerfFile.from_bytes("x.data", patch(small))


def test_print_fmt_numbers_are_c_literals():
    """perf's print fmts are C: ``010`` is octal. A damaged fmt in the fuzz test said
    ``00000040``, which Python's int(text, 0) refuses: an internal error, now a number; a
    literal that is not one (``09``) is a FmtError, which callers turn into a warning."""
    from tracecorr.parsers.perf_data.tracing import (
        EventFormat,
        FmtError,
        _c_int,
        field_text,
    )

    assert [_c_int(t) for t in ("0", "7", "010", "00000040", "0x40", "0X1fUL", "12u")] == [
        0,
        7,
        8,
        32,
        64,
        31,
        12,
    ]
    with pytest.raises(FmtError):
        _c_int("09")
    fmt = EventFormat("sched", "x", 1, {}, '"v=%d", REC->a & 00000040')
    assert field_text(fmt, "v=", {"a": 0xFF}) == "32"


def test_damaged_print_fmt_in_a_real_file(small, workdir):
    """The fuzz finding, end to end on the real recording: one byte of sched_switch's print
    fmt changed so that a literal reads as octal (``0x00000040`` -> ``0%00000040``)."""
    assert b"0x00000040" in small
    outcome(small.replace(b"0x00000040", b"0%00000040", 1), workdir)


# --- the data section read in pieces (perf_data/pieces.py) is one reader's read ----------


def _decoded(path: Path, split=None) -> Decoded:
    with F.PerfFile.open(str(path)) as pf:
        formats, long_size, _ = event_formats(pf)
        reader = DataReader(pf, formats, long_size)
        return read_split(reader, *split) if split is not None else reader.read()


def _split_read(path: Path, piece_bytes: int, helper_takes: int, spoil=None):
    """(the plan's cuts, the decode) with pieces of about *piece_bytes*: *helper_takes*
    pieces are read the way a helper reads them (from the back, each with a reader of its
    own, and pickled as shipped) before the parent starts on the rest. None: no plan."""
    plan = pieces.plan(path, 1, piece_bytes=piece_bytes, min_bytes=0)
    if plan is None:
        return None
    try:
        if spoil is not None:
            spoil(plan)
        claims = pieces.Claims(plan.claims)
        helped = {}
        with F.PerfFile.open(str(path)) as pf:
            formats, long_size, _ = event_formats(pf)
            for _ in range(helper_takes):
                j = claims.take(front=False)
                if j is None:
                    break
                piece = pieces.read_piece(plan, pf, formats, long_size, j)
                helped[j] = pickle.loads(pickle.dumps(piece, protocol=5))
        return list(plan.cuts), _decoded(path, (plan, lambda want: helped))
    finally:
        plan.remove()


def _chains(d: Decoded, ids: np.ndarray) -> np.ndarray:
    named = np.array([c.tobytes() for c in d.chains.chains] + [b""], object)
    return named[ids]  # -1: no chain, b""


def _assert_same_decoded(a: Decoded, b: Decoded) -> None:
    assert (a.n_records, a.n_rounds) == (b.n_records, b.n_rounds)
    for table in ("rec", "sys", "switch", "wake"):
        ca, cb = getattr(a, table), getattr(b, table)
        assert sorted(ca.parts) == sorted(cb.parts), table
        # side tables are appended an event at a time within a chunk: compare in record order
        ia = np.argsort(ca.get("g"), kind="stable") if table != "rec" else slice(None)
        ib = np.argsort(cb.get("g"), kind="stable") if table != "rec" else slice(None)
        for k in ca.parts:
            x, y = ca.get(k)[ia], cb.get(k)[ib]
            if (table, k) == ("rec", "chain"):  # ids are labels (numbered per chunk in hash
                # order, so any cut renumbers them): the chains they name must be the same
                x, y = _chains(a, x), _chains(b, y)
            assert x.dtype == y.dtype and np.array_equal(x, y), (table, k)
    assert [(r.g, r.kind, r.misc, r.fields) for r in a.side] == [
        (r.g, r.kind, r.misc, r.fields) for r in b.side
    ]
    assert a.named_syscalls == b.named_syscalls
    assert a.skipped == b.skipped and a.ignored == b.ignored  # (met in chunk-dependent order)
    assert a.warnings == b.warnings
    assert a.damage_offset == b.damage_offset


@pytest.mark.parametrize("which", ["small", "small_dwarf"])
def test_pieces_read_as_one_reader_reads(request, which, workdir):
    blob = request.getfixturevalue(which)
    path = _write(workdir, f"{which}.data", blob)
    whole = _decoded(path)
    starts = {r.offset for r in records(blob)}  # an independent walk: the real record starts
    n_records = whole.n_records
    for piece_bytes in (4096, 20_000):
        for takes in (0, 1, 3, 10_000):
            got = _split_read(path, piece_bytes, takes)
            assert got is not None, "no plan: the file is too small for this test"
            cuts, dec = got
            assert len(cuts) >= 4
            if which == "small":  # frame-pointer samples: every cut is a record start
                assert set(cuts[1:-1]) <= starts
            _assert_same_decoded(dec, whole)
    assert n_records > 100


def test_a_cut_that_is_no_record_start_costs_nothing_but_time(small, workdir):
    path = _write(workdir, "small.data", small)
    whole = _decoded(path)
    for k in (1, 2, 3):

        def spoil(plan, k=k):
            plan.cuts[k] += 8  # inside a record: the reading before it runs past it

        cuts, dec = _split_read(path, 4096, 10_000, spoil)
        assert cuts[k] not in {r.offset for r in records(small)}
        _assert_same_decoded(dec, whole)


@SETTINGS
@given(data=st.data())
def test_pieces_of_any_mutant_read_as_one_reader_reads(small, workdir, data):
    off, size = data_section(small)
    cut = data.draw(st.integers(off + size // 3, len(small)))
    blob = _records_mutated(small, data, 0, 6)[:cut]
    path = _write(workdir, "mutant.data", blob)
    try:
        whole = _decoded(path)
    except Exception as exc:  # noqa: BLE001 (the split read must fail the same way)
        with pytest.raises(type(exc)):
            _split_read(path, data.draw(st.sampled_from([2048, 8192])), 3)
        return
    got = _split_read(path, data.draw(st.sampled_from([2048, 8192])), data.draw(st.integers(0, 50)))
    if got is not None:
        _assert_same_decoded(got[1], whole)


@SETTINGS
@given(data=st.data())
def test_the_vectorised_walk_is_the_loops_walk(small, small_dwarf, data):
    blob = data.draw(st.sampled_from([small, small_dwarf]))
    off, size = data_section(blob)
    start = off + 8 * data.draw(st.integers(0, 64))  # often not a record start
    chunk = bytearray(blob[start : off + size])
    for _ in range(data.draw(st.integers(0, 4))):
        chunk[data.draw(st.integers(0, len(chunk) - 1))] = data.draw(st.integers(0, 255))
    chunk = bytes(chunk[: data.draw(st.integers(0, len(chunk)))])
    a, b = walk(chunk), walk_headers(chunk)
    assert np.array_equal(a.offsets, b.offsets) and a.offsets.dtype == b.offsets.dtype
    assert (a.consumed, a.damage, a.damage_at) == (b.consumed, b.damage, b.damage_at)


def test_the_vectorised_walk_decides_real_chunks(small):
    """Not only equal (above): on a frame-pointer file it is the one that answers."""
    off, size = data_section(small)
    assert _walk_chained(small[off : off + size]) is not None


def test_a_helper_reads_its_pieces_without_pandas(small, workdir):
    """What a helper process runs (``Plan.help``), in a fresh interpreter: it loads numpy,
    not pandas (70 MB resident), and its pieces, joined, are one reader's read."""
    path = _write(workdir, "small.data", small)
    plan = pieces.plan(path, 1, piece_bytes=4096, min_bytes=0)
    assert plan is not None and plan.n >= 4
    try:
        code = (
            "import pickle, sys\n"
            f"plan = pickle.loads({pickle.dumps(plan)!r})\n"
            "got = plan.help()\n"
            "sys.stdout.buffer.write(pickle.dumps(('pandas' in sys.modules, got)))\n"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
        pandas_loaded, got = pickle.loads(r.stdout)
    finally:
        plan.remove()
    assert not pandas_loaded
    assert sorted(p.index for p in got) == list(range(plan.n))  # the parent took none
    ordered = sorted(got, key=lambda p: p.index)
    assert [p.end for p in ordered] == plan.cuts[1:]  # each piece's reading joins the next
    whole = ordered[0].dec
    for p in ordered[1:]:
        whole.extend(p.dec)
    _assert_same_decoded(whole.seal(), _decoded(path))
