"""Compiled (numba) centroid scoring: each column tile read from main memory once.

The numpy kernel in :mod:`sn_interp.probes.neurons` is the reference; these kernels give
bit-identical results (tested on random and adversarial data with ties). Per column tile
(``TILE`` units), pass 1 over the tile's rows accumulates the float32 sum of every
(fold, class) segment, rows in sample order starting from +0.0 (exactly numpy's
``np.add.reduce(rows, axis=0)`` for blocks of >= 2 columns); the float64 class means,
fold-left-out means and the closed float32 intervals of :func:`centroid_bounds` follow per
unit; pass 2 over the same rows (still in cache) counts the samples inside their own class's
interval, two rows per step. Nothing is reordered or copied.

A tile is a 1 KB run of each row (``NARROW_TILE``): long enough for the
hardware prefetchers to stream rows from memory, and its 1 MB (1,000 samples) and its
interval bounds stay in L2 for pass 2. Wide tiles (``TILE``, 4 KB runs, 4 MB in the
last-level cache) were the default until measured slower with many intervals and with two
threads at once; the permutation kernel of :mod:`sn_interp.probes.null` keeps them (its
per-permutation scratch is sized from the tile). Both read rows in place, faster than
copying a narrow tile to a contiguous buffer in pass 1 (the first kernel).

The kernels release the GIL (``nogil=True``) and are single threaded: dask's threads run one
block each. ``cache=True`` stores the compiled code in ``__pycache__``; the first call in a
fresh environment compiles for a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

TILE = 1024  # wide tile (the permutation kernel): 1000 samples x 1024 float32 = 4 MB
# Units per tile of centroid_block_nb: 1000 samples x 256 float32 = 1 MB. Pass 2 reads each
# row's own (fold, class) interval bounds, 8 bytes per unit and interval: with many intervals
# a wide tile's bounds (80 KB for 10 classes) spill from a 48 KB L1 cache, and with two
# threads scoring at once wide tiles (4 MB each) also compete in the shared last-level cache.
# Measured on 1,000 samples, narrow vs wide: on the first CPU (one thread) 10 classes 953 vs
# 1,134 ns per unit, 5-fold CV 991-1,302 vs 1,185-1,483 ns, 2 and 4 classes probe equal
# within 1%; on an AMD Zen 5 (two threads at once, ns per unit per thread) 2 classes probe 432
# vs 486, 4 classes 434 vs 513, 10 classes 489 vs 574, 5-fold CV 493-755 vs 560-883.
NARROW_TILE = 256


SUB = 128  # units per step of the means and bounds (their float64 scratch fits L2)

# Software prefetch of centroid_block_nb (see its docstring): pass 1 asks for the row
# PREFETCH_ROWS ahead, pass 2 for the next tile's rows. Measured on the AMD Zen 5 (1,000
# samples x 1,000,000 units, two threads, kernel time as a multiple of one read pass, 9
# interleaved repeats against the kernel without it): 2 classes 1.75x -> 1.37x, 10 classes
# 2.32x -> 1.90x. Rows ahead 8, 16, 32, 64 were within the noise of each other.
PREFETCH_ROWS = 16
LINE = 16  # float32 values per 64-byte cache line


@intrinsic
def _prefetch(typingctx, arr, idx, locality):  # pragma: no cover (compiled by numba)
    """``llvm.prefetch`` (read) of ``&arr[idx]`` into the cache level ``locality`` (a
    literal int: 3 keeps it in every level, 1 only in the outer ones); a hint that never
    faults or changes a result (where a target has no prefetch it is a no-op)."""
    if not isinstance(locality, types.IntegerLiteral):
        return None
    level = locality.literal_value

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]],
                                       wraparound=False, boundscheck=False)
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(level), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, idx, locality), codegen


#: ``prefetch(arr, index, locality)`` in compiled code (typed for the checker: an intrinsic's
#: Python signature has numba's typing context first).
prefetch = cast(Callable[[np.ndarray, int, int], None], _prefetch)


def flat_rows(x: np.ndarray) -> tuple[np.ndarray, int, int, int]:
    """A 2-D array as ``(flat, n, w, row_stride)`` for :func:`centroid_block_nb`, no copy.

    A column slice of a wider array (a dask chunk) is viewed as one read-only contiguous
    1-D span; anything else (other dtype, strided columns) is first copied to float32.
    """
    if x.dtype != np.float32 or x.ndim != 2 or x.strides[1] != 4 or x.strides[0] < 0 \
            or x.strides[0] % 4:
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(x.shape[0], -1)
    n, w = x.shape
    rs = x.strides[0] // 4 if n > 1 else w
    size = (n - 1) * rs + w if n and w else 0
    flat = np.lib.stride_tricks.as_strided(x, shape=(size,), strides=(4,), writeable=False)
    return flat, n, w, rs


@njit(cache=True, nogil=True)
def _next_up32(v: np.float32, bits: np.ndarray) -> np.float32:
    """``nextafter(v, +inf)`` for finite or -inf float32 ``v`` by an integer step on the bits.

    Same operations as ``neurons._next_up_bits``: ``v + 0`` maps -0.0 to +0.0, then the bits
    move one step away from zero above it and toward zero below (int32, wrapping).
    """
    fb = bits.view(np.float32)
    fb[0] = v + np.float32(0.0)
    b = bits[0]
    bits[0] = b + ((b >> 31) | 1)  # stored as int32: wraps like numpy's int32 add
    return fb[0]


@njit(cache=True, nogil=True)
def _bounds_unit(means: np.ndarray, lo: np.ndarray, hi: np.ndarray, srt: np.ndarray,
                 order: np.ndarray, rep: np.ndarray, first: np.ndarray, lo_s: np.ndarray,
                 hi_s: np.ndarray, bits: np.ndarray) -> None:
    """:func:`neurons.centroid_bounds` for one unit: ``means`` (class,) -> ``lo``, ``hi``.

    The stable odd-even transposition sort, the float64 midpoints, the float32 rounding and
    the tie rules are the numpy code's, step for step (``srt`` ... ``bits`` are scratch).
    """
    n_cls = means.shape[0]
    for c in range(n_cls):
        srt[c] = means[c]
        order[c] = c
    for rnd in range(n_cls):
        i = rnd % 2
        while i + 1 < n_cls:
            a, b = srt[i], srt[i + 1]
            if a != a or b != b:  # np.minimum / np.maximum propagate NaN
                mn = a if a != a else b
                mx = mn
            else:
                mn = a if a < b else b
                mx = a if a > b else b
            if a > b:
                t = order[i]
                order[i] = order[i + 1]
                order[i + 1] = t
            srt[i] = mn
            srt[i + 1] = mx
            i += 2
    first[0] = True
    rep[0] = order[0]
    for j in range(1, n_cls):
        first[j] = srt[j] != srt[j - 1]
        rep[j] = order[j] if first[j] else rep[j - 1]
    lo_s[0] = -np.inf
    hi_s[n_cls - 1] = np.inf
    for j in range(n_cls - 1):
        mid = (srt[j] + srt[j + 1]) / 2.0
        r = np.float32(mid)
        r64 = np.float64(r)
        eq = order[j + 1] > rep[j]  # on the boundary x goes to the lower class index
        bump = (r64 < mid) or (eq and r64 == mid)
        lo_s[j + 1] = _next_up32(r, bits) if bump else r
        hi_s[j] = -_next_up32(-lo_s[j + 1], bits)
    for j in range(n_cls - 2, -1, -1):  # equal means: the group's boundary, empty intervals
        if not first[j + 1]:
            hi_s[j] = hi_s[j + 1]
    for j in range(n_cls):
        if not first[j]:
            lo_s[j] = np.inf
            hi_s[j] = -np.inf
    for j in range(n_cls):
        lo[order[j]] = lo_s[j]
        hi[order[j]] = hi_s[j]


@njit(cache=True, nogil=True)
def centroid_bounds_nb(means: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """Fill float32 ``lo``, ``hi`` (class, neuron) from float64 ``means`` (class, neuron)."""
    n_cls, n = means.shape
    srt = np.empty(n_cls, np.float64)
    order = np.empty(n_cls, np.int64)
    rep = np.empty(n_cls, np.int64)
    first = np.empty(n_cls, np.bool_)
    lo_s = np.empty(n_cls, np.float32)
    hi_s = np.empty(n_cls, np.float32)
    lo1 = np.empty(n_cls, np.float32)
    hi1 = np.empty(n_cls, np.float32)
    m1 = np.empty(n_cls, np.float64)
    bits = np.empty(1, np.int32)
    for j in range(n):
        for c in range(n_cls):
            m1[c] = means[c, j]
        _bounds_unit(m1, lo1, hi1, srt, order, rep, first, lo_s, hi_s, bits)
        for c in range(n_cls):
            lo[c, j] = lo1[c]
            hi[c, j] = hi1[c]


@njit(cache=True, nogil=True)
def _bounds_tile(means: np.ndarray, tw: int, lo: np.ndarray, hi: np.ndarray, srt: np.ndarray,
                 order: np.ndarray, rep: np.ndarray, first: np.ndarray, lo_s: np.ndarray,
                 hi_s: np.ndarray, rf: np.ndarray, bump: np.ndarray) -> None:
    """:func:`_bounds_unit` for the first ``tw`` columns of ``means`` (class, tile) at once.

    The same steps, each a branch-free loop over the tile's units (SIMD), instead of a
    branchy loop per unit; the float32 steps on the bits go through int32 views.
    """
    n_cls = means.shape[0]
    for c in range(n_cls):
        for j in range(tw):
            srt[c, j] = means[c, j]
            order[c, j] = c
    for rnd in range(n_cls):
        i = rnd % 2
        while i + 1 < n_cls:
            for j in range(tw):
                a, b = srt[i, j], srt[i + 1, j]
                oa, ob = order[i, j], order[i + 1, j]
                sw = a > b  # strict: equal means keep class order (stable)
                srt[i, j] = a if (a <= b or a != a) else b  # np.minimum (NaN propagates)
                srt[i + 1, j] = a if (a >= b or a != a) else b  # np.maximum
                order[i, j] = ob if sw else oa
                order[i + 1, j] = oa if sw else ob
            i += 2
    for j in range(tw):
        first[0, j] = True
        rep[0, j] = order[0, j]
        lo_s[0, j] = -np.inf
        hi_s[n_cls - 1, j] = np.inf
    ties = 0
    for c in range(1, n_cls):
        for j in range(tw):
            f = srt[c, j] != srt[c - 1, j]
            first[c, j] = f
            rep[c, j] = order[c, j] if f else rep[c - 1, j]
            ties += not f
    lo_i = lo_s.view(np.int32)
    hi_i = hi_s.view(np.int32)
    rf_i = rf.view(np.int32)
    for k in range(n_cls - 1):
        for j in range(tw):
            mid = (srt[k, j] + srt[k + 1, j]) / 2.0
            r = np.float32(mid)
            r64 = np.float64(r)
            eq = order[k + 1, j] > rep[k, j]  # on the boundary x goes to the lower class
            bump[j] = (r64 < mid) or (eq and r64 == mid)
            lo_s[k + 1, j] = r
            rf[j] = r + np.float32(0.0)  # -0.0 -> +0.0
        for j in range(tw):  # next float32 up, on the bits (int32, wrapping)
            b = rf_i[j]
            nb = np.int32(b + ((b >> 31) | 1))
            lo_i[k + 1, j] = nb if bump[j] else lo_i[k + 1, j]
        for j in range(tw):
            rf[j] = -lo_s[k + 1, j] + np.float32(0.0)
        for j in range(tw):
            b = rf_i[j]
            hi_i[k, j] = np.int32(b + ((b >> 31) | 1))
        for j in range(tw):
            hi_s[k, j] = -hi_s[k, j]
    if ties:  # equal means: the group's boundary, empty intervals (rare: skipped if none)
        for c in range(n_cls - 2, -1, -1):
            for j in range(tw):
                if not first[c + 1, j]:
                    hi_s[c, j] = hi_s[c + 1, j]
        for c in range(n_cls):
            for j in range(tw):
                if not first[c, j]:
                    lo_s[c, j] = np.inf
                    hi_s[c, j] = -np.inf
    for c in range(n_cls):
        for j in range(tw):
            lo[order[c, j], j] = lo_s[c, j]
            hi[order[c, j], j] = hi_s[c, j]


@njit(cache=True, nogil=True)
def _bounds_scratch(n_cls: int):
    """The per-sub-tile scratch of :func:`_fold_bounds`: class sums and means (float64),
    then :func:`_bounds_tile`'s arrays."""
    return (np.empty((n_cls, SUB), np.float64), np.empty((n_cls, SUB), np.float64),
            np.empty((n_cls, SUB), np.float64), np.empty((n_cls, SUB), np.int64),
            np.empty((n_cls, SUB), np.int64), np.empty((n_cls, SUB), np.bool_),
            np.empty((n_cls, SUB), np.float32), np.empty((n_cls, SUB), np.float32),
            np.empty(SUB, np.float32), np.empty(SUB, np.bool_))


@njit(cache=True, nogil=True)
def _class_means(sums: np.ndarray, base: int, s0: int, sw: int, n_folds: int,
                 class_counts: np.ndarray, csum: np.ndarray, means: np.ndarray) -> None:
    """Class sums ``csum`` (float64 over folds, as ``sums.astype(float64).sum(0)``) and means
    of units ``s0 .. s0+sw`` from the float32 segment sums rows ``base + f * n_cls + c``."""
    n_cls = class_counts.shape[0]
    for c in range(n_cls):
        for j in range(sw):
            t = 0.0
            for f in range(n_folds):
                t += np.float64(sums[base + f * n_cls + c, s0 + j])
            csum[c, j] = t
            means[c, j] = t / class_counts[c]


@njit(cache=True, nogil=True)
def _fold_bounds(sums: np.ndarray, base: int, s0: int, sw: int, class_counts: np.ndarray,
                 counts: np.ndarray, lo: np.ndarray, hi: np.ndarray, scratch) -> None:
    """Each fold's class intervals ``lo``/``hi`` (fold, class, unit) of units ``s0 .. s0+sw``:
    the means without the fold's samples (one fold: the means as they are), then
    :func:`_bounds_tile`. ``scratch`` is from :func:`_bounds_scratch`, its means filled by
    :func:`_class_means` (overwritten here)."""
    csum, means, srt, order, rep, first, lo_s, hi_s, rf, bump = scratch
    n_folds, n_cls = counts.shape
    for f in range(n_folds):
        if n_folds > 1:  # the means without fold f
            for c in range(n_cls):
                k = base + f * n_cls + c
                for j in range(sw):
                    means[c, j] = ((csum[c, j] - np.float64(sums[k, s0 + j]))
                                   / (class_counts[c] - counts[f, c]))
        _bounds_tile(means, sw, lo[f, :, s0:s0 + sw], hi[f, :, s0:s0 + sw], srt, order,
                     rep, first, lo_s, hi_s, rf, bump)


@njit(cache=True, nogil=True)
def centroid_block_nb(x: np.ndarray, n: int, w: int, rs: int, y: np.ndarray, fold: np.ndarray,
                      counts: np.ndarray, out: np.ndarray, tile: int) -> None:
    """Centroid stats of a float32 block (sample, unit) into ``out`` (2 + class, unit).

    Args:
        x: the block's float32 values as a flat contiguous 1-D array: value ``(i, j)`` at
            ``x[i * rs + j]`` for ``n`` rows (samples, in sample order; they need not be
            sorted by class) of ``w`` units, row stride ``rs`` elements (see
            :func:`flat_rows`; a flat view keeps the inner loops contiguous SIMD loops).
        y: int64 class of each sample. fold: int64 fold of each sample (all 0: ``probe``).
        counts: int64 samples per (fold, class). One fold means ``score="probe"``.
        out: float64, filled like ``neurons._centroid_block``: score, non-finite flag, means.
        tile: units per tile (``NARROW_TILE``).

    Pass 2 takes two rows per step when they are in the same fold: one counter update for
    both (integer counts: the order of additions does not matter).

    Each row's tile is only 16 cache lines, too short a run for the hardware prefetchers to
    ramp up, and pass 2 computes from cache while the memory bus idles; so pass 1 prefetches
    the row ``PREFETCH_ROWS`` ahead and pass 2 prefetches the next tile's rows into the
    outer caches, overlapping the next tile's reads with this tile's counting. Prefetches
    are hints: the results are the same with or without them.
    """
    n_folds, n_cls = counts.shape
    n_seg = n_folds * n_cls
    seg = fold * n_cls + y
    class_counts = np.zeros(n_cls, np.float64)
    fold_n = np.zeros(n_folds, np.int64)
    for f in range(n_folds):
        for c in range(n_cls):
            fold_n[f] += counts[f, c]
    for c in range(n_cls):  # counts.sum(0), as float64
        s = 0
        for f in range(n_folds):
            s += counts[f, c]
        class_counts[c] = s
    sums = np.empty((n_seg, tile), np.float32)
    lo = np.empty((n_folds, n_cls, tile), np.float32)
    hi = np.empty((n_folds, n_cls, tile), np.float32)
    cnt = np.empty((n_folds, tile), np.int32)
    scratch = _bounds_scratch(n_cls)
    csum, means = scratch[0], scratch[1]
    for j0 in range(0, w, tile):
        tw = min(tile, w - j0)
        sums[:, :tw] = 0.0
        for i in range(n):  # pass 1: float32 segment sums, rows in sample order
            if i + PREFETCH_ROWS < n:
                ahead = (i + PREFETCH_ROWS) * rs + j0
                for q in range(0, tw, LINE):
                    prefetch(x, ahead + q, 3)
            xr = x[i * rs + j0:i * rs + j0 + tw]
            sr = sums[seg[i], :tw]
            for j in range(tw):
                sr[j] += xr[j]
        for s0 in range(0, tw, SUB):  # means and bounds per sub-tile: scratch stays in L1/L2
            sw = min(SUB, tw - s0)
            _class_means(sums, 0, s0, sw, n_folds, class_counts, csum, means)
            for c in range(n_cls):
                for j in range(sw):
                    out[2 + c, j0 + s0 + j] = means[c, j]
            for j in range(sw):
                finite = True
                for c in range(n_cls):
                    finite = finite and np.isfinite(csum[c, j])
                out[1, j0 + s0 + j] = 0.0 if finite else 1.0
            _fold_bounds(sums, 0, s0, sw, class_counts, counts, lo, hi, scratch)
        cnt[:, :tw] = 0
        nw = min(tile, w - j0 - tile)  # the next tile's width (<= 0: none)
        i = 0
        while i < n:  # pass 2: each row against its own class's interval (in its fold)
            if nw > 0:  # the next tile's rows i, i + 1, to come (this loop form measured
                for r in (i, i + 1):  # faster than a range over them)
                    if r < n:
                        ahead = r * rs + j0 + tile
                        for q in range(0, nw, LINE):
                            prefetch(x, ahead + q, 1)
            f = fold[i]
            cr = cnt[f, :tw]
            p0 = x[i * rs + j0:i * rs + j0 + tw]
            l0 = lo[f, y[i], :tw]
            h0 = hi[f, y[i], :tw]
            if i + 1 < n and fold[i + 1] == f:
                p1 = x[(i + 1) * rs + j0:(i + 1) * rs + j0 + tw]
                l1 = lo[f, y[i + 1], :tw]
                h1 = hi[f, y[i + 1], :tw]
                for j in range(tw):
                    v0 = p0[j]
                    v1 = p1[j]
                    cr[j] += (np.int32((l0[j] <= v0) & (v0 <= h0[j]))
                              + np.int32((l1[j] <= v1) & (v1 <= h1[j])))
                i += 2
            else:
                for j in range(tw):
                    v0 = p0[j]
                    cr[j] += np.int32((l0[j] <= v0) & (v0 <= h0[j]))
                i += 1
        for j in range(tw):
            if n_folds == 1:
                out[0, j0 + j] = cnt[0, j] / n
            else:
                acc = 0.0  # np.mean over the folds' held-out accuracies
                for f in range(n_folds):
                    acc += cnt[f, j] / fold_n[f]
                out[0, j0 + j] = acc / n_folds


PERM_CACHE = 1 << 20  # bytes of per-permutation scratch (sums + intervals) kept in L2


def perm_group(n_folds: int, n_cls: int, tile: int) -> int:
    """Permutations scored together per tile, so their scratch fits :data:`PERM_CACHE`."""
    per_perm = 3 * n_folds * n_cls * tile * 4  # float32 segment sums + lo + hi
    return max(1, PERM_CACHE // per_perm)


@njit(cache=True, nogil=True)
def centroid_perm_block_nb(x: np.ndarray, n: int, w: int, rs: int, ys: np.ndarray,
                           folds: np.ndarray, counts: np.ndarray, scores: np.ndarray,
                           bad: np.ndarray, tile: int, group: int) -> None:
    """Centroid scores of one block under many label vectors (permutations) at once.

    Per permutation ``p`` the score equals ``out[0]`` of :func:`centroid_block_nb` with
    ``y = ys[p]``, ``fold = folds[p]``, ``counts = counts[p]``, bit for bit: the same float32
    segment sums in sample order, the same float64 means and :func:`_bounds_tile` intervals,
    the same integer counts. The difference is the loop order: each column tile is read from
    memory once and stays in cache while ``group`` permutations at a time sum and count it.

    Args:
        x, n, w, rs: the block as from :func:`flat_rows`.
        ys, folds: int64 (perm, sample) labels and folds (all 0 for ``score="probe"``).
        counts: int64 (perm, fold, class) sample counts.
        scores: float64 (perm, unit) output. bad: float64 (unit,) output, 1.0 where a class
            sum is non-finite under any permutation.
        tile: units per tile (``TILE``). group: permutations per pass over a tile.
    """
    n_perm = ys.shape[0]
    n_folds, n_cls = counts.shape[1], counts.shape[2]
    n_seg = n_folds * n_cls
    class_counts = np.zeros((n_perm, n_cls), np.float64)
    fold_n = np.zeros((n_perm, n_folds), np.int64)
    for p in range(n_perm):
        for f in range(n_folds):
            for c in range(n_cls):
                fold_n[p, f] += counts[p, f, c]
        for c in range(n_cls):
            s = 0
            for f in range(n_folds):
                s += counts[p, f, c]
            class_counts[p, c] = s
    seg = folds * n_cls + ys
    sums = np.empty((group * n_seg, tile), np.float32)
    lo = np.empty((group, n_folds, n_cls, tile), np.float32)
    hi = np.empty((group, n_folds, n_cls, tile), np.float32)
    cnt = np.empty((group, n_folds, tile), np.int32)
    scratch = _bounds_scratch(n_cls)
    csum, means = scratch[0], scratch[1]
    bad[:] = 0.0
    for j0 in range(0, w, tile):
        tw = min(tile, w - j0)
        for p0 in range(0, n_perm, group):
            g = min(group, n_perm - p0)
            sums[:g * n_seg, :tw] = 0.0
            for i in range(n):  # pass 1: each row once, added to its segment per permutation
                xr = x[i * rs + j0:i * rs + j0 + tw]
                for q in range(g):
                    sr = sums[q * n_seg + seg[p0 + q, i], :tw]
                    for j in range(tw):
                        sr[j] += xr[j]
            for q in range(g):
                p = p0 + q
                for s0 in range(0, tw, SUB):
                    sw = min(SUB, tw - s0)
                    _class_means(sums, q * n_seg, s0, sw, n_folds, class_counts[p], csum, means)
                    for j in range(sw):
                        for c in range(n_cls):
                            if not np.isfinite(csum[c, j]):
                                bad[j0 + s0 + j] = 1.0
                    _fold_bounds(sums, q * n_seg, s0, sw, class_counts[p], counts[p], lo[q],
                                 hi[q], scratch)
            cnt[:g, :, :tw] = 0
            for i in range(n):  # pass 2: the same rows, still in cache, per permutation
                v = x[i * rs + j0:i * rs + j0 + tw]
                for q in range(g):
                    f = folds[p0 + q, i]
                    c = ys[p0 + q, i]
                    cr = cnt[q, f, :tw]
                    lr = lo[q, f, c, :tw]
                    hr = hi[q, f, c, :tw]
                    for j in range(tw):
                        cr[j] += np.int32((lr[j] <= v[j]) & (v[j] <= hr[j]))
            for q in range(g):
                p = p0 + q
                for j in range(tw):
                    if n_folds == 1:
                        scores[p, j0 + j] = cnt[q, 0, j] / n
                    else:
                        acc = 0.0
                        for f in range(n_folds):
                            acc += cnt[q, f, j] / fold_n[p, f]
                        scores[p, j0 + j] = acc / n_folds
