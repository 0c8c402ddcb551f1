"""One module per model family; each defines ``FAMILY`` (:class:`._spec.Family`).

This package's ``__init__`` imports nothing: the registry that lists the families is
:mod:`sn_interp.models.registry`, which imports them (never the reverse).
"""
