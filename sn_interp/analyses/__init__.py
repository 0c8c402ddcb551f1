"""Analyses: every question of the paper as ``python -m sn_interp.analyses.<name>``.

Each module has a frozen ``Config`` (documented fields become ``--help``), a pure
``run(cfg) -> xr.Dataset``, ``tables``, ``figures``, ``plot`` and ``main`` (see ``_common``).
"""
