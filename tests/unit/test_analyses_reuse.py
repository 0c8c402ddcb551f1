"""Analyses of one report process reuse selections, nulls and zero-shot answers, keyed on
content: the same store (reopened or in memory) hits, any other content misses.

Oracle: a fresh computation (``find_super_neurons`` / ``zero_shot`` called directly)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import sn_interp as sn
from sn_interp.analyses import _data, _reuse
from sn_interp.analyses.find_super_neurons import Config


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict:
    vlm = sn.load_model("tiny-llava")
    probe, test = sn.load_task("shapes-color", n=48).split(shots=4, seed=0, test_size=12)
    root = tmp_path_factory.mktemp("reuse")
    sn.extract(vlm, probe, store=root / "probe.zarr", progress=False)
    return {"vlm": vlm, "probe": probe, "test": test, "path": root / "probe.zarr"}


@pytest.fixture(autouse=True)
def _fresh_memo() -> None:
    _reuse.clear()


def _open(path: Path) -> xr.Dataset:
    return sn.open_store(path)


def test_the_same_content_is_selected_once(stores: dict) -> None:
    cfg = Config(k=5, progress=False)
    first = _data.select(cfg, _open(stores["path"]))
    again = _data.select(cfg, _data.resident(_open(stores["path"])))  # reopened, in memory
    assert again is first
    fresh = sn.find_super_neurons(_open(stores["path"]), k=5, seed=cfg.seed, progress=False)
    xr.testing.assert_identical(first.table, fresh.table)


def test_other_content_options_or_subsets_are_not_reused(stores: dict) -> None:
    cfg = Config(k=5, progress=False)
    acts = _open(stores["path"])
    first = _data.select(cfg, acts)
    assert _data.select(Config(k=3, progress=False), acts) is not first  # other options
    subset = acts.isel(sample=slice(0, acts.sizes["sample"] - 3))  # a smaller probe split
    assert _reuse.acts_key(subset) != _reuse.acts_key(acts)
    assert _data.select(cfg, subset) is not first
    relabelled = acts.assign_coords(label=("sample", np.roll(acts["label"].values, 1)))
    assert _reuse.acts_key(relabelled) != _reuse.acts_key(acts)
    other_weights = acts.assign_attrs(model_revision="local-0000")
    assert _reuse.acts_key(other_weights) != _reuse.acts_key(acts)


def test_activations_without_content_digests_are_never_reused(stores: dict) -> None:
    acts = _open(stores["path"]).compute()
    for attr in _reuse.CONTENT_ATTRS:
        stripped = acts.copy()
        del stripped.attrs[attr]
        assert _reuse.acts_key(stripped) is None
    bare = acts.copy()
    bare.attrs = {}
    cfg = Config(k=5, progress=False)
    assert _data.select(cfg, bare) is not _data.select(cfg, bare)


def test_zero_shot_answers_are_reused_only_for_the_same_samples(stores: dict) -> None:
    cfg = Config(progress=False, batch_size=4)
    vlm, test = stores["vlm"], stores["test"]
    first = _data.zero_shot(cfg, vlm, test, mode="first_token", max_new_tokens=4)
    assert _data.zero_shot(cfg, vlm, list(test), mode="first_token", max_new_tokens=4) is first
    fresh = sn.zero_shot(vlm, test, mode="first_token", batch_size=4, progress=False)
    xr.testing.assert_identical(first, fresh)
    assert _data.zero_shot(cfg, vlm, test[:-1], mode="first_token", max_new_tokens=4) \
        is not first
    assert _data.zero_shot(cfg, vlm, test, mode="generate", max_new_tokens=2) is not first


def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_reuse, "MAX_ENTRIES", 3)
    for i in range(5):
        _reuse.reuse("example", i, lambda i=i: i)
    assert [k for _, k in _reuse._memo] == [2, 3, 4]
    monkeypatch.setattr(_reuse, "MAX_BYTES", 10)
    _reuse.reuse("array", "a", lambda: xr.Dataset({"x": ("n", np.zeros(8))}))  # 64 bytes
    _reuse.reuse("array", "b", lambda: xr.Dataset({"x": ("n", np.zeros(8))}))
    assert list(_reuse._memo) == [("array", "b")]  # the newest kept even above the cap
