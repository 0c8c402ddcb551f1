"""extract() against TransformerLens 4's TransformerBridge, an independent implementation.

For every tiny checkpoint whose class TransformerLens supports, both read the same HF model
(eager attention) on the same encoding; every site of every layer at the last prompt token
must agree to a relative difference <= 1e-4 (max |ours - TL| / max |TL| per site and layer).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import sn_interp as sn
from sn_interp.checkpoints.tiny import TINY_MODELS, tiny_path

bridge_mod = pytest.importorskip("transformer_lens.model_bridge")
factory = pytest.importorskip("transformer_lens.factories.architecture_adapter_factory")

#: Our site -> TransformerLens hook.
HOOKS = {"resid_pre": "blocks.{l}.hook_resid_pre", "resid_mid": "blocks.{l}.hook_resid_mid",
         "resid_post": "blocks.{l}.hook_resid_post", "attn_out": "blocks.{l}.hook_attn_out",
         "mlp_out": "blocks.{l}.hook_mlp_out", "z": "blocks.{l}.attn.hook_z",
         "mlp_post": "blocks.{l}.mlp.hook_post"}
#: TransformerLens names the token mixer of Qwen3.5's linear-attention blocks apart (and, like
#: sn_interp, has no hook_z there).
LINEAR_ATTN_OUT = "blocks.{l}.linear_attn.hook_out"
SUPPORTED = [n for n, spec in TINY_MODELS.items()
             if spec.model_class in factory.SUPPORTED_ARCHITECTURES]


def test_the_classes_transformer_lens_supports_are_all_compared():
    assert set(SUPPORTED) == {
        "tiny-llava", "tiny-llava-next", "tiny-llava-onevision", "tiny-qwen2.5-vl",
        "tiny-qwen3-vl", "tiny-gemma3", "tiny-idefics3", "tiny-mistral3", "tiny-qwen3.5",
        "tiny-glm4v"}


def _samples() -> list[sn.Sample]:
    rng = np.random.default_rng(3)
    return [sn.Sample(Image.fromarray(rng.integers(0, 255, (32 + 8 * i, 40, 3), np.uint8)), q,
                      sample_id=f"t{i}")
            for i, q in enumerate(["What colour is it?", "Is there a large red circle here?"])]


@pytest.mark.parametrize("name", SUPPORTED)
def test_extract_matches_transformer_bridge_hooks(name):
    vlm = sn.load_model(name)
    vlm.model.set_attn_implementation("eager")
    # its own copy of the same checkpoint (the bridge rewraps the modules of the model it gets)
    bridge = bridge_mod.TransformerBridge.boot_transformers(
        str(tiny_path(name)), tokenizer=vlm.tokenizer, device="cpu", dtype=torch.float32)
    assert bridge.original_model is not vlm.model
    samples = _samples()
    enc = vlm.encode(samples)
    with torch.no_grad():
        _, cache = bridge.run_with_cache(enc["input_ids"], **{k: v for k, v in enc.items()
                                                               if k != "input_ids"})
    compared = 0
    for site, hook in HOOKS.items():
        layers = list(vlm.site_layers(site))
        ours = sn.extract(vlm, samples, sites=[site], layers=layers, progress=False)[site]
        for layer in layers:
            key = hook.format(l=layer)
            if key not in cache and site == "attn_out":
                key = LINEAR_ATTN_OUT.format(l=layer)
            assert (f"blocks.{layer}.attn.hook_z" in cache) == ("z" in vlm.adapter.layer_layout(
                vlm.dims, layer))  # both see z exactly on the same layers
            theirs = cache[key][:, -1].reshape(len(samples), -1).numpy()
            mine = ours.sel(layer=layer).values.reshape(len(samples), -1)
            rel = np.abs(mine - theirs).max() / np.abs(theirs).max()
            assert rel <= 1e-4, f"{name} {site}[{layer}]: relative difference {rel:.2e}"
            compared += 1
    assert compared == sum(len(vlm.site_layers(s)) for s in HOOKS)
