"""Reliability, class 2: samples without ids get ids from their content, not positions.

Two different id-less lists (or one list reordered) never share a store.
"""

from __future__ import annotations

import pytest
from _store_helpers import extract, samples, tree

import sn_interp as sn
import sn_interp.extraction as extract_mod
from sn_interp.store import StoreMismatchError


@pytest.fixture(scope="module")
def vlm():
    return sn.load_model("tiny-llava")


# ---- class 2: samples without ids ---------------------------------------------------------

def test_idless_lists_never_share_a_store(vlm, tmp_path):
    path = tmp_path / "acts.zarr"
    extract(vlm, samples(4, ids=False, seed=2), path)
    before = tree(path)
    with pytest.raises(StoreMismatchError, match="sample list"):
        extract(vlm, samples(4, ids=False, seed=3), path)
    assert tree(path) == before


def test_idless_ids_come_from_content_not_position():
    a = samples(3, ids=False)
    ids = extract_mod.sample_ids(a)
    assert ids == extract_mod.sample_ids(a[::-1])[::-1]  # follow the sample, not the slot
    assert all(i.startswith("sha256-") for i in ids) and len(set(ids)) == 3
    twins = extract_mod.sample_ids([a[0], a[1], a[0]])
    assert twins == [ids[0], ids[1], ids[0] + "-2"]


def test_idless_reordered_list_is_a_different_store(vlm, tmp_path):
    path = tmp_path / "acts.zarr"
    items = samples(4, ids=False)
    extract(vlm, items, path)
    with pytest.raises(StoreMismatchError, match="sample list"):
        extract(vlm, items[::-1], path)
