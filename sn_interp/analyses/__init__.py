"""Analyses: every question of the paper as ``python -m sn_interp.analyses.<name>``.

The shape every analysis module follows (copy an existing one, e.g. ``early_exit``):

``Config``
    A frozen dataclass subclassing :class:`~sn_interp.analyses._common.StudyConfig`; a
    docstring under each field (it becomes ``--help``); checks in ``__post_init__``.
``load(cfg) -> _data.Loaded``
    **The IO stage**, named and outside the computation: loads each model once, draws the
    splits, and extracts or opens the activation stores each (model, task) cell needs
    (usually ``_data.load_cells(cfg, load_cell)`` with a ``load_cell(cfg, vlm, task)``).
``cell(cfg, vlm, inputs) -> xr.Dataset``
    One (model, task) cell computed from its loaded inputs: a Dataset over the analysis's
    own dims (documented in the module docstring), without ``model`` / ``task``.
``run(cfg, loaded=None) -> xr.Dataset``
    Pure given ``loaded``: every cell, joined by the one shared
    :func:`~sn_interp.analyses._result.combine_cells` into the result over ``model``,
    ``task`` and the cells' dims (comparisons across cells are merged in as ``extra``).
    ``run(cfg)`` without ``loaded`` loads first (a convenience for notebooks).
``HEADLINE``
    A tuple of :class:`~sn_interp.analyses._result.Headline` columns the analysis gives the
    report's headline table (``report`` reads them; adding an analysis never edits it).
``tables(result)``, ``figures(result)``, ``plot(result, ax=None)``
    Dicts of DataFrames / Figures written by ``main``; one Axes-level figure.
``main = make_main(ANALYSIS, Config, run, tables, figures, load=load)``
    The command line (``--config study.toml`` or flags). ``execute`` writes ``config.json``,
    then ``result.nc`` (reused unless ``--overwrite``: then neither ``load`` nor ``run``
    runs), tables (CSV + Markdown) and figures (PNG + PDF); ``extras=`` writes other outputs.

Shared modules: ``_common`` (configs, CLI, outputs, stage reuse), ``_data`` (the load stage:
models, tasks, splits, stores, the shared SN selection call), ``_result`` (cells -> result,
headline columns), ``_overlap`` (Jaccard / Spearman overlap of two selections).

Example:
    >>> from sn_interp.analyses.report import ANALYSES
    >>> "early_exit" in ANALYSES and "find_super_neurons" in ANALYSES
    True
"""
