"""tracecorr parsers: one module per input format, each filling the canonical tables.

See ``model`` for the tables, ``detect`` for which parser reads which file, and ``sources``
for loading a list of inputs (files or capture directories) into parsed sources.
"""
