"""A service in its own mount namespace: DSO paths the host does not have, read back.

One real capture serves most tests: the Go + cgo + hiredis workload (a C shim calls hiredis,
so only the C callchain proves a library call) in its own PID and mount namespaces, run as
``/app/go_hiredis`` with the image's libhiredis *and* libc in ``/app/lib``, DWARF callchains,
perf recording from the host. Nothing the service's stacks touch has a path the host has
(the dynamic loader aside). Expected values come from outside the reader: the workload's
log, the kernel's NSpid log (test_containers_threads.check_go), ``perf script --symfs``,
``perf buildid-list``, and ``objcopy``-made files of known build ids.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from tracecorr.parsers.perf_data import parse as parse_perf_data
from tracecorr.parsers.perf_data.symbols import elf_info

from sample_traces.capture import capture_go, namespaces
from sample_traces.capture.redis_server import free_port
from tests.conftest import read_truth
from tests.support.perf_oracle import callchains, perf_script, stack_frames
from tests.test_containers_threads import SLOW_NS, check_go, go_options, report_of, tracecorr

pytestmark = pytest.mark.capture
HIREDIS = "/app/lib/libhiredis.so"
LIBC = "/app/lib/libc.so.6"


@pytest.fixture(scope="module")
def go_image(tmp_path_factory, redis_server, perf, go_toolchain) -> Path:
    out = tmp_path_factory.mktemp("go_image")
    opts = go_options(redis_server, goroutines=2, commands=12, slow_every=4, decoy_every=0,
                      mount_namespace=True, image_libc=True, dwarf=True, mode="shim")  # fmt: skip
    capture_go(out, opts)
    return out


def symfs_of(capture: Path, tmp: Path) -> Path:
    """A symfs as a user makes one: the container's root, here /app -> the capture dir."""
    root = tmp / "symfs"
    root.mkdir(exist_ok=True)
    (root / "app").symlink_to(capture)
    return root


def library_records(report: dict) -> list[dict]:
    return [x for x in report["blocking"] if x["in"] == "library"]


def app_frames(record: dict) -> list[str]:
    return [f for f in record["native_stack"] if "(/app/" in f]


def hiredis_lib(capture: Path) -> str:
    return "/app/lib/" + next(p.name for p in (capture / "lib").glob("libhiredis.so*"))


def unnamed(frame: str) -> bool:
    """A frame no symbol names: 'dso+0xoffset (path)' (or perf's '[unknown]')."""
    return bool(re.match(r"^(\[unknown\]|[\w.+-]+\+0x[0-9a-f]+)( |$)", frame))


def test_without_the_files_the_report_says_it_cannot_see(go_image, tmp_path):
    """No --symfs, no archive: the report opens with what it cannot read, every /app frame
    is unnamed, no record claims a callchain, and the ledger counts the unnamed frames."""
    report = report_of(go_image, tmp_path)
    assert report["blind"] and "none of the" in report["blind"][0]
    assert "/app/go_hiredis" in report["blind"][0]
    assert report["warnings"][0] == report["blind"][0]
    perf = next(s for s in report["sources"] if s["kind"] == "perf-data")
    missing = {x["key"]: x["count"] for x in perf["losses"] if x["name"] == "perf_dso_missing"}
    assert missing.get("/app/go_hiredis", 0) > 0
    for x in report["blocking"]:
        assert "perf-callchain" not in x["evidence"]
        assert all(unnamed(f) for f in app_frames(x)), x["native_stack"]
    text = tracecorr("report", str(go_image))
    assert text.returncode == 0 and "\nCannot see\n" in text.stdout


def test_symfs_reads_the_containers_dsos(go_image, tmp_path, perf):
    """--symfs ROOT: every slow call found with its goroutine, proven by the C callchain
    through /app/lib/libhiredis, named as perf script --symfs names the same frames."""
    root = symfs_of(go_image, tmp_path)
    report = report_of(go_image, tmp_path, "--symfs", str(root))
    assert not report["blind"]
    assert check_go(report, go_image) >= 2
    lib = hiredis_lib(go_image)
    slow = [x for x in library_records(report) if x["dur_ns"] >= SLOW_NS]
    assert slow and all("perf-callchain" in x["evidence"] for x in slow)
    assert all(any(f.startswith("redis") and f"({lib})" in f for f in x["native_stack"])
               for x in slow)  # fmt: skip
    assert not [w for w in report["warnings"] if "not found here" in w]
    # frame by frame against perf's own symbolisation of the same files
    tables = parse_perf_data(go_image / "perf.data", symfs=str(root))
    frames = stack_frames(tables.stacks)
    # --no-inline: perf 6.1 runs addr2line on the recorded path, not the symfs one, and dies
    args = ("--symfs", str(root), "--no-inline", "--ns", "-F", "tid,time,event,ip,sym,dso")
    theirs = callchains(perf_script(perf, go_image / "perf.data", *args))
    compared = 0
    sl = tables.slices[tables.slices["stack_id"].notna()]
    for r in sl.itertuples():
        chain = theirs.get((r.tid, r.ts, "raw_syscalls:sys_enter"))
        if chain is None:
            continue
        # the service and libhiredis (their own symtabs; for the image's stripped libc we
        # read the host's debug symbols by build id, where perf 6.1 keeps its .dynsym)
        perf_names = {f[0]: f[1] for f in chain if str(f[2]) in ("/app/go_hiredis", lib)}
        for addr, func, module, _kind in frames[int(r.stack_id)]:
            if module in ("/app/go_hiredis", lib) and addr in perf_names:
                assert func == perf_names[addr], (module, hex(addr))
                compared += 1
    assert compared >= 100


def _with_file(root: Path, recorded: str, src: Path) -> None:
    dst = root / recorded.lstrip("/")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def test_a_file_of_another_build_is_never_read(go_image, tmp_path):
    """A symfs whose libhiredis is another library (libz under that name): its frames stay
    unnamed, none of libz's names appears, the warning gives both build ids."""
    lib = hiredis_lib(go_image)
    root = tmp_path / "wrong"
    _with_file(root, "/app/go_hiredis", go_image / "go_hiredis")
    _with_file(root, LIBC, go_image / "lib" / "libc.so.6")
    libz = Path("/usr/lib/x86_64-linux-gnu/libz.so.1").resolve()
    _with_file(root, lib, libz)
    report = report_of(go_image, tmp_path, "--symfs", str(root))
    recorded = elf_info(str(go_image / "lib" / Path(lib).name)).build_id.hex()
    other = elf_info(str(libz)).build_id.hex()
    said = [w for w in report["warnings"] if lib in w and "build id" in w]
    assert said and other in said[0] and recorded in said[0], report["warnings"]
    perf = next(s for s in report["sources"] if s["kind"] == "perf-data")
    assert any(x["name"] == "perf_dso_build_id_mismatch" and x["key"] == lib and x["count"]
               for x in perf["losses"])  # fmt: skip
    dsos = {d["path"]: d for d in perf["dsos"]}
    assert dsos[lib]["status"] == "mismatch" and dsos[lib]["build_id"] == recorded
    assert dsos["/app/go_hiredis"]["status"] == "ok"
    names = {f.split(" (")[0] for x in report["blocking"] for f in x["native_stack"]
             if f"({lib})" in f}  # fmt: skip
    assert names and all(unnamed(n) for n in names), names
    # the other files are the recorded builds: named
    assert any(f.startswith("read ") for x in report["blocking"] for f in app_frames(x))


def test_perfs_build_id_cache_is_looked_up_and_debug_info_alone_names_nothing(go_image, tmp_path):
    """Without a symfs, files found by build id in perf's cache ($PERF_BUILDID_DIR) are
    read; a separate debug file alone (objcopy --only-keep-debug: no file offsets) is
    refused rather than used to name frames at the wrong addresses."""
    cache = tmp_path / "cache"
    for src in (go_image / "go_hiredis", go_image / "lib" / Path(hiredis_lib(go_image)).name):
        bid = elf_info(str(src)).build_id.hex()
        entry = cache / ".build-id" / bid[:2] / bid[2:]
        entry.mkdir(parents=True)
        shutil.copyfile(src, entry / "elf")
    libc = go_image / "lib" / "libc.so.6"
    bid = elf_info(str(libc)).build_id.hex()
    entry = cache / ".build-id" / bid[:2] / bid[2:]
    entry.mkdir(parents=True)
    subprocess.run(["objcopy", "--only-keep-debug", str(libc), str(entry / "debug")], check=True)
    env = {**os.environ, "PERF_BUILDID_DIR": str(cache)}
    t = parse_perf_data_env(go_image / "perf.data", env, tmp_path)
    dsos = {d["path"]: d for d in t["user_dsos"]}
    assert dsos["/app/go_hiredis"]["status"] == "ok"
    assert dsos["/app/go_hiredis"]["file"].startswith(str(cache))
    assert dsos[LIBC]["status"] == "debug-only", dsos[LIBC]
    assert t["libc_names"] == ["[unknown]"], t["libc_names"]
    assert t["go_named"] > 0


def parse_perf_data_env(data: Path, env: dict, tmp: Path) -> dict:
    """Parse in a child process with *env* (the build-id cache is read from the
    environment once per process)."""
    out = tmp / "parsed.json"
    code = f"""
import json
from tracecorr.parsers.perf_data import parse
t = parse({str(data)!r})
st = t.stacks
mod = st["module"].astype(str)
json.dump({{
    "user_dsos": t.meta.extra["symbols"]["user_dsos"],
    "libc_names": sorted(set(st[mod == {LIBC!r}]["function"].astype(str))),
    "go_named": int(((mod == "/app/go_hiredis")
                     & (st["function"].astype(str) != "[unknown]")).sum()),
}}, open({str(out)!r}, "w"))
"""
    import sys

    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    return json.loads(out.read_text())


def test_archive_capture_reads_the_same_after_its_files_move(go_image, redis_server, tmp_path):
    """`tracecorr capture --pid HOST_PID --dwarf` of the containerised service: --archive is
    on by itself (another mount namespace); the archive holds the touched DSOs with the
    recorded build ids (perf buildid-list); with the container's files moved away the
    report is the same, and without the archive it cannot see."""
    work = tmp_path / "container"
    work.mkdir()
    shutil.copy2(go_image / "go_hiredis", work / "go_hiredis")
    namespaces.library_copy(work)
    namespaces.library_copy(work, "libc.so.6")
    port = free_port()
    argv = ["/app/go_hiredis", "-port", str(redis_server.port), "-goroutines", "2", "-mode",
            "shim", "-duration", "5s", "-slow-every", "3", "-slow-ms", "30", "-decoy-every",
            "0", "-trace", "", "-truth", "/app/truth.jsonl", "-pprof",
            f"127.0.0.1:{port}"]  # fmt: skip
    proc = subprocess.Popen(
        namespaces.container_argv(argv, work, pid=True, mount=True), stderr=subprocess.PIPE
    )
    truth_path = work / "truth.jsonl"
    out = tmp_path / "cap"
    try:
        deadline = time.monotonic() + 30
        while not (truth_path.exists() and truth_path.read_text().endswith("\n")):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.02)
        ns_pid = json.loads(truth_path.read_text().split("\n", 1)[0])["pid"]
        pid = namespaces.host_pid(proc.pid, ns_pid)
        time.sleep(0.5)
        r = tracecorr("capture", "--pid", str(pid), "--duration", "2.5s", "--dwarf",
                      "--go-trace-url", f"http://127.0.0.1:{port}", "-o", str(out))  # fmt: skip
        assert r.returncode == 0, r.stderr
    finally:
        proc.wait(timeout=60)
    meta = json.loads((out / "capture.json").read_text())
    arch = meta["archive"]
    assert arch["mount_namespace"] == "other" and arch["dir"] == "symfs"
    files = {f["path"]: f["build_id"] for f in arch["files"]}
    listed = subprocess.run(["perf", "buildid-list", "-i", str(out / "perf.data"),
                             "--with-hits"], capture_output=True, text=True).stdout  # fmt: skip
    recorded = {line.split()[1]: line.split()[0] for line in listed.splitlines() if " " in line}
    # attached, perf records the paths /proc/PID/maps gives the host (a chrooted process's
    # files through its namespace's mounts); the archive keeps them under those
    assert any(p.endswith("/app/go_hiredis") for p in files), files
    assert any(p.endswith(Path(hiredis_lib(work)).name) for p in files), files
    for path, bid in files.items():
        if path in recorded:
            assert recorded[path].startswith(bid) or bid.startswith(recorded[path]), path
    lib = hiredis_lib(work)
    before = report_of(out, tmp_path)
    assert not before["blind"], before["blind"]
    truth = [c for c in read_truth(truth_path) if c["kind"] == "call"]
    lo, hi = meta["common_window_mono_ns"]
    inside = [c for c in truth if lo + 3e8 <= c["t0"] and c["t1"] <= hi - 3e8]
    slow = [c for c in inside if c["dur_ns"] >= SLOW_NS]
    assert slow
    for c in slow:
        assert any(
            x["goid"] == c["goid"] and c["t0"] <= x["start_ns"] and x["end_ns"] <= c["t1"]
            and "perf-callchain" in x["evidence"]
            for x in before["blocking"]
        ), c  # fmt: skip
    assert any(f.endswith(f"/{Path(lib).name})") and f.startswith("redis")
               for x in before["blocking"] for f in x["native_stack"])  # fmt: skip
    # the container's files gone (as on a laptop): the same report
    shutil.move(work, tmp_path / "gone")
    after = report_of(out, tmp_path)
    assert after["blocking"] == before["blocking"]
    # and the archive is what made it so
    shutil.move(out / "symfs", tmp_path / "symfs-away")
    blind = report_of([out / "go.trace", out / "perf.data"], tmp_path)
    assert blind["blind"] and "none of the" in blind["blind"][0]
