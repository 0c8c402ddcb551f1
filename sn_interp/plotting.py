"""Seaborn figures from long-form frames, axes-level so notebooks can compose them.

Each function takes a tidy ``pandas.DataFrame`` (or a DataArray it turns into one with
``to_dataframe().reset_index()``) and an optional ``ax``, draws, labels the axes (with units)
and returns the ``Axes``. Sizes suit a paper column (3.3-3.5 in wide).

Example:
    >>> import pandas as pd
    >>> import sn_interp.plotting as snp
    >>> df = pd.DataFrame({"k": [1, 5], "classifier": ["sn_topk"] * 2, "accuracy": [0.6, 0.8]})
    >>> ax = snp.accuracy_lines(df, x="k")     # one line per classifier
    >>> ax.get_ylabel()
    'test accuracy'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from sn_interp.probes import SuperNeurons
    from sn_interp.sample import Sample

COLUMN_WIDTH = 3.4  # inches
METHOD_LABELS = {"zero_shot": "zero-shot (model's answer)", "sav": "SAV heads",
                 "sn_top1": "best SN", "sn_topk": "top-k SNs", "linear": "linear probe"}

sns.set_theme(context="paper", style="whitegrid", font_scale=0.9)


def _ax(ax: Axes | None, width: float = COLUMN_WIDTH, height: float = 2.4) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=(width, height), layout="constrained")
    return ax


def tidy(obj: xr.DataArray | pd.DataFrame) -> pd.DataFrame:
    """A long-form frame from a DataArray (its name becomes the value column).

    Example:
        >>> import numpy as np, xarray as xr
        >>> da = xr.DataArray(np.eye(2), dims=("site", "layer"), name="accuracy",
        ...                   coords={"site": ["z", "mlp_post"], "layer": [0, 1]})
        >>> tidy(da).columns.tolist(), len(tidy(da))        # (site x layer) -> 4 rows
        (['site', 'layer', 'accuracy'], 4)
    """
    if isinstance(obj, pd.DataFrame):
        return obj
    return obj.to_dataframe().reset_index()


def _error_bars(ax: Axes, df: pd.DataFrame, x: str, hue: str, value: str,
                low: str, high: str, order: Sequence[str], hue_order: Sequence[str]) -> None:
    """Asymmetric interval bars on a seaborn barplot's patches (drawn in order)."""
    width = 0.8 / len(hue_order)
    for j, h in enumerate(hue_order):
        for i, xv in enumerate(order):
            row = df.loc[((df[x] == xv) & (df[hue] == h)).to_numpy()]
            if row.empty:
                continue
            pos = i - 0.4 + width * (j + 0.5)
            v = float(row[value].iloc[0])
            ax.errorbar(pos, v, yerr=[[v - float(row[low].iloc[0])],
                                      [float(row[high].iloc[0]) - v]],
                        fmt="none", ecolor="0.2", elinewidth=0.8, capsize=1.5)


def method_bars(df: pd.DataFrame, *, x: str = "task", hue: str = "classifier",
                ax: Axes | None = None, chance: dict[str, float] | None = None) -> Axes:
    """Test accuracy per task and method with 95% bootstrap intervals.

    ``df`` has columns ``x``, ``hue``, ``accuracy``, ``accuracy_low``, ``accuracy_high``.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"task": ["digits"] * 2, "classifier": ["zero_shot", "sn_topk"],
        ...                    "accuracy": [0.4, 0.9], "accuracy_low": [0.3, 0.85],
        ...                    "accuracy_high": [0.5, 0.95]})
        >>> method_bars(df, chance={"digits": 0.1}).get_ylabel()
        'test accuracy'
    """
    ax = _ax(ax, height=2.6)
    order = list(dict.fromkeys(df[x]))
    hue_order = list(dict.fromkeys(df[hue]))
    labelled = df.assign(**{hue: df[hue].map(lambda m: METHOD_LABELS.get(m, m))})
    sns.barplot(data=labelled, x=x, y="accuracy", hue=hue, order=order,
                hue_order=[METHOD_LABELS.get(str(h), str(h)) for h in hue_order], ax=ax,
                errorbar=None, palette="colorblind")
    _error_bars(ax, df, x, hue, "accuracy", "accuracy_low", "accuracy_high", order, hue_order)
    if chance:
        for i, xv in enumerate(order):
            if xv in chance:
                ax.hlines(chance[xv], i - 0.45, i + 0.45, colors="0.4", linestyles=":", lw=1)
    ax.set(ylim=(0, 1.02), ylabel="test accuracy", xlabel="")
    ax.tick_params(axis="x", rotation=20)
    ax.legend(fontsize=6, title=None, loc="lower center", bbox_to_anchor=(0.5, 1.0),
              ncol=2, frameon=False)
    return ax


def layer_site_heatmap(da: xr.DataArray, *, ax: Axes | None = None,
                       label: str = "test accuracy of the best neuron") -> Axes:
    """A (site x layer) heatmap, e.g. the best single-neuron accuracy per layer and site.

    Example:
        >>> import numpy as np, xarray as xr
        >>> da = xr.DataArray(np.array([[0.5, 0.9], [0.6, 0.7]]), dims=("site", "layer"),
        ...                   coords={"site": ["z", "mlp_post"], "layer": [0, 1]})
        >>> layer_site_heatmap(da).get_xlabel()            # da: (site, layer)
        'layer'
    """
    ax = _ax(ax, height=2.0)
    frame = da.transpose("site", "layer").to_pandas()
    frame = frame.loc[:, ~frame.isna().all(axis=0)]
    sns.heatmap(frame, ax=ax, cmap="viridis", vmin=0, vmax=1, cbar_kws={"label": label},
                linewidths=0.3, linecolor="white")
    ax.set(xlabel="layer", ylabel="site")
    ax.tick_params(axis="y", rotation=0)
    return ax


def accuracy_lines(df: pd.DataFrame, *, x: str, hue: str = "classifier", ax: Axes | None = None,
                   xlabel: str | None = None, logx: bool = False) -> Axes:
    """Accuracy against ``x`` (k, shots, exit layer, ...) with a shaded 95% interval.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"k": [1, 5, 1, 5], "classifier": ["sn_topk"] * 2 + ["sav"] * 2,
        ...                    "accuracy": [0.6, 0.8, 0.5, 0.7]})
        >>> accuracy_lines(df, x="k", logx=True).get_xscale()
        'log'
    """
    ax = _ax(ax)
    palette = dict(zip(dict.fromkeys(df[hue]), sns.color_palette("colorblind"), strict=False))
    for h, part in df.groupby(hue, sort=False):
        part = part.sort_values(x)
        ax.plot(part[x], part["accuracy"], marker="o", ms=3, color=palette[h],
                label=METHOD_LABELS.get(str(h), str(h)))
        if {"accuracy_low", "accuracy_high"} <= set(part):
            ax.fill_between(part[x], part["accuracy_low"], part["accuracy_high"],
                            color=palette[h], alpha=0.2, lw=0)
    if logx:
        ax.set_xscale("log")
    ax.set(ylim=(0, 1.02), ylabel="test accuracy", xlabel=xlabel or x)
    ax.legend(fontsize=6, frameon=True)
    return ax


def matrix_heatmap(da: xr.DataArray, *, ax: Axes | None = None, label: str = "",
                   vmin: float | None = 0, vmax: float | None = 1, fmt: str = ".2f",
                   cmap: str = "viridis") -> Axes:
    """A labelled 2-D heatmap with annotated cells (e.g. prompt A x prompt B accuracy).

    Example:
        >>> import numpy as np, xarray as xr
        >>> da = xr.DataArray(np.full((2, 2), 0.8), dims=("probe_prompt", "test_prompt"),
        ...                   coords={"probe_prompt": ["a", "b"], "test_prompt": ["a", "b"]})
        >>> matrix_heatmap(da, label="accuracy").get_xlabel()   # da: (row dim, column dim)
        'test prompt'
    """
    ax = _ax(ax, height=2.6)
    frame = da.to_pandas()
    sns.heatmap(frame, ax=ax, annot=frame.shape[0] * frame.shape[1] <= 64, fmt=fmt,
                cmap=cmap, vmin=vmin, vmax=vmax, cbar_kws={"label": label},
                annot_kws={"fontsize": 6})
    ax.set(xlabel=str(da.dims[1]).replace("_", " "), ylabel=str(da.dims[0]).replace("_", " "))
    return ax


def counts_by_layer(df: pd.DataFrame, *, x: str = "layer", hue: str = "site",
                    ax: Axes | None = None, xlabel: str = "layer") -> Axes:
    """Stacked counts (e.g. where the top-k SNs live) per layer, coloured by site.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"layer": [0, 0, 1], "site": ["z", "mlp_post", "z"], "count": [2, 1, 3]})
        >>> counts_by_layer(df).get_ylabel()
        'number of selected SNs'
    """
    ax = _ax(ax)
    wide = df.pivot_table(index=x, columns=hue, values="count", aggfunc="sum", fill_value=0,
                          sort=False)
    wide = wide.loc[:, wide.sum(axis=0) > 0]
    bottom = np.zeros(len(wide))
    for col, colour in zip(wide.columns, sns.color_palette("colorblind", len(wide.columns)),
                           strict=True):
        ax.bar(wide.index, wide[col], bottom=bottom, color=colour, label=col, width=0.8)
        bottom += wide[col].to_numpy()
    ax.set(xlabel=xlabel, ylabel="number of selected SNs")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.legend(fontsize=6, frameon=True)
    return ax


def early_exit_axes(df: pd.DataFrame, *, base: tuple[float, float, float] | None = None,
                    ax: Axes | None = None, best: int | None = None) -> Axes:
    """Accuracy against the exit layer, the base model as a band, speed-up on a second axis.

    ``df`` has columns ``exit_layer``, ``accuracy``, ``accuracy_low``, ``accuracy_high`` and
    ``speedup``; ``exit_layer`` -1 (vision tower only) is labelled ``vision``. ``base`` is the
    base model's (accuracy, low, high); ``best`` marks the chosen exit layer.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"exit_layer": [-1, 0, 1], "accuracy": [0.5, 0.7, 0.8],
        ...                    "accuracy_low": [0.4, 0.6, 0.7], "accuracy_high": [0.6, 0.8, 0.9],
        ...                    "speedup": [9.0, 5.0, 3.0]})
        >>> ax = early_exit_axes(df, base=(0.75, 0.7, 0.8), best=1)
        >>> labels = [t.get_text() for t in ax.get_xticklabels()]
        >>> labels
        ['vision', '0', '1']
    """
    ax = _ax(ax, height=2.4)
    df = df.sort_values("exit_layer")
    blue, orange = sns.color_palette("colorblind")[:2]
    grey = "0.35"
    x = df["exit_layer"].to_numpy()
    ax.plot(x, df["accuracy"], marker="o", ms=3, color=blue, label="SN early exit")
    ax.fill_between(x, df["accuracy_low"], df["accuracy_high"], color=blue, alpha=0.2, lw=0)
    if base is not None:
        ax.axhspan(base[1], base[2], color=grey, alpha=0.15, lw=0)
        ax.axhline(base[0], color=grey, ls="--", lw=1, label="base model (own answer)")
    if best is not None:
        ax.axvline(best, color=blue, ls=":", lw=0.8, label="chosen exit")
    ax.set(ylim=(0, 1.02), ylabel="test accuracy", xlabel="exit layer (0-based decoder block)")
    ax.set_xticks(x, _sparse_labels(x))
    twin = ax.twinx()
    twin.plot(x, df["speedup"], marker="s", ms=3, color=orange, ls="-.", label="speed-up")
    twin.set_ylabel("speed-up vs base model (×)", color=orange)
    twin.tick_params(axis="y", colors=orange)
    twin.set_ylim(0, max(1.05, float(np.nanmax(df["speedup"])) * 1.1))
    twin.grid(False)
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=6, frameon=True,
              loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2)
    return ax


def drop_bars(df: pd.DataFrame, *, x: str = "shift", hue: str = "task", value: str = "drop",
              ax: Axes | None = None, ylabel: str = "accuracy drop (clean − shifted)") -> Axes:
    """Signed bars of ``value`` per ``x`` and ``hue`` (e.g. the accuracy drop per shift).

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"shift": ["blur", "blur"], "task": ["digits", "shapes"],
        ...                    "drop": [0.1, -0.02]})
        >>> drop_bars(df).get_ylabel()
        'accuracy drop (clean − shifted)'
    """
    ax = _ax(ax)
    order = list(dict.fromkeys(df[x]))
    hue_order = list(dict.fromkeys(df[hue]))
    sns.barplot(data=df, x=x, y=value, hue=hue, order=order, hue_order=hue_order, ax=ax,
                errorbar=None, palette="colorblind")
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set(xlabel="", ylabel=ylabel)
    ax.tick_params(axis="x", rotation=20)
    ax.legend(fontsize=6, title=None, frameon=True)
    return ax


def depth_strips(df: pd.DataFrame, *, x: str = "relative_depth", y: str = "task",
                 hue: str = "model", ax: Axes | None = None,
                 xlabel: str = "relative depth of SN, (layer + 1) / n_layers") -> Axes:
    """Distribution of SN relative depths: one jittered strip per ``y`` and ``hue``, with medians.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"relative_depth": [0.1, 0.5, 0.9, 0.3], "task": ["digits"] * 4,
        ...                    "model": ["a", "a", "b", "b"]})
        >>> tuple(float(v) for v in depth_strips(df).get_xlim())
        (0.0, 1.02)
    """
    n_y, n_hue = len(set(df[y].dropna())), len(set(df[hue].dropna()))
    ax = _ax(ax, height=0.6 + 0.5 * n_y * max(1, n_hue) ** 0.5)
    hue_order = list(dict.fromkeys(df[hue]))
    sns.stripplot(data=df, x=x, y=y, hue=hue, hue_order=hue_order, dodge=True, jitter=0.25,
                  size=3, alpha=0.6, palette="colorblind", ax=ax)
    sns.pointplot(data=df, x=x, y=y, hue=hue, hue_order=hue_order, dodge=0.8 - 0.8 /  # pyright: ignore[reportArgumentType]  (seaborn takes a float)
                  len(hue_order), estimator="median", errorbar=None, markers="|",
                  markersize=12, linestyle="none", palette="dark:0.1", ax=ax, legend=False)
    ax.set(xlim=(0, 1.02), xlabel=xlabel, ylabel="")
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[:len(hue_order)], labels[:len(hue_order)], fontsize=6, frameon=True,
              title=None, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2)
    return ax


def site_bars(df: pd.DataFrame, *, x: str = "site", hue: str = "model", value: str = "count",
              ax: Axes | None = None, normalize: bool = True) -> Axes:
    """Where SNs live by site: the share (or count) of selected SNs per site, one bar per ``hue``.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"site": ["z", "mlp_post"], "model": ["a", "a"], "count": [3, 1]})
        >>> site_bars(df).get_ylabel()                      # shares: 0.75 and 0.25
        'share of selected SNs'
    """
    ax = _ax(ax)
    df = df.copy()
    if normalize:
        df[value] = df[value] / df.groupby(hue)[value].transform("sum").replace(0, np.nan)
    order = list(dict.fromkeys(df[x]))
    sns.barplot(data=df, x=x, y=value, hue=hue, order=order, errorbar=None,
                palette="colorblind", ax=ax)
    ax.set(xlabel="site", ylabel="share of selected SNs" if normalize else "selected SNs")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=6, title=None, frameon=True)
    return ax


def _sparse_labels(x: np.ndarray, slots: int = 14) -> list[str]:
    """Exit-layer tick labels (-1 is ``vision``), blank where a label would overlap the last one
    shown: ticks stay at every swept layer, labels at least ``span / slots`` apart."""
    gap = (x.max() - x.min()) / slots if len(x) > 1 else 0
    labels, last = [], None
    for v in x:
        if last is None or v - last >= gap:
            labels.append("vision" if v < 0 else str(int(v)))
            last = v
        else:
            labels.append("")
    return labels


def tidy_ticks(ax: Axes, rotation: float = 0) -> None:
    """Horizontal row labels, optionally slanted column labels, no grid through empty cells.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> _, ax = plt.subplots()
        >>> tidy_ticks(ax, rotation=30)
        >>> ax.xaxis.get_gridlines()[0].get_visible()
        False
    """
    ax.grid(False)
    ax.tick_params(axis="y", rotation=0)
    if rotation:
        ax.set_xticks(ax.get_xticks(), [t.get_text() for t in ax.get_xticklabels()],
                      rotation=rotation, ha="right", rotation_mode="anchor")


def overlap_pair(jaccard: xr.DataArray, spearman: xr.DataArray, *, xlabel: str, ylabel: str,
                 title: str, height: float = 2.6, wrap: bool = False) -> Figure:
    """Two heatmaps side by side: Jaccard of top-k SN ids and Spearman of neuron scores.

    Example:
        >>> import numpy as np, xarray as xr
        >>> m = xr.DataArray(np.eye(2), dims=("model_a", "model_b"),
        ...                  coords={"model_a": ["x", "y"], "model_b": ["x", "y"]})
        >>> fig = overlap_pair(m, m, xlabel="model", ylabel="model", title="overlap")
        >>> len(fig.axes)                                  # two heatmaps and their colour bars
        4
    """
    fig, axes = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH, height), layout="constrained")
    sep = "\n" if wrap else " "
    matrix_heatmap(jaccard, ax=axes[0], label=f"Jaccard of{sep}top-k SN ids")
    matrix_heatmap(spearman, ax=axes[1], vmin=-1, vmax=1, cmap="vlag",
                   label=f"Spearman of{sep}neuron scores")
    for ax in axes:
        ax.set(xlabel=xlabel, ylabel=ylabel)
        tidy_ticks(ax, rotation=30)
    fig.suptitle(title, fontsize=8)
    return fig


def effect_vs_k(sn_df: pd.DataFrame, control: pd.DataFrame, *, ax: Axes | None = None,
                hue: str = "edit", ylabel: str = "effect") -> Axes:
    """An intervention's effect against k: SNs (line, 95% interval) over every control draw.

    ``sn_df`` has columns ``hue``, ``k``, ``effect``, ``effect_low``, ``effect_high``;
    ``control`` has ``hue``, ``k``, ``effect`` (one row per random draw), drawn as faint dots.

    Example:
        >>> import pandas as pd
        >>> sn_df = pd.DataFrame({"edit": ["ablate"] * 2, "k": [1, 10], "effect": [0.1, 0.4],
        ...                       "effect_low": [0.0, 0.3], "effect_high": [0.2, 0.5]})
        >>> control = pd.DataFrame({"edit": ["ablate"] * 4, "k": [1, 1, 10, 10],
        ...                         "effect": [0.0, 0.01, 0.02, -0.01]})
        >>> effect_vs_k(sn_df, control).get_xlabel()
        'k (neurons edited)'
    """
    ax = _ax(ax)
    levels = list(dict.fromkeys([*sn_df[hue], *control[hue]]))
    palette = dict(zip(levels, sns.color_palette("colorblind"), strict=False))
    rng = np.random.default_rng(0)
    for h in levels:
        c = control[control[hue] == h]
        jitter = np.exp(rng.uniform(-0.08, 0.08, len(c)))
        ax.scatter(c["k"] * jitter, c["effect"], s=5, color=palette[h], alpha=0.3, lw=0,
                   label=f"{h}: random neurons")
        part = sn_df.loc[(sn_df[hue] == h).to_numpy()].sort_values("k")
        ax.plot(part["k"], part["effect"], marker="o", ms=3, color=palette[h],
                label=f"{h}: SNs")
        ax.fill_between(part["k"], part["effect_low"], part["effect_high"], color=palette[h],
                        alpha=0.2, lw=0)
    ax.axhline(0, color="0.4", lw=0.6, ls=":")
    ax.set_xscale("log")
    ks = sorted(set(sn_df["k"]) | set(control["k"]))
    ax.set_xticks(ks, [str(int(k)) for k in ks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set(xlabel="k (neurons edited)", ylabel=ylabel)
    ax.legend(fontsize=5.5, frameon=True, ncol=2)
    return ax


def _card_values(found, acts: xr.Dataset, row: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    from sn_interp.probes._data import unit_values

    site, layer, unit = str(row["site"].values), int(row["layer"].values), int(row["unit"].values)
    v = unit_values(acts, site, layer, np.array([unit]))[:, 0]
    return v, np.asarray(acts["label"].values, np.int64)


def _card_rule(ax: Axes, found, row: xr.Dataset, names: Sequence[str]) -> None:
    """The fitted rule on the value axis: class centroids and decision boundaries."""
    from sn_interp.probes.neurons import centroid_bounds

    if "centroids" in row:
        cent = np.asarray(row["centroids"].values, np.float64)
        ax.scatter(cent, np.arange(len(cent)), marker="D", s=22, color="k", zorder=5,
                   label="probe centroid")
        lo, _ = centroid_bounds(cent[:, None])
        for b in np.unique(lo[np.isfinite(lo[:, 0]), 0]):
            ax.axvline(float(b), color="0.3", lw=0.7, ls="--")
    elif "threshold" in row:
        for t in np.atleast_1d(row["threshold"].values):
            if np.isfinite(t):
                ax.axvline(float(t), color="0.3", lw=0.7, ls="--")


def _card_images(fig, grid, samples: Sequence, ids: np.ndarray, values: np.ndarray,
                 n: int) -> None:
    by_id = {s.sample_id: s for s in samples}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"samples lacks sample ids {missing[:3]} of the activations; pass the "
                         "samples the (test) activations were extracted from")
    order = np.argsort(values, kind="stable")
    picks = [("most", j) for j in order[::-1][:n]] + [("least", j) for j in order[:n]]
    for col, (what, j) in enumerate(picks):
        ax = fig.add_subplot(grid[col])
        s = by_id[ids[j]]
        ax.imshow(s.image.convert("RGB"))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{what}: {values[j]:.3g}\n{s.label_name}", fontsize=6)


def neuron_card(found: SuperNeurons, acts: xr.Dataset, rank: int = 0,
                samples: Sequence[Sample] | None = None,
                test_acts: xr.Dataset | None = None, *, n_images: int = 4) -> Figure:
    """One selected neuron at a glance: what it is, how it separates classes, what drives it.

    Args:
        found (SuperNeurons): The selection (:class:`~sn_interp.probes.SuperNeurons`).
        acts: The probe-split activations it was fitted on.
        rank: Which neuron of the ranked table (0: the best).
        samples: Optional samples whose images to show: those of ``test_acts`` when given,
            else of ``acts`` (matched by ``sample_id``).
        test_acts: Optional test-split activations, drawn beside the probe values.
        n_images: Images shown that activate the neuron most, and as many least.

    Returns:
        The card, a matplotlib Figure. Its title holds the id, site, layer and probe score;
        one strip per class shows the neuron's values (probe, and test when given) with the
        fitted centroids and decision boundaries; then the top and bottom images, labelled
        with value and class.

    Example:
        >>> import sn_interp as sn
        >>> vlm = sn.load_model("tiny-llava")
        >>> probe, test = sn.load_task("shapes-color", n=60).split(shots=5, seed=0)
        >>> acts = sn.extract(vlm, probe, progress=False)
        >>> test_acts = sn.extract(vlm, test, progress=False)
        >>> found = sn.find_super_neurons(acts, k=3, progress=False)
        >>> fig = neuron_card(found, acts, 0, test, test_acts, n_images=2)
        >>> str(found.table.id[0].item()) in fig.axes[0].get_title()   # id, site, layer, score
        True
    """
    row = found.table.isel(neuron=rank)
    names = list(found.class_names)
    frames = []
    for split, a in (("probe", acts), ("test", test_acts)):
        if a is not None:
            v, y = _card_values(found, a, row)
            frames.append(pd.DataFrame({"value": v, "class": [names[c] for c in y],
                                        "split": split}))
    df = pd.concat(frames, ignore_index=True)
    show = samples is not None
    fig = plt.figure(figsize=(2 * COLUMN_WIDTH, 2.2 + 0.22 * len(names) + (1.3 if show else 0)),
                     layout="constrained")
    outer = fig.add_gridspec(2 if show else 1, 1, height_ratios=[2.2, 1] if show else [1])
    ax = fig.add_subplot(outer[0])
    sns.stripplot(data=df, x="value", y="class", hue="split", order=names, dodge=True, size=3,
                  alpha=0.7, jitter=0.25, palette="colorblind", ax=ax)
    _card_rule(ax, found, row, names)
    ax.set(xlabel=f"activation ({row['site'].values}, layer {int(row['layer'].values)})",
           ylabel="class")
    ax.legend(fontsize=6, frameon=True, loc="best")
    ax.set_title(f"rank {rank}: {row['id'].values}  site {row['site'].values}, layer "
                 f"{int(row['layer'].values)}, probe score {float(row['score'].values):.3f}",
                 fontsize=8)
    if show:
        src = test_acts if test_acts is not None else acts
        v, _ = _card_values(found, src, row)
        n = min(n_images, len(v) // 2)
        grid = outer[1].subgridspec(1, 2 * n)
        ids = np.array([str(i) for i in src["sample_id"].values], dtype=object)
        _card_images(fig, grid, samples, ids, v, n)
    return fig
