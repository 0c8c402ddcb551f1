"""Zarr stores: plain-xarray readability, resume after interruption, refusal of foreign stores."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from PIL import Image

import sn_interp as sn
import sn_interp.extraction as extract_mod
from sn_interp.store import StoreMismatchError


def _samples(n: int, prompt: str = "p0") -> list[sn.Sample]:
    rng = np.random.default_rng(2)
    return [sn.Sample(Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)),
                      "What digit is this?" + " Look closely." * (i % 2), label=i % 3,
                      class_names=("0", "1", "2"), sample_id=f"s{i}", prompt_id=prompt,
                      task="toy")
            for i in range(n)]


@pytest.fixture(scope="module")
def vlm():
    return sn.load_model("tiny-llava")


def _tree_digest(path: Path) -> dict[str, str]:
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file()}


def test_store_matches_memory_and_opens_in_fresh_process(vlm, tmp_path):
    samples = _samples(7)
    mem = sn.extract(vlm, samples, batch_size=3, progress=False)
    path = tmp_path / "acts.zarr"
    lazy = sn.extract(vlm, samples, batch_size=3, store=path, progress=False)
    assert lazy.resid_post.chunks[0] == (3, 3, 1)
    xr.testing.assert_allclose(lazy.load(), mem)
    code = ("import sys, json, xarray as xr; ds = xr.open_zarr(sys.argv[1]); "
            "print(json.dumps([dict(ds.sizes), ds.attrs['model_id'], "
            "float(ds.resid_post.sum()), 'sn_interp' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, check=True).stdout
    sizes, model_id, total, imported = json.loads(out)
    assert sizes["sample"] == 7 and model_id == "tiny-llava" and not imported
    assert total == pytest.approx(float(mem.resid_post.sum()), rel=1e-5)


def test_interrupted_run_resumes_to_identical_store(vlm, tmp_path, monkeypatch):
    samples = _samples(10)
    whole = tmp_path / "whole.zarr"
    sn.extract(vlm, samples, batch_size=4, store=whole, progress=False)

    real = extract_mod.capture
    calls = {"n": 0}

    def dying_capture(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed mid-extraction")
        return real(*args, **kwargs)

    part = tmp_path / "part.zarr"
    monkeypatch.setattr(extract_mod, "capture", dying_capture)
    with pytest.raises(KeyboardInterrupt):
        sn.extract(vlm, samples, batch_size=4, store=part, progress=False)
    done = xr.open_zarr(part)["done"].values
    assert done.tolist() == [True] * 4 + [False] * 6
    with pytest.raises(ValueError, match="unfinished"):
        sn.open_store(part)

    monkeypatch.setattr(extract_mod, "capture", real)
    counted = {"n": 0}

    def counting_capture(*args, **kwargs):
        counted["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(extract_mod, "capture", counting_capture)
    sn.extract(vlm, samples, batch_size=4, store=part, progress=False)
    assert counted["n"] == 2  # only the two missing batches ran
    xr.testing.assert_identical(xr.open_zarr(part).load(), xr.open_zarr(whole).load())
    assert _tree_digest(part) == _tree_digest(whole)

    counted["n"] = 0
    sn.extract(vlm, samples, batch_size=4, store=part, progress=False)
    assert counted["n"] == 0  # a finished store is reused without running the model


def test_foreign_store_is_refused_and_left_untouched(vlm, tmp_path):
    path = tmp_path / "acts.zarr"
    sn.extract(vlm, _samples(4), batch_size=2, store=path, progress=False)
    before = _tree_digest(path)
    with pytest.raises(StoreMismatchError, match="prompt_template"):
        sn.extract(vlm, _samples(4, prompt="p1"), batch_size=2, store=path, progress=False)
    with pytest.raises(StoreMismatchError, match="sites"):
        sn.extract(vlm, _samples(4), sites=["z"], batch_size=2, store=path, progress=False)
    other = sn.load_model("tiny-qwen3-vl")
    with pytest.raises(StoreMismatchError, match="model_id"):
        sn.extract(other, _samples(4), batch_size=2, store=path, progress=False)
    assert _tree_digest(path) == before


def test_sharded_workers_fill_one_store(vlm, tmp_path):
    samples = _samples(9)
    whole = tmp_path / "whole.zarr"
    sn.extract(vlm, samples, batch_size=2, store=whole, progress=False)
    sharded = tmp_path / "sharded.zarr"
    part = sn.extract(vlm, samples, batch_size=2, store=sharded, shard=(1, 2), progress=False)
    assert xr.open_zarr(sharded)["done"].values.tolist() == [False, False, True, True] * 2 + [
        False]
    assert part.sizes["sample"] == 9
    sn.extract(vlm, samples, batch_size=2, store=sharded, shard=(0, 2), progress=False)
    assert _tree_digest(sharded) == _tree_digest(whole)
    with pytest.raises(ValueError, match="shard"):
        sn.extract(vlm, samples, shard=(0, 2), progress=False)
