"""Is a Super Neuron a property of the model or of the probe draw? Bootstrap reselection.

:func:`selection_stability` reselects the top ``k`` on stratified bootstrap resamples of the
probe set (each class resampled with replacement to its own size) and returns each neuron's
selection frequency and the expected Jaccard overlap of the SN sets of two independent draws.

Example:
    >>> stab = sn.selection_stability(acts, n_boot=100, k=10)          # doctest: +SKIP
    >>> stable_set(stab)                                                 # doctest: +SKIP
    ['blocks.1.mlp.hook_post[5]']
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import xarray as xr
from jaxtyping import Bool, Int
from tqdm.auto import tqdm

from sn_interp.probes._data import probe_labels
from sn_interp.probes.super_neurons import find_super_neurons

log = logging.getLogger(__name__)

STABLE = 0.5  # selection frequency from which a neuron is called stable


def expected_jaccard(selected: Bool[np.ndarray, "draw neuron"]) -> float:
    """Mean Jaccard overlap of the row sets of a (draw, neuron) bool matrix over all pairs.

    Example:
        >>> expected_jaccard(np.array([[1, 1, 0], [0, 1, 1]], bool))  # {0,1} vs {1,2}
        0.3333333333333333
    """
    s = np.asarray(selected, np.int64)
    n = s.shape[0]
    if n < 2:
        raise ValueError("expected_jaccard needs at least two draws")
    inter = s @ s.T
    size = s.sum(1)
    union = size[:, None] + size[None, :] - inter
    iu = np.triu_indices(n, 1)
    return float(np.mean(inter[iu] / np.maximum(union[iu], 1)))


def bootstrap_indices(y: Int[np.ndarray, " sample"], rng: np.random.Generator
                      ) -> Int[np.ndarray, " sample"]:
    """A stratified bootstrap resample of sample positions (each class to its own size)."""
    parts = [rng.choice(np.flatnonzero(y == c), size=int((y == c).sum()), replace=True)
             for c in np.unique(y)]
    return np.sort(np.concatenate(parts))


def selection_stability(acts: xr.Dataset, *, n_boot: int = 100, seed: int = 0, k: int = 20,
                        rule: str = "centroid", score: str = "probe",
                        sites: tuple[str, ...] | str | None = None,
                        max_layer: int | None = None, folds: int = 5,
                        progress: bool = True) -> xr.Dataset:
    """Selection frequency of every neuron over stratified bootstrap resamples of the probe set.

    Args:
        acts: Labelled probe-split activations.
        n_boot: Bootstrap draws (>= 2).
        seed: Seeds the resamples (and the CV folds of ``score="cv"``).
        k: Neurons in the vote, as in ``find_super_neurons``.
        rule: Per-neuron rule, as in ``find_super_neurons``.
        score: ``"probe"`` or ``"cv"``, as in ``find_super_neurons``.
        sites: Candidate sites, as in ``find_super_neurons``.
        max_layer: Deepest candidate layer, as in ``find_super_neurons``.
        folds: CV folds of ``score="cv"``, as in ``find_super_neurons``.
        progress: Show a tqdm bar over draws.

    Returns:
        Dataset over ``neuron`` (every neuron selected in some draw, plus the top ``k`` of the
        full probe set), most frequent first, with coords ``id``, ``site``, ``layer``,
        ``unit``; ``frequency`` (share of draws selecting it), ``observed_rank`` (its rank in
        the full-probe-set selection, -1 if outside the top ``k``), ``stable``
        (frequency >= 0.5) and ``selected`` (draw, neuron). Attrs: ``expected_jaccard``,
        ``n_boot``, ``k``, ``n_stable``.

    Example:
        >>> import sn_interp as sn
        >>> vlm = sn.load_model("tiny-llava")
        >>> probe, test = sn.load_task("shapes-color", n=60).split(shots=5, seed=0)
        >>> acts = sn.extract(vlm, probe, progress=False)    # (sample, layer, ...) per site
        >>> stab = sn.selection_stability(acts, n_boot=5, k=3, progress=False)
        >>> 0 <= float(stab.attrs["expected_jaccard"]) <= 1
        True
    """
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    y, _ = probe_labels(acts)
    select = functools.partial(find_super_neurons, k=k, rule=rule, score=score, sites=sites,
                               max_layer=max_layer, folds=folds, seed=seed, progress=False)
    observed = select(acts).selected
    rng = np.random.default_rng(seed)
    info: dict[str, tuple[str, int, int]] = {}
    draws: list[list[str]] = []
    for _ in tqdm(range(n_boot), desc="selection stability", disable=not progress):
        sel = select(acts.isel(sample=bootstrap_indices(y, rng))).selected
        draws.append(_remember(sel, info))
    obs_ids = _remember(observed, info)
    ids = sorted(info)
    col = {nid: j for j, nid in enumerate(ids)}
    selected = np.zeros((n_boot, len(ids)), bool)
    for b, draw in enumerate(draws):
        selected[b, [col[nid] for nid in draw]] = True
    freq = selected.mean(0)
    obs_rank = np.full(len(ids), -1, np.int64)
    obs_rank[[col[nid] for nid in obs_ids]] = np.arange(len(obs_ids))
    order = np.lexsort((np.where(obs_rank < 0, 10**9, obs_rank), -freq))
    ids_o = [ids[j] for j in order]
    jac = expected_jaccard(selected)
    log.info("selection stability (%d draws): expected Jaccard %.3f, %d stable", n_boot, jac,
             int((freq >= STABLE).sum()))
    return xr.Dataset(
        {"frequency": ("neuron", freq[order], {"long_name": "bootstrap selection frequency"}),
         "observed_rank": ("neuron", obs_rank[order],
                           {"long_name": "rank in the full-probe-set selection (-1: none)"}),
         "stable": ("neuron", freq[order] >= STABLE),
         "selected": (("draw", "neuron"), selected[:, order])},
        coords={"id": ("neuron", np.array(ids_o, str)),
                "site": ("neuron", np.array([info[i][0] for i in ids_o], str)),
                "layer": ("neuron", np.array([info[i][1] for i in ids_o], np.int64)),
                "unit": ("neuron", np.array([info[i][2] for i in ids_o], np.int64)),
                "draw": np.arange(n_boot)},
        attrs={"expected_jaccard": jac, "n_boot": n_boot, "k": k, "seed": seed,
               "n_stable": int((freq >= STABLE).sum()), "rule": rule, "score": score})


def _remember(sel: xr.Dataset, info: dict[str, tuple[str, int, int]]) -> list[str]:
    ids = [str(i) for i in sel["id"].values]
    for nid, s, la, u in zip(ids, sel["site"].values, sel["layer"].values, sel["unit"].values,
                             strict=True):
        info[nid] = (str(s), int(la), int(u))
    return ids


def stable_set(stab: xr.Dataset, threshold: float = STABLE) -> list[str]:
    """Ids of the neurons selected in at least ``threshold`` of the draws, most frequent first."""
    return [str(i) for i in stab["id"].values[stab["frequency"].values >= threshold]]


def stable_jaccard(a: xr.Dataset, b: xr.Dataset, threshold: float = STABLE) -> float:
    """Jaccard index of the stable sets of two stability results (NaN when both are empty).

    Two conditions (prompts, shifts, seeds, models) agree on their *stable* SNs when this is
    high; compare it with each condition's own ``expected_jaccard`` (resampling alone).

    Example:
        >>> a = xr.Dataset({"frequency": ("neuron", [0.9, 0.6, 0.1])},
        ...                coords={"id": ("neuron", ["x", "y", "z"])})
        >>> b = xr.Dataset({"frequency": ("neuron", [0.8, 0.2])},
        ...                coords={"id": ("neuron", ["x", "z"])})
        >>> stable_jaccard(a, b)
        0.5
    """
    sa, sb = set(stable_set(a, threshold)), set(stable_set(b, threshold))
    return len(sa & sb) / len(sa | sb) if sa | sb else float("nan")
