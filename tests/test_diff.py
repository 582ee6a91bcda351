"""``tracecorr diff`` on a real workload run twice: without and with a slow phase at one call
site. The Go workload alternates two call sites of DEBUG SLEEP with the same seeded lengths
in both runs (``-two-sites``); the second run makes one site 8x slower for the middle 60 %
of its commands. The workload's ground truth says which commands were slow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sample_traces.capture import GoOptions, capture_go
from tests.conftest import read_truth

TRACECORR = [sys.executable, "-m", "tracecorr"]
STEADY = "main.(*worker).steadyCall"
PHASE = "main.(*worker).phaseCall"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TRACECORR, *args], capture_output=True, text=True, timeout=600, check=False
    )


def two_site_run(out: Path, port: int, slow_phase: float) -> Path:
    capture_go(
        out,
        GoOptions(
            goroutines=1,  # DEBUG SLEEP stalls the server: one worker keeps the sites apart
            commands=80,
            slow_every=0,
            slow_ms=2,
            decoy_every=0,
            two_sites=True,
            slow_phase=slow_phase,
            redis_port=port,
        ),
    )
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, redis_server, perf, go_toolchain) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("diff")
    return (
        two_site_run(base / "before", redis_server.port, 0.0),
        two_site_run(base / "after", redis_server.port, 0.6),
    )


def diff_json(before: Path | str, after: Path | str, *extra: str) -> dict:
    r = run_cli("diff", str(before), str(after), "--json", "/dev/stdout", "-q", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def site_row(doc: dict, prefix: str) -> dict:
    (row,) = [r for r in doc["by_call_site"] if r["call_site"].startswith(prefix)]
    return row


def report_records(capture: Path) -> list[dict]:
    r = run_cli("report", str(capture), "--json", "/dev/stdout", "-q")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["blocking"]


def truth_sites(capture: Path) -> dict[str, list[dict]]:
    calls = [t for t in read_truth(capture / "truth.jsonl") if t.get("kind") == "call"]
    out: dict[str, list[dict]] = {}
    for t in calls:
        if "site" in t:
            out.setdefault(t["site"], []).append(t)
    return out


@pytest.mark.capture
def test_diff_flags_the_slowed_call_site_and_not_the_steady_one(runs):
    before, after = runs
    doc = diff_json(before, after)
    assert doc["schema"] == "tracecorr.diff/1"
    phase, steady = site_row(doc, PHASE), site_row(doc, STEADY)
    assert phase["significant"] is True and phase["direction"] == "worse"
    assert phase["p_adjusted"] < 0.01 and phase["prob_after_slower"] > 0.5
    assert steady["significant"] is False  # tested (enough records), and not significant
    assert steady["p_adjusted"] >= 0.01
    for side, cap in (("before", before), ("after", after)):
        truth = truth_sites(cap)
        records = report_records(cap)
        for name, prefix in (("steady", STEADY), ("phase", PHASE)):
            mine = [r for r in records if (r["call_site"] or "").startswith(prefix)]
            # every DEBUG SLEEP is one blocking read: the counts are the workload's own
            assert len([r for r in mine if r["syscall"] == "read"]) == len(truth[name])
            # anything else is the machine taking the CPU from the thread inside the call
            # (a loaded CI runner): off-CPU while runnable, outside any syscall
            others = [r for r in mine if r["syscall"] != "read"]
            assert all(r["syscall"] is None and r["off_cpu_state"] == "R" for r in others)
            assert site_row(doc, prefix)[side]["count"] == len(mine)
        # the read waits out the server's sleep, inside the logged call
        for name, prefix in (("steady", STEADY), ("phase", PHASE)):
            sleep = np.median([t["sleep_ms"] * 1e6 for t in truth[name]])
            call = np.median([t["dur_ns"] for t in truth[name]])
            p50 = site_row(doc, prefix)[side]["p50_ns"]
            assert sleep * 0.98 <= p50 <= call, (side, name, sleep, p50, call)
    slowed = [t for t in truth_sites(after)["phase"] if t["in_phase"]]
    assert len(slowed) >= len(truth_sites(after)["phase"]) // 2  # the median is in the phase
    # the other direction: the same site got better
    back = site_row(diff_json(after, before), PHASE)
    assert back["significant"] is True and back["direction"] == "better"


@pytest.mark.capture
def test_diff_of_a_run_with_itself_finds_nothing(runs):
    before, _ = runs
    doc = diff_json(before, before)
    for view in ("by_call_site", "by_syscall", "by_waker"):
        for row in doc[view]:
            assert row["significant"] is not True
            assert row["change"]["count"] == 0 and row["change"]["total_ns"] == 0
    assert doc["findings"]["new"] == [] and doc["findings"]["gone"] == []


@pytest.mark.capture
def test_diff_reads_a_capture_a_saved_report_and_a_fleet_output_alike(runs, tmp_path):
    before, after = runs
    saved = tmp_path / "before.json"
    r = run_cli("report", str(before), "--json", str(saved), "-q")
    assert r.returncode == 0, r.stderr
    fleet = tmp_path / "fleet"
    r = run_cli("fleet", str(before), "-o", str(fleet), "--workers", "1", "-q")
    assert r.returncode == 0, r.stderr
    docs = [diff_json(side, after) for side in (before, saved, fleet)]
    assert [d["before"]["kind"] for d in docs] == ["capture", "report", "fleet"]
    for d in docs[1:]:
        for view in ("by_call_site", "by_syscall", "by_waker", "findings"):
            assert d[view] == docs[0][view], view
    md = tmp_path / "diff.md"
    r = run_cli("diff", str(saved), str(after), "--markdown", str(md))
    assert r.returncode == 0, r.stderr
    text = md.read_text()
    assert f"`{site_row(docs[0], PHASE)['call_site']}`" in text and "WORSE" in text
    assert "WORSE" in r.stdout and "no significant change" in r.stdout


@pytest.mark.capture
def test_diff_lists_new_and_gone_findings_and_untested_groups(runs, tmp_path):
    """The Go sample has two pitfalls on purpose (a shared context, replies never freed);
    the two-site run has none: both are gone, and come back the other way round."""
    from tests.conftest import SAMPLES

    before, _ = runs
    sample = SAMPLES / "go_hiredis"
    want = json.loads(run_cli("report", str(sample), "--json", "/dev/stdout", "-q").stdout)[
        "findings"
    ]
    doc = diff_json(sample, before)
    gone = doc["findings"]["gone"]
    assert sorted(g["kind"] for g in gone) == sorted({f["kind"] for f in want})
    assert doc["findings"]["new"] == []
    by_kind = {k["kind"]: k for k in doc["findings"]["by_kind"]}
    for f in want:
        assert by_kind[f["kind"]]["before"] == sum(x["kind"] == f["kind"] for x in want)
        assert by_kind[f["kind"]]["after"] == 0
    back = diff_json(before, sample)["findings"]
    assert sorted(x["kind"] for x in back["new"]) == sorted(g["kind"] for g in gone)
    # call sites on one side only are compared with nothing: no test
    for row in doc["by_call_site"]:
        if not (row["before"]["count"] and row["after"]["count"]):
            assert row["significant"] is None and row["p_adjusted"] is None


def test_diff_reads_pyspy_json_as_a_trace_not_as_a_report(tmp_path):
    from tests.conftest import SAMPLES

    speedscope = SAMPLES / "py_hiredis" / "pyspy.speedscope.json"
    r = run_cli("diff", str(speedscope), str(speedscope), "--json", "/dev/stdout", "-q")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["before"]["kind"] == "capture"


def test_diff_of_unrelated_libraries_or_schemas_is_one_line(tmp_path):
    from tests.conftest import SAMPLES

    r = run_cli("report", str(SAMPLES / "go_hiredis"), "--json", str(tmp_path / "a.json"), "-q")
    assert r.returncode == 0, r.stderr
    other = json.loads((tmp_path / "a.json").read_text())
    other["library"] = "libpq"  # a report of another library's calls
    (tmp_path / "pq.json").write_text(json.dumps(other))
    (tmp_path / "x.json").write_text(json.dumps({"schema": "tracecorr.tables/1"}))
    for before, after, says in (
        ("a.json", "pq.json", "unrelated sides"),
        ("a.json", "x.json", "not a tracecorr.report/1 report"),
        ("a.json", "missing.json", "no such file"),
    ):
        r = run_cli("diff", str(tmp_path / before), str(tmp_path / after))
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], r.stderr


def test_holm_matches_its_definition():
    from hypothesis import given
    from hypothesis import strategies as st
    from tracecorr.fleet.diff import holm

    @given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
    def check(ps):
        m = len(ps)
        order = sorted(range(m), key=lambda i: ps[i])
        rank = {i: r for r, i in enumerate(order)}
        for i in range(m):
            # the adjusted value: the largest step-down bound among the p-values not above it
            want = max(min(1.0, (m - rank[j]) * ps[j]) for j in order[: rank[i] + 1])
            assert holm(ps)[i] == pytest.approx(want)

    check()


def test_stats_are_numpys():
    from tracecorr.fleet.diff import stats

    rng = np.random.default_rng(7)
    d = rng.integers(1_000_000, 90_000_000, 501)
    s = stats(d)
    assert s == {
        "count": 501,
        "total_ns": int(d.sum()),
        "p50_ns": int(np.median(d)),
        "p99_ns": int(round(np.quantile(d, 0.99))),
    }
