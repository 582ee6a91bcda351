"""Renderers of an Analysis, one per output; they only read the result, nothing here computes.

text.py         text and Markdown reports (``tracecorr report``, ``--markdown``)
json_report.py  the JSON report, schema ``tracecorr.report/1`` (``--json``)
html.py         a self-contained offline HTML timeline (``--html``)
perfetto.py     a Perfetto trace (``--perfetto``)
"""
