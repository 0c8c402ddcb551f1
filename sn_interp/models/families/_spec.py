"""What a family module declares: :class:`Family` = adapter + tokenizer/chat data + tiny specs.

Pure data; importing it imports no family and no builder, so family modules import it freely.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from transformers import PretrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

from sn_interp.models.adapter import Adapter


@dataclass(frozen=True)
class TokenizerFamily:
    """Special tokens and defaults of one tokenizer family (what a processor expects)."""

    special_tokens: tuple[str, ...]
    eos_token: str
    pad_token: str
    chat_template: str
    bos_token: str | None = None
    unk_token: str | None = None
    add_bos_token: bool = False
    #: Named special tokens a processor reads off the tokenizer (``image_token``, ...).
    named_tokens: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TinySpec:
    """How to build one tiny random-weight test checkpoint of a family.

    Attributes:
        name: registry name, e.g. ``tiny-llava``.
        family: adapter family (``llava``, ``qwen_vl``, ...).
        model_class: name of the ``transformers`` model class.
        tokenizer_family: key of the tokenizer families (declared by the family modules).
        chat_template: key of the chat templates (declared by the family modules).
        seed: torch seed used right before constructing the model.
        make_config: tokenizer -> model config.
        make_processor: tokenizer -> processor.
    """

    name: str
    family: str
    model_class: str
    tokenizer_family: str
    chat_template: str
    seed: int
    make_config: Callable[[PreTrainedTokenizerFast], PretrainedConfig]
    make_processor: Callable[[PreTrainedTokenizerFast], ProcessorMixin]


@dataclass(frozen=True)
class Family:
    """Everything sn_interp knows about one model family, declared in one module.

    Attributes:
        adapter: Sites, vision tower, pooling and quirks (load time).
        tiny: The family's tiny test checkpoints.
        tokenizers: Tokenizer families its tiny checkpoints (and micro models) use.
        chat_templates: Chat templates (jinja) by key.
        hub_ids: Real checkpoints of the family (documentation and paper-scale configs).
    """

    adapter: Adapter
    tiny: tuple[TinySpec, ...] = ()
    tokenizers: Mapping[str, TokenizerFamily] = field(default_factory=dict)
    chat_templates: Mapping[str, str] = field(default_factory=dict)
    hub_ids: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.adapter.family
