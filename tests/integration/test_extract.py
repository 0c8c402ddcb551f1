"""extract() against independent oracles on tiny LLaVA and tiny Qwen3-VL.

Oracles: HF ``output_hidden_states``, plain torch forward hooks, and hand-computed identities
(resid_mid = resid_pre + attn_out, resid_post = resid_mid + mlp_out, z @ W_O^T = attn_out,
mlp_post = act(gate(ln(resid_mid))) * up(ln(resid_mid))).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from PIL import Image

import sn_interp as sn
from sn_interp.names import ALL_SITES

FAMILIES = ["tiny-llava", "tiny-qwen3-vl"]


def _samples(n: int = 4) -> list[sn.Sample]:
    rng = np.random.default_rng(1)
    questions = ["What digit is this?", "What colour is the large shape on the left side?",
                 "Is there a circle?", "Which object is in front, the red one or the blue one?"]
    return [sn.Sample(Image.fromarray(rng.integers(0, 255, (28 + 4 * i, 32, 3), np.uint8)),
                      questions[i % 4], label=i % 2, class_names=("no", "yes"),
                      sample_id=f"s{i}", task="toy", prompt_id="p0", image_id=f"img{i}")
            for i in range(n)]


@pytest.fixture(scope="module", params=FAMILIES)
def loaded(request):
    vlm = sn.load_model(request.param)
    samples = _samples()
    acts = sn.extract(vlm, samples, batch_size=4, progress=False)
    return vlm, samples, acts


def _hidden_states(vlm, samples):
    with torch.no_grad():
        return vlm.model(**vlm.encode(samples), output_hidden_states=True).hidden_states


def test_schema(loaded):
    vlm, samples, acts = loaded
    d = vlm.dims
    assert set(acts.data_vars) == set(ALL_SITES)
    assert acts.resid_post.dims == ("sample", "layer", "d_model")
    assert acts.z.shape == (len(samples), d.n_layers, d.n_heads, d.d_head)
    assert acts.mlp_post.shape == (len(samples), d.n_layers, d.d_mlp)
    assert list(acts.layer.values) == list(range(d.n_layers))
    assert list(acts.sample_id.values) == [s.sample_id for s in samples]
    assert list(acts.label.values) == [s.label for s in samples]
    assert list(acts.label_name.values) == [s.label_name for s in samples]
    for key in ("model_id", "model_revision", "family", "dtype", "task", "prompt_template",
                "position", "sn_interp_version", "schema_version", "config"):
        assert key in acts.attrs, key
    assert all("long_name" in acts[v].attrs for v in acts.data_vars)
    assert np.isfinite(acts.resid_post.values).all()


def test_resid_post_matches_hf_hidden_states(loaded):
    vlm, samples, acts = loaded
    hs = _hidden_states(vlm, samples)
    for layer in range(vlm.dims.n_layers - 1):  # HF's last state is post-norm
        np.testing.assert_allclose(acts.resid_post.sel(layer=layer).values,
                                   hs[layer + 1][:, -1].numpy(), atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(acts.resid_pre.sel(layer=layer).values,
                                   hs[layer][:, -1].numpy(), atol=1e-5, rtol=1e-5)


def test_residual_identities(loaded):
    _, _, acts = loaded
    np.testing.assert_allclose(acts.resid_mid, acts.resid_pre + acts.attn_out, atol=1e-5)
    np.testing.assert_allclose(acts.resid_post, acts.resid_mid + acts.mlp_out, atol=1e-5)


def test_z_through_wo_is_attn_out(loaded):
    vlm, samples, acts = loaded
    for layer in range(vlm.dims.n_layers):
        o_proj = vlm.model.get_submodule(f"model.language_model.layers.{layer}.self_attn.o_proj")
        z = torch.from_numpy(acts.z.sel(layer=layer).values.reshape(len(samples), -1))
        with torch.no_grad():
            np.testing.assert_allclose(o_proj(z).numpy(), acts.attn_out.sel(layer=layer).values,
                                       atol=1e-5)


def test_mlp_post_recomputed_from_resid_mid(loaded):
    vlm, _, acts = loaded
    for layer in range(vlm.dims.n_layers):
        block = vlm.model.get_submodule(f"model.language_model.layers.{layer}")
        x = block.post_attention_layernorm(torch.from_numpy(acts.resid_mid.sel(layer=layer).values))
        with torch.no_grad():
            want = block.mlp.act_fn(block.mlp.gate_proj(x)) * block.mlp.up_proj(x)
        np.testing.assert_allclose(acts.mlp_post.sel(layer=layer).values, want.numpy(), atol=1e-5)


def test_batch_equals_one_by_one(loaded):
    vlm, samples, acts = loaded
    assert len({len(s.question) for s in samples}) > 1  # mixed lengths -> left padding
    singles = xr.concat([sn.extract(vlm, [s], progress=False) for s in samples], "sample")
    for site in ALL_SITES:
        np.testing.assert_allclose(acts[site].values, singles[site].values, atol=1e-5)


def test_stops_after_deepest_requested_site(loaded):
    vlm, samples, _ = loaded
    started: list[str] = []
    mods = {f"layer{i}": vlm.model.get_submodule(f"model.language_model.layers.{i}")
            for i in range(vlm.dims.n_layers)}
    mods["layer0.mlp"] = mods["layer0"].mlp
    mods["norm"] = vlm.model.get_submodule("model.language_model.norm")
    mods["lm_head"] = vlm.model.lm_head
    handles = [m.register_forward_pre_hook(lambda *_, n=n: started.append(n))
               for n, m in mods.items()]
    try:
        acts = sn.extract(vlm, samples[:2], sites=["resid_mid"], layers=[0], progress=False)
        assert started == ["layer0"], started  # not even layer 0's MLP ran
        started.clear()
        sn.extract(vlm, samples[:2], sites=["resid_post"], layers=[1], progress=False)
        assert started == ["layer0", "layer0.mlp", "layer1"], started
    finally:
        for h in handles:
            h.remove()
    assert list(acts.data_vars) == ["resid_mid"] and list(acts.layer.values) == [0]


def test_layer_subset_matches_full(loaded):
    vlm, samples, acts = loaded
    sub = sn.extract(vlm, samples, sites=["z", "mlp_post"], layers=[1], progress=False)
    assert list(sub.layer.values) == [1]
    np.testing.assert_allclose(sub.z.sel(layer=1), acts.z.sel(layer=1), atol=1e-6)


def test_vision_site_is_mean_over_patches(loaded):
    vlm, samples, _ = loaded
    acts = sn.extract(vlm, samples[:2], sites=["vision_resid_post"], progress=False)
    assert acts.vision_resid_post.dims == ("sample", "vision_layer", "d_vision")
    assert acts.vision_resid_post.shape == (2, vlm.dims.n_vision_layers, vlm.dims.d_vision)
    assert np.isfinite(acts.vision_resid_post.values).all()
    # oracle: a plain forward hook on the last vision block, pooled per image by hand
    grabbed = []
    path = vlm.meta["vision_blocks"]
    last = vlm.model.get_submodule(f"{path}.{vlm.dims.n_vision_layers - 1}")
    h = last.register_forward_hook(lambda m, a, o: grabbed.append(o[0] if isinstance(o, tuple)
                                                                 else o))
    enc = vlm.encode(samples[:2])
    with torch.no_grad():
        vlm.model(**enc)
    h.remove()
    out = grabbed[0]
    if vlm.family == "llava":
        want = out[:, 1:].mean(1)
    else:
        counts = [int(t * hh * w) for t, hh, w in enc["image_grid_thw"].tolist()]
        want = torch.stack([p.mean(0) for p in torch.split(out, counts)])
    np.testing.assert_allclose(acts.vision_resid_post.isel(vision_layer=-1).values,
                               want.numpy(), atol=1e-5)


def test_bad_arguments(loaded):
    vlm, samples, _ = loaded
    with pytest.raises(ValueError, match="unknown site"):
        sn.extract(vlm, samples, sites=["resid"], progress=False)
    with pytest.raises(ValueError, match="out of range"):
        sn.extract(vlm, samples, layers=[99], progress=False)
    with pytest.raises(ValueError, match="no samples"):
        sn.extract(vlm, [], progress=False)
    with pytest.raises(ValueError, match="duplicate sample ids"):
        sn.extract(vlm, [samples[0], samples[0]], progress=False)
    with pytest.raises(TypeError, match="not an sn_interp.Sample"):
        sn.extract(vlm, ["an image path"], progress=False)


def test_derived_residuals_are_bit_identical_to_direct_reads(loaded):
    """extract() adds resid_mid/resid_post up from their parts; a direct read must agree."""
    vlm, samples, acts = loaded
    for site in ("resid_pre", "resid_mid", "resid_post"):
        for layer in range(vlm.dims.n_layers):
            direct = sn.extract(vlm, samples, sites=[site], layers=[layer], batch_size=4,
                                progress=False)
            np.testing.assert_array_equal(direct[site].values,
                                          acts[site].sel(layer=[layer]).values)
