"""load_model on every supported family: adapters validate, sites snapshot, errors are clear."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import sn_interp as sn
from sn_interp.checkpoints.tiny import TINY_NAMES, tiny_path
from sn_interp.models import supported_architectures
from sn_interp.names import ALL_SITES

# Snapshot of every tiny checkpoint's widths (n_layers, d_model, d_mlp, n_heads, n_kv_heads,
# d_head, n_vision_layers, d_vision). A change here is a change of the tiny configs or of how
# the adapters read widths: review it, do not just update it.
SNAPSHOT = {
    "tiny-llava": (2, 64, 128, 4, 2, 16, 2, 32),
    "tiny-llava-next": (3, 64, 96, 4, 2, 16, 2, 32),
    "tiny-llava-onevision": (2, 48, 112, 4, 2, 12, 2, 32),
    "tiny-qwen2-vl": (2, 64, 128, 4, 2, 16, 2, 32),
    "tiny-qwen2.5-vl": (3, 64, 96, 4, 2, 16, 2, 32),
    "tiny-qwen3-vl": (3, 64, 128, 4, 2, 24, 3, 32),
    "tiny-gemma3": (3, 64, 128, 4, 2, 16, 2, 32),
    "tiny-paligemma": (2, 64, 128, 4, 2, 16, 2, 32),
    "tiny-smolvlm": (2, 64, 128, 4, 2, 16, 2, 32),
    "tiny-idefics3": (2, 64, 128, 4, 2, 16, 2, 32),
    "tiny-internvl": (2, 64, 128, 4, 2, 16, 2, 32),
    "tiny-mistral3": (2, 64, 128, 4, 2, 16, 2, 32),
    "tiny-qwen3.5": (4, 64, 128, 4, 2, 16, 2, 32),
    "tiny-glm4v": (2, 64, 128, 4, 2, 16, 2, 32),
}
SITE_MODULES = {  # site -> (module class read, input/output) in the Llama layout
    "resid_pre": ("DecoderLayer", "input"), "z": ("Linear", "input"),
    "attn_out": ("Linear", "output"), "resid_mid": ("RMSNorm", "input"),
    "mlp_post": ("Linear", "input"), "mlp_out": ("Linear", "output"),
    "resid_post": ("DecoderLayer", "output"),
}
#: Gemma's sandwich norms: attention / MLP outputs are read after their post-norms.
_SANDWICH = {**SITE_MODULES, "attn_out": ("RMSNorm", "output"), "mlp_out": ("RMSNorm", "output")}
SITE_MODULES_BY_FAMILY = {"gemma3": _SANDWICH, "glm4v": _SANDWICH}


@pytest.mark.parametrize("name", TINY_NAMES)
def test_every_family_loads_and_extracts(name):
    vlm = sn.load_model(name)
    d = vlm.dims
    got = (d.n_layers, d.d_model, d.d_mlp, d.n_heads, d.n_kv_heads, d.d_head,
           d.n_vision_layers, d.d_vision)
    assert got == SNAPSHOT[name]
    expected = SITE_MODULES_BY_FAMILY.get(vlm.family, SITE_MODULES)
    for site in ALL_SITES:  # the last layer of every tiny model is a full-attention layer
        module = vlm.adapter.site_module(vlm.model, site, d.n_layers - 1, d)
        cls, which = expected[site]
        assert type(module).__name__.endswith(cls), (site, type(module).__name__)
        assert vlm.adapter.site_path(d, site, d.n_layers - 1)[1] == which
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 30, 3), np.uint8))
    acts = sn.extract(vlm, [sn.Sample(img, "What is this?")], sites=list(ALL_SITES),
                      layers=list(vlm.site_layers("z")), progress=False)
    assert acts.z.shape[1:] == (len(vlm.site_layers("z")), d.n_heads, d.d_head)
    assert np.isfinite(acts.resid_post.values).all()


def test_qwen3_head_dim_is_read_from_o_proj():
    vlm = sn.load_model("tiny-qwen3-vl")
    text = vlm.model.config.get_text_config()
    assert text.num_attention_heads * text.head_dim != text.hidden_size
    assert vlm.dims.d_head == text.head_dim
    assert vlm.model.config.vision_config.deepstack_visual_indexes  # DeepStack kept on


def test_directory_and_name_give_the_same_model():
    a = sn.load_model("tiny-llava")
    b = sn.load_model(tiny_path("tiny-llava"))
    for (n1, p1), (n2, p2) in zip(a.model.state_dict().items(), b.model.state_dict().items(),
                                  strict=True):
        assert n1 == n2 and torch.equal(p1, p2)
    assert a.revision == b.revision


def test_encode_left_pads_and_ends_on_generation_prompt():
    vlm = sn.load_model("tiny-qwen3-vl")
    img = Image.new("RGB", (32, 32), "red")
    enc = vlm.encode([sn.Sample(img, "Hi?"), sn.Sample(img, "A much longer question here?")])
    assert enc["attention_mask"][:, -1].all() and not enc["attention_mask"][0, 0]
    assert "mm_token_type_ids" in enc or "image_grid_thw" in enc
    text = vlm.tokenizer.decode(enc["input_ids"][1])
    assert text.rstrip().endswith(vlm.prompt("x").rstrip()[-8:])


def test_unsupported_architecture_lists_supported(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="unsupported architecture.*LlavaForConditionalGeneration"):
        sn.load_model(tmp_path)
    archs = supported_architectures()
    assert set(archs) == {"llava", "qwen_vl", "gemma3", "paligemma", "idefics3", "internvl",
                          "mistral3", "qwen3_5", "glm4v"}
    assert len(sum(archs.values(), ())) == 14


def test_bad_names_are_clear(tmp_path):
    with pytest.raises(ValueError, match="not a registry name"):
        sn.load_model("no-such-model")
    with pytest.raises(FileNotFoundError, match="config.json"):
        sn.load_model(tmp_path)
    with pytest.raises(OSError, match="hub is unreachable"):
        sn.load_model("llava-hf/llava-1.5-7b-hf")
    with pytest.raises(ValueError, match="dtype"):
        sn.load_model("tiny-llava", dtype="int3")
