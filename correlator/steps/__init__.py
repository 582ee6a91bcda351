"""The correlator's steps, one file each, in pipeline order (see ``correlator/pipeline.py``).

Each file holds one step, declared with ``step.step``: a function ``Tables -> {field: value}``
with the columns it reads and adds (``schema.py``)."""
