"""``tracecorr fleet``: every capture a Dask task; results written as they arrive.

Dask does the distributing: an embedded ``distributed.LocalCluster`` by default (one process
per worker, one thread each: the analysis is pandas and numpy, which hold the GIL often
enough that threads would not scale), or a running cluster given by its scheduler address.
A task on a worker that dies is run again elsewhere by the scheduler; a task that raises is
retried once; what still fails is recorded against its capture, and the others go on.

Workers must be able to read the capture paths (same host, or a shared filesystem) and import
tracecorr; results come back to this process, the only writer of the output directory.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import click

from .dataset import prepare, write_fleet_json, write_partition
from .summary import CaptureSums, fleet_summary
from .task import CaptureResult, CaptureSpec, Options, analyse_capture

#: A task that raised is tried once more (a transient I/O error); a bug raises again.
RETRIES = 1
CONNECT_TIMEOUT = "10s"
#: how long a running cluster may have no worker before its captures are given up
WORKERS_TIMEOUT = 30.0


def run_fleet(
    specs: list[CaptureSpec],
    out: Path,
    options: Options,
    scheduler: str | None = None,
    workers: int | None = None,
    report: Callable[[str], None] | None = None,
) -> dict:
    """Analyse *specs* on Dask, write the datasets and fleet.json under *out*, and return
    fleet.json's content. *report* receives one line per capture as it finishes (stderr
    in the CLI); on a terminal a progress bar is drawn instead of the ok lines."""
    prepare(out)
    t0 = time.perf_counter()
    run_id = uuid.uuid4().hex[:8]
    say = report or (lambda line: None)
    results: dict[str, CaptureResult] = {}
    sums: list[CaptureSums] = []
    n_workers = workers or min(len(specs), len(os.sched_getaffinity(0))) or 1
    where = scheduler or f"local cluster, {n_workers} workers"
    # the directory is a fleet output from now on: an interrupted run can be rerun into it
    write_fleet_json(
        out,
        {
            "status": "running",
            "library": options.library,
            "scheduler": where,
            "captures": [{"capture": s.name, "path": s.directory} for s in specs],
        },
    )
    try:
        client, cluster = _connect(scheduler, n_workers)
    except (OSError, TimeoutError, ValueError) as exc:  # ValueError: not an address
        if not scheduler:
            why = f"the local cluster did not start: {type(exc).__name__}: {exc}"
        elif isinstance(exc, ValueError):
            why = f"scheduler {scheduler} is not a scheduler address: {exc}"
        elif isinstance(exc, NoWorkers):
            why = f"scheduler {scheduler} has no workers (waited {WORKERS_TIMEOUT:.0f} s)"
        else:
            why = f"scheduler {scheduler} unreachable: {exc}"
        for s in specs:
            results[s.name] = CaptureResult(s.name, s.directory, ok=False, error=why)
            say(f"{s.name}: {why}")
    else:
        try:
            from distributed import as_completed

            futures = {
                client.submit(
                    analyse_capture,
                    s,
                    options,
                    key=f"tracecorr-fleet-{run_id}-{s.name}",
                    retries=RETRIES,
                    pure=False,
                ): s
                for s in specs
            }
            with _progress(len(specs)) as advance:
                for future in as_completed(futures):
                    spec = futures[future]
                    result = _outcome(future, spec)
                    future.release()
                    if result.ok and result.tables is not None:
                        for table, data in result.tables.items():
                            write_partition(out, table, spec.name, data)
                        sums.append(
                            CaptureSums.of(
                                spec.name, result.tables["blocking"], result.tables["findings"]
                            )
                        )
                        result.tables = None  # written: do not keep every capture in memory
                    results[spec.name] = result
                    advance(spec, result, say)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    ordered = [results[s.name] for s in specs]
    order = {s.name: i for i, s in enumerate(specs)}
    sums.sort(key=lambda x: order[x.capture])
    doc = {
        "status": "done",
        "library": options.library,
        "scheduler": where,
        "out": str(out),
        "seconds": round(time.perf_counter() - t0, 3),
        "captures": [r.entry() for r in ordered],
        "analysed": sum(r.ok for r in ordered),
        "failed": sum(not r.ok for r in ordered),
        "summary": fleet_summary(sums),
    }
    write_fleet_json(out, doc)
    return doc


class NoWorkers(TimeoutError):
    """The scheduler answered, but no worker joined it in time."""


def _connect(scheduler: str | None, n_workers: int):
    """(client, cluster or None). An unreachable scheduler raises OSError / TimeoutError, a
    malformed address ValueError."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        try:  # a scheduler without workers would hold the tasks forever
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
        except TimeoutError:
            client.close()
            raise NoWorkers from None
        return client, None
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
        memory_limit=0,  # as `tracecorr report` would: no per-worker share of the RAM
    )
    try:
        return Client(cluster), cluster
    except BaseException:
        cluster.close()
        raise


def _outcome(future, spec: CaptureSpec) -> CaptureResult:
    """The task's result, or the capture's failure in one line (a worker that died too
    often running it, or an error that retrying did not cure)."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - any failure of one capture is recorded
        name = type(exc).__name__
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        what = (
            "the workers running it died"
            if name == "KilledWorker"
            else f"internal error: {name}: {text}"
        )
        return CaptureResult(spec.name, spec.directory, ok=False, error=what)


class _progress:
    """A progress bar on a terminal; elsewhere (CI logs, pipes) one line per capture."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.tty = sys.stderr.isatty()
        self.bar = None

    def __enter__(self):
        if self.tty:
            self.bar = click.progressbar(
                length=self.total, label="captures", file=sys.stderr, show_pos=True
            ).__enter__()
        return self.advance

    def advance(self, spec: CaptureSpec, result: CaptureResult, say) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        if not result.ok:
            say(f"{spec.name}: {result.error}")
        elif self.bar is None:
            c = result.counts
            say(
                f"[{self.done}/{self.total}] {spec.name}: {c['library_records']} blocking records, "
                f"{c['findings']} findings ({result.seconds:.1f} s, {result.worker})"
            )

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
