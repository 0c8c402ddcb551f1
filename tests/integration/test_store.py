"""Zarr stores: plain-xarray readability, resume after interruption, refusal of foreign stores."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings
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


_ZARR_READER = """
import json, sys, numpy as np, zarr
g = zarr.open_group(sys.argv[1], mode="r")
out = {"format": g.metadata.zarr_format, "model_id": g.attrs["model_id"],
       "class_names": json.loads(g.attrs["class_names"]),
       "strings": {k: [str(x) for x in g[k][:]] for k in ("sample_id", "label_name", "image_id")},
       "dtypes": {k: str(g[k].metadata.data_type.to_json(zarr_format=3)) for k in g.array_keys()},
       "resid_post_sum": float(np.asarray(g["resid_post"][:], dtype=np.float64).sum())}
print(json.dumps(out))
"""


def test_store_opens_with_plain_zarr_and_tensorstore_without_warnings(vlm, tmp_path):
    path = tmp_path / "acts.zarr"
    samples = _samples(5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no UnstableSpecificationWarning etc. while writing
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        acts = sn.extract(vlm, samples, batch_size=2, store=path, progress=False).load()
    run = subprocess.run([sys.executable, "-W", "error", "-c", _ZARR_READER, str(path)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["format"] == 3 and out["model_id"] == "tiny-llava"
    assert out["class_names"] == ["0", "1", "2"]
    assert out["strings"]["sample_id"] == [f"s{i}" for i in range(5)]
    assert out["strings"]["label_name"] == ["0", "1", "2", "0", "1"]
    assert out["strings"]["image_id"] == [""] * 5
    assert out["dtypes"]["sample_id"] == "string" and out["dtypes"]["resid_post"] == "float32"
    assert out["resid_post_sum"] == pytest.approx(float(acts.resid_post.astype("f8").sum()))
    # an independent (C++) Zarr v3 implementation reads the activations bit for bit
    ts = pytest.importorskip("tensorstore")
    for site in ("resid_post", "z", "mlp_post", "label", "done"):
        spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path / site)}}
        arr = ts.open(spec, read=True).result().read().result()
        ref = acts[site].values if site != "done" else np.ones(5, bool)
        np.testing.assert_array_equal(arr, ref)


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
