"""Edit neurons at the last prompt token inside the model's own forward pass (nnsight).

:func:`edited_logits` runs one nnsight trace in which chosen units of chosen (site, layer)
reads are overwritten, in place, at the last position (the one that emits the first answer
token) before the rest of the model consumes them, and returns the next-token logits there.
Sites are the canonical ones of :mod:`sn_interp.names`, resolved through the family adapter
exactly as :mod:`sn_interp.capture` reads them; an edit of an input site (``resid_pre``,
``z``, ``resid_mid``, ``mlp_post``) changes the tensor the module receives, an edit of an
output site (``attn_out``, ``mlp_out``, ``resid_post``) the tensor it returns. Editing in
place means ``resid_pre``/``resid_mid`` edits also change the residual stream that skips
the module (as a TransformerLens hook on ``hook_resid_mid`` does).

Example:
    >>> import numpy as np, sn_interp as sn
    >>> vlm = sn.load_model("tiny-llava")
    >>> enc = vlm.encode(sn.load_task("shapes-color", n=12)[:2])
    >>> base = edited_logits(vlm, enc)
    >>> edit = {("mlp_post", 0): (np.array([3]), np.zeros((2, 1), np.float32))}
    >>> edited_logits(vlm, enc, edit).shape == base.shape
    True
"""

from __future__ import annotations

from collections.abc import Mapping

import nnsight
import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from sn_interp.capture import plan
from sn_interp.models.vlm import VLM
from sn_interp.names import SITE_ORDER, VISION_SITE

#: (site, layer) -> (flat unit indices (n,), values (batch, n) or (n,)).
Edits = Mapping[tuple[str, int],
                tuple[Int[np.ndarray, " unit"], Float[np.ndarray, "*batch unit"]]]


def _check(vlm: VLM, edits: Edits) -> None:
    for (site, layer), (units, values) in edits.items():
        if site == VISION_SITE.name:
            raise ValueError("edits of vision_resid_post are not supported (it is a pooled "
                             "read, not a tensor the model computes); edit a language-model site")
        if site not in SITE_ORDER:
            raise ValueError(f"unknown site {site!r}; the sites are {list(SITE_ORDER)}")
        if not 0 <= layer < vlm.dims.n_layers:
            raise ValueError(f"layer {layer} is out of range 0..{vlm.dims.n_layers - 1}")
        vlm.adapter.site_path(vlm.dims, site, layer)  # an absent site fails, naming its layers
        width = int(np.prod(vlm.dims.width(site)))
        u = np.asarray(units)
        if u.ndim != 1 or u.size == 0 or u.min() < 0 or u.max() >= width:
            raise ValueError(f"units of {(site, layer)} must be a non-empty 1-D array of flat "
                             f"indices in 0..{width - 1}")
        if np.asarray(values).shape[-1] != u.size:
            raise ValueError(f"values of {(site, layer)} must end in {u.size} (one per unit)")


def _envoy_value(vlm: VLM, site: str, layer: int):
    """The tensor of ``site`` at ``layer`` inside a trace (input or output of its module)."""
    path, which = vlm.adapter.site_path(vlm.dims, site, layer)
    envoy = vlm.nn.get(path)
    value = envoy.input if which == "input" else envoy.output
    return value[0] if isinstance(value, tuple) else value


def edited_logits(vlm: VLM, enc: Mapping[str, Tensor], edits: Edits | None = None
                  ) -> Float[Tensor, "batch vocab"]:
    """Next-token logits at the last position, with ``edits`` applied there (float32, CPU).

    Args:
        vlm: The loaded model.
        enc: A left-padded encoding from :meth:`VLM.encode` (last position = last prompt token).
        edits: ``{(site, layer): (units, values)}``: flat unit indices (``z`` units are
            ``head * d_head + i``) and the values to write at the last position, one row per
            batch row or one row for all. None or empty: the unedited forward.
    """
    edits = dict(edits or {})
    _check(vlm, edits)
    dev = vlm.device
    prepared = {key: (torch.as_tensor(np.asarray(u, np.int64), device=dev),
                      torch.as_tensor(np.array(v, np.float32), device=dev, dtype=vlm.dtype))
                for key, (u, v) in edits.items()}
    with torch.inference_mode(), vlm.nn.trace(**enc, remote=vlm.remote):
        for site, layer in plan(prepared):  # in forward order, as nnsight requires
            idx, values = prepared[site, layer]
            _envoy_value(vlm, site, layer)[:, -1, idx] = values
        logits = nnsight.save(vlm.nn.get(vlm.adapter.lm_head).output[:, -1].float().clone())
    return logits.cpu()
