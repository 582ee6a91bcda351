"""Command lines for the recorders, in one place so captures and docs agree.

perf records on CLOCK_MONOTONIC (``-k CLOCK_MONOTONIC``) so its timestamps share the Go
trace's clock exactly; its text keeps the header (``--header``: clockid, cmdline, perf
version) and nanosecond times (``--ns``), plus thread names over time
(``--show-task-events``) and LOST records (``--show-lost-events``).
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

from correlator import capture

#: the same events `tracecorr capture` records (one list for both)
PERF_EVENTS = tuple(capture.PERF_EVENTS.split(","))

#: DWARF unwinding at full tracepoint rate loses samples with the default buffer; a 4 KiB
#: stack copy and a 64 MiB ring kept losses to a handful in a 4 s run (shared notes).
DWARF_CALLGRAPH = ("--call-graph", "dwarf,4096", "-m", "64M")


def perf_record_argv(
    perf: str, output: Path, dwarf: bool = False, monotonic: bool = True
) -> list[str]:
    """*monotonic* False leaves perf on its default clock (perf_clock), as many do."""
    argv = [
        perf,
        "record",
        *(["-k", "CLOCK_MONOTONIC"] if monotonic else []),
        "-e",
        ",".join(PERF_EVENTS),
        "-o",
        str(output),
    ]
    argv += list(DWARF_CALLGRAPH) if dwarf else ["-g"]
    return argv


def perf_script_argv(perf: str, data: Path) -> list[str]:
    return [
        perf,
        "script",
        "-i",
        str(data),
        "--header",
        "--ns",
        "--show-task-events",
        "--show-lost-events",
    ]


def perf_script(perf: str, data: Path, out: Path, compress: bool = False) -> dict:
    """Print *data* as text into *out* (gzip when *compress*); returns what ran and sizes."""
    argv = perf_script_argv(perf, data)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as f:
        proc = subprocess.run(argv, stdout=f, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise RuntimeError(f"perf script failed ({proc.returncode}): {proc.stderr.decode()[-400:]}")
    text_bytes = tmp.stat().st_size
    if compress:
        with open(tmp, "rb") as src, gzip.open(out, "wb", compresslevel=9) as dst:
            shutil.copyfileobj(src, dst)
        tmp.unlink()
    else:
        tmp.rename(out)
    return {
        "argv": argv,
        "file": out.name,
        "text_bytes": text_bytes,
        "stderr": proc.stderr.decode(errors="replace").strip(),
    }


def pyspy_record_argv(
    pyspy: str, fmt: str, output: Path, pid: int | None = None, rate: int = 100
) -> list[str]:
    """py-spy with what correlation needs: native frames, idle (blocked) threads, OS tids."""
    argv = [
        pyspy,
        "record",
        "--native",
        "--idle",
        "--threads",
        "--rate",
        str(rate),
        "--format",
        fmt,
        "-o",
        str(output),
    ]
    if pid is not None:
        argv += ["--pid", str(pid)]
    return argv


PYSPY_SUFFIX = {"chrometrace": "json", "speedscope": "json", "raw": "txt"}


def pyspy_output_name(fmt: str) -> str:
    return f"pyspy.{fmt}.{PYSPY_SUFFIX[fmt]}"
