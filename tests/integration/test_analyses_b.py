"""robustness and cross_model_overlap on tiny models: variables, dims, files, stage reuse.

Both analyses share one store folder (as a report does), so cross_model_overlap reuses the
stores robustness extracted; model runs are counted through ``extraction.capture``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from sn_interp import extraction
from sn_interp.analyses import cross_model_overlap, robustness

MODELS = ["tiny-llava", "tiny-qwen3-vl"]
COMMON = ["--n", "60", "--shots", "2", "--test-size", "10", "--k", "4", "--no-progress",
          "--prompts", "mc", "open", "--batch-size", "20"]  # one forward pass per store


@pytest.fixture(scope="module")
def captures():
    """Counts model forward passes (extraction.capture calls) per test phase."""
    calls = {"n": 0}
    real = extraction.capture

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(extraction, "capture", counting)
    yield calls
    mp.undo()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("analyses_b")


def _argv(workdir, name: str, extra: list[str]) -> list[str]:
    return [*COMMON, *extra, "--out", str(workdir / name), "--stores", str(workdir / "stores")]


# robustness on one model keeps the suite fast; cross_model_overlap needs both families
ROB = ["--model", MODELS[0], "--task", "digits", "--shifts", "noisy"]
CMO = ["--model", *MODELS, "--task", "digits", "mnist", "--seeds", "0", "1"]


@pytest.fixture(scope="module")
def rob(workdir, captures):
    folder = robustness.main(_argv(workdir, "rob", ROB))
    return folder, captures["n"]


@pytest.fixture(scope="module")
def cmo(workdir, captures, rob):
    before = captures["n"]
    folder = cross_model_overlap.main(_argv(workdir, "cmo", CMO))
    return folder, captures["n"] - before


def _files(folder, tables, figure_prefixes):
    assert json.loads((folder / "config.json").read_text())["analysis"] in (
        "robustness", "cross_model_overlap")
    assert (folder / "result.nc").stat().st_size > 0
    for name in tables:
        assert (folder / f"{name}.csv").stat().st_size > 0
        assert (folder / f"{name}.md").read_text().startswith("| ")
    pngs = sorted(folder.glob("*.png"))
    for prefix in figure_prefixes:
        hits = [p for p in pngs if p.name.startswith(prefix)]
        assert hits, f"no {prefix}*.png in {[p.name for p in pngs]}"
        for p in hits:
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
            assert p.with_suffix(".pdf").stat().st_size > 0


def test_robustness_outputs(rob):
    folder, n_runs = rob
    assert n_runs > 0
    ds = xr.open_dataset(folder / "result.nc")
    four = ("model", "task", "prompt_fit", "prompt_eval")
    for v in ("prompt_accuracy", "prompt_accuracy_low", "prompt_accuracy_high", "prompt_drop"):
        assert ds[v].dims == four
    for v in ("prompt_jaccard", "prompt_spearman"):
        assert ds[v].dims == ("model", "task", "prompt_a", "prompt_b")
    for v in ("shift_accuracy", "shift_drop", "shift_refit_accuracy", "shift_jaccard",
              "shift_spearman", "shift_accuracy_low", "shift_accuracy_high"):
        assert ds[v].dims == ("model", "task", "condition")
    assert list(ds.model.values) == MODELS[:1] and list(ds.prompt_fit.values) == ["mc", "open"]
    assert list(ds.condition.values) == ["clean", "noisy", "other-domain"]
    assert str(ds.other_domain.sel(task="digits").values) == "mnist"
    acc = ds.prompt_accuracy.values
    assert np.isfinite(acc).all() and ((acc >= 0) & (acc <= 1)).all()
    # overlap of a selection with itself, and the drop's definition
    jac = ds.prompt_jaccard.sel(task="digits")
    np.testing.assert_allclose(np.diagonal(jac.values, axis1=1, axis2=2), 1.0)
    np.testing.assert_allclose(jac.values, np.swapaxes(jac.values, 1, 2))
    r = ds.sel(model="tiny-llava", task="digits")
    assert float(r.prompt_drop.sel(prompt_fit="mc", prompt_eval="open")) == pytest.approx(
        float(r.prompt_accuracy.sel(prompt_fit="mc", prompt_eval="mc")
              - r.prompt_accuracy.sel(prompt_fit="mc", prompt_eval="open")))
    assert float(r.shift_drop.sel(condition="noisy")) == pytest.approx(
        float(r.shift_accuracy.sel(condition="clean") - r.shift_accuracy.sel(condition="noisy")))
    assert float(r.shift_jaccard.sel(condition="clean")) == 1.0
    _files(folder, ["summary", "prompt_matrix", "prompt_overlap", "shift"],
           ["prompt_matrix_", "prompt_overlap_", "shift_drop_", "shift_overlap_"])


def test_cross_model_overlap_outputs(cmo):
    folder, _ = cmo
    ds = xr.open_dataset(folder / "result.nc")
    dims = {"task_jaccard": ("model", "task_a", "task_b"),
            "task_spearman": ("model", "task_a", "task_b"),
            "prompt_jaccard": ("model", "task", "prompt_a", "prompt_b"),
            "seed_spearman": ("model", "task", "seed_a", "seed_b"),
            "relative_depth": ("model", "task", "rank"), "sn_id": ("model", "task", "rank"),
            "sn_site": ("model", "task", "rank"), "sn_layer": ("model", "task", "rank"),
            "site_count": ("model", "task", "site"), "accuracy": ("model", "task"),
            "depth_ks": ("task", "model_a", "model_b"), "agreement": ("task", "model_a", "model_b"),
            "kappa": ("task", "model_a", "model_b"), "n_layers": ("model",)}
    for v, d in dims.items():
        assert ds[v].dims == d, v
    assert ds.sizes["rank"] == 4 and list(ds.seed_a.values) == [0, 1]
    assert (ds.site_count.sum("site") == 4).all()
    depth = ds.relative_depth.values
    assert ((depth > 0) & (depth <= 1)).all()
    expected = (ds.sn_layer + 1) / ds.n_layers
    np.testing.assert_allclose(depth, expected.transpose(*ds.relative_depth.dims).values)
    same = ds.agreement.sel(model_a="tiny-llava", model_b="tiny-llava")
    np.testing.assert_allclose(same.values, 1.0)
    np.testing.assert_allclose(ds.depth_ks.sel(model_a="tiny-llava", model_b="tiny-llava"), 0)
    np.testing.assert_allclose(np.diagonal(ds.task_jaccard.values, axis1=1, axis2=2), 1.0)
    _files(folder, ["within_tasks", "within_prompts", "within_seeds", "across_models",
                    "sn_depth", "sites"],
           ["relative_depth", "sites", "tasks_", "within_tiny-llava_mnist"])


def test_cross_model_reuses_the_robustness_stores(workdir, cmo):
    """tiny-llava's digits and mnist mc probe+test and digits open probe came from robustness."""
    _, n_runs = cmo
    stores = sorted(p.name for p in (workdir / "stores" / "tiny-llava").iterdir())
    assert "digits-mc-probe-n60-shots2-seed0-test10.zarr" in stores
    assert "mnist-mc-test-n60-shots2-seed0-test10.zarr" in stores
    # new stores: 3 for tiny-llava (digits and mnist seed-1 probes, mnist open probe) and
    # 8 for tiny-qwen3-vl; one batch each
    assert n_runs == 3 + 8


def test_second_main_reuses_result_and_stores(workdir, captures, rob, cmo):
    """A second main reuses result.nc; rerunning the analysis reuses the stores.

    (cross_model_overlap's main goes through the same execute(); its reuse of stores is
    checked above.)
    """
    before = captures["n"]
    folder = robustness.main(_argv(workdir, "rob", ROB))
    assert captures["n"] == before, "a second main ran the model"
    mtime = (folder / "result.nc").stat().st_mtime_ns
    cfg = robustness.Config(models=(MODELS[0],), tasks=("digits",), n=60, shots=2,
                            test_size=10, k=4, prompts=("mc", "open"), shifts=("noisy",),
                            batch_size=20, stores=str(workdir / "stores"), progress=False)
    again = robustness.run(cfg)  # recomputes the analysis from the shared stores
    assert captures["n"] == before, "rerunning the analysis re-extracted activations"
    assert (folder / "result.nc").stat().st_mtime_ns == mtime
    first = xr.open_dataset(folder / "result.nc")
    xr.testing.assert_allclose(again.prompt_accuracy, first.prompt_accuracy)
    xr.testing.assert_allclose(again.shift_spearman, first.shift_spearman)


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        robustness.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--prompts" in out and "--other-domain" in out and "all of each task" in out
    with pytest.raises(SystemExit):
        cross_model_overlap.main(["--help"])
    assert "--seeds" in capsys.readouterr().out


def test_config_checks():
    with pytest.raises(ValueError, match="seeds"):
        cross_model_overlap.Config(seeds=(1, 1))
    assert robustness.jaccard(["a", "b"], ["b", "c"]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match=r"has the shifts \['noisey'\]"):
        robustness.run(robustness.Config(tasks=("digits",), shifts=("noisey",), n=60))
    with pytest.raises(ValueError, match="none of the prompts"):  # a prompt of another task
        robustness.one(robustness.Config(prompts=("yes_no",), n=60, shots=2), None, "digits")
