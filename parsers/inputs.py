"""Opening inputs: plain, gzip or zstd, told apart by their magic bytes, never by name."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import BinaryIO

from .errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def compression(head: bytes) -> str | None:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


def open_binary(path: str | Path) -> BinaryIO:
    """A readable binary stream of the (decompressed) content of *path*."""
    path = Path(path)
    try:
        f = open(path, "rb")  # noqa: SIM115 - returned to the caller
    except OSError as exc:
        raise InputError(str(path), f"cannot open: {exc.strerror or exc}") from exc
    head = f.read(4)
    f.seek(0)
    kind = compression(head)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=f, mode="rb")
    if kind == "zstd":
        try:
            import zstandard
        except ImportError as exc:
            f.close()
            raise InputError(
                str(path),
                "zstd-compressed, and the 'zstandard' package is "
                "not installed (pip install zstandard)",
            ) from exc
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(f, closefd=True))
    return f


def read_head(path: str | Path, n: int = 64 * 1024) -> bytes:
    """The first *n* decompressed bytes (for format detection)."""
    try:
        with open_binary(path) as f:
            return f.read(n)
    except (OSError, EOFError) as exc:  # corrupt compressed stream, unreadable file
        raise InputError(str(path), f"cannot read: {exc}") from exc
