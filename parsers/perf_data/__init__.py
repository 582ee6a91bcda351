"""perf.data read natively (work in progress: see parsers/perf_script/perfdata.py for the
`perf script` path used today)."""
