"""A real Dask cluster on loopback for the fleet tests: ``dask scheduler`` and ``dask worker``
processes, as an operator would start them, each worker in its own process group so a test
can kill it (nanny and worker process together) the way a machine dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

DASK = str(Path(sys.executable).parent / "dask")


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)  # name -> process

    def kill_worker(self, name: str) -> None:
        proc = self.workers[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@contextmanager
def dask_cluster(tmp: Path, workers: int = 2, timeout: float = 60.0):
    """Scheduler and *workers* single-threaded workers (named w0, w1, ...), up and
    registered; everything killed on exit."""
    from distributed import Client

    tmp.mkdir(parents=True, exist_ok=True)
    sched_file = tmp / "scheduler.json"
    procs: list[subprocess.Popen] = []
    scheduler = _start(
        [
            DASK,
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(sched_file),
        ],
        tmp / "scheduler.log",
    )
    procs.append(scheduler)
    try:
        deadline = time.monotonic() + timeout
        while not sched_file.exists():
            if scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp / "scheduler.log").read_text())
            time.sleep(0.1)
        cluster = Cluster("", scheduler)
        for i in range(workers):
            name = f"w{i}"
            cluster.workers[name] = _start(
                [
                    DASK,
                    "worker",
                    "--scheduler-file",
                    str(sched_file),
                    "--nthreads",
                    "1",
                    "--nworkers",
                    "1",
                    "--no-dashboard",
                    "--name",
                    name,
                    "--local-directory",
                    str(tmp / name),
                ],
                tmp / f"{name}.log",
            )
            procs.append(cluster.workers[name])
        with Client(scheduler_file=str(sched_file), timeout="30s") as client:
            if workers:
                client.wait_for_workers(workers, timeout=timeout)
            cluster.address = client.scheduler.address
        yield cluster
    finally:
        # workers first, then the scheduler; politely (SIGTERM: they close and free their
        # semaphores), then for good
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
