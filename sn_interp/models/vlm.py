"""The :class:`VLM` handle: HF model + processor + nnsight wrapper + family adapter."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch
from transformers import BatchFeature, PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin

from sn_interp.models.adapter import Adapter, Dims
from sn_interp.sample import Sample

if TYPE_CHECKING:
    from nnsight.modeling.transformers import TransformersModel

log = logging.getLogger(__name__)


@dataclass
class VLM:
    """A loaded vision-language model, ready for tracing.

    Attributes:
        model: The HuggingFace model (``LlavaForConditionalGeneration``, ...).
        processor: Its processor (tokenizer + image processor + chat template).
        nn: The nnsight ``TransformersModel`` wrapping ``model``; traces go through it.
        adapter: The family adapter (module paths of every canonical site).
        dims: Widths and layer counts, validated at load.
        model_id: What the user asked for (registry name, hub id or directory).
        revision: Hub revision, or a content hash of the local weights.
        remote: Run traces through nnsight's remote execution (NDIF) instead of locally.

    Example:
        >>> import sn_interp as sn
        >>> vlm = sn.load_model("tiny-llava")
        >>> vlm.family, vlm.dims.n_layers
        ('llava', 2)
    """

    model: PreTrainedModel
    processor: ProcessorMixin
    nn: TransformersModel
    adapter: Adapter
    dims: Dims
    model_id: str
    revision: str
    remote: bool = False
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.adapter.family

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.processor.tokenizer

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def messages(self, question: str) -> list[dict[str, Any]]:  # Any: HF types content as str
        """The chat for one question about one image (image first, as both families train)."""
        return [{"role": "user", "content": [{"type": "image"},
                                             {"type": "text", "text": question}]}]

    def prompt(self, question: str) -> str:
        """The chat-templated prompt text, with the generation prompt appended.

        Families without a chat template (``adapter.prompt_format`` set) format the question
        into the prompt; their processor expands the image placeholder.
        """
        if self.adapter.prompt_format is not None:
            return self.adapter.prompt_format.format(question=question)
        return self.processor.apply_chat_template(self.messages(question),
                                                  add_generation_prompt=True, tokenize=False)

    def site_layers(self, site: str) -> tuple[int, ...]:
        """The decoder layers that have ``site`` (every layer, except for hybrid families)."""
        return self.adapter.site_layers(self.dims, site)

    def encode(self, samples: Sequence[Sample]) -> BatchFeature:
        """Left-padded model inputs for a batch of samples.

        Each sample becomes a one-image chat with the generation prompt appended, so the last
        position of every row is the last prompt token (the one that emits the first answer
        token). The result feeds ``vlm.model(**enc)`` or ``vlm.model.generate(**enc)`` as is
        (Qwen's ``image_grid_thw`` and ``mm_token_type_ids`` included when the processor
        returns them).
        """
        if not samples:
            raise ValueError("encode() needs at least one sample")
        texts = [self.prompt(s.question) for s in samples]
        images = [s.image.convert("RGB") for s in samples]
        if self.adapter.nested_images:
            images = [[image] for image in images]
        self.tokenizer.padding_side = "left"
        # Any: ProcessorMixin.__call__ is typed with per-modality kwargs only; the call takes
        # the flat ones (return_tensors, padding) every HF processor accepts.
        processor = cast(Any, self.processor)
        enc = processor(images=images, text=texts, return_tensors="pt", padding=True)
        enc.pop("labels", None)  # some processors add training labels; a forward needs none
        if enc["attention_mask"][:, -1].eq(0).any():
            raise RuntimeError("the processor did not left-pad the batch; the last position "
                               "would not be the last prompt token")
        return enc.to(self.device)

    def __repr__(self) -> str:
        d = self.dims
        return (f"VLM({self.model_id!r}, family={self.family}, layers={d.n_layers}, "
                f"d_model={d.d_model}, heads={d.n_heads}x{d.d_head}, d_mlp={d.d_mlp}, "
                f"dtype={self.dtype})")
