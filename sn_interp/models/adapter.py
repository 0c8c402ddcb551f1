"""Family adapters: where each canonical site lives in a HuggingFace module tree.

An :class:`Adapter` is data: module paths relative to the HF model, the decoder-layer
submodule every site of :mod:`sn_interp.names` is read at (per layer type, for families that
mix layer types), how the vision tower's tokens pool into one vector per image, and the
family's quirks. Each family module of :mod:`sn_interp.models.families` defines one; the
registry there lists them. This module imports no family, so the families can import it.

:meth:`Adapter.validate` checks a loaded model against the adapter (every site resolves, widths
agree) and returns its :class:`Dims`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import torch
from jaxtyping import Float
from torch import Tensor

from sn_interp.names import ALL_SITES

if TYPE_CHECKING:
    from transformers import PreTrainedModel

#: Site -> (submodule of the decoder layer, "input" | "output"); "" is the layer itself.
#: This is the HF Llama/Qwen decoder-layer layout (DESIGN section 3).
LLAMA_LAYOUT: dict[str, tuple[str, str]] = {
    "resid_pre": ("", "input"),
    "z": ("self_attn.o_proj", "input"),
    "attn_out": ("self_attn.o_proj", "output"),
    "resid_mid": ("post_attention_layernorm", "input"),
    "mlp_post": ("mlp.down_proj", "input"),
    "mlp_out": ("mlp.down_proj", "output"),
    "resid_post": ("", "output"),
}

#: Layer type every layer has unless the config lists ``layer_types``.
ANY_LAYER = "*"

#: Per-sample token counts of the vision tower's output, from the encoding and the config.
CountsFn = Callable[[Mapping[str, Tensor], object], list[int]]


@dataclass(frozen=True)
class Dims:
    """Widths of a loaded model's language model (and vision tower).

    ``layer_types`` is the config's per-layer type (``full_attention``, ``sliding_attention``,
    ``linear_attention``, ...) or ``*`` for every layer when the config lists none.

    Example:
        >>> import sn_interp as sn
        >>> dims = sn.load_model("tiny-llava").dims
        >>> dims.n_layers, dims.d_model, dims.width("z"), dims.width("mlp_post")
        (2, 64, (4, 16), (128,))
    """

    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    n_vision_layers: int
    d_vision: int
    layer_types: tuple[str, ...] = ()

    def width(self, site: str) -> tuple[int, ...]:
        """Shape of one site at one layer for one sample (after ``sample`` and ``layer``)."""
        return {
            "z": (self.n_heads, self.d_head),
            "mlp_post": (self.d_mlp,),
            "vision_resid_post": (self.d_vision,),
        }.get(site, (self.d_model,))


@dataclass(frozen=True)
class Adapter:
    """Where a model family keeps its parts, and its quirks.

    Attributes:
        family: Family name (``llava``, ``qwen_vl``, ...).
        architectures: HF model class names this adapter supports.
        layers: Path of the language model's decoder ``ModuleList``.
        final_norm: Path of the language model's final norm.
        lm_head: Path of the LM head.
        vision_blocks: Candidate paths of the vision tower's block ``ModuleList`` (the first
            that resolves is used: CLIP and SigLIP towers nest differently).
        vision_tokens: How a vision block's output pools into one vector per image:
            ``"batch_first"`` ([image, token, d]: mean over tokens), ``"packed"`` (the tokens
            of all images in one sequence, split by ``vision_counts``) or ``"crops"``
            ([crop, token, d]: mean over the tokens of all crops of an image, crops per image
            from ``vision_counts``).
        vision_cls: Whether vision token 0 is a CLS token to leave out of the mean.
        vision_counts: Per-sample counts for ``packed`` (tokens) and ``crops`` (crops).
        vision_refused: Architecture -> why ``vision_resid_post`` is not read for it.
        layouts: Layer type -> {site: (decoder-layer submodule, "input" | "output")}; ``*``
            applies to layer types not listed. A site missing from a layer's layout is
            absent on that layer.
        prompt_format: ``None``: prompts go through the processor's chat template; else the
            prompt is this format of ``question`` (for processors without a chat template).
        nested_images: Whether the processor takes images as one list per sample.
        notes: Quirks worth knowing (logged with the model, listed in the README).

    Example:
        >>> import sn_interp as sn
        >>> ad = sn.load_model("tiny-llava").adapter
        >>> ad.family, ad.layers
        ('llava', 'model.language_model.layers')
    """

    family: str
    architectures: tuple[str, ...]
    layers: str
    final_norm: str
    lm_head: str
    vision_blocks: tuple[str, ...]
    vision_tokens: str
    vision_cls: bool = False
    vision_counts: CountsFn | None = None
    vision_refused: Mapping[str, str] = field(default_factory=dict)
    layouts: Mapping[str, Mapping[str, tuple[str, str]]] = field(
        default_factory=lambda: {ANY_LAYER: dict(LLAMA_LAYOUT)})
    prompt_format: str | None = None
    nested_images: bool = False
    notes: tuple[str, ...] = ()

    @property
    def layout(self) -> Mapping[str, tuple[str, str]]:
        """The layout of the family's ordinary layers (layer type ``*``)."""
        return self.layouts[ANY_LAYER]

    def module(self, model: torch.nn.Module, path: str) -> torch.nn.Module:
        """The submodule at a dotted path, with a clear error when it is missing."""
        try:
            return model.get_submodule(path) if path else model
        except AttributeError as err:
            raise ValueError(f"{type(model).__name__} has no module {path!r}; the {self.family} "
                             "adapter does not fit this checkpoint") from err

    def vision_path(self, model: torch.nn.Module) -> str:
        """The path of the vision blocks that resolves in this model."""
        for path in self.vision_blocks:
            try:
                model.get_submodule(path)
                return path
            except AttributeError:
                continue
        raise ValueError(f"{type(model).__name__} has none of the vision block paths "
                         f"{list(self.vision_blocks)}; the {self.family} adapter does not fit")

    def layer_layout(self, dims: Dims | None, layer: int) -> Mapping[str, tuple[str, str]]:
        """Site -> (submodule, which) of one decoder layer."""
        kind = dims.layer_types[layer] if dims and dims.layer_types else ANY_LAYER
        return self.layouts.get(kind, self.layout)

    def has_site(self, dims: Dims, site: str, layer: int) -> bool:
        """Whether ``site`` exists on decoder layer ``layer``."""
        return site in self.layer_layout(dims, layer)

    def site_layers(self, dims: Dims, site: str) -> tuple[int, ...]:
        """The decoder layers that have ``site``."""
        return tuple(la for la in range(dims.n_layers) if self.has_site(dims, site, la))

    def site_path(self, dims: Dims | None, site: str, layer: int) -> tuple[str, str]:
        """``(module path from the model root, "input" | "output")`` of a site at a layer."""
        layout = self.layer_layout(dims, layer)
        if site not in layout:
            kind = dims.layer_types[layer] if dims and dims.layer_types else ANY_LAYER
            raise ValueError(f"site {site!r} is absent on layer {layer} ({kind} layer) of this "
                             f"{self.family} model; layers with it: "
                             f"{list(self.site_layers(dims, site)) if dims else []}")
        sub, which = layout[site]
        return f"{self.layers}.{layer}" + (f".{sub}" if sub else ""), which

    def site_module(self, model: torch.nn.Module, site: str, layer: int,
                    dims: Dims | None = None) -> torch.nn.Module:
        """The module a site is read at (its input or output, see :meth:`site_path`)."""
        return self.module(model, self.site_path(dims, site, layer)[0])

    def pool_vision(self, out: Float[Tensor, "*tokens d_vision"] | tuple[Tensor, ...],
                    counts: list[int] | None) -> Float[Tensor, "sample d_vision"]:
        """One vector per sample from a vision block's output (mean over patch tokens)."""
        hidden = out[0] if isinstance(out, tuple) else out
        start = 1 if self.vision_cls else 0
        if self.vision_tokens == "batch_first":
            return hidden[:, start:].mean(dim=1)
        if counts is None:
            raise ValueError(f"pooling {self.vision_tokens!r} vision tokens needs the per-sample "
                             "counts of vision_token_counts()")
        if self.vision_tokens == "crops":
            per_crop = hidden[:, start:].mean(dim=1)
            return torch.stack([p.mean(dim=0) for p in torch.split(per_crop, counts, dim=0)])
        flat = hidden.reshape(-1, hidden.shape[-1])
        return torch.stack([p.mean(dim=0) for p in torch.split(flat, counts, dim=0)])

    def vision_token_counts(self, enc: Mapping[str, Tensor], config: object) -> list[int] | None:
        """Per-sample counts the pooling needs (None for ``batch_first``)."""
        if self.vision_tokens == "batch_first":
            return None
        if self.vision_counts is None:
            raise ValueError(f"the {self.family} adapter pools {self.vision_tokens!r} vision "
                             "tokens but declares no vision_counts")
        return self.vision_counts(enc, config)

    def validate(self, model: PreTrainedModel) -> Dims:
        """Resolve every site of every layer and check the widths agree; return the dims."""
        layers = cast(torch.nn.ModuleList, self.module(model, self.layers))
        self.module(model, self.final_norm)
        self.module(model, self.lm_head)
        text = model.config.get_text_config()
        d_model = int(text.hidden_size)
        n_heads = int(text.num_attention_heads)
        n_kv = int(getattr(text, "num_key_value_heads", None) or n_heads)
        types = tuple(getattr(text, "layer_types", None) or (ANY_LAYER,) * len(layers))
        probe = Dims(len(layers), d_model, 0, n_heads, n_kv, 0, 0, 0, types)
        z_layers = self.site_layers(probe, "z")
        o_proj = cast(torch.nn.Linear, self.site_module(model, "z", z_layers[0], probe))
        down = cast(torch.nn.Linear, self.site_module(model, "mlp_post", 0, probe))
        if o_proj.in_features % n_heads:
            raise ValueError(f"o_proj.in_features={o_proj.in_features} is not a multiple of "
                             f"num_attention_heads={n_heads}: cannot split z into heads")
        dims = Dims(
            n_layers=len(layers), d_model=d_model, d_mlp=int(down.in_features),
            n_heads=n_heads, n_kv_heads=n_kv, d_head=o_proj.in_features // n_heads,
            n_vision_layers=len(cast(torch.nn.ModuleList,
                                     self.module(model, self.vision_path(model)))),
            d_vision=int(_vision_width(model.config)), layer_types=types,
        )
        for layer in range(dims.n_layers):
            for site in ALL_SITES:
                if self.has_site(dims, site, layer):
                    self.site_module(model, site, layer, dims)
            self._check_widths(model, dims, layer)
        return dims

    def _check_widths(self, model: torch.nn.Module, dims: Dims, layer: int) -> None:
        checks = {("z", "in_features"): dims.n_heads * dims.d_head,
                  ("z", "out_features"): dims.d_model,
                  ("mlp_post", "in_features"): dims.d_mlp,
                  ("mlp_post", "out_features"): dims.d_model}
        for (site, attr), want in checks.items():
            if self.has_site(dims, site, layer):
                got = getattr(self.site_module(model, site, layer, dims), attr)
                if got != want:
                    raise ValueError(f"layer {layer}: the {site} module's {attr}={got}, "
                                     f"expected {want}")


def _vision_width(config: object) -> int:
    vision = getattr(config, "vision_config", None)
    # Qwen2-VL calls the tower's width embed_dim (its hidden_size is the merger's output).
    width = getattr(vision, "embed_dim", None) or getattr(vision, "hidden_size", None)
    if width is None:
        raise ValueError("the checkpoint's config has no vision_config.hidden_size")
    return int(width)
