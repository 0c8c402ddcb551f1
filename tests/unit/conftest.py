"""Synthetic activation Datasets in the extraction schema, with planted discriminative units."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

SHAPES = {"resid_pre": ("d_model",), "resid_mid": ("d_model",), "resid_post": ("d_model",),
          "attn_out": ("d_model",), "mlp_out": ("d_model",), "z": ("head", "d_head"),
          "mlp_post": ("d_mlp",)}


def to_zarr(acts: xr.Dataset, path, samples_per_chunk: int) -> None:
    """``acts`` as a Zarr v3 store chunked along ``sample``, strings as zarr's ``string``
    type (``sn_interp.store.vlen_strings``: no unstable-dtype warning), without consolidated
    metadata (no format warning)."""
    from sn_interp.store import vlen_strings

    ds = vlen_strings(acts)
    ds.to_zarr(path, consolidated=False, encoding={
        v: {"chunks": (samples_per_chunk, *ds[v].shape[1:])} for v in ds.data_vars})


def make_acts(*, n_per_class: int = 10, n_classes: int = 2, layers=(0, 1, 2),
              planted: dict | None = None, sites=None, seed: int = 0, d_model: int = 8,
              n_heads: int = 2, d_head: int = 4, d_mlp: int = 12, split: str = "probe",
              labels: np.ndarray | None = None) -> xr.Dataset:
    """Noise N(0,1) everywhere except planted units: ``{(site, layer, flat_unit): spread}``
    gives value ``label * spread + N(0, 0.05)`` (well separated when ``spread`` >= 1)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class) if labels is None else np.asarray(labels)
    y = rng.permutation(y) if labels is None else y
    n = len(y)
    sizes = {"d_model": d_model, "head": n_heads, "d_head": d_head, "d_mlp": d_mlp}
    data = {}
    for site, dims in SHAPES.items():
        if sites is not None and site not in sites:
            continue
        shape = (n, len(layers), *[sizes[d] for d in dims])
        arr = rng.standard_normal(shape).astype(np.float32)
        data[site] = (("sample", "layer", *dims), arr, {"long_name": site})
    for (site, layer, unit), spread in (planted or {}).items():
        arr = data[site][1]
        flat = arr.reshape(n, len(layers), -1)
        flat[:, list(layers).index(layer), unit] = y * spread + 0.05 * rng.standard_normal(n)
    names = [f"class{c}" for c in range(n_classes)]
    coords = {"layer": np.array(layers, np.int64), "head": np.arange(n_heads),
              "sample_id": ("sample", [f"{split}{i}" for i in range(n)]),
              "label": ("sample", y.astype(np.int64)),
              "label_name": ("sample", [names[c] if c >= 0 else "" for c in y]),
              "split": ("sample", [split] * n), "task": ("sample", ["synthetic"] * n),
              "prompt_id": ("sample", ["p0"] * n), "image_id": ("sample", [f"img{i}" for i in range(n)])}
    attrs = {"model_id": "synthetic", "model_revision": "", "family": "llava", "dtype": "float32",
             "task": "synthetic", "prompt_template": "Q: {question}", "position": "last_prompt_token",
             "sn_interp_version": "0.1.0", "schema_version": "1", "config": "{}",
             "class_names": json.dumps(names), "n_layers": max(layers) + 1, "n_heads": n_heads,
             "d_head": d_head}
    return xr.Dataset(data, coords=coords, attrs=attrs)


@pytest.fixture
def synth():
    """The :func:`make_acts` factory."""
    return make_acts
