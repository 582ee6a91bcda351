"""Format detection on real files (the committed samples and fresh captures)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
from tracecorr.parsers import detect, sources
from tracecorr.parsers.errors import InputError, UnknownFormat
from tracecorr.parsers.inputs import read_head

SAMPLES = Path(__file__).resolve().parent.parent / "sample_traces"

EXPECTED = {
    "go_hiredis/go.trace": "go-trace",
    "go_hiredis/perf.script.txt.gz": "perf-script",
    "go_hiredis/truth.jsonl": "ground-truth",
    "py_hiredis/perf.script.txt.gz": "perf-script",
    "py_hiredis/pyspy.chrometrace.json": "pyspy-chrometrace",
    "py_hiredis/pyspy.speedscope.json": "pyspy-speedscope",
    "py_hiredis/pyspy.raw.txt": "pyspy-raw",
    "py_hiredis/truth.jsonl": "ground-truth",
}


@pytest.mark.parametrize("rel, fmt", sorted(EXPECTED.items()))
def test_samples_are_recognised_by_content(rel, fmt, tmp_path):
    fmt_found = detect.sniff(SAMPLES / rel)
    assert fmt_found is not None and fmt_found.name == fmt
    # names do not matter: the same bytes under a meaningless name
    renamed = tmp_path / "blob"
    shutil.copy(SAMPLES / rel, renamed)
    assert detect.sniff(renamed).name == fmt


def test_compressed_and_plain_read_the_same(tmp_path):
    gz = SAMPLES / "go_hiredis/perf.script.txt.gz"
    plain = tmp_path / "perf.txt"
    plain.write_bytes(gzip.decompress(gz.read_bytes()))
    assert read_head(gz, 4096) == read_head(plain, 4096)
    assert detect.sniff(plain).name == "perf-script"


def test_perf_data_is_recognised(go_capture):
    assert detect.sniff(go_capture / "perf.data").name == "perf-data"


def test_unknown_and_missing_inputs_say_what_and_where(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01garbage")
    with pytest.raises(UnknownFormat, match=r"junk\.bin: unknown format"):
        detect.detect(junk)
    with pytest.raises(InputError, match="no such file"):
        sources.expand_inputs([tmp_path / "nope"])
    truth = SAMPLES / "go_hiredis/truth.jsonl"
    with pytest.raises(UnknownFormat, match="ground-truth JSONL, not a trace"):
        detect.detect(truth)
    bad_gz = tmp_path / "x.gz"
    bad_gz.write_bytes(b"\x1f\x8b\x08\x00broken")
    with pytest.raises(InputError, match="cannot read"):
        detect.sniff(bad_gz)


def test_capture_directory_lists_its_traces(monkeypatch, go_capture):
    # pretend every format has a parser, to see which files a directory contributes
    fake = [detect.Format(f.name, f.description, f.sniff, parser="x:y") for f in detect.FORMATS]
    monkeypatch.setattr(detect, "FORMATS", fake)
    got = sources.expand_inputs([go_capture])
    assert sorted(p.name for p, _ in got.inputs) == ["go.trace", "perf.script.txt"]
    assert any("perf.data beside its perf script text" in s for s in got.skipped)
    # a directory without capture.json: every recognised file, the rest reported
    d = go_capture.parent / "loose"
    d.mkdir(exist_ok=True)
    for name in ("go.trace", "truth.jsonl", "go_hiredis"):
        shutil.copy(go_capture / name, d / name)
    got = sources.expand_inputs([d])
    assert [p.name for p, _ in got.inputs] == ["go.trace"]
    assert sorted(s.split(": ")[0].split("/")[-1] for s in got.skipped) == [
        "go_hiredis",
        "truth.jsonl",
    ]
