"""Reliability of activation stores: identity is content, id-less samples, lost chunks.

Classes 1, 2 and 5 of the reliability table in the README: every case ends in one clear
error that leaves the store untouched, or in a correct result (equal to a fresh extraction).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from PIL import Image
from safetensors.numpy import load_file, save_file

import sn_interp as sn
import sn_interp.extraction as extract_mod
from sn_interp import fingerprint
from sn_interp.models.tiny import tiny_path
from sn_interp.store import StoreDamagedError, StoreMismatchError, lost_chunks

SITES, LAYERS = ["resid_post", "z"], [0, 1]


def _samples(n: int, *, ids: bool = True, seed: int = 2, question: str = "What digit is this?",
             labels: list[int] | None = None) -> list[sn.Sample]:
    rng = np.random.default_rng(seed)
    return [sn.Sample(Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)), question,
                      label=(labels[i] if labels else i % 3), class_names=("0", "1", "2"),
                      sample_id=f"s{i}" if ids else None, prompt_id="p0", task="toy")
            for i in range(n)]


def _extract(vlm, samples, path, **kw):
    return sn.extract(vlm, samples, sites=SITES, layers=LAYERS, batch_size=2, store=path,
                      progress=False, **kw)


def _tree(path: Path) -> dict[str, str]:
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file()}


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
    _extract(vlm, _samples(4), path)
    before = _tree(path)
    with pytest.raises(StoreMismatchError, match=named) as err:
        _extract(vlm, edit(_samples(4)), path)
    assert "--overwrite-stores" in str(err.value) and "overwrite=True" in str(err.value)
    assert "\n" not in str(err.value)
    assert _tree(path) == before


def test_resaved_checkpoint_in_place_is_refused(tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_path("tiny-llava"), ckpt)
    before_rev = sn.load_model(ckpt).revision
    path = tmp_path / "acts.zarr"
    _extract(sn.load_model(ckpt), _samples(4), path)
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
        _extract(resaved, _samples(4), path)


def test_in_memory_weights_changed_in_place_are_refused(tmp_path):
    import torch

    from sn_interp.models import wrap

    loaded = sn.load_model("tiny-llava")
    vlm = wrap(loaded.model, loaded.processor, model_id="my-finetune")
    assert vlm.revision == "in-memory"
    path = tmp_path / "acts.zarr"
    _extract(vlm, _samples(4), path)
    _extract(vlm, _samples(4), path)  # unchanged weights: reused
    with torch.no_grad():
        next(vlm.model.parameters()).add_(1e-3)
    with pytest.raises(StoreMismatchError, match="other in-memory model weights"):
        _extract(vlm, _samples(4), path)


def test_file_hash_cache_follows_rewrites(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 100)
    first = fingerprint.file_sha256(f)
    assert first == hashlib.sha256(b"a" * 100).hexdigest()
    f.write_bytes(b"b" * 100)  # same size, new mtime
    assert fingerprint.file_sha256(f) == hashlib.sha256(b"b" * 100).hexdigest()


def test_overwrite_rebuilds_a_store_of_other_content(vlm, tmp_path):
    path = tmp_path / "acts.zarr"
    _extract(vlm, _samples(4), path)
    edited = _edited_image(_samples(4))
    rebuilt = _extract(vlm, edited, path, overwrite=True).load()
    fresh = sn.extract(vlm, edited, sites=SITES, layers=LAYERS, progress=False)
    xr.testing.assert_allclose(rebuilt, fresh)
    assert not list(tmp_path.glob(".acts.zarr.*"))  # no leftovers beside it


def test_overwrite_reuses_a_store_of_the_same_content(vlm, tmp_path, counted):
    path = tmp_path / "acts.zarr"
    _extract(vlm, _samples(4), path)
    before, calls = _tree(path), counted["n"]
    _extract(vlm, _samples(4), path, overwrite=True)
    assert counted["n"] == calls and _tree(path) == before


def test_store_without_content_fingerprint_is_refused(vlm, tmp_path):
    import zarr

    path = tmp_path / "acts.zarr"
    _extract(vlm, _samples(4), path)
    group = zarr.open_group(str(path), mode="r+")
    del group.attrs["images_sha256"]
    with pytest.warns(UserWarning, match="Consolidated metadata"):
        zarr.consolidate_metadata(str(path))
    with pytest.raises(StoreMismatchError, match="older sn_interp"):
        _extract(vlm, _samples(4), path)


def test_unreadable_store_is_refused_then_rebuilt_with_overwrite(vlm, tmp_path):
    path = tmp_path / "acts.zarr"
    path.mkdir()
    (path / "junk").write_text("not a zarr store")
    with pytest.raises(StoreMismatchError, match="cannot be opened"):
        _extract(vlm, _samples(4), path)
    assert (path / "junk").exists()
    ds = _extract(vlm, _samples(4), path, overwrite=True)
    assert ds.sizes["sample"] == 4 and np.isfinite(ds.resid_post.values).all()


def test_overwrite_with_shard_is_refused(vlm, tmp_path):
    with pytest.raises(ValueError, match="delete each other"):
        _extract(vlm, _samples(4), tmp_path / "a.zarr", shard=(0, 2), overwrite=True)


def test_analyses_flag_overwrite_stores_is_documented():
    from sn_interp.analyses import find_super_neurons
    from sn_interp.analyses._common import build_parser, make_config

    text = " ".join(build_parser(find_super_neurons.Config, "x", "").format_help().split())
    assert "--overwrite-stores" in text and "Rebuild activation stores" in text
    cfg = make_config(find_super_neurons.Config, "find_super_neurons", ["--overwrite-stores"])
    assert cfg.overwrite_stores and not cfg.overwrite


# ---- class 2: samples without ids ---------------------------------------------------------

def test_idless_lists_never_share_a_store(vlm, tmp_path):
    path = tmp_path / "acts.zarr"
    _extract(vlm, _samples(4, ids=False, seed=2), path)
    before = _tree(path)
    with pytest.raises(StoreMismatchError, match="sample list"):
        _extract(vlm, _samples(4, ids=False, seed=3), path)
    assert _tree(path) == before


def test_idless_ids_come_from_content_not_position():
    a = _samples(3, ids=False)
    ids = extract_mod.sample_ids(a)
    assert ids == extract_mod.sample_ids(a[::-1])[::-1]  # follow the sample, not the slot
    assert all(i.startswith("sha256-") for i in ids) and len(set(ids)) == 3
    twins = extract_mod.sample_ids([a[0], a[1], a[0]])
    assert twins == [ids[0], ids[1], ids[0] + "-2"]


def test_idless_reordered_list_is_a_different_store(vlm, tmp_path):
    path = tmp_path / "acts.zarr"
    samples = _samples(4, ids=False)
    _extract(vlm, samples, path)
    with pytest.raises(StoreMismatchError, match="sample list"):
        _extract(vlm, samples[::-1], path)


# ---- class 5: stores that lost a chunk ----------------------------------------------------

def _chunk(path: Path, var: str, i: int) -> Path:
    import zarr

    arr = zarr.open_group(str(path), mode="r")[var]
    return path / var / arr.metadata.encode_chunk_key((i,) + (0,) * (arr.ndim - 1))


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_lost_chunk_is_detected_at_open_and_recomputed_by_extract(vlm, tmp_path, damage):
    path = tmp_path / "acts.zarr"
    _extract(vlm, _samples(5), path)
    whole = _tree(path)
    f = _chunk(path, "z", 1)
    if damage == "delete":
        f.unlink()
    else:
        f.write_bytes(f.read_bytes()[:20])
    assert lost_chunks(path) == {"z": [1]}
    with pytest.raises(StoreDamagedError, match=r"lost chunk files .*\['z'\], sample chunks \[1\]"):
        sn.open_store(path)
    healed = _extract(vlm, _samples(5), path)
    assert np.isfinite(healed.z.values).all()
    assert _tree(path) == whole  # identical to the store before the damage


def test_unwritten_batches_of_an_interrupted_store_are_not_lost_chunks(vlm, tmp_path,
                                                                        monkeypatch):
    real, calls = extract_mod.capture, {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    path = tmp_path / "acts.zarr"
    monkeypatch.setattr(extract_mod, "capture", dying)
    with pytest.raises(KeyboardInterrupt):
        _extract(vlm, _samples(5), path)
    assert lost_chunks(path) == {}
    with pytest.raises(ValueError, match="unfinished"):
        sn.open_store(path)


def test_zstd_frame_walk_matches_the_codec(tmp_path):
    from numcodecs import Zstd

    from sn_interp.store import _zstd_complete

    data = np.random.default_rng(0).standard_normal(200_000).astype(np.float32).tobytes()
    for level, checksum in ((0, False), (3, True)):
        f = tmp_path / f"c{level}"
        f.write_bytes(Zstd(level=level, checksum=checksum).encode(data))
        assert _zstd_complete(f)
        whole = f.read_bytes()
        for cut in (1, 7, len(whole) // 2, len(whole) - 1):
            f.write_bytes(whole[:cut])
            assert not _zstd_complete(f), cut


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
