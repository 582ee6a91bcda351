"""tracecorr: a trace-correlation profiler for native-call blocking.

The installed package is one namespace; its parts are the pipeline, left to right:

    tracecorr.parsers     one reader per input format -> the canonical tables (on each
                          source's own clock)
    tracecorr.correlator  align (one clock) -> calls -> correlate (blocking records) ->
                          summary; ``correlator.api.analyze`` runs them; ``correlator.render``
                          has one renderer per output (text/Markdown, JSON, HTML, Perfetto)
    tracecorr.capture     recording a live process (perf, the Go trace, py-spy)
    tracecorr.cli         the ``tracecorr`` command: wiring only
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tracecorr")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"
