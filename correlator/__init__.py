"""tracecorr correlator: align sources, find native-call spans, tag blocking, render.

The pipeline reads left to right: parsers -> tables -> align -> correlate -> renderers.
"""
