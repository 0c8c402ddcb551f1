"""The compiled threshold kernel equals the rule's numpy reference bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from sn_interp.probes import _threshold_kernels, neurons
from sn_interp.probes._kernels import flat_rows
from sn_interp.probes._threshold_kernels import threshold_block_nb
from sn_interp.probes.rules import get_rule
from sn_interp.probes.rules.base import Rule

RULE = get_rule("threshold")
SPECIAL = np.array([-0.0, 0.0, 1e-45, -1e-45, 3e38, -3e38, 1.0, np.nextafter(1.0, 2.0, dtype=np.float32),
                    -1.0, 2.0, 0.5, 1e7, 1e7 + 1], np.float32)


@pytest.fixture(autouse=True, params=[False, True], ids=["int64-sort", "float64-sort"])
def float_keys(request, monkeypatch):
    """Every test runs with both key formats (the kernel takes the one this CPU sorts
    faster; the rest of the suite runs this CPU's choice)."""
    monkeypatch.setattr(_threshold_kernels, "_float_sort_faster", lambda: request.param)
    return request.param


def _reference(x, y, folds, c):
    return Rule.score_block(RULE, x, y, folds, n_classes=c)


def _data(kind: str, rng, n: int, w: int) -> np.ndarray:
    if kind == "normal":
        return rng.standard_normal((n, w)).astype(np.float32)
    if kind == "ties":
        return rng.integers(-3, 4, (n, w)).astype(np.float32)
    if kind == "special":
        return rng.choice(SPECIAL, (n, w))
    if kind == "huge":  # magnitudes 1e-30..1e30: thresholds within rounding of each
        # other, so the kernel evaluates every sample (checked with NUMBA_DISABLE_JIT)
        return (rng.standard_normal((n, w)) * 10.0 ** rng.integers(-30, 30, (n, w))).astype(
            np.float32)
    x = rng.standard_normal((n, w)).astype(np.float32)
    x[rng.integers(0, n), 0] = np.nan
    x[:, -1] = np.inf
    x[0, 1 % w] = -np.inf
    return x


@pytest.mark.parametrize("kind", ["normal", "ties", "special", "huge", "nonfinite"])
@pytest.mark.parametrize("n_classes", [2, 3, 10])
@pytest.mark.parametrize("score", ["probe", "cv"])
def test_kernel_matches_numpy_reference(kind, n_classes, score):
    rng = np.random.default_rng(n_classes * 7 + len(kind))
    for trial in range(4):
        n = int(rng.integers(3 * n_classes, 120))
        y = np.arange(n) % n_classes
        rng.shuffle(y)
        x = _data(kind, rng, n, int(rng.integers(2, 40)))
        folds = None
        if score == "cv":
            folds = neurons.make_plan(y, n_classes, "threshold", "cv", 3, trial).fold
        np.testing.assert_array_equal(RULE.score_block(x, y, folds, n_classes=n_classes),
                                      _reference(x, y, folds, n_classes))


def test_tiles_column_slices_and_absent_classes():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((60, 700)).astype(np.float32)
    x[:, 5] = 0.25  # a constant column
    y = rng.integers(0, 3, 60)
    for part in (x, x[:, 1:3], x[:, 100:613], x[:, ::2], x[:, :1]):
        for c in (3, 5):  # 5: two classes absent from the labels
            ref = _reference(part, y, None, c)
            np.testing.assert_array_equal(RULE.score_block(part, y, n_classes=c), ref)
            for tile in (1, 7, 256):
                out = np.empty_like(ref)
                flat, n, w, rs = flat_rows(part)
                threshold_block_nb(flat, n, w, rs, y, np.zeros(60, np.int64), c, 1, False, out,
                                   tile)
                np.testing.assert_array_equal(out, ref)



@pytest.mark.parametrize("n_classes", [2, 10])
@pytest.mark.parametrize("score", ["probe", "cv"])
def test_kernel_matches_reference_at_probe_set_size(n_classes, score):
    """1,000 samples (the benchmark's size): the bucket fits, the binary in-sample count and
    the held-out counts by fold code meet every tie-free unit, with a few tied ones."""
    rng = np.random.default_rng(n_classes)
    n = 1000
    y = rng.permutation(np.arange(n) % n_classes)
    x = rng.standard_normal((n, 48)).astype(np.float32)
    x[:, :4] = np.round(x[:, :4], 1)  # ties
    x[rng.integers(0, n, 5), 5] = x[0, 5]
    folds = neurons.make_plan(y, n_classes, "threshold", "cv", 5, 0).fold if score == "cv" \
        else None
    np.testing.assert_array_equal(RULE.score_block(x, y, folds, n_classes=n_classes),
                                  _reference(x, y, folds, n_classes))


@pytest.mark.parametrize("n_classes", [2, 4])
def test_many_folds_take_the_per_fold_fit(n_classes):
    """12 folds leave 5 bits per fold's packed count, too few for 120 samples: each fold's
    buckets are rebuilt instead; both paths equal the reference."""
    rng = np.random.default_rng(5)
    for n, folds in ((120, 12), (120, 4)):
        y = rng.permutation(np.arange(n) % n_classes)
        x = rng.standard_normal((n, 30)).astype(np.float32)
        fold = neurons.make_plan(y, n_classes, "threshold", "cv", folds, 1).fold
        np.testing.assert_array_equal(RULE.score_block(x, y, fold, n_classes=n_classes),
                                      _reference(x, y, fold, n_classes))
