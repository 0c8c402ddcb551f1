"""Tiny offline checkpoints: build, load, run, determinism, atomic rebuild, tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from PIL import Image, ImageDraw
from safetensors.torch import load_file
from transformers import AutoProcessor

from sn_interp.checkpoints import tiny
from sn_interp.checkpoints.tiny import MARKER, TINY_MODELS, TINY_NAMES, build_tiny, tiny_path
from sn_interp.checkpoints.tokenizer import CHAT_TEMPLATES, TOKENIZER_FAMILIES, build_tokenizer
from sn_interp.models.registry import adapter_for

QUESTION = [
    {
        "role": "user",
        "content": [{"type": "image"}, {"type": "text", "text": "What digit is this?"}],
    }
]
_QWEN = "<|vision_start|><|image_pad|><|vision_end|>"
PLACEHOLDER = {"llava": "<image>", "qwen_vl": _QWEN, "qwen3_5": _QWEN,
               "gemma3": "<start_of_image>", "paligemma": "<image>", "idefics3": "<image>",
               "internvl": "<IMG_CONTEXT>", "mistral3": "[IMG]",
               "glm4v": "<|begin_of_image|><|image|><|end_of_image|>"}
IMAGE_TOKEN = {"llava": "<image>", "qwen_vl": "<|image_pad|>", "qwen3_5": "<|image_pad|>",
               "gemma3": "<image_soft_token>", "paligemma": "<image>", "idefics3": "<image>",
               "internvl": "<IMG_CONTEXT>", "mistral3": "[IMG]", "glm4v": "<|image|>"}


def digit_image(digit: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """A small RGB image with a digit drawn on it."""
    img = Image.new("RGB", size, (20 * digit, 255 - 20 * digit, 128))
    ImageDraw.Draw(img).text((size[0] // 3, size[1] // 4), str(digit), fill=(255, 255, 255))
    return img


@pytest.fixture(scope="module")
def loaded() -> dict[str, tuple[torch.nn.Module, transformers.ProcessorMixin]]:
    """Every tiny model and its processor, loaded from its cached directory (built if missing)."""
    out = {}
    for name in TINY_NAMES:
        path = tiny_path(name)
        model = getattr(transformers, TINY_MODELS[name].model_class).from_pretrained(path).eval()
        out[name] = (model, AutoProcessor.from_pretrained(path))
    return out


@pytest.mark.parametrize("name", TINY_NAMES)
def test_checkpoint_files(name: str) -> None:
    path = tiny_path(name)
    assert path.name == name
    for f in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "processor_config.json",
        MARKER,
    ):
        assert (path / f).is_file(), f
    size = sum(p.stat().st_size for p in path.iterdir())
    assert size < 5_000_000, f"{name} is {size} bytes"
    marker = json.loads((path / MARKER).read_text())
    assert marker["version"] == tiny.TINY_FORMAT_VERSION and marker["name"] == name
    tensors = load_file(path / "model.safetensors")
    assert {t.dtype for t in tensors.values()} == {torch.float32}


@pytest.mark.parametrize("name", TINY_NAMES)
def test_forward_and_generate(name: str, loaded) -> None:
    model, proc = loaded[name]
    spec = TINY_MODELS[name]
    adapter = adapter_for(spec.model_class)
    if adapter.prompt_format is None:
        prompt = proc.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    else:
        prompt = adapter.prompt_format.format(question="What digit is this?")
    assert PLACEHOLDER[spec.family] in prompt and "What digit is this?" in prompt
    images = [digit_image(3), digit_image(7, (30, 90))]
    if adapter.nested_images:
        images = [[image] for image in images]
    texts = [prompt, prompt.replace("digit", "colour or shape")]
    inputs = proc(images=images, text=texts, return_tensors="pt", padding=True)
    assert (inputs["attention_mask"][:, -1] == 1).all(), "batches must be left-padded"
    image_id = proc.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN[spec.family])
    assert model.config.image_token_id == image_id
    n_image = (inputs["input_ids"] == image_id).sum(1)
    assert (n_image > 0).all() and (n_image <= 32).all()
    if spec.family in ("qwen_vl", "qwen3_5", "glm4v"):
        assert "mm_token_type_ids" in inputs
    with torch.no_grad():
        logits = model(**inputs).logits
        assert logits.shape[:2] == inputs["input_ids"].shape
        assert logits.shape[-1] == model.config.text_config.vocab_size >= len(proc.tokenizer)
        assert torch.isfinite(logits).all()
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert 1 <= out.shape[1] - inputs["input_ids"].shape[1] <= 3


@pytest.mark.parametrize("name", TINY_NAMES)
def test_attention_shapes(name: str, loaded) -> None:
    model, _ = loaded[name]
    text = model.config.text_config
    assert 2 <= text.num_hidden_layers <= 4
    assert text.num_key_value_heads < text.num_attention_heads, (
        "tiny models use grouped-query attention"
    )
    decoder = model.get_submodule(adapter_for(TINY_MODELS[name].model_class).layers)
    attn = next(m for m in decoder.modules() if hasattr(m, "o_proj") and hasattr(m, "k_proj"))
    head_dim = attn.o_proj.in_features // text.num_attention_heads
    assert attn.k_proj.out_features == text.num_key_value_heads * head_dim
    if name == "tiny-qwen3-vl":
        assert text.num_attention_heads * text.head_dim != text.hidden_size
        assert head_dim == text.head_dim == 24


def test_qwen3_vl_deepstack(loaded) -> None:
    model, _ = loaded["tiny-qwen3-vl"]
    indexes = list(model.config.vision_config.deepstack_visual_indexes)
    assert indexes and len(model.model.visual.deepstack_merger_list) == len(indexes)


def test_same_name_same_weights(tmp_path: Path) -> None:
    for name in ("tiny-llava", "tiny-qwen3-vl"):
        a = load_file(build_tiny(name, tmp_path / "a" / name) / "model.safetensors")
        b = load_file(build_tiny(name, tmp_path / "b" / name) / "model.safetensors")
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
        assert (tmp_path / "a" / name / "tokenizer.json").read_bytes() == (
            tmp_path / "b" / name / "tokenizer.json"
        ).read_bytes()


def test_different_names_differ() -> None:
    seeds = [spec.seed for spec in TINY_MODELS.values()]
    assert len(set(seeds)) == len(seeds)


def test_atomic_build_and_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SN_INTERP_CACHE", str(tmp_path))
    real_build = tiny.build_tiny

    def killed(name: str, out_dir: Path) -> Path:
        real_build(name, out_dir)
        (Path(out_dir) / MARKER).unlink()
        raise KeyboardInterrupt("killed mid-build")

    monkeypatch.setattr(tiny, "build_tiny", killed)
    with pytest.raises(KeyboardInterrupt):
        tiny_path("tiny-llava")
    assert list((tmp_path / "models").iterdir()) == [], "a killed build leaves nothing behind"

    monkeypatch.setattr(tiny, "build_tiny", real_build)
    stale = tmp_path / "models" / ".tiny-llava.tmp-999999999-deadbeef"  # a SIGKILLed build
    stale.mkdir()
    path = tiny_path("tiny-llava")
    assert not stale.exists(), "leftovers of dead builds are removed"
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert tiny_path("tiny-llava") == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp, (
        "a current checkpoint is reused"
    )

    marker = json.loads((path / MARKER).read_text())
    (path / MARKER).write_text(json.dumps({**marker, "version": -1}))
    (path / "stale.txt").write_text("from an old format")
    assert tiny_path("tiny-llava") == path
    assert not (path / "stale.txt").exists(), "an old format is rebuilt"
    assert json.loads((path / MARKER).read_text())["version"] == tiny.TINY_FORMAT_VERSION
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["tiny-llava"]


def test_unknown_name() -> None:
    with pytest.raises(KeyError, match="tiny-qwen3-vl"):
        tiny_path("tiny-gpt")
    with pytest.raises(KeyError, match="known tiny models"):
        build_tiny("nope", "/nonexistent")


@pytest.mark.parametrize("family", sorted(TOKENIZER_FAMILIES))
def test_tokenizer(family: str) -> None:
    tok = build_tokenizer(family, extra_corpus=["zebra crossing"])
    assert tok.padding_side == "left" and tok.pad_token is not None and tok.eos_token is not None
    text = "Is the zebra left of the 7? ünïcødé ✓"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    for special in TOKENIZER_FAMILIES[family].special_tokens:
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1, special
    batch = tok(["yes", "What colour is the circle?"], padding=True)
    assert batch["attention_mask"][0][0] == 0 and batch["attention_mask"][0][-1] == 1
    if TOKENIZER_FAMILIES[family].chat_template:  # PaliGemma has none
        assert tok.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)


def test_tokenizer_errors() -> None:
    with pytest.raises(ValueError, match="known families: .*llava, llava_onevision.*qwen_vl"):
        build_tokenizer("gpt2")
    assert set(CHAT_TEMPLATES) >= {"llava", "llava_onevision", "qwen2_vl", "qwen3_vl"}
