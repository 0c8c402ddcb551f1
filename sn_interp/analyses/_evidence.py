"""The evidence every SN accuracy of a report carries: paired tests, selection null, stability.

Per (model, task) cell, :func:`cell_evidence` returns a Dataset over ``classifier`` (and
``versus`` for the pairwise matrix) with

- ``p_vs_zero_shot``: exact McNemar p-value of each classifier against the model's own answer
  on the same test samples; ``mcnemar_p`` (classifier, versus): every pair;
- ``null_ceiling`` (classifier): the 95th percentile of the held-out accuracy of the same
  selection rerun on permuted probe labels (``sn_top1``: its best neuron, ``sn_topk``: its
  top-k vote), ``p_null`` its permutation p-value, and ``p_null_best_score`` for the best
  probe score (a max-statistic over every candidate neuron);
- ``stable_set``: the ids selected in at least half of the stratified bootstrap draws of the
  probe set (or ``none``), ``expected_jaccard`` of two draws' SN sets.

:func:`add_holm` then Holm-corrects ``p_vs_zero_shot`` and ``mcnemar_p`` across the tasks
of each model (statsmodels), as ``*_holm``.

Example:
    >>> ev = cell_evidence(cfg, found, a_probe, a_test, preds)     # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from sn_interp.probes.stats import holm, paired_tests

if TYPE_CHECKING:
    from sn_interp.probes import SuperNeurons

NULL_OF = {"sn_top1": "top1", "sn_topk": "topk"}


def _pairwise(preds: dict[str, xr.DataArray], labels: np.ndarray) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    names = list(preds)
    df = paired_tests({n: np.asarray(p.values) for n, p in preds.items()}, labels)
    mat = np.full((len(names), len(names)), np.nan)
    for row in df.to_dict("records"):
        i, j = names.index(row["a"]), names.index(row["b"])
        mat[i, j] = mat[j, i] = row["p_value"]
    vs = mat[:, names.index("zero_shot")] if "zero_shot" in names else np.full(len(names),
                                                                               np.nan)
    return mat, vs


def cell_evidence(found: SuperNeurons, a_probe: xr.Dataset, a_test: xr.Dataset,
                  preds: dict[str, xr.DataArray], *, n_perm: int, n_boot: int, seed: int,
                  null_of: dict[str, str] | None = None, progress: bool = False) -> xr.Dataset:
    """Paired tests, selection null and stability of one cell (see the module docstring).

    Args:
        found: The cell's SuperNeurons (its selection options are rerun by the null).
        a_probe, a_test: Probe and test activations.
        preds: classifier -> predictions over the test samples (same order as ``a_test``).
        n_perm: Permutations of the selection null (0: none, NaN columns).
        n_boot: Bootstrap draws of the stability (< 2: none).
        null_of: classifier -> the null statistic its accuracy is compared with (``top1``:
            the best neuron, ``topk``: the top-k vote); default :data:`NULL_OF`.
    """
    from sn_interp.probes import selection_null, selection_stability

    names, null_of = list(preds), NULL_OF if null_of is None else null_of
    labels = np.asarray(a_test["label"].values, np.int64)
    mat, vs = _pairwise(preds, labels)
    score, folds = str(found.params.get("score", "probe")), int(found.params.get("folds", 5))
    max_layer = found.params.get("max_layer")
    ceiling, p_null, p_best = np.full(len(names), np.nan), np.full(len(names), np.nan), np.nan
    if n_perm > 0:
        from sn_interp.analyses._reuse import acts_key, reuse

        keys = (acts_key(a_probe), acts_key(a_test))
        null = reuse("selection null", None if None in keys else (
            *keys, n_perm, found.k, found.rule, score, max_layer, folds, seed),
            lambda: selection_null(a_probe, a_test, n_perm=n_perm, k=found.k, rule=found.rule,
                                   score=score, max_layer=max_layer, folds=folds, seed=seed,
                                   progress=progress))
        for i, name in enumerate(names):
            if name in null_of:
                ceiling[i] = null.attrs[f"null_ceiling_{null_of[name]}"]
                p_null[i] = null.attrs[f"p_test_{null_of[name]}"]
        p_best = null.attrs["p_best_score"]
    stable, jac = "–", np.nan
    if n_boot >= 2:
        from sn_interp.probes.stability import stable_set

        stab = selection_stability(a_probe, n_boot=n_boot, k=found.k, rule=found.rule,
                                   score=score, max_layer=max_layer, folds=folds, seed=seed,
                                   progress=progress)
        stable, jac = ", ".join(stable_set(stab)) or "none", stab.attrs["expected_jaccard"]
    cl = ("classifier",)
    return xr.Dataset(
        {"p_vs_zero_shot": (cl, vs, {"long_name": "exact McNemar p vs zero-shot"}),
         "mcnemar_p": (("classifier", "versus"), mat, {"long_name": "exact McNemar p"}),
         "null_ceiling": (cl, ceiling, {"long_name": "95th percentile of the permuted "
                                                     "held-out accuracy"}),
         "p_null": (cl, p_null, {"long_name": "selection-null p of the held-out accuracy"}),
         "p_null_best_score": ((), p_best, {"long_name": "selection-null p of the best "
                                                          "probe score"}),
         "stable_set": ((), stable),
         "expected_jaccard": ((), jac, {"long_name": "expected Jaccard of two bootstrap "
                                                     "draws' SN sets"})},
        coords={"classifier": names, "versus": names})


HOLM_VARS = ("p_vs_zero_shot", "mcnemar_p", "p_top1_vs_zero_shot")


def add_holm(result: xr.Dataset) -> xr.Dataset:
    """``<p>_holm`` for each p-value of :data:`HOLM_VARS` present: Holm across the tasks of
    each model (and each classifier / pair)."""
    out = result.copy()
    for var in HOLM_VARS:
        if var not in result:
            continue
        da = result[var].transpose("task", ...)
        vals = da.values.reshape(da.sizes["task"], -1).copy()
        for col in range(vals.shape[1]):
            vals[:, col] = holm(vals[:, col])
        out[f"{var}_holm"] = da.copy(data=vals.reshape(da.shape)).transpose(*result[var].dims)
        out[f"{var}_holm"].attrs = {"long_name": f"{result[var].attrs.get('long_name', var)}, "
                                                 "Holm across tasks"}
    return out


def evidence_tables(result: xr.Dataset) -> dict[str, pd.DataFrame]:
    """The evidence of a result holding :func:`cell_evidence` variables, as report tables.

    ``evidence``: per (model, task, classifier) the accuracy (when ``result`` has one over
    ``classifier``), the McNemar p against zero-shot (raw and Holm across tasks), the null
    ceiling and the null p. ``mcnemar``: every pair of classifiers. ``stability``: the stable
    set, the expected Jaccard and the null p of the best probe score, per cell.
    """
    cols = [v for v in ("accuracy", "p_vs_zero_shot", "p_vs_zero_shot_holm", "null_ceiling",
                        "p_null") if v in result and "classifier" in result[v].dims]
    ev = result[cols].to_dataframe().reset_index().reindex(
        columns=["model", "task", "classifier", *cols])
    ev = ev.rename(columns={"p_vs_zero_shot": "p vs zero-shot",
                            "p_vs_zero_shot_holm": "p vs zero-shot (Holm)",
                            "null_ceiling": "null ceiling", "p_null": "p (null)"})
    pairs = result[[v for v in ("mcnemar_p", "mcnemar_p_holm") if v in result]] \
        .to_dataframe().reset_index()
    order = {c: i for i, c in enumerate(result["classifier"].values.tolist())}
    keep = pairs["classifier"].map(order.__getitem__) < pairs["versus"].map(order.__getitem__)
    pairs = pairs.loc[keep.to_numpy()].reindex(columns=pairs.columns)
    pairs = pairs.rename(columns={"classifier": "a", "versus": "b", "mcnemar_p": "p",
                                  "mcnemar_p_holm": "p (Holm)"})
    stab = result[["stable_set", "expected_jaccard", "p_null_best_score"]].to_dataframe() \
        .reset_index().reindex(columns=["model", "task", "stable_set", "expected_jaccard",
                                        "p_null_best_score"])
    stab = stab.rename(columns={"stable_set": "stable SNs (frequency >= 0.5)",
                                "expected_jaccard": "expected Jaccard",
                                "p_null_best_score": "p (null, best probe score)"})
    return {"evidence": ev, "mcnemar": pairs.reset_index(drop=True), "stability": stab}
