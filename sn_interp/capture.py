"""One nnsight trace that reads requested sites at the last prompt token, then stops.

:func:`capture` is the single place sn_interp touches model internals during a forward pass;
:func:`sn_interp.extract` and :class:`sn_interp.EarlyExitClassifier` both call it.

Reads are issued in the order the forward pass computes them (vision tower first, then per
decoder layer: ``resid_pre``, ``z``, ``attn_out``, ``resid_mid``, ``mlp_post``, ``mlp_out``,
``resid_post``), each sliced to the last position and cloned so no full sequence stays alive.
After the last read the trace stops: nothing later runs — no further decoder layer, no final
norm, no LM head.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import nnsight
import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from sn_interp.models.vlm import VLM
from sn_interp.names import SITE_ORDER, VISION_SITE

Request = tuple[str, int]  # (site, layer)


def plan(requests: Iterable[Request]) -> list[Request]:
    """Requests in forward-pass order (vision first, then by layer and position in the layer)."""
    unique = set(requests)
    return sorted(unique, key=lambda r: (r[0] != VISION_SITE.name, r[1], SITE_ORDER[r[0]]))


def capture(vlm: VLM, enc: Mapping[str, Tensor], requests: Iterable[Request], *,
            units: Mapping[Request, Sequence[int] | Int[np.ndarray, " unit"]] | None = None,
            ) -> dict[Request, Float[Tensor, "batch ..."]]:
    """Run the model on ``enc`` until every requested site is read; return the reads.

    Args:
        vlm: The loaded model.
        enc: A left-padded encoding from :meth:`VLM.encode`.
        requests: ``(site, layer)`` pairs; for ``vision_resid_post`` the layer is a vision
            block index.
        units: Optionally, per request, the flat unit indices to keep (``z`` units are
            ``head * d_head + i``); the slice is taken inside the trace, so nothing else of
            that site is copied out.

    Returns:
        ``{(site, layer): tensor}``: ``[batch, d_model]`` / ``[batch, d_mlp]`` /
        ``[batch, n_heads * d_head]`` for ``z`` / ``[batch, d_vision]`` (mean over each
        image's patch tokens), on the CPU, in the model's dtype; only the ``units`` columns
        where those are given.
    """
    ordered = plan(requests)
    if not ordered:
        raise ValueError("capture() needs at least one (site, layer) request")
    _check(vlm, ordered)
    counts = (vlm.adapter.vision_token_counts(enc, vlm.model.config)
              if ordered[0][0] == VISION_SITE.name else None)
    index = {key: torch.as_tensor(np.asarray(u, dtype=np.int64), device=vlm.device)
             for key, u in (units or {}).items()}
    physical, derived = residual_plan(ordered) if not index else (ordered, {})
    with torch.inference_mode(), vlm.nn.trace(**enc, remote=vlm.remote) as tracer:
        reads = nnsight.save(_read_all(vlm, physical, counts, index))
        tracer.stop()
    for key, (a, b) in derived.items():  # in forward order, so ingredients exist
        reads[key] = reads[a] if b is None else reads[a] + reads[b]
    return {key: reads[key].cpu() for key in ordered}


def residual_plan(ordered: list[Request]) -> tuple[list[Request], dict[Request, tuple]]:
    """Which requests to read in the trace, and which residual sites to add up from them.

    The decoder layer computes ``resid_mid = resid_pre + attn_out`` and
    ``resid_post = resid_mid + mlp_out`` (one elementwise add each, in the model's dtype), and
    the next layer's ``resid_pre`` is this layer's ``resid_post`` at the last prompt token
    (families that inject visual features between layers do so at image positions only). When the ingredients are
    requested anyway, the same add on the last-token slices gives bit-identical values for
    fewer trace reads. Returns ``(reads, {derived: (a, b)})``; ``b`` None means a copy of ``a``.
    """
    have: set[Request] = set()  # requests earlier in forward order
    physical: list[Request] = []
    derived: dict[Request, tuple] = {}
    recipes = {"resid_pre": lambda la: (("resid_post", la - 1), None),
               "resid_mid": lambda la: (("resid_pre", la), ("attn_out", la)),
               "resid_post": lambda la: (("resid_mid", la), ("mlp_out", la))}
    for site, layer in ordered:
        recipe = recipes.get(site)
        parts = recipe(layer) if recipe else None
        if parts and all(p is None or p in have for p in parts):
            derived[(site, layer)] = parts
        else:
            physical.append((site, layer))
        have.add((site, layer))
    return physical, derived


def _read_all(vlm: VLM, ordered: list[Request], counts: list[int] | None,
              index: dict[Request, Tensor]) -> dict:
    """The body of the trace: one read per request, in forward order."""
    reads = {}
    for site, layer in ordered:
        if site == VISION_SITE.name:
            block = vlm.nn.get(f"{vlm.meta['vision_blocks']}.{layer}")
            value = vlm.adapter.pool_vision(block.output, counts)
        else:
            path, which = vlm.adapter.site_path(vlm.dims, site, layer)
            envoy = vlm.nn.get(path)
            value = envoy.input if which == "input" else envoy.output
            if isinstance(value, tuple):
                value = value[0]
            value = value[:, -1]
        if (site, layer) in index:
            value = value[:, index[(site, layer)]]
        reads[(site, layer)] = value.detach().clone()
    return reads


def _check(vlm: VLM, ordered: list[Request]) -> None:
    dims = vlm.dims
    refused = vlm.adapter.vision_refused.get(vlm.meta.get("architecture", ""))
    if refused and any(s == VISION_SITE.name for s, _ in ordered):
        raise ValueError(refused)
    for site, layer in ordered:
        limit = dims.n_vision_layers if site == VISION_SITE.name else dims.n_layers
        if site != VISION_SITE.name and site not in SITE_ORDER:
            raise ValueError(f"unknown site {site!r}")
        if not 0 <= layer < limit:
            raise ValueError(f"layer {layer} of {site} is out of range: {vlm.model_id} has "
                             f"{limit} {'vision ' if site == VISION_SITE.name else ''}layers "
                             f"(0..{limit - 1})")
        if site != VISION_SITE.name:
            vlm.adapter.site_path(dims, site, layer)  # an absent site fails, naming its layers
