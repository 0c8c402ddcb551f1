"""Reliability, class 1: a store's identity is its content, not its names.

Edited images, question text or labels under the same ids, a checkpoint re-saved in place
and in-memory weights changed in place are refused with one line naming what changed and how
to rebuild (the store untouched); ``overwrite=True`` / ``--overwrite-stores`` rebuilds. What
held before keeps holding: pickle weights and remote code are refused.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from _store_helpers import LAYERS, SITES, extract, samples, tree
from PIL import Image
from safetensors.numpy import load_file, save_file

import sn_interp as sn
import sn_interp.extraction as extract_mod
from sn_interp import fingerprint
from sn_interp.checkpoints.tiny import tiny_path
from sn_interp.store import StoreMismatchError


@pytest.fixture(scope="module")
def vlm():
    return sn.load_model("tiny-llava")


@pytest.fixture
def counted(monkeypatch):
    """Counts forward passes, so a test can tell reuse from recomputation."""
    real, calls = extract_mod.capture, {"n": 0}

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(extract_mod, "capture", counting)
    return calls


# ---- class 1: a store's identity is its content ------------------------------------------

def _edited_image(samples):
    first = samples[0]
    pixels = np.asarray(first.image).copy()
    pixels[0, 0] ^= 1  # one pixel, one bit
    return [first.replace(image=Image.fromarray(pixels)), *samples[1:]]


@pytest.mark.parametrize(("edit", "named"), [
    (_edited_image, "image bytes changed"),
    (lambda s: [s[0].replace(question="What number is this?"), *s[1:]], "prompt text"),
    (lambda s: [s[0].replace(label=(s[0].label + 1) % 3, label_name=None), *s[1:]],
     "labels"),
])
def test_edited_content_under_same_ids_is_refused_untouched(vlm, tmp_path, edit, named):
    path = tmp_path / "acts.zarr"
    extract(vlm, samples(4), path)
    before = tree(path)
    with pytest.raises(StoreMismatchError, match=named) as err:
        extract(vlm, edit(samples(4)), path)
    assert "--overwrite-stores" in str(err.value) and "overwrite=True" in str(err.value)
    assert "\n" not in str(err.value)
    assert tree(path) == before


def test_resaved_checkpoint_in_place_is_refused(tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_path("tiny-llava"), ckpt)
    before_rev = sn.load_model(ckpt).revision
    path = tmp_path / "acts.zarr"
    extract(sn.load_model(ckpt), samples(4), path)
    weights = next(ckpt.glob("*.safetensors"))
    tensors = load_file(weights)
    name = next(k for k in sorted(tensors) if "layers.0" in k and "weight" in k)
    tensors[name] = tensors[name] + np.float32(1e-3)  # same shapes, same file size
    size = weights.stat().st_size
    save_file(tensors, weights, metadata={"format": "pt"})
    assert weights.stat().st_size == size
    resaved = sn.load_model(ckpt)
    assert resaved.revision != before_rev
    with pytest.raises(StoreMismatchError, match="re-saved checkpoint"):
        extract(resaved, samples(4), path)


def test_in_memory_weights_changed_in_place_are_refused(tmp_path):
    import torch

    from sn_interp.models import wrap

    loaded = sn.load_model("tiny-llava")
    vlm = wrap(loaded.model, loaded.processor, model_id="my-finetune")
    assert vlm.revision == "in-memory"
    path = tmp_path / "acts.zarr"
    extract(vlm, samples(4), path)
    extract(vlm, samples(4), path)  # unchanged weights: reused
    with torch.no_grad():
        next(vlm.model.parameters()).add_(1e-3)
    with pytest.raises(StoreMismatchError, match="other in-memory model weights"):
        extract(vlm, samples(4), path)


def test_file_hash_cache_follows_rewrites(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 100)
    first = fingerprint.file_sha256(f)
    assert first == hashlib.sha256(b"a" * 100).hexdigest()
    f.write_bytes(b"b" * 100)  # same size, new mtime
    assert fingerprint.file_sha256(f) == hashlib.sha256(b"b" * 100).hexdigest()


def test_overwrite_rebuilds_a_store_of_other_content(vlm, tmp_path):
    path = tmp_path / "acts.zarr"
    extract(vlm, samples(4), path)
    edited = _edited_image(samples(4))
    rebuilt = extract(vlm, edited, path, overwrite=True).load()
    fresh = sn.extract(vlm, edited, sites=SITES, layers=LAYERS, progress=False)
    xr.testing.assert_allclose(rebuilt, fresh)
    assert not list(tmp_path.glob(".acts.zarr.*"))  # no leftovers beside it


def test_overwrite_reuses_a_store_of_the_same_content(vlm, tmp_path, counted):
    path = tmp_path / "acts.zarr"
    extract(vlm, samples(4), path)
    before, calls = tree(path), counted["n"]
    extract(vlm, samples(4), path, overwrite=True)
    assert counted["n"] == calls and tree(path) == before


def test_store_without_content_fingerprint_is_refused(vlm, tmp_path):
    import zarr

    path = tmp_path / "acts.zarr"
    extract(vlm, samples(4), path)
    group = zarr.open_group(str(path), mode="r+")
    del group.attrs["images_sha256"]
    with pytest.warns(UserWarning, match="Consolidated metadata"):
        zarr.consolidate_metadata(str(path))
    with pytest.raises(StoreMismatchError, match="older sn_interp"):
        extract(vlm, samples(4), path)


def test_unreadable_store_is_refused_then_rebuilt_with_overwrite(vlm, tmp_path):
    path = tmp_path / "acts.zarr"
    path.mkdir()
    (path / "junk").write_text("not a zarr store")
    with pytest.raises(StoreMismatchError, match="cannot be opened"):
        extract(vlm, samples(4), path)
    assert (path / "junk").exists()
    ds = extract(vlm, samples(4), path, overwrite=True)
    assert ds.sizes["sample"] == 4 and np.isfinite(ds.resid_post.values).all()


def test_a_file_where_the_store_should_be_is_refused_then_replaced(vlm, tmp_path):
    path = tmp_path / "acts.zarr"
    path.write_text("my notes")
    with pytest.raises(StoreMismatchError, match="cannot be opened"):
        extract(vlm, samples(4), path)
    assert path.read_text() == "my notes"
    extract(vlm, samples(4), path, overwrite=True)
    assert path.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["acts.zarr"]


def test_overwrite_with_shard_is_refused(vlm, tmp_path):
    with pytest.raises(ValueError, match="delete each other"):
        extract(vlm, samples(4), tmp_path / "a.zarr", shard=(0, 2), overwrite=True)


def test_analyses_flag_overwrite_stores_is_documented():
    from sn_interp.analyses import find_super_neurons
    from sn_interp.analyses._common import build_parser, make_config

    text = " ".join(build_parser(find_super_neurons.Config, "x", "").format_help().split())
    assert "--overwrite-stores" in text and "Rebuild activation stores" in text
    cfg = make_config(find_super_neurons.Config, "find_super_neurons", ["--overwrite-stores"])
    assert cfg.overwrite_stores and not cfg.overwrite


# ---- what already held keeps holding ------------------------------------------------------

def test_pickle_weights_are_refused(tmp_path):
    import torch
    from safetensors.torch import load_file as load_torch

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_path("tiny-llava"), ckpt)
    state = load_torch(ckpt / "model.safetensors")
    (ckpt / "model.safetensors").unlink()
    torch.save(state, ckpt / "pytorch_model.bin")
    with pytest.raises(OSError, match="safetensors only"):
        sn.load_model(ckpt)


def test_remote_code_is_not_run(tmp_path):
    import json

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_path("tiny-llava"), ckpt)
    marker = tmp_path / "ran"
    (ckpt / "configuration_evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\n"
        "from transformers import PretrainedConfig\n"
        "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n")
    config = json.loads((ckpt / "config.json").read_text())
    config.update(model_type="evil", auto_map={"AutoConfig": "configuration_evil.EvilConfig"})
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="custom modelling code.*trust_remote_code=True") as err:
        sn.load_model(ckpt)
    assert "\n" not in str(err.value) and not marker.exists()


_KILLED_RUN = """
import sys, time
sys.path.insert(0, sys.argv[2])
import sn_interp.extraction as m
from _store_helpers import extract, samples
import sn_interp as sn
real, calls = m.capture, [0]
def slow(*a, **k):
    calls[0] += 1
    if calls[0] == 3:
        time.sleep(120)  # killed here, two batches written
    return real(*a, **k)
m.capture = slow
extract(sn.load_model("tiny-llava"), samples(7), sys.argv[1])
"""


def test_sigkill_mid_extraction_then_rerun_gives_an_identical_store(vlm, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    whole, part = tmp_path / "whole.zarr", tmp_path / "part.zarr"
    extract(vlm, samples(7), whole)
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(part),
                             str(Path(__file__).parent)], env={**os.environ})
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if part.exists() and xr.open_zarr(part)["done"].values.sum() == 4:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the extraction did not write two batches in time")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    extract(vlm, samples(7), part)  # resumes: the fingerprint matches, two batches remain
    assert tree(part) == tree(whole)


def test_analysis_on_edited_data_refuses_then_rebuilds_with_overwrite_stores(tmp_path):
    import json

    from sn_interp.analyses import find_super_neurons

    rng = np.random.default_rng(0)
    lines = []
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(tmp_path / f"{i}.png")
        lines.append(json.dumps({"image": f"{i}.png", "question": "Which?",
                                 "label": ["a", "b"][i % 2]}))
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n")
    argv = ["--model", "tiny-llava", "--task", str(tmp_path / "data.jsonl"), "--shots", "2",
            "--k", "2", "--zero-shot-mode", "first_token", "--stores", str(tmp_path / "s"),
            "--out", str(tmp_path / "o"), "--no-progress"]
    find_super_neurons.main(argv)
    for i in range(8):  # edit every image by one bit: probe and test stores are stale
        pixels = np.asarray(Image.open(tmp_path / f"{i}.png")).copy()
        pixels[0, 0, 0] ^= 1
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
    with pytest.raises(SystemExit) as exit_:
        find_super_neurons.main(argv)
    text = str(exit_.value)
    assert text.startswith("error: the store ") and "image bytes changed" in text
    assert "--overwrite-stores" in text and "\n" not in text
    find_super_neurons.main(argv + ["--overwrite-stores"])
    fresh = sn.extract(sn.load_model("tiny-llava"),
                       sn.load_task(tmp_path / "data.jsonl").split(shots=2, seed=0)[0],
                       sites=["resid_post"], progress=False)
    stored = sn.open_store(next((tmp_path / "s").rglob("*probe*.zarr")))
    np.testing.assert_allclose(stored.resid_post.values, fresh.resid_post.values, atol=1e-6)
