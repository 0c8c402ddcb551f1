"""Overlap measures between two Super Neuron selections (used by robustness and
cross_model_overlap): Jaccard index of the top-k neuron ids, Spearman rank correlation of
the score vectors over the neuron ids both scored.

Example:
    >>> jaccard(["x", "y"], ["y", "z"])
    0.3333333333333333
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from sn_interp.probes import SuperNeurons


def jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    """|A ∩ B| / |A ∪ B| of two id sets.

    Example:
        >>> jaccard(["x", "y"], ["y", "z"])
        0.3333333333333333
    """
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else float("nan")


def top_ids(found: SuperNeurons, k: int | None = None) -> list[str]:
    """Neuron ids of the top ``k`` (default: the selection's own k) of a SuperNeurons."""
    return [str(i) for i in found.table["id"][: k or found.k].values]


def rank_correlation(a: SuperNeurons, b: SuperNeurons) -> float:
    """Spearman correlation of two selections' scores over the neuron ids both scored."""
    from scipy.stats import spearmanr

    sa = pd.Series(a.table["score"].values, index=a.table["id"].values)
    sb = pd.Series(b.table["score"].values, index=b.table["id"].values)
    common = sa.index.intersection(sb.index)
    xa, xb = sa.loc[common], sb.loc[common]
    if len(common) < 3 or xa.nunique() < 2 or xb.nunique() < 2:
        return float("nan")
    result = spearmanr(xa.to_numpy(), xb.to_numpy())
    return float(result.statistic)  # pyright: ignore[reportAttributeAccessIssue]  (scipy's stub)


def overlap(a: SuperNeurons, b: SuperNeurons) -> dict[str, float]:
    """``jaccard`` of the top-k ids and ``spearman`` of the score vectors of two selections."""
    return {"jaccard": jaccard(top_ids(a), top_ids(b)), "spearman": rank_correlation(a, b)}

