"""Family adapters: where each canonical site lives in a HuggingFace module tree.

An :class:`Adapter` is pure data: module paths relative to the HF model, plus, for each site of
:mod:`sn_interp.names`, the decoder-layer submodule it is read at and whether its input or
output is read. Family modules (:mod:`~sn_interp.models.llava`, :mod:`~sn_interp.models.qwen_vl`)
each define one and register it. Nothing outside ``sn_interp.models`` names an HF module path.

:meth:`Adapter.validate` checks a loaded model against the adapter (every site resolves, widths
agree) and returns its :class:`Dims`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from sn_interp.names import ALL_SITES

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


@dataclass(frozen=True)
class Dims:
    """Widths of a loaded model's language model (and vision tower)."""

    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    n_vision_layers: int
    d_vision: int

    def width(self, site: str) -> tuple[int, ...]:
        """Shape of one site at one layer for one sample (after ``sample`` and ``layer``)."""
        return {
            "z": (self.n_heads, self.d_head),
            "mlp_post": (self.d_mlp,),
            "vision_resid_post": (self.d_vision,),
        }.get(site, (self.d_model,))


@dataclass(frozen=True)
class Adapter:
    """Where a model family keeps its parts.

    Attributes:
        family: Family name (``llava``, ``qwen_vl``).
        architectures: HF model class names this adapter supports.
        layers: Path of the language model's decoder ``ModuleList``.
        final_norm: Path of the language model's final norm.
        lm_head: Path of the LM head.
        vision_blocks: Candidate paths of the vision tower's block ``ModuleList`` (the first
            that resolves is used: CLIP and SigLIP towers nest differently).
        vision_tokens: How to pool a vision block's output into one vector per image:
            ``"batch_first"`` ([image, token, d], CLS at token 0 dropped when
            ``vision_cls`` is True) or ``"packed"`` ([tokens of all images, d], split by
            ``image_grid_thw``).
        vision_cls: Whether vision token 0 is a CLS token to leave out of the mean.
        layout: Site -> (decoder-layer submodule, "input" | "output").
    """

    family: str
    architectures: tuple[str, ...]
    layers: str
    final_norm: str
    lm_head: str
    vision_blocks: tuple[str, ...]
    vision_tokens: str
    vision_cls: bool = False
    layout: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(LLAMA_LAYOUT))

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

    def site_module(self, model: torch.nn.Module, site: str, layer: int) -> torch.nn.Module:
        sub, _ = self.layout[site]
        block = self.module(model, self.layers)[layer]
        return block.get_submodule(sub) if sub else block

    def validate(self, model: torch.nn.Module) -> Dims:
        """Resolve every site of every layer and check the widths agree; return the dims."""
        layers = self.module(model, self.layers)
        self.module(model, self.final_norm)
        self.module(model, self.lm_head)
        text = model.config.get_text_config()
        d_model = int(text.hidden_size)
        n_heads = int(text.num_attention_heads)
        n_kv = int(getattr(text, "num_key_value_heads", None) or n_heads)
        block0 = layers[0]
        o_proj = block0.get_submodule(self.layout["z"][0])
        down = block0.get_submodule(self.layout["mlp_post"][0])
        if o_proj.in_features % n_heads:
            raise ValueError(f"o_proj.in_features={o_proj.in_features} is not a multiple of "
                             f"num_attention_heads={n_heads}: cannot split z into heads")
        dims = Dims(
            n_layers=len(layers), d_model=d_model, d_mlp=int(down.in_features),
            n_heads=n_heads, n_kv_heads=n_kv, d_head=o_proj.in_features // n_heads,
            n_vision_layers=len(self.module(model, self.vision_path(model))),
            d_vision=int(_vision_width(model.config)),
        )
        for layer in range(dims.n_layers):
            for site in ALL_SITES:
                self.site_module(model, site, layer)
            block = layers[layer]
            checks = {"o_proj.out_features": (block.get_submodule(self.layout["z"][0]).out_features,
                                              d_model),
                      "down_proj.out_features": (block.get_submodule(
                          self.layout["mlp_post"][0]).out_features, d_model)}
            for what, (got, want) in checks.items():
                if got != want:
                    raise ValueError(f"layer {layer}: {what}={got} but hidden_size={want}")
        return dims


def _vision_width(config: object) -> int:
    vision = getattr(config, "vision_config", None)
    # Qwen2-VL calls the tower's width embed_dim (its hidden_size is the merger's output).
    width = getattr(vision, "embed_dim", None) or getattr(vision, "hidden_size", None)
    if width is None:
        raise ValueError("the checkpoint's config has no vision_config.hidden_size")
    return int(width)


_REGISTRY: dict[str, Adapter] = {}


def register(adapter: Adapter) -> Adapter:
    """Add a family adapter to the registry (one call per family module)."""
    _REGISTRY[adapter.family] = adapter
    return adapter


def adapter_for(architecture: str) -> Adapter:
    """The adapter supporting an HF model class name, or an error listing the supported ones."""
    from sn_interp.models import llava, qwen_vl  # noqa: F401  (registers the families)

    for adapter in _REGISTRY.values():
        if architecture in adapter.architectures:
            return adapter
    supported = sorted(a for ad in _REGISTRY.values() for a in ad.architectures)
    raise ValueError(f"unsupported architecture {architecture!r}; sn_interp supports "
                     f"{', '.join(supported)}")


def supported_architectures() -> dict[str, tuple[str, ...]]:
    """Family -> supported HF model class names."""
    from sn_interp.models import llava, qwen_vl  # noqa: F401

    return {name: ad.architectures for name, ad in _REGISTRY.items()}
