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
import threading
from dataclasses import dataclass
from functools import cached_property

import dask
import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from sn_interp.probes._data import unit_matrix
from sn_interp.probes._kernels import TILE, centroid_block_nb, flat_rows

log = logging.getLogger(__name__)

RULES = ("centroid", "threshold")
SCORES = ("probe", "cv")
BLOCK = 8192  # centroid units per dask chunk: (1000 samples x 8192) float32 = 32 MB
THRESHOLD_BLOCK = 2048  # threshold rule: a few (sample x unit) float64/int64 arrays per chunk
GROUP = 8 * BLOCK  # units computed per dask.compute call (several chunks: all threads busy)


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


_local = threading.local()


def _release_buffers() -> None:
    """Drop every thread's scratch arrays (tens of MB per thread) once scoring is done."""
    global _local
    _local = threading.local()


def _buffer(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A per-thread scratch array (reused across blocks: no allocation, no page faults)."""
    size = int(np.prod(shape))
    buf = getattr(_local, name, None)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = np.empty(max(size, 1), dtype)
        setattr(_local, name, buf)
    return buf[:size].reshape(shape)


def _next_up_bits(r: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Bits (int32) of ``np.nextafter(r, +inf)`` for finite or -inf float32 ``r``, into ``out``.

    ``r + 0`` turns -0.0 into +0.0, whose successor is the smallest positive subnormal.
    """
    np.add(r, np.float32(0), out=out.view(np.float32))
    step = _buffer("b_step", r.shape, np.int32)
    np.right_shift(out, 31, out=step)
    np.bitwise_or(step, 1, out=step)  # +1 above zero, -1 (toward zero) below
    np.add(out, step, out=out)
    return out


def _next_up(r: np.ndarray) -> np.ndarray:
    """``np.nextafter(r, +inf)`` for finite or -inf float32 ``r``, by an integer step."""
    return _next_up_bits(r, np.empty(r.shape, np.int32)).view(np.float32)


def _next_down(r: np.ndarray) -> np.ndarray:
    """``np.nextafter(r, -inf)`` for finite or +inf float32 ``r``."""
    return -_next_up(-r)


def _sorted_classes(means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the means sorted ascending and their class indices, (class, neuron) each.

    A stable sort (equal means keep class order), done as an odd-even transposition network
    across the few class rows: a few vector operations per class over all columns at once,
    instead of one tiny sort per column. Returns per-thread scratch arrays.
    """
    n_cls, n = means.shape
    srt = _buffer("b_srt", (n_cls, n), np.float64)
    np.copyto(srt, means)
    order = _buffer("b_order", (n_cls, n), np.int16)
    np.copyto(order, np.arange(n_cls, dtype=np.int16)[:, None])
    half = n_cls // 2
    lo_v, hi_v = _buffer("b_lo_v", (half, n), np.float64), _buffer("b_hi_v", (half, n), np.float64)
    swap, dif = _buffer("b_swap", (half, n), bool), _buffer("b_dif", (half, n), np.int16)
    for rnd in range(n_cls):
        s = rnd % 2
        a, b = srt[s:n_cls - 1:2], srt[s + 1:n_cls:2]  # adjacent pairs (s, s+1), (s+2, s+3), ...
        k = a.shape[0]
        if k == 0:
            continue
        ia, ib = order[s:n_cls - 1:2], order[s + 1:n_cls:2]
        sw, d = swap[:k], dif[:k]
        np.greater(a, b, out=sw)  # strict: equal neighbours never swap, so the sort is stable
        np.minimum(a, b, out=lo_v[:k])
        np.maximum(a, b, out=hi_v[:k])
        a[...] = lo_v[:k]
        b[...] = hi_v[:k]
        np.bitwise_xor(ia, ib, out=d)  # swap the class indices where the values swapped
        np.multiply(d, sw, out=d)
        ia ^= d
        ib ^= d
    return srt, order


def centroid_bounds(means: np.ndarray, out: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Closed float32 intervals ``(lo, hi)``, each (class, neuron), of the centroid rule.

    Args:
        means: float64 class means, (class, neuron).
        out: optional float32 ``(lo, hi)`` arrays to fill (the scoring kernel passes
            per-thread scratch; every temporary here is per-thread scratch too, since fresh
            large arrays cost page faults).
    Returns:
        ``lo``, ``hi``: class ``c`` is predicted for ``x`` iff ``lo[c] <= x <= hi[c]``;
        empty intervals (a class whose mean equals a lower-indexed class's) are ``+inf, -inf``.

    Each boundary between neighbouring distinct sorted means is the float64 midpoint; the
    class above gets the smallest float32 ``>=`` it (``>`` when the class below has the lower
    index and so wins the tie), the class below gets the float32 just under that.
    """
    means = np.asarray(means, np.float64)
    n_cls, n = means.shape
    lo, hi = out if out is not None else (np.empty((n_cls, n), np.float32),
                                          np.empty((n_cls, n), np.float32))
    if n == 0 or n_cls == 0:
        return lo, hi
    srt, order = _sorted_classes(means)
    first = _buffer("b_first", (n_cls, n), bool)  # first (lowest class) of equal means
    first[0] = True
    np.not_equal(srt[1:], srt[:-1], out=first[1:])
    ties = not first.all()
    rep = order  # representative class (the group's first) of each sorted position
    if ties:
        rep = _buffer("b_rep", (n_cls, n), np.int16)
        np.copyto(rep, order)
        for j in range(1, n_cls):
            np.copyto(rep[j], rep[j - 1], where=~first[j])
    m = n_cls - 1
    mid = _buffer("b_mid", (m, n), np.float64)  # boundary below sorted position j+1
    np.add(srt[:-1], srt[1:], out=mid)
    np.divide(mid, 2, out=mid)
    bump, eq = _buffer("b_bump", (m, n), bool), _buffer("b_eq", (m, n), bool)
    np.greater(order[1:], rep[:-1], out=eq)  # strict: on the boundary x goes to the lower class
    r = _buffer("b_r", (m, n), np.float32)
    np.copyto(r, mid, casting="unsafe")  # round to nearest, as astype
    r64 = _buffer("b_r64", (m, n), np.float64)
    np.copyto(r64, r)
    np.logical_and(eq, np.equal(r64, mid, out=bump), out=eq)
    np.logical_or(np.less(r64, mid, out=bump), eq, out=bump)
    lo_s = _buffer("b_lo_s", (n_cls, n), np.float32)
    lo_s[0] = -np.inf
    rb = r.view(np.int32)  # lo_s[1:] = where(bump, next_up(r), r), on the bits (wrapping)
    bb = _next_up_bits(r, lo_s[1:].view(np.int32))
    np.subtract(bb, rb, out=bb)
    np.multiply(bb, bump, out=bb)
    np.add(bb, rb, out=bb)
    hi_s = _buffer("b_hi_s", (n_cls, n), np.float32)
    hi_s[-1] = np.inf
    below = hi_s[:-1]  # largest float32 of the lower side of each boundary: -next_up(-b)
    np.negative(lo_s[1:], out=below)
    _next_up_bits(below, below.view(np.int32))
    np.negative(below, out=below)
    if ties:
        for j in range(n_cls - 2, -1, -1):  # the next group's boundary (skip equal means)
            np.copyto(hi_s[j], hi_s[j + 1], where=~first[j + 1])
        np.copyto(lo_s, np.float32(np.inf), where=~first)
        np.copyto(hi_s, np.float32(-np.inf), where=~first)
    flat = _buffer("b_flat", (n_cls, n), np.intp)
    np.multiply(order, np.intp(n), out=flat)
    np.add(flat, np.arange(n), out=flat)
    np.put(lo, flat, lo_s)
    np.put(hi, flat, hi_s)
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

    @cached_property
    def layout(self) -> _Layout:
        """The (fold, class)-sorted row layout, computed once per plan."""
        perm, seg = self.seg_order()
        inv = np.empty_like(perm)
        inv[perm] = np.arange(len(perm))
        n_seg = self.n_folds * self.n_classes
        starts = np.searchsorted(seg, np.arange(n_seg + 1))
        identity = bool(np.array_equal(perm, np.arange(len(perm))))
        return _Layout(inv, starts, np.bincount(seg, minlength=n_seg), identity)

    @property
    def n_stats(self) -> int:
        c = self.n_classes
        if self.rule == "centroid":
            return 2 + c
        return 2 + (2 if c == 2 else 2 * c)


@dataclass(frozen=True)
class _Layout:
    inv: np.ndarray  # sorted position of each original row
    starts: np.ndarray  # first sorted row of each (fold, class) segment, plus the end
    counts: np.ndarray  # rows per segment
    identity: bool  # rows are already sorted


def _sorted_rows(x: np.ndarray, lay: _Layout) -> np.ndarray:
    """``x`` with rows in (fold, class) order, as float32 in a per-thread buffer.

    Scattering rows to their sorted slots reads ``x`` sequentially (as fast as a read pass);
    gathering ``x[perm]`` would read it in random row order, about 3x slower.
    """
    if lay.identity and x.dtype == np.float32:
        return x
    xs = _buffer("xs", x.shape, np.float32)
    xs[lay.inv] = x
    return xs


def _count_correct(xs: np.ndarray, lo: np.ndarray, hi: np.ndarray, starts: np.ndarray,
                   segs: range, n_classes: int) -> np.ndarray:
    """Rows of segments ``segs`` (contiguous, class-sorted) with ``lo[c] <= x <= hi[c]``."""
    a, b = int(starts[segs.start]), int(starts[segs.stop])
    n, w = b - a, xs.shape[1]
    ok = _buffer("ok", (n, w), bool)
    le = _buffer("le", (n, w), bool)
    for s in segs:
        r0, r1 = int(starts[s]) - a, int(starts[s + 1]) - a
        if r1 > r0:
            c = s % n_classes
            np.greater_equal(xs[a + r0:a + r1], lo[c], out=ok[r0:r1])
            np.less_equal(xs[a + r0:a + r1], hi[c], out=le[r0:r1])
    np.logical_and(ok, le, out=ok)
    total = np.zeros(w, np.int64)
    part = _buffer("part", (w,), np.uint8)
    ok8 = ok.view(np.uint8)
    for r in range(0, n, 255):  # uint8 column sums cannot overflow over 255 rows
        np.add.reduce(ok8[r:r + 255], axis=0, out=part)
        total += part
    return total


def _centroid_block(x: np.ndarray, plan: _Plan) -> np.ndarray:
    lay = plan.layout
    xs = _sorted_rows(np.asarray(x), lay)
    n_seg, c, w = plan.n_folds * plan.n_classes, plan.n_classes, xs.shape[1]
    sums32 = _buffer("sums32", (n_seg, w), np.float32)
    for s in range(n_seg):  # float32, rows added in sample order: as xs[a:b].sum(0)
        np.add.reduce(xs[lay.starts[s]:lay.starts[s + 1]], axis=0, out=sums32[s])
    counts = lay.counts.reshape(plan.n_folds, c)
    class_counts = counts.sum(0).astype(np.float64)
    out = np.empty((plan.n_stats, w))
    means = out[2:]
    if plan.n_folds == 1:  # float64 class sums: the float32 sums, widened exactly
        class_sums = sums32
    else:
        sums = sums32.astype(np.float64).reshape(plan.n_folds, c, w)
        class_sums = sums.sum(0)
    np.divide(class_sums, class_counts[:, None], out=means)
    out[1] = ~np.isfinite(class_sums).all(0)
    bounds = (_buffer("lo", (c, w), np.float32), _buffer("hi", (c, w), np.float32))
    if plan.score == "probe":
        lo, hi = centroid_bounds(means, out=bounds)
        out[0] = _count_correct(xs, lo, hi, lay.starts, range(c), c) / len(plan.y)
        return out
    accs = []
    for f in range(plan.n_folds):
        tr = (class_sums - sums[f]) / (class_counts - counts[f])[:, None]
        lo, hi = centroid_bounds(tr, out=bounds)
        correct = _count_correct(xs, lo, hi, lay.starts, range(f * c, (f + 1) * c), c)
        accs.append(correct / counts[f].sum())
    out[0] = np.mean(accs, axis=0)
    return out


def _centroid_block_compiled(x: np.ndarray, plan: _Plan) -> np.ndarray:
    """:func:`_centroid_block` by the compiled kernel (bit-identical, about 2.5x faster).

    A single-column block goes to the numpy reference: numpy sums one column pairwise, not
    row by row, so only the reference itself reproduces its rounding there.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] < 2:
        return _centroid_block(x, plan)
    out = np.empty((plan.n_stats, x.shape[1]))
    counts = plan.layout.counts.reshape(plan.n_folds, plan.n_classes)
    centroid_block_nb(*flat_rows(x), np.asarray(plan.y, np.int64),
                      np.asarray(plan.fold, np.int64), counts, out, TILE)
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
                 block: int | None = None, progress: bool = True
                 ) -> dict[tuple[str, int], np.ndarray]:
    """Score every unit of each (site, layer) block; returns stats (n_stats, unit) per block.

    Row 0 is the score, row 1 a non-finite flag, the rest the fitted params. Each block is a
    dask graph over (all samples x ``block`` units) chunks computed with the active scheduler
    (a ``dask.distributed`` client when one exists); consecutive blocks are computed together
    until they hold ``GROUP`` units, so a narrow site still gives every thread a chunk.
    """
    kernel = _centroid_block_compiled if plan.rule == "centroid" else _threshold_block
    if block is None:
        block = BLOCK if plan.rule == "centroid" else THRESHOLD_BLOCK
    out = {}
    bar = tqdm(total=len(blocks), desc=f"scoring ({plan.rule}, {plan.score})", unit="block",
               disable=not progress)
    group: list[tuple[tuple[str, int], object]] = []
    units = 0
    for i, (site, layer) in enumerate(blocks):
        arr = unit_matrix(acts, site, layer, block)
        group.append(((site, layer), arr.map_blocks(kernel, plan, dtype=np.float64,
                                                    chunks=((plan.n_stats,), arr.chunks[1]))))
        units += arr.shape[1]
        if units >= GROUP or i == len(blocks) - 1:  # narrow sites: several per compute call
            results = dask.compute(*[g for _, g in group])
            for (key, _), res in zip(group, results, strict=True):
                out[key] = res
                log.debug("scored %s layer %d: %d units", *key, res.shape[1])
            bar.update(len(group))
            group, units = [], 0
    bar.close()
    _release_buffers()
    return out
