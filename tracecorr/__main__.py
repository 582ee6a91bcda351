"""``python -m tracecorr``: the same as the ``tracecorr`` command."""

from .cli import main

if __name__ == "__main__":  # not when imported (e.g. by a tool inspecting the package)
    main()
