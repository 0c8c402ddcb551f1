"""Canonical names: sites, dimensions, neuron ids (DESIGN section 3).

The vocabulary is TransformerLens's. Layers are 0-based: layer ``l`` is decoder block ``l`` of
the language model and ``resid_post[l]`` is that block's output.

Example:
    >>> from sn_interp.names import neuron_id, parse_neuron_id
    >>> neuron_id("mlp_post", 3, 1234)
    'blocks.3.mlp.hook_post[1234]'
    >>> neuron_id("z", 0, 5 * 64 + 17, d_head=64)
    'blocks.0.attn.hook_z[5,17]'
    >>> parse_neuron_id("blocks.0.attn.hook_z[5,17]", d_head=64)
    ('z', 0, 337)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from jaxtyping import Int

SCHEMA_VERSION = "1"

#: Dimension names.
SAMPLE = "sample"
LAYER = "layer"
HEAD = "head"
D_MODEL = "d_model"
D_HEAD = "d_head"
D_MLP = "d_mlp"
NEURON = "neuron"
VISION_LAYER = "vision_layer"
D_VISION = "d_vision"

#: Per-sample coordinates every activation Dataset carries along ``sample``.
SAMPLE_COORDS = ("sample_id", "label", "label_name", "split", "task", "prompt_id", "image_id")

#: The position every site is read at.
POSITION = "last_prompt_token"


@dataclass(frozen=True)
class Site:
    """One canonical site: its TransformerLens hook, dims after ``sample`` and a description.

    Example:
        >>> site = SITES["z"]
        >>> site.hook_name(3), ("sample", *site.dims)      # z is (sample, layer, head, d_head)
        ('blocks.3.attn.hook_z', ('sample', 'layer', 'head', 'd_head'))
    """

    name: str
    hook: str  # format string with {l}
    dims: tuple[str, ...]  # dims after "sample"
    long_name: str

    def hook_name(self, layer: int) -> str:
        return self.hook.format(l=layer)


_SITE_LIST = (
    Site("resid_pre", "blocks.{l}.hook_resid_pre", (LAYER, D_MODEL),
         "residual stream entering the decoder block"),
    Site("resid_mid", "blocks.{l}.hook_resid_mid", (LAYER, D_MODEL),
         "residual stream after attention, before the MLP"),
    Site("resid_post", "blocks.{l}.hook_resid_post", (LAYER, D_MODEL),
         "residual stream leaving the decoder block"),
    Site("attn_out", "blocks.{l}.hook_attn_out", (LAYER, D_MODEL),
         "attention output added to the residual stream"),
    Site("z", "blocks.{l}.attn.hook_z", (LAYER, HEAD, D_HEAD),
         "per-head attention output (input of the output projection)"),
    Site("mlp_post", "blocks.{l}.mlp.hook_post", (LAYER, D_MLP),
         "MLP hidden activation (input of its output projection)"),
    Site("mlp_out", "blocks.{l}.hook_mlp_out", (LAYER, D_MODEL),
         "MLP output added to the residual stream"),
)

#: Language-model sites by name, in canonical order.
SITES: dict[str, Site] = {s.name: s for s in _SITE_LIST}
ALL_SITES: tuple[str, ...] = tuple(SITES)

#: Optional vision-tower site: mean over patch tokens of each vision block's output.
VISION_SITE = Site("vision_resid_post", "vision.blocks.{l}.hook_resid_post",
                   (VISION_LAYER, D_VISION),
                   "vision-tower block output, mean over patch tokens")
SITES_WITH_VISION: dict[str, Site] = {**SITES, VISION_SITE.name: VISION_SITE}

#: Order of sites inside one layer, as the forward pass computes them (used for tie-breaking
#: and for knowing how much of the last needed layer must run).
SITE_ORDER: dict[str, int] = {
    "resid_pre": 0, "z": 1, "attn_out": 2, "resid_mid": 3, "mlp_post": 4, "mlp_out": 5,
    "resid_post": 6, "vision_resid_post": -1,
}


def check_sites(sites: str | tuple[str, ...] | list[str] | None, *,
                allow_vision: bool = True) -> tuple[str, ...]:
    """Normalise a site selection to a tuple in canonical order, refusing unknown names.

    Example:
        >>> check_sites(["mlp_post", "resid_pre"])          # canonical order
        ('resid_pre', 'mlp_post')
        >>> check_sites("resid")
        Traceback (most recent call last):
        ValueError: unknown site(s) ['resid']; the sites are [...]
    """
    if sites is None:
        return ALL_SITES
    if isinstance(sites, str):
        sites = (sites,)
    known = SITES_WITH_VISION if allow_vision else SITES
    unknown = [s for s in sites if s not in known]
    if unknown:
        raise ValueError(f"unknown site(s) {unknown}; the sites are {list(known)}")
    if not sites:
        raise ValueError("sites is empty; pass at least one of " + ", ".join(known))
    return tuple(s for s in known if s in set(sites))


def neuron_id(site: str, layer: int, unit: int, *, d_head: int | None = None) -> str:
    """TransformerLens-style id of one scalar; ``z`` units are flattened ``head * d_head + i``.

    Example:
        >>> neuron_id("mlp_post", 3, 1234), neuron_id("z", 0, 9, d_head=4)
        ('blocks.3.mlp.hook_post[1234]', 'blocks.0.attn.hook_z[2,1]')
    """
    return neuron_ids(site, layer, [unit], d_head=d_head)[0]


def neuron_ids(site: str, layer: int, units: Iterable[int], *,
               d_head: int | None = None) -> list[str]:
    """The ids of several units of one site and layer, as a list (see :func:`neuron_id_array`).

    Example:
        >>> neuron_ids("z", 1, range(3), d_head=2)
        ['blocks.1.attn.hook_z[0,0]', 'blocks.1.attn.hook_z[0,1]', 'blocks.1.attn.hook_z[1,0]']
    """
    return neuron_id_array(site, layer, np.fromiter(units, np.int64), d_head=d_head).tolist()


def neuron_id_array(site: str, layer: int, units: Int[np.ndarray, " unit"], *,
                    d_head: int | None = None) -> np.ndarray:
    """The ids of ``units`` of one site and layer as a numpy string array (vectorised with
    :mod:`numpy.strings`, so a million ids take well under a second, where Python string
    formatting takes several); :func:`neuron_id_blocks` builds whole tables of them.

    Example:
        >>> neuron_id_array("mlp_post", 0, np.arange(2)).tolist()
        ['blocks.0.mlp.hook_post[0]', 'blocks.0.mlp.hook_post[1]']
    """
    hook = SITES_WITH_VISION[site].hook_name(layer)
    return np.strings.add(hook + "[", _index_text(site, units, d_head))


def _index_text(site: str, units: Int[np.ndarray, " unit"], d_head: int | None) -> np.ndarray:
    """The part of each id after ``[``: ``"u]"``, or ``"head,i]"`` for ``z``."""
    units = np.asarray(units, np.int64)
    if site == "z":
        if not d_head:
            raise ValueError("neuron ids of site 'z' need d_head to split the flat unit index")
        index = np.strings.add(np.strings.add((units // d_head).astype(str), ","),
                               (units % d_head).astype(str))
    else:
        index = units.astype(str)
    return np.strings.add(index, "]")


def _code_points(text: np.ndarray) -> np.ndarray:
    """A 1-D str array at its tightest width, as its (n, width) uint32 code points."""
    width = max(int(np.strings.str_len(text).max(initial=0)), 1)
    return np.ascontiguousarray(text, dtype=f"<U{width}").view(np.uint32).reshape(-1, width)


def neuron_id_blocks(blocks: Sequence[tuple[str, int, int]], *, d_head: int | None = None,
                     positions: Int[np.ndarray, " neuron"] | None = None) -> np.ndarray:
    """The ids of units ``0..n-1`` of every ``(site, layer, n)`` block, concatenated in order.

    Equal element for element to concatenating :func:`neuron_id_array` over the blocks, at
    the tightest string width (:func:`id_width`). ``positions`` (a permutation of the ids'
    indices) puts id ``i`` at ``positions[i]`` of the result instead.

    Example:
        >>> neuron_id_blocks([("mlp_post", 9, 1), ("z", 10, 2)], d_head=2).tolist()
        ['blocks.9.mlp.hook_post[0]', 'blocks.10.attn.hook_z[0,0]', 'blocks.10.attn.hook_z[0,1]']
    """
    total = sum(int(n) for _, _, n in blocks)
    index = np.arange(total, dtype=np.int64)
    if positions is not None:
        index[np.asarray(positions)] = np.arange(total, dtype=np.int64)
    return neuron_ids_at(blocks, index, d_head=d_head)


def id_width(blocks: Sequence[tuple[str, int, int]], *, d_head: int | None = None) -> int:
    """The longest id (in characters) among units ``0..n-1`` of the ``(site, layer, n)`` blocks.

    An id's index text grows with the unit, so only each block's last unit (for ``z``: its
    last two heads) can be the longest.

    Example:
        >>> id_width([("mlp_post", 9, 10), ("mlp_post", 10, 9)])    # 'blocks.9.mlp.hook_post[9]'
        26
    """
    width = 1
    for site, layer, n in blocks:
        if n:
            tail = np.arange(max(0, n - (2 * d_head if site == "z" and d_head else 1)), n)
            text = _index_text(site, tail, d_head)
            width = max(width, len(SITES_WITH_VISION[site].hook_name(layer)) + 1
                        + int(np.strings.str_len(text).max()))
    return width


def neuron_ids_at(blocks: Sequence[tuple[str, int, int]], index: Int[np.ndarray, " ..."], *,
                  d_head: int | None = None, width: int | None = None) -> np.ndarray:
    """The ids of neurons at flat ``index`` into the concatenated ``(site, layer, n)`` blocks.

    The result has ``index``'s shape and dtype ``<U{width}`` (default :func:`id_width`, so
    any selection of one table has the same dtype). Rows are grouped by block; each row is
    the block's hook prefix and the unit's index text copied as code points (the index texts
    of ``0..max unit`` are formatted once per site kind), so a million ids cost about one
    write of them, and a handful cost a handful.

    Example:
        >>> neuron_ids_at([("mlp_post", 0, 3), ("resid_post", 2, 5)], np.array([6, 1])).tolist()
        ['blocks.2.hook_resid_post[3]', 'blocks.0.mlp.hook_post[1]']
    """
    index = np.asarray(index, np.int64)
    width = id_width(blocks, d_head=d_head) if width is None else width
    flat = index.reshape(-1)
    sizes = np.array([int(n) for _, _, n in blocks], np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    if flat.size and (flat.min() < 0 or flat.max() >= starts[-1]):
        raise IndexError(f"neuron index outside 0..{starts[-1] - 1}")
    block = np.searchsorted(starts, flat, side="right") - 1
    order = np.argsort(block.astype(np.int32 if len(blocks) > 2**15 else np.int16),
                       kind="stable")  # rows grouped by block (radix sort)
    bounds = np.searchsorted(block[order], np.arange(len(blocks) + 1))
    units = flat - starts[block]
    out = np.zeros((flat.size, width), np.uint32)
    texts: dict[str, np.ndarray] = {}
    for b in np.flatnonzero(np.diff(bounds)).tolist():
        site, layer, _ = blocks[b]
        kind = "z" if site == "z" else "unit"
        rows = order[bounds[b]:bounds[b + 1]]
        need = int(units[rows].max()) + 1
        if kind not in texts or texts[kind].shape[0] < need:
            longest = max(int(n) for s, _, n in blocks if ("z" if s == "z" else "unit") == kind)
            texts[kind] = _code_points(_index_text(kind, np.arange(min(longest, max(
                need, 2 * (texts[kind].shape[0] if kind in texts else 0)))), d_head))
        prefix = _code_points(np.array([SITES_WITH_VISION[site].hook_name(layer) + "["]))[0]
        text = texts[kind][units[rows], :width - len(prefix)]
        out[rows, :len(prefix)] = prefix
        out[rows, len(prefix):len(prefix) + text.shape[1]] = text
    return out.view(f"<U{width}").reshape(index.shape)


def head_id(layer: int, head: int) -> str:
    """Id of one attention head (a SAV voter): ``blocks.L.attn.hook_z[H]``.

    Example:
        >>> head_id(2, 5)
        'blocks.2.attn.hook_z[5]'
    """
    return f"{SITES_WITH_VISION['z'].hook_name(layer)}[{head}]"


_ID_RE = re.compile(r"^(?P<hook>.+)\[(?P<idx>\d+(?:,\d+)?)\]$")


def parse_neuron_id(text: str, *, d_head: int | None = None) -> tuple[str, int, int]:
    """Inverse of :func:`neuron_id`: ``(site, layer, flat unit)``.

    Example:
        >>> parse_neuron_id("blocks.3.mlp.hook_post[1234]")
        ('mlp_post', 3, 1234)
        >>> parse_neuron_id("blocks.0.attn.hook_z[2,1]", d_head=4)   # flat unit head * d_head + i
        ('z', 0, 9)
    """
    m = _ID_RE.match(text.strip())
    if m:
        for site in SITES_WITH_VISION.values():
            pattern = "^" + re.escape(site.hook).replace(r"\{l\}", r"(\d+)") + "$"
            hm = re.match(pattern, m["hook"])
            if hm:
                idx = [int(i) for i in m["idx"].split(",")]
                if site.name == "z":
                    if len(idx) != 2 or not d_head:
                        raise ValueError(f"{text!r}: z ids look like "
                                         "'blocks.L.attn.hook_z[head,i]' and need d_head")
                    return site.name, int(hm[1]), idx[0] * d_head + idx[1]
                if len(idx) != 1:
                    break
                return site.name, int(hm[1]), idx[0]
    raise ValueError(f"{text!r} is not a neuron id; expected e.g. 'blocks.3.mlp.hook_post[1234]'"
                     " or 'blocks.0.attn.hook_z[5,17]'")
