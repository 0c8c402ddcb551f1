"""Scoring every neuron with a registered rule, blockwise on dask; the fold plan.

The rules themselves (fit, predict, table variables, scoring kernel) live one per module in
:mod:`sn_interp.probes.rules` (``centroid``, ``threshold``, ``interval``); this module assigns
the cross-validation folds (:func:`make_plan`) and maps a rule's
:meth:`~sn_interp.probes.rules.Rule.score_block` over every (site, layer) block
(:func:`score_blocks`).

Scores: ``probe`` is in-sample accuracy; ``cv`` is the mean over stratified k folds
(``StratifiedKFold(folds, shuffle=True, random_state=seed)``) of the held-out fold accuracy.
Activations are scored as float32. Non-finite activations are refused (see
:func:`score_blocks`), never silently masked.

Example:
    >>> import numpy as np
    >>> plan = make_plan(np.array([0, 0, 0, 1, 1, 1]), 2, "centroid", "cv", 3, seed=0)
    >>> plan.n_folds, plan.n_stats, sorted(np.bincount(plan.fold).tolist())
    (3, 4, [2, 2, 2])
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from functools import partial
from typing import cast

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import compute, get_scheduler
from dask.callbacks import Callback
from dask.threaded import get as threaded_get
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from sn_interp.probes._data import n_chunks, unit_chunks, unit_matrix
from sn_interp.probes.rules import Plan, get_rule
from sn_interp.probes.rules._scratch import release as _release_buffers
from sn_interp.probes.rules.centroid import (  # noqa: F401  (the centroid rule's functions)
    _centroid_block,
    _centroid_block_compiled,
    centroid_bounds,
    centroid_predict,
)
from sn_interp.probes.rules.threshold import threshold_fit, threshold_predict  # noqa: F401

log = logging.getLogger(__name__)

SCORES = ("probe", "cv")
BLOCK = get_rule("centroid").block  # centroid units per dask chunk
# Units computed per dask.compute call from a store: several chunks (all threads busy), and
# what one call reads bounded (65,536 units x 1,000 samples float32 = 256 MB).
GROUP = 65536
_Plan = Plan  # the plan's former private name
_META = np.empty((0, 0), np.float64)  # what a block's stats are (dask need not call the rule)


def make_plan(y: Int[np.ndarray, " sample"], n_classes: int, rule: str, score: str,
              folds: int, seed: int) -> Plan:
    """Validate the rule/score choice and assign stratified folds.

    Raises:
        ValueError: a rule that is not registered (the message lists
            :func:`~sn_interp.probes.rules.rule_names`), an unknown score, or too few
            samples per class for ``folds``.
    """
    get_rule(rule)  # an unregistered name fails here, naming the choices
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; choose one of {SCORES}")
    fold = np.zeros(len(y), np.int64)
    if score == "cv":
        from sklearn.model_selection import StratifiedKFold
        smallest = int(np.bincount(y, minlength=n_classes).min())
        if folds < 2 or smallest < folds:
            raise ValueError(f"score='cv' with folds={folds} needs >= 2 folds and at least "
                             f"{folds} probe samples per class (smallest class has {smallest}); "
                             "lower folds= or use score='probe'")
        skf = StratifiedKFold(folds, shuffle=True, random_state=seed)
        for f, (_, te) in enumerate(skf.split(np.zeros(len(y)), y)):
            fold[te] = f
    return Plan(np.asarray(y, np.int64), n_classes, rule, score, fold,
                folds if score == "cv" else 1)


def score_blocks(acts: xr.Dataset, blocks: list[tuple[str, int]], plan: Plan, *,
                 block: int | None = None, progress: bool = True
                 ) -> dict[tuple[str, int], Float[np.ndarray, "stat unit"]]:
    """Score every unit of each (site, layer) block; returns stats (n_stats, unit) per block.

    Row 0 is the score, row 1 a non-finite flag, the rest the fitted params. Each block is
    split into (all samples x ``block`` units) chunks, computed with the active dask
    scheduler (a ``dask.distributed`` client when one exists). Activations in memory are
    one graph of one task per chunk (their views), computed in one call: no barrier
    between blocks, and no array-graph machinery, which costs a third of the kernel's time
    on a million small-chunked neurons. Dask-backed (zarr) activations are dask-array graphs
    computed in calls of about ``GROUP`` units, consecutive blocks together, so a narrow
    site still gives every thread a chunk and what is read stays bounded. ``block``
    defaults to the rule's :attr:`~sn_interp.probes.rules.Rule.block`. The progress bar
    counts chunks.
    """
    rule = get_rule(plan.rule)
    block = rule.block if block is None else block
    kwargs = {"labels": plan.y, "folds": plan.folds, "n_classes": plan.n_classes}
    chunks = {key: unit_chunks(acts, *key, block) for key in blocks}
    bar = tqdm(total=sum(len(c) if c is not None else n_chunks(acts, *key, block)
                         for key, c in chunks.items()),
               unit="chunk", desc=f"scoring ({plan.rule}, {plan.score})", disable=not progress)
    out: dict[tuple[str, int], np.ndarray] = {}
    if all(c is not None for c in chunks.values()):
        _score_in_memory(cast(dict, chunks), partial(rule.score_block, **kwargs), out, bar)
    else:
        _score_dask(acts, blocks, rule, plan, block, kwargs, out, bar)
    bar.close()
    _release_buffers()
    return {key: out[key] for key in blocks}


def _score_in_memory(chunks: dict[tuple[str, int], list[np.ndarray]], fn, out: dict,
                     bar: tqdm) -> None:
    """One task per chunk view, one scheduler call; each block's stats concatenated."""
    name = f"score-{uuid.uuid4().hex}"
    dsk, keys = {}, []
    for b, views in enumerate(chunks.values()):
        for j, view in enumerate(views):
            dsk[name, b, j] = (fn, view)
            keys.append((name, b, j))
    with Callback(posttask=lambda k, *_: bar.update(1)):
        get = cast(Callable[..., list[np.ndarray]], get_scheduler() or threaded_get)
        results = get(dsk, keys)  # the active scheduler's get (a client's), else threads
    at = 0
    for key, views in chunks.items():
        parts = results[at:at + len(views)]
        out[key] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        at += len(views)
    bar.update(bar.total - bar.n)


def _score_dask(acts: xr.Dataset, blocks: list[tuple[str, int]], rule, plan: Plan, block: int,
                kwargs: dict, out: dict, bar: tqdm) -> None:
    """Dask-array graphs per block, computed in calls of about ``GROUP`` units."""
    group: list[tuple[tuple[str, int], da.Array]] = []
    units = 0
    for i, (site, layer) in enumerate(blocks):
        arr = unit_matrix(acts, site, layer, block)
        stats = arr.map_blocks(rule.score_block, dtype=np.float64, meta=_META,
                               chunks=((plan.n_stats,), arr.chunks[1]), **kwargs)
        group.append(((site, layer), stats))
        units += arr.shape[1]
        if units >= GROUP or i == len(blocks) - 1:
            results = compute(*[g for _, g in group])
            for (key, _), res in zip(group, results, strict=True):
                out[key] = res
                log.debug("scored %s layer %d: %d units", *key, res.shape[1])
            bar.update(sum(len(g.chunks[1]) for _, g in group))
            group, units = [], 0
