"""The Rule registry and the interval rule: brute-force oracle, properties, plug-in rules."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import xarray as xr
from conftest import make_acts
from sklearn.model_selection import StratifiedKFold

import sn_interp as sn
from sn_interp.probes.rules import Rule, base, get_rule, register, rule_names
from sn_interp.probes.rules.interval import interval_fit, interval_predict


def _brute_interval(x: np.ndarray, y: np.ndarray, n_classes: int):
    """Every non-decreasing tuple of cut positions between distinct sorted values, scored by
    counting; best by (most correct, then the smallest top cut, then the next, ...)."""
    xv = x.astype(np.float64)
    means = [float(np.mean(xv[y == c])) for c in range(n_classes)]
    order = sorted(range(n_classes), key=lambda c: (means[c], c))
    srt = np.sort(xv)
    n = len(xv)
    allowed = [0] + [j for j in range(1, n) if srt[j] > srt[j - 1]] + [n]
    best = None
    for pos in itertools.combinations_with_replacement(allowed, n_classes - 1):
        cuts = [-np.inf if p == 0 else np.inf if p == n else (srt[p - 1] + srt[p]) / 2
                for p in pos]
        pred = [order[sum(v > t for t in cuts)] for v in xv]
        correct = int(sum(int(p == t) for p, t in zip(pred, y, strict=True)))
        key = (-correct, *reversed(pos))
        if best is None or key < best[0]:
            best = (key, cuts, correct)
    assert best is not None
    return best[1], order, best[2]


@pytest.mark.parametrize("n_classes", [2, 3, 4])
def test_interval_matches_brute_force(n_classes):
    rng = np.random.default_rng(n_classes)
    for trial in range(60):
        n = int(rng.integers(n_classes, 9))
        y = np.concatenate([np.arange(n_classes), rng.integers(0, n_classes, n - n_classes)])
        # few distinct values: many ties, equal class means now and then
        x = rng.integers(-3, 4, (n, 1)).astype(np.float32) * np.float32(0.5)
        if trial % 3 == 0:
            x = rng.standard_normal((n, 1)).astype(np.float32)
        params = interval_fit(x, y, n_classes)
        cuts, order, correct = _brute_interval(x[:, 0], y, n_classes)
        assert params[:n_classes - 1, 0].tolist() == cuts, (x.ravel(), y)
        assert params[n_classes - 1:, 0].astype(int).tolist() == order
        stats = get_rule("interval").score_block(x, y, n_classes=n_classes)
        assert stats[0, 0] == correct / n
        new = rng.standard_normal((20, 1)).astype(np.float32)
        expect = [order[sum(float(v) > t for t in cuts)] for v in new[:, 0]]
        assert interval_predict(new, params, n_classes)[:, 0].tolist() == expect


def test_interval_orders_three_classes_where_one_vs_rest_fails():
    # the case: one neuron orders 3 classes along its value (0 low, 1 middle, 2 high)
    def acts(seed, split):
        return make_acts(n_classes=3, n_per_class=20, layers=(0,), sites=("mlp_post",),
                         planted={("mlp_post", 0, 3): 1.0}, seed=seed, split=split)
    probe, test = acts(0, "probe"), acts(1, "test")
    scores = {}
    for rule in ("interval", "threshold", "centroid"):
        found = sn.find_super_neurons(probe, k=1, rule=rule, sites="mlp_post", progress=False)
        row = found.table.isel(neuron=int(np.nonzero(found.table.unit.values == 3)[0][0]))
        test_x = test["mlp_post"].sel(layer=0).values[:, [3]]
        rule_ = get_rule(rule)
        pred = rule_.predict(test_x, rule_.table_params(row.expand_dims("neuron")), 3)[:, 0]
        scores[rule] = float(np.mean(pred == test.label.values))
    assert scores["interval"] == 1.0 and scores["centroid"] == 1.0
    assert scores["threshold"] == pytest.approx(2 / 3, abs=0.05)


def test_interval_probe_accuracy_never_below_centroid():
    acts = make_acts(n_classes=4, n_per_class=6, layers=(0, 1))
    cen = sn.find_super_neurons(acts, rule="centroid", progress=False).table
    itv = sn.find_super_neurons(acts, rule="interval", progress=False).table
    key = ["site", "layer", "unit"]
    c = cen.score.to_dataframe().reset_index().set_index(key)["score"]
    i = itv.score.to_dataframe().reset_index().set_index(key)["score"]
    diff = (i - c.loc[i.index]).to_numpy()
    assert (diff >= -1e-12).all() and (diff > 0).any()


def test_interval_cv_matches_manual_folds():
    acts = make_acts(n_classes=3, n_per_class=8, layers=(0,), sites=("resid_post",))
    found = sn.find_super_neurons(acts, k=1, rule="interval", score="cv", folds=4, seed=2,
                                  progress=False)
    x = acts["resid_post"].sel(layer=0).values
    y = acts.label.values
    accs = []
    for tr, te in StratifiedKFold(4, shuffle=True, random_state=2).split(x, y):
        p = interval_fit(x[tr], y[tr], 3)
        accs.append((interval_predict(x[te], p, 3) == y[te, None]).mean(0))
    t = found.table.sortby("unit")
    np.testing.assert_allclose(t.score.values, np.mean(accs, 0), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(t.cuts.values, interval_fit(x, y, 3)[:2].T)


def test_interval_selection_predicts_saves_and_loads(tmp_path):
    planted = {("mlp_post", 1, 5): 3.0, ("z", 2, 6): 2.0}
    acts = make_acts(planted=planted, n_per_class=9, n_classes=3)
    found = sn.find_super_neurons(acts, k=2, rule="interval", progress=False)
    assert {(s, int(la), int(u)) for s, la, u in zip(found.selected.site.values,
                                                     found.selected.layer.values,
                                                     found.selected.unit.values,
                                                     strict=True)} == set(planted)
    assert found.table.cuts.dims == ("neuron", "cut") and found.table.sizes["interval"] == 3
    test = make_acts(planted=planted, n_per_class=10, n_classes=3, seed=4, split="test")
    assert float((found.predict(test) == test.label).mean()) == 1.0
    found.save(tmp_path / "sn")
    back = sn.SuperNeurons.load(tmp_path / "sn")
    assert back.rule == "interval"
    xr.testing.assert_equal(back.table, found.table)
    np.testing.assert_array_equal(back.predict(test).values, found.predict(test).values)


def test_centroid_fit_equals_its_scoring_params():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 7)).astype(np.float32)
    y = rng.permutation(np.arange(30) % 3)
    rule = get_rule("centroid")
    np.testing.assert_array_equal(rule.fit(x, y, 3), rule.score_block(x, y)[2:])
    np.testing.assert_allclose(rule.fit(x, y, 3)[1], x[y == 1].mean(0), rtol=1e-6)


def test_unknown_and_duplicate_rules_fail_clearly():
    with pytest.raises(ValueError, match=r"unknown rule 'knn'.*interval"):
        get_rule("knn")
    with pytest.raises(ValueError, match="rule must be one of centroid, threshold, interval"):
        from sn_interp.analyses._common import StudyConfig
        StudyConfig(rule="knn")

    class Other(Rule):
        name = "centroid"
    with pytest.raises(ValueError, match="already registered"):
        register(Other)  # type: ignore[type-abstract]


def test_a_plugin_rule_is_one_class(monkeypatch, tmp_path):
    """A rule defined outside the package works in selection, prediction and save/load."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))

    @register
    class Median(Rule):  # binary: class 1 above the midpoint of the two class medians
        name = "median"

        def n_params(self, n_classes):
            return 1

        def fit(self, x, y, n_classes):
            return ((np.median(x[y == 0], 0) + np.median(x[y == 1], 0)) / 2)[None]

        def predict(self, x, params, n_classes):
            return (x > params[0]).astype(np.int64)

        def table_vars(self, params, n_classes):
            return {"cut": ("neuron", params[0])}

        def table_params(self, table):
            return np.asarray(table["cut"].values)[None]

    assert rule_names()[-1] == "median"
    acts = make_acts(planted={("mlp_post", 1, 5): 3.0}, n_per_class=8)
    found = sn.find_super_neurons(acts, k=1, rule="median", score="cv", folds=2,
                                  progress=False)
    assert found.selected.id.values[0] == "blocks.1.mlp.hook_post[5]"
    found.save(tmp_path / "m")
    back = sn.SuperNeurons.load(tmp_path / "m")
    np.testing.assert_array_equal(back.predict(acts).values, acts.label.values)
