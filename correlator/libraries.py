"""What counts as "inside a call into the library": presets and user patterns.

The presets are data, one TOML file per library in ``presets/`` (hiredis, libpq,
mysqlclient, librdkafka, libcurl, sqlite3, openssl); a user's own file loads the same way
(``--library-file F``, schema: ``load_file``).

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
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser from PyPI
    import tomli as tomllib  # type: ignore[no-redef]

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
    description: str = ""
    handle_type: str | None = None  # the connection object (redisContext *, PGconn *)
    handle_noun: str = "connection"  # what the findings call one ("context" for hiredis)
    thread_safe: bool = False  # may two threads use one handle at once?

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


#: where the shipped presets live: one TOML file per library (the schema: ``load_file``)
PRESET_DIR = Path(__file__).with_name("presets")


class LibraryFileError(ValueError):
    """A library file that cannot be used: the file, the key, what is wrong."""


#: the keys a library file may have, by table, and their kind: "str", "strs", "bool"
SCHEMA: dict[str, dict[str, str]] = {
    "": {"name": "str", "description": "str"},
    "native": {"dso": "strs", "functions": "strs", "cgo": "strs"},
    "python": {"packages": "strs", "files": "strs", "functions": "strs", "wait_functions": "strs"},
    "handle": {"type": "str", "noun": "str", "thread_safe": "bool"},
    "alloc_free": {"alloc": "strs", "free": "str"},
}


def load_file(path: str | Path) -> Library:
    """A library from its TOML file: ``name``, ``description``; ``[native]`` dso (substrings
    of a DSO path: a vendored copy counts), functions (C function globs), cgo (globs of
    NAME in a Go wrapper ``pkg._Cfunc_NAME``); ``[python]`` packages, files, functions,
    wait_functions (the client's read path); ``[handle]`` type, noun (what a finding calls
    one), thread_safe (whether one handle may be used by two threads: the connection
    findings are raised only when not);
    ``[[alloc_free]]`` alloc (globs of calls that return what the caller frees), free."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise LibraryFileError(f"{path}: {e}") from None
    _check(path, doc)
    native, py, handle = doc.get("native", {}), doc.get("python", {}), doc.get("handle", {})
    pairs = doc.get("alloc_free", [])
    return Library(
        name=doc["name"],
        cgo_globs=tuple(native.get("cgo", ())),
        dso_substrings=tuple(native.get("dso", ())),
        c_function_globs=tuple(native.get("functions", ())),
        python_files=tuple(py.get("files", ())),
        python_functions=tuple(py.get("functions", ())),
        python_packages=tuple(py.get("packages", ())),
        python_wait_functions=tuple(py.get("wait_functions", ())),
        reply_globs=tuple(g for p in pairs for g in p.get("alloc", ())),
        free_functions=tuple(p["free"] for p in pairs if "free" in p),
        description=doc.get("description", ""),
        handle_type=handle.get("type"),
        handle_noun=handle.get("noun", "connection"),
        thread_safe=bool(handle.get("thread_safe", False)),
    )


def _check(path: Path, doc: dict) -> None:
    """Every key known and of its kind, ``name`` and ``[native]`` present."""
    if not isinstance(doc.get("name"), str) or not doc["name"]:
        raise LibraryFileError(f"{path}: name: missing (a string)")
    if "native" not in doc:
        raise LibraryFileError(f"{path}: [native]: missing (dso, functions, cgo)")
    for key, value in doc.items():
        if key in SCHEMA[""]:
            _kind(path, key, value, SCHEMA[""][key])
        elif key == "alloc_free":
            if not isinstance(value, list):
                raise LibraryFileError(f"{path}: alloc_free: an array of tables ([[alloc_free]])")
            for i, pair in enumerate(value):
                _table(path, f"alloc_free[{i}]", pair, SCHEMA["alloc_free"])
        elif key in SCHEMA:
            _table(path, key, value, SCHEMA[key])
        else:
            raise LibraryFileError(f"{path}: {key}: unknown (known: {', '.join(SCHEMA)})")


def _table(path: Path, where: str, table, keys: dict[str, str]) -> None:
    if not isinstance(table, dict):
        raise LibraryFileError(f"{path}: [{where}]: not a table")
    for key, value in table.items():
        if key not in keys:
            raise LibraryFileError(f"{path}: {where}.{key}: unknown (known: {', '.join(keys)})")
        _kind(path, f"{where}.{key}", value, keys[key])


def _kind(path: Path, where: str, value, kind: str) -> None:
    ok = {
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "strs": isinstance(value, list) and all(isinstance(v, str) for v in value),
    }[kind]
    if not ok:
        want = {"str": "a string", "bool": "true or false", "strs": "a list of strings"}[kind]
        raise LibraryFileError(f"{path}: {where}: must be {want}")


PRESETS = {p.stem: load_file(p) for p in sorted(PRESET_DIR.glob("*.toml"))}
HIREDIS = PRESETS["hiredis"]


def library(name: str, native_calls: list[str] | None = None) -> Library:
    """A preset by name, or a library file's (a path ending in .toml: ``load_file``), with
    the user's --native-call patterns."""
    if name in PRESETS:
        lib = PRESETS[name]
    elif name.endswith(".toml"):
        lib = load_file(name)
    else:
        raise ValueError(f"unknown library {name!r} (presets: {', '.join(PRESETS)})")
    return lib.with_user_globs(list(native_calls or []))
