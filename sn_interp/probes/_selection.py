"""What SuperNeurons and SAVHeads share: requirements, voting, prediction, save/load.

A selection is a ranked table (best first) whose top ``k`` rows each read some units of one
(site, layer) and cast one class vote per sample; the prediction is the majority vote, ties
going to the class of the highest-ranked voter among the tied classes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xarray as xr
from jaxtyping import Float, Int

from sn_interp.probes import _checks
from sn_interp.probes._data import check_available, sample_coords, unit_values

FORMAT_VERSION = 1


def majority_vote(votes: Int[np.ndarray, "sample voter"],
                  n_classes: int) -> Int[np.ndarray, " sample"]:
    """Majority vote over columns (voters in rank order); ties to the highest-ranked voter.

    Example:
        >>> majority_vote(np.array([[1, 0, 0, 1]]), 2).tolist()  # 2-2 tie: voter 0 says 1
        [1]
    """
    votes = np.asarray(votes, np.int64)
    n = votes.shape[0]
    counts = np.zeros((n, n_classes), np.int64)
    np.add.at(counts, (np.repeat(np.arange(n), votes.shape[1]), votes.ravel()), 1)
    tied = counts == counts.max(1, keepdims=True)
    first = np.argmax(tied[np.arange(n)[:, None], votes], axis=1)
    return votes[np.arange(n), first]


class Selection:
    """Base class: a ranked table of voters plus the machinery to run them."""

    dim: ClassVar[str] = "neuron"
    kind: ClassVar[str] = "selection"

    def __init__(self, table: xr.Dataset, *, k: int, class_names: tuple[str, ...],
                 attrs: dict[str, Any] | None = None, params: dict[str, Any] | None = None):
        if not 1 <= k <= table.sizes[self.dim]:
            raise ValueError(f"k={k} is outside 1..{table.sizes[self.dim]} (the number of "
                             f"candidate {self.dim}s)")
        self.table = table
        self.k = int(k)
        self.class_names = tuple(class_names)
        self.attrs = dict(attrs or {})
        self.params = dict(params or {})

    # ---- what a selection reads ------------------------------------------------------------
    def _k(self, k: int | None) -> int:
        k = self.k if k is None else int(k)
        if not 1 <= k <= self.table.sizes[self.dim]:
            raise ValueError(f"k={k} is outside 1..{self.table.sizes[self.dim]}")
        return k

    @property
    def selected(self) -> xr.Dataset:
        """The top-``k`` rows of :attr:`table`."""
        return self.table.isel({self.dim: slice(0, self.k)})

    def _units(self, row: int) -> np.ndarray:
        raise NotImplementedError

    def _site(self, row: int) -> str:
        return str(self.table["site"].values[row]) if "site" in self.table.coords else "z"

    def _items(self, k: int | None) -> list[tuple[str, int, np.ndarray]]:
        layers = self.table["layer"].values
        return [(self._site(i), int(layers[i]), self._units(i)) for i in range(self._k(k))]

    @property
    def sites(self) -> tuple[str, ...]:
        """Sites the selected voters read, in canonical order."""
        from sn_interp.names import SITES_WITH_VISION
        used = {s for s, _, _ in self._items(None)}
        return tuple(s for s in SITES_WITH_VISION if s in used)

    @property
    def layers(self) -> tuple[int, ...]:
        """Sorted language-model layers the selected voters read (vision sites excluded)."""
        return tuple(sorted({la for s, la, _ in self._items(None) if s != "vision_resid_post"}))

    @property
    def max_layer(self) -> int:
        """The deepest language-model layer needed (-1 if only the vision tower is read)."""
        return max(self.layers, default=-1)

    def requirements(self, k: int | None = None) -> dict[tuple[str, int], Int[np.ndarray, " unit"]]:
        """(site, layer) -> sorted flat unit indices the top-``k`` voters read.

        Example:
            >>> found.requirements()  # doctest: +SKIP
            {('mlp_post', 3): array([17, 1234])}
        """
        req: dict[tuple[str, int], set[int]] = {}
        for site, layer, units in self._items(k):
            req.setdefault((site, layer), set()).update(units.tolist())
        return {key: np.array(sorted(v), np.int64) for key, v in sorted(req.items())}

    # ---- voting ----------------------------------------------------------------------------
    def _vote_matrix(self, values: dict[tuple[str, int], np.ndarray], k: int) -> np.ndarray:
        raise NotImplementedError

    def _columns(self, values: dict[tuple[str, int], np.ndarray], k: int) -> list[np.ndarray]:
        """Per voter, its (sample, units) float32 values cut from ``values``."""
        req = self.requirements(k)
        missing = [key for key in req if key not in values]
        if missing:
            raise ValueError(f"values lacks {missing}; pass one array per requirements() key")
        out = []
        for site, layer, units in self._items(k):
            arr = np.asarray(values[site, layer], np.float32)
            if arr.ndim != 2 or arr.shape[1] != len(req[site, layer]):
                raise ValueError(f"values[{(site, layer)!r}] must be (sample, "
                                 f"{len(req[site, layer])}) in requirements() unit order")
            out.append(arr[:, np.searchsorted(req[site, layer], units)])
        return out

    def predict_values(self, values: dict[tuple[str, int], Float[np.ndarray, "sample unit"]],
                       k: int | None = None) -> Int[np.ndarray, " sample"]:
        """Class indices from raw values, one array per :meth:`requirements` key.

        Args:
            values: (site, layer) -> (sample, n_units) with columns in the order of
                ``requirements(k)[(site, layer)]``.
            k: Number of top voters (default: the fitted ``k``).
        """
        k = self._k(k)
        return majority_vote(self._vote_matrix(values, k), len(self.class_names))

    def check_inputs(self, attrs: dict[str, Any], what: str = "acts",
                     class_names: tuple[str, ...] | None = None) -> None:
        """Refuse inputs of another model (id, revision, widths) or another class list."""
        given = class_names if class_names is not None else _checks.classes_of_attrs(attrs)
        _checks.check_compatible(self.attrs, self.class_names, attrs, what, given)

    def _values(self, acts: xr.Dataset, k: int) -> dict[tuple[str, int], np.ndarray]:
        if not isinstance(acts, xr.Dataset):
            raise TypeError(f"predict takes the activation Dataset of sn.extract, got "
                            f"{type(acts).__name__}")
        self.check_inputs({**acts.attrs, **_checks.widths_of(acts)})
        req = self.requirements(k)
        needs: dict[str, list[int]] = {}
        for site, layer in req:
            needs.setdefault(site, []).append(layer)
        check_available(acts, needs, f"this {type(self).__name__}")
        values = {key: unit_values(acts, *key, units) for key, units in req.items()}
        bad = [key for key, v in values.items() if not np.isfinite(v).all()]
        if bad:
            raise ValueError(f"non-finite activations in {bad}; cannot predict from NaN/inf")
        return values

    def votes(self, acts: xr.Dataset, k: int | None = None) -> xr.DataArray:
        """Per-voter class votes, a DataArray (sample, voter dim) of int64."""
        k = self._k(k)
        v = self._vote_matrix(self._values(acts, k), k)
        table = self.table.isel({self.dim: slice(0, k)})
        coords = {**sample_coords(acts),
                  **{c: (self.dim, table[c].values) for c in table.coords
                     if table[c].dims == (self.dim,)}}
        return xr.DataArray(v, dims=("sample", self.dim), coords=coords, name="votes")

    def predict(self, acts: xr.Dataset, k: int | None = None) -> xr.DataArray:
        """Majority-vote class indices over ``sample``, named ``pred``, with the label coords.

        ``acts`` may hold only the needed sites and any superset of the needed layers.
        """
        k = self._k(k)
        pred = self.predict_values(self._values(acts, k), k)
        da = xr.DataArray(pred.astype(np.int64), dims=("sample",), coords=sample_coords(acts),
                          name="pred")
        da.attrs["class_names"] = json.dumps(list(self.class_names))
        return da

    # ---- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``table.nc`` and ``meta.json`` (with the table's sha256) under ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.table.to_netcdf(path / "table.nc")
        meta = {"kind": self.kind, "format_version": FORMAT_VERSION, "k": self.k,
                "class_names": list(self.class_names), "attrs": self.attrs,
                "params": self.params}
        meta["sha256"] = {"table.nc": _checks.sha256_of(path / "table.nc"),
                          "meta": _meta_digest(meta)}
        (path / "meta.json").write_text(json.dumps(meta, indent=2, default=_jsonable))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Selection:
        """Read a selection written by :meth:`save`, refusing edited, truncated or NaN files."""
        path = Path(path)
        what = f"{cls.__name__} ({cls.kind})"
        meta = _checks.read_json(path / "meta.json", what, {
            "kind": str, "k": int, "class_names": list, "attrs": dict, "params": dict})
        if meta["kind"] != cls.kind:
            raise _checks.ClassifierFileError(f"{path / 'meta.json'} holds a {meta['kind']!r}, "
                                              f"not a {cls.kind!r}")
        raw = meta.get("sha256")
        sums: dict[str, str] = raw if isinstance(raw, dict) else {}
        if sums.get("meta") and sums["meta"] != _meta_digest(meta):
            raise _checks.ClassifierFileError(f"{path / 'meta.json'} was edited since it was "
                                              f"saved (its checksum differs); save the {what} "
                                              "again")
        table_file = path / "table.nc"
        _checks.verify_checksum(table_file, sums.get("table.nc"), what)
        try:
            with xr.open_dataset(table_file) as ds:
                table = ds.load()
        except (OSError, ValueError) as err:
            raise _checks.ClassifierFileError(f"{table_file} is unreadable ({err}): save the "
                                              f"{what} again") from None
        _checks.check_finite(table, table_file,
                             [str(n) for n, v in table.data_vars.items() if v.dtype.kind == "f"])
        for c in ("site", "id"):
            if c in table.coords:
                table = table.assign_coords({c: table[c].astype(str)})
        n_cls = table.sizes.get("class", len(meta["class_names"]))
        if n_cls != len(meta["class_names"]) or not 1 <= meta["k"] <= table.sizes[cls.dim]:
            raise _checks.ClassifierFileError(
                f"{path / 'meta.json'} does not match {table_file} (k={meta['k']} of "
                f"{table.sizes[cls.dim]} rows, {len(meta['class_names'])} class names for "
                f"{n_cls} classes): the files were edited; save the {what} again")
        return cls(table, k=meta["k"], class_names=tuple(meta["class_names"]),
                   attrs=meta["attrs"], params=meta["params"])

    def __repr__(self) -> str:
        ids = self.selected["id"].values[:3].tolist() if "id" in self.table.coords else []
        return (f"{type(self).__name__}(k={self.k}, classes={len(self.class_names)}, "
                f"sites={self.sites}, layers={self.layers}, top={ids})")


def _meta_digest(meta: Mapping[str, object]) -> str:
    """sha256 of ``meta`` without its ``sha256`` entry, as canonical JSON."""
    body = {k: v for k, v in meta.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()


def _jsonable(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"cannot store {type(o).__name__} in JSON")
