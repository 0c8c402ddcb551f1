"""evaluate (hand-computed metrics, sklearn F1 oracle, seeded bootstrap) and linear_probe."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from conftest import make_acts
from sklearn.metrics import f1_score

import sn_interp as sn


def _pred(p, y):
    return xr.DataArray(np.array(p), dims="sample", coords={"label": ("sample", np.array(y))})


def test_hand_computed_metrics():
    res = sn.evaluate(_pred([0, 1, 1, -1, 2, 2], [0, 1, 0, 1, 2, 2]), class_names=["a", "b", "c"])
    assert float(res.accuracy) == pytest.approx(4 / 6)
    assert res.class_accuracy.values.tolist() == [0.5, 0.5, 1.0]
    assert res.confusion.values.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 2]]
    assert res.unmapped.values.tolist() == [0, 1, 0]
    assert list(res.class_name.values) == ["a", "b", "c"]
    expect = f1_score([0, 1, 0, 1, 2, 2], [0, 1, 1, -1, 2, 2], labels=[0, 1, 2], average="macro")
    assert float(res.macro_f1) == pytest.approx(expect)
    assert float(res.accuracy_low) <= float(res.accuracy) <= float(res.accuracy_high)


def test_bootstrap_seeded_and_sensible():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.where(rng.random(400) < 0.8, y, 1 - y)
    a = sn.evaluate(_pred(p, y), seed=1)
    b = sn.evaluate(_pred(p, y), seed=1)
    xr.testing.assert_identical(a, b)
    acc = float(a.accuracy)
    se = np.sqrt(acc * (1 - acc) / 400)
    assert float(a.accuracy_low) == pytest.approx(acc - 1.96 * se, abs=0.015)
    assert float(a.accuracy_high) == pytest.approx(acc + 1.96 * se, abs=0.015)


def test_labels_argument_and_errors():
    res = sn.evaluate(xr.DataArray(np.array([1, 1]), dims="sample"), np.array([1, 0]), n_boot=10)
    assert float(res.accuracy) == 0.5
    with pytest.raises(ValueError, match="no label"):
        sn.evaluate(_pred([0, 1], [0, -1]))
    with pytest.raises(ValueError, match="labels="):
        sn.evaluate(xr.DataArray(np.array([0, 1]), dims="sample"))


def test_linear_probe_finds_planted_direction():
    planted = {("resid_post", 1, 2): 1.5}
    probe = make_acts(planted=planted, n_per_class=15)
    test = make_acts(planted=planted, n_per_class=15, seed=5, split="test")
    res = sn.probes.linear_probe(probe, test, "resid_post", 1)
    assert float(res.accuracy) == 1.0
    assert res.pred.dims == ("sample",) and "sample_id" in res.coords
    with pytest.raises(ValueError, match="layer"):
        sn.probes.linear_probe(probe, test, "resid_post", 9)
