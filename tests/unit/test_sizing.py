"""Sizes derived from config widths: checked against the hub's parameter counts and a real store."""

from __future__ import annotations

import pytest

from sn_interp.models import sizing
from sn_interp.names import ALL_SITES


@pytest.mark.parametrize("hub_id", list(sizing.CHECKPOINTS))
def test_quoted_widths_give_the_parameter_count_the_hub_reports(hub_id):
    ckpt = sizing.CHECKPOINTS[hub_id]
    model = sizing.meta_model(ckpt.config(), ckpt.architecture)
    built = sizing.n_params(model) + (sizing.mtp_params(model) if ckpt.reported_with_mtp else 0)
    assert built / 1e9 == pytest.approx(ckpt.params_reported, rel=0.01)


def test_qwen3_5_mtp_head_matches_the_published_count():
    # 60,828,160: the mtp.* tensors of the Qwen3.5-2B checkpoint (cited in sizing.py)
    ckpt = sizing.CHECKPOINTS["Qwen/Qwen3.5-2B"]
    model = sizing.meta_model(ckpt.config(), ckpt.architecture)
    assert sizing.mtp_params(model) == 60_828_160
    # 9B: the safetensors index's bf16 bytes / 2, mtp.* included
    ckpt = sizing.CHECKPOINTS["Qwen/Qwen3.5-9B"]
    model = sizing.meta_model(ckpt.config(), ckpt.architecture)
    total = sizing.n_params(model) + sizing.mtp_params(model)
    assert total == pytest.approx(19_306_216_416 // 2, rel=1e-5)


def test_store_bytes_by_hand_for_llava_15_7b():
    dims = sizing.checkpoint_dims("llava-hf/llava-1.5-7b-hf")
    # 5 d_model sites + z (32 heads x 128) + mlp_post (11008), 32 layers, 4 bytes, 1000 images
    assert sizing.store_bytes(dims, 1000, "float32") == (6 * 4096 + 11008) * 32 * 4 * 1000
    assert sizing.store_bytes(dims, 1000, "float16") * 2 == sizing.store_bytes(dims, 1000)
    vision = sizing.store_bytes(dims, 1, "float32", ("vision_resid_post",))
    assert vision == 24 * 1024 * 4
    with pytest.raises(ValueError, match="unknown site"):
        sizing.store_bytes(dims, 1, "float32", ("resid",))


def test_store_bytes_equal_the_bytes_extract_writes(tmp_path):
    import xarray as xr

    import sn_interp as sn

    vlm = sn.load_model("tiny-llava")
    probe, _ = sn.load_task("shapes-color", n=30).split(shots=1, seed=0)
    sites = (*ALL_SITES, "vision_resid_post")
    acts = sn.extract(vlm, probe, sites=list(sites), store=tmp_path / "a.zarr", dtype="float16",
                      progress=False)
    written = sum(xr.open_zarr(tmp_path / "a.zarr")[s].nbytes for s in sites)
    assert sizing.store_bytes(vlm.dims, acts.sizes["sample"], "float16", sites) == written


def test_summary_reports_weights_per_dtype():
    row = sizing.summary("Qwen/Qwen3-VL-8B-Instruct")
    assert row["weights_gb_bfloat16"] == pytest.approx(row["params"] * 2 / 1e9)
    assert row["n_layers"] == 36 and row["d_head"] == 128
