"""Paired significance of classifiers on the same test items: exact McNemar, Holm.

Two classifiers tested on the same samples disagree on some of them; the exact McNemar test
(statsmodels) asks whether the samples only the first gets right (``b``) and those only the
second gets right (``c``) split as a fair coin would: a two-sided binomial test of
``min(b, c)`` out of ``b + c`` at 1/2. Across the tasks of a study, the p-values of one
comparison are Holm-corrected (statsmodels ``multipletests(method="holm")``).

Example:
    >>> import numpy as np
    >>> y = np.array([0, 1, 0, 1, 0, 1])
    >>> r = mcnemar_exact(np.array([0, 1, 0, 1, 0, 1]) == y, np.array([1, 0, 1, 1, 0, 1]) == y)
    >>> r["b"], r["c"], round(r["p_value"], 3)
    (3, 0, 0.25)
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from jaxtyping import Bool, Float, Int


def mcnemar_exact(correct_a: Bool[np.ndarray, " sample"], correct_b: Bool[np.ndarray, " sample"]
                  ) -> dict[str, float]:
    """Exact McNemar test of two classifiers' per-sample correctness on the same samples.

    Args:
        correct_a, correct_b: bool (sample,) arrays, True where that classifier is right.

    Returns:
        ``{"b": only a right, "c": only b right, "p_value": two-sided exact p}``; p is 1.0
        when the two never disagree.
    """
    from statsmodels.stats.contingency_tables import mcnemar

    a = np.asarray(correct_a, bool)
    b = np.asarray(correct_b, bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"correct_a {a.shape} and correct_b {b.shape} must be equal non-empty "
                         "1-D arrays over the same test samples")
    table = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
    only_a, only_b = int(table[0, 1]), int(table[1, 0])
    p = 1.0 if only_a + only_b == 0 else float(mcnemar(table, exact=True).pvalue)  # pyright: ignore[reportAttributeAccessIssue]
    return {"b": only_a, "c": only_b, "p_value": min(p, 1.0)}


def paired_tests(preds: Mapping[str, Int[np.ndarray, " sample"]],
                 labels: Int[np.ndarray, " sample"]) -> pd.DataFrame:
    """Exact McNemar between every pair of classifiers predicting the same samples.

    Args:
        preds: classifier name -> (sample,) predicted class indices (-1 counts wrong), all on
            the same samples in the same order.
        labels: (sample,) true classes.

    Returns:
        One row per pair (in the order of ``preds``): ``a``, ``b``, ``accuracy_a``,
        ``accuracy_b``, ``only_a`` (samples only ``a`` gets right), ``only_b``, ``p_value``.

    Example:
        >>> y = np.array([0, 1, 1, 0])
        >>> paired_tests({"sn": np.array([0, 1, 1, 0]), "zero_shot": np.array([1, 1, 0, 0])},
        ...              y)[["a", "b", "only_a", "only_b", "p_value"]].values.tolist()
        [['sn', 'zero_shot', 2, 0, 0.5]]
    """
    y = np.asarray(labels, np.int64)
    correct = {}
    for name, p in preds.items():
        p = np.asarray(p, np.int64)
        if p.shape != y.shape:
            raise ValueError(f"predictions of {name!r} have shape {p.shape}, the labels "
                             f"{y.shape}: every classifier must predict the same test samples")
        correct[name] = p == y
    rows = []
    for a, b in itertools.combinations(correct, 2):
        r = mcnemar_exact(correct[a], correct[b])
        rows.append({"a": a, "b": b, "accuracy_a": float(correct[a].mean()),
                     "accuracy_b": float(correct[b].mean()), "only_a": r["b"],
                     "only_b": r["c"], "p_value": r["p_value"]})
    return pd.DataFrame(rows, columns=["a", "b", "accuracy_a", "accuracy_b", "only_a",
                                       "only_b", "p_value"])


def holm(pvalues: Sequence[float] | Float[np.ndarray, " test"]) -> Float[np.ndarray, " test"]:
    """Holm-adjusted p-values (statsmodels ``multipletests``); NaN entries stay NaN."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def holm_across(df: pd.DataFrame, family: Sequence[str], p: str = "p_value",
                out: str = "p_holm") -> pd.DataFrame:
    """Add ``out``: ``p`` Holm-corrected within each group of rows sharing ``family`` columns.

    For a study, ``family=("model", "a", "b")`` corrects each comparison of each model across
    the study's tasks.

    Example:
        >>> df = pd.DataFrame({"a": ["sn"] * 2, "task": ["x", "y"], "p_value": [0.01, 0.04]})
        >>> holm_across(df, ["a"])["p_holm"].tolist()
        [0.02, 0.04]
    """
    df = df.copy()
    df[out] = np.nan
    if df.empty:
        return df
    for _, idx in df.groupby(list(family), sort=False).groups.items():
        df.loc[idx, out] = holm(df.loc[idx, p].to_numpy())
    return df


def null_ceiling(null: Float[np.ndarray, " perm"], q: float = 95.0) -> float:
    """The ``q``-th percentile of a null distribution (the chance ceiling of an accuracy)."""
    return float(np.percentile(np.asarray(null, np.float64), q))
