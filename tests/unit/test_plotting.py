"""Exit-layer tick labels stay readable on deep models and complete on shallow ones."""

from __future__ import annotations

import numpy as np

from sn_interp.plotting import _sparse_labels


def test_every_layer_labelled_when_they_fit() -> None:
    assert _sparse_labels(np.array([-1, 0, 1, 2, 3])) == ["vision", "0", "1", "2", "3"]


def test_crowded_labels_are_thinned_but_ends_kept() -> None:
    x = np.array([-1, 0, 1, 2, 3, 5, 8, 12, 16, 20, 25, 29])
    labels = _sparse_labels(x)
    assert len(labels) == len(x) and labels[0] == "vision" and labels[-1] == "29"
    shown = x[[bool(t) for t in labels]]
    assert np.diff(shown).min() >= (x.max() - x.min()) / 14
    assert "" in labels
