"""Real captures for tracecorr: workloads run under the real recorders.

``python -m sample_traces.capture go|py -o DIR`` — see ``python -m sample_traces.capture -h``
and sample_traces/README.md.
"""

from .redis_server import RedisServer
from .tools import DEFAULT_GO, GO_VERSIONS, MissingTool
from .workloads import CaptureError, GoOptions, PyOptions, capture_go, capture_py

__all__ = [
    "DEFAULT_GO",
    "GO_VERSIONS",
    "CaptureError",
    "GoOptions",
    "MissingTool",
    "PyOptions",
    "RedisServer",
    "capture_go",
    "capture_py",
]
