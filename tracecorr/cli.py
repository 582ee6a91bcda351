"""The ``tracecorr`` command line: wiring only; the work lives in parsers/, correlator/ and
capture/.

Exit codes (contract): 0 ok (with or without findings); 2 bad usage or unreadable input,
reported as one line naming the file (and offset or line where it helps), never a traceback.
Anything else is a bug in tracecorr: it keeps its traceback, asks to be reported with the
version, and exits 1, so a bug is never mistaken for the user's bad input.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import traceback
from pathlib import Path

import click

from . import __version__
from .parsers.errors import InputError

EXIT_BUG = 1
EXIT_BAD_INPUT = 2


def _say(message: str) -> None:
    click.echo(f"tracecorr: {message}", err=True)


def _library(ctx: click.Context, param: click.Parameter, name: str):
    """--library NAME -> a preset, or a usage error (exit 2) naming the presets."""
    from .correlator.libraries import PRESETS

    if name not in PRESETS:
        raise click.BadParameter(f"unknown library {name!r} (presets: {', '.join(PRESETS)})")
    return name


def _library_file(ctx: click.Context, param: click.Parameter, path: str | None):
    """--library-file F -> the path, once the file loads as a library (else exit 2 with the
    file, the key and what is wrong)."""
    if path is None:
        return None
    from .correlator.libraries import LibraryFileError, load_file

    try:
        load_file(path)
    except LibraryFileError as e:
        raise click.BadParameter(str(e)) from None
    return path


def _with_library_file(f):
    """The command sees one library: the user's file when given, else the preset."""

    @functools.wraps(f)
    def run(*args, library_file: str | None = None, **kw):
        if library_file:
            kw["library_name"] = library_file
        return f(*args, **kw)

    return run


def _symfs_option(f):
    """--symfs DIR, as ``perf report --symfs``: where perf.data's DSO paths are looked up."""
    return click.option(
        "--symfs",
        type=click.Path(exists=True, file_okay=False, path_type=str),
        default=None,
        help="Look every DSO path perf.data records up under DIR first (DIR + path), for "
        "symbols and DWARF unwinding: a container's root, or another machine's files. "
        "Default: a capture directory's own archive (symfs/).",
    )(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tracecorr")
def cli() -> None:
    """Correlate native-call blocking across Go execution traces, perf and py-spy.

    Inputs are files or capture directories; formats are detected from content.
    """


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory for {threads,slices,instants,stacks}.parquet and meta.json.",
)
@_symfs_option
def tables(inputs: tuple[str, ...], out_dir: str, symfs: str | None) -> None:
    """Parse INPUTS into the canonical tables, as Parquet (each source on its own clock)."""
    from .parsers import memory
    from .parsers.sources import expand_inputs

    ex = expand_inputs(list(inputs), symfs)
    if ex.inputs and all(fmt.streamer for _, fmt in ex.inputs):  # written as read
        memory.use("tables-streaming")
    from .parsers.store import write_inputs

    written = write_inputs(out_dir, list(inputs), ex, symfs=symfs)
    for line in written.skipped:
        _say(f"skipped {line}")
    for w in written.warnings:
        _say(f"warning: {w}")
    rows = ", ".join(f"{k} {v}" for k, v in written.meta["rows"].items())
    click.echo(f"wrote {out_dir}: {len(written.meta['sources'])} source(s); {rows}")


def _analysis_options(f):
    """--library, --native-call and --min-block, as ``report`` has them (fleet and diff
    analyse captures the same way)."""
    f = click.option(
        "--min-block",
        "min_block_ms",
        default=1.0,
        show_default=True,
        type=float,
        help="Shortest syscall / off-CPU interval reported, in ms.",
    )(f)
    f = click.option(
        "--native-call",
        "native_calls",
        multiple=True,
        metavar="GLOB",
        help="Also count cgo calls pkg._Cfunc_NAME with NAME matching GLOB as calls "
        "into the library (e.g. a C shim around it).",
    )(f)
    f = click.option(
        "--library-file",
        "library_file",
        type=click.Path(exists=True, dir_okay=False, path_type=str),
        default=None,
        callback=_library_file,
        help="A library described in a TOML file (the presets' schema), instead of a preset.",
    )(_with_library_file(f))
    return click.option(
        "--library",
        "library_name",
        default="hiredis",
        show_default=True,
        callback=_library,
        help="Library preset whose calls are correlated: "
        "hiredis, libpq, mysqlclient, librdkafka, libcurl, sqlite3, openssl.",
    )(f)


@cli.command()
@click.argument("inputs", nargs=-1, type=click.Path(path_type=str))
@click.option("--go-trace", multiple=True, type=click.Path(), help="Go execution trace.")
@click.option("--perf-script", multiple=True, type=click.Path(), help="perf script text.")
@click.option("--perf-data", multiple=True, type=click.Path(), help="perf.data (needs perf).")
@click.option("--pyspy", multiple=True, type=click.Path(), help="py-spy output (any format).")
@_analysis_options
@click.option(
    "--pyspy-offset",
    "pyspy_offset_ns",
    type=int,
    default=None,
    help="py-spy time 0 on CLOCK_MONOTONIC, ns (checked against the data).",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False),
    help="Write the JSON report (schema tracecorr.report/1) here.",
)
@click.option(
    "--markdown", "md_out", type=click.Path(dir_okay=False), help="Write a Markdown report here."
)
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False),
    help="Write a self-contained HTML timeline here (works offline).",
)
@click.option(
    "--perfetto",
    "perfetto_out",
    type=click.Path(dir_okay=False),
    help="Write a Perfetto trace (.pftrace) here.",
)
@click.option("-q", "--quiet", is_flag=True, help="No text report on stdout.")
@_symfs_option
def report(
    inputs,
    go_trace,
    perf_script,
    perf_data,
    pyspy,
    library_name,
    native_calls,
    min_block_ms,
    pyspy_offset_ns,
    json_out,
    md_out,
    html_out,
    perfetto_out,
    quiet,
    symfs,
) -> None:
    """Blocking syscalls inside library calls, tagged with their goroutine or thread.

    INPUTS are files or capture directories (formats detected from content); the options
    name files explicitly.
    """
    from .parsers import memory
    from .parsers.sources import begin_loading

    if not (inputs or go_trace or perf_script or perf_data or pyspy):
        raise click.UsageError(
            "no inputs (give files, a capture directory or --go-trace/--perf-*...)"
        )
    memory.use("report")
    # the worker processes start on their share of the parse before the analysis (pandas
    # and the rest) is imported here
    loading = begin_loading(
        list(inputs),
        {"go-trace": go_trace, "perf-script": perf_script, "perf-data": perf_data, "pyspy": pyspy},
        symfs=symfs,
    )
    try:
        from .correlator.api import analyze
        from .correlator.render.json_report import to_json
        from .correlator.render.text import render

        a = analyze(
            library_name=library_name,
            native_calls=native_calls,
            min_block_ms=min_block_ms,
            pyspy_offset_ns=pyspy_offset_ns,
            loading=loading,
        )
    finally:
        loading.cancel()
    for line in a.skipped_inputs:
        _say(f"skipped {line}")
    if json_out:
        Path(json_out).write_text(to_json(a))
    if md_out:
        page = os.path.relpath(html_out, Path(md_out).resolve().parent) if html_out else None
        Path(md_out).write_text(render(a, markdown=True, html_page=page))
    if html_out:
        from .correlator.render.html import write_html

        write_html(a, html_out)
    if perfetto_out:
        from .correlator.render.perfetto import export

        export(a, perfetto_out)
    if not quiet:
        click.echo(render(a, html_page=html_out), nl=False)
    _end_now()


#: set by ``main`` (the console script): the process is ours to end (``_end_now``)
_OWN_PROCESS = False


def _end_now() -> None:
    """End the process with the report written, without tearing the interpreter down:
    freeing a large analysis object by object (a million-row frame of library calls, the
    sources' tables) takes 0.15-0.3 s, a few per cent of the whole command, for nothing.
    Only for a command that leaves nothing to clean up: its output files are written and
    closed, the worker processes are shut down (``Loading.finish``), and the standard
    streams are flushed here. Only under the console script: a program that runs the click
    command in its own process (click's test runner) keeps its process."""
    if not _OWN_PROCESS:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a reader that went away: nothing to flush to
            stream.flush()
    os._exit(0)


@cli.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Output directory: Parquet datasets (blocking, findings, calls) and fleet.json.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="A running Dask scheduler (tcp://host:8786); default: a local cluster.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Local cluster size (default: one per CPU, at most one per capture).",
)
@_analysis_options
@click.option("-q", "--quiet", is_flag=True, help="No summary on stdout.")
@_symfs_option
def fleet(
    captures, out_dir, scheduler, workers, library_name, native_calls, min_block_ms, quiet, symfs
):
    """Many captures on Dask into Parquet datasets, partitioned by capture.

    CAPTURES are capture directories, or trace files (files in one directory are one
    capture). A capture that fails is recorded with its error; the exit code is non-zero
    only when no capture could be analysed.
    """
    from .fleet.cluster import run_fleet
    from .fleet.summary import render_text
    from .fleet.task import Options, plan_captures

    specs = plan_captures(list(captures))
    if workers is not None and scheduler:
        _say("--workers applies to the local cluster; using the scheduler's workers")
    doc = run_fleet(
        specs,
        Path(out_dir),
        Options(library_name, tuple(native_calls), min_block_ms, symfs),
        scheduler=scheduler,
        workers=workers,
        report=_say,
    )
    if not quiet:
        click.echo(render_text(doc), nl=False)
    if not doc["analysed"]:
        _say(f"no capture analysed ({doc['failed']} failed): see {out_dir}/fleet.json")
        sys.exit(EXIT_BAD_INPUT)


@cli.command()
@click.argument("before", type=click.Path(path_type=str))
@click.argument("after", type=click.Path(path_type=str))
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False),
    help="Write the diff (schema tracecorr.diff/1) here.",
)
@click.option(
    "--markdown", "md_out", type=click.Path(dir_okay=False), help="Write the diff as Markdown here."
)
@click.option(
    "--alpha",
    default=0.01,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Significance level (Holm-adjusted Mann-Whitney U).",
)
@click.option(
    "--min-change",
    default=0.10,
    show_default=True,
    type=click.FloatRange(0),
    help="Smallest median change (fraction) reported as significant.",
)
@_analysis_options
@click.option("-q", "--quiet", is_flag=True, help="No text on stdout.")
@_symfs_option
def diff(
    before,
    after,
    json_out,
    md_out,
    alpha,
    min_change,
    library_name,
    native_calls,
    min_block_ms,
    quiet,
    symfs,
):
    """Compare BEFORE with AFTER by call site, syscall, waker and finding kind.

    Each side is a capture (a directory, or one trace file), a saved JSON report, or a fleet
    output directory.
    """
    import json

    from .fleet.diff import diff as compare
    from .fleet.diff import load_side
    from .fleet.render import render_markdown, render_text
    from .fleet.task import Options

    opts = Options(library_name, tuple(native_calls), min_block_ms, symfs)
    doc = compare(load_side(before, opts), load_side(after, opts), alpha, min_change)
    if json_out:
        Path(json_out).write_text(json.dumps(doc, indent=1))
    if md_out:
        Path(md_out).write_text(render_markdown(doc))
    if not quiet:
        click.echo(render_text(doc), nl=False)


def _duration(text: str) -> float:
    t = text.strip().lower()
    for suffix, scale in (("ms", 1e-3), ("s", 1.0), ("m", 60.0)):
        if t.endswith(suffix):
            return float(t[: -len(suffix)]) * scale
    return float(t)


@cli.command()
@click.option("--pid", required=True, type=int, help="The process to record.")
@click.option(
    "--duration", default="10s", show_default=True, help="How long: 10s, 500ms, 2m or seconds."
)
@click.option(
    "--go-trace-url", help="The service's net/http/pprof base URL (e.g. http://127.0.0.1:6060)."
)
@click.option("--pyspy", is_flag=True, help="Also sample Python stacks with py-spy.")
@click.option("--dwarf", is_flag=True, help="DWARF callchains (see into libhiredis).")
@click.option(
    "--peer-pid",
    "peers",
    multiple=True,
    type=int,
    help="Record this process too (repeat), e.g. redis-server: the report then names who "
    "woke each blocked call and what the waker waited on.",
)
@click.option(
    "--system-wide",
    is_flag=True,
    help="perf record -a: every process is a possible waker. Files grow with everything the "
    "machine does; prefer --peer-pid.",
)
@click.option(
    "--archive/--no-archive",
    default=None,
    help="Copy the DSOs the stacks touch into DIR/symfs (by build id, as perf archive), read "
    "through /proc/PID/root while the process lives: the capture then reads the same "
    "anywhere. Default: on when the process is in another mount namespace (a container).",
)
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Capture directory (tracecorr report reads it as is).",
)
def capture(
    pid, duration, go_trace_url, pyspy, dwarf, peers, system_wide, archive, out_dir
) -> None:
    """Record perf, the Go trace and py-spy for a live process, aligned, into a directory."""
    from .capture import live

    try:
        seconds = _duration(duration)
    except ValueError:
        raise click.BadParameter(
            f"{duration!r} is not a duration (10s, 500ms, 2m)", param_hint="--duration"
        ) from None
    try:
        plan = live.preflight(
            pid, seconds, Path(out_dir), go_trace_url, pyspy, dwarf, list(peers), system_wide
        )
    except live.CaptureError as exc:
        _say(f"capture: {exc}")
        sys.exit(EXIT_BAD_INPUT)
    plan.archive = archive

    def progress(elapsed, remaining, size, alive):
        click.echo(
            f"\rcapturing pid {pid}: {elapsed:5.1f} s elapsed, {remaining:5.1f} s left, "
            f"{size / 2**20:7.1f} MiB written ({', '.join(alive)})   ",
            err=True,
            nl=False,
        )

    if system_wide:
        _say(
            "capture: --system-wide records every process on the machine; expect large "
            "files (--peer-pid records only the peers that matter)"
        )
    meta = live.run(plan, progress)
    click.echo("", err=True)
    for f in meta["failures"]:
        _say(f"capture: {f['recorder']}: {f['error']}")
    if meta["interrupted"]:
        _say("capture: interrupted; what was recorded is kept")
    files = meta["files"]
    kept = (meta.get("archive") or {}).get("files") or []
    if kept:
        size = sum(f["bytes"] for f in kept) / 2**20
        _say(f"capture: archived {len(kept)} DSO(s) ({size:.1f} MiB) in {out_dir}/symfs")
    click.echo(f"wrote {out_dir}: {', '.join(sorted(files.values())) or 'nothing'}")
    if not files:
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    """The console script: bad input is one line and exit 2; a bug is a traceback, a request
    to report it, and exit 1."""
    global _OWN_PROCESS
    _OWN_PROCESS = True
    try:
        code = cli.main(args=argv, prog_name="tracecorr", standalone_mode=False)
    except click.ClickException as e:  # usage errors: click's own message, exit 2
        e.show()
        sys.exit(e.exit_code)
    except click.Abort:
        _say("aborted")
        sys.exit(130)
    except InputError as e:
        _say(str(e))
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        _say("interrupted")
        sys.exit(130)
    except Exception:
        traceback.print_exc()
        _say(
            f"internal error in tracecorr {__version__}: this is a bug, not a problem with "
            "your input. Please report it with the command line and the traceback above."
        )
        sys.exit(EXIT_BUG)
    sys.exit(code if isinstance(code, int) else 0)  # --help and --version return 0


if __name__ == "__main__":
    main()
