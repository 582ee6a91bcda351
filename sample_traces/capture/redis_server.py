"""A throw-away redis-server on a free loopback port, for captures and tests.

DEBUG SLEEP (our "slow Redis") needs ``--enable-debug-command yes``; persistence is off so a
capture never touches the disk outside its own temporary directory.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from .tools import MissingTool, redis_server_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ping(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """Context manager: ``with RedisServer() as r: r.port``."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.binary = redis_server_path()
        self.proc: subprocess.Popen | None = None
        self._dir: tempfile.TemporaryDirectory | None = None
        self.version = ""

    def start(self) -> RedisServer:
        self._dir = tempfile.TemporaryDirectory(prefix="tracecorr-redis-")
        argv = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--enable-debug-command",
            "yes",
            "--dir",
            self._dir.name,
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not ping(self.port):
            if self.proc.poll() is not None:
                err = (
                    self.proc.stderr.read().decode(errors="replace").strip()
                    if self.proc.stderr
                    else ""
                )
                raise MissingTool(f"redis-server exited at start: {err[-300:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise MissingTool(f"redis-server did not answer PING on port {self.port}")
            time.sleep(0.02)
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True).stdout
        self.version = out.split("v=")[1].split()[0] if "v=" in out else out.strip()
        return self

    def pid(self) -> int:
        """The server's pid (ours, or found by the --port it was started with)."""
        if self.proc is not None:
            return self.proc.pid
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            # redis-server rewrites its title to "redis-server 127.0.0.1:PORT"
            port = str(self.port).encode()
            if b"redis-server" in cmd and (b":" + port in cmd or b" " + port + b" " in cmd + b" "):
                return int(d.name)
        raise MissingTool(f"no redis-server process serves port {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        if self._dir:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
