"""Compiled (numba) threshold scoring: one sort per neuron, shared by classes and CV folds.

The numpy reference is the generic :meth:`Rule.score_block` of the ``threshold`` rule
(:func:`~sn_interp.probes.rules.threshold.threshold_fit` on all samples and on each fold's
training samples, :func:`~sn_interp.probes.rules.threshold.threshold_predict`, accuracies
averaged over folds); these kernels return bit-identical stats.

Per tile of ``TILE`` units:

1. Each value becomes a 64-bit sort key: the float32 value widened exactly (numpy's
   transposing cast copy of the tile, then one contiguous compiled pass per unit: -0.0 as
   +0.0, a non-finite column as zeros, as the reference does), with the sample's fold and
   class written into the 29 low mantissa bits that widening leaves zero. That moves the
   value by less than one float32 step, so keys sort as the values do, and masking the bits
   gives the value. ``np.sort`` sorts every unit's keys, the only sort: as float64, or as
   int64 with a negative value's magnitude bits flipped so that the keys order as signed
   integers as the values do, whichever numpy's SIMD sort does faster on this CPU (int64 14%
   faster on an AMD Zen 5, float64 25% faster on an Intel Xeon; :func:`_float_sort_faster`).
2. For class ``c``, ``g(j) = j - 2 * (class-c samples among the j smallest)`` is the
   polarity +1 correct count minus the class size; it rises on other samples and falls on
   class-c ones, so its first maximum over valid splits (between distinct values) is at the
   start of a tie group holding a class-c sample (or at ``n``) and its first minimum
   (polarity -1) at the end of one (or at 0). Without ties (almost every unit of real
   activations), one pass writes each class's split indices into a bucket (class 1's only
   for two classes), and per class one vectorised pass takes the first maximum and minimum of
   ``g`` over its bucket (the value and the position packed in one int64). With ties, one
   scan of the tie groups proposes the candidates, O(samples + classes). The reference's tie
   rules (polarity +1 first, then the lowest split) are kept by strict comparisons in split
   order. A CV fold's fit is the same on the samples outside the fold, so the folds share
   the sort; without ties it reads the unit's class buckets, each sample's split index and
   rank among the fold's training samples from running counts of every fold packed in one
   int64 (:func:`_cv_buckets`), so no fold rebuilds the buckets. The in-sample accuracy of a
   binary rule is its split's correct count (the threshold, the midpoint of the split's
   neighbours, lies strictly between them).
3. Accuracy counts the predictions exactly as ``threshold_predict`` computes them (float64
   ``pol * (x - t)``; the largest margin, ties to the lowest class). The margin of a
   polarity +1 class rises with ``x`` and falls with ``t`` (-1: the reverse), so unless two
   thresholds are within rounding of each other (checked; then every sample is evaluated)
   the prediction along the sorted values is: the best -1 class, then (on exact margin
   ties) the lower of the two, then the best +1 class. Two binary searches find the
   switches and the accuracy is a count of labels per range. A CV fold's held-out accuracy
   counts the fold's samples in the same ranges of the whole sorted unit (one vectorised pass
   over ``fold * classes + class`` codes), so the samples are never regrouped by fold.

The kernels release the GIL and are single threaded (dask's threads run one block each);
``cache=True`` stores the compiled code in ``__pycache__``.
"""

from __future__ import annotations

import statistics
import threading
import time

import numpy as np
from numba import njit

TILE = 256  # units per tile: 256 x 1000 samples x 8 bytes = 2 MB of keys
STAGE_PAD = 16  # float32 padding of each staged row (1,088-byte rows, not a 4 KB multiple)
PAY_BITS = 29  # float64 mantissa bits below a widened float32's
_PAY = np.int64((1 << PAY_BITS) - 1)
_VAL64 = np.int64(~((1 << PAY_BITS) - 1))
_MAG64 = np.int64(0x7FFFFFFFFFFFFFFF)
_EXP64 = np.int64(0x7FF0000000000000)


@njit(cache=True, nogil=True)
def _finish_keys(keys, tw, n, payload, bad, float_keys):
    """Widened values (float64 bits, ``keys[:tw]``) -> sort keys, in place, one contiguous
    pass per unit: -0.0 as +0.0; the low bits replaced by the fold and class payload; a unit
    holding a non-finite value (``bad``) as zeros (as the reference). ``float_keys``: the
    keys are sorted as float64 (the payload moves a value by less than a float32 step, and
    +0.0 with a payload is a positive subnormal, below every widened float32); else as int64,
    a negative value's magnitude bits flipped so that the keys order as signed integers as
    the values do."""
    kv = keys.view(np.float64)
    for u in range(tw):
        for i in range(n):
            kv[u, i] += 0.0  # -0.0 -> +0.0
        b = False
        if float_keys:
            for i in range(n):
                k = keys[u, i]
                b |= (k & _EXP64) == _EXP64
                keys[u, i] = (k & _VAL64) | payload[i]
        else:
            for i in range(n):
                k = keys[u, i]
                b |= (k & _EXP64) == _EXP64
                keys[u, i] = ((k ^ ((k >> 63) & _MAG64)) & _VAL64) | payload[i]
        bad[u] = b
        if b:
            for i in range(n):
                keys[u, i] = payload[i]


@njit(cache=True, nogil=True)
def _fit(vb, xs, lab, fo, n, skip, n_cls, total, t_out, pol_out, w, fw):
    """Best (threshold, polarity) of every class on the sorted samples not in fold ``skip``.

    ``vb`` are the values' bits (equal values, equal bits), ``xs`` the values; ``total`` the
    class sizes of those samples; ``w`` int64 scratch (9, n_cls), ``fw`` float64 (4, n_cls).
    """
    cnt, grp, touched = w[0], w[1], w[2]
    bplus, jplus, bminus, jminus = w[3], w[4], w[5], w[6]
    lowp, highp, lowm, highm = fw[0], fw[1], fw[2], fw[3]
    n_tr = 0
    for c in range(n_cls):
        cnt[c] = 0
        grp[c] = 0
        bplus[c] = -2 * n - 2  # below any g
        bminus[c] = 0  # the split before every value (j = 0)
        jminus[c] = 0
        n_tr += total[c]
    ntouched = 0
    j = 0
    gs = 0
    cur = np.int64(0)
    started = False
    prev = 0.0
    val = 0.0
    for p in range(n):
        if skip >= 0 and fo[p] == skip:  # (``fo`` is not written when every sample trains)
            continue
        h = vb[p]
        c = lab[p]
        if not started or h != cur:  # a new tie group starts at split j
            x = xs[p]
            for k in range(ntouched):
                c2 = touched[k]
                g = j - 2 * cnt[c2]
                if g < bminus[c2]:
                    bminus[c2], jminus[c2], lowm[c2], highm[c2] = g, j, val, x
                grp[c2] = 0
            ntouched = 0
            prev, val, cur, gs, started = val, x, h, j, True
        g = gs - 2 * (cnt[c] - grp[c])
        up = g > bplus[c]
        bplus[c] = g if up else bplus[c]
        jplus[c] = gs if up else jplus[c]
        lowp[c] = prev if up else lowp[c]
        highp[c] = val if up else highp[c]
        if grp[c] == 0:
            touched[ntouched] = c
            ntouched += 1
        grp[c] += 1
        cnt[c] += 1
        j += 1
    for k in range(ntouched):
        c2 = touched[k]
        g = j - 2 * cnt[c2]
        if g < bminus[c2]:
            bminus[c2], jminus[c2] = g, j
        grp[c2] = 0
    for c in range(n_cls):
        g = n_tr - 2 * total[c]
        if g > bplus[c]:
            bplus[c], jplus[c] = g, n_tr
        if bplus[c] + total[c] >= n_tr - (bminus[c] + total[c]):
            pol_out[c], jj, lo, hi = 1.0, jplus[c], lowp[c], highp[c]
        else:
            pol_out[c], jj, lo, hi = -1.0, jminus[c], lowm[c], highm[c]
        if jj == 0:
            t_out[c] = -np.inf
        elif jj == n_tr:
            t_out[c] = np.inf
        else:
            t_out[c] = (lo + hi) / 2


@njit(cache=True, nogil=True)
def _count(cd, a, b, code):
    """Samples in ``[a, b)`` whose code (class, or fold * classes + class) is ``code``."""
    v = cd[a:b]  # a slice: indices from 0, so the loop vectorises (no gather)
    k = 0
    for p in range(b - a):
        k += v[p] == code
    return k


@njit(cache=True, nogil=True)
def _first(xs, a, b, t, pol, strict):
    """First index in ``[a, b)`` of sorted ``xs`` with ``pol * (x - t) > 0`` (``>= 0``)."""
    lo, hi = a, b
    while lo < hi:
        mid = (lo + hi) // 2
        m = pol * (xs[mid] - t)
        if (m > 0) if strict else (m >= 0):
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(cache=True, nogil=True)
def _first_ge(xs, a, b, tp, tm, strict):
    """First index with ``(x - tp) > -(x - tm)`` (``>=``): the +1 margin wins (or ties)."""
    lo, hi = a, b
    while lo < hi:
        mid = (lo + hi) // 2
        mp, mm = xs[mid] - tp, -(xs[mid] - tm)
        if (mp > mm) if strict else (mp >= mm):
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(cache=True, nogil=True)
def _predict(x, t, pol, n_cls):
    """``argmax_c pol_c * (x - t_c)`` (the first maximum), as ``threshold_predict``."""
    best = pol[0] * (x - t[0])
    cls = 0
    for c in range(1, n_cls):
        m = pol[c] * (x - t[c])
        if m > best:
            best, cls = m, c
    return cls


@njit(cache=True, nogil=True)
def _well_separated(t1, t2, xlo, xhi):
    """No rounding can make ``x - t1`` and ``x - t2`` equal for x in [xlo, xhi] (t1 != t2)."""
    big = max(abs(xlo - t1), abs(xhi - t1), abs(xlo - t2), abs(xhi - t2))
    return abs(t2 - t1) > big * 2.0 ** -48


@njit(cache=True, nogil=True)
def _correct_multi(xs, cd, fo, f, a, b, n_cls, t, pol):
    """Samples ``a .. b`` of sorted ``xs`` in fold ``f`` (``f < 0``: every sample; ``cd``
    then holds classes, else fold * classes + class) whose one-vs-rest prediction is their
    label."""
    if b <= a:
        return 0
    always, n_fin = n_cls, 0
    tp1, tp2, tm1, tm2 = np.inf, np.inf, -np.inf, -np.inf
    cp, cm = -1, -1
    for c in range(n_cls):
        tc, pc = t[c], pol[c]
        if (pc > 0 and tc == -np.inf) or (pc < 0 and tc == np.inf):
            always = min(always, c)  # margin +inf everywhere
        elif tc == -np.inf or tc == np.inf:
            continue  # margin -inf everywhere: never the first maximum unless all are
        elif pc > 0:
            n_fin += 1
            if tc < tp1:
                tp1, tp2, cp = tc, tp1, c
            elif tp1 < tc < tp2:
                tp2 = tc
        else:
            n_fin += 1
            if tc > tm1:
                tm1, tm2, cm = tc, tm1, c
            elif tm2 < tc < tm1:
                tm2 = tc
    off = 0 if f < 0 else f * n_cls
    if always < n_cls:
        return _count(cd, a, b, off + always)
    if n_fin == 0:
        return _count(cd, a, b, off)
    xlo, xhi = xs[a], xs[b - 1]
    if (tp2 < np.inf and not _well_separated(tp1, tp2, xlo, xhi)) or (
            tm2 > -np.inf and not _well_separated(tm1, tm2, xlo, xhi)):
        right = 0  # thresholds within rounding of each other: evaluate every sample
        for p in range(a, b):
            if f < 0 or fo[p] == f:
                right += off + _predict(xs[p], t, pol, n_cls) == cd[p]
        return right
    if cm < 0:
        return _count(cd, a, b, off + cp)
    if cp < 0:
        return _count(cd, a, b, off + cm)
    s1 = _first_ge(xs, a, b, tp1, tm1, False)
    s2 = _first_ge(xs, s1, b, tp1, tm1, True)
    return (_count(cd, a, s1, off + cm) + _count(cd, s1, s2, off + min(cp, cm))
            + _count(cd, s2, b, off + cp))


@njit(cache=True, nogil=True)
def _correct(xs, cd, fo, f, a, b, n_cls, t, pol):
    """Samples ``a .. b`` of sorted ``xs`` in fold ``f`` (``f < 0``: all; see
    :func:`_correct_multi`) whose predicted class is their label."""
    if n_cls > 2:
        return _correct_multi(xs, cd, fo, f, a, b, n_cls, t, pol)
    off = 0 if f < 0 else 2 * f
    s = _first(xs, a, b, t[1], pol[1], True)  # the prediction is 1 exactly on one side
    if pol[1] > 0:
        return _count(cd, a, s, off) + _count(cd, s, b, off + 1)
    s = _first(xs, a, b, t[1], 1.0, False)  # -(x - t) > 0  <=>  x - t < 0
    return _count(cd, a, s, off + 1) + _count(cd, s, b, off)


@njit(cache=True, nogil=True)
def _unpack(keys, u, n, n_cls, cv, float_keys, vb, lab, fo, cd):
    """Unit ``u``'s sorted keys -> value bits and class per position, with (``cv``) its fold
    and fold * classes + class (one vectorised pass); True on ties."""
    for p in range(n):
        k = keys[u, p]
        v = k & _VAL64
        vb[p] = v if float_keys else (v ^ ((v >> 63) & _MAG64)) & _VAL64
        lab[p] = np.int32(k & 0xFFFF)
    if cv:
        for p in range(n):
            f = np.int32(keys[u, p] >> 16) & np.int32(0x1FFF)
            fo[p] = f
            cd[p] = f * np.int32(n_cls) + lab[p]
    eq = 0
    for p in range(1, n):
        eq += vb[p] == vb[p - 1]
    return eq > 0


@njit(cache=True, nogil=True)
def _class_buckets(lab, n, n_cls, bk, bstart, bend, ends):
    """Buckets of every sample's split index (its sorted position) by class: class c's at
    ``bk[bstart[c]:bend[c]]``; two classes: class 1's only, at ``bk[0:]``.

    The bucket ends are counted in ``ends``, a uint32 scratch, so the scatter's indices need
    no negative-index check (10 classes, 1,000 samples in 256 random class orders, the
    scatter alone: 1.52 us per unit with int64 ends indexed by int32 classes, 0.85 us so)."""
    if n_cls == 2:
        bstart[1] = 0
        m = 0
        for p in range(n):
            bk[m] = p
            m += lab[p]
        bend[1] = m
        return
    for c in range(n_cls):
        ends[c] = np.uint32(bstart[c])
    for p in range(n):
        c = np.uint32(lab[p])
        e = ends[c]
        bk[e] = p
        ends[c] = e + np.uint32(1)
    for c in range(n_cls):
        bend[c] = ends[c]


@njit(cache=True, nogil=True)
def _cv_class_buckets(lab, fo, n, n_cls, n_folds, bk, bstart, bend, ends, bcount, bfold,
                      bgc, crun):
    """:func:`_class_buckets` for :func:`_cv_buckets`, in the same pass: each bucket entry's
    fold (``bfold``), running counts of every fold packed in one int64 (``64 // folds`` bits
    per fold) over the sorted samples before it (``bgc``) and over its bucket's entries
    before it (``bcount``; ``crun`` int64 scratch per class). (10 classes, 1,000 samples, 5
    folds: one pass instead of three.)"""
    bits = 64 // n_folds
    grun = np.int64(0)
    if n_cls == 2:
        bstart[1] = 0
        m = 0
        run = np.int64(0)
        for p in range(n):
            c = np.int64(lab[p])
            f = fo[p]
            inc = np.int64(1) << (bits * f)
            bk[m] = p
            bfold[m] = f
            bgc[m] = grun
            bcount[m] = run
            run += inc * c
            grun += inc
            m += c
        bend[1] = m
        return
    for c in range(n_cls):
        ends[c] = np.uint32(bstart[c])
        crun[c] = 0
    for p in range(n):
        c = np.uint32(lab[p])
        f = fo[p]
        inc = np.int64(1) << (bits * f)
        e = ends[c]
        bk[e] = p
        bfold[e] = f
        bgc[e] = grun
        bcount[e] = crun[c]
        crun[c] += inc
        grun += inc
        ends[c] = e + np.uint32(1)
    for c in range(n_cls):
        bend[c] = ends[c]


@njit(cache=True, nogil=True)
def _bucket_records(bk, a, b):
    """First maximum and first minimum of ``g_k = bk[a + k] - 2k`` over ``k < b - a``.

    ``bk[a:b]`` are the split indices of one class's samples in sorted order, so ``g_k`` is
    the polarity +1 correct count minus the class size at the split before its k-th sample.
    Returns ``(gmax, jmax, gmin, jmin)`` (the splits where they are first reached). One
    vectorised pass of two int64 reductions: ``g`` in the high 32 bits and ``k`` (for the
    maximum ``2**32 - 1 - k``) in the low ones, so the largest key is the first maximum."""
    low = np.int64(0xFFFFFFFF)
    mx = np.int64(-(1 << 62))
    mn = np.int64(1 << 62)
    v = bk[a:b]
    for k in range(b - a):
        g = (np.int64(v[k]) - 2 * k) << 32
        mx = max(mx, g | (low - k))
        mn = min(mn, g | k)
    return mx >> 32, v[low - (mx & low)], mn >> 32, v[mn & low]


@njit(cache=True, nogil=True)
def _choose(gmax, gmin, n_tr, tot):
    """The reference's choice between a class's records, as :func:`_fit` makes it.

    ``gmax`` is the first maximum of ``g`` over the splits before the class's training
    samples, ``gmin`` the first minimum there (the -1 record is ``gmin - 1``, the split after
    that sample, if below the 0 of the split before every sample). The split after every
    sample (``g = n_tr - 2 * tot``) replaces the +1 record only if strictly higher; polarity
    +1 wins ties. Returns ``(plus, end, right)``: polarity +1 chosen, its record the split
    after every sample, and the chosen rule's correct count on the training samples."""
    end = n_tr - 2 * tot > gmax
    if end:
        gmax = n_tr - 2 * tot
    bminus = min(gmin - 1, 0)
    if gmax + tot >= n_tr - (bminus + tot):
        return True, end, gmax + tot
    return False, end, n_tr - (bminus + tot)  # a -1 record below 0 exists


@njit(cache=True, nogil=True)
def _fit_buckets(bk, bstart, bend, xs, t2p, ident, n_tr, c0, n_cls, total, t_out, pol_out,
                 gbest):
    """Best (threshold, polarity) of classes ``c0 ..`` from their buckets of split indices.

    The same records as the scan of :func:`_fit` without ties: class c's polarity +1 record
    is the first maximum of ``g`` over the splits before its samples (then the split after
    the last sample), its -1 record the first minimum of ``g - 1`` over the splits after them
    (the split before the first sample, g = 0, first). ``t2p`` maps a training split index to
    its sorted position in ``xs``; ``gbest[c]`` gets the chosen rule's correct count.
    """
    for c in range(c0, n_cls):
        if bend[c] > bstart[c]:
            gmax, jmax, gmin, jmin = _bucket_records(bk, bstart[c], bend[c])
        else:
            gmax, jmax, gmin, jmin = -2 * n_tr - 2, -1, 1, -1
        plus, end, gbest[c] = _choose(gmax, gmin, n_tr, total[c])
        if plus:
            pol_out[c], jj = 1.0, n_tr if end else jmax
        else:
            pol_out[c], jj = -1.0, jmin + 1
        if jj == 0:
            t_out[c] = -np.inf
        elif jj >= n_tr:
            t_out[c] = np.inf
        else:
            lo, hi = (jj - 1, jj) if ident else (t2p[jj - 1], t2p[jj])
            t_out[c] = (xs[lo] + xs[hi]) / 2


@njit(cache=True, nogil=True)
def _split_buckets(lab, fo, n, skip, n_cls, bk, bstart, bend, t2p):
    """Buckets of the training samples' split indices (fold ``skip`` left out) by class.

    Returns the training count. Class c's bucket starts at ``bstart[c]`` (one spare slot
    after each: a left-out sample is written at its class's next slot and overwritten);
    ``t2p`` maps each training split index to its sorted position. Two classes: class 1's
    bucket only, at ``bk[0:]``, its counter in a register. (With every sample training:
    :func:`_class_buckets`.)"""
    q = 0
    if n_cls == 2:
        bstart[1] = 0
        m = 0
        for p in range(n):
            keep = np.int32(fo[p] != skip)
            t2p[q] = p
            bk[m] = q
            m += keep & lab[p]
            q += keep
        bend[1] = m
        return q
    for c in range(n_cls):
        bend[c] = bstart[c]
    for p in range(n):
        c = lab[p]
        keep = np.int32(fo[p] != skip)
        t2p[q] = p
        e = bend[c]
        bk[e] = q
        bend[c] = e + keep
        q += keep
    return q


@njit(cache=True, nogil=True)
def _cv_buckets(bk, bstart, bend, fo, n, n_cls, n_folds, seg_counts, total, xs, cd, bcount,
                bfold, bgc, t, pol):
    """Held-out accuracy over the folds of a unit without ties, from its class buckets.

    Fold f's fit needs, for each training sample of class c, its split index among the
    training samples (its position minus the fold-f samples before it) and its rank among
    the class's training samples (its bucket index minus the fold-f ones before it). Both
    counts come from running counts of every fold at once, packed in one int64, that
    :func:`_cv_class_buckets` writes beside each bucket entry with the entry's fold, so that
    the folds' passes read contiguously instead of gathering. Each (fold, class) fit is then
    one vectorised pass over the class's bucket taking the first maximum and minimum of
    ``g`` (value and position packed in one int64), the records of :func:`_fit` on the fold's
    training samples."""
    bits = 64 // n_folds
    mask = np.int64((1 << bits) - 1)
    c0 = 1 if n_cls == 2 else 0
    low = np.int64(0xFFFFFFFF)
    neg, pos = np.int64(-(1 << 62)), np.int64(1 << 62)
    acc = 0.0
    for f in range(n_folds):
        size = 0
        for c in range(n_cls):
            size += seg_counts[f, c]
        n_tr = n - size
        sh = bits * f
        for c in range(c0, n_cls):
            tot = total[c] - seg_counts[f, c]
            a, b = bstart[c], bend[c]
            vp, vf, vc, vg = bk[a:b], bfold[a:b], bcount[a:b], bgc[a:b]
            mx, mn = neg, pos
            for k in range(b - a):
                p = np.int64(vp[k])
                g = (p - ((vg[k] >> sh) & mask) - 2 * (k - ((vc[k] >> sh) & mask))) << 32
                keep = vf[k] != f
                mx = max(mx, (g | (low - p)) if keep else neg)
                mn = min(mn, (g | p) if keep else pos)
            plus, end, _ = _choose(mx >> 32, mn >> 32, n_tr, tot)
            if plus:
                pol[c] = 1.0
                if end:
                    t[c] = np.inf
                else:
                    hi = low - (mx & low)
                    lo = hi - 1
                    while lo >= 0 and fo[lo] == f:
                        lo -= 1
                    t[c] = -np.inf if lo < 0 else (xs[lo] + xs[hi]) / 2
            else:  # the -1 record: the split after sample ``lo``
                pol[c] = -1.0
                lo = mn & low
                hi = lo + 1
                while hi < n and fo[hi] == f:
                    hi += 1
                t[c] = np.inf if hi >= n else (xs[lo] + xs[hi]) / 2
        acc += _correct(xs, cd, fo, f, 0, n, n_cls, t, pol) / size
    return acc / n_folds


@njit(cache=True, nogil=True)
def _scan_tile(keys, tw, n, n_cls, n_folds, seg_counts, cv, float_keys, bad, out):
    """Stats (score, non-finite flag, thresholds, polarities) of a tile's sorted keys."""
    vb = np.empty(n, np.int64)
    xs = vb.view(np.float64)
    lab = np.empty(n, np.int32)
    fo = np.empty(n, np.int32)
    cd = np.empty(n, np.int32)
    w = np.empty((7, n_cls), np.int64)
    fw = np.empty((4, n_cls))
    t = np.empty(n_cls)
    pol = np.empty(n_cls)
    gbest = np.empty(n_cls, np.int64)
    bk = np.empty(n + n_cls, np.int32)
    bstart = np.zeros(n_cls, np.int64)
    bend = np.zeros(n_cls, np.int64)
    ends = np.empty(n_cls, np.uint32)
    t2p = np.empty(n, np.int32)
    total = np.zeros(n_cls, np.int64)
    for f in range(n_folds):
        for c in range(n_cls):
            total[c] += seg_counts[f, c]
    for c in range(1, n_cls):
        bstart[c] = bstart[c - 1] + total[c - 1] + 1
    half = 1 if n_cls == 2 else n_cls
    packed_ok = cv and 2 <= n_folds <= 64 and n < 1 << (64 // n_folds)  # counts fit
    crun = np.empty(n_cls, np.int64)
    bcount = np.empty(n + n_cls if packed_ok else 0, np.int64)
    bfold = np.empty(n + n_cls if packed_ok else 0, np.int32)
    bgc = np.empty(n + n_cls if packed_ok else 0, np.int64)
    c0 = 1 if n_cls == 2 else 0
    if n_cls == 2:
        t[0], pol[0] = np.nan, 0.0  # class 0's rule: not fitted, never read
    for u in range(tw):
        ties = _unpack(keys, u, n, n_cls, cv, float_keys, vb, lab, fo, cd)
        if ties:
            _fit(vb, xs, lab, fo, n, -1, n_cls, total, t, pol, w, fw)
        else:
            if cv and packed_ok:
                _cv_class_buckets(lab, fo, n, n_cls, n_folds, bk, bstart, bend, ends, bcount,
                                  bfold, bgc, crun)
            else:
                _class_buckets(lab, n, n_cls, bk, bstart, bend, ends)
            _fit_buckets(bk, bstart, bend, xs, t2p, True, n, c0, n_cls, total, t, pol, gbest)
        col = u
        out[1, col] = 1.0 if bad[u] else 0.0
        for r in range(half):
            c = 1 if n_cls == 2 else r
            out[2 + r, col] = t[c]
            out[2 + half + r, col] = pol[c]
        if not cv:
            if n_cls == 2 and not ties:
                out[0, col] = gbest[1] / n
            else:
                out[0, col] = _correct(xs, lab, fo, -1, 0, n, n_cls, t, pol) / n
            continue
        if not ties and packed_ok:
            out[0, col] = _cv_buckets(bk, bstart, bend, fo, n, n_cls, n_folds, seg_counts,
                                      total, xs, cd, bcount, bfold, bgc, t, pol)
            continue
        acc = 0.0
        for f in range(n_folds):
            for c in range(n_cls):
                total[c] -= seg_counts[f, c]
            if ties:
                _fit(vb, xs, lab, fo, n, f, n_cls, total, t, pol, w, fw)
            else:
                n_tr = _split_buckets(lab, fo, n, f, n_cls, bk, bstart, bend, t2p)
                _fit_buckets(bk, bstart, bend, xs, t2p, False, n_tr, c0, n_cls, total, t, pol,
                             gbest)
            size = 0
            for c in range(n_cls):
                total[c] += seg_counts[f, c]
                size += seg_counts[f, c]
            acc += _correct(xs, cd, fo, f, 0, n, n_cls, t, pol) / size
        out[0, col] = acc / n_folds


_SORT_LOCK = threading.Lock()
_SORT_CHOICE: list[bool] = []  # this process's choice, once made


def _float_sort_faster() -> bool:
    """Whether numpy sorts float64 rows of 1,000 faster than int64 ones on this CPU.

    The keys are built for the faster of the two sorts (the stats are the same either way;
    the tests run both). Seen: AMD EPYC Zen 5, int64 14% faster; an Intel Xeon (family 6,
    model 167), float64 25% faster (2.7 vs 3.6 us per row). Decided once per process, by
    the first of dask's threads to score a block while the others wait, from the medians of
    9 alternated sorts of a (128, 1,000) tile of random keys, about 10 ms."""
    with _SORT_LOCK:
        if not _SORT_CHOICE:
            v = np.random.default_rng(0).standard_normal((128, 1000))
            i = v.view(np.int64) ^ ((v.view(np.int64) >> 63) & _MAG64)
            times: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(9):
                for as_float, keys in ((True, v), (False, i)):
                    k = keys.copy()
                    t0 = time.perf_counter()
                    k.sort(axis=1)
                    times[as_float].append(time.perf_counter() - t0)
            _SORT_CHOICE.append(statistics.median(times[True]) < statistics.median(times[False]))
        return _SORT_CHOICE[0]


def threshold_block_nb(xf: np.ndarray, n: int, w: int, rs: int, y: np.ndarray,
                       fold: np.ndarray, n_classes: int, n_folds: int, cv: bool,
                       out: np.ndarray, tile: int = TILE,
                       float_keys: bool | None = None) -> None:
    """Fill ``out`` (2 + params, w) with the threshold stats of every unit of a block.

    ``xf``, ``n``, ``w``, ``rs`` are the block as :func:`~sn_interp.probes._kernels.flat_rows`
    gives it (flat float32 rows, row stride ``rs``); ``y`` and ``fold`` are per sample; ``cv``
    scores held-out folds; ``float_keys`` sorts the keys as float64 (None: the faster sort of
    this CPU, :func:`_float_sort_faster`).
    """
    if float_keys is None:
        float_keys = _float_sort_faster()
    y = np.asarray(y, np.int64)
    fold = np.asarray(fold, np.int64)
    if n and (y.max() >= 1 << 16 or fold.max() >= 1 << (PAY_BITS - 16)):
        raise ValueError("the threshold kernel takes < 65536 classes and < 8192 folds")
    payload = (fold << 16) | y
    seg = np.zeros((n_folds, n_classes), np.int64)
    np.add.at(seg, (fold, y), 1)
    keys = np.empty((min(tile, w), n), np.int64)
    bad = np.empty(min(tile, w), np.bool_)
    rows = np.lib.stride_tricks.as_strided(xf, shape=(n, w), strides=(4 * rs, 4),
                                           writeable=False)
    stage = np.empty((n, min(tile, w) + STAGE_PAD), np.float32)
    ot = np.empty((out.shape[0], min(tile, w) + STAGE_PAD // 2))
    for j0 in range(0, w, tile):
        tw = min(tile, w - j0)
        k = keys[:tw]
        # The tile's rows are first copied to a staging buffer whose rows are not a multiple
        # of 4 KB apart: the transposing copy walks a column of rows, and rows a multiple of
        # 4 KB apart (a 4,096- or 8,192-wide layer) share a few cache sets (threshold/probe
        # per unit of 1,000 samples, rows 4,096 wide: 8.9 -> 5.2 us; 11,008 wide: 6.0 -> 5.3;
        # 10,000 wide: 5.1 -> 5.2). Then the transpose and widening: numpy's strided casting
        # copy (it releases the GIL), 2.6x faster than a compiled loop nest (0.95 vs 2.5 us).
        np.copyto(stage[:, :tw], rows[:, j0:j0 + tw])
        np.copyto(k.view(np.float64), stage[:, :tw].T)
        _finish_keys(k, tw, n, payload, bad, float_keys)
        (k.view(np.float64) if float_keys else k).sort(axis=1)
        # The tile's stats go to a small buffer first: rows of ``out`` a multiple of 4 KB
        # apart (8,192 units) share one L1 set, and 22 of them (10 classes) evict each other
        # on every unit's stores.
        _scan_tile(k, tw, n, n_classes, n_folds, seg, cv, float_keys, bad, ot)
        out[:, j0:j0 + tw] = ot[:, :tw]
