"""The ``tracecorr`` command line: wiring only; the work lives in parsers/ and correlator/.

Exit codes (contract): 0 ok; 2 bad usage or unreadable input, reported as one line naming
the file (and offset or line where it helps), never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from parsers import __version__
from parsers.detect import Format, capture_pid, expand_inputs, known_formats_text
from parsers.errors import InputError
from parsers.model import SourceTables
from parsers.store import write_tables

EXIT_BAD_INPUT = 2


def fail(message: str) -> None:
    click.echo(f"tracecorr: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def source_names(inputs: list[tuple[Path, Format]]) -> list[str]:
    """A short unique name per input: ``<format>:<file name>`` (``#2``... on clashes)."""
    names: list[str] = []
    for path, fmt in inputs:
        base = f"{fmt.name}:{path.name}"
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}#{n}"
        names.append(name)
    return names


def parse_inputs(paths: list[str]) -> list[SourceTables]:
    """Detect and parse every input; InputError for the first bad one."""
    expanded = expand_inputs(paths)
    for line in expanded.skipped:
        click.echo(f"tracecorr: skipped {line}", err=True)
    if not expanded.inputs:
        raise InputError(
            ", ".join(paths), f"no trace inputs found (tracecorr reads: {known_formats_text()})"
        )
    sources = []
    for (path, fmt), name in zip(expanded.inputs, source_names(expanded.inputs), strict=True):
        tables = fmt.load()(path, source=name, pid=capture_pid(path))
        for w in tables.meta.warnings:
            click.echo(f"tracecorr: warning: {path}: {w}", err=True)
        sources.append(tables)
    return sources


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tracecorr")
def main() -> None:
    """Correlate native-call blocking across Go execution traces, perf and py-spy.

    Inputs are files or capture directories; formats are detected from content.
    """


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory for {threads,slices,instants,stacks}.parquet and meta.json.",
)
def tables(inputs: tuple[str, ...], out_dir: str) -> None:
    """Parse INPUTS into the canonical tables, as Parquet (each source on its own clock)."""
    try:
        sources = parse_inputs(list(inputs))
    except InputError as exc:
        fail(str(exc))
    meta = write_tables(out_dir, sources)
    rows = ", ".join(f"{k} {v}" for k, v in meta["rows"].items())
    click.echo(f"wrote {out_dir}: {len(sources)} source(s); {rows}")


if __name__ == "__main__":
    main()
