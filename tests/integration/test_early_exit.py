"""EarlyExitClassifier: same predictions as extract+predict, nothing after the exit runs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import sn_interp as sn
from sn_interp.early_exit import sweep


@pytest.fixture(scope="module", params=["tiny-llava", "tiny-qwen3-vl"])
def setup(request):
    vlm = sn.load_model(request.param)
    probe, test = sn.load_task("shapes-color", n=60).split(shots=3, seed=0)
    acts = sn.extract(vlm, probe, sites=list(sn.names.ALL_SITES) + ["vision_resid_post"],
                      progress=False)
    return vlm, probe, test, acts


def _reference(vlm, found, test):
    acts = sn.extract(vlm, test, sites=found.sites, layers=found.layers or None,
                      progress=False)
    return found.predict(acts)


@pytest.mark.parametrize("max_layer", [0, 1])
def test_same_predictions_as_extract_then_predict(setup, max_layer):
    vlm, _, test, acts = setup
    found = sn.find_super_neurons(acts, k=7, max_layer=max_layer, progress=False)
    pred = sn.EarlyExitClassifier(vlm, found, batch_size=5).predict(test)
    ref = _reference(vlm, found, test)
    assert pred.dims == ("sample",) and pred.name == "pred"
    np.testing.assert_array_equal(pred.values, ref.values)
    np.testing.assert_array_equal(pred.sample_id.values, ref.sample_id.values)
    np.testing.assert_array_equal(pred.label.values, ref.label.values)


def test_sav_heads_run_early_too(setup):
    vlm, _, test, acts = setup
    heads = sn.find_sav_heads(acts.sel(layer=[0]), k=3, progress=False)
    clf = sn.EarlyExitClassifier(vlm, heads)
    assert clf.exit_layer == 0
    np.testing.assert_array_equal(clf.predict(test).values, _reference(vlm, heads, test).values)


def test_vision_only_selection_skips_the_language_model(setup):
    vlm, _, test, acts = setup
    found = sn.find_super_neurons(acts, k=3, sites=["vision_resid_post"], progress=False)
    clf = sn.EarlyExitClassifier(vlm, found)
    assert clf.exit_layer == -1
    started = []
    first = vlm.model.get_submodule("model.language_model.layers.0")
    h = first.register_forward_pre_hook(lambda *_: started.append(1))
    try:
        pred = clf.predict(test[:4])
    finally:
        h.remove()
    assert not started and len(pred) == 4


def test_nothing_after_the_needed_site_runs(setup):
    vlm, _, test, acts = setup
    found = sn.find_super_neurons(acts, k=4, sites=["z", "resid_mid"], max_layer=0,
                                  progress=False)
    assert found.layers == (0,)
    started: list[str] = []
    mods = {"layer0.mlp": vlm.model.get_submodule("model.language_model.layers.0.mlp"),
            "layer1": vlm.model.get_submodule("model.language_model.layers.1"),
            "norm": vlm.model.get_submodule("model.language_model.norm"),
            "lm_head": vlm.model.lm_head}
    hooks = [m.register_forward_pre_hook(lambda *_, n=n: started.append(n))
             for n, m in mods.items()]
    try:
        sn.EarlyExitClassifier(vlm, found).predict(list(test)[:3])
    finally:
        for h in hooks:
            h.remove()
    assert started == []


def test_save_load_roundtrip_and_model_check(setup, tmp_path):
    vlm, _, test, acts = setup
    found = sn.find_super_neurons(acts, k=5, max_layer=1, progress=False)
    clf = sn.EarlyExitClassifier(vlm, found, task_options={"n": 60, "shots": 3, "seed": 0})
    clf.save(tmp_path / "clf")
    again = sn.EarlyExitClassifier.load(tmp_path / "clf", vlm=vlm)
    np.testing.assert_array_equal(again.predict(test).values, clf.predict(test).values)
    other = sn.load_model("tiny-llava-next")
    with pytest.raises(ValueError, match="neuron indices do not transfer"):
        sn.EarlyExitClassifier.load(tmp_path / "clf", vlm=other)
    with pytest.raises(FileNotFoundError, match="classifier.json"):
        sn.EarlyExitClassifier.load(tmp_path)


def test_sweep_structure(setup):
    vlm, probe, test, _ = setup
    ds = sweep(vlm, probe, list(test)[:12], layers=[0, 1], k=3, vision=True, progress=False)
    assert list(ds.exit_layer.values) == [-1, 0, 1]
    for var in ("accuracy", "accuracy_low", "accuracy_high", "latency", "speedup"):
        assert ds[var].dims == ("exit_layer",) and np.isfinite(ds[var].values).all()
    assert ((ds.accuracy_low <= ds.accuracy) & (ds.accuracy <= ds.accuracy_high)).all()
    assert 0 <= float(ds.base_accuracy) <= 1 and float(ds.base_latency) > 0
    assert ds.latency_repeats.sizes["repeat"] == 5 and ds.attrs["timing_samples"] == 12
    ratios = ds.base_latency_repeats.values[None, :] / ds.latency_repeats.values
    np.testing.assert_allclose(ds.speedup, np.median(ratios, axis=1))
    np.testing.assert_allclose(ds.latency, np.median(ds.latency_repeats, axis=1))
    assert float(ds.base_latency) == pytest.approx(float(np.median(ds.base_latency_repeats)))


def test_interleaved_latency_alternates_and_survives_a_busy_repeat(monkeypatch):
    """A fake clock: the base takes 2 units, the exit 1, and the third repeat runs 10x slower
    (a busy machine); the interleaved median ratio is still exactly 2."""
    from sn_interp import early_exit as ee

    clock, order, repeat = [0.0], [], [0]

    def run(name, cost):
        def call():
            order.append(name)
            clock[0] += cost * (10 if repeat[0] == 2 else 1)
            if name == "exit":
                repeat[0] += 1
        return call

    monkeypatch.setattr(ee.time, "perf_counter", lambda: clock[0])
    lat = ee.interleaved_latency({"base": run("base", 2.0), "exit": run("exit", 1.0)}, n=4,
                                 repeats=5)
    assert order == ["base", "exit"] * 5
    np.testing.assert_allclose(lat["base"], [0.5, 0.5, 5.0, 0.5, 0.5])
    assert np.median(lat["base"] / lat["exit"]) == 2.0
    with pytest.raises(ValueError, match="repeats"):
        ee.interleaved_latency({}, n=1, repeats=0)


def test_predict_cli(tmp_path):
    vlm = sn.load_model("tiny-llava")
    probe, _ = sn.load_task("shapes-color", n=60).split(shots=3, seed=0)
    found = sn.find_super_neurons(sn.extract(vlm, probe, layers=[0], progress=False), k=3,
                                  progress=False)
    sn.EarlyExitClassifier(vlm, found, task_options={"n": 60, "shots": 3, "seed": 0}).save(
        tmp_path / "clf")
    paths = []
    for i, colour in enumerate(["red", "blue"]):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (40, 40), colour).save(paths[-1])
    run = [sys.executable, "-m", "sn_interp.predict", "--classifier", str(tmp_path / "clf")]
    out = subprocess.run(run + ["--images", *map(str, paths)], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()
    assert len(out) == 2 and out[0].startswith(str(paths[0]))
    assert all(line.split("\t")[1] in found.class_names for line in out)
    acc = subprocess.run(run + ["--task", "shapes-color"], capture_output=True, text=True,
                         check=True).stdout
    assert "accuracy" in acc and "exit_layer=0" in acc
    bad = subprocess.run(run + ["--images", str(tmp_path / "missing.png")],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "cannot read image" in bad.stderr


@pytest.mark.parametrize("rule", ["threshold", "interval"])
def test_any_registered_rule_runs_early_and_round_trips(setup, tmp_path, rule):
    vlm, _, test, acts = setup
    found = sn.find_super_neurons(acts, k=4, rule=rule, max_layer=1, progress=False)
    clf = sn.EarlyExitClassifier(vlm, found, batch_size=5)
    pred = clf.predict(test)
    np.testing.assert_array_equal(pred.values, _reference(vlm, found, test).values)
    clf.save(tmp_path / "clf")
    again = sn.EarlyExitClassifier.load(tmp_path / "clf", vlm=vlm)
    assert again.found.rule == rule
    np.testing.assert_array_equal(again.predict(test).values, pred.values)
