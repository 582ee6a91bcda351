"""tracecorr parsers: one module per input format, each filling the canonical tables.

See parsers.model for the tables and parsers.detect for which parser reads which file.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tracecorr")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
