"""Interventions at the last prompt token against plain torch hooks and zeroed weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import sn_interp as sn
from sn_interp.intervene import edited_logits
from sn_interp.names import ALL_SITES

FAMILIES = ["tiny-llava", "tiny-qwen3-vl"]
INPUT_SITES = {"resid_pre", "z", "resid_mid", "mlp_post"}


@pytest.fixture(scope="module", params=FAMILIES)
def loaded(request):
    vlm = sn.load_model(request.param)
    rng = np.random.default_rng(2)
    samples = [sn.Sample(Image.fromarray(rng.integers(0, 255, (28 + 4 * i, 32, 3), np.uint8)),
                         "What colour is the shape?", label=i % 2, class_names=("red", "blue"),
                         sample_id=f"s{i}") for i in range(3)]
    return vlm, vlm.encode(samples)


def _torch_hooks(vlm, enc, edits):
    """The same edits as plain torch hooks on the adapter's modules (in place, last position)."""
    handles = []
    for (site, layer), (units, values) in edits.items():
        mod = vlm.adapter.site_module(vlm.model, site, layer, vlm.dims)
        idx = torch.as_tensor(units)
        val = torch.as_tensor(values, dtype=vlm.dtype)

        def write(t, idx=idx, val=val):
            t[:, -1, idx] = val

        if site in INPUT_SITES:
            def pre(m, args, kwargs, write=write):
                write(args[0] if args else kwargs["hidden_states"])
            handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
        else:
            def post(m, args, out, write=write):
                write(out[0] if isinstance(out, tuple) else out)
            handles.append(mod.register_forward_hook(post))
    try:
        with torch.inference_mode():
            return vlm.model(**enc).logits[:, -1].float()
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("site", ALL_SITES)
def test_edit_equals_torch_hook(loaded, site):
    vlm, enc = loaded
    rng = np.random.default_rng(0)
    width = int(np.prod(vlm.dims.width(site)))
    units = np.array([1, width - 2])
    edits = {(site, 0): (units, rng.standard_normal((3, 2)).astype(np.float32) * 3),
             ("mlp_post", vlm.dims.n_layers - 1): (np.array([4]), np.full(1, 7.0, np.float32))}
    base = edited_logits(vlm, enc)
    got = edited_logits(vlm, enc, edits)
    want = _torch_hooks(vlm, enc, edits)
    assert (got - base).abs().max() > 1e-3  # the edit changes the answer logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("site", "weight_of"), [("mlp_post", "mlp_post"), ("z", "z")])
def test_unit_with_zeroed_downstream_weights_has_no_effect(loaded, site, weight_of):
    vlm, enc = loaded
    unit, layer = 5, 0
    edits = {(site, layer): (np.array([unit]), np.full(1, 25.0, np.float32))}
    assert (edited_logits(vlm, enc, edits) - edited_logits(vlm, enc)).abs().max() > 1e-3
    proj = vlm.adapter.site_module(vlm.model, weight_of, layer, vlm.dims)  # the module reading the unit
    saved = proj.weight.data[:, unit].clone()
    try:
        proj.weight.data[:, unit] = 0
        torch.testing.assert_close(edited_logits(vlm, enc, edits), edited_logits(vlm, enc),
                                   rtol=0, atol=1e-6)
    finally:
        proj.weight.data[:, unit] = saved


def test_bad_edits_are_refused(loaded):
    vlm, enc = loaded
    with pytest.raises(ValueError, match="vision_resid_post"):
        edited_logits(vlm, enc, {("vision_resid_post", 0): (np.array([0]), np.zeros(1))})
    with pytest.raises(ValueError, match="flat indices"):
        edited_logits(vlm, enc, {("mlp_post", 0): (np.array([10**6]), np.zeros(1))})
    with pytest.raises(ValueError, match="out of range"):
        edited_logits(vlm, enc, {("mlp_post", 99): (np.array([0]), np.zeros(1))})
