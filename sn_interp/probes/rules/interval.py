"""The ``interval`` rule: one scalar cut into ordered class intervals, any number of classes.

Definition (fitted per neuron on float32 values ``x`` compared as float64, labels ``y``):

1. **Class order.** The classes are placed along the line in the order of their float64
   probe means (``x[y == c].mean()``), ascending; equal means keep class-index order (a
   stable sort). Call the ordered classes ``o_0, ..., o_{C-1}``.
2. **Cuts.** ``C - 1`` non-decreasing cut points ``t_1 <= ... <= t_{C-1}`` split the line
   into ``C`` consecutive intervals ``(-inf, t_1], (t_1, t_2], ..., (t_{C-1}, +inf)``;
   interval ``j`` predicts class ``o_j``. A value ``x`` falls in interval
   ``#{j : x > t_j}``. Intervals may be empty, so a class can be left out.
3. **Which cuts.** With the probe values sorted, a cut can sit at any position between two
   consecutive *distinct* values (at their float64 midpoint), before all values (-inf) or
   after all (+inf). The cuts maximise the number of probe samples whose interval's class is
   their own label, exactly: a dynamic programme over the sorted positions, one prefix
   maximum per class, ``O(C n)`` per neuron after the sort. Among equally good cuts the
   rule takes, from the top cut down, the lowest position for each (the lexicographically
   smallest ``(pos_{C-1}, ..., pos_1)``).

For two classes it is the threshold rule with its polarity fixed by the class means. Every
centroid partition is such an ordered split (same order, cuts at the midpoints of the
means), so on the probe set the interval rule's accuracy is never below the centroid rule's.
Scoring is the generic fit/predict :meth:`~sn_interp.probes.rules.Rule.score_block`.
Table variables: ``cuts`` (neuron, cut) float64 and ``interval_class`` (neuron, interval).

Example:
    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [5.0], [6.0], [2.5], [3.0]], np.float32)
    >>> params = interval_fit(x, np.array([0, 0, 2, 2, 1, 1]), 3)
    >>> params[:2, 0].tolist(), params[2:, 0].astype(int).tolist()  # cuts, class order
    ([1.75, 4.0], [0, 1, 2])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from jaxtyping import Float, Int

from sn_interp.probes.rules.base import Rule, TableVar, register

if TYPE_CHECKING:
    import xarray as xr

_NEG = np.int32(-(2**30))  # below every reachable count: marks a position no cut may use


def class_order(x: Float[np.ndarray, "sample neuron"], y: Int[np.ndarray, " sample"],
                n_classes: int) -> Int[np.ndarray, "cls neuron"]:
    """Classes sorted by their float64 mean per column (stable: ties keep class order)."""
    means = np.stack([x[y == c].mean(0) for c in range(n_classes)])
    return np.argsort(means, axis=0, kind="stable")


def _best_cuts(ys: np.ndarray, valid: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Sorted positions (C-1, neuron) of the optimal cuts, by DP with top-down backtracking.

    ``dp_c[j]``: most correct samples among the ``j`` smallest when they fill intervals
    ``0..c`` (interval ``c`` ending at ``j``); ``dp_c[j] = cum_c[j] + max_{i <= j, valid}
    (dp_{c-1}[i] - cum_c[i])`` with ``cum_c`` the running count of class ``o_c``.
    """
    n, m = ys.shape
    n_cls = order.shape[0]
    cum = np.zeros((n + 1, m), np.int32)
    np.cumsum(ys == order[0], axis=0, out=cum[1:])
    dp = cum.copy()
    sources = []
    for c in range(1, n_cls):
        np.cumsum(ys == order[c], axis=0, out=cum[1:])
        src = np.where(valid, dp - cum, _NEG)
        sources.append(src)
        dp = cum + np.maximum.accumulate(src, axis=0)
    rows = np.arange(n + 1)[:, None]
    end = np.full(m, n)
    pos = np.empty((n_cls - 1, m), np.int64)
    for c in range(n_cls - 1, 0, -1):  # interval c starts at the first best source <= end
        end = np.argmax(np.where(rows <= end, sources[c - 1], _NEG - 1), axis=0)
        pos[c - 1] = end
    return pos


def interval_fit(x: Float[np.ndarray, "sample neuron"], y: Int[np.ndarray, " sample"],
                 n_classes: int) -> Float[np.ndarray, "param neuron"]:
    """Fit the rule per column: params rows ``C - 1`` cuts, then the ``C`` ordered classes."""
    x = np.asarray(x, np.float32).astype(np.float64)
    y = np.asarray(y, np.int64)
    n, m = x.shape
    order = class_order(x, y, n_classes)
    idx = np.argsort(x, axis=0, kind="stable")
    xs = np.take_along_axis(x, idx, 0)
    valid = np.ones((n + 1, m), bool)
    valid[1:n] = xs[1:] > xs[:-1]
    pos = _best_cuts(y[idx], valid, order)
    cols = np.arange(m)
    low = xs[np.clip(pos - 1, 0, n - 1), cols]
    high = xs[np.clip(pos, 0, n - 1), cols]
    cuts = np.where(pos == 0, -np.inf, np.where(pos == n, np.inf, (low + high) / 2))
    return np.concatenate([cuts, order.astype(np.float64)])


def interval_predict(x: Float[np.ndarray, "sample neuron"],
                     params: Float[np.ndarray, "param neuron"],
                     n_classes: int) -> Int[np.ndarray, "sample neuron"]:
    """Class of every value: the ordered class of the interval ``#{j : x > t_j}``."""
    x = np.asarray(x, np.float32).astype(np.float64)
    cuts, order = params[:n_classes - 1], params[n_classes - 1:].astype(np.int64)
    k = np.zeros(x.shape, np.int64)
    for j in range(n_classes - 1):
        k += x > cuts[j]
    return order[k, np.arange(x.shape[1])]


@register
class IntervalRule(Rule):
    """Ordered class intervals with exact best cuts (see the module docstring)."""

    name = "interval"
    block = 1024  # the DP keeps C (sample x unit) int32 arrays per chunk

    def n_params(self, n_classes: int) -> int:
        return 2 * n_classes - 1

    def fit(self, x: Float[np.ndarray, "sample neuron"], y: Int[np.ndarray, " sample"],
            n_classes: int) -> Float[np.ndarray, "param neuron"]:
        return interval_fit(x, y, n_classes)

    def predict(self, x: Float[np.ndarray, "sample neuron"],
                params: Float[np.ndarray, "param neuron"],
                n_classes: int) -> Int[np.ndarray, "sample neuron"]:
        return interval_predict(x, params, n_classes)

    def table_vars(self, params: Float[np.ndarray, "param neuron"],
                   n_classes: int) -> dict[str, TableVar]:
        c = n_classes
        return {"cuts": (("neuron", "cut"), params[:c - 1].T,
                        {"long_name": "upper bound of each interval but the last"}),
                "interval_class": (("neuron", "interval"), params[c - 1:].T.astype(np.int64),
                                   {"long_name": "class of each interval, lowest first"})}

    def table_params(self, table: xr.Dataset) -> Float[np.ndarray, "param neuron"]:
        return np.concatenate([np.asarray(table["cuts"].values, np.float64).T,
                               np.asarray(table["interval_class"].values, np.float64).T])
