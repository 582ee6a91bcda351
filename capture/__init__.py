"""Recording a live process: the recorders' command lines (``recorders``) and the
``tracecorr capture`` run that drives them together (``live``).

The sample-capture script (``python -m sample_traces.capture``) builds its recordings from the
same ``recorders``, so a capture made by hand, by the tests and by users is the same capture.
"""
