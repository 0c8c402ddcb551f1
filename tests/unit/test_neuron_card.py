"""neuron_card draws the selected neuron's own values, its fitted rule and its extreme images."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import make_acts  # noqa: E402
from PIL import Image  # noqa: E402

import sn_interp as sn  # noqa: E402

PLANTED = {("mlp_post", 1, 5): 3.0}


def _samples(acts):
    return [sn.Sample(Image.new("RGB", (8, 8), (i * 10 % 255, 0, 0)), "q?", label=int(y),
                      class_names=("class0", "class1"), sample_id=str(sid))
            for i, (sid, y) in enumerate(zip(acts.sample_id.values, acts.label.values,
                                             strict=True))]


def test_card_shows_the_neuron_its_values_and_extremes():
    acts = make_acts(planted=PLANTED, n_per_class=6)
    test = make_acts(planted=PLANTED, n_per_class=5, seed=1, split="test")
    found = sn.find_super_neurons(acts, k=1, progress=False)
    fig = sn.plotting.neuron_card(found, acts, 0, _samples(test), test, n_images=3)
    dist, *images = fig.axes
    assert "blocks.1.mlp.hook_post[5]" in dist.get_title() and "layer 1" in dist.get_title()
    points = np.concatenate([c.get_offsets()[:, 0] for c in dist.collections[:-1]])
    values = np.concatenate([acts.mlp_post.sel(layer=1).values[:, 5],
                             test.mlp_post.sel(layer=1).values[:, 5]])
    np.testing.assert_allclose(np.sort(points), np.sort(values), rtol=1e-6)
    centroids = dist.collections[-1].get_offsets()[:, 0]
    np.testing.assert_allclose(centroids, found.table.centroids.values[0])
    assert len(images) == 6
    tv = test.mlp_post.sel(layer=1).values[:, 5]
    top = images[0].get_title().split("\n")[0]
    assert top == f"most: {tv.max():.3g}"
    assert images[3].get_title().split("\n")[0] == f"least: {tv.min():.3g}"


def test_card_refuses_samples_of_other_activations():
    acts = make_acts(planted=PLANTED, n_per_class=4)
    found = sn.find_super_neurons(acts, k=1, progress=False)
    other = make_acts(n_per_class=4, split="test")
    with pytest.raises(ValueError, match="sample ids"):
        sn.plotting.neuron_card(found, acts, 0, _samples(other))
