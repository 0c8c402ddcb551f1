"""One shape for analysis results: cells are Datasets, one function joins them.

Every analysis computes one ``xr.Dataset`` per (model, task) **cell**, over its own dims
(documented in its module docstring) without ``model`` or ``task``; :func:`combine_cells`
stacks the cells into the analysis result over ``model`` and ``task`` (outer join: a cell
lacking a coordinate value another cell has gets NaN, or the variable's ``fill``).
Comparisons across cells (e.g. across models) are computed from the cells and merged in as
extra Datasets. Each analysis also declares its report headline columns as
:class:`Headline` entries (``HEADLINE`` in its module), which
:mod:`sn_interp.analyses.report` reads.

Example:
    >>> import xarray as xr
    >>> cells = {("m", "a"): xr.Dataset({"acc": ("layer", [0.5, 0.7])}, {"layer": [0, 1]}),
    ...          ("m", "b"): xr.Dataset({"acc": ("layer", [0.9])}, {"layer": [0]})}
    >>> combine_cells(cells, models=["m"], tasks=["a", "b"]).acc.values.tolist()
    [[[0.5, 0.7], [0.9, nan]]]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from sn_interp.analyses._common import StudyConfig

CELL_DIMS = ("model", "task")


def _first_seen(cells: Sequence[xr.Dataset], dim: str) -> list[Hashable]:
    """The values of coordinate ``dim`` over ``cells``, in order of first appearance."""
    seen: dict[Hashable, None] = {}
    for c in cells:
        if dim in c.indexes:
            seen.update(dict.fromkeys(c.indexes[dim].tolist()))
    return list(seen)


def combine_cells(cells: Mapping[tuple[str, str], xr.Dataset], *, models: Sequence[str],
                  tasks: Sequence[str], per_model: Sequence[str] = (),
                  per_task: Sequence[str] = (), fill: Mapping[str, object] | None = None,
                  order: Mapping[str, Sequence[Hashable]] | None = None,
                  extra: Sequence[xr.Dataset] = (),
                  attrs: Mapping[str, object] | None = None) -> xr.Dataset:
    """Stack (model, task) cells into one Dataset over ``model``, ``task`` and the cells' dims.

    Args:
        cells: (model, task) -> that cell's Dataset (every pair of ``models`` x ``tasks``).
        models, tasks: The order of the ``model`` and ``task`` coordinates.
        per_model, per_task: Variables that depend on the model (task) only: kept over
            ``model`` (``task``) alone, from the first task (model).
        fill: Fill value per variable where a cell lacks a coordinate value (default NaN),
            e.g. ``""`` for strings.
        order: The order of a cell dim's coordinate (default: first appearance over the
            cells, in model-then-task order).
        extra: Datasets merged into the result (comparisons across cells).
        attrs: The result's attrs.
    """
    grid = [[cells[m, t] for t in tasks] for m in models]
    flat = [c for row in grid for c in row]
    fills = dict(fill or {})
    # Any: keyword arguments of mixed types for xr.concat
    kw: dict[str, Any] = dict(join="outer", fill_value=fills, data_vars="all",
                              coords="different", compat="equals",
                              combine_attrs="override")
    rows = [xr.concat(row, dim="task", **kw) for row in grid]
    ds = xr.concat(rows, dim="model", **kw).assign_coords(model=list(models), task=list(tasks))
    for v in per_model:
        ds[v] = ds[v].isel(task=0, drop=True)
    for v in per_task:
        ds[v] = ds[v].isel(model=0, drop=True)
    dims = [str(d) for d in ds.dims if d not in CELL_DIMS and d in ds.indexes]
    want = {d: list(order[d]) if order and d in order else _first_seen(flat, d) for d in dims}
    ds = ds.reindex(want, fill_value=fills) if want else ds
    if extra:
        ds = xr.merge([ds, *extra], join="outer", compat="no_conflicts",
                      combine_attrs="override")
    ds.attrs = dict(attrs or {})
    return ds


def frame_to_dataset(rows: list[dict], dims: Sequence[str],
                     order: Mapping[str, Sequence[Hashable]]) -> xr.Dataset:
    """Long-form records to a Dataset over ``dims`` (NaN where absent), coords in ``order``.

    Example:
        >>> rows = [{"a": "x", "v": 1.0}, {"a": "y", "v": 2.0}]
        >>> frame_to_dataset(rows, ["a"], {"a": ["y", "x", "z"]}).v.values.tolist()
        [2.0, 1.0, nan]
    """
    ds = pd.DataFrame(rows).set_index(list(dims)).to_xarray()
    return ds.reindex({d: list(order[d]) for d in dims})


# ---- headline columns -----------------------------------------------------------------------

def pick(result: xr.Dataset | None, var: str, **where: object) -> float:
    """A scalar of ``result[var]`` at ``where`` (keys that are not its dims ignored), else NaN.

    Example:
        >>> ds = xr.Dataset({"acc": ("task", [0.5, 0.7])}, {"task": ["a", "b"]})
        >>> pick(ds, "acc", task="b", model="m"), pick(ds, "nope", task="a")
        (0.7, nan)
    """
    if result is None or var not in result:
        return float("nan")
    da = result[var]
    try:
        da = da.sel({k: v for k, v in where.items() if k in da.dims})
    except KeyError:
        return float("nan")
    return float(da) if da.size == 1 else float("nan")


@dataclasses.dataclass(frozen=True)
class Headline:
    """One column an analysis contributes to the report's headline table.

    Attributes:
        column: The column name; ``{k}``, ``{shots}`` ... are filled from the report config.
        value: ``value(result, cell, cfg) -> float`` for one ``cell`` (``{"model": m,
            "task": t}``) of the analysis ``result`` (NaN when it has none).
        integer: Show the value as an integer (``–`` when missing).
        note: What the column means, for the note under the headline table.

    Several analyses may declare the same column: the report takes the first analysis (in
    its run order) that has a value, so a column has a primary source and fallbacks.
    """

    column: str
    value: Callable[[xr.Dataset, Mapping[str, str], StudyConfig], float]
    integer: bool = False
    note: str = ""

    def name(self, cfg: StudyConfig) -> str:
        """The column name for a report config."""
        return self.column.format(**dataclasses.asdict(cfg))


def cell_value(var: str, **fixed: object
               ) -> Callable[[xr.Dataset, Mapping[str, str], StudyConfig], float]:
    """A :attr:`Headline.value` reading ``result[var]`` at the cell (and ``fixed`` coords).

    A fixed value that is a string naming a config field in braces (``"{shots}"``) is read
    from the report config.
    """
    def value(result: xr.Dataset, cell: Mapping[str, str], cfg: StudyConfig) -> float:
        at = {k: getattr(cfg, v[1:-1]) if isinstance(v, str) and v.startswith("{") else v
              for k, v in fixed.items()}
        return pick(result, var, **at, **cell)
    return value


def format_int(v: float) -> str:
    """An integer headline cell: ``–`` when missing."""
    return "–" if np.isnan(v) else str(int(v))


def model_task_cells(result: xr.Dataset) -> Iterator[tuple[str, str, xr.Dataset]]:
    """``(model, task, result.sel(model=..., task=...))`` for every cell, in result order."""
    for m in result.model.values:
        for t in result.task.values:
            yield str(m), str(t), result.sel(model=m, task=t)


def panel_figures(result: xr.Dataset, prefix: str,
                  draw: Callable[[Sequence[Axes], str, str], None], *,
                  figsize: tuple[float, float], **subplots: Any) -> dict[str, Figure]:
    """One figure of two side-by-side panels per (model, task) cell, named
    ``<prefix>_<model>_<task>``; ``draw(axes, model, task)`` fills the two axes."""
    import matplotlib.pyplot as plt

    from sn_interp.analyses._common import file_name

    figs = {}
    for m, t, _ in model_task_cells(result):
        fig, axes = plt.subplots(1, 2, figsize=figsize, layout="constrained", **subplots)
        draw(list(axes), m, t)
        figs[f"{prefix}_{file_name(m)}_{file_name(t)}"] = fig
    return figs
