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

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import compute
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from sn_interp.probes._data import unit_matrix
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
GROUP = 8 * BLOCK  # units computed per dask.compute call (several chunks: all threads busy)
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

    Row 0 is the score, row 1 a non-finite flag, the rest the fitted params. Each block is a
    dask graph over (all samples x ``block`` units) chunks computed with the active scheduler
    (a ``dask.distributed`` client when one exists); consecutive blocks are computed together
    until they hold ``GROUP`` units, so a narrow site still gives every thread a chunk.
    ``block`` defaults to the rule's :attr:`~sn_interp.probes.rules.Rule.block`.
    """
    rule = get_rule(plan.rule)
    block = rule.block if block is None else block
    kwargs = {"labels": plan.y, "folds": plan.folds, "n_classes": plan.n_classes}
    out = {}
    bar = tqdm(total=len(blocks), desc=f"scoring ({plan.rule}, {plan.score})", unit="block",
               disable=not progress)
    group: list[tuple[tuple[str, int], da.Array]] = []
    units = 0
    for i, (site, layer) in enumerate(blocks):
        arr = unit_matrix(acts, site, layer, block)
        stats = arr.map_blocks(rule.score_block, dtype=np.float64, meta=_META,
                               chunks=((plan.n_stats,), arr.chunks[1]), **kwargs)
        group.append(((site, layer), stats))
        units += arr.shape[1]
        if units >= GROUP or i == len(blocks) - 1:  # narrow sites: several per compute call
            results = compute(*[g for _, g in group])
            for (key, _), res in zip(group, results, strict=True):
                out[key] = res
                log.debug("scored %s layer %d: %d units", *key, res.shape[1])
            bar.update(len(group))
            group, units = [], 0
    bar.close()
    _release_buffers()
    return out
