"""The ``centroid`` rule: 1-D nearest class mean, any number of classes (the default).

Class means are float64 (float32 sums of the float32 values, rows in sample order, divided
by the class count). The rule is the partition of the real line it induces: boundaries are
the float64 midpoints between consecutive distinct sorted means; a value exactly on a
boundary, or classes with equal means, go to the lowest class index (distance ties to the
lowest class). The boundaries are converted exactly to closed float32 intervals
``[lo_c, hi_c]`` per class, so scoring and prediction are two comparisons per value and agree
bit for bit. Table variable: ``centroids`` (neuron, class).

Scoring uses the compiled kernel of :mod:`sn_interp.probes._kernels`; :func:`_centroid_block`
is its numpy reference (bit-identical).

Example:
    >>> import numpy as np
    >>> lo, hi = centroid_bounds(np.array([[0.0], [2.0]]))
    >>> centroid_predict(np.array([[0.9], [1.0], [1.1]], np.float32), lo, hi).ravel().tolist()
    [0, 0, 1]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from jaxtyping import Float, Int

from sn_interp.probes._kernels import NARROW_TILE, centroid_block_nb, flat_rows
from sn_interp.probes.rules._scratch import buffer
from sn_interp.probes.rules.base import HEAD, Layout, Plan, Rule, TableVar, register

if TYPE_CHECKING:
    import xarray as xr


def _next_up_bits(r: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Bits (int32) of ``np.nextafter(r, +inf)`` for finite or -inf float32 ``r``, into ``out``.

    ``r + 0`` turns -0.0 into +0.0, whose successor is the smallest positive subnormal.
    """
    np.add(r, np.float32(0), out=out.view(np.float32))
    step = buffer("b_step", r.shape, np.int32)
    np.right_shift(out, 31, out=step)
    np.bitwise_or(step, 1, out=step)  # +1 above zero, -1 (toward zero) below
    np.add(out, step, out=out)
    return out



def _sorted_classes(means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the means sorted ascending and their class indices, (class, neuron) each.

    A stable sort (equal means keep class order), done as an odd-even transposition network
    across the few class rows: a few vector operations per class over all columns at once,
    instead of one tiny sort per column. Returns per-thread scratch arrays.
    """
    n_cls, n = means.shape
    srt = buffer("b_srt", (n_cls, n), np.float64)
    np.copyto(srt, means)
    order = buffer("b_order", (n_cls, n), np.int16)
    np.copyto(order, np.arange(n_cls, dtype=np.int16)[:, None])
    half = n_cls // 2
    lo_v, hi_v = buffer("b_lo_v", (half, n), np.float64), buffer("b_hi_v", (half, n), np.float64)
    swap, dif = buffer("b_swap", (half, n), bool), buffer("b_dif", (half, n), np.int16)
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


def centroid_bounds(means: Float[np.ndarray, "cls neuron"],
                    out: tuple[Float[np.ndarray, "cls neuron"],
                               Float[np.ndarray, "cls neuron"]] | None = None
                    ) -> tuple[Float[np.ndarray, "cls neuron"], Float[np.ndarray, "cls neuron"]]:
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
    first = buffer("b_first", (n_cls, n), bool)  # first (lowest class) of equal means
    first[0] = True
    np.not_equal(srt[1:], srt[:-1], out=first[1:])
    ties = not first.all()
    rep = order  # representative class (the group's first) of each sorted position
    if ties:
        rep = buffer("b_rep", (n_cls, n), np.int16)
        np.copyto(rep, order)
        for j in range(1, n_cls):
            np.copyto(rep[j], rep[j - 1], where=~first[j])
    m = n_cls - 1
    mid = buffer("b_mid", (m, n), np.float64)  # boundary below sorted position j+1
    np.add(srt[:-1], srt[1:], out=mid)
    np.divide(mid, 2, out=mid)
    bump, eq = buffer("b_bump", (m, n), bool), buffer("b_eq", (m, n), bool)
    np.greater(order[1:], rep[:-1], out=eq)  # strict: on the boundary x goes to the lower class
    r = buffer("b_r", (m, n), np.float32)
    np.copyto(r, mid, casting="unsafe")  # round to nearest, as astype
    r64 = buffer("b_r64", (m, n), np.float64)
    np.copyto(r64, r)
    np.logical_and(eq, np.equal(r64, mid, out=bump), out=eq)
    np.logical_or(np.less(r64, mid, out=bump), eq, out=bump)
    lo_s = buffer("b_lo_s", (n_cls, n), np.float32)
    lo_s[0] = -np.inf
    rb = r.view(np.int32)  # lo_s[1:] = where(bump, next_up(r), r), on the bits (wrapping)
    bb = _next_up_bits(r, lo_s[1:].view(np.int32))
    np.subtract(bb, rb, out=bb)
    np.multiply(bb, bump, out=bb)
    np.add(bb, rb, out=bb)
    hi_s = buffer("b_hi_s", (n_cls, n), np.float32)
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
    flat = buffer("b_flat", (n_cls, n), np.intp)
    np.multiply(order, np.intp(n), out=flat)
    np.add(flat, np.arange(n), out=flat)
    np.put(lo, flat, lo_s)
    np.put(hi, flat, hi_s)
    return lo, hi


def centroid_predict(x: Float[np.ndarray, "sample neuron"], lo: Float[np.ndarray, "cls neuron"],
                     hi: Float[np.ndarray, "cls neuron"]) -> Int[np.ndarray, "sample neuron"]:
    """Class indices (sample, neuron) of float32 values ``x`` under intervals from bounds."""
    x = np.asarray(x, np.float32)
    pred = np.full(x.shape, -1, np.int64)
    for c in range(lo.shape[0]):
        pred[(x >= lo[c]) & (x <= hi[c])] = c
    return pred

def _sorted_rows(x: np.ndarray, lay: Layout) -> np.ndarray:
    """``x`` with rows in (fold, class) order, as float32 in a per-thread buffer.

    Scattering rows to their sorted slots reads ``x`` sequentially (as fast as a read pass);
    gathering ``x[perm]`` would read it in random row order, about 3x slower.
    """
    if lay.identity and x.dtype == np.float32:
        return x
    xs = buffer("xs", x.shape, np.float32)
    xs[lay.inv] = x
    return xs


def _count_correct(xs: np.ndarray, lo: np.ndarray, hi: np.ndarray, starts: np.ndarray,
                   segs: range, n_classes: int) -> np.ndarray:
    """Rows of segments ``segs`` (contiguous, class-sorted) with ``lo[c] <= x <= hi[c]``."""
    a, b = int(starts[segs.start]), int(starts[segs.stop])
    n, w = b - a, xs.shape[1]
    ok = buffer("ok", (n, w), bool)
    le = buffer("le", (n, w), bool)
    for s in segs:
        r0, r1 = int(starts[s]) - a, int(starts[s + 1]) - a
        if r1 > r0:
            c = s % n_classes
            np.greater_equal(xs[a + r0:a + r1], lo[c], out=ok[r0:r1])
            np.less_equal(xs[a + r0:a + r1], hi[c], out=le[r0:r1])
    np.logical_and(ok, le, out=ok)
    total = np.zeros(w, np.int64)
    part = buffer("part", (w,), np.uint8)
    ok8 = ok.view(np.uint8)
    for r in range(0, n, 255):  # uint8 column sums cannot overflow over 255 rows
        np.add.reduce(ok8[r:r + 255], axis=0, out=part)
        total += part
    return total


def _centroid_block(x: np.ndarray, plan: Plan) -> np.ndarray:
    lay = plan.layout
    xs = _sorted_rows(np.asarray(x), lay)
    n_seg, c, w = plan.n_folds * plan.n_classes, plan.n_classes, xs.shape[1]
    sums32 = buffer("sums32", (n_seg, w), np.float32)
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
    bounds = (buffer("lo", (c, w), np.float32), buffer("hi", (c, w), np.float32))
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


def _centroid_block_compiled(x: np.ndarray, plan: Plan) -> np.ndarray:
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
                      np.asarray(plan.fold, np.int64), counts, out, NARROW_TILE)
    return out



@register
class CentroidRule(Rule):
    """1-D nearest class mean (see the module docstring); params: the class means."""

    name = "centroid"
    # (1000 samples x 16384) float32 = 64 MB per chunk: one chunk per (site, layer) of every
    # model up to 16,384 units per site (a 7B model's d_mlp is about 11,000). Measured
    # on 1,000 x 1,000,000 (layers of 10,000 units, two threads): whole calls 2.10x -> 1.91x
    # one read pass with 2 classes and 2.61x -> 2.29x with 10 vs 8,192 (two chunks per
    # layer, a narrow tail; each task costs the scheduler and a concatenation).
    block = 16384

    def n_params(self, n_classes: int) -> int:
        return n_classes

    def fit(self, x: Float[np.ndarray, "sample neuron"], y: Int[np.ndarray, " sample"],
            n_classes: int) -> Float[np.ndarray, "param neuron"]:
        """The class means, exactly as :meth:`score_block` computes them."""
        return self.score_block(x, y, n_classes=n_classes)[HEAD:]

    def predict(self, x: Float[np.ndarray, "sample neuron"],
                params: Float[np.ndarray, "param neuron"],
                n_classes: int) -> Int[np.ndarray, "sample neuron"]:
        lo, hi = centroid_bounds(params)
        return centroid_predict(x, lo, hi)

    def table_vars(self, params: Float[np.ndarray, "param neuron"],
                   n_classes: int) -> dict[str, TableVar]:
        return {"centroids": (("neuron", "class"), params.T, {"long_name": "class mean"})}

    def table_params(self, table: xr.Dataset) -> Float[np.ndarray, "param neuron"]:
        return np.asarray(table["centroids"].values, np.float64).T

    def score_block(self, values: Float[np.ndarray, "sample neuron"],
                    labels: Int[np.ndarray, " sample"],
                    folds: Int[np.ndarray, " sample"] | None = None, *,
                    n_classes: int | None = None) -> Float[np.ndarray, "stat neuron"]:
        """The compiled kernel: stats rows score, non-finite flag, class means."""
        return _centroid_block_compiled(values, Plan.of(labels, folds, n_classes, self.name))
