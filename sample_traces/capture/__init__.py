"""Real captures for tracecorr: workloads run under the real recorders.

``python -m sample_traces.capture go|py|c -o DIR`` — see ``python -m sample_traces.capture -h``
and sample_traces/README.md.
"""

from .redis_server import RedisServer
from .tools import DEFAULT_GO, GO_VERSIONS, MissingTool
from .workloads import (
    CaptureError,
    COptions,
    GoOptions,
    PyOptions,
    capture_c,
    capture_go,
    capture_py,
)

__all__ = [
    "DEFAULT_GO",
    "GO_VERSIONS",
    "COptions",
    "CaptureError",
    "GoOptions",
    "MissingTool",
    "PyOptions",
    "RedisServer",
    "capture_c",
    "capture_go",
    "capture_py",
]
