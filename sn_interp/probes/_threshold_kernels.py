"""Compiled (numba) threshold scoring: one sort per neuron, shared by classes and CV folds.

The numpy reference is the generic :meth:`Rule.score_block` of the ``threshold`` rule
(:func:`~sn_interp.probes.rules.threshold.threshold_fit` on all samples and on each fold's
training samples, :func:`~sn_interp.probes.rules.threshold.threshold_predict`, accuracies
averaged over folds); these kernels return bit-identical stats.

Per tile of ``TILE`` units:

1. Each value becomes a float64 sort key: the float32 value widened exactly (numpy's
   transposing cast copy of the tile, then one contiguous compiled pass per unit: -0.0 as
   +0.0, a non-finite column as zeros, as the reference does), with the sample's fold and class
   written into the 29 low mantissa bits that widening leaves zero. That moves the value by
   less than one float32 step, so keys sort as the values do (equal values by class), and
   masking the bits gives the value back. ``np.sort`` sorts every unit's keys (numpy's SIMD
   float64 sort); this is the only sort.
2. One scan of a unit's sorted keys fits all one-vs-rest classes at once. For class ``c``,
   ``g(j) = j - 2 * (class-c samples among the j smallest)`` is the polarity +1 correct count
   minus the class size; it rises on other samples and falls on class-c ones, so its first
   maximum over valid splits (between distinct values) is at the start of a tie group holding
   a class-c sample (or at ``n``) and its first minimum (polarity -1) at the end of one (or
   at 0). Each sample proposes one candidate for its class and each group end one for each
   class in the group: O(samples + classes), the reference's tie rules (polarity +1 first,
   then the lowest split) kept by strict comparisons in split order. A CV fold's fit is the
   same scan skipping the fold's samples, so the folds share the sort.
3. Accuracy counts the predictions exactly as ``threshold_predict`` computes them (float64
   ``pol * (x - t)``; the largest margin, ties to the lowest class). The margin of a
   polarity +1 class rises with ``x`` and falls with ``t`` (-1: the reverse), so unless two
   thresholds are within rounding of each other (checked; then every sample is evaluated)
   the prediction along the sorted values is: the best -1 class, then (on exact margin
   ties) the lower of the two, then the best +1 class. Two binary searches find the
   switches and the accuracy is a count of labels per range.

The kernels release the GIL and are single threaded (dask's threads run one block each);
``cache=True`` stores the compiled code in ``__pycache__``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

TILE = 256  # units per tile: 256 x 1000 samples x 8 bytes = 2 MB of keys
STAGE_PAD = 16  # float32 padding of each staged row (1,088-byte rows, not a 4 KB multiple)
PAY_BITS = 29  # float64 mantissa bits below a widened float32's
_PAY = np.uint64((1 << PAY_BITS) - 1)
_EXP64 = np.uint64(0x7FF0000000000000)


@njit(cache=True, nogil=True)
def _finish_keys(keys: np.ndarray, tw: int, n: int, payload: np.ndarray,
                 bad: np.ndarray) -> None:
    """Widened values (float64 bits, ``keys[:tw]``) -> sort keys, in place, one contiguous
    pass per unit: -0.0 as +0.0, the fold and class payload in the low mantissa bits, a unit
    holding a non-finite value (``bad``) as zeros (as the reference)."""
    kv = keys.view(np.float64)
    for u in range(tw):
        for i in range(n):
            kv[u, i] += 0.0  # -0.0 -> +0.0
        b = False
        for i in range(n):
            k = keys[u, i]
            b |= (k & _EXP64) == _EXP64
            keys[u, i] = k | payload[i]
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
    cur = np.uint64(0)
    started = False
    prev = 0.0
    val = 0.0
    for p in range(n):
        if fo[p] == skip:
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
def _distinct_scan_arith(lab, fo, n, skip, cnt, bplus, pplus, bminus, pminus):
    """The candidate scan of :func:`_fit_distinct` without branches, for more than two
    classes: there a class's ``g`` mostly rises between its samples, so "a new record" holds
    about 90% of the time and a branch on it mispredicts; integer arithmetic keeps the same
    records (about 1.5x faster). Two classes (rare records) keep the selects."""
    j = 0
    for p in range(n):
        if fo[p] == skip:
            continue
        c = lab[p]
        g = j - 2 * cnt[c]
        bp, bm = bplus[c], bminus[c]
        up, dn = np.int64(g > bp), np.int64(g - 1 < bm)
        bplus[c] = bp + up * (g - bp)
        pplus[c] += up * (p - pplus[c])
        bminus[c] = bm + dn * (g - 1 - bm)
        pminus[c] += dn * (p - pminus[c])
        cnt[c] += 1
        j += 1


@njit(cache=True, nogil=True)
def _distinct_scan_binary(lab, fo, n, skip):
    """The candidate scan of :func:`_fit_distinct` for two classes, class 1's records only.

    The binary rule is class 1's one-vs-rest rule (``threshold_fit`` fits ``y == 1``), so
    class 0's records are never read. With one class the counters and records are scalars
    (registers, not per-class memory that each step stores and the next loads); a class-0
    sample only advances the split. The same records in the same order as the per-class
    scan: strict comparisons, first position kept. Returns ``bplus, pplus, bminus, pminus``.
    """
    j = 0
    cnt = 0
    bp, pp, bm, pm = -2 * n - 2, -1, 0, -1
    for p in range(n):
        if fo[p] == skip:
            continue
        is1 = lab[p] == 1
        g = j - 2 * cnt
        up = is1 & (g > bp)
        bp = g if up else bp
        pp = p if up else pp
        dn = is1 & (g - 1 < bm)
        bm = g - 1 if dn else bm
        pm = p if dn else pm
        cnt += is1
        j += 1
    return bp, pp, bm, pm


@njit(cache=True, nogil=True)
def _fit_distinct(xs, lab, fo, n, skip, n_cls, total, t_out, pol_out, w):
    """:func:`_fit` for a unit without ties (every split between train samples is valid).

    A class-c sample at split j proposes j (polarity +1, ``g = j - 2 cnt``) and j + 1
    (-1, ``g - 1``); only sorted positions are kept, the thresholds' neighbours found at
    the end. ``w`` is int64 scratch (5, n_cls).
    """
    cnt, bplus, pplus, bminus, pminus = w[0], w[1], w[2], w[3], w[4]
    n_tr = 0
    for c in range(n_cls):
        cnt[c] = 0
        bplus[c] = -2 * n - 2
        pplus[c] = -1
        bminus[c] = 0  # j = 0
        pminus[c] = -1
        n_tr += total[c]
    if n_cls > 2:
        _distinct_scan_arith(lab, fo, n, skip, cnt, bplus, pplus, bminus, pminus)
        first_c = 0
    else:  # two classes: only class 1's rule is the binary rule; its state in registers
        bplus[1], pplus[1], bminus[1], pminus[1] = _distinct_scan_binary(lab, fo, n, skip)
        first_c = 1
        t_out[0], pol_out[0] = np.nan, 0.0  # class 0's rule: not fitted, never read
    for c in range(first_c, n_cls):
        g = n_tr - 2 * total[c]
        if g > bplus[c]:
            bplus[c], pplus[c] = g, n
        if bplus[c] + total[c] >= n_tr - (bminus[c] + total[c]):
            pol_out[c] = 1.0
            hi = pplus[c]  # the first sample above the split (n: none)
            lo = hi - 1
            while lo >= 0 and fo[lo] == skip:
                lo -= 1
        else:
            pol_out[c] = -1.0
            lo = pminus[c]  # the last sample below the split (-1: none)
            hi = lo + 1
            while lo >= 0 and hi < n and fo[hi] == skip:
                hi += 1
        if lo < 0:
            t_out[c] = -np.inf
        elif hi >= n:
            t_out[c] = np.inf
        else:
            t_out[c] = (xs[lo] + xs[hi]) / 2


@njit(cache=True, nogil=True)
def _count(lab, a, b, c):
    k = 0
    for p in range(a, b):
        k += lab[p] == c
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
def _correct_multi(xs, lab, a, b, n_cls, t, pol):
    """Samples ``a .. b`` of sorted ``xs`` whose one-vs-rest prediction is their label."""
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
    if always < n_cls:
        return _count(lab, a, b, always)
    if n_fin == 0:
        return _count(lab, a, b, 0)
    xlo, xhi = xs[a], xs[b - 1]
    if (tp2 < np.inf and not _well_separated(tp1, tp2, xlo, xhi)) or (
            tm2 > -np.inf and not _well_separated(tm1, tm2, xlo, xhi)):
        right = 0  # thresholds within rounding of each other: evaluate every sample
        for p in range(a, b):
            right += _predict(xs[p], t, pol, n_cls) == lab[p]
        return right
    if cm < 0:
        return _count(lab, a, b, cp)
    if cp < 0:
        return _count(lab, a, b, cm)
    s1 = _first_ge(xs, a, b, tp1, tm1, False)
    s2 = _first_ge(xs, s1, b, tp1, tm1, True)
    return _count(lab, a, s1, cm) + _count(lab, s1, s2, min(cp, cm)) + _count(lab, s2, b, cp)


@njit(cache=True, nogil=True)
def _correct(xs, lab, a, b, n_cls, t, pol):
    """Samples ``a .. b`` of sorted ``xs`` whose predicted class is their label."""
    if n_cls > 2:
        return _correct_multi(xs, lab, a, b, n_cls, t, pol)
    s = _first(xs, a, b, t[1], pol[1], True)  # the prediction is 1 exactly on one side
    if pol[1] > 0:
        return _count(lab, a, s, 0) + _count(lab, s, b, 1)
    s = _first(xs, a, b, t[1], 1.0, False)  # -(x - t) > 0  <=>  x - t < 0
    return _count(lab, a, s, 1) + _count(lab, s, b, 0)


@njit(cache=True, nogil=True)
def _fit_any(ties, vb, xs, lab, fo, n, skip, n_cls, total, t, pol, w, fw):
    if ties:
        _fit(vb, xs, lab, fo, n, skip, n_cls, total, t, pol, w, fw)
    else:
        _fit_distinct(xs, lab, fo, n, skip, n_cls, total, t, pol, w)


@njit(cache=True, nogil=True)
def _scan_tile(keys, tw, n, n_cls, n_folds, seg_counts, cv, bad, out, j0):
    """Stats (score, non-finite flag, thresholds, polarities) of a tile's sorted keys."""
    vb = np.empty(n, np.uint64)
    xs = vb.view(np.float64)
    lab = np.empty(n, np.int64)
    fo = np.empty(n, np.int64)
    xf = np.empty(n, np.float64)  # samples grouped by fold, each group in sorted order
    lf = np.empty(n, np.int64)
    start = np.zeros(n_folds + 1, np.int64)
    fill = np.empty(n_folds, np.int64)
    for f in range(n_folds):
        for c in range(n_cls):
            start[f + 1] += seg_counts[f, c]
        start[f + 1] += start[f]
    w = np.empty((7, n_cls), np.int64)
    fw = np.empty((4, n_cls))
    t = np.empty(n_cls)
    pol = np.empty(n_cls)
    xt = np.empty(n, np.float64)  # one fold's training samples, in sorted order
    lt = np.empty(n, np.int64)
    none = np.zeros(n, np.int64)
    total = np.zeros(n_cls, np.int64)
    for f in range(n_folds):
        for c in range(n_cls):
            total[c] += seg_counts[f, c]
    half = 1 if n_cls == 2 else n_cls
    mask = ~_PAY
    for u in range(tw):
        ties = False
        for p in range(n):
            k = keys[u, p]
            pay = k & _PAY
            vb[p] = k & mask
            lab[p] = np.int64(pay & np.uint64(0xFFFF))
            fo[p] = np.int64(pay >> np.uint64(16))
        for p in range(1, n):
            ties |= vb[p] == vb[p - 1]
        _fit_any(ties, vb, xs, lab, fo, n, -1, n_cls, total, t, pol, w, fw)
        col = j0 + u
        out[1, col] = 1.0 if bad[u] else 0.0
        for r in range(half):
            c = 1 if n_cls == 2 else r
            out[2 + r, col] = t[c]
            out[2 + half + r, col] = pol[c]
        if not cv:
            out[0, col] = _correct(xs, lab, 0, n, n_cls, t, pol) / n
            continue
        for f in range(n_folds):
            fill[f] = start[f]
        for p in range(n):
            q = fill[fo[p]]
            xf[q] = xs[p]
            lf[q] = lab[p]
            fill[fo[p]] = q + 1
        acc = 0.0
        for f in range(n_folds):
            for c in range(n_cls):
                total[c] -= seg_counts[f, c]
            if ties:
                _fit(vb, xs, lab, fo, n, f, n_cls, total, t, pol, w, fw)
            else:  # the training samples copied out without a branch, then fitted
                q = 0
                for p in range(n):
                    xt[q] = xs[p]
                    lt[q] = lab[p]
                    q += fo[p] != f
                _fit_distinct(xt, lt, none, q, -1, n_cls, total, t, pol, w)
            for c in range(n_cls):
                total[c] += seg_counts[f, c]
            right = _correct(xf, lf, start[f], start[f + 1], n_cls, t, pol)
            acc += right / (start[f + 1] - start[f])
        out[0, col] = acc / n_folds


def threshold_block_nb(xf: np.ndarray, n: int, w: int, rs: int, y: np.ndarray,
                       fold: np.ndarray, n_classes: int, n_folds: int, cv: bool,
                       out: np.ndarray, tile: int = TILE) -> None:
    """Fill ``out`` (2 + params, w) with the threshold stats of every unit of a block.

    ``xf``, ``n``, ``w``, ``rs`` are the block as :func:`~sn_interp.probes._kernels.flat_rows`
    gives it (flat float32 rows, row stride ``rs``); ``y`` and ``fold`` are per sample; ``cv``
    scores held-out folds.
    """
    y = np.asarray(y, np.int64)
    fold = np.asarray(fold, np.int64)
    if n and (y.max() >= 1 << 16 or fold.max() >= 1 << (PAY_BITS - 16)):
        raise ValueError("the threshold kernel takes < 65536 classes and < 8192 folds")
    payload = (fold.astype(np.uint64) << np.uint64(16)) | y.astype(np.uint64)
    seg = np.zeros((n_folds, n_classes), np.int64)
    np.add.at(seg, (fold, y), 1)
    keys = np.empty((min(tile, w), n), np.uint64)
    bad = np.empty(min(tile, w), np.bool_)
    rows = np.lib.stride_tricks.as_strided(xf, shape=(n, w), strides=(4 * rs, 4),
                                           writeable=False)
    stage = np.empty((n, min(tile, w) + STAGE_PAD), np.float32)
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
        _finish_keys(k, tw, n, payload, bad)
        k.view(np.float64).sort(axis=1)
        _scan_tile(k, tw, n, n_classes, n_folds, seg, cv, bad, out, j0)
