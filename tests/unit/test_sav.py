"""SAV heads: hand-built per-head data with known heads, votes and ties."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from conftest import make_acts

import sn_interp as sn


def _plant_head(acts, layer, head, scale=5.0):
    """Head vectors pointing along +e0 for class 0 and +e1 for class 1 (cosine-separable)."""
    z = acts["z"].values
    li = list(acts.layer.values).index(layer)
    y = acts.label.values
    z[:, li, head, :] = 0.01
    z[np.arange(len(y)), li, head, y] = scale
    return acts


def test_planted_heads_rank_first_and_predict():
    acts = _plant_head(_plant_head(make_acts(n_per_class=10, sites=("z",)), 2, 1), 0, 0)
    heads = sn.find_sav_heads(acts, k=2, progress=False)
    assert heads.selected.score.values.tolist() == [1.0, 1.0]
    # tie broken by (layer, head)
    assert list(zip(heads.selected.layer.values, heads.selected["head"].values, strict=True)) == [(0, 0), (2, 1)]
    assert heads.table.centroids.dtype == np.float32
    assert heads.sites == ("z",) and heads.layers == (0, 2) and heads.max_layer == 2
    test = _plant_head(_plant_head(make_acts(n_per_class=10, sites=("z",), seed=4), 2, 1), 0, 0)
    assert (heads.predict(test) == test.label).all()


def test_scores_match_bruteforce_cosine():
    acts = make_acts(n_per_class=6, n_classes=3, sites=("z",), layers=(0, 3))
    heads = sn.find_sav_heads(acts, k=1, progress=False)
    y = acts.label.values
    for i in range(heads.table.sizes["head_rank"]):
        la, h = int(heads.table.layer[i]), int(heads.table["head"][i])
        z = acts.z.sel(layer=la).values[:, h].astype(np.float64)
        cents = np.stack([z[y == c].mean(0) for c in range(3)])
        pred = [np.argmax([v @ c / np.linalg.norm(v) / np.linalg.norm(c) for c in cents]) for v in z]
        assert heads.table.score.values[i] == pytest.approx(np.mean(np.array(pred) == y))


def test_vote_tie_goes_to_highest_ranked_head():
    acts = make_acts(n_per_class=10, sites=("z",), layers=(0, 1))
    for la in (0, 1):
        for h in (0, 1):
            _plant_head(acts, la, h)
    heads = sn.find_sav_heads(acts, k=4, progress=False)
    test = acts.copy(deep=True)
    z = test["z"].values
    top = [(int(a), int(b)) for a, b in zip(heads.table.layer.values, heads.table["head"].values, strict=True)]
    # flip heads ranked 2nd and 3rd (swap the class axes): 2-2 ties -> the top head wins
    for la, h in top[1:3]:
        z[:, la, h, :2] = z[:, la, h, 1::-1]
    votes = heads.votes(test)
    assert votes.dims == ("sample", "head_rank")
    assert (votes.isel(head_rank=1) != test.label).all()
    assert (heads.predict(test) == test.label).all()


def test_requirements_values_and_save_load(tmp_path):
    acts = _plant_head(make_acts(n_per_class=8, sites=("z",)), 1, 1)
    heads = sn.find_sav_heads(acts, k=3, progress=False)
    req = heads.requirements()
    assert all(site == "z" for site, _ in req)
    values = {key: acts.z.sel(layer=key[1]).values.reshape(16, -1)[:, u] for key, u in req.items()}
    np.testing.assert_array_equal(heads.predict_values(values), heads.predict(acts).values)
    heads.save(tmp_path / "sav")
    back = sn.SAVHeads.load(tmp_path / "sav")
    xr.testing.assert_equal(back.table, heads.table)
    np.testing.assert_array_equal(back.predict(acts).values, heads.predict(acts).values)


def test_sav_bad_input():
    acts = make_acts(n_per_class=5, sites=("mlp_post",))
    with pytest.raises(ValueError, match="needs the 'z' site"):
        sn.find_sav_heads(acts, progress=False)
    acts = make_acts(n_per_class=5, sites=("z",))
    with pytest.raises(ValueError, match="k=50"):
        sn.find_sav_heads(acts, k=50, progress=False)
    heads = sn.find_sav_heads(acts, k=2, progress=False)
    with pytest.raises(ValueError, match="sn.extract"):
        heads.predict(acts.drop_vars("z").assign(mlp_post=acts.z.isel(head=0)))
