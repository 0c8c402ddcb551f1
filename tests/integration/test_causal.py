"""The causal analysis on a tiny model: identities of its measures, controls, outputs."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from sn_interp.analyses import _data, causal

CFG = dict(study="tiny-causal", models=("tiny-llava",), tasks=("shapes-color",), n=60,
           shots=3, test_size=12, k_grid=(1, 3, 10**6), n_random=20, max_test=6,
           patch_classes=2, n_boot=200, progress=False)


def test_logit_diff_and_scores_by_hand():
    logits = np.array([[0.0, 2.0, 5.0, 1.0], [3.0, 0.0, 1.0, 4.0]])
    scores = causal.class_scores(logits, [[0, 1], [2], [3]])  # class 0 reads tokens 0 and 1
    np.testing.assert_array_equal(scores, [[2.0, 5.0, 1.0], [3.0, 1.0, 4.0]])
    np.testing.assert_array_equal(causal.logit_diff(scores, np.array([0, 2])), [-3.0, 1.0])
    assert causal.empirical_p(np.array([0.1, 0.5, 0.2]), 0.3) == 0.5


def test_random_blocks_stay_in_the_sns_blocks():
    vlm = _data.model("tiny-llava")
    blocks = {("mlp_post", 0): np.array([1, 2, 3]), ("z", 1): np.array([7])}
    rng = np.random.default_rng(0)
    for _ in range(20):
        drawn = causal.random_blocks(vlm, blocks, rng)
        assert drawn.keys() == blocks.keys()
        for key, units in drawn.items():
            assert len(units) == len(blocks[key]) == len(set(units))
            assert not set(units) & set(blocks[key])


def test_editing_to_the_unedited_values_has_no_effect(tmp_path):
    cfg = causal.Config(**CFG, stores=str(tmp_path / "stores"))
    probe, test = _data.split(cfg, "shapes-color")
    vlm = _data.model("tiny-llava")
    a_test = _data.acts(cfg, vlm, test[:4], "test-causal", sites=("mlp_post",))
    runner = causal.Runner(vlm, list(test[:4]), batch_size=2)
    base = runner.scores()
    units = np.array([0, 5, 9])
    same = {("mlp_post", 1): a_test["mlp_post"].sel(layer=1).values[:, units]}
    np.testing.assert_allclose(runner.scores({("mlp_post", 1): units}, same), base, atol=1e-5)
    moved = {("mlp_post", 1): same["mlp_post", 1] + 50}
    assert np.abs(runner.scores({("mlp_post", 1): units}, moved) - base).max() > 1e-3


def test_run_shapes_and_ranges(tmp_path):
    cfg = causal.Config(**CFG, stores=str(tmp_path / "stores"))
    res = causal.run(cfg)
    assert dict(res.sizes) == {"model": 1, "task": 1, "edit": 2, "k": 3, "draw": 20}
    r = res.isel(model=0, task=0)
    assert np.isnan(r.sn_drop.sel(k=10**6)).all()  # above the candidate count
    fin = r.sel(k=[1, 3])
    for v in ("sn_drop", "control_drop", "sn_flip", "p_drop", "p_flip"):
        assert np.isfinite(fin[v]).all()
    assert ((fin.p_drop >= 1 / 21) & (fin.p_drop <= 1)).all()
    assert ((fin.sn_flip >= 0) & (fin.sn_flip <= 1)).all()
    assert (fin.sn_drop_low <= fin.sn_drop + 1e-12).all()
    assert (fin.sn_drop <= fin.sn_drop_high + 1e-12).all()
    expect = (1 + (fin.control_drop >= fin.sn_drop).sum("draw")) / 21
    xr.testing.assert_allclose(fin.p_drop, expect.astype(float), check_dim_order=False)
    assert 0 <= float(r.base_accuracy) <= 1 and int(r.n_test) == 6
    tables = causal.tables(res)
    assert set(tables) == {"headline", "effects", "unedited"}
    assert len(tables["effects"]) == 4
    assert set(causal.figures(res)) == {"effect_tiny-llava_shapes-color"}


def test_config_refuses_too_few_controls():
    with pytest.raises(ValueError, match="n_random"):
        causal.Config(n_random=5)
