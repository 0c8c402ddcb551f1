"""The neuron table and its ids against brute force: Python-formatted ids, a Python sort."""

from __future__ import annotations

import numpy as np
import pytest

from sn_interp.names import SITE_ORDER, neuron_id_array, neuron_id_blocks
from sn_interp.probes.rules import get_rule
from sn_interp.probes.super_neurons import _build_table

SITES = ("resid_pre", "z", "mlp_post", "vision_resid_post")
HOOKS = {"resid_pre": "blocks.{l}.hook_resid_pre", "z": "blocks.{l}.attn.hook_z",
         "mlp_post": "blocks.{l}.mlp.hook_post",
         "vision_resid_post": "vision.blocks.{l}.hook_resid_post"}


def _brute_id(site: str, layer: int, unit: int, d_head: int) -> str:
    index = f"{unit // d_head},{unit % d_head}" if site == "z" else str(unit)
    return f"{HOOKS[site].format(l=layer)}[{index}]"


def _random_blocks(rng: np.random.Generator) -> list[tuple[str, int, int]]:
    keys = {(SITES[rng.integers(len(SITES))], int(rng.integers(0, 12))) for _ in range(6)}
    return [(s, la, int(rng.integers(0, 130))) for s, la in sorted(keys)]


@pytest.mark.parametrize("seed", range(20))
def test_id_blocks_match_python_formatting(seed):
    rng = np.random.default_rng(seed)
    blocks, d_head = _random_blocks(rng), int(rng.integers(1, 40))
    want = [_brute_id(s, la, u, d_head) for s, la, n in blocks for u in range(n)]
    ids = neuron_id_blocks(blocks, d_head=d_head)
    assert ids.tolist() == want
    assert ids.dtype.kind == "U" and ids.dtype.itemsize // 4 == max(map(len, want), default=1)
    perm = rng.permutation(len(want))
    placed = neuron_id_blocks(blocks, d_head=d_head, positions=perm)
    assert placed[perm].tolist() == want
    for s, la, n in blocks:
        assert neuron_id_array(s, la, np.arange(n), d_head=d_head).tolist() == \
            [_brute_id(s, la, u, d_head) for u in range(n)]


def test_z_ids_need_d_head():
    with pytest.raises(ValueError, match="d_head"):
        neuron_id_blocks([("z", 0, 3)])


def _random_params(rng, rule: str, n_classes: int, n: int) -> np.ndarray:
    """Valid params (param, unit) of ``rule``: integer rows where the table stores integers."""
    n_params = get_rule(rule).n_params(n_classes)
    params = rng.standard_normal((n_params, n))
    if rule == "threshold":  # thresholds, then polarities +-1
        params[n_params // 2:] = rng.choice([-1.0, 1.0], (n_params - n_params // 2, n))
    elif rule == "interval":  # cuts, then the class of each interval
        params[n_classes - 1:] = rng.integers(0, n_classes, (n_classes, n))
    return params


@pytest.mark.parametrize("rule", ["centroid", "threshold", "interval"])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_table_is_the_brute_force_ranking(n_classes, rule):
    rng = np.random.default_rng(n_classes)
    blocks, d_head = _random_blocks(rng), 4
    stats = {}
    for s, la, n in blocks:
        st = np.empty((2 + get_rule(rule).n_params(n_classes), n))
        st[0] = rng.integers(0, 5, n) / 4  # many ties
        st[1] = 0
        st[2:] = _random_params(rng, rule, n_classes, n)
        stats[s, la] = st
    table = _build_table(stats, rule, n_classes, d_head)
    layout = sorted(((la - 10**6 if s == "vision_resid_post" else la, SITE_ORDER[s], u, s, la)
                     for s, la, n in blocks for u in range(n)))
    ranked = sorted(range(len(layout)),
                    key=lambda i: (-stats[layout[i][3], layout[i][4]][0, layout[i][2]], i))
    rows = [layout[i] for i in ranked]
    assert table["site"].values.tolist() == [r[3] for r in rows]
    assert table["layer"].values.tolist() == [r[4] for r in rows]
    assert table["unit"].values.tolist() == [r[2] for r in rows]
    assert table["id"].values.tolist() == [_brute_id(r[3], r[4], r[2], d_head) for r in rows]
    assert table["score"].values.tolist() == [stats[r[3], r[4]][0, r[2]] for r in rows]
    assert table["rank"].values.tolist() == list(range(len(rows)))
    want = np.array([stats[r[3], r[4]][2:, r[2]] for r in rows])
    assert np.array_equal(get_rule(rule).table_params(table), want.T)
    if rule == "centroid":
        assert np.array_equal(table["centroids"].values, want.reshape(len(rows), n_classes))


def test_table_refuses_non_finite_naming_neurons():
    stats = {("mlp_post", 0): np.zeros((4, 3)), ("mlp_post", 1): np.zeros((4, 3))}
    stats["mlp_post", 1][1, 2] = 1
    with pytest.raises(ValueError, match=r"in 1 neuron\(s\), e.g. \['blocks.1.mlp.hook_post\[2\]'"):
        _build_table(stats, "centroid", 2, None)


def _brute_table_ids(blocks, d_head, table):
    return [_brute_id(s, la, u, d_head) for s, la, u in
            zip(table["site"].values, table["layer"].values, table["unit"].values, strict=True)]


@pytest.mark.parametrize("seed", range(6))
def test_table_ids_computed_on_access_equal_brute_force(seed, monkeypatch):
    """The lazy ``id`` coordinate: any selection gives the brute-force ids of its rows, and
    building the table or printing it formats none."""
    from sn_interp.probes import super_neurons
    formatted = []
    real = super_neurons._TableIds._ids
    monkeypatch.setattr(super_neurons._TableIds, "_ids",
                        lambda self, key: formatted.append(key) or real(self, key))
    rng = np.random.default_rng(100 + seed)
    blocks, d_head = _random_blocks(rng), int(rng.integers(1, 12))
    stats = {}
    for s, la, n in blocks:
        st = np.zeros((4, n))
        st[0] = rng.integers(0, 4, n) / 3
        stats[s, la] = st
    table = _build_table(stats, "centroid", 2, d_head)
    want = _brute_table_ids(blocks, d_head, table)
    n = len(want)
    full_dtype = table["id"].dtype
    assert full_dtype.itemsize // 4 == max(map(len, want))
    repr(table), repr(table["id"].variable)
    assert formatted == []
    picks = [slice(0, 5), slice(n - 1, None, -3), rng.permutation(n)[: n // 2], [n - 1, 0, 0]]
    for pick in picks:
        sub = table.isel(neuron=pick)
        assert sub["id"].dtype == full_dtype  # the full table's width whatever is selected
        assert sub["id"].values.tolist() == np.array(want)[pick].tolist()
    assert table["id"][n // 2].item() == want[n // 2]
    assert table["id"].values.tolist() == want
    assert table.load()["id"].values.tolist() == want


def test_table_ids_round_trip_through_netcdf(tmp_path):
    stats = {("mlp_post", 0): np.array([[0.5, 1.0, 0.0], [0, 0, 0], [1, 2, 3], [4, 5, 6]]),
             ("z", 1): np.array([[1.0, 0.5], [0, 0], [1, 2], [3, 4]])}
    table = _build_table(stats, "centroid", 2, 1)
    table.to_netcdf(tmp_path / "t.nc")
    import xarray as xr
    with xr.open_dataset(tmp_path / "t.nc") as back:
        assert back["id"].values.tolist() == ["blocks.0.mlp.hook_post[1]",
                                              "blocks.1.attn.hook_z[0,0]",
                                              "blocks.0.mlp.hook_post[0]",
                                              "blocks.1.attn.hook_z[1,0]",
                                              "blocks.0.mlp.hook_post[2]"]


@pytest.mark.parametrize("distinct", [3, 1001, 70_000])
def test_rank_order_is_the_stable_argsort(distinct):
    """The factorised ranking against ``np.argsort(-score, kind="stable")`` (ties by position);
    past 65,536 distinct scores it is that argsort."""
    from sn_interp.probes.super_neurons import _rank_order
    rng = np.random.default_rng(distinct)
    score = rng.integers(0, distinct, 200_000) / max(distinct - 1, 1)
    assert np.array_equal(_rank_order(score), np.argsort(-score, kind="stable"))
