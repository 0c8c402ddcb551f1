"""Sparse Attention Vectors (SAV, arXiv 2412.00142): attention heads as few-shot classifiers.

Faithful to the SAV reference code: the per-head ``z`` vector at the last prompt token,
float32 class means, cosine-similarity nearest centroid per head (ties to the lowest class
index; a zero vector has similarity 0 to every centroid, like ``torch.cosine_similarity``
with ``eps=1e-8``), heads ranked by in-sample probe accuracy (ties by (layer, head)), the top
``k=20`` vote, ties going to the highest-ranked head.

Example:
    >>> heads = sn.find_sav_heads(acts, k=20)                # doctest: +SKIP
    >>> heads.table[["layer", "head", "score"]]              # doctest: +SKIP
    >>> pred = heads.predict(test_acts)                      # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np
import xarray as xr
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from sn_interp.names import head_id
from sn_interp.probes._data import KEPT_ATTRS, probe_labels
from sn_interp.probes._selection import Selection

log = logging.getLogger(__name__)
EPS = 1e-8


def head_means(z: Float[np.ndarray, "sample head d_head"], y: Int[np.ndarray, " sample"],
               n_classes: int) -> Float[np.ndarray, "cls head d_head"]:
    """float32 class means (class, head, d_head) of per-head vectors ``z`` (sample, head, d)."""
    z = np.asarray(z, np.float32)
    sums = np.zeros((n_classes, *z.shape[1:]), np.float32)
    np.add.at(sums, y, z)
    counts = np.bincount(y, minlength=n_classes).astype(np.float32)
    return sums / counts[:, None, None]


def cosine_predict(z: Float[np.ndarray, "sample head d_head"],
                   means: Float[np.ndarray, "cls head d_head"]) -> Int[np.ndarray, "sample head"]:
    """Nearest centroid by cosine similarity: (sample, head) class indices.

    Args:
        z: (sample, head, d_head) vectors. means: (class, head, d_head) centroids.
    """
    z = np.asarray(z, np.float32)
    dots = np.einsum("nhd,chd->nhc", z, means)
    norms = np.linalg.norm(z, axis=-1)[:, :, None] * np.linalg.norm(means, axis=-1).T[None]
    sims = dots / np.maximum(norms, EPS)
    return np.argmax(sims, axis=-1).astype(np.int64)


class SAVHeads(Selection):
    """Ranked attention heads (best first) over a ``head_rank`` dim; the top ``k`` vote.

    ``table`` has coords ``layer``, ``head``, ``id`` (``blocks.L.attn.hook_z[H]``) and
    variables ``score``, ``rank`` and float32 ``centroids`` (head_rank, class, d_head).

    Example:
        >>> import sn_interp as sn
        >>> vlm = sn.load_model("tiny-llava")
        >>> probe, test = sn.load_task("shapes-color", n=60).split(shots=5, seed=0)
        >>> acts = sn.extract(vlm, probe, progress=False)    # (sample, layer, ...) per site
        >>> test_acts = sn.extract(vlm, test, progress=False)
        >>> heads = sn.find_sav_heads(acts, k=4, progress=False)
        >>> heads.table.centroids.dims                       # per head: class centroids
        ('head_rank', 'class', 'd_head')
        >>> heads.predict(test_acts).dims
        ('sample',)
    """

    dim: ClassVar[str] = "head_rank"
    kind: ClassVar[str] = "sav_heads"

    def _site(self, row: int) -> str:
        return "z"

    def _units(self, row: int) -> np.ndarray:
        d = self.table.sizes["d_head"]
        h = int(self.table["head"].values[row])
        return np.arange(h * d, (h + 1) * d, dtype=np.int64)

    def _vote_matrix(self, values: dict[tuple[str, int], np.ndarray], k: int) -> np.ndarray:
        z = np.stack(self._columns(values, k), axis=1)  # (sample, k, d_head)
        means = self.table["centroids"].values[:k].transpose(1, 0, 2)  # (class, k, d_head)
        return cosine_predict(z, means)


def find_sav_heads(acts: xr.Dataset, *, k: int = 20, progress: bool = True) -> SAVHeads:
    """Rank every attention head of ``acts.z`` as a cosine nearest-centroid classifier.

    Args:
        acts: Labelled probe-split activations with the ``z`` site.
        k: Number of heads that vote (SAV uses 20).
        progress: Show a tqdm bar over layers.

    Example:
        >>> import sn_interp as sn
        >>> vlm = sn.load_model("tiny-llava")
        >>> probe, test = sn.load_task("shapes-color", n=60).split(shots=5, seed=0)
        >>> acts = sn.extract(vlm, probe, progress=False)    # (sample, layer, ...) per site
        >>> heads = sn.find_sav_heads(acts, k=4, progress=False)
        >>> heads.sites, heads.table.sizes["head_rank"]      # 2 layers x 4 heads ranked
        (('z',), 8)
    """
    if "z" not in acts.data_vars:
        raise ValueError("find_sav_heads needs the 'z' site; extract it with "
                         "sn.extract(vlm, samples, sites=('z',))")
    y, class_names = probe_labels(acts)
    n_cls = len(class_names)
    layers = [int(la) for la in acts["z"]["layer"].values]
    rows = []
    for layer in tqdm(layers, desc="SAV heads", unit="layer", disable=not progress):
        z = np.asarray(acts["z"].sel(layer=layer).transpose("sample", "head", "d_head").values,
                       np.float32)
        if not np.isfinite(z).all():
            bad = sorted({int(h) for h in np.nonzero(~np.isfinite(z))[1]})
            raise ValueError(f"non-finite z activations in layer {layer} head(s) {bad}")
        means = head_means(z, y, n_cls)
        acc = (cosine_predict(z, means) == y[:, None]).mean(0)
        for h in range(z.shape[1]):
            rows.append((layer, h, acc[h], means[:, h]))
    order = sorted(range(len(rows)), key=lambda i: (-rows[i][2], rows[i][0], rows[i][1]))
    layer_c = np.array([rows[i][0] for i in order], np.int64)
    head_c = np.array([rows[i][1] for i in order], np.int64)
    table = xr.Dataset(
        {"score": ("head_rank", np.array([rows[i][2] for i in order]),
                   {"long_name": "probe accuracy"}),
         "rank": ("head_rank", np.arange(len(order), dtype=np.int64), {"long_name": "rank"}),
         "centroids": (("head_rank", "class", "d_head"),
                       np.stack([rows[i][3] for i in order]).astype(np.float32),
                       {"long_name": "class mean of z"})},
        coords={"layer": ("head_rank", layer_c), "head": ("head_rank", head_c),
                "id": ("head_rank", [head_id(int(la), int(h))
                                     for la, h in zip(layer_c, head_c, strict=True)]),
                "class": np.arange(n_cls), "class_name": ("class", list(class_names))})
    attrs = {a: acts.attrs[a] for a in KEPT_ATTRS if a in acts.attrs}
    table.attrs.update({"n_probe": len(y), **attrs})
    n = table.sizes["head_rank"]
    if not 1 <= k <= n:
        raise ValueError(f"k={k} is outside 1..{n} (the number of attention heads in acts)")
    return SAVHeads(table, k=k, class_names=class_names, attrs=attrs, params={})
