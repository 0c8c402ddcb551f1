"""SuperNeurons: planted neurons, oracles (sklearn / brute force), dask agreement, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from conftest import make_acts, to_zarr
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import NearestCentroid

import sn_interp as sn
from sn_interp.names import neuron_id
from sn_interp.probes.neurons import centroid_bounds, centroid_predict, threshold_predict
from sn_interp.probes.rules import get_rule

PLANTED = {("mlp_post", 1, 5): 3.0, ("z", 2, 6): 2.0}


def _flat(acts, site, layer):
    v = acts[site].sel(layer=layer).values
    return v.reshape(v.shape[0], -1)


@pytest.mark.parametrize("rule", ["centroid", "threshold"])
@pytest.mark.parametrize("score", ["probe", "cv"])
def test_planted_neurons_rank_first(rule, score):
    acts = make_acts(planted=PLANTED, n_per_class=12)
    found = sn.find_super_neurons(acts, k=2, rule=rule, score=score, progress=False)
    top = {(s, int(la), int(u)) for s, la, u in zip(found.selected.site.values,
                                                     found.selected.layer.values,
                                                     found.selected.unit.values,
                                                     strict=True)}
    assert top == set(PLANTED)
    assert found.selected.score.values.tolist() == [1.0, 1.0]
    # tie at 1.0 broken by (layer, site order, unit): layer 1 before layer 2
    assert found.selected.id.values.tolist() == [neuron_id("mlp_post", 1, 5),
                                                 neuron_id("z", 2, 6, d_head=4)]
    assert found.sites == ("z", "mlp_post") and found.layers == (1, 2) and found.max_layer == 2
    test = make_acts(planted=PLANTED, n_per_class=20, seed=1, split="test")
    assert float((found.predict(test) == test.label).mean()) == 1.0


def test_centroid_scores_match_sklearn_nearest_centroid():
    acts = make_acts(n_classes=3, n_per_class=8, layers=(0, 4), sites=("resid_post", "z"))
    found = sn.find_super_neurons(acts, k=1, progress=False)
    cv = sn.find_super_neurons(acts, k=1, score="cv", folds=4, seed=3, progress=False)
    y = acts.label.values
    skf = StratifiedKFold(4, shuffle=True, random_state=3)
    t, tcv = found.table, cv.table
    for i in range(0, t.sizes["neuron"], 5):
        site, layer, unit = str(t.site[i].values), int(t.layer[i]), int(t.unit[i])
        x = _flat(acts, site, layer)[:, [unit]]
        nc = NearestCentroid().fit(x, y)
        assert t.score.values[i] == pytest.approx(np.mean(nc.predict(x) == y))
        np.testing.assert_allclose(t.centroids.values[i], nc.centroids_.ravel(), rtol=1e-6)
        sel = (tcv.site == site) & (tcv.layer == layer) & (tcv.unit == unit)
        expect = cross_val_score(NearestCentroid(), x, y, cv=skf).mean()
        assert float(tcv.score.values[sel.values][0]) == pytest.approx(expect)


def test_centroid_rule_hand_cases_and_ties():
    # means 0, 2, 2 (classes 1 and 2 equal): class 2 never wins; x=1 is a tie -> class 0
    lo, hi = centroid_bounds(np.array([[0.0], [2.0], [2.0]]))
    x = np.array([[-5], [0.99], [1.0], [1.01], [2.0], [9]], np.float32)
    assert centroid_predict(x, lo, hi).ravel().tolist() == [0, 0, 0, 1, 1, 1]
    # reversed order: class 0 at 2, class 1 at 0 -> the midpoint 1 goes to class 0
    lo, hi = centroid_bounds(np.array([[2.0], [0.0]]))
    assert centroid_predict(np.array([[1.0], [0.5]], np.float32), lo, hi).ravel().tolist() == [0, 1]
    # brute force against |x - m| argmin on random data
    rng = np.random.default_rng(0)
    means = rng.standard_normal((5, 50))
    x = rng.standard_normal((40, 50)).astype(np.float32)
    brute = np.argmin(np.abs(x[None].astype(np.float64) - means[:, None]), axis=0)
    lo, hi = centroid_bounds(means)
    np.testing.assert_array_equal(centroid_predict(x, lo, hi), brute)


def _brute_threshold(x, y):
    best = (-1, None, None)
    cuts = np.concatenate([[-np.inf], (np.unique(x)[1:] + np.unique(x)[:-1]) / 2, [np.inf]])
    for pol in (1, -1):
        for t in cuts:
            acc = np.sum((pol * (x - t) > 0).astype(int) == y)
            if acc > best[0]:
                best = (acc, t, pol)
    return best


def test_threshold_matches_brute_force_binary():
    acts = make_acts(n_per_class=7, layers=(0,), sites=("mlp_post",))
    found = sn.find_super_neurons(acts, k=1, rule="threshold", progress=False)
    y = acts.label.values
    x_all = _flat(acts, "mlp_post", 0).astype(np.float64)
    t = found.table.sortby("unit")
    for u in range(x_all.shape[1]):
        acc, thr, pol = _brute_threshold(x_all[:, u], y)
        assert t.score.values[u] == pytest.approx(acc / len(y))
        assert t.threshold.values[u] == thr and t.polarity.values[u] == pol


def test_threshold_one_vs_rest_decision():
    t = np.array([[0.5], [1.5], [2.5]])
    pol = np.array([[-1], [1], [1]])
    x = np.array([[0.0], [1.0], [2.0], [3.0]], np.float32)
    # margins at x=2: class0 -1.5, class1 0.5, class2 -0.5 -> class 1; x=3 -> class 1 (1.5 > .5)
    assert threshold_predict(x, t, pol).ravel().tolist() == [0, 0, 1, 1]


def test_zarr_dask_scoring_matches_memory(tmp_path):
    acts = make_acts(planted=PLANTED, n_per_class=9, n_classes=3)
    to_zarr(acts, tmp_path / "a.zarr", 5)
    lazy = xr.open_zarr(tmp_path / "a.zarr", consolidated=False)
    assert lazy.mlp_post.chunks is not None
    for rule in ("centroid", "threshold"):
        mem = sn.find_super_neurons(acts, rule=rule, progress=False)
        dsk = sn.find_super_neurons(lazy, rule=rule, progress=False)
        xr.testing.assert_identical(mem.table.drop_attrs(), dsk.table.drop_attrs())
        np.testing.assert_array_equal(mem.predict(acts).values, dsk.predict(lazy).values)


@pytest.mark.parametrize("rule", ["centroid", "threshold"])
def test_in_memory_chunk_graph_matches_dask_arrays(tmp_path, rule):
    """In memory: one task per chunk view; zarr-backed: dask-array graphs. Small blocks, so
    every site is several chunks, concatenated back; both equal the rule on whole blocks."""
    from sn_interp.probes import neurons
    from sn_interp.probes.super_neurons import _candidate_blocks
    acts = make_acts(planted=PLANTED, n_per_class=9, n_classes=3)
    to_zarr(acts, tmp_path / "a.zarr", 5)
    lazy = xr.open_zarr(tmp_path / "a.zarr", consolidated=False)
    y = acts["label"].values
    plan = neurons.make_plan(y, 3, rule, "cv", 3, 0)
    blocks = _candidate_blocks(acts, None, None)
    mem = neurons.score_blocks(acts, blocks, plan, block=7, progress=False)
    dsk = neurons.score_blocks(lazy, blocks, plan, block=7, progress=False)
    assert list(mem) == list(dsk) == blocks
    r = get_rule(rule)
    for site, layer in blocks:
        x = acts[site].sel(layer=layer).values.reshape(len(y), -1)
        whole = r.score_block(x, plan.y, plan.folds, n_classes=3)
        np.testing.assert_array_equal(mem[site, layer], whole)
        np.testing.assert_array_equal(dsk[site, layer], whole)


def test_votes_majority_and_tie_to_highest_ranked():
    acts = make_acts(planted={("resid_post", 0, 1): 3.0, ("resid_post", 1, 2): -3.0,
                              ("mlp_out", 2, 3): 3.0}, n_per_class=6)
    found = sn.find_super_neurons(acts, k=3, progress=False)
    votes = found.votes(acts, k=2)
    assert "class" not in votes.coords and list(votes.id.values) == list(found.selected.id.values[:2])
    assert votes.dims == ("sample", "neuron") and votes.shape == (12, 2)
    np.testing.assert_array_equal(votes.values, np.stack([acts.label.values] * 2, 1))
    # flip the second-ranked neuron's values: 1-1 ties go to the top neuron, still correct
    bad = acts.copy(deep=True)
    bad["resid_post"].loc[dict(layer=1)] = -bad["resid_post"].sel(layer=1)
    assert (found.predict(bad, k=2) == bad.label).all()


def test_predict_on_minimal_dataset_and_values_path():
    acts = make_acts(planted=PLANTED, n_per_class=8, layers=(0, 1, 2, 5))
    found = sn.find_super_neurons(acts, k=4, progress=False)
    test = make_acts(planted=PLANTED, n_per_class=8, seed=2, layers=(0, 1, 2, 5))
    minimal = test[list(found.sites)].sel(layer=list(found.layers) + [5])
    full_pred = found.predict(test)
    np.testing.assert_array_equal(found.predict(minimal).values, full_pred.values)
    values = {}
    for (site, layer), units in found.requirements().items():
        values[site, layer] = _flat(test, site, layer)[:, units]
    np.testing.assert_array_equal(found.predict_values(values), full_pred.values)
    assert full_pred.name == "pred" and list(full_pred.sample_id.values[:1]) == ["probe0"]


def test_max_layer_and_sites_restrict_candidates():
    acts = make_acts(planted=PLANTED, n_per_class=8)
    found = sn.find_super_neurons(acts, k=5, max_layer=1, progress=False)
    assert found.table.layer.max() <= 1 and found.selected.id.values[0] == neuron_id("mlp_post", 1, 5)
    only_z = sn.find_super_neurons(acts, k=1, sites="z", progress=False)
    assert set(only_z.table.site.values) == {"z"}


def test_save_load_roundtrip(tmp_path):
    acts = make_acts(planted=PLANTED, n_per_class=8, n_classes=3)
    for rule in ("centroid", "threshold"):
        found = sn.find_super_neurons(acts, k=3, rule=rule, progress=False)
        found.save(tmp_path / rule)
        back = sn.SuperNeurons.load(tmp_path / rule)
        assert not list((tmp_path / rule).glob("*.pkl"))
        assert back.k == 3 and back.class_names == found.class_names
        assert back.attrs["model_id"] == "synthetic" and "prompt_template" in back.attrs
        xr.testing.assert_equal(back.table, found.table)
        np.testing.assert_array_equal(back.predict(acts).values, found.predict(acts).values)


def test_bad_inputs_fail_clearly():
    acts = make_acts(planted=PLANTED, n_per_class=5)
    with pytest.raises(ValueError, match="single class"):
        sn.find_super_neurons(acts.isel(sample=acts.label.values == 0), progress=False)
    nolab = acts.assign_coords(label=("sample", np.full(10, -1)))
    with pytest.raises(ValueError, match="no label"):
        sn.find_super_neurons(nolab, progress=False)
    with pytest.raises(ValueError, match="no 'label'"):
        sn.find_super_neurons(acts.drop_vars("label"), progress=False)
    nan = acts.copy(deep=True)
    nan["mlp_post"][3, 1, 7] = np.nan
    with pytest.raises(ValueError, match=r"blocks\.1\.mlp\.hook_post\[7\]"):
        sn.find_super_neurons(nan, progress=False)
    nan["mlp_post"][3, 1, 7] = np.inf
    with pytest.raises(ValueError, match=r"blocks\.1\.mlp\.hook_post\[7\]"):
        sn.find_super_neurons(nan, rule="threshold", progress=False)
    with pytest.raises(ValueError, match="k=100000"):
        sn.find_super_neurons(acts, k=100000, progress=False)
    for kw, msg in [({"rule": "knn"}, "unknown rule"), ({"score": "auc"}, "unknown score"),
                    ({"sites": "mlp_pre"}, "unknown site"), ({"score": "cv", "folds": 9}, "folds")]:
        with pytest.raises(ValueError, match=msg):
            sn.find_super_neurons(acts, progress=False, **kw)
    found = sn.find_super_neurons(acts, k=2, progress=False)
    with pytest.raises(ValueError, match=r"site 'mlp_post'.*sn.extract"):
        found.predict(acts.drop_vars("mlp_post"))
    with pytest.raises(ValueError, match=r"layer\(s\) \[2\] of site 'z'"):
        found.predict(acts.sel(layer=[0, 1]))


def _oracle_centroid_pred(x: float, means: list[float]) -> int:
    """Brute-force centroid rule for one float32 value (as float64, exact): walk the sorted
    distinct means; beyond a float64 midpoint x goes up, on it to the lower class index."""
    groups = sorted({m: min(c for c, v in enumerate(means) if v == m) for m in means}.items())
    cls = groups[0][1]
    for (m0, c0), (m1, c1) in zip(groups, groups[1:], strict=False):
        mid = (m0 + m1) / 2
        if x > mid or (x == mid and c1 < c0):
            cls = c1
        else:
            break
    return cls


def _oracle_sums(x: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class float32 sums accumulated in sample order, as float64 (as the kernel)."""
    out = np.zeros((n_classes, x.shape[1]))
    for c in range(n_classes):
        acc = np.zeros(x.shape[1], np.float32)
        for r in x[y == c]:
            acc = acc + r
        out[c] = acc
    return out


@pytest.mark.parametrize("score", ["probe", "cv"])
def test_centroid_kernel_matches_brute_force_with_ties(score):
    from sn_interp.probes import neurons
    rng = np.random.default_rng(7)
    n_cls, n = 4, 37
    y = rng.permutation(np.concatenate([np.repeat(np.arange(n_cls), 5),
                                        rng.integers(0, n_cls, n - 5 * n_cls)]))
    # small integers: equal means across classes and values exactly on midpoints;
    # plus a random column, a constant column and one whose classes share a mean
    x = rng.integers(-2, 3, (n, 40)).astype(np.float32) / 2
    x[:, 0] = rng.standard_normal(n)
    x[:, 1] = 0.5
    x[:, 2] = np.where(y < 2, 1.0, 3.0)
    plan = neurons.make_plan(y, n_cls, "centroid", score, 3, 1)
    stats = neurons._centroid_block(x, plan)
    # cv: per-fold float32 sums, added in float64; train means leave one fold's sums out
    fold = plan.fold
    sums = np.stack([_oracle_sums(x[fold == f], y[fold == f], n_cls) for f in range(plan.n_folds)])
    cnt = np.stack([np.bincount(y[fold == f], minlength=n_cls) for f in range(plan.n_folds)])
    accs = []
    for f in range(plan.n_folds):
        te = fold == f
        if score == "probe":
            means = sums.sum(0) / cnt.sum(0)[:, None]
        else:
            means = (sums.sum(0) - sums[f]) / (cnt.sum(0) - cnt[f])[:, None]
        pred = np.array([[_oracle_centroid_pred(float(row[j]), list(means[:, j]))
                          for j in range(x.shape[1])] for row in x[te]])
        accs.append((pred == y[te, None]).mean(0))
        lo, hi = neurons.centroid_bounds(means)
        np.testing.assert_array_equal(neurons.centroid_predict(x[te], lo, hi), pred)
    np.testing.assert_array_equal(stats[0], np.mean(accs, axis=0))
    np.testing.assert_array_equal(stats[2:], sums.sum(0) / cnt.sum(0)[:, None])
    # the kernel is blockwise: any column split gives the same stats
    parts = [neurons._centroid_block(x[:, a:b], plan) for a, b in ((0, 1), (1, 17), (17, 40))]
    np.testing.assert_array_equal(np.concatenate(parts, 1), stats)


def test_centroid_bounds_brute_force_random_ties():
    rng = np.random.default_rng(3)
    for n_cls in (2, 3, 7, 10):
        means = rng.integers(-3, 4, (n_cls, 60)).astype(np.float64) / 4
        means[:, :20] = rng.standard_normal((n_cls, 20))
        x = np.concatenate([rng.integers(-8, 9, (30, 60)) / 8,
                            rng.standard_normal((10, 60))]).astype(np.float32)
        lo, hi = centroid_bounds(means)
        brute = [[_oracle_centroid_pred(float(v), list(means[:, j])) for j, v in enumerate(row)]
                 for row in x]
        np.testing.assert_array_equal(centroid_predict(x, lo, hi), brute)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.int64 if a.dtype == np.float64 else np.int32)


def _adversarial_means(rng, n_cls: int, n: int) -> np.ndarray:
    """Class means with ties, float32-adjacent values, exact midpoints, zeros, huge values."""
    m = rng.integers(-3, 4, (n_cls, n)).astype(np.float64) / 4  # ties, exact midpoints
    m[:, : n // 4] = rng.standard_normal((n_cls, n // 4))
    base = rng.standard_normal(n).astype(np.float32)
    up = np.nextafter(base, np.float32(np.inf))
    m[:, n // 4: n // 2] = np.where(rng.random((n_cls, n)) < 0.5, base, up)[:, n // 4: n // 2]
    m[:, n // 2] = 0.0
    m[:, n // 2 + 1] = rng.choice([-3e38, 3e38, 1e-45, -1e-45], n_cls)
    m[0, n // 2 + 2] = np.float64(np.float32(1.0)) + 2.0 ** -30  # midpoint between floats
    return m


def test_compiled_bounds_bit_identical_to_numpy():
    from sn_interp.probes._kernels import centroid_bounds_nb
    rng = np.random.default_rng(11)
    for n_cls in (2, 3, 7, 10):
        means = _adversarial_means(rng, n_cls, 300)
        with np.errstate(all="ignore"):  # huge means: float32 rounding overflows
            lo, hi = centroid_bounds(means)
        lo2, hi2 = np.empty_like(lo), np.empty_like(hi)
        centroid_bounds_nb(means, lo2, hi2)
        np.testing.assert_array_equal(_bits(lo2), _bits(lo))
        np.testing.assert_array_equal(_bits(hi2), _bits(hi))


@pytest.mark.parametrize("score", ["probe", "cv"])
def test_compiled_centroid_block_bit_identical_to_numpy(score):
    """The numba kernel (default in score_blocks) against the numpy reference, bit for bit:
    ties, -0.0, values on midpoints, non-finite columns, tile edges, strided column slices."""
    from sn_interp.probes import neurons
    from sn_interp.probes._kernels import TILE
    rng = np.random.default_rng(5)
    for n_cls, n in ((2, 40), (3, 61), (10, 150)):
        y = rng.permutation(np.concatenate([np.repeat(np.arange(n_cls), 5),
                                            rng.integers(0, n_cls, n - 5 * n_cls)]))
        plan = neurons.make_plan(y, n_cls, "centroid", score, 5, 2)
        w = TILE + 70
        x = (rng.integers(-2, 3, (n, w)) / 2).astype(np.float32)
        x[:, :20] = rng.standard_normal((n, 20))
        x[:, 20] = -0.0
        x[:, 21] = np.where(y == 0, 1.0, 3.0)
        x[:, 22] = 3e38  # float32 class sums overflow
        x[3, 23], x[4, 24], x[5, 25] = np.nan, np.inf, -np.inf
        x[:, 26] = np.where(rng.random(n) < 0.5, -0.0, 0.0)
        for part in (x, x[:, 1:3], x[:, 5:w - 3], x[:, :TILE], x[:, :1], x[::1, ::2]):
            with np.errstate(all="ignore"):  # the non-finite columns
                ref = neurons._centroid_block(part, plan)
            got = neurons._centroid_block_compiled(part, plan)
            np.testing.assert_array_equal(_bits(got), _bits(ref))


@pytest.mark.parametrize("score", ["probe", "cv"])
def test_compiled_centroid_block_any_tile_width(score):
    """Tile and sub-tile edges anywhere (tiles narrower and wider than the bounds' sub-tile,
    odd sample counts for the two-rows-per-step count) give the numpy reference bit for bit."""
    from sn_interp.probes import neurons
    from sn_interp.probes._kernels import SUB, TILE, centroid_block_nb, flat_rows
    rng = np.random.default_rng(9)
    n_cls, n = 5, 73
    y = rng.permutation(np.concatenate([np.repeat(np.arange(n_cls), 6),
                                        rng.integers(0, n_cls, n - 6 * n_cls)]))
    plan = neurons.make_plan(y, n_cls, "centroid", score, 4, 3)
    w = 2 * SUB + 37
    x = rng.standard_normal((n, w)).astype(np.float32)
    x[:, ::3] = (rng.integers(-2, 3, (n, len(range(0, w, 3)))) / 2).astype(np.float32)  # ties
    x[:, 7] = -0.0
    x[2, 11] = np.nan
    ref = neurons._centroid_block(x, plan)
    counts = plan.layout.counts.reshape(plan.n_folds, plan.n_classes)
    for tile in (1, 3, SUB - 1, SUB, SUB + 5, w, TILE):
        for part in (x, x[:, 4:]):
            got = np.empty((plan.n_stats, part.shape[1]))
            with np.errstate(all="ignore"):
                centroid_block_nb(*flat_rows(part), np.asarray(y, np.int64), plan.fold, counts,
                                  got, tile)
            np.testing.assert_array_equal(_bits(got), _bits(ref[:, w - part.shape[1]:]))
