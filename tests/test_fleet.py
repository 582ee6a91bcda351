"""``tracecorr fleet`` on a real Dask cluster (``dask scheduler`` and two ``dask worker``
processes on loopback): the datasets hold what separate ``tracecorr report --json`` runs
give, read back with DuckDB as a user would; a worker killed mid-run loses no capture; a bad
capture or an unreachable scheduler is one line per capture."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import SAMPLES, require
from tests.support.dask_cluster import dask_cluster

TRACECORR = [sys.executable, "-m", "tracecorr"]

pytestmark = pytest.mark.capture


def _duckdb():
    try:
        import duckdb
    except ImportError:
        require(False, "duckdb (pip)")
    return duckdb


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TRACECORR, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def report_json(capture: Path) -> dict:
    r = run_cli("report", str(capture), "--json", "/dev/stdout", "-q")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def dataset_rows(out: Path, table: str, capture: str) -> list[dict]:
    """One capture's rows of a fleet dataset, read with DuckDB (no tracecorr code)."""
    db = _duckdb().connect()
    rel = db.sql(
        f"select * exclude (capture) from read_parquet('{out}/{table}/*/*.parquet', "
        "hive_partitioning = true) where capture = $capture",
        params={"capture": capture},
    )
    return rel.to_arrow_table().to_pylist()


def by_time(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: (r["start_ns"], r["tid"], r["end_ns"]))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with dask_cluster(tmp_path_factory.mktemp("dask")) as c:
        yield c


def test_fleet_datasets_equal_separate_reports(cluster, go_capture, py_capture, tmp_path):
    empty = tmp_path / "pod-without-traces"
    empty.mkdir()
    captures = [SAMPLES / "go_hiredis", SAMPLES / "py_hiredis", go_capture, py_capture, empty]
    out = tmp_path / "fleet"
    r = run_cli("fleet", *map(str, captures), "-o", str(out), "--scheduler", cluster.address, "-q")
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "fleet.json").read_text())
    assert doc["schema"] == "tracecorr.fleet/1"
    entries = {e["path"]: e for e in doc["captures"]}
    assert [e["status"] for e in doc["captures"]] == ["ok"] * 4 + ["error"]
    bad = entries[str(empty)]
    assert "no trace inputs found" in bad["error"]
    assert f"tracecorr: {bad['capture']}: {bad['error']}" in r.stderr.splitlines(), r.stderr
    assert {e["worker"] for e in doc["captures"][:4]} <= set(_worker_addresses(cluster))
    assert doc["analysed"] == 4 and doc["failed"] == 1

    from tracecorr.correlator.api import analyze

    for cap in captures[:4]:
        e = entries[str(cap)]
        name = e["capture"]
        want = report_json(cap)
        got = dataset_rows(out, "blocking", name)
        assert len(got) == len(want["blocking"]) > 0
        assert by_time(got) == by_time(want["blocking"])
        findings = dataset_rows(out, "findings", name)
        assert [json.loads(f["detail"]) for f in findings] == want["findings"]
        for row, f in zip(findings, want["findings"], strict=True):  # the typed columns too
            for col in row.keys() - {"detail"}:
                assert row[col] == f.get(col), (col, row[col], f.get(col))
        calls = analyze([str(cap)]).calls  # Go traces' cgo calls; none for py-spy captures
        cols = ["tid", "start", "end", "call", "call_site", "library_blocked_ns", "runtime_ns"]
        cols += ["p_wait_ns", "p_lost", "evidence", "goid"]
        want_calls = (
            [
                tuple(None if pd.isna(v) else v for v in row)
                for row in calls[cols].astype(object).itertuples(index=False)
            ]
            if len(calls)
            else []
        )
        got_calls = [
            tuple(c[k if k not in ("start", "end") else f"{k}_ns"] for k in cols)
            for c in dataset_rows(out, "calls", name)
        ]
        assert sorted(got_calls, key=str) == sorted(want_calls, key=str)
        assert (len(got_calls) > 0) == cap.name.startswith("go")
        assert e["counts"]["library_records"] == want["summary"]["records"]
        assert e["counts"]["blocking_rows"] == len(want["blocking"])
        assert e["counts"]["findings"] == len(want["findings"])
        assert e["window"]["start_ns"] <= min(b["start_ns"] for b in want["blocking"])
        assert e["window"]["end_ns"] >= max(b["end_ns"] for b in want["blocking"])
    # the cross-capture summary against DuckDB over the datasets
    db = _duckdb().connect()
    sites = db.execute(
        f"select coalesce(call_site, call) as site, count(*) as n, sum(dur_ns) as total, "
        f"count(distinct capture) as caps from read_parquet('{out}/blocking/*/*.parquet', "
        "hive_partitioning = true) where \"in\" <> 'go-runtime' group by site"
    ).fetchall()
    want_sites = {s: (int(n), int(t), int(c)) for s, n, t, c in sites}
    got_sites = {
        x["call_site"]: (x["count"], x["total_ns"], x["in_captures"])
        for x in doc["summary"]["by_call_site"]
    }
    top = sorted(want_sites.items(), key=lambda kv: -kv[1][1])[: len(got_sites)]
    assert got_sites == dict(top)
    wakers = db.execute(
        "select coalesce(waker.comm, '?') || case "
        "when waker.longest_wait.syscall is not null then ' in ' || waker.longest_wait.syscall "
        "when waker.longest_wait.state is not null "
        "then ' in off-CPU (' || waker.longest_wait.state || ')' else '' end as w, "
        f"count(*), sum(dur_ns), count(distinct capture) from read_parquet("
        f"'{out}/blocking/*/*.parquet', hive_partitioning = true) "
        "where \"in\" <> 'go-runtime' and waker is not null group by w"
    ).fetchall()
    want_wakers = sorted(
        ((w, int(n), int(t), int(c)) for w, n, t, c in wakers), key=lambda x: (-x[2], x[0])
    )
    got_wakers = [
        (x["waker"], x["count"], x["total_ns"], x["in_captures"])
        for x in doc["summary"]["by_waker"]
    ]
    assert got_wakers == want_wakers[: len(got_wakers)] and got_wakers
    kinds = db.execute(
        f"select kind, count(*), count(distinct capture) from read_parquet("
        f"'{out}/findings/*/*.parquet', hive_partitioning = true) group by kind"
    ).fetchall()
    assert {k: (int(n), int(c)) for k, n, c in kinds} == {
        k["kind"]: (k["count"], len(k["captures"])) for k in doc["summary"]["findings_by_kind"]
    }


def _worker_addresses(cluster) -> dict[str, str]:
    from distributed import Client

    with Client(cluster.address, timeout="30s") as c:
        return {a: w["name"] for a, w in c.scheduler_info()["workers"].items()}


def test_fleet_loses_no_capture_when_a_worker_dies(tmp_path):

    with dask_cluster(tmp_path / "dask") as cluster:
        _kill_a_worker_mid_run(cluster, tmp_path)


def _kill_a_worker_mid_run(cluster, tmp_path):
    from distributed import Client

    caps = []
    for i in range(8):
        link = tmp_path / f"pod-{i}"
        link.symlink_to(SAMPLES / "go_hiredis", target_is_directory=True)
        caps.append(link)
    out = tmp_path / "fleet"
    proc = subprocess.Popen(
        [*TRACECORR, "fleet", *map(str, caps), "-o", str(out), "--scheduler", cluster.address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    victim, killed_keys = "w1", []
    with Client(cluster.address, timeout="30s") as client:
        names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
        addr = next(a for a, n in names.items() if n == victim)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            # a task the scheduler has given this worker (with one thread: the one running,
            # or the next in line): it must be run again elsewhere
            running = client.processing(workers=[addr]).get(addr, [])
            if running:
                killed_keys = list(running)
                cluster.kill_worker(victim)
                break
            time.sleep(0.01)
    stdout, stderr = proc.communicate(timeout=300)
    assert killed_keys, "the worker never ran a task: nothing was killed mid-task"
    assert proc.returncode == 0, stderr
    doc = json.loads((out / "fleet.json").read_text())
    assert [e["status"] for e in doc["captures"]] == ["ok"] * 8, stderr
    survivor = next(a for a, n in names.items() if n != victim)
    rerun = [e for e in doc["captures"] if any(e["capture"] in str(k) for k in killed_keys)]
    assert rerun and all(e["worker"] == survivor for e in rerun)
    want = report_json(SAMPLES / "go_hiredis")["blocking"]
    for e in doc["captures"]:
        assert by_time(dataset_rows(out, "blocking", e["capture"])) == by_time(want)


@pytest.mark.parametrize(
    "address, says",
    [
        ("tcp://127.0.0.1:9", "tcp://127.0.0.1:9 unreachable"),
        ("notaurl://x", "notaurl://x is not a scheduler address"),
    ],
)
def test_fleet_without_a_usable_scheduler_is_one_line_per_capture(tmp_path, address, says):
    out = tmp_path / "fleet"
    caps = [SAMPLES / "go_hiredis", SAMPLES / "py_hiredis"]
    r = run_cli("fleet", *map(str, caps), "-o", str(out), "--scheduler", address)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    doc = json.loads((out / "fleet.json").read_text())
    assert [e["status"] for e in doc["captures"]] == ["error", "error"]
    for e in doc["captures"]:
        assert says in e["error"]
        assert r.stderr.splitlines().count(f"tracecorr: {e['capture']}: {e['error']}") == 1


def test_fleet_refuses_to_write_into_a_foreign_directory(tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    r = run_cli("fleet", str(SAMPLES / "go_hiredis"), "-o", str(out))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "not a tracecorr fleet output" in r.stderr
    assert (out / "notes.txt").read_text() == "keep me"


def test_fleet_local_cluster_and_rerun_replaces_the_output(tmp_path):
    out = tmp_path / "fleet"
    for caps in ([SAMPLES / "go_hiredis", SAMPLES / "py_hiredis"], [SAMPLES / "py_hiredis"]):
        r = run_cli("fleet", *map(str, caps), "-o", str(out), "--workers", "2")
        assert r.returncode == 0, r.stderr
        assert "captures analysed (local cluster, " in r.stdout
    assert sorted(p.name for p in (out / "blocking").iterdir()) == ["capture=py_hiredis"]
    import pandas as pd

    frame = pd.read_parquet(out / "blocking")  # pandas alone reads the dataset
    assert set(frame["capture"].astype(str)) == {"py_hiredis"}
    assert len(frame) == len(report_json(SAMPLES / "py_hiredis")["blocking"])


def test_fleet_progress_is_one_line_per_capture_outside_a_terminal(tmp_path):
    out = tmp_path / "fleet"
    r = run_cli("fleet", str(SAMPLES / "go_hiredis"), "-o", str(out), "--workers", "1", "-q")
    assert r.returncode == 0, r.stderr
    want = report_json(SAMPLES / "go_hiredis")
    line = (
        f"[1/1] go_hiredis: {want['summary']['records']} blocking records, "
        f"{len(want['findings'])} findings"
    )
    assert line in r.stderr
    assert r.stdout == ""


def test_plan_groups_files_by_directory_and_names_captures_uniquely(tmp_path):
    from tracecorr.fleet.task import plan_captures

    for host in ("a", "b"):
        (tmp_path / host / "pod").mkdir(parents=True)
        for f in ("go.trace", "perf.txt"):
            (tmp_path / host / "pod" / f).write_text("x")
    specs = plan_captures(
        [
            str(tmp_path / "a" / "pod" / "go.trace"),
            str(tmp_path / "b" / "pod"),
            str(tmp_path / "a" / "pod" / "perf.txt"),
            str(tmp_path / "gone" / "pod"),
            str(tmp_path / "we ird:name"),
        ]
    )
    assert [s.name for s in specs] == ["pod", "pod-2", "pod-3", "we_ird_name"]
    assert specs[0].inputs == (
        str(tmp_path / "a" / "pod" / "go.trace"),
        str(tmp_path / "a" / "pod" / "perf.txt"),
    )
    assert specs[1].inputs == (str(tmp_path / "b" / "pod"),)
    assert specs[2].inputs == (str(tmp_path / "gone" / "pod"),)  # analysed: its error recorded


def start_sample_fleet(out: Path, **popen) -> subprocess.Popen:
    """``tracecorr fleet`` of the Go sample on one local worker, started in the background."""
    return subprocess.Popen(
        [*TRACECORR, "fleet", str(SAMPLES / "go_hiredis"), "-o", str(out), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        **popen,
    )


def test_fleet_draws_a_progress_bar_on_a_terminal(tmp_path):
    import os
    import pty

    master, slave = pty.openpty()
    out = tmp_path / "fleet"
    proc = start_sample_fleet(out, stdin=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the other side closed
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=300) == 0
    os.close(master)
    screen = b"".join(chunks).decode(errors="replace")
    assert "captures" in screen and "1/1" in screen, screen
    assert "[1/1] go_hiredis:" not in screen  # the bar replaces the per-capture lines


def test_fleet_on_a_scheduler_without_workers_gives_up_in_one_line(tmp_path):
    from tracecorr.fleet.cluster import WORKERS_TIMEOUT

    with dask_cluster(tmp_path / "dask", workers=0) as cluster:
        out = tmp_path / "fleet"
        t0 = time.monotonic()
        r = run_cli(
            "fleet", str(SAMPLES / "go_hiredis"), "-o", str(out), "--scheduler", cluster.address
        )
        assert time.monotonic() - t0 < WORKERS_TIMEOUT + 60
    assert r.returncode == 2, r.stderr
    (entry,) = json.loads((out / "fleet.json").read_text())["captures"]
    assert entry["status"] == "error" and "has no workers" in entry["error"]
    assert f"tracecorr: go_hiredis: {entry['error']}" in r.stderr.splitlines()


def test_an_interrupted_fleet_output_can_be_rerun_into(tmp_path):
    """fleet.json is written before any work: a run killed half-way leaves a directory the
    next run recognises as its own and replaces."""
    out = tmp_path / "fleet"
    proc = start_sample_fleet(out, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (out / "fleet.json").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((out / "fleet.json").read_text())["status"] == "running"
    r = run_cli("fleet", str(SAMPLES / "go_hiredis"), "-o", str(out), "--workers", "1", "-q")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "fleet.json").read_text())["status"] == "done"
