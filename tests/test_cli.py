"""The CLI contract: --help/--version, and bad input is one line with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tracecorr import __version__

SAMPLES = Path(__file__).resolve().parent.parent / "sample_traces"


def tracecorr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tracecorr", *args], capture_output=True, text=True, timeout=120
    )


def test_help_and_version():
    r = tracecorr("--help")
    assert r.returncode == 0 and "tables" in r.stdout
    r = tracecorr("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"tracecorr, version {__version__}"


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "tracecorr"
    assert exe.exists(), "pip install -e . should install the tracecorr console script"
    r = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert r.returncode == 0


@pytest.mark.parametrize(
    "make_input, expect",
    [
        (lambda d: d / "missing.trace", "no such file or directory"),
        (
            lambda d: (d / "junk").write_bytes(b"\x7fELF\x02garbage") and d / "junk",
            "unknown format",
        ),
        (lambda d: (d / "empty").write_bytes(b"") or d / "empty", "unknown format"),
        (lambda d: SAMPLES / "go_hiredis" / "truth.jsonl", "not a trace"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, make_input, expect):
    path = make_input(tmp_path)
    r = tracecorr("tables", str(path), "-o", str(tmp_path / "out"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"tracecorr: {path}") and expect in lines[0]
    assert "Traceback" not in r.stderr


def test_usage_errors_exit_2(tmp_path):
    assert tracecorr("tables").returncode == 2
    assert tracecorr("tables", str(SAMPLES / "go_hiredis")).returncode == 2  # no -o


def test_perf_text_without_records_is_one_line_and_exit_2(tmp_path):
    p = tmp_path / "header-only.txt"
    p.write_text("# ========\n# perf version : 6.1\n# ========\n#\nnot a record\n")
    r = tracecorr("tables", str(p), "-o", str(tmp_path / "out"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "no perf script records" in r.stderr and "line 5" in r.stderr


def test_tables_of_a_capture_directory_reads_every_source(tmp_path):
    r = tracecorr(
        "tables",
        str(SAMPLES / "go_hiredis"),
        str(SAMPLES / "py_hiredis"),
        "-o",
        str(tmp_path / "out"),
    )
    assert r.returncode == 0, r.stderr
    meta = __import__("json").loads((tmp_path / "out" / "meta.json").read_text())
    kinds = sorted(s["kind"] for s in meta["sources"])
    assert kinds[:3] == ["go-trace", "perf-script", "perf-script"]
    names = [s["source"] for s in meta["sources"]]
    assert len(set(names)) == len(names)  # two perf.script.txt.gz: distinct source names


def test_unknown_library_is_a_usage_error():
    r = tracecorr("report", str(SAMPLES / "go_hiredis"), "--library", "nosuchlib")
    assert r.returncode == 2 and "unknown library 'nosuchlib'" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_bug_is_a_traceback_and_exit_1_never_bad_input(tmp_path):
    """An exception that is not InputError is tracecorr's fault: it must not pass for the
    user's bad input (exit 2), and it asks to be reported with the version."""
    boom = (
        "import sys, tracecorr.correlator.api as api\n"
        "def analyze(*a, **k):\n"
        "    raise ValueError('a bug inside the correlator')\n"
        "api.analyze = analyze\n"
        "from tracecorr.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", boom, "report", str(SAMPLES / "go_hiredis")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stderr
    assert "Traceback" in r.stderr and "ValueError: a bug inside the correlator" in r.stderr
    assert f"internal error in tracecorr {__version__}" in r.stderr and "report it" in r.stderr


def run_env(env: dict, *args: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "tracecorr", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def test_parallel_parsing_gives_the_same_report(tmp_path):
    """TRACECORR_JOBS=2 parses the sample's sources in two processes (the Go trace in a
    spawned worker, its tables pickled back): the same JSON report, byte for byte."""
    outs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"r{jobs}.json"
        r = run_env(
            {"TRACECORR_JOBS": jobs},
            "report",
            str(SAMPLES / "go_hiredis"),
            "--json",
            str(out),
            "-q",
        )
        assert r.returncode == 0, r.stderr
        outs[jobs] = out.read_text()
    assert outs["1"] == outs["2"]


def test_bad_input_in_a_worker_process_is_still_one_line(tmp_path):
    """A parser's InputError crosses from a worker process intact (file and offset)."""
    import shutil

    shutil.copy(SAMPLES / "go_hiredis" / "go.trace", tmp_path / "go.trace")
    bad = tmp_path / "bad.trace"
    data = (SAMPLES / "go_hiredis" / "go.trace").read_bytes()
    bad.write_bytes(data[:16] + b"\xff" * 64)
    r = run_env(
        {"TRACECORR_JOBS": "2"},
        "report",
        "--go-trace",
        str(tmp_path / "go.trace"),
        "--go-trace",
        str(bad),
        "-q",
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and str(bad) in r.stderr and "Traceback" not in r.stderr
