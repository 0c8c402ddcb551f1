"""Do single neurons answer categorical visual questions better than the model itself?

For each model and task: Super Neurons selected on the few-shot probe split, then on the
held-out test split the accuracy (95% bootstrap interval) of the best neuron alone, of the
top-k vote, of the top-k SAV heads and of the model's own zero-shot answer; where the selected
SNs live (counts per layer and site); and the best single-neuron accuracy per layer and site.

Output dims: ``model``, ``task``, ``classifier`` (zero_shot, sav, sn_top1, sn_topk; not ``method``,
which ``.sel`` would take for its own keyword), ``site``,
``layer`` (padded to the deepest model; NaN past a model's own depth).

Run: ``python -m sn_interp.analyses.find_super_neurons --model micro-llava --task digits``
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from sn_interp.analyses import _data
from sn_interp.analyses._common import StudyConfig, make_main
from sn_interp.analyses._common import file_name as _name
from sn_interp.analyses._evidence import add_holm, cell_evidence, evidence_tables
from sn_interp.analyses._result import Headline, cell_value, combine_cells, panel_figures
from sn_interp.names import ALL_SITES

if TYPE_CHECKING:
    from sn_interp.models import VLM
    from sn_interp.probes import SuperNeurons

log = logging.getLogger(__name__)
ANALYSIS = "find_super_neurons"
METHODS = ("zero_shot", "sav", "sn_top1", "sn_topk")


@dataclasses.dataclass(frozen=True)
class Config(StudyConfig):
    """Options of the find_super_neurons analysis."""

    zero_shot_mode: str = "generate"
    """How the base model answers: generate (greedy text, mapped to a class) or first_token."""
    max_new_tokens: int = 8
    """Generation budget of the zero-shot answer."""
    n_perm: int = 200
    """Permutations of the selection null (the whole search on permuted probe labels; 0: skip)."""
    stability_boot: int = 50
    """Stratified bootstrap draws of the selection stability (0: skip)."""
    cards: int = 3
    """Neuron cards drawn per model and task (the top SNs; 0: none)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("n_perm", "stability_boot", "cards"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.zero_shot_mode not in ("generate", "first_token"):
            raise ValueError(f"zero_shot_mode must be generate or first_token, "
                             f"got {self.zero_shot_mode!r}")


def best_per_cell(found: SuperNeurons, acts_test: xr.Dataset) -> tuple[xr.DataArray, xr.DataArray]:
    """Probe score and test accuracy of the best neuron of each (site, layer).

    The table is ranked best first, so each cell's first row is its best neuron.
    """
    from sn_interp.probes import SuperNeurons

    table = found.table
    keys = list(zip(table["site"].values.tolist(), table["layer"].values.tolist(), strict=True))
    first: dict[tuple[str, int], int] = {}
    for row, key in enumerate(keys):
        first.setdefault(key, row)
    rows = sorted(first.values())
    sub = SuperNeurons(table.isel(neuron=rows), k=len(rows), class_names=found.class_names,
                       attrs=found.attrs, params=found.params)
    correct = (sub.votes(acts_test) == acts_test["label"]).mean("sample").values
    layers = sorted({la for _, la in first})
    probe = xr.DataArray(np.full((len(ALL_SITES), len(layers)), np.nan),
                         coords={"site": list(ALL_SITES), "layer": layers})
    test = probe.copy()
    for j, row in enumerate(rows):
        site, layer = keys[row]
        probe.loc[site, layer] = float(table["score"].values[row])
        test.loc[site, layer] = float(correct[j])
    return probe, test


def _counts(found: SuperNeurons) -> dict[tuple[str, int], int]:
    sel = found.selected
    out: dict[tuple[str, int], int] = {}
    for site, layer in zip(sel["site"].values.tolist(), sel["layer"].values.tolist(),
                           strict=True):
        out[(site, layer)] = out.get((site, layer), 0) + 1
    return out


def load_cell(cfg: Config, vlm: VLM, task: str) -> dict:
    """The probe and test samples of one (model, task) and their activations (stores)."""
    probe, test = _data.split(cfg, task)
    acts = _data.Acts(_data.acts(cfg, vlm, probe, "probe"), _data.acts(cfg, vlm, test, "test"))
    heads = _data.Acts(_data.head_acts(cfg, vlm, probe, "probe", acts.probe),
                       _data.head_acts(cfg, vlm, test, "test", acts.test))
    return {"test": test, "acts": acts, "heads": heads}


def load(cfg: Config) -> _data.Loaded:
    """The IO stage: load the models, extract or open every store."""
    return _data.load_cells(cfg, load_cell)


def cell(cfg: Config, vlm: VLM, inputs: dict) -> xr.Dataset:
    """One (model, task) cell: dims ``classifier`` and (``site``, ``layer``), and scalars."""
    from sn_interp.probes import evaluate, find_sav_heads

    acts, heads_acts = inputs["acts"], inputs["heads"]
    # read many times below: from memory, not the store; z on its own layers for hybrid models
    (a_probe, a_test), (h_probe, h_test) = _data.resident_pair(acts, heads_acts)
    found = _data.select(cfg, a_probe)
    heads = find_sav_heads(h_probe, k=min(cfg.k, _data.n_heads(vlm)), progress=cfg.progress)
    base = _data.zero_shot(cfg, vlm, inputs["test"], mode=cfg.zero_shot_mode,
                           max_new_tokens=cfg.max_new_tokens)
    preds = {"zero_shot": base.pred, "sav": heads.predict(h_test),
             "sn_top1": found.predict(a_test, k=1), "sn_topk": found.predict(a_test)}
    evs = np.array([_data.accuracy_fields(evaluate(preds[m], seed=cfg.seed)) for m in METHODS])
    evidence = cell_evidence(found, a_probe, a_test, {m: preds[m] for m in METHODS},
                             n_perm=cfg.n_perm, n_boot=cfg.stability_boot, seed=cfg.seed)
    n_layers = vlm.dims.n_layers
    probe_best, test_best = (g.reindex(layer=range(n_layers)).values
                             for g in best_per_cell(found, a_test))
    counts = np.zeros((len(ALL_SITES), n_layers))
    for (site, layer), count in _counts(found).items():
        if site in ALL_SITES:
            counts[ALL_SITES.index(site), layer] = count
    top = found.table.isel(neuron=0)
    best_layer = int(top["layer"].values)
    grid = ("site", "layer")
    return xr.merge([evidence, xr.Dataset(
        {"accuracy": ("classifier", evs[:, 0], {"long_name": "test accuracy"}),
         "accuracy_low": ("classifier", evs[:, 1]), "accuracy_high": ("classifier", evs[:, 2]),
         "probe_best": (grid, probe_best, {"long_name": "probe accuracy of the best neuron"}),
         "test_best": (grid, test_best, {"long_name": "test accuracy of the best neuron"}),
         "sn_count": (grid, counts, {"long_name": "selected SNs"}),
         "best_id": ((), str(top["id"].values)), "best_site": ((), str(top["site"].values)),
         "best_layer": ((), np.int64(best_layer)),
         "relative_depth": ((), (best_layer + 1) / n_layers,
                            {"long_name": "(best layer + 1) / n_layers"}),
         "zero_shot_mapped": ((), float(base.mapped.mean()),
                              {"long_name": "fraction of answers mapped to a class"}),
         "n_layers": ((), np.int64(n_layers)),
         "chance": ((), 1 / len(found.class_names), {"long_name": "1 / number of classes"})},
        coords={"classifier": list(METHODS), "site": list(ALL_SITES),
                "layer": np.arange(n_layers)})])


def run(cfg: Config, loaded: _data.Loaded | None = None) -> xr.Dataset:
    """All (model, task) cells as one Dataset (see the module docstring).

    Pure given ``loaded`` (the output of :func:`load`); without it, loads first.
    """
    loaded = load(cfg) if loaded is None else loaded
    cells = {(m, t): cell(cfg, loaded.models[m], inp) for (m, t), inp in loaded.cells.items()}
    return add_holm(combine_cells(
        cells, models=cfg.models, tasks=cfg.tasks, per_model=("n_layers",),
        per_task=("chance",), fill={"stable_set": ""},
        attrs={"study": cfg.study, "k": cfg.k, "shots": cfg.shots, "rule": cfg.rule,
               "score": cfg.score, "n_perm": cfg.n_perm, "stability_boot": cfg.stability_boot}))


#: The report's headline columns this analysis is the primary source of.
HEADLINE = (
    Headline("zero-shot", cell_value("accuracy", classifier="zero_shot"),
             note="the model's own answer mapped to a class"),
    Headline("SAV", cell_value("accuracy", classifier="sav"), note="top-k SAV heads"),
    Headline("SN best", cell_value("accuracy", classifier="sn_top1"),
             note="the single best Super Neuron"),
    Headline("SN best p", cell_value("p_vs_zero_shot_holm", classifier="sn_top1"),
             note="exact McNemar p of the SN against zero-shot on the same test items, "
                  "Holm across the study's tasks"),
    Headline("SN best null", cell_value("null_ceiling", classifier="sn_top1"),
             note="null ceiling: 95th percentile of the held-out accuracy of the same "
                  "selection on permuted probe labels"),
    Headline("SN top-{k}", cell_value("accuracy", classifier="sn_topk"),
             note="the top-k SN vote"),
    Headline("SN top-{k} p", cell_value("p_vs_zero_shot_holm", classifier="sn_topk")),
    Headline("SN top-{k} null", cell_value("null_ceiling", classifier="sn_topk")),
    Headline("best SN layer", cell_value("best_layer"), integer=True,
             note="0-based layer of the best SN"),
)


def headline(result: xr.Dataset) -> pd.DataFrame:
    """One row per (model, task): zero-shot, SAV, best SN, top-k SNs, best SN's place.

    Beside each SN accuracy: its exact McNemar p against zero-shot (Holm across tasks) and
    its null ceiling (95th percentile of the permuted held-out accuracy); then the stable set.
    """
    rows = []
    k = result.attrs["k"]
    for m in result.model.values:
        for t in result.task.values:
            r = result.sel(model=m, task=t)
            acc = {meth: float(r.accuracy.sel(classifier=meth)) for meth in METHODS}
            row = {"model": m, "task": t, "zero-shot": acc["zero_shot"], "SAV": acc["sav"]}
            for meth, label in (("sn_top1", "SN best"), ("sn_topk", f"SN top-{k}")):
                row[label] = acc[meth]
                row[f"{label} p"] = _at(r, "p_vs_zero_shot_holm", meth)
                row[f"{label} null"] = _at(r, "null_ceiling", meth)
            row.update({"best SN": str(r.best_id.values), "best SN layer": int(r.best_layer),
                        "stable SNs": str(r.stable_set.values) if "stable_set" in r else "–"})
            rows.append(row)
    return pd.DataFrame(rows)


def _at(r: xr.Dataset, var: str, classifier: str) -> float:
    return float(r[var].sel(classifier=classifier)) if var in r else float("nan")


def tables(result: xr.Dataset) -> dict[str, pd.DataFrame]:
    acc = result[["accuracy", "accuracy_low", "accuracy_high"]].to_dataframe().reset_index()
    where = result.sn_count.to_dataframe().reset_index().dropna()
    where = where[where.sn_count > 0].rename(columns={"sn_count": "count"})
    return {"headline": headline(result), "accuracy": acc,
            "sn_locations": where.astype({"count": int}),
            **(evidence_tables(result) if "p_vs_zero_shot" in result else {})}


def plot(result: xr.Dataset, ax=None, *, model: str | None = None):
    """Accuracy per task and method for one model (default: the first)."""
    from sn_interp.plotting import method_bars

    m = model or str(result.model.values[0])
    df = result[["accuracy", "accuracy_low", "accuracy_high"]].sel(model=m) \
        .to_dataframe().reset_index()
    ax = method_bars(df, hue="classifier", ax=ax, chance=dict(zip(result.task.values, result.chance.values,
                                                strict=True)))
    ax.set_title(m, fontsize=8, pad=28)
    return ax


def figures(result: xr.Dataset) -> dict:
    """Accuracy bars per model; best-neuron heatmap and SN locations per (model, task)."""
    from sn_interp.plotting import counts_by_layer, layer_site_heatmap

    def draw(axes, m: str, t: str) -> None:
        r = result.sel(model=m, task=t)
        layer_site_heatmap(r.test_best.dropna("layer", how="all"), ax=axes[0])
        axes[0].set_title(f"{m} / {t}: best neuron per layer and site", fontsize=8)
        counts = r.sn_count.to_dataframe().reset_index().dropna()
        counts_by_layer(counts.rename(columns={"sn_count": "count"}), ax=axes[1])
        axes[1].set_title(f"where the top-{result.attrs['k']} SNs live", fontsize=8)

    figs = {f"accuracy_{_name(m)}": plot(result, model=str(m)).figure
            for m in result.model.values}
    figs.update(panel_figures(result, "layers", draw, figsize=(7, 2.2)))
    return figs



def extras(cfg: Config, result: xr.Dataset, folder) -> None:
    """Neuron cards of the top ``cfg.cards`` SNs of every cell, beside the figures."""
    if cfg.cards:
        from sn_interp.analyses._cards import write_cards

        write_cards(cfg, folder, cfg.cards)


main = make_main(ANALYSIS, Config, run, tables, figures, extras=extras, load=load)

if __name__ == "__main__":
    main()
