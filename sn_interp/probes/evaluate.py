"""Honest evaluation of class predictions: bootstrap accuracy, macro-F1, confusion matrix.

Example:
    >>> import numpy as np, xarray as xr
    >>> pred = xr.DataArray(np.array([0, 1, 1, -1]), dims="sample",
    ...                     coords={"label": ("sample", np.array([0, 1, 0, 1]))})
    >>> float(evaluate(pred, n_boot=100)["accuracy"])
    0.5
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from jaxtyping import Int

from sn_interp.probes._data import class_names_of


def _bootstrap(correct: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of the mean of ``correct`` over ``n_boot`` resamples."""
    rng = np.random.default_rng(seed)
    n = len(correct)
    means = np.empty(n_boot)
    for s in range(0, n_boot, 200):
        m = min(200, n_boot - s)
        means[s:s + m] = correct[rng.integers(0, n, (m, n))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def _check_classes(pred: xr.DataArray | np.ndarray, p: np.ndarray, y: np.ndarray,
                   class_names: tuple[str, ...] | list[str] | None) -> None:
    """Refuse predictions and labels that do not share one class list, naming both."""
    own = class_names_of(pred) if isinstance(pred, xr.DataArray) else ()
    if own and class_names and tuple(class_names) != own:
        raise ValueError(f"pred was made with the class list {list(own)}, but class_names= "
                         f"is {list(class_names)}: evaluate predictions of one task at a time")
    names = tuple(class_names or own)
    if not names:
        return
    if y.max() >= len(names) or p.max() >= len(names):
        worst = int(max(y.max(), p.max()))
        raise ValueError(f"class index {worst} is outside the class list {list(names)}: the "
                         "labels or predictions come from another task")
    if isinstance(pred, xr.DataArray) and "label_name" in pred.coords:
        given = [str(g) for g in np.asarray(pred["label_name"].values)]
        wrong = [i for i, (g, c) in enumerate(zip(given, y, strict=True)) if g and g != names[c]]
        if wrong:
            i = wrong[0]
            raise ValueError(f"the samples' labels follow another class list: sample {i} is "
                             f"labelled {given[i]!r} but label {int(y[i])} is "
                             f"{names[y[i]]!r} in the classifier's class list {list(names)}")


def evaluate(pred: xr.DataArray | Int[np.ndarray, " sample"],
             labels: xr.DataArray | Int[np.ndarray, " sample"] | None = None, *,
             n_boot: int = 1000, seed: int = 0,
             class_names: tuple[str, ...] | list[str] | None = None) -> xr.Dataset:
    """Accuracy with a seeded 95% bootstrap interval, macro-F1, per-class accuracy, confusion.

    Args:
        pred: Class indices over ``sample`` (-1 = unmappable, always counted wrong).
        labels: True classes; default ``pred.label``. Unknown labels (-1) are refused.
        n_boot: Bootstrap resamples of the interval.
        seed: Seed of the bootstrap resampling.
        class_names: Names for the ``class`` coord (default: ``pred.attrs['class_names']``).

    Returns:
        Dataset with scalars ``accuracy``, ``accuracy_low``, ``accuracy_high``, ``macro_f1``,
        ``n``; ``class_accuracy`` and ``unmapped`` over ``class``; ``confusion`` over
        (``true``, ``predicted``).

    Example:
        >>> import numpy as np
        >>> ev = evaluate(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), class_names=["a", "b"])
        >>> float(ev.accuracy), int(ev.n)
        (0.75, 4)
    """
    p = np.asarray(pred.values if isinstance(pred, xr.DataArray) else pred, np.int64)
    if labels is None:
        if not isinstance(pred, xr.DataArray) or "label" not in pred.coords:
            raise ValueError("pass labels=, or a pred carrying a 'label' coord")
        labels = pred["label"]
    y = np.asarray(labels.values if isinstance(labels, xr.DataArray) else labels, np.int64)
    if y.shape != p.shape or y.ndim != 1 or y.size == 0:
        raise ValueError(f"pred {p.shape} and labels {y.shape} must be equal non-empty 1-D")
    if (y < 0).any():
        raise ValueError(f"{int((y < 0).sum())} samples have no label (-1); evaluate needs "
                         "the labelled test split")
    _check_classes(pred, p, y, class_names)
    n_cls = int(max(y.max(), p.max())) + 1
    names = tuple(class_names) if class_names else \
        class_names_of(pred if isinstance(pred, xr.DataArray) else xr.DataArray([]), n_cls)
    n_cls = max(n_cls, len(names))
    names = names + tuple(str(i) for i in range(len(names), n_cls))
    correct = (p == y).astype(np.float64)
    conf = np.zeros((n_cls, n_cls), np.int64)
    ok = p >= 0
    np.add.at(conf, (y[ok], p[ok]), 1)
    support = np.bincount(y, minlength=n_cls)
    tp = np.diag(conf).astype(np.float64)
    prec_den, rec_den = conf.sum(0), support
    prec = np.divide(tp, prec_den, out=np.zeros(n_cls), where=prec_den > 0)
    rec = np.divide(tp, rec_den, out=np.zeros(n_cls), where=rec_den > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros(n_cls), where=prec + rec > 0)
    present = support > 0
    low, high = _bootstrap(correct, n_boot, seed)
    class_acc = np.where(present, rec, np.nan)
    return xr.Dataset(
        {"accuracy": ((), correct.mean(), {"long_name": "accuracy"}),
         "accuracy_low": ((), low, {"long_name": "accuracy, 2.5th bootstrap percentile"}),
         "accuracy_high": ((), high, {"long_name": "accuracy, 97.5th bootstrap percentile"}),
         "macro_f1": ((), f1[present].mean(), {"long_name": "macro-F1 over present classes"}),
         "n": ((), len(y)),
         "class_accuracy": ("class", class_acc, {"long_name": "per-class accuracy (recall)"}),
         "unmapped": ("class", np.bincount(y[~ok], minlength=n_cls),
                      {"long_name": "unmappable predictions"}),
         "confusion": (("true", "predicted"), conf, {"long_name": "count"})},
        coords={"class": np.arange(n_cls), "class_name": ("class", list(names)),
                "true": np.arange(n_cls), "predicted": np.arange(n_cls)},
        attrs={"n_boot": n_boot, "seed": seed})
