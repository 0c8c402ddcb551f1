"""Every new family's tiny checkpoint against independent oracles.

The oracle for each family is written here from the HF modelling code, not read from the
adapter: which module (path relative to the decoder layer, input or output) each site is,
where the decoder layers and vision blocks sit, and how vision tokens pool per image. Checks:
plain torch forward hooks, HF ``output_hidden_states``, the residual identities, ``z``
through ``o_proj``, early stop, batch-size invariance, the vision site, early exit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from PIL import Image

import sn_interp as sn

LLAMA = {"resid_pre": ("", "input"), "z": ("self_attn.o_proj", "input"),
         "attn_out": ("self_attn.o_proj", "output"),
         "resid_mid": ("post_attention_layernorm", "input"),
         "mlp_post": ("mlp.down_proj", "input"), "mlp_out": ("mlp.down_proj", "output"),
         "resid_post": ("", "output")}
GEMMA = {**LLAMA, "attn_out": ("post_attention_layernorm", "output"),
         "resid_mid": ("pre_feedforward_layernorm", "input"),
         "mlp_out": ("post_feedforward_layernorm", "output")}
GLM = {**LLAMA, "attn_out": ("post_self_attn_layernorm", "output"),
       "resid_mid": ("post_attention_layernorm", "input"),
       "mlp_out": ("post_mlp_layernorm", "output")}
LINEAR = {k: v for k, v in LLAMA.items() if k != "z"} | {"attn_out": ("linear_attn", "output")}


def _per_image(out, enc, vlm, samples):
    """Mean over patch tokens, one image per row, no CLS."""
    return out.mean(1)


def _real_crops(out, enc, vlm, samples):
    """Mean over the patches of every crop that is not all-zero padding, per sample."""
    real = ~(enc["pixel_values"] == 0).flatten(2).all(-1)  # [sample, crop]
    per_crop = out.mean(1)
    return torch.stack([p.mean(0) for p in torch.split(per_crop, real.sum(1).tolist())])


def _tiles(out, enc, vlm, samples):
    """Mean over patch tokens (CLS dropped) of each image's tiles, counted by the processor."""
    tiles = [len(vlm.processor.image_processor(images=[s.image.convert("RGB")])["pixel_values"])
             for s in samples]
    assert sum(tiles) == len(out) and len(set(tiles)) > 1
    per_tile = out[:, 1:].mean(1)
    return torch.stack([p.mean(0) for p in torch.split(per_tile, tiles)])


def _packed_merged(out, enc, vlm, samples):
    """Packed patches split per image: 4 patches (2x2 merge) per image token of the row."""
    merged = (enc["input_ids"] == vlm.model.config.image_token_id).sum(1)
    counts = (merged * vlm.model.config.spatial_merge_size ** 2).tolist()
    assert sum(counts) == out.reshape(-1, out.shape[-1]).shape[0] and len(set(counts)) > 1
    return torch.stack([p.mean(0) for p in torch.split(out.reshape(-1, out.shape[-1]), counts)])


def _grid(out, enc, vlm, samples):
    """Packed patches split per image by the processor's ``image_grid_thw``."""
    counts = [int(t * h * w) for t, h, w in enc["image_grid_thw"].tolist()]
    return torch.stack([p.mean(0) for p in torch.split(out, counts)])


#: name -> (layers path, {layer type: layout}, vision blocks path, pooling oracle)
ORACLES = {
    "tiny-gemma3": ("model.language_model.layers", {"*": GEMMA},
                    "model.vision_tower.encoder.layers", _per_image),
    "tiny-paligemma": ("model.language_model.layers", {"*": LLAMA},
                       "model.vision_tower.encoder.layers", _per_image),
    "tiny-smolvlm": ("model.text_model.layers", {"*": LLAMA},
                     "model.vision_model.encoder.layers", _real_crops),
    "tiny-idefics3": ("model.text_model.layers", {"*": LLAMA},
                      "model.vision_model.encoder.layers", _real_crops),
    "tiny-internvl": ("model.language_model.layers", {"*": LLAMA},
                      "model.vision_tower.encoder.layer", _tiles),
    "tiny-mistral3": ("model.language_model.layers", {"*": LLAMA},
                      "model.vision_tower.transformer.layers", _packed_merged),
    "tiny-qwen3.5": ("model.language_model.layers", {"*": LLAMA, "linear_attention": LINEAR},
                     "model.visual.blocks", _grid),
    "tiny-glm4v": ("model.language_model.layers", {"*": GLM}, "model.visual.blocks", _grid),
}
NAMES = list(ORACLES)


def _samples(n: int = 4) -> list[sn.Sample]:
    rng = np.random.default_rng(1)
    questions = ["What digit is this?", "What colour is the large shape on the left side?",
                 "Is there a circle?", "Which object is in front, the red one or the blue one?"]
    return [sn.Sample(Image.fromarray(rng.integers(0, 255, (28 + 12 * i, 40, 3), np.uint8)),
                      questions[i % 4], label=i % 2, class_names=("no", "yes"),
                      sample_id=f"s{i}", task="toy", prompt_id="p0", image_id=f"img{i}")
            for i in range(n)]


@pytest.fixture(scope="module", params=NAMES)
def loaded(request):
    vlm = sn.load_model(request.param)
    samples = _samples()
    acts = sn.extract(vlm, samples, batch_size=4, progress=False)  # sites on every layer
    return request.param, vlm, samples, acts


def _layout(name, vlm, layer):
    _, layouts, _, _ = ORACLES[name]
    kind = vlm.model.config.get_text_config().layer_types[layer] if len(layouts) > 1 else "*"
    return layouts.get(kind, layouts["*"])


def _hooked(name, vlm, samples):
    """Every site of every layer at the last token, read by plain torch forward hooks."""
    layers_path = ORACLES[name][0]
    got: dict[tuple[str, int], torch.Tensor] = {}
    handles = []
    for layer in range(vlm.dims.n_layers):
        for site, (sub, which) in _layout(name, vlm, layer).items():
            mod = vlm.model.get_submodule(f"{layers_path}.{layer}" + (f".{sub}" if sub else ""))

            def hook(m, args, out, key=(site, layer), which=which):
                value = args[0] if which == "input" else out
                value = value[0] if isinstance(value, tuple) else value
                got[key] = value[:, -1].detach().clone()
            handles.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            vlm.model(**vlm.encode(samples))
    finally:
        for h in handles:
            h.remove()
    return got


def test_every_site_matches_plain_torch_hooks(loaded):
    name, vlm, samples, acts = loaded
    want = _hooked(name, vlm, samples)
    assert want
    for (site, layer), value in want.items():
        if site in acts:
            got = acts[site].sel(layer=layer).values.reshape(len(samples), -1)
            np.testing.assert_allclose(got, value.numpy(), atol=1e-5, rtol=1e-5,
                                       err_msg=f"{site}[{layer}]")


def test_resid_matches_hf_hidden_states(loaded):
    _, vlm, samples, acts = loaded
    with torch.no_grad():
        hs = vlm.model(**vlm.encode(samples), output_hidden_states=True).hidden_states
    for layer in range(vlm.dims.n_layers - 1):  # HF's last state is post-norm
        np.testing.assert_allclose(acts.resid_pre.sel(layer=layer), hs[layer][:, -1],
                                   atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(acts.resid_post.sel(layer=layer), hs[layer + 1][:, -1],
                                   atol=1e-5, rtol=1e-5)


def test_residual_identities(loaded):
    _, _, _, acts = loaded
    np.testing.assert_allclose(acts.resid_mid, acts.resid_pre + acts.attn_out, atol=1e-5)
    np.testing.assert_allclose(acts.resid_post, acts.resid_mid + acts.mlp_out, atol=1e-5)


def test_z_through_o_proj(loaded):
    name, vlm, samples, _ = loaded
    layers_path = ORACLES[name][0]
    z_layers = [la for la in range(vlm.dims.n_layers) if "z" in _layout(name, vlm, la)]
    assert z_layers and list(vlm.site_layers("z")) == z_layers
    acts = sn.extract(vlm, samples, sites=["z", "attn_out"], layers=z_layers, progress=False)
    for layer in z_layers:
        block = vlm.model.get_submodule(f"{layers_path}.{layer}")
        z = torch.from_numpy(acts.z.sel(layer=layer).values.reshape(len(samples), -1))
        with torch.no_grad():
            out = block.self_attn.o_proj(z)
            if _layout(name, vlm, layer) is GEMMA:
                out = block.post_attention_layernorm(out)
            elif _layout(name, vlm, layer) is GLM:
                out = block.post_self_attn_layernorm(out)
        np.testing.assert_allclose(out.numpy(), acts.attn_out.sel(layer=layer), atol=1e-5)


def test_batch_equals_one_by_one(loaded):
    _, vlm, samples, acts = loaded
    singles = xr.concat([sn.extract(vlm, [s], sites=list(acts.data_vars), progress=False)
                         for s in samples], "sample")
    for site in acts.data_vars:
        np.testing.assert_allclose(acts[site].values, singles[site].values, atol=1e-5,
                                   err_msg=site)


def test_stops_after_deepest_requested_site(loaded):
    name, vlm, samples, _ = loaded
    layers = vlm.model.get_submodule(ORACLES[name][0])
    started: list[int] = []
    handles = [m.register_forward_pre_hook(lambda *_, i=i: started.append(i))
               for i, m in enumerate(layers)]
    try:
        sn.extract(vlm, samples[:2], sites=["resid_mid"], layers=[0], progress=False)
        assert started == [0]
        started.clear()
        sn.extract(vlm, samples[:2], sites=["mlp_out"], layers=[1], progress=False)
        assert started == [0, 1]
    finally:
        for h in handles:
            h.remove()


def test_vision_site_is_mean_over_patches(loaded):
    name, vlm, samples, _ = loaded
    _, _, vision_path, pool = ORACLES[name]
    acts = sn.extract(vlm, samples[:3], sites=["vision_resid_post"], progress=False)
    assert acts.vision_resid_post.shape == (3, vlm.dims.n_vision_layers, vlm.dims.d_vision)
    grabbed = []
    last = vlm.model.get_submodule(f"{vision_path}.{vlm.dims.n_vision_layers - 1}")
    h = last.register_forward_hook(
        lambda m, a, o: grabbed.append(o[0] if isinstance(o, tuple) else o))
    enc = vlm.encode(samples[:3])
    try:
        with torch.no_grad():
            vlm.model(**enc)
    finally:
        h.remove()
    want = pool(grabbed[0], enc, vlm, samples[:3])
    np.testing.assert_allclose(acts.vision_resid_post.isel(vision_layer=-1).values,
                               want.numpy(), atol=1e-5)


def test_early_exit_equals_extract_then_predict(loaded):
    _, vlm, _, _ = loaded
    probe, test = sn.load_task("shapes-color", n=24).split(shots=3, seed=0)
    acts = sn.extract(vlm, probe, sites=["resid_post", "mlp_post"], layers=[0, 1],
                      progress=False)
    found = sn.find_super_neurons(acts, k=5, max_layer=0, progress=False)
    clf = sn.EarlyExitClassifier(vlm, found, batch_size=4)
    assert clf.exit_layer == 0
    ref = found.predict(sn.extract(vlm, test, sites=found.sites, layers=found.layers,
                                   progress=False))
    np.testing.assert_array_equal(clf.predict(test).values, ref.values)


def test_hybrid_layers_have_no_z_and_say_so():
    vlm = sn.load_model("tiny-qwen3.5")
    types = vlm.model.config.get_text_config().layer_types
    full = tuple(i for i, t in enumerate(types) if t == "full_attention")
    assert full and len(full) < len(types) and vlm.site_layers("z") == full
    samples = _samples(2)
    acts = sn.extract(vlm, samples, progress=False)
    assert "z" not in acts and set(acts.data_vars) == set(sn.names.ALL_SITES) - {"z"}
    with pytest.raises(ValueError, match=rf"no z on layers \[0, 1, 2\].*layers \[{full[0]}\]"):
        sn.extract(vlm, samples, sites=["z"], progress=False)
    z = sn.extract(vlm, samples, sites=["z"], layers=list(full), progress=False).z
    assert z.shape == (2, len(full), vlm.dims.n_heads, vlm.dims.d_head)


def test_cross_model_overlap_across_three_new_families(tmp_path):
    from sn_interp.analyses import cross_model_overlap

    models = ["tiny-gemma3", "tiny-qwen3.5", "tiny-internvl"]
    study = Path(__file__).resolve().parents[2] / "analyses" / "families-tiny.toml"
    cross_model_overlap.main(["--config", str(study), "--model", *models,
                              "--task", "shapes-color", "--out", str(tmp_path / "cmo"),
                              "--stores", str(tmp_path / "stores"), "--no-progress"])
    ds = xr.open_dataset(tmp_path / "cmo" / "result.nc")
    assert list(ds.model.values) == models
    assert list(ds.family.values) == ["gemma3", "qwen3_5", "internvl"]
    assert ds.relative_depth.notnull().any() and ds.depth_ks.sizes["model_a"] == 3


def test_sav_heads_of_a_hybrid_model_come_from_its_attention_layers(tmp_path):
    from sn_interp.analyses import find_super_neurons

    study = Path(__file__).resolve().parents[2] / "analyses" / "families-tiny.toml"
    find_super_neurons.main(["--config", str(study), "--model", "tiny-qwen3.5", "--task",
                             "shapes-color", "--out", str(tmp_path / "fsn"),
                             "--stores", str(tmp_path / "stores"), "--no-progress"])
    ds = xr.open_dataset(tmp_path / "fsn" / "result.nc")
    assert np.isfinite(ds.accuracy.sel(classifier="sav")).all()
    assert list((tmp_path / "stores").rglob("*-probe-z-*.zarr"))  # z read on its own layers
