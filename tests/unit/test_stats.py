"""Exact McNemar and Holm against hand-computed binomial cases and scipy/statsmodels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from sn_interp.probes.stats import holm, holm_across, mcnemar_exact, null_ceiling, paired_tests


def _correct(both: int, only_a: int, only_b: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([1] * both + [1] * only_a + [0] * only_b + [0] * neither, bool)
    b = np.array([1] * both + [0] * only_a + [1] * only_b + [0] * neither, bool)
    return a, b


@pytest.mark.parametrize(("only_a", "only_b", "expect"), [
    (3, 0, 2 * 0.5 ** 3),                 # 2 * P(X = 0), X ~ Bin(3, 1/2)
    (5, 1, 2 * (1 + 6) / 2 ** 6),         # 2 * P(X <= 1), X ~ Bin(6, 1/2)
    (4, 4, 1.0),                          # balanced discordance
    (0, 0, 1.0),                          # never disagree
    (10, 2, 2 * (1 + 12 + 66) / 2 ** 12),  # 2 * P(X <= 2), X ~ Bin(12, 1/2)
])
def test_mcnemar_hand_computed(only_a, only_b, expect):
    a, b = _correct(7, only_a, only_b, 3)
    r = mcnemar_exact(a, b)
    assert (r["b"], r["c"]) == (only_a, only_b)
    assert r["p_value"] == pytest.approx(expect, rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_mcnemar_matches_scipy_binomtest(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.random(60) < 0.7, rng.random(60) < 0.5
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    ref = binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue
    assert mcnemar_exact(a, b)["p_value"] == pytest.approx(min(ref, 1.0), rel=1e-10)


def test_paired_tests_every_pair_and_refuses_other_samples():
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    preds = {"sn": y.copy(), "sav": np.where(np.arange(8) < 2, 1 - y, y),
             "zero_shot": np.full(8, -1)}
    df = paired_tests(preds, y)
    assert df[["a", "b"]].values.tolist() == [["sn", "sav"], ["sn", "zero_shot"],
                                             ["sav", "zero_shot"]]
    row = df.iloc[1]
    assert (row.only_a, row.only_b, row.accuracy_a, row.accuracy_b) == (8, 0, 1.0, 0.0)
    assert row.p_value == pytest.approx(2 / 2 ** 8)
    with pytest.raises(ValueError, match="same test samples"):
        paired_tests({"sn": y, "sav": y[:4]}, y)


def test_holm_matches_definition():
    p = np.array([0.01, 0.04, 0.03, np.nan])
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, max(2*0.03, .03), max(1*0.04, .06)
    np.testing.assert_allclose(holm(p)[:3], [0.03, 0.06, 0.06])
    assert np.isnan(holm(p)[3])
    df = pd.DataFrame({"model": ["m", "m", "n"], "task": ["x", "y", "x"],
                       "p_value": [0.01, 0.02, 0.3]})
    out = holm_across(df, ["model"])
    np.testing.assert_allclose(out.p_holm, [0.02, 0.02, 0.3])


def test_null_ceiling_is_the_95th_percentile():
    assert null_ceiling(np.arange(101)) == 95.0
