"""sav_comparison, early_exit and report on the tiny models: outputs, files, reuse, --help.

The tests share one activation-store folder; each analysis's main writes into the folder the
report later uses with the same options, so the report runs no model at all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import sn_interp as sn
from sn_interp.analyses import _common, _data, early_exit, report, sav_comparison

MODELS = ("tiny-llava", "tiny-qwen3-vl")
TASK = "shapes-color"
COMMON = {"study": "tiny-test", "models": list(MODELS), "tasks": [TASK], "n": 60, "shots": 3, "test_size": 12,
          "k": 5, "seed": 0, "progress": False}
SAV = {"k_grid": [1, 3, 5, 40], "shots_grid": [1, 2, 50]}  # 40 > tiny SAV heads; 50 infeasible
EARLY = {"vision": True, "zero_shot_mode": "first_token"}


def _flags(values: dict) -> list[str]:
    out = []
    for key, value in values.items():
        flag = _common._FLAG_NAMES.get(key, "--" + key.replace("_", "-"))
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list):
            out += [flag, *map(str, value)]
        else:
            out += [flag, str(value)]
    return out


@pytest.fixture(scope="module")
def where(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyses_a")
    return {"stores": str(root / "stores"), "out": root / "report"}


@contextlib.contextmanager
def count_forwards():
    """Count forward passes of every tiny model (extraction, early exit, zero-shot)."""
    calls: list[str] = []
    handles = [_data.vlm(_common.StudyConfig(), m).model.register_forward_pre_hook(
        lambda *_, m=m: calls.append(m)) for m in MODELS]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def _mtimes(folder) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def _check_files(folder, tables: list[str], figures: list[str]) -> None:
    assert json.loads((folder / "config.json").read_text())["digest"]
    assert (folder / "result.nc").stat().st_size > 0
    for name in tables:
        assert (folder / f"{name}.csv").exists(), name
        assert (folder / f"{name}.md").read_text().startswith("| ")
    for name in figures:
        png = folder / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert (folder / f"{name}.pdf").stat().st_size > 0


# ---- sav_comparison ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sav_out(where):
    folder = where["out"] / "sav_comparison"
    with count_forwards() as calls:
        sav_comparison.main(_flags({**COMMON, **SAV}) + ["--stores", where["stores"],
                                                          "--out", str(folder)])
    assert set(calls) == set(MODELS)  # the counter sees the models the analysis runs
    return folder


def test_sav_comparison_outputs(sav_out):
    r = xr.open_dataset(sav_out / "result.nc")
    assert r.accuracy_by_k.dims == ("model", "task", "classifier", "k")
    assert r.accuracy_by_shots.dims == ("model", "task", "classifier", "shots")
    for var in ("best_layer", "best_id", "best_score", "best_relative_depth"):
        assert r[var].dims == ("model", "task", "classifier", "shots")
    assert list(r.classifier.values) == ["sn", "sav"] and list(r.k.values) == [1, 3, 5, 40]
    assert list(r.shots.values) == [1, 2, 3, 50]  # --shots joins the grid
    assert np.isnan(r.accuracy_by_shots.sel(shots=50)).all()  # a class has only 10 images
    assert np.isfinite(r.accuracy_by_shots.sel(shots=[1, 2, 3])).all()
    assert np.isnan(r.accuracy_by_k.sel(classifier="sav", k=40)).all()
    assert np.isfinite(r.accuracy_by_k.sel(classifier="sn")).all()
    for m in MODELS:
        vlm = _data.vlm(_common.StudyConfig(), m)
        assert int(r.n_candidates.sel(model=m, classifier="sav")) == \
            vlm.dims.n_layers * vlm.dims.n_heads
        layers = r.best_layer.sel(model=m, shots=[1, 2, 3]).values
        assert ((layers >= 0) & (layers < vlm.dims.n_layers)).all()
    # the shots point at --shots is the k point at --k: same probe, test and voters
    xr.testing.assert_allclose(r.accuracy_by_shots.sel(shots=3, drop=True),
                               r.accuracy_by_k.sel(k=5, drop=True))
    assert (r.accuracy_by_k_low <= r.accuracy_by_k).where(r.accuracy_by_k.notnull(), True).all()
    _check_files(sav_out, ["summary", "accuracy_by_k", "accuracy_by_shots", "intervals",
                           "best_feature"],
                 [f"sav_vs_sn_{m}_{TASK}" for m in MODELS])


def test_sav_comparison_matches_an_independent_fit(sav_out, where):
    """Oracle: the stores read with plain xarray, fitted with the public API, k-voter predict."""
    r = xr.open_dataset(sav_out / "result.nc")
    folder = Path(where["stores"]) / "tiny-llava"
    a_probe, a_test = (xr.open_zarr(folder / f"{TASK}-mc-{split}-n60-shots3-seed0-test12.zarr")
                       for split in ("probe", "test"))
    assert a_probe.sizes["sample"] == 18 and a_test.sizes["sample"] == 12
    assert not set(a_probe.sample_id.values) & set(a_test.sample_id.values)
    found = sn.find_super_neurons(a_probe, k=5, progress=False)
    heads = sn.find_sav_heads(a_probe, k=5, progress=False)
    for name, sel in (("sn", found), ("sav", heads)):
        for k in (1, 3, 5):
            want = float(sn.evaluate(sel.predict(a_test, k=k)).accuracy)
            got = float(r.accuracy_by_k.sel(model="tiny-llava", task=TASK, classifier=name, k=k))
            assert got == pytest.approx(want), (name, k)
        assert str(r.best_id.sel(model="tiny-llava", task=TASK, classifier=name, shots=3).values) == \
            str(sel.table["id"].values[0])


def test_sav_comparison_second_main_reuses_result_and_stores(sav_out, where):
    argv = _flags({**COMMON, **SAV}) + ["--stores", where["stores"], "--out", str(sav_out)]
    before = _mtimes(sav_out)
    stores = _mtimes(Path(where["stores"]))
    with count_forwards() as calls:
        sav_comparison.main(argv)
    assert calls == []
    assert _mtimes(sav_out)[str(sav_out / "result.nc")] == before[str(sav_out / "result.nc")]
    with count_forwards() as calls:  # recomputed from the stores: only the zero-shot answers
        sav_comparison.main(argv + ["--overwrite"])  # of the paired tests run the model
    batches = -(-COMMON["test_size"] // 8)  # first_token: one forward per test batch of 8
    assert calls == [m for m in MODELS for _ in range(batches)]
    assert _mtimes(sav_out)[str(sav_out / "result.nc")] != before[str(sav_out / "result.nc")]
    assert _mtimes(Path(where["stores"])) == stores


def test_sav_comparison_config_checks():
    with pytest.raises(ValueError, match="k_grid"):
        sav_comparison.Config(k_grid=())
    with pytest.raises(ValueError, match="shots_grid"):
        sav_comparison.Config(shots_grid=(0, 1))


# ---- early_exit -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def early_out(where):
    folder = where["out"] / "early_exit"
    with count_forwards() as calls:
        early_exit.main(_flags({**COMMON, **EARLY}) + ["--stores", where["stores"],
                                                        "--out", str(folder)])
    assert set(calls) == set(MODELS)
    return folder


def test_early_exit_outputs(early_out):
    r = xr.open_dataset(early_out / "result.nc")
    assert list(r.exit_layer.values) == [-1, 0, 1, 2]  # vision exit + the deeper model's 3
    for var in ("accuracy", "accuracy_low", "accuracy_high", "latency", "speedup",
                "best_neuron"):
        assert r[var].dims == ("model", "task", "exit_layer"), var
    for var in ("base_accuracy", "base_latency", "best_exit_layer", "best_accuracy",
                "best_speedup"):
        assert r[var].dims == ("model", "task"), var
    assert np.isnan(r.accuracy.sel(model="tiny-llava", exit_layer=2)).all()  # 2 layers only
    assert np.isfinite(r.accuracy.sel(model="tiny-qwen3-vl")).all()
    assert (r.speedup.where(np.isfinite(r.accuracy), 1.0) > 0).all()
    assert "interleaved repeats" in r.speedup.attrs["timing"]  # medians, not one pass
    assert r.latency.attrs["units"] == "s / sample"
    for m in MODELS:
        cell = r.sel(model=m, task=TASK)
        best = int(cell.best_exit_layer)
        assert float(cell.best_accuracy) >= float(cell.accuracy.max()) - 0.01 - 1e-9
        assert float(cell.best_speedup) == pytest.approx(float(cell.speedup.sel(exit_layer=best)))
    _check_files(early_out, ["best_exit", "latency", "sweep"],
                 [f"early_exit_{m}_{TASK}" for m in MODELS])


def test_early_exit_saves_a_classifier_predict_can_run(early_out, capsys):
    from sn_interp import predict

    r = xr.open_dataset(early_out / "result.nc")
    path = early_exit.classifier_dir(early_out, "tiny-llava", TASK)
    info = sn.EarlyExitClassifier.info(path)
    assert info["exit_layer"] == int(r.best_exit_layer.sel(model="tiny-llava", task=TASK))
    assert info["task_options"] == {"n": 60, "shots": 3, "seed": 0, "test_size": 12}
    assert predict.main(["--classifier", str(path), "--task", TASK, "--split", "probe"]) == 0
    assert f"{TASK} probe: accuracy" in capsys.readouterr().out


def test_early_exit_second_main_runs_no_model(early_out, where):
    argv = _flags({**COMMON, **EARLY}) + ["--stores", where["stores"], "--out", str(early_out)]
    before = _mtimes(early_out)
    with count_forwards() as calls:
        early_exit.main(argv)
    assert calls == []
    after = _mtimes(early_out)
    keep = [p for p in before if p.endswith(("result.nc", "classifier.json", "table.nc"))]
    assert keep and all(after[p] == before[p] for p in keep)


def test_best_exit_is_the_earliest_within_tolerance():
    ds = xr.Dataset({"accuracy": ("exit_layer", [0.5, 0.795, 0.8, 0.7])},
                    coords={"exit_layer": [-1, 0, 1, 2]})
    assert early_exit.best_exit(ds, 0.01) == 0
    assert early_exit.best_exit(ds, 0.0) == 1
    assert early_exit.best_exit(ds, 0.3) == -1


# ---- report -----------------------------------------------------------------------------------

def _study(tmp_path, where, analyses: list[str]) -> str:
    lines = [f'stores = "{where["stores"]}"', f"analyses = {json.dumps(analyses)}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in COMMON.items()]
    lines += ["[find_super_neurons]", 'zero_shot_mode = "first_token"',
              "[sav_comparison]", *(f"{k} = {json.dumps(v)}" for k, v in SAV.items()),
              "[early_exit]", *(f"{k} = {json.dumps(v)}" for k, v in EARLY.items())]
    path = tmp_path / "study.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_report_writes_headline_tables_figures_and_config(tmp_path, where, sav_out, early_out):
    """sav_comparison and early_exit (reusing the mains above)."""
    study = _study(tmp_path, where, ["sav_comparison", "early_exit"])
    with count_forwards() as calls:
        path = report.main(["--config", study, "--out", str(where["out"])])
    text = path.read_text()
    assert path == where["out"] / "REPORT.md"
    head = text[text.index("## Headline"):text.index("## sav_comparison")]
    for column in ("zero-shot", "SAV", "SN best", "SN top-5", "best SN layer", "exit layer",
                   "speed-up"):
        assert f" {column} |" in head
    for m in MODELS:
        assert f"| {m} | {TASK} |" in head
    assert "–" not in head.split("\n\n")[1]  # every headline number was computed
    for name in ("sav_comparison", "early_exit"):
        assert f"## {name}" in text
    links = [line[line.index("](") + 2:-1] for line in text.splitlines() if line.startswith("![")]
    assert len(links) == 4 and all((where["out"] / link).stat().st_size > 0 for link in links)
    assert "### accuracy by k" in text and "### latency" in text
    assert 'study = "tiny-test"' in text and "```toml" in text
    assert (where["out"] / "headline.csv").exists()
    assert calls == []  # the same options as the mains above: their results are reused


def test_report_records_a_failing_analysis_and_still_writes(tmp_path, monkeypatch):
    """A stand-in analysis module that fails: its section says why, the others are kept."""
    broken = types.ModuleType("sn_interp.analyses.broken_demo")
    broken.__doc__ = "Does it fail?"
    broken.Config = _common.StudyConfig
    broken.run = lambda cfg: (_ for _ in ()).throw(RuntimeError("planted failure"))
    broken.tables = broken.figures = lambda result: {}
    fine = types.ModuleType("sn_interp.analyses.fine_demo")
    fine.__doc__ = "Does it work?"
    fine.Config = _common.StudyConfig
    fine.run = lambda cfg: xr.Dataset({"v": ("x", [float(cfg.k)])})
    fine.tables = lambda result: {"values": result.to_dataframe().reset_index()}
    fine.figures = lambda result: {}
    monkeypatch.setitem(sys.modules, broken.__name__, broken)
    monkeypatch.setitem(sys.modules, fine.__name__, fine)
    out = tmp_path / "o"
    with pytest.raises(RuntimeError, match="broken_demo"):
        report.main(["--analyses", "broken_demo", "fine_demo", "--k", "3", "--out", str(out)])
    text = (out / "REPORT.md").read_text()
    assert "failed: RuntimeError: planted failure" in text
    assert "### values" in text and "| 3.000 |" in text  # --k reached the fine analysis


def test_report_refuses_unknown_keys_before_running(tmp_path, where):
    bad = tmp_path / "bad.toml"
    bad.write_text('models = ["tiny-llava"]\nshotz = 3\n')
    with pytest.raises(SystemExit, match="shotz"):
        report.main(["--config", str(bad), "--out", str(tmp_path / "o")])
    bad.write_text('[early_exit]\nvisoin = true\n')
    with pytest.raises(SystemExit, match="visoin"):
        report.main(["--config", str(bad), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_report_builds_each_config_from_what_it_knows():
    top = {"k": 4, "vision": True, "k_grid": [1, 2], "models": ["tiny-llava"]}
    tables = {"early_exit": {"k": 2}}
    flags = {"shots": 7, "analyses": ("early_exit",)}
    out = Path("o")
    ee = report.sub_config(early_exit, "early_exit", top, tables["early_exit"], flags, out, "t")
    sc = report.sub_config(sav_comparison, "sav_comparison", top, {}, flags, out, "t")
    assert (ee.k, ee.vision, ee.shots, ee.out) == (2, True, 7, os.path.join("o", "early_exit"))
    assert (sc.k, sc.k_grid, sc.shots) == (4, (1, 2), 7)
    assert not hasattr(sc, "vision")


# ---- every analysis: --help -------------------------------------------------------------------

@pytest.mark.parametrize("module", [sav_comparison, early_exit, report])
def test_help_lists_every_option(module, capsys):
    with pytest.raises(SystemExit):
        module.main(["--help"])
    text = "".join(capsys.readouterr().out.split())
    docs = _common.field_docs(module.Config)
    assert set(docs) == {f.name for f in dataclasses.fields(module.Config)}
    for doc in docs.values():
        assert "".join(doc.split()) in text
