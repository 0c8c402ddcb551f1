"""One result shape: cells joined by combine_cells; headline columns declared by analyses."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import xarray as xr

from sn_interp.analyses import _common, report
from sn_interp.analyses._result import Headline, cell_value, combine_cells


def _cell(model: str, task: str, layers: int) -> xr.Dataset:
    v = np.arange(layers, dtype=float) + 10 * ("ab".index(task)) + 100 * ("mn".index(model))
    return xr.Dataset({"acc": ("layer", v), "name": ("layer", [f"{model}{task}"] * layers),
                       "depth": ((), np.int64(layers)), "chance": ((), 0.5 if task == "a" else 0.25)},
                      coords={"layer": np.arange(layers)})


def test_combine_cells_pads_keeps_dtypes_and_reduces_per_model_and_task():
    cells = {(m, t): _cell(m, t, 2 if m == "m" else 3) for m in "mn" for t in "ab"}
    ds = combine_cells(cells, models=["n", "m"], tasks=["b", "a"], per_model=("depth",),
                       per_task=("chance",), fill={"name": ""}, attrs={"study": "x"})
    assert ds.acc.dims == ("model", "task", "layer") and ds.depth.dims == ("model",)
    assert ds.chance.dims == ("task",) and ds.chance.values.tolist() == [0.25, 0.5]
    assert list(ds.model.values) == ["n", "m"] and list(ds.layer.values) == [0, 1, 2]
    assert ds.acc.sel(model="m", task="b").values.tolist()[:2] == [10.0, 11.0]
    assert np.isnan(ds.acc.sel(model="m", layer=2)).all()
    assert ds.name.sel(model="m", task="a", layer=2).item() == ""
    assert ds.depth.dtype == np.int64 and ds.depth.values.tolist() == [3, 2]
    assert ds.attrs == {"study": "x"}


def test_combine_cells_order_and_extra():
    cells = {("m", t): xr.Dataset({"v": ("p", [1.0, 2.0])}, coords={"p": ps})
             for t, ps in (("a", ["y", "x"]), ("b", ["z", "y"]))}
    extra = xr.Dataset({"w": ("model", [7.0])}, coords={"model": ["m"]})
    first_seen = combine_cells(cells, models=["m"], tasks=["a", "b"], extra=[extra])
    assert list(first_seen.p.values) == ["y", "x", "z"] and first_seen.w.values.tolist() == [7.0]
    ordered = combine_cells(cells, models=["m"], tasks=["a", "b"], order={"p": ["x", "y", "z"]})
    assert ordered.v.sel(model="m", task="b").values.tolist()[1:] == [2.0, 1.0]


def test_a_new_analysis_adds_headline_columns_without_editing_report(monkeypatch):
    new = types.ModuleType("sn_interp.analyses.new_demo")
    new.Config = _common.StudyConfig
    new.run = lambda cfg: xr.Dataset()
    new.HEADLINE = (Headline("SN top-{k} (new)", cell_value("score", kind="topk"), note="new"),
                    Headline("zero-shot", cell_value("base")))
    monkeypatch.setitem(sys.modules, new.__name__, new)
    cfg = report.Config(models=("m",), tasks=("a", "b"), k=3, analyses=("new_demo",))
    result = xr.Dataset({"score": (("model", "task", "kind"), [[[0.5], [0.75]]]),
                         "base": (("model", "task"), [[0.1, np.nan]])},
                        coords={"model": ["m"], "task": ["a", "b"], "kind": ["topk"]})
    head = report.headline(cfg, [report.Section("new_demo", result=result)])
    assert "SN top-3 (new)" in head.columns and head["SN top-3 (new)"].tolist() == [0.5, 0.75]
    # zero-shot: find_super_neurons (not run) first, then early_exit, then the new analysis
    assert head["zero-shot"].tolist()[0] == 0.1 and np.isnan(head["zero-shot"].tolist()[1])
    assert head.columns[:3].tolist() == ["model", "task", "zero-shot"]
    assert "exit layer" not in head.columns  # no source of it ran: left out
    assert "*SN top-3 (new)*: new" in report.headline_note(cfg)


def test_headline_prefers_the_primary_source():
    cfg = report.Config(models=("m",), tasks=("a",), k=2, shots=3)
    coords = {"model": ["m"], "task": ["a"]}
    fsn = xr.Dataset({"accuracy": (("model", "task", "classifier"), [[[0.9, 0.8, 0.7, 0.6]]]),
                      "best_layer": (("model", "task"), [[4]])},
                     coords={**coords, "classifier": ["zero_shot", "sav", "sn_top1", "sn_topk"]})
    ee = xr.Dataset({"base_accuracy": (("model", "task"), [[0.2]]),
                     "best_exit_layer": (("model", "task"), [[1]]),
                     "best_accuracy": (("model", "task"), [[0.55]]),
                     "best_speedup": (("model", "task"), [[3.0]])}, coords=coords)
    head = report.headline(cfg, [report.Section("find_super_neurons", result=fsn),
                                 report.Section("early_exit", result=ee)])
    want = pd.DataFrame([{"model": "m", "task": "a", "zero-shot": 0.9, "SAV": 0.8,
                          "SN best": 0.7, "SN top-2": 0.6, "best SN layer": "4",
                          "exit layer": "1", "early-exit accuracy": 0.55, "speed-up": 3.0}])
    pd.testing.assert_frame_equal(head[list(want.columns)], want)
    assert np.isnan(head["SN top-2 p"]).all()  # declared, its variable absent from this result
