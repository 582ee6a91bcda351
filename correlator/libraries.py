"""What counts as "inside a call into the library": presets (hiredis) and user patterns.

A library is recognised three ways, one per source:

    Go stack     the cgo wrapper frame ``pkg._Cfunc_NAME`` (or ``_C2func_NAME``) at the top of
                 a go.syscall span, with NAME matching the preset's glob (``redis*``) or a user
                 ``--native-call GLOB``
    C callchain  a perf callchain frame in the library's DSO (``libhiredis``) or named like its
                 functions (``redis*``): DWARF callchains reach libhiredis, frame-pointer ones
                 usually stop in libc
    Python stack a py-spy frame of the client's read path (redis-py's hiredis parser and
                 connection) or a native frame in the library
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from dataclasses import dataclass, field

_CGO = re.compile(r"(?:^|\.)_C2?func_(?P<name>\w+)$")


@dataclass(frozen=True)
class Library:
    name: str
    cgo_globs: tuple[str, ...]  # matched against NAME of pkg._Cfunc_NAME
    dso_substrings: tuple[str, ...]  # perf callchain dso
    c_function_globs: tuple[str, ...]  # perf callchain function names
    python_files: tuple[str, ...]  # py-spy frame file suffixes
    python_functions: tuple[str, ...] = ()  # and function names in those files
    python_packages: tuple[str, ...] = ()  # the client's package names (not call sites)
    python_wait_functions: tuple[str, ...] = ()  # its methods that wait on the socket
    reply_globs: tuple[str, ...] = ()  # C functions that return a reply the caller must free
    free_functions: tuple[str, ...] = ()  # ... and the function that frees it
    user_globs: tuple[str, ...] = field(default_factory=tuple)

    def with_user_globs(self, globs: list[str]) -> Library:
        return dataclasses.replace(self, user_globs=tuple(globs))

    def returns_reply(self, c_name: str) -> bool:
        """Does a call of C function *c_name* return a reply to free? (the preset's
        functions, and the user's --native-call patterns, which name wrappers of them)"""
        globs = self.reply_globs + self.user_globs
        return any(fnmatch.fnmatchcase(c_name, g) for g in globs)

    def in_client_package(self, file: str | None) -> bool:
        """Is *file* part of the client package? ('.../site-packages/redis/client.py',
        'redis/client.py'; not '.../py_hiredis/workload.py')."""
        path = "/" + (file or "")
        return any(f"/{pkg}/" in path for pkg in self.python_packages)

    def match_cgo(self, frame_function: str) -> str | None:
        """'preset' or 'user' when a Go frame is a cgo call into the library, else None."""
        m = _CGO.search(frame_function or "")
        if not m:
            return None
        name = m.group("name")
        if any(fnmatch.fnmatchcase(name, g) for g in self.user_globs):
            return "user"
        if any(fnmatch.fnmatchcase(name, g) for g in self.cgo_globs):
            return "preset"
        return None

    def match_python_frame(
        self, function: str, file: str | None, module: str | None, kind: str
    ) -> bool:
        if kind == "c":
            return bool(module and any(s in module for s in self.dso_substrings))
        f = file or ""
        if not any(f.endswith(suffix) for suffix in self.python_files):
            return False
        return not self.python_functions or function.rsplit(".", 1)[-1] in self.python_functions


def cgo_name(frame_function: str) -> str | None:
    m = _CGO.search(frame_function or "")
    return m.group("name") if m else None


HIREDIS = Library(
    name="hiredis",
    cgo_globs=("redis*",),
    dso_substrings=("libhiredis", "hiredis.cpython", "hiredis/hiredis"),
    c_function_globs=("redis*",),
    python_files=(
        "redis/_parsers/hiredis.py",
        "redis/connection.py",
        "redis/asyncio/connection.py",
        "redis/_parsers/base.py",
    ),
    python_functions=(
        "read_response",
        "read_from_socket",
        "_read_from_socket",
        "can_read",
        "send_command",
        "send_packed_command",
        "_send_packed_command",
    ),
    python_packages=("redis",),
    python_wait_functions=("read_from_socket", "_read_from_socket", "can_read"),
    reply_globs=("redisCommand*", "redisvCommand*", "redisGetReply*"),
    free_functions=("freeReplyObject",),
)

PRESETS = {"hiredis": HIREDIS}


def library(name: str, native_calls: list[str] | None = None) -> Library:
    try:
        lib = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown library {name!r} (presets: {', '.join(PRESETS)})") from None
    return lib.with_user_globs(list(native_calls or []))
