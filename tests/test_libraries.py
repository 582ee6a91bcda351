"""Library presets as data: the shipped TOML files, a user's own file, bad files.

The hiredis preset must say exactly what the hard-coded one said before it became data (the
values below are that code's), and a user's file must drive the correlation as a preset
does: the committed Go sample read with a copy of the hiredis file under another name gives
the same records under that name; marked thread-safe, it raises no connection finding.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tracecorr.correlator.api import analyze
from tracecorr.correlator.libraries import (
    PRESET_DIR,
    PRESETS,
    LibraryFileError,
    library,
    load_file,
)

from tests.conftest import SAMPLES

GO_SAMPLE = SAMPLES / "go_hiredis"


def test_every_shipped_preset_loads_under_its_file_name():
    files = sorted(p.stem for p in PRESET_DIR.glob("*.toml"))
    assert files == sorted(PRESETS) and len(files) >= 7
    assert {
        "hiredis",
        "libpq",
        "mysqlclient",
        "librdkafka",
        "libcurl",
        "sqlite3",
        "openssl",
    } <= set(PRESETS)
    for name, lib in PRESETS.items():
        assert lib.name == name and lib.dso_substrings and lib.c_function_globs
    assert PRESETS["librdkafka"].thread_safe and not PRESETS["libpq"].thread_safe
    assert PRESETS["libpq"].returns_reply("PQexecParams") and PRESETS["libpq"].free_functions == (
        "PQclear",
    )


def test_the_hiredis_preset_is_what_the_code_said():
    h = PRESETS["hiredis"]
    assert h.cgo_globs == ("redis*",)
    assert h.dso_substrings == ("libhiredis", "hiredis.cpython", "hiredis/hiredis")
    assert h.c_function_globs == ("redis*",)
    assert h.python_files == (
        "redis/_parsers/hiredis.py",
        "redis/connection.py",
        "redis/asyncio/connection.py",
        "redis/_parsers/base.py",
    )
    assert h.python_functions == (
        "read_response", "read_from_socket", "_read_from_socket", "can_read", "send_command",
        "send_packed_command", "_send_packed_command",
    )  # fmt: skip
    assert h.python_packages == ("redis",)
    assert h.python_wait_functions == ("read_from_socket", "_read_from_socket", "can_read")
    assert h.reply_globs == ("redisCommand*", "redisvCommand*", "redisGetReply*")
    assert h.free_functions == ("freeReplyObject",)


def _copy_of_hiredis(tmp_path: Path, name: str, thread_safe: bool = False) -> Path:
    text = (PRESET_DIR / "hiredis.toml").read_text()
    text = text.replace('name = "hiredis"', f'name = "{name}"')
    if thread_safe:
        text = text.replace("thread_safe = false", "thread_safe = true")
    out = tmp_path / f"{name}.toml"
    out.write_text(text)
    return out


def test_a_users_file_drives_the_correlation_as_a_preset(tmp_path):
    mine = _copy_of_hiredis(tmp_path, "my-redis")
    a = analyze([str(GO_SAMPLE)])
    b = analyze([str(GO_SAMPLE)], library_name=str(mine))
    cols = ["tid", "goid", "start_ns", "end_ns", "syscall", "in", "call"]
    assert b.blocking[cols].equals(a.blocking[cols]) and len(a.blocking)
    assert set(b.blocking.loc[b.blocking["in"] == "library", "library"]) == {"my-redis"}
    assert [f["kind"] for f in b.findings] == [f["kind"] for f in a.findings]
    # the same through the CLI: --library-file
    out = tmp_path / "r.json"
    r = subprocess.run(
        [sys.executable, "-m", "tracecorr", "report", str(GO_SAMPLE), "--library-file",
         str(mine), "--json", str(out), "-q"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert {x["library"] for x in doc["blocking"] if x["in"] == "library"} == {"my-redis"}


def test_a_thread_safe_library_raises_no_connection_finding(tmp_path):
    """The sample shares one context between two goroutines: a shared-connection for
    hiredis; none for a library whose handles are thread-safe (as librdkafka's are)."""
    safe = _copy_of_hiredis(tmp_path, "safe-redis", thread_safe=True)
    kinds = {f["kind"] for f in analyze([str(GO_SAMPLE)]).findings}
    assert "shared-connection" in kinds
    safe_kinds = {f["kind"] for f in analyze([str(GO_SAMPLE)], library_name=str(safe)).findings}
    assert not safe_kinds & {"shared-connection", "connection-handoff", "poisoned-handoff"}


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('description = "no name"\n[native]\ndso = ["x"]\n', "name: missing"),
        ('name = "x"\n', "[native]: missing"),
        ('name = "x"\n[native]\ndso = "libx"\n', "native.dso: must be a list of strings"),
        ('name = "x"\n[native]\ndso = ["x"]\nfunction = ["x*"]\n', "function: unknown"),
        ('name = "x"\n[native]\ndso = ["x"]\n[handle]\nthread_safe = "no"\n',
         "handle.thread_safe: must be true or false"),
        ('name = "x"\n[native]\ndso = ["x"\n', "Unclosed array"),
        ('name = "x"\n[native]\ndso = ["x"]\n[[alloc_free]]\nfrees = "f"\n',
         "alloc_free[0].frees: unknown"),
    ],
)  # fmt: skip
def test_a_bad_library_file_is_one_line_and_exit_2(tmp_path, text, said):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(LibraryFileError, match=None) as e:
        load_file(bad)
    assert str(bad) in str(e.value) and said in str(e.value)
    r = subprocess.run(
        [sys.executable, "-m", "tracecorr", "report", str(GO_SAMPLE), "--library-file", str(bad)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert said in r.stderr, r.stderr


def test_an_unknown_library_is_refused():
    with pytest.raises(ValueError, match="presets: hiredis"):
        library("libnothing")
