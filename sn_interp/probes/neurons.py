"""Single-scalar classification rules and their vectorised, blockwise scoring.

Two rules, each fitted per neuron on the probe split (DESIGN section 5):

``centroid``
    1-D nearest class mean, any number of classes. Class means are float64. The rule is the
    partition of the real line it induces: boundaries are the float64 midpoints between
    consecutive distinct sorted means; a value exactly on a boundary, or classes with equal
    means, go to the lowest class index (distance ties to the lowest class). The boundaries
    are converted exactly to closed float32 intervals ``[lo_c, hi_c]`` per class, so scoring
    and prediction are two comparisons per value and agree bit for bit.
``threshold``
    Binary tasks: one threshold ``t`` and a polarity ``p`` (+1 or -1); the prediction is
    class 1 iff ``p * (x - t) > 0``. ``t`` is the float64 midpoint between two consecutive
    distinct probe values (or -inf/+inf); the best split maximises probe accuracy, ties going
    to polarity +1 and then to the lowest threshold. More than two classes: one-vs-rest, one
    binary rule per class ``c`` fitted on ``y == c``, and the prediction is the class with the
    largest margin ``p_c * (x - t_c)`` (ties to the lowest class index).

Scores: ``probe`` is in-sample accuracy; ``cv`` is the mean over stratified k folds
(``StratifiedKFold(folds, shuffle=True, random_state=seed)``) of the held-out fold accuracy.
Activations are scored as float32. Non-finite activations are refused (see
:func:`score_blocks`), never silently masked.

Example:
    >>> import numpy as np
    >>> lo, hi = centroid_bounds(np.array([[0.0], [2.0]]))
    >>> centroid_predict(np.array([[0.9], [1.0], [1.1]], np.float32), lo, hi).ravel().tolist()
    [0, 0, 1]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dask
import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from sn_interp.probes._data import unit_matrix

log = logging.getLogger(__name__)

RULES = ("centroid", "threshold")
SCORES = ("probe", "cv")
BLOCK = 2048  # units per block: (1000 samples x 2048) float32 = 8 MB, fits in L3


def _f32_at_least(v: np.ndarray, strict: bool) -> np.ndarray:
    """Smallest float32 ``>= v`` (``> v`` if strict), elementwise, for float64 ``v``."""
    r = v.astype(np.float32)
    bump = (r.astype(np.float64) <= v) if strict else (r.astype(np.float64) < v)
    return np.where(bump, np.nextafter(r, np.float32(np.inf)), r)


def _f32_at_most(v: np.ndarray, strict: bool) -> np.ndarray:
    """Largest float32 ``<= v`` (``< v`` if strict), elementwise, for float64 ``v``."""
    r = v.astype(np.float32)
    bump = (r.astype(np.float64) >= v) if strict else (r.astype(np.float64) > v)
    return np.where(bump, np.nextafter(r, np.float32(-np.inf)), r)


def centroid_bounds(means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed float32 intervals ``(lo, hi)``, each (class, neuron), of the centroid rule.

    Args:
        means: float64 class means, (class, neuron).
    Returns:
        ``lo``, ``hi``: class ``c`` is predicted for ``x`` iff ``lo[c] <= x <= hi[c]``;
        empty intervals (a class whose mean equals a lower-indexed class's) are ``+inf, -inf``.
    """
    means = np.asarray(means, np.float64)
    n_cls, n = means.shape
    order = np.argsort(means, axis=0, kind="stable")  # equal means: lower class first
    srt = np.take_along_axis(means, order, 0)
    lo = np.full((n_cls, n), np.inf, np.float32)
    hi = np.full((n_cls, n), -np.inf, np.float32)
    cols = np.arange(n)
    prev_v, prev_c = np.full(n, np.nan), np.full(n, -1)
    first = np.ones((n_cls, n), bool)
    first[1:] = srt[1:] != srt[:-1]  # the first of each group of equal means represents it
    lo_all = np.full((n_cls, n), -np.inf, np.float32)
    for j in range(n_cls):  # lower bounds, from the previous distinct mean
        o = order[j]
        has = prev_c >= 0
        mid = (prev_v + srt[j]) / 2
        strict = o > prev_c  # on the boundary x goes to the lower class index
        bound = np.where(strict, _f32_at_least(mid, True), _f32_at_least(mid, False))
        lo_all[j] = np.where(has, bound, -np.inf)
        prev_v = np.where(first[j], srt[j], prev_v)
        prev_c = np.where(first[j], o, prev_c)
    next_v, next_c = np.full(n, np.nan), np.full(n, -1)
    for j in range(n_cls - 1, -1, -1):  # upper bounds, from the next distinct mean
        o = order[j]
        has = next_c >= 0
        mid = (srt[j] + next_v) / 2
        strict = o > next_c
        bound = np.where(strict, _f32_at_most(mid, True), _f32_at_most(mid, False))
        up = np.where(has, bound, np.inf).astype(np.float32)
        lo[o, cols] = np.where(first[j], lo_all[j], np.inf)
        hi[o, cols] = np.where(first[j], up, -np.inf)
        if j > 0:
            nxt = first[j]
            next_v = np.where(nxt, srt[j], next_v)
            next_c = np.where(nxt, o, next_c)
    return lo, hi


def centroid_predict(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Class indices (sample, neuron) of float32 values ``x`` under intervals from bounds."""
    x = np.asarray(x, np.float32)
    pred = np.full(x.shape, -1, np.int64)
    for c in range(lo.shape[0]):
        pred[(x >= lo[c]) & (x <= hi[c])] = c
    return pred


def _fit_binary(x: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best (threshold, polarity) per column of float64 ``x`` (n, neuron) for ``pos`` labels."""
    n, m = x.shape
    idx = np.argsort(x, axis=0, kind="stable")
    xs = np.take_along_axis(x, idx, 0)
    cum = np.zeros((n + 1, m), np.int64)
    np.cumsum(pos[idx], axis=0, out=cum[1:])  # positives among the j smallest
    below = np.arange(n + 1)[:, None]
    correct = (below - cum) + (int(pos.sum()) - cum)  # polarity +1, split after j values
    valid = np.ones((n + 1, m), bool)
    valid[1:n] = xs[1:] > xs[:-1]
    cand = np.concatenate([np.where(valid, correct, -1), np.where(valid, n - correct, -1)])
    best = np.argmax(cand, axis=0)
    pol = np.where(best <= n, 1, -1).astype(np.int8)
    j = best % (n + 1)
    cols = np.arange(m)
    low = xs[np.clip(j - 1, 0, n - 1), cols]
    high = xs[np.clip(j, 0, n - 1), cols]
    t = np.where(j == 0, -np.inf, np.where(j == n, np.inf, (low + high) / 2))
    return t, pol


def threshold_fit(x: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Fit the threshold rule: (neuron,) params if binary, else (class, neuron) one-vs-rest."""
    x = np.asarray(x, np.float32).astype(np.float64)
    if n_classes == 2:
        return _fit_binary(x, y == 1)
    fits = [_fit_binary(x, y == c) for c in range(n_classes)]
    return np.stack([f[0] for f in fits]), np.stack([f[1] for f in fits])


def threshold_predict(x: np.ndarray, t: np.ndarray, pol: np.ndarray) -> np.ndarray:
    """Class indices (sample, neuron) under fitted threshold params (see module docstring)."""
    x = np.asarray(x, np.float32).astype(np.float64)
    if t.ndim == 1:
        return (pol * (x - t) > 0).astype(np.int64)
    margins = np.stack([pol[c] * (x - t[c]) for c in range(t.shape[0])])
    return np.argmax(margins, axis=0).astype(np.int64)


@dataclass(frozen=True)
class _Plan:
    """What every block needs: labels, class count, fold ids, the class-sorted row order."""

    y: np.ndarray
    n_classes: int
    rule: str
    score: str
    fold: np.ndarray  # fold id per sample (all 0 for score="probe")
    n_folds: int

    def seg_order(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows sorted by (fold, class) and the (fold*C + class) segment of each sorted row."""
        seg = self.fold * self.n_classes + self.y
        perm = np.argsort(seg, kind="stable")
        return perm, seg[perm]

    @property
    def n_stats(self) -> int:
        c = self.n_classes
        if self.rule == "centroid":
            return 2 + c
        return 2 + (2 if c == 2 else 2 * c)


def _centroid_counts(xs: np.ndarray, seg: np.ndarray, means: np.ndarray, segs: list[int],
                     n_classes: int) -> np.ndarray:
    """Correctly classified rows per neuron among the segments ``segs`` (class-sorted rows)."""
    lo, hi = centroid_bounds(means)
    starts = np.searchsorted(seg, np.arange(seg.max() + 2))
    total = np.zeros(xs.shape[1], np.int64)
    for s in segs:
        rows = xs[starts[s]:starts[s + 1]]
        if len(rows):
            c = s % n_classes
            total += np.count_nonzero((rows >= lo[c]) & (rows <= hi[c]), axis=0)
    return total


def _centroid_block(x: np.ndarray, plan: _Plan) -> np.ndarray:
    x = np.asarray(x, np.float32)
    perm, seg = plan.seg_order()
    xs = x if np.array_equal(perm, np.arange(len(perm))) else x[perm]
    n_seg, c = plan.n_folds * plan.n_classes, plan.n_classes
    bounds = np.searchsorted(seg, np.arange(n_seg + 1))  # rows are sorted by segment
    sums = np.stack([xs[a:b].sum(0) for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    sums = sums.astype(np.float64).reshape(plan.n_folds, c, -1)
    counts = np.bincount(seg, minlength=n_seg).reshape(plan.n_folds, c)
    class_sums, class_counts = sums.sum(0), counts.sum(0)
    means = class_sums / class_counts[:, None]
    out = np.empty((plan.n_stats, x.shape[1]))
    out[1] = ~np.isfinite(class_sums).all(0)
    out[2:] = means
    if plan.score == "probe":
        out[0] = _centroid_counts(xs, seg, means, list(range(c)), c) / len(seg)
        return out
    accs = []
    for f in range(plan.n_folds):
        tr = (class_sums - sums[f]) / (class_counts - counts[f])[:, None]
        correct = _centroid_counts(xs, seg, tr, list(range(f * c, (f + 1) * c)), c)
        accs.append(correct / counts[f].sum())
    out[0] = np.mean(accs, axis=0)
    return out


def _threshold_block(x: np.ndarray, plan: _Plan) -> np.ndarray:
    x = np.asarray(x, np.float32)
    out = np.empty((plan.n_stats, x.shape[1]))
    bad = ~np.isfinite(x).all(0)
    out[1] = bad
    x = np.where(bad, 0, x)
    t, pol = threshold_fit(x, plan.y, plan.n_classes)
    half = (plan.n_stats - 2) // 2
    out[2:2 + half] = t.reshape(half, -1)
    out[2 + half:] = pol.reshape(half, -1)
    if plan.score == "probe":
        out[0] = (threshold_predict(x, t, pol) == plan.y[:, None]).mean(0)
        return out
    accs = []
    for f in range(plan.n_folds):
        te = plan.fold == f
        tf, pf = threshold_fit(x[~te], plan.y[~te], plan.n_classes)
        accs.append((threshold_predict(x[te], tf, pf) == plan.y[te, None]).mean(0))
    out[0] = np.mean(accs, axis=0)
    return out


def make_plan(y: np.ndarray, n_classes: int, rule: str, score: str, folds: int,
              seed: int) -> _Plan:
    """Validate the rule/score choice and assign stratified folds."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {RULES}")
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
    return _Plan(y, n_classes, rule, score, fold, folds if score == "cv" else 1)


def score_blocks(acts: xr.Dataset, blocks: list[tuple[str, int]], plan: _Plan, *,
                 block: int = BLOCK, progress: bool = True) -> dict[tuple[str, int], np.ndarray]:
    """Score every unit of each (site, layer) block; returns stats (n_stats, unit) per block.

    Row 0 is the score, row 1 a non-finite flag, the rest the fitted params. Each block is a
    dask graph over (all samples x ``block`` units) chunks computed with the active scheduler
    (a ``dask.distributed`` client when one exists).
    """
    kernel = _centroid_block if plan.rule == "centroid" else _threshold_block
    out = {}
    for site, layer in tqdm(blocks, desc=f"scoring ({plan.rule}, {plan.score})",
                            unit="block", disable=not progress):
        arr = unit_matrix(acts, site, layer, block)
        stats = arr.map_blocks(kernel, plan, dtype=np.float64,
                               chunks=((plan.n_stats,), arr.chunks[1]))
        (out[site, layer],) = dask.compute(stats)
        log.debug("scored %s layer %d: %d units", site, layer, arr.shape[1])
    return out
