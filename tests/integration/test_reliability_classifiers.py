"""Reliability of fitted classifiers: inputs of another model or task, tampered saved files.

Class 3 of the reliability table (docs/reliability.md): every case ends in one clear error naming
what the classifier was fitted on and what it was given (or the file at fault).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import sn_interp as sn
from sn_interp import predict
from sn_interp.probes._checks import ClassifierFileError


@pytest.fixture(scope="module")
def setup():
    vlm = sn.load_model("tiny-llava")
    probe, test = sn.load_task("shapes-color", n=40).split(shots=3, seed=0)
    acts = sn.extract(vlm, probe, sites=["resid_post", "z"], progress=False)
    test_acts = sn.extract(vlm, test, sites=["resid_post", "z"], progress=False)
    found = sn.find_super_neurons(acts, k=3, sites=["resid_post"], progress=False)
    heads = sn.find_sav_heads(acts, k=2, progress=False)
    return vlm, test, test_acts, found, heads


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and len(text) < 400, text
    return text


# ---- predict: another model, other widths, another class list -----------------------------

@pytest.mark.parametrize("which", ["found", "heads"])
def test_predict_refuses_acts_of_another_model(setup, which):
    *_, test_acts, found, heads = setup
    clf = found if which == "found" else heads
    other = test_acts.assign_attrs(model_id="tiny-qwen3-vl")
    with pytest.raises(ValueError, match="tiny-qwen3-vl.*fitted on model 'tiny-llava'") as err:
        clf.predict(other)
    _one_line(err)


def test_predict_refuses_another_revision(setup):
    *_, test_acts, found, _ = setup
    with pytest.raises(ValueError, match="model revision 'local-deadbeef'"):
        found.predict(test_acts.assign_attrs(model_revision="local-deadbeef"))


def test_predict_refuses_other_widths(setup):
    *_, test_acts, found, heads = setup
    deeper = test_acts.assign_attrs(model_id="", model_revision="",
                                    n_layers=int(test_acts.attrs["n_layers"]) + 10)
    for clf in (found, heads):
        with pytest.raises(ValueError, match=r"other widths.*n_layers 12 \(fitted on 2\)"):
            clf.predict(deeper)


def test_predict_refuses_other_widths_even_without_attrs(setup):
    *_, test_acts, found, _ = setup
    narrow = test_acts.isel(d_model=slice(0, 10))
    narrow.attrs = {}
    with pytest.raises(ValueError, match=r"other widths.*d_model 10 \(fitted on 64\)"):
        found.predict(narrow)


def test_predict_refuses_another_class_list(setup):
    *_, test_acts, found, heads = setup
    other = test_acts.assign_attrs(class_names=json.dumps(["one", "two", "three"]))
    for clf in (found, heads):
        with pytest.raises(ValueError, match=r"class list \['one', 'two', 'three'\].*fitted "
                                             r"on \['red'") as err:
            clf.predict(other)
        _one_line(err)


def test_predict_on_matching_acts_still_works(setup):
    *_, test_acts, found, heads = setup
    for clf in (found, heads):
        pred = clf.predict(test_acts)
        assert pred.sizes["sample"] == test_acts.sizes["sample"]


def test_early_exit_refuses_another_model_and_other_tasks_samples(setup):
    vlm, test, _, found, _ = setup
    with pytest.raises(ValueError, match="fitted on model 'tiny-llava'"):
        sn.EarlyExitClassifier(sn.load_model("tiny-qwen3-vl"), found)
    clf = sn.EarlyExitClassifier(vlm, found)
    _, count = sn.load_task("shapes-count", n=30).split(shots=2, seed=0)
    with pytest.raises(ValueError, match="class list .*fitted on") as err:
        clf.predict(count)
    _one_line(err)
    assert clf.predict(list(test)[:4]).sizes["sample"] == 4


def test_evaluate_refuses_labels_of_another_class_list(setup):
    *_, test_acts, found, _ = setup
    pred = found.predict(test_acts)
    renamed = pred.assign_coords(label_name=("sample", ["circle"] * pred.sizes["sample"]))
    with pytest.raises(ValueError, match="labelled 'circle'"):
        sn.evaluate(renamed)
    with pytest.raises(ValueError, match="class_names= is"):
        sn.evaluate(pred, class_names=["a", "b", "c", "d", "e", "f"])
    big = pred.assign_coords(label=("sample", np.full(pred.sizes["sample"], 9)),
                             label_name=("sample", [""] * pred.sizes["sample"]))
    with pytest.raises(ValueError, match="class index 9 is outside"):
        sn.evaluate(big)
    assert 0 <= float(sn.evaluate(pred).accuracy) <= 1


# ---- saved classifiers: edited, truncated, NaN ----------------------------------------------

@pytest.fixture
def saved(setup, tmp_path):
    vlm, *_, found, _ = setup
    path = tmp_path / "clf"
    sn.EarlyExitClassifier(vlm, found).save(path)
    return path


def _edit_json(file: Path, **changes):
    data = json.loads(file.read_text())
    data.update(changes)
    file.write_text(json.dumps(data))


def _nan_table(path: Path):
    file = path / "selection" / "table.nc"
    with xr.open_dataset(file) as ds:
        table = ds.load()
    table["centroids"][0, 0] = np.nan
    table.to_netcdf(file)
    # make the checksums agree, so the NaN check itself is what refuses
    meta = path / "selection" / "meta.json"
    data = json.loads(meta.read_text())
    from sn_interp.probes._checks import sha256_of
    from sn_interp.probes._selection import _meta_digest
    data["sha256"]["table.nc"] = sha256_of(file)
    data["sha256"]["meta"] = _meta_digest(data)
    meta.write_text(json.dumps(data))
    info = json.loads((path / "classifier.json").read_text())
    info["sha256"]["meta.json"] = sha256_of(meta)
    info["sha256"]["table.nc"] = sha256_of(file)
    info["sha256"]["classifier.json"] = _meta_digest(info)
    (path / "classifier.json").write_text(json.dumps(info))


DAMAGE = {
    "table truncated": (lambda p: (p / "selection/table.nc").write_bytes(
        (p / "selection/table.nc").read_bytes()[:300]), "table.nc was edited or truncated"),
    "table deleted": (lambda p: (p / "selection/table.nc").unlink(), "table.nc is missing"),
    "meta edited": (lambda p: _edit_json(p / "selection/meta.json", k=1),
                    "meta.json was edited"),
    "meta truncated": (lambda p: (p / "selection/meta.json").write_text("{\"kind\": "),
                       "meta.json was edited or truncated"),
    "classifier.json edited": (lambda p: _edit_json(p / "classifier.json", k=2),
                               "classifier.json was edited"),
    "classifier.json mistyped": (lambda p: _edit_json(p / "classifier.json", k="three"),
                                 "classifier.json lacks or mistypes k"),
    "classifier.json unknown kind": (lambda p: _edit_json(p / "classifier.json", kind="svm"),
                                     "classifier.json was edited"),
    "NaN parameters": (_nan_table, r"table.nc holds NaN in \['centroids'\]"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_saved_classifier_is_refused_naming_the_file(setup, saved, case):
    vlm = setup[0]
    damage, message = DAMAGE[case]
    damage(saved)
    with pytest.raises((ClassifierFileError, ValueError), match=message) as err:
        sn.EarlyExitClassifier.load(saved, vlm=vlm)
    assert str(saved) in _one_line(err)


def test_damaged_selection_is_refused_by_its_own_load(setup, tmp_path):
    *_, found, heads = setup
    for sel, cls in ((found, sn.SuperNeurons), (heads, sn.SAVHeads)):
        path = sel.save(tmp_path / cls.kind)
        assert cls.load(path).k == sel.k
        (path / "table.nc").write_bytes((path / "table.nc").read_bytes()[:100])
        with pytest.raises(ClassifierFileError, match="table.nc was edited or truncated"):
            cls.load(path)
        (path / "meta.json").write_text("{\"kind\": ")
        with pytest.raises(ClassifierFileError, match="meta.json is not valid JSON"):
            cls.load(path)


def test_predict_cli_names_the_damaged_file(setup, saved, capsys):
    (saved / "selection/table.nc").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_:
        predict.main(["--classifier", str(saved), "--task", "shapes-color"])
    assert str(exit_.value).startswith("error: ") and "table.nc" in str(exit_.value)


def test_predict_cli_refuses_another_tasks_class_list(saved):
    with pytest.raises(SystemExit) as exit_:
        predict.main(["--classifier", str(saved), "--task", "shapes-count", "--n", "30",
                      "--shots", "2"])
    text = str(exit_.value)
    assert text.startswith("error: ") and "class list" in text and "\n" not in text
