"""Selection null and stability: batched kernel vs the one-plan kernels, brute force, calibration."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_acts, to_zarr
from scipy.stats import kstest

import sn_interp as sn
from sn_interp.probes import neurons
from sn_interp.probes._kernels import centroid_perm_block_nb, flat_rows
from sn_interp.probes.null import _PermPlans, perm_scores
from sn_interp.probes.stability import expected_jaccard, stable_set

PLANTED = {("mlp_post", 1, 5): 3.0, ("z", 2, 6): 2.0}


@pytest.mark.parametrize("score", ["probe", "cv"])
@pytest.mark.parametrize("n_classes", [2, 3, 7])
@pytest.mark.parametrize("ties", [False, True])
def test_perm_kernel_bit_identical_to_unbatched(score, n_classes, ties):
    rng = np.random.default_rng(n_classes)
    y = np.repeat(np.arange(n_classes), 6)
    x = rng.standard_normal((len(y), 301)).astype(np.float32)
    if ties:  # few distinct values: equal means, values on interval boundaries
        x = np.round(x * 2) / 2
    perms = np.stack([rng.permutation(y) for _ in range(7)])
    pp = _PermPlans.make(perms, n_classes, "centroid", score, 3, 0)
    for tile, group in ((1024, 7), (64, 3), (100, 1)):  # partial tiles and permutation groups
        scores, bad = np.empty((7, x.shape[1])), np.empty(x.shape[1])
        centroid_perm_block_nb(*flat_rows(x), pp.ys, pp.folds, pp.counts, scores, bad, tile,
                               group)
        for p, plan in enumerate(pp.plans):
            ref = neurons._centroid_block_compiled(x, plan)
            np.testing.assert_array_equal(scores[p], ref[0])
            np.testing.assert_array_equal(neurons._centroid_block(x, plan)[0], ref[0])
        assert not bad.any()
    view = np.asfortranarray(x)[:, 3:40]  # strided input is copied, same result
    s2, _ = perm_scores(view, pp)
    np.testing.assert_array_equal(s2[0], neurons._centroid_block(view, pp.plans[0])[0])


def _oracle(acts, test, perm, **kw):
    """find_super_neurons itself on the permuted labels (the unbatched path)."""
    found = sn.find_super_neurons(acts.assign_coords(label=("sample", perm)), progress=False,
                                  **kw)
    y = test.label.values
    return (float(found.table.score[0]), str(found.table.id[0].values),
            float((found.predict(test, k=1).values == y).mean()),
            float((found.predict(test).values == y).mean()))


@pytest.mark.parametrize(("rule", "score", "n_classes"), [("centroid", "probe", 2),
                                                          ("centroid", "cv", 3),
                                                          ("threshold", "probe", 3)])
def test_null_equals_reselection_on_each_permutation(rule, score, n_classes):
    acts = make_acts(planted=PLANTED, n_per_class=8, n_classes=n_classes)
    test = make_acts(planted=PLANTED, n_per_class=6, n_classes=n_classes, seed=1, split="test")
    kw = dict(k=3, rule=rule, score=score, folds=2)
    null = sn.selection_null(acts, test, n_perm=6, seed=4, progress=False, **kw)
    rng = np.random.default_rng(4)
    y = acts.label.values
    for p in range(6):
        best, best_id, top1, topk = _oracle(acts, test, rng.permutation(y), seed=4, **kw)
        assert float(null.best_score[p]) == best
        assert str(null.best_id[p].values) == best_id
        assert float(null.test_top1[p]) == top1
        assert float(null.test_topk[p]) == topk
    obs = _oracle(acts, test, y, seed=4, **kw)
    assert null.attrs["observed_best_score"] == obs[0]
    assert null.attrs["observed_test_topk"] == obs[3]
    expect = (1 + (null.test_topk.values >= obs[3]).sum()) / 7
    assert null.attrs["p_test_topk"] == expect


def test_planted_signal_is_significant():
    acts = make_acts(planted=PLANTED, n_per_class=16)
    test = make_acts(planted=PLANTED, n_per_class=10, seed=1, split="test")
    null = sn.selection_null(acts, test, n_perm=200, k=2, progress=False)
    assert null.attrs["p_best_score"] < 0.01
    assert null.attrs["p_test_topk"] < 0.01
    assert null.attrs["observed_test_topk"] == 1.0 > null.attrs["null_ceiling_topk"]


def test_pure_noise_p_values_are_spread_over_0_1():
    ps, pt = [], []
    for seed in range(20):
        acts = make_acts(n_per_class=8, seed=seed, layers=(0, 1))
        test = make_acts(n_per_class=8, seed=100 + seed, layers=(0, 1), split="test")
        null = sn.selection_null(acts, test, n_perm=40, seed=seed, k=3, progress=False)
        ps.append(null.attrs["p_best_score"])
        pt.append(null.attrs["p_test_topk"])
    for p in (np.array(ps), np.array(pt)):
        assert ((p > 0) & (p <= 1)).all()
        assert np.mean(p < 0.05) <= 0.15 and np.median(p) > 0.25
        assert kstest(p, "uniform").pvalue > 1e-3  # loose: discrete, tied p-values


def test_null_refuses_bad_input():
    acts = make_acts(n_per_class=4)
    with pytest.raises(ValueError, match="n_perm"):
        sn.selection_null(acts, n_perm=0)
    other = make_acts(n_per_class=4, n_classes=3, split="test")
    with pytest.raises(ValueError, match="classes"):
        sn.selection_null(acts, other, n_perm=2, progress=False)


def test_stability_planted_neurons_are_stable():
    acts = make_acts(planted=PLANTED, n_per_class=20)
    stab = sn.selection_stability(acts, n_boot=20, k=2, progress=False)
    assert stable_set(stab) == list(stab.id.values[:2])
    assert set(stab.id.values[:2]) == {"blocks.1.mlp.hook_post[5]", "blocks.2.attn.hook_z[1,2]"}
    assert stab.frequency.values[:2].min() >= 0.9
    assert stab.observed_rank.values[:2].tolist() == [0, 1]
    assert stab.attrs["expected_jaccard"] > 0.8
    assert stab.selected.sum("neuron").values.tolist() == [2] * 20
    noise = sn.selection_stability(make_acts(n_per_class=6), n_boot=20, k=3, progress=False)
    assert noise.attrs["expected_jaccard"] < 0.5
    assert sorted(noise.observed_rank.values[noise.observed_rank.values >= 0]) == [0, 1, 2]


def test_expected_jaccard_brute_force():
    rng = np.random.default_rng(0)
    s = rng.random((6, 9)) < 0.4
    pairs = [(i, j) for i in range(6) for j in range(i + 1, 6)]
    ref = np.mean([(s[i] & s[j]).sum() / max((s[i] | s[j]).sum(), 1) for i, j in pairs])
    assert expected_jaccard(s) == pytest.approx(ref)


def test_null_on_dask_and_a_distributed_client_equals_in_memory(tmp_path):
    import xarray as xr
    from distributed import Client

    acts = make_acts(planted=PLANTED, n_per_class=6)
    test = make_acts(planted=PLANTED, n_per_class=4, seed=1, split="test")
    ref = sn.selection_null(acts, test, n_perm=8, k=3, progress=False)
    to_zarr(acts, tmp_path / "probe.zarr", 5)
    lazy = xr.open_zarr(tmp_path / "probe.zarr", consolidated=False)  # out of core, dask
    assert lazy.mlp_post.chunks is not None
    got = sn.selection_null(lazy, test, n_perm=8, k=3, progress=False)
    xr.testing.assert_identical(got, ref)
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None):
        dist = sn.selection_null(lazy, test, n_perm=8, k=3, progress=False)
    xr.testing.assert_identical(dist, ref)
