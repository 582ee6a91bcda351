"""The one error type parsers raise for bad input.

The CLI prints ``str(error)`` as a single line and exits with code 2; nothing else about a bad
file should ever reach the user as a traceback. The message names the file and, where it
helps, the byte offset or line number.
"""

from __future__ import annotations


class InputError(Exception):
    """Unreadable, unknown or malformed input: ``path[:offset|:line N]: what was wrong``."""

    def __init__(
        self, path: str, message: str, *, offset: int | None = None, line: int | None = None
    ) -> None:
        self.path = str(path)
        self.message = message
        self.offset = offset
        self.line = line
        super().__init__(str(self))

    def __reduce__(self):
        """Pickled by its fields (parsers run in worker processes raise it across)."""
        return (_rebuild, (type(self), self.path, self.message, self.offset, self.line))

    def __str__(self) -> str:
        where = self.path
        if self.offset is not None:
            where += f": offset {self.offset}"
        if self.line is not None:
            where += f": line {self.line}"
        return f"{where}: {self.message}"


class UnknownFormat(InputError):
    """No parser recognises the content."""


def _rebuild(cls: type, path: str, message: str, offset: int | None, line: int | None):
    return cls(path, message, offset=offset, line=line)
