"""Run a workload under the real recorders and leave one self-describing capture directory.

A capture directory holds the recordings, the workload's own ground truth and
``capture.json`` (what ran, with which versions, flags and CLOCK_MONOTONIC times):

    go:  go.trace  truth.jsonl  perf.data  perf.script.txt[.gz]  capture.json  (+ the binary)
    py:  pyspy.<format>.<ext>...  truth.jsonl  perf.data  perf.script.txt[.gz]  capture.json
    c:   truth.jsonl  perf.data  perf.script.txt[.gz]  capture.json  (+ the binary)
    cpp: as c, the binary stripped, plus its unstripped build cpp_hiredis.debug
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tracecorr.capture import recorders
from tracecorr.capture.recorders import SCHEMA, CaptureError, mono_ns

from . import namespaces, tools
from .redis_server import RedisServer

WORKLOADS = Path(__file__).resolve().parent.parent / "workloads"


@dataclass
class CaptureOptions:
    """What every workload's capture shares: the recorders, their files, the server."""

    perf: bool = True
    dwarf: bool = False
    compress: bool = False
    keep_perf_data: bool = True
    redis_port: int | None = None  # use this running server instead of starting one
    system_wide: bool = False  # perf record -a: every process, redis-server included
    peer_redis: bool = False  # perf record -p WORKLOAD,REDIS: the service and its peer
    # as a container (namespaces.py): the workload's own PID namespace (it logs namespace
    # tids, perf records host tids), and its own mount namespace (it runs as /app/<binary>
    # with libhiredis from /app/lib, paths the host does not have)
    pid_namespace: bool = False
    mount_namespace: bool = False
    # with mount_namespace: the image's own libc too (a copy in /app/lib): then no DSO the
    # stacks touch has a path the host has (a container built on another distribution)
    image_libc: bool = False


@dataclass
class GoOptions(CaptureOptions):
    go_version: str = tools.DEFAULT_GO
    goroutines: int = 4
    commands: int = 40
    slow_every: int = 10
    slow_ms: int = 50
    decoy_every: int = 20
    decoy_ms: int = 30
    mode: str = "direct"
    duration: float = 0.0
    keep_binary: bool = True
    perf_monotonic: bool = True  # False: perf on its default clock (no -k)
    gomaxprocs: int = 0  # 0: the runtime's default
    spinners: int = 0  # CPU-bound goroutines holding the Ps (Go runtime time in cgo calls)
    perf_mmap_pages: str | None = None  # perf record -m: a tiny buffer forces lost records
    # pitfalls, on purpose (see the workload's doc): one context shared by two goroutines at
    # once, a pooled context handed between goroutines, goroutines blocked in hiredis at
    # once, goroutines that never free their replies
    shared_pairs: int = 0
    pool_users: int = 0
    burst: int = 0
    leakers: int = 0
    poisoned: int = 0  # pooled contexts handed on in an error state (a socket timeout)
    broken: int = 0  # connections broken under hiredis (EPIPE, SIGPIPE)
    # before/after diffs: two call sites of DEBUG SLEEP slow_ms x 1-2 (the same seeded lengths
    # in every run); slow_phase > 0 makes the phase site 8x slower in that middle fraction
    two_sites: bool = False
    slow_phase: float = 0.0
    stripped: bool = False  # go build -ldflags='-s -w'
    # shim mode: every Nth command the C shim itself waits wrapper_ms in nanosleep before it
    # calls hiredis (the caller's own code inside the cgo call; truth: wrapper_t0/t1)
    wrapper_every: int = 0
    wrapper_ms: int = 20


@dataclass
class PyOptions(CaptureOptions):
    threads: int = 3
    commands: int = 24
    slow_every: int = 8
    slow_ms: int = 200
    decoy_every: int = 12
    decoy_ms: int = 30
    duration: float = 0.0
    formats: list[str] = field(default_factory=lambda: ["chrometrace", "speedscope", "raw"])
    rate: int = 100
    name_prefix: str = "redis-worker-"  # thread names (tests use hostile ones)
    nonblocking: bool = False  # py-spy --nonblocking: no ptrace stops of the workload
    set_comm: bool = False  # name the OS threads after the Python ones (prctl)
    gil_hogs: int = 0  # CPU-bound pure-Python threads: the workers wait for the GIL


@dataclass
class COptions(CaptureOptions):
    threads: int = 3
    commands: int = 24
    slow_every: int = 4
    slow_ms: int = 50
    decoy_every: int = 6
    decoy_ms: int = 20
    keep_binary: bool = True


@dataclass
class CppOptions(COptions):
    """The C++ client: the C client's flags, and whether its binary is stripped."""

    stripped: bool = True  # strip -s: frames only the unstripped copy (.debug) can name


@dataclass
class Step:
    """One process we ran, for capture.json."""

    name: str
    argv: list[str]
    start_mono_ns: int = 0
    end_mono_ns: int = 0
    returncode: int | None = None
    stderr: str = ""

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "argv": self.argv,
            "start_mono_ns": self.start_mono_ns,
            "end_mono_ns": self.end_mono_ns,
            "returncode": self.returncode,
            "stderr": self.stderr[-2000:],
        }


def _run(step: Step, timeout: float, **kw) -> Step:
    step.start_mono_ns = mono_ns()
    try:
        proc = subprocess.run(step.argv, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as exc:
        raise CaptureError(
            f"{step.name} timed out after {timeout:.0f}s: {' '.join(step.argv)}"
        ) from exc
    step.end_mono_ns = mono_ns()
    step.returncode = proc.returncode
    step.stderr = proc.stderr
    if proc.returncode != 0:
        raise CaptureError(f"{step.name} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    return step


def _base_meta(workload: str, out: Path) -> dict:
    return {
        "schema": SCHEMA,
        "workload": workload,
        "created_wall": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "created_mono_ns": mono_ns(),
        "host": {
            "node": platform.node(),
            "kernel": platform.release(),
            "machine": platform.machine(),
            "python": platform.python_version(),
        },
        "directory": str(out),
        "files": {},
        "steps": [],
    }


def _write_meta(out: Path, meta: dict) -> None:
    (out / "capture.json").write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")


def _perf_meta(perf: str, dwarf: bool) -> dict:
    return {
        "version": recorders.tool_version([perf, "--version"]),
        "clock": "CLOCK_MONOTONIC",
        "events": list(recorders.PERF_EVENTS),
        "callgraph": "dwarf" if dwarf else "fp",
    }


def _finish_perf(perf: str, out: Path, meta: dict, compress: bool, keep_data: bool) -> None:
    data = out / "perf.data"
    name = "perf.script.txt.gz" if compress else "perf.script.txt"
    meta["perf"]["script"] = recorders.perf_script(perf, data, out / name, compress=compress)
    meta["files"]["perf_script"] = name
    if keep_data:
        meta["files"]["perf_data"] = "perf.data"
    else:
        data.unlink()
        (out / "perf.data.old").unlink(missing_ok=True)


def build_go_workload(version: str, out: Path, stripped: bool = False) -> Step:
    """Build the cgo workload with the cached Go toolchain; the binary goes into *out*.
    *stripped*: without symbol table and DWARF (``-ldflags='-s -w'``), as images ship."""
    env = tools.go_env(version)
    argv = [str(tools.ensure_go(version)), "build", "-o", str(out / "go_hiredis")]
    step = Step("go build", argv + (["-ldflags=-s -w"] if stripped else []) + ["."])
    return _run(step, timeout=600, cwd=WORKLOADS / "go_hiredis", env=env)


def capture_go(out: Path, opt: GoOptions) -> dict:
    """Go + cgo + hiredis under ``perf record``: Go trace, perf text, ground truth."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    version = tools.resolve_go_version(opt.go_version)
    meta = _base_meta("go_hiredis", out)
    perf = tools.perf_path() if opt.perf else None
    meta["steps"].append(build_go_workload(version, out, opt.stripped).as_dict())
    # the source the binary was built from: the trace's file:line frames point into it
    shutil.copyfile(WORKLOADS / "go_hiredis" / "main.go", out / "main.go")
    meta["files"]["source"] = "main.go"
    meta["go"] = {
        "version": version,
        "reported": recorders.tool_version([str(tools.ensure_go(version)), "version"]),
    }
    meta["hiredis"] = tools.hiredis_version()
    workload = [
        str(out / "go_hiredis"),
        "-goroutines",
        str(opt.goroutines),
        "-commands",
        str(opt.commands),
        "-slow-every",
        str(opt.slow_every),
        "-slow-ms",
        str(opt.slow_ms),
        "-decoy-every",
        str(opt.decoy_every),
        "-decoy-ms",
        str(opt.decoy_ms),
        "-mode",
        opt.mode,
        "-gomaxprocs",
        str(opt.gomaxprocs),
        "-spinners",
        str(opt.spinners),
        "-shared-pairs",
        str(opt.shared_pairs),
        "-pool-users",
        str(opt.pool_users),
        "-burst",
        str(opt.burst),
        "-leakers",
        str(opt.leakers),
        "-poisoned",
        str(opt.poisoned),
        "-broken",
        str(opt.broken),
        "-wrapper-every",
        str(opt.wrapper_every),
        "-wrapper-ms",
        str(opt.wrapper_ms),
        "-trace",
        str(out / "go.trace"),
        "-truth",
        str(out / "truth.jsonl"),
    ]
    if opt.duration:
        workload += ["-duration", f"{opt.duration}s"]
    if opt.two_sites:
        workload += ["-two-sites", "-slow-phase", str(opt.slow_phase)]
    with _redis(opt.redis_port) as redis:
        meta["redis"] = {"version": redis.version, "port": redis.port}
        workload += ["-port", str(redis.port)]
        workload = _contained(workload, out, opt, meta)
        argv = workload
        if perf:
            meta["perf"] = _perf_meta(perf, opt.dwarf)
            if not opt.perf_monotonic:
                meta["perf"]["clock"] = "perf_clock (default)"
            record = recorders.perf_record_argv(
                perf, out / "perf.data", opt.dwarf, opt.perf_monotonic, system_wide=opt.system_wide
            )
            meta["perf"]["system_wide"] = opt.system_wide
            if opt.perf_mmap_pages:
                record = _with_mmap_pages(record, opt.perf_mmap_pages)
                meta["perf"]["mmap_pages"] = opt.perf_mmap_pages
            argv = record + ["--"] + workload
        if perf and opt.peer_redis:
            workload += ["-start-delay", f"{PEER_ATTACH_DELAY_S}s"]
            steps = _record_with_peers(
                perf, out, opt.dwarf, workload, out / "truth.jsonl", [redis.pid()], meta
            )
            meta["steps"] += [s.as_dict() for s in steps]
        else:
            with _nspid_truth(opt, meta):
                step = _run(Step("workload", argv), timeout=600)
            meta["steps"].append(step.as_dict())
    meta["files"].update({"go_trace": "go.trace", "truth": "truth.jsonl"})
    meta["process"] = _truth_header(out / "truth.jsonl")
    if perf:  # perf script needs the binary to name Go and cgo frames
        _finish_perf(perf, out, meta, opt.compress, opt.keep_perf_data)
    if opt.keep_binary:
        meta["files"]["binary"] = "go_hiredis"
    else:
        (out / "go_hiredis").unlink()
    _write_meta(out, meta)
    return meta


def build_c_workload(out: Path) -> Step:
    """Build the C workload (pthreads + libhiredis) into *out*. Frame pointers in our own
    code; libhiredis and libc are Debian's, built without them, as in production."""
    src = WORKLOADS / "c_hiredis" / "client.c"
    argv = [tools.gcc_path(), "-O2", "-g", "-fno-omit-frame-pointer", "-Wall", "-o"]
    argv += [str(out / "c_hiredis"), str(src), "-lhiredis", "-lpthread"]
    return _run(Step("gcc", argv), timeout=300)


def build_cpp_workload(out: Path, stripped: bool = True) -> list[Step]:
    """Build the C++ workload into *out* as C++ services ship: ``g++ -O2 -g`` (no frame
    pointers), then *stripped* (``strip -s``: no .symtab, .eh_frame and .dynsym kept) into
    the binary perf records; the unstripped build stays beside it as ``cpp_hiredis.debug``,
    an oracle for ``addr2line`` that no symbol lookup finds (no debug link, not under
    /usr/lib/debug)."""
    src = WORKLOADS / "cpp_hiredis" / "client.cpp"
    debug, binary = out / "cpp_hiredis.debug", out / "cpp_hiredis"
    gxx = tools.find_tool("g++", "install Debian's g++ (build-essential)")
    argv = [gxx, "-O2", "-g", "-Wall", "-o", str(debug), str(src), "-lhiredis", "-lpthread"]
    steps = [_run(Step("g++", argv), timeout=300)]
    if stripped:
        strip = tools.find_tool("strip", "install Debian's binutils")
        steps.append(_run(Step("strip", [strip, "-s", "-o", str(binary), str(debug)]), 60))
    else:
        shutil.copyfile(debug, binary)
        binary.chmod(0o755)
    return steps


def capture_c(out: Path, opt: COptions) -> dict:
    """A C client (pthreads + hiredis) under ``perf record``: perf and ground truth only."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    meta = _base_meta("c_hiredis", out)
    meta["steps"].append(build_c_workload(out).as_dict())
    return _capture_native(out, opt, "c_hiredis", meta)


def capture_cpp(out: Path, opt: CppOptions) -> dict:
    """The C++ client (std::thread + hiredis, mangled frames, a 32 KiB frame on the way into
    hiredis, stripped) under ``perf record``: perf and ground truth only, plus the
    unstripped binary (``cpp_hiredis.debug``) that the tests name frames with."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    meta = _base_meta("cpp_hiredis", out)
    meta["steps"] += [s.as_dict() for s in build_cpp_workload(out, opt.stripped)]
    meta["build"] = {"stripped": opt.stripped}
    if opt.keep_binary:
        meta["files"]["debug_binary"] = "cpp_hiredis.debug"
    meta = _capture_native(out, opt, "cpp_hiredis", meta)
    if not opt.keep_binary:
        (out / "cpp_hiredis.debug").unlink()
    return meta


def _capture_native(out: Path, opt: COptions, binary: str, meta: dict) -> dict:
    """Run the built native client *binary* (C or C++: the same flags and ground truth)
    under ``perf record`` against redis, and finish *meta*."""
    perf = tools.perf_path() if opt.perf else None
    meta["hiredis"] = tools.hiredis_version()
    truth = out / "truth.jsonl"
    workload = [str(out / binary)]
    for flag, value in (
        ("-threads", opt.threads),
        ("-commands", opt.commands),
        ("-slow-every", opt.slow_every),
        ("-slow-ms", opt.slow_ms),
        ("-decoy-every", opt.decoy_every),
        ("-decoy-ms", opt.decoy_ms),
    ):
        workload += [flag, str(value)]
    workload += ["-truth", str(truth)]
    with _redis(opt.redis_port) as redis:
        meta["redis"] = {"version": redis.version, "port": redis.port}
        workload += ["-port", str(redis.port)]
        workload = _contained(workload, out, opt, meta)
        if perf:
            meta["perf"] = _perf_meta(perf, opt.dwarf)
            meta["perf"]["system_wide"] = opt.system_wide
        if perf and opt.peer_redis:
            workload += ["-start-delay-ms", str(int(PEER_ATTACH_DELAY_S * 1000))]
            steps = _record_with_peers(perf, out, opt.dwarf, workload, truth, [redis.pid()], meta)
            meta["steps"] += [s.as_dict() for s in steps]
        else:
            argv = workload
            if perf:
                record = recorders.perf_record_argv(
                    perf, out / "perf.data", opt.dwarf, system_wide=opt.system_wide
                )
                argv = record + ["--"] + workload
            meta["steps"].append(_run(Step("workload", argv), timeout=600).as_dict())
    meta["files"]["truth"] = "truth.jsonl"
    meta["process"] = _truth_header(truth)
    if perf:  # perf script needs the binary to name our frames
        _finish_perf(perf, out, meta, opt.compress, opt.keep_perf_data)
    if opt.keep_binary:
        meta["files"]["binary"] = binary
    else:
        (out / binary).unlink()
    _write_meta(out, meta)
    return meta


#: With peers, the workload starts first (perf attaches to it and to its peers by pid) and
#: waits this long before its first command, so that perf records every call.
PEER_ATTACH_DELAY_S = 1.0


def _record_with_peers(
    perf: str,
    out: Path,
    dwarf: bool,
    workload: list[str],
    truth: Path,
    peers: list[int],
    meta: dict,
) -> list[Step]:
    """The workload, and perf recording it and its *peers* (redis-server) in one session:
    ``perf record -p WORKLOAD,PEER...``, stopped with SIGINT when the workload is done."""
    truth.unlink(missing_ok=True)
    steps = [Step("workload", workload, start_mono_ns=mono_ns())]
    wl = subprocess.Popen(workload, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pid = _wait_for_pid(truth, wl)
        argv = recorders.perf_record_argv(perf, out / "perf.data", dwarf, pids=[pid, *peers])
        meta["perf"]["peers"] = peers
        steps.append(Step("perf record (service and peers)", argv, start_mono_ns=mono_ns()))
        rec = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, err = wl.communicate(timeout=600)
        steps[0].end_mono_ns, steps[0].returncode, steps[0].stderr = mono_ns(), wl.returncode, err
        rec.send_signal(signal.SIGINT)  # perf writes its file and exits
        _, perr = rec.communicate(timeout=120)
        steps[1].end_mono_ns, steps[1].returncode, steps[1].stderr = mono_ns(), rec.returncode, perr
    finally:
        for p in (wl, locals().get("rec")):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    if wl.returncode != 0:
        raise CaptureError(f"workload failed ({wl.returncode}): {steps[0].stderr[-800:]}")
    if not (out / "perf.data").exists():
        raise CaptureError(f"perf record wrote nothing: {steps[1].stderr[-800:]}")
    return steps


def _contained(workload: list[str], out: Path, opt: CaptureOptions, meta: dict) -> list[str]:
    """*workload* in its own namespaces when *opt* asks (see namespaces.py), with the paths
    under *out* it is given spelled as its mount namespace sees them; says so in *meta*."""
    if not (opt.pid_namespace or opt.mount_namespace):
        return workload
    if opt.peer_redis:
        raise CaptureError("namespaces and --peer-redis: perf -p needs the host pid first")
    meta["namespaces"] = {"pid": opt.pid_namespace, "mount": opt.mount_namespace}
    # a Python capture samples from inside the namespace (py-spy must write before it goes)
    linger = 3 if isinstance(opt, PyOptions) and opt.pid_namespace else 0
    if not opt.mount_namespace:
        return namespaces.container_argv(workload, out, pid=opt.pid_namespace, linger_s=linger)
    namespaces.library_copy(out)
    if opt.image_libc:
        namespaces.library_copy(out, "libc.so.6")
    meta["namespaces"]["mounted_at"] = {namespaces.APP: "."}
    prefix = str(out) + "/"
    inner = [namespaces.inside(out, a) if a.startswith(prefix) else a for a in workload]
    return namespaces.container_argv(inner, out, opt.pid_namespace, True, linger)


@contextmanager
def _nspid_truth(opt: CaptureOptions, meta: dict) -> Iterator[None]:
    """While the workload runs in its own PID namespace, log every namespaced thread's NSpid
    chain into meta["namespaces"]["nspid_truth"] (host tid -> chain): the tests' ground truth
    for thread-id mapping."""
    if not opt.pid_namespace:
        yield
        return
    with namespaces.NSpidLog() as log:
        yield
    meta["namespaces"]["nspid_truth"] = {str(k): v for k, v in sorted(log.chains.items())}


def _with_mmap_pages(argv: list[str], pages: str) -> list[str]:
    """*argv* with perf's ring buffer size (-m) set to *pages* (replacing any given)."""
    out = list(argv)
    if "-m" in out:
        i = out.index("-m")
        del out[i : i + 2]
    return out + ["-m", pages]


@contextmanager
def _redis(port: int | None) -> Iterator[RedisServer]:
    """The server to talk to: a given running one, or a fresh one for this capture."""
    if port is None:
        with RedisServer() as server:
            yield server
    else:
        server = RedisServer(port)
        server.version = (
            recorders.tool_version([server.binary, "--version"]).split("v=")[-1].split()[0]
        )
        yield server


def _truth_header(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        first = json.loads(f.readline())
    if first.get("kind") != "process":
        raise CaptureError(f"{path}: first ground-truth record is not the process header")
    return first


def _wait_for_pid(truth: Path, proc: subprocess.Popen, timeout: float = 30) -> int:
    """The workload's pid, from the first line of its ground truth (written at start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if truth.exists():
            line = truth.read_text(encoding="utf-8").split("\n", 1)[0]
            if line.endswith("}"):
                return int(json.loads(line)["pid"])
        if proc.poll() is not None:
            raise CaptureError(
                f"workload exited ({proc.returncode}) before it started: "
                f"{proc.stderr.read()[-800:] if proc.stderr else ''}"
            )
        time.sleep(0.005)
    raise CaptureError(f"workload did not start within {timeout:.0f}s")


_PYSPY_COUNTS = re.compile(r"Samples: (\d+) Errors: (\d+)")


def _pyspy_counts(stderr: str) -> dict:
    m = _PYSPY_COUNTS.search(stderr)
    return {"samples": int(m.group(1)), "errors": int(m.group(2))} if m else {}


#: How long the Python workload waits after start-up before its first command, so that every
#: py-spy has attached (and loaded native symbols) before anything worth sampling happens.
PY_ATTACH_DELAY_S = 1.0


def capture_py(out: Path, opt: PyOptions) -> dict:
    """redis-py + hiredis under perf, sampled by py-spy in every format at once.

    perf launches the workload; one py-spy per format attaches to its pid (``--pid``) during
    the workload's start-up delay, so all formats sample the same process over the same
    window. py-spy itself is not under perf: tracing its thousands of process_vm_readv calls
    per second with callchains stalled the target for seconds during start-up (measured), and
    its ptrace stops still show in perf on the target's own threads (ERESTART exits,
    prev_state=t switches).
    """
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    unknown = [f for f in opt.formats if f not in recorders.PYSPY_SUFFIX]
    if unknown or not opt.formats:
        raise CaptureError(f"py-spy formats must be among {sorted(recorders.PYSPY_SUFFIX)}")
    pyspy = tools.pyspy_path()
    perf = tools.perf_path() if opt.perf else None
    meta = _base_meta("py_hiredis", out)
    meta["pyspy"] = {
        "version": recorders.tool_version([pyspy, "--version"]),
        "rate": opt.rate,
        "recordings": {},
    }
    truth = out / "truth.jsonl"
    truth.unlink(missing_ok=True)
    workload = [
        sys.executable,
        str(WORKLOADS / "py_hiredis" / "workload.py"),
        "--threads",
        str(opt.threads),
        "--commands",
        str(opt.commands),
        "--slow-every",
        str(opt.slow_every),
        "--slow-ms",
        str(opt.slow_ms),
        "--decoy-every",
        str(opt.decoy_every),
        "--decoy-ms",
        str(opt.decoy_ms),
        "--name-prefix",
        opt.name_prefix,
        "--truth",
        str(truth),
        "--start-delay",
        str(PY_ATTACH_DELAY_S),
        *(["--set-comm"] if opt.set_comm else []),
        *(["--gil-hogs", str(opt.gil_hogs)] if opt.gil_hogs else []),
    ]
    if opt.duration:
        workload += ["--duration", str(opt.duration)]
    with _redis(opt.redis_port) as redis:
        meta["redis"] = {"version": redis.version, "port": redis.port}
        workload += ["--port", str(redis.port)]
        workload = _contained(workload, out, opt, meta)
        argv = workload
        peers = [redis.pid()] if perf and opt.peer_redis else []
        if perf:
            meta["perf"] = _perf_meta(perf, opt.dwarf)
            meta["perf"]["system_wide"] = opt.system_wide
            if not peers:  # perf launches the workload; with peers it attaches by pid
                argv = (
                    recorders.perf_record_argv(
                        perf, out / "perf.data", opt.dwarf, system_wide=opt.system_wide
                    )
                    + ["--"]
                    + workload
                )
        steps = {
            "workload": Step(
                "workload" + (" under perf" if perf else ""), argv, start_mono_ns=mono_ns()
            )
        }
        procs = {
            "workload": subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        }
        nspid_log = _nspid_truth(opt, meta)
        try:
            nspid_log.__enter__()
            pid = ns_pid = _wait_for_pid(truth, procs["workload"])
            if opt.pid_namespace:  # the workload logs its namespace pid
                pid = namespaces.host_pid(procs["workload"].pid, ns_pid)
                meta["namespaces"]["host_pid"] = pid
            if peers:
                a = recorders.perf_record_argv(
                    perf, out / "perf.data", opt.dwarf, pids=[pid, *peers]
                )
                meta["perf"]["peers"] = peers
                steps["perf"] = Step("perf record (service and peers)", a, start_mono_ns=mono_ns())
                procs["perf"] = subprocess.Popen(
                    a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
            for fmt in opt.formats:
                a = recorders.pyspy_record_argv(
                    pyspy,
                    fmt,
                    out / recorders.pyspy_output_name(fmt),
                    pid=ns_pid if opt.pid_namespace else pid,
                    rate=opt.rate,
                    nonblocking=opt.nonblocking,
                )
                if opt.pid_namespace:
                    # py-spy inside the container, as a sidecar would run it: it speaks the
                    # namespace's ids (and --native works there; from the host it fails)
                    a = namespaces.enter(pid, a)
                    meta["namespaces"]["pyspy"] = "inside"
                steps[fmt] = Step(f"py-spy {fmt}", a, start_mono_ns=mono_ns())
                procs[fmt] = subprocess.Popen(
                    a, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
            for name, proc in procs.items():
                if name == "perf":  # recording peers by pid: stopped once the others are done
                    proc.send_signal(signal.SIGINT)
                stdout, err = proc.communicate(timeout=600)
                steps[name].end_mono_ns = mono_ns()
                steps[name].returncode = proc.returncode
                steps[name].stderr = err if err is not None else stdout
        finally:
            nspid_log.__exit__(None, None, None)
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    workload_step = steps.pop("workload")
    meta["steps"].append(workload_step.as_dict())
    perf_step = steps.pop("perf", None)
    if perf_step is not None:
        meta["steps"].append(perf_step.as_dict())
    if workload_step.returncode != 0:
        raise CaptureError(
            f"{workload_step.name} failed ({workload_step.returncode}): "
            f"{workload_step.stderr[-800:]}"
        )
    for fmt, step in steps.items():
        meta["steps"].append(step.as_dict())
        name = recorders.pyspy_output_name(fmt)
        meta["pyspy"]["recordings"][fmt] = {
            "file": name,
            # CLOCK_MONOTONIC just before py-spy was started: an anchor for its relative
            # clock, good to tens of ms (process start-up); alignment checks it.
            "anchor_mono_ns": step.start_mono_ns,
            **_pyspy_counts(step.stderr),
        }
        meta["files"][f"pyspy_{fmt}"] = name
        if step.returncode != 0:
            raise CaptureError(f"{step.name} failed ({step.returncode}): {step.stderr[-800:]}")
    meta["files"]["truth"] = "truth.jsonl"
    meta["process"] = _truth_header(truth)
    if perf:
        _finish_perf(perf, out, meta, opt.compress, opt.keep_perf_data)
    _write_meta(out, meta)
    return meta
