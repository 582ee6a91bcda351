"""``python -m tracecorr``: the same as the ``tracecorr`` command."""

from .cli import main

main()
