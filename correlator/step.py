"""A step of the pipeline, declared: the function ``Tables -> {field: value}`` and what it
reads and adds, column by column (the columns are those of ``schema.py``).

``reads``: for each Tables field the step looks at, the columns it reads (``()`` for a field
that is not a frame, ``("*",)`` for a frame whose rows it carries on whole). ``adds``: for
each field it sets, the columns it adds to that frame (or, for a new frame, all of them;
``()`` for a field that is not a frame). ``release``: hand the memory its temporaries freed
back to the system before the next step (``parsers.memory.between_steps``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .tables import Tables


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Tables], dict]
    reads: Mapping[str, tuple[str, ...]]
    adds: Mapping[str, tuple[str, ...]]
    release: bool = False
    doc: str = field(default="", compare=False)

    def __call__(self, t: Tables) -> dict:
        return self.run(t)

    @property
    def file(self) -> str:
        """The file that holds it, relative to the repository."""
        path = Path(sys.modules[self.run.__module__].__file__ or "")
        return "/".join(path.parts[-3:]) if path.parent.name == "steps" else path.name


def step(
    reads: Mapping[str, tuple[str, ...]],
    adds: Mapping[str, tuple[str, ...]],
    release: bool = False,
) -> Callable[[Callable[[Tables], dict]], Step]:
    """Declare the decorated function a step (its name is the function's)."""

    def wrap(fn: Callable[[Tables], dict]) -> Step:
        doc = (fn.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        return Step(fn.__name__, fn, dict(reads), dict(adds), release, " ".join(doc.split()))

    return wrap
