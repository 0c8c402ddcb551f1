"""Is a selection better than chance after searching every neuron? Is it stable?

:func:`selection_null` reruns the complete Super Neuron selection (same rule, score, ``k``,
sites, ``max_layer``) on probe labels permuted within the probe set, one seeded permutation
per draw (class counts kept), and compares the observed selection with that null
distribution: the best probe score (a max-statistic over every candidate, so the p-value is
family-wise over the whole search) and, given a test split, the held-out accuracy of the top-1
neuron and of the top-``k`` vote.

The permutations share the data: each dask chunk of the activation matrix is loaded once and
scored under every permutation while it is in memory; for the centroid rule each column tile
is also read from memory once for all permutations (:func:`centroid_perm_block_nb`), so 100
permutations cost far less than 100 scoring passes (``benchmarks/null.py``).

:func:`selection_stability` reselects on stratified bootstrap resamples of the probe set and
reports how often each neuron is selected, and the expected Jaccard overlap of two draws.

Example:
    >>> null = sn.selection_null(acts, test_acts, n_perm=200, k=20)   # doctest: +SKIP
    >>> null.attrs["p_test_topk"], null.attrs["null_ceiling_topk"]      # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import xarray as xr
from dask.base import compute
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from sn_interp.names import SITE_ORDER, VISION_SITE
from sn_interp.probes import neurons
from sn_interp.probes._data import class_names_of, probe_labels, unit_matrix, unit_values
from sn_interp.probes._kernels import TILE, centroid_perm_block_nb, flat_rows, perm_group
from sn_interp.probes._selection import majority_vote
from sn_interp.probes.rules import HEAD, Plan, get_rule
from sn_interp.probes.super_neurons import _candidate_blocks, find_super_neurons

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _PermPlans:
    """The plans of every permutation, and their labels/folds/counts stacked for the kernel."""

    plans: tuple
    ys: np.ndarray  # (perm, sample) int64
    folds: np.ndarray  # (perm, sample) int64
    counts: np.ndarray  # (perm, fold, class) int64
    rule: str

    @classmethod
    def make(cls, perms: np.ndarray, n_classes: int, rule: str, score: str, folds: int,
             seed: int) -> _PermPlans:
        plans = tuple(neurons.make_plan(y, n_classes, rule, score, folds, seed) for y in perms)
        counts = np.stack([p.layout.counts.reshape(p.n_folds, n_classes) for p in plans])
        return cls(plans, np.ascontiguousarray(perms, np.int64),
                   np.stack([np.asarray(p.fold, np.int64) for p in plans]),
                   np.ascontiguousarray(counts, np.int64), rule)


def _block_kernel(rule: str):
    """The registered rule's scoring hook as a function of (block, plan)."""
    hook = get_rule(rule).score_block

    def kernel(x: np.ndarray, plan: Plan) -> np.ndarray:
        return hook(x, plan.y, plan.folds, n_classes=plan.n_classes)
    return kernel


def perm_scores(x: Float[np.ndarray, "sample unit"], pp: _PermPlans
                ) -> tuple[Float[np.ndarray, "perm unit"], bool]:
    """(perm, unit) scores of one block under every permutation, and a non-finite flag.

    Equal, per permutation, to row 0 of the rule's one-plan block kernel (tested); the centroid
    rule on blocks of >= 2 columns runs the permutation-batched compiled kernel.
    """
    x = np.asarray(x)
    if pp.rule == "centroid" and x.ndim == 2 and x.shape[1] >= 2:
        scores = np.empty((len(pp.plans), x.shape[1]))
        bad = np.empty(x.shape[1])
        n_folds, n_cls = pp.counts.shape[1:]
        centroid_perm_block_nb(*flat_rows(x), pp.ys, pp.folds, pp.counts, scores, bad, TILE,
                               perm_group(n_folds, n_cls, TILE))
        return scores, bool(bad.any())
    kernel = _block_kernel(pp.rule)  # any other rule: one plan at a time on the loaded chunk
    stats = [kernel(x, plan) for plan in pp.plans]
    return np.stack([s[0] for s in stats]), bool(any(s[1].any() for s in stats))


def top_rows(scores: Float[np.ndarray, "row col"], kk: int) -> Int[np.ndarray, "row kk"]:
    """Per row, the columns of the ``kk`` best scores, best first, ties to the lower column."""
    w = scores.shape[1]
    kth = np.partition(scores, w - kk, axis=1)[:, w - kk]
    out = np.empty((scores.shape[0], kk), np.int64)
    for p in range(scores.shape[0]):
        idx = np.flatnonzero(scores[p] >= kth[p])
        out[p] = idx[np.argsort(-scores[p, idx], kind="stable")[:kk]]
    return out


def _chunk_top(x: np.ndarray, pp: _PermPlans, k: int) -> np.ndarray:
    """One chunk's per-permutation top ``k``: (perm, 2 kk + 1) scores, local units, flag."""
    scores, bad = perm_scores(x, pp)
    kk = min(k, scores.shape[1])
    top = top_rows(scores, kk)
    return np.concatenate([np.take_along_axis(scores, top, 1), top,
                           np.full((len(pp.plans), 1), float(bad))], axis=1)


class _Ranking:
    """Running per-permutation top ``k`` over blocks, ties by (layer, site, unit) as SNs."""

    def __init__(self, n_perm: int, k: int) -> None:
        self.k = k
        self.cols = {c: np.empty((n_perm, 0), t) for c, t in
                     (("score", float), ("layer_key", np.int64), ("site_key", np.int64),
                      ("unit", np.int64), ("block", np.int64))}

    def add(self, block: int, site: str, layer: int, res: np.ndarray, chunks: tuple) -> None:
        starts = np.cumsum((0, *chunks))
        parts = {c: [] for c in self.cols}
        col = 0
        for start, width in zip(starts[:-1], chunks, strict=True):
            kk = min(self.k, width)
            piece = res[:, col:col + 2 * kk + 1]
            if piece[:, -1].any():
                raise ValueError(f"non-finite activations (NaN/inf) in {site} layer {layer}; "
                                 "fix or drop them before computing a selection null")
            parts["score"].append(piece[:, :kk])
            parts["unit"].append(piece[:, kk:2 * kk].astype(np.int64) + start)
            col += 2 * kk + 1
        n_perm = res.shape[0]
        score = np.concatenate(parts["score"], axis=1)
        m = score.shape[1]
        layer_key = layer - 10**6 if site == VISION_SITE.name else layer
        new = {"score": score, "unit": np.concatenate(parts["unit"], axis=1),
               "layer_key": np.full((n_perm, m), layer_key), "block": np.full((n_perm, m), block),
               "site_key": np.full((n_perm, m), SITE_ORDER[site])}
        self._merge(new)

    def _merge(self, new: dict[str, np.ndarray]) -> None:
        cat = {c: np.concatenate([self.cols[c], new[c]], axis=1) for c in self.cols}
        keep = min(self.k, cat["score"].shape[1])
        order = np.stack([np.lexsort((cat["unit"][p], cat["site_key"][p], cat["layer_key"][p],
                                      -cat["score"][p]))[:keep]
                          for p in range(cat["score"].shape[0])])
        self.cols = {c: np.take_along_axis(v, order, 1) for c, v in cat.items()}


def _rank_permutations(acts: xr.Dataset, blocks: list, pp: _PermPlans, k: int,
                       progress: bool) -> _Ranking:
    """Score every block under every permutation (blockwise on dask), keeping each top k."""
    block_w = get_rule(pp.rule).block
    ranking = _Ranking(len(pp.plans), k)
    bar = tqdm(total=len(blocks), desc=f"null ({len(pp.plans)} permutations)", unit="block",
               disable=not progress)
    group, units = [], 0
    for i, (site, layer) in enumerate(blocks):
        arr = unit_matrix(acts, site, layer, block_w)
        widths = tuple(2 * min(k, c) + 1 for c in arr.chunks[1])
        group.append((i, site, layer, arr.chunks[1],
                      arr.map_blocks(_chunk_top, pp, k, dtype=np.float64,
                                     chunks=((len(pp.plans),), widths))))
        units += arr.shape[1]
        if units >= neurons.GROUP or i == len(blocks) - 1:
            results = compute(*[g[-1] for g in group])
            for (b, s, la, chunks, _), res in zip(group, results, strict=True):
                ranking.add(b, s, la, res, chunks)
            bar.update(len(group))
            group, units = [], 0
    bar.close()
    neurons._release_buffers()
    return ranking


# ---- held-out accuracy of each permutation's selection -------------------------------------

def _fit_predict(x_probe: np.ndarray, plan, x_test: np.ndarray) -> np.ndarray:
    """Votes (test sample, voter) of rules fitted on ``x_probe`` (probe, voter) under ``plan``.

    The rule's own block kernel fits the parameters (a single column is doubled, so the
    compiled kernel's summation order applies, as when the voter was scored in its chunk).
    """
    w = x_probe.shape[1]
    xk = np.repeat(x_probe, 2, axis=1) if w == 1 else x_probe
    stats = _block_kernel(plan.rule)(xk, plan)[:, :w]
    return get_rule(plan.rule).predict(x_test, stats[HEAD:], plan.n_classes)


def _gather(acts: xr.Dataset, need: dict[tuple[str, int], np.ndarray]) -> dict:
    return {key: unit_values(acts, *key, units) for key, units in need.items()}


def _null_test_accuracy(acts: xr.Dataset, test_acts: xr.Dataset, blocks: list,
                        ranking: _Ranking, pp: _PermPlans, y_test: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Held-out accuracy of each permutation's top-1 neuron and top-k vote."""
    cols = ranking.cols
    need: dict[tuple[str, int], np.ndarray] = {}
    for b in np.unique(cols["block"]):
        need[blocks[int(b)]] = np.unique(cols["unit"][cols["block"] == b])
    probe_v, test_v = _gather(acts, need), _gather(test_acts, need)
    n_cls = pp.plans[0].n_classes
    top1, topk = np.empty(len(pp.plans)), np.empty(len(pp.plans))
    for p, plan in enumerate(pp.plans):
        idx = [(blocks[int(b)], int(np.searchsorted(need[blocks[int(b)]], u)))
               for b, u in zip(cols["block"][p], cols["unit"][p], strict=True)]
        xp = np.stack([probe_v[key][:, j] for key, j in idx], axis=1)
        xt = np.stack([test_v[key][:, j] for key, j in idx], axis=1)
        votes = _fit_predict(xp, plan, xt)
        top1[p] = np.mean(votes[:, 0] == y_test)
        topk[p] = np.mean(majority_vote(votes, n_cls) == y_test)
    return top1, topk


def _test_labels(test_acts: xr.Dataset, class_names: tuple[str, ...]) -> np.ndarray:
    if "label" not in test_acts.coords:
        raise ValueError("test_acts has no 'label' coordinate: held-out accuracy needs the "
                         "labelled test split")
    y = np.asarray(test_acts["label"].values, np.int64)
    if (y < 0).any() or (y >= len(class_names)).any():
        raise ValueError(f"test_acts labels must lie in 0..{len(class_names) - 1} (the probe "
                         "set's classes); pass the test split of the same task")
    if test_acts.attrs.get("class_names"):
        theirs = class_names_of(test_acts)
        if theirs != class_names:
            raise ValueError(f"test_acts has classes {list(theirs)}, the probe set "
                             f"{list(class_names)}; pass the test split of the same task")
    return y


def p_value(null: Float[np.ndarray, " draw"], observed: float) -> float:
    """Permutation p-value ``(1 + #{null >= observed}) / (1 + n)`` (never 0).

    Example:
        >>> p_value(np.array([0.5, 0.6, 0.9]), 0.8)
        0.5
    """
    null = np.asarray(null, np.float64)
    return float((1 + np.sum(null >= observed)) / (1 + null.size))


def selection_null(acts: xr.Dataset, test_acts: xr.Dataset | None = None, *,
                   n_perm: int = 200, seed: int = 0, k: int = 20, rule: str = "centroid",
                   score: str = "probe", sites: tuple[str, ...] | str | None = None,
                   max_layer: int | None = None, folds: int = 5,
                   progress: bool = True) -> xr.Dataset:
    """The whole Super Neuron search rerun on permuted probe labels: a max-statistic null.

    Args:
        acts: Labelled probe-split activations (as for :func:`find_super_neurons`).
        test_acts: Optional labelled test-split activations of the same task (same sites).
        n_perm: Number of permutations; each permutes the probe labels (class counts kept).
        seed: Seeds the permutations (and, as in ``find_super_neurons``, the CV folds).
        k: Neurons in the vote, as in ``find_super_neurons``.
        rule: Per-neuron rule, as in ``find_super_neurons``.
        score: ``"probe"`` or ``"cv"``, as in ``find_super_neurons``.
        sites: Candidate sites, as in ``find_super_neurons``.
        max_layer: Deepest candidate layer, as in ``find_super_neurons``.
        folds: CV folds of ``score="cv"``, as in ``find_super_neurons``.
        progress: Show a tqdm bar over blocks.

    Returns:
        Dataset over ``perm``: ``best_score`` (best probe score of the permuted search),
        ``best_id``; with ``test_acts`` also ``test_top1`` and ``test_topk`` (held-out
        accuracy of that permutation's best neuron and top-``k`` vote). Attrs: ``observed_*``
        of the real selection, ``p_*`` = ``(1 + #{null >= observed}) / (1 + n_perm)``,
        ``null_ceiling_*`` (95th percentile of the null), and the selection options.

    Example:
        >>> import sn_interp as sn
        >>> vlm = sn.load_model("tiny-llava")
        >>> probe, test = sn.load_task("shapes-color", n=60).split(shots=5, seed=0)
        >>> acts = sn.extract(vlm, probe, progress=False)    # (sample, layer, ...) per site
        >>> test_acts = sn.extract(vlm, test, progress=False)
        >>> null = sn.selection_null(acts, test_acts, n_perm=5, k=3, progress=False)
        >>> 0 < null.attrs["p_best_score"] <= 1               # (1 + #null >= real) / (1 + 5)
        True
    """
    if n_perm < 1:
        raise ValueError(f"n_perm must be >= 1, got {n_perm}")
    y, names = probe_labels(acts)
    found = find_super_neurons(acts, k=k, rule=rule, score=score, sites=sites,
                               max_layer=max_layer, folds=folds, seed=seed, progress=False)
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(y) for _ in range(n_perm)])
    pp = _PermPlans.make(perms, len(names), rule, score, folds, seed)
    blocks = _candidate_blocks(acts, sites, max_layer)
    ranking = _rank_permutations(acts, blocks, pp, k, progress)
    d_head = found.params.get("d_head")
    best_id = [_id(blocks[int(b)], int(u), d_head) for b, u in
               zip(ranking.cols["block"][:, 0], ranking.cols["unit"][:, 0], strict=True)]
    data = {"best_score": ("perm", ranking.cols["score"][:, 0],
                           {"long_name": "best probe score, permuted labels"}),
            "best_id": ("perm", np.array(best_id, str))}
    observed = {"best_score": float(found.table["score"].values[0])}
    if test_acts is not None:
        y_test = _test_labels(test_acts, names)
        top1, topk = _null_test_accuracy(acts, test_acts, blocks, ranking, pp, y_test)
        data["test_top1"] = ("perm", top1, {"long_name": "held-out accuracy of the best "
                                                         "neuron, permuted labels"})
        data["test_topk"] = ("perm", topk, {"long_name": f"held-out top-{k} vote accuracy, "
                                                         "permuted labels"})
        observed["test_top1"] = float(np.mean(found.predict(test_acts, k=1).values == y_test))
        observed["test_topk"] = float(np.mean(found.predict(test_acts).values == y_test))
    attrs = {"n_perm": n_perm, "seed": seed, "k": k, "rule": rule, "score": score,
             "max_layer": -1 if max_layer is None else max_layer, "n_probe": len(y)}
    names_short = {"best_score": "best_score", "test_top1": "top1", "test_topk": "topk"}
    for name, obs in observed.items():
        null = data[name][1]
        attrs[f"observed_{name}"] = obs
        attrs[f"p_{name}"] = p_value(null, obs)
        attrs[f"null_ceiling_{names_short[name]}"] = float(np.percentile(null, 95))
    log.info("selection null (%d permutations): %s", n_perm,
             {a: round(v, 4) for a, v in attrs.items() if a.startswith("p_")})
    return xr.Dataset(data, coords={"perm": np.arange(n_perm)}, attrs=attrs)


def _id(block: tuple[str, int], unit: int, d_head: int | None) -> str:
    from sn_interp.names import neuron_id

    return neuron_id(block[0], block[1], unit, d_head=d_head)
