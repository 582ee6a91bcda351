"""The distribution installs one package, ``tracecorr``, and coexists with anything else.

Users install a profiler into the environment of the program they profile, so tracecorr must
not put generic top-level modules such as ``parsers`` into site-packages. A wheel is built
from a copy of the source tree, its file list is checked against the source folders, and it
is installed into a fresh venv next to an unrelated package that is itself named ``parsers``;
both import, and the installed CLI runs the whole pipeline on a bundled sample.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

from tests.conftest import SAMPLES

ROOT = Path(__file__).resolve().parent.parent
#: source folder -> its place in the installed namespace (pyproject's package-dir)
FOLDERS = {
    "tracecorr": "tracecorr",
    "parsers": "tracecorr/parsers",
    "correlator": "tracecorr/correlator",
    "capture": "tracecorr/capture",
    "fleet": "tracecorr/fleet",
}


def run(argv: list, cwd: Path, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=600, **kw
    )
    assert r.returncode == 0, (argv, r.stdout[-2000:], r.stderr[-2000:])
    return r


def build_wheel(project: Path, out: Path) -> Path:
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            out,
            project,
        ],
        cwd=project,
    )
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", *FOLDERS):
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(p, src / name)
    return build_wheel(src, tmp_path_factory.mktemp("dist"))


def test_wheel_holds_only_the_tracecorr_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    dist_info = f"tracecorr-{version}.dist-info/"
    outside = [n for n in names if not (n.startswith("tracecorr/") or n.startswith(dist_info))]
    assert not outside, outside
    # every module of the source folders is in the wheel, at its place in the namespace
    expected = {
        f"{dest}/{p.relative_to(ROOT / folder).as_posix()}"
        for folder, dest in FOLDERS.items()
        for p in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    missing = expected - set(names)
    assert not missing, f"not packaged (add the sub-package to pyproject): {sorted(missing)}"


def test_installs_beside_a_package_named_parsers(wheel, tmp_path):
    # someone else's top-level package called `parsers`, as a wheel of its own
    other = tmp_path / "other"
    (other / "parsers").mkdir(parents=True)
    (other / "parsers" / "__init__.py").write_text('WHO = "someone else"\n')
    (other / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "not-tracecorr-parsers"\nversion = "1.0"\n'
        '[tool.setuptools]\npackages = ["parsers"]\n'
    )
    other_wheel = build_wheel(other, tmp_path / "dist")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=tmp_path)  # pip from ensurepip, offline
    py = venv / "bin" / "python"
    site = Path(
        run(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path
        ).stdout.strip()
    )
    # tracecorr's dependencies come from the test environment's site-packages, appended
    # after the venv's own (a .pth line: that directory's own .pth files, among them the
    # editable install of tracecorr, are not processed)
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir())
    (site / "zz_test_deps.pth").write_text(f"{deps}\n")
    run(
        [py, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel, other_wheel],
        cwd=tmp_path,
    )

    probe = (
        "import json, parsers, tracecorr, tracecorr.parsers.model as m, tracecorr.cli;"
        "print(json.dumps([parsers.WHO, tracecorr.__version__, m.__file__]))"
    )
    who, version, model_file = json.loads(run([py, "-c", probe], cwd=tmp_path).stdout)
    assert who == "someone else"
    assert version == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert Path(model_file).is_relative_to(site)

    # the wheel's console script runs the whole pipeline
    out = tmp_path / "report.json"
    r = run([venv / "bin" / "tracecorr", "report", SAMPLES / "go_hiredis", "--json", out], tmp_path)
    assert "blocking record(s)" in r.stdout
    assert json.loads(out.read_text())["schema"] == "tracecorr.report/1"
    r = run([venv / "bin" / "tracecorr", "--version"], cwd=tmp_path)
    assert r.stdout.strip() == f"tracecorr, version {version}"
