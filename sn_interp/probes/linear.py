"""A logistic-regression probe on one whole site and layer: a not-training-free upper bound.

Example:
    >>> res = linear_probe(probe_acts, test_acts, "resid_post", 3)   # doctest: +SKIP
    >>> float(res["accuracy"])                                       # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from sn_interp.probes._data import check_available, probe_labels, sample_coords, unit_values


def _matrix(acts: xr.Dataset, site: str, layer: int) -> np.ndarray:
    check_available(acts, {site: [layer]}, "linear_probe")
    var = acts[site].sel({"vision_layer" if site == "vision_resid_post" else "layer": layer})
    n_units = int(np.prod([var.sizes[d] for d in var.dims if d != "sample"]))
    return unit_values(acts, site, layer, np.arange(n_units))


def linear_probe(acts_probe: xr.Dataset, acts_test: xr.Dataset, site: str, layer: int, *,
                 C: float = 1.0, seed: int = 0) -> xr.Dataset:
    """Standardised L2 logistic regression fitted on ``acts_probe``, scored on ``acts_test``.

    Returns:
        Dataset with scalar ``accuracy`` (nan when the test set is unlabelled) and ``pred``
        over ``sample`` with the test set's label coords.

    Example:
        >>> import sn_interp as sn
        >>> vlm = sn.load_model("tiny-llava")
        >>> probe, test = sn.load_task("shapes-color", n=60).split(shots=5, seed=0)
        >>> res = linear_probe(sn.extract(vlm, probe, progress=False),
        ...                    sn.extract(vlm, test, progress=False), "resid_post", 1)
        >>> res.pred.dims, 0 <= float(res.accuracy) <= 1   # pred: (sample,)
        (('sample',), True)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y, names = probe_labels(acts_probe)
    x_tr, x_te = _matrix(acts_probe, site, layer), _matrix(acts_test, site, layer)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000,
                                                               random_state=seed))
    model.fit(x_tr, y)
    pred = model.predict(x_te).astype(np.int64)
    coords = sample_coords(acts_test)
    acc = float(np.mean(pred == coords["label"][1])) if "label" in coords and \
        (coords["label"][1] >= 0).all() else float("nan")
    return xr.Dataset({"pred": ("sample", pred), "accuracy": ((), acc)}, coords=coords,
                      attrs={"site": site, "layer": int(layer), "C": C})
