"""The ``threshold`` rule: best threshold and polarity; one-vs-rest beyond two classes.

Binary tasks: one threshold ``t`` and a polarity ``p`` (+1 or -1); the prediction is class 1
iff ``p * (x - t) > 0``. ``t`` is the float64 midpoint between two consecutive distinct probe
values (or -inf/+inf); the best split maximises probe accuracy, ties going to polarity +1
and then to the lowest threshold. More than two classes: one-vs-rest, one binary rule per
class ``c`` fitted on ``y == c``, and the prediction is the class with the largest margin
``p_c * (x - t_c)`` (ties to the lowest class index). Values are float32, compared as
float64. Table variables: ``threshold`` and ``polarity``, (neuron,) for two classes, else
(neuron, class).

Example:
    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [2.0], [3.0]], np.float32)
    >>> t, pol = threshold_fit(x, np.array([0, 0, 1, 1]), 2)
    >>> t.tolist(), pol.tolist(), threshold_predict(x, t, pol).ravel().tolist()
    ([1.5], [1], [0, 0, 1, 1])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from jaxtyping import Bool, Float, Int

from sn_interp.probes._kernels import flat_rows
from sn_interp.probes._threshold_kernels import threshold_block_nb
from sn_interp.probes.rules.base import Plan, Rule, TableVar, register

if TYPE_CHECKING:
    import xarray as xr


def _fit_binary(x: Float[np.ndarray, "sample neuron"], pos: Bool[np.ndarray, " sample"]
                ) -> tuple[Float[np.ndarray, " neuron"], Int[np.ndarray, " neuron"]]:
    """Best (threshold, polarity) per column of float64 ``x`` (n, neuron) for ``pos`` labels."""
    n, m = x.shape
    idx = np.argsort(x, axis=0, kind="stable")
    xs = np.take_along_axis(x, idx, 0)
    cum = np.zeros((n + 1, m), np.int64)
    np.cumsum(pos[idx], axis=0, out=cum[1:])  # positives among the j smallest
    below = np.arange(n + 1)[:, None]
    correct = (below - cum) + (int(pos.sum()) - cum)  # polarity +1, split after j values
    valid = np.ones((n + 1, m), bool)
    valid[1:n] = xs[1:] > xs[:-1]
    cand = np.concatenate([np.where(valid, correct, -1), np.where(valid, n - correct, -1)])
    best = np.argmax(cand, axis=0)
    pol = np.where(best <= n, 1, -1).astype(np.int8)
    j = best % (n + 1)
    cols = np.arange(m)
    low = xs[np.clip(j - 1, 0, n - 1), cols]
    high = xs[np.clip(j, 0, n - 1), cols]
    t = np.where(j == 0, -np.inf, np.where(j == n, np.inf, (low + high) / 2))
    return t, pol


def threshold_fit(x: Float[np.ndarray, "sample neuron"], y: Int[np.ndarray, " sample"],
                  n_classes: int) -> tuple[Float[np.ndarray, "*cls neuron"],
                                           Int[np.ndarray, "*cls neuron"]]:
    """Fit the threshold rule: (neuron,) params if binary, else (class, neuron) one-vs-rest."""
    x = np.asarray(x, np.float32).astype(np.float64)
    if n_classes == 2:
        return _fit_binary(x, y == 1)
    fits = [_fit_binary(x, y == c) for c in range(n_classes)]
    return np.stack([f[0] for f in fits]), np.stack([f[1] for f in fits])


def threshold_predict(x: Float[np.ndarray, "sample neuron"], t: Float[np.ndarray, "*cls neuron"],
                      pol: Float[np.ndarray, "*cls neuron"] | Int[np.ndarray, "*cls neuron"]
                      ) -> Int[np.ndarray, "sample neuron"]:
    """Class indices (sample, neuron) under fitted threshold params (see module docstring)."""
    x = np.asarray(x, np.float32).astype(np.float64)
    if t.ndim == 1:
        return (pol * (x - t) > 0).astype(np.int64)
    margins = np.stack([pol[c] * (x - t[c]) for c in range(t.shape[0])])
    return np.argmax(margins, axis=0).astype(np.int64)



@register
class ThresholdRule(Rule):
    """Best threshold and polarity (see the module docstring).

    Scoring runs the compiled kernel of :mod:`sn_interp.probes._threshold_kernels` (one sort
    per neuron shared by the one-vs-rest classes and the CV folds); the generic
    :meth:`Rule.score_block` from :meth:`fit` and :meth:`predict` is its numpy reference
    (bit-identical).
    """

    name = "threshold"
    block = 8192  # (1000 samples x 8192) float32 = 32 MB per chunk; kernel scratch 2 MB

    def n_params(self, n_classes: int) -> int:
        return 2 if n_classes == 2 else 2 * n_classes

    def fit(self, x: Float[np.ndarray, "sample neuron"], y: Int[np.ndarray, " sample"],
            n_classes: int) -> Float[np.ndarray, "param neuron"]:
        """Rows: thresholds then polarities (one each if binary, else one per class)."""
        t, pol = threshold_fit(x, y, n_classes)
        half = self.n_params(n_classes) // 2
        return np.concatenate([t.reshape(half, -1), pol.reshape(half, -1)]).astype(np.float64)

    def predict(self, x: Float[np.ndarray, "sample neuron"],
                params: Float[np.ndarray, "param neuron"],
                n_classes: int) -> Int[np.ndarray, "sample neuron"]:
        if n_classes == 2:
            return threshold_predict(x, params[0], params[1])
        return threshold_predict(x, params[:n_classes], params[n_classes:])

    def table_vars(self, params: Float[np.ndarray, "param neuron"],
                   n_classes: int) -> dict[str, TableVar]:
        if n_classes == 2:
            return {"threshold": ("neuron", params[0], {"long_name": "decision threshold"}),
                    "polarity": ("neuron", params[1].astype(np.int8), {"long_name": "polarity"})}
        return {"threshold": (("neuron", "class"), params[:n_classes].T,
                              {"long_name": "one-vs-rest threshold"}),
                "polarity": (("neuron", "class"), params[n_classes:].T.astype(np.int8),
                             {"long_name": "one-vs-rest polarity"})}

    def table_params(self, table: xr.Dataset) -> Float[np.ndarray, "param neuron"]:
        t = np.asarray(table["threshold"].values, np.float64)
        pol = np.asarray(table["polarity"].values, np.float64)
        return np.concatenate([t.reshape(-1, t.shape[0]) if t.ndim == 1 else t.T,
                               pol.reshape(-1, pol.shape[0]) if pol.ndim == 1 else pol.T])

    def score_block(self, values: Float[np.ndarray, "sample neuron"],
                    labels: Int[np.ndarray, " sample"],
                    folds: Int[np.ndarray, " sample"] | None = None, *,
                    n_classes: int | None = None) -> Float[np.ndarray, "stat neuron"]:
        """The compiled kernel: stats rows score, non-finite flag, thresholds, polarities."""
        plan = Plan.of(labels, folds, n_classes, self.name)
        x = np.asarray(values)
        if x.ndim != 2 or x.shape[0] == 0:
            return super().score_block(values, labels, folds, n_classes=n_classes)
        out = np.empty((plan.n_stats, x.shape[1]))
        flat, n, w, rs = flat_rows(x)
        threshold_block_nb(flat, n, w, rs, plan.y, plan.fold, plan.n_classes, plan.n_folds,
                           plan.score == "cv", out)
        return out
