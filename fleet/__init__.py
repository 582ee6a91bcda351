"""Past one capture: many captures analysed on Dask into Parquet datasets (``tracecorr
fleet``), and before/after comparisons (``tracecorr diff``).

    task      one capture -> its tables (runs on a Dask worker)
    records   the fixed Arrow schemas of the datasets (blocking, findings, calls)
    dataset   the output directory: Hive-partitioned Parquet and fleet.json
    cluster   the Dask run: submit, retry, collect, write as results arrive
    summary   across captures: top call sites, wakers, findings by kind
    diff      two sides (capture, JSON report or fleet output) compared, schema tracecorr.diff/1
    render    the diff as text and Markdown
"""
