"""Evidence columns of a cell: McNemar vs zero-shot, null ceiling, stability, Holm across tasks."""

from __future__ import annotations

import numpy as np
import xarray as xr
from conftest import make_acts
from statsmodels.stats.multitest import multipletests

import sn_interp as sn
from sn_interp.analyses._evidence import add_holm, cell_evidence
from sn_interp.probes.stats import mcnemar_exact

PLANTED = {("mlp_post", 1, 5): 3.0}


def test_cell_evidence_against_its_references():
    acts = make_acts(planted=PLANTED, n_per_class=10)
    test = make_acts(planted=PLANTED, n_per_class=10, seed=1, split="test")
    found = sn.find_super_neurons(acts, k=3, progress=False)
    y = test.label.values
    zero = xr.DataArray(np.where(np.arange(len(y)) % 3 == 0, 1 - y, y), dims="sample")
    preds = {"zero_shot": zero, "sn_top1": found.predict(test, k=1), "sn_topk": found.predict(test)}
    ev = cell_evidence(found, acts, test, preds, n_perm=30, n_boot=10, seed=0)
    for name in ("sn_top1", "sn_topk"):
        want = mcnemar_exact(preds[name].values == y, zero.values == y)["p_value"]
        assert float(ev.p_vs_zero_shot.sel(classifier=name)) == want
        assert float(ev.mcnemar_p.sel(classifier="zero_shot", versus=name)) == want
    assert np.isnan(ev.p_vs_zero_shot.sel(classifier="zero_shot"))
    null = sn.selection_null(acts, test, n_perm=30, k=3, seed=0, progress=False)
    assert float(ev.null_ceiling.sel(classifier="sn_topk")) == null.attrs["null_ceiling_topk"]
    assert float(ev.p_null.sel(classifier="sn_top1")) == null.attrs["p_test_top1"]
    assert str(ev.stable_set.values).startswith("blocks.1.mlp.hook_post[5]")


def test_add_holm_corrects_across_tasks_per_model_and_classifier():
    rng = np.random.default_rng(0)
    p = rng.random((2, 3, 2))  # model, task, classifier
    ds = xr.Dataset({"p_vs_zero_shot": (("model", "task", "classifier"), p)},
                    coords={"model": ["a", "b"], "task": ["x", "y", "z"],
                            "classifier": ["sn_top1", "sn_topk"]})
    out = add_holm(ds)
    for m in range(2):
        for c in range(2):
            want = multipletests(p[m, :, c], method="holm")[1]
            np.testing.assert_allclose(out.p_vs_zero_shot_holm.values[m, :, c], want)


def test_evidence_tables_of_combined_cells():
    acts = make_acts(planted=PLANTED, n_per_class=8)
    test = make_acts(planted=PLANTED, n_per_class=6, seed=1, split="test")
    found = sn.find_super_neurons(acts, k=2, progress=False)
    y = test.label.values
    preds = {"zero_shot": xr.DataArray(1 - y, dims="sample"), "sn_top1": found.predict(test, k=1),
             "sn_topk": found.predict(test)}
    cells = [cell_evidence(found, acts, test, preds, n_perm=10, n_boot=4, seed=s)
             for s in (0, 1)]
    res = add_holm(xr.concat(cells, dim="task").assign_coords(task=["x", "y"])
                   .expand_dims(model=["m"]))
    from sn_interp.analyses._evidence import evidence_tables

    t = evidence_tables(res)
    assert len(t["evidence"]) == 6 and len(t["mcnemar"]) == 6 and len(t["stability"]) == 2
    row = t["mcnemar"].query("task == 'x' and a == 'zero_shot' and b == 'sn_topk'").iloc[0]
    assert row["p"] == mcnemar_exact(preds["zero_shot"].values == y,
                                     preds["sn_topk"].values == y)["p_value"]
    assert (t["evidence"]["p vs zero-shot (Holm)"].dropna()
            >= t["evidence"]["p vs zero-shot"].dropna()).all()
