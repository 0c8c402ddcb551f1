"""The family registry: an explicit list of family modules, each one :class:`Family`.

Adding a family is one module in :mod:`sn_interp.models.families` plus one line in
:data:`FAMILY_MODULES`. Family modules import :mod:`sn_interp.models.adapter` and
:mod:`sn_interp.models.families._spec` only, never this module.

Example:
    >>> from sn_interp.models.registry import adapter_for
    >>> adapter_for("LlavaForConditionalGeneration").family
    'llava'
"""

from __future__ import annotations

import importlib

from sn_interp.models.adapter import Adapter
from sn_interp.models.families._spec import Family, TinySpec, TokenizerFamily

__all__ = ["FAMILIES", "Family", "TinySpec", "TokenizerFamily", "adapter_for", "chat_templates",
           "supported_architectures", "tiny_specs", "tokenizer_families"]

#: The family modules of :mod:`sn_interp.models.families`, in registry order (one line each).
FAMILY_MODULES: tuple[str, ...] = (
    "llava",
    "qwen_vl",
    "gemma3",
    "paligemma",
    "idefics3",
    "internvl",
    "mistral3",
    "qwen3_5",
    "glm4v",
)

#: Every supported family, in registry order.
FAMILIES: tuple[Family, ...] = tuple(
    importlib.import_module(f"sn_interp.models.families.{name}").FAMILY for name in FAMILY_MODULES)


def adapter_for(architecture: str) -> Adapter:
    """The adapter supporting an HF model class name, or an error listing the supported ones."""
    for fam in FAMILIES:
        if architecture in fam.adapter.architectures:
            return fam.adapter
    supported = sorted(a for fam in FAMILIES for a in fam.adapter.architectures)
    raise ValueError(f"unsupported architecture {architecture!r}; sn_interp supports "
                     f"{', '.join(supported)}")


def supported_architectures() -> dict[str, tuple[str, ...]]:
    """Family -> supported HF model class names."""
    return {fam.name: fam.adapter.architectures for fam in FAMILIES}


def tiny_specs() -> dict[str, TinySpec]:
    """Every tiny checkpoint of every family: name -> spec (registry order)."""
    return {spec.name: spec for fam in FAMILIES for spec in fam.tiny}


def tokenizer_families() -> dict[str, TokenizerFamily]:
    """Every tokenizer family the families declare."""
    return {k: v for fam in FAMILIES for k, v in fam.tokenizers.items()}


def chat_templates() -> dict[str, str]:
    """Every chat template the families declare, by key."""
    return {k: v for fam in FAMILIES for k, v in fam.chat_templates.items()}
