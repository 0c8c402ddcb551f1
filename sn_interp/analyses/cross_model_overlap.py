"""Are Super Neurons the same across tasks, prompts, seeds — and across model families?

Within a model, neuron ids are comparable: the SN selections of every pair of tasks, of
prompts (per task) and of split seeds (per task) are compared by the Jaccard index of their
top-k neuron-id sets and the Spearman rank correlation of their score vectors over the
neuron ids both scored. Across models (of one family or of several) units cannot be matched, so
the comparison is of where SNs live — relative depth ``(layer + 1) / n_layers`` (the
fraction of the language model that runs before the SN is read; a two-sample
Kolmogorov-Smirnov statistic per pair of models) and counts per site — and of what they
say: on the same test samples, the fraction where both models' top-k SN votes agree, and
Cohen's kappa.

The reference selection of a (model, task) uses the task's first prompt and ``seed``.

Output variables (dims):
    task_jaccard, task_spearman (model, task_a, task_b)
    prompt_jaccard, prompt_spearman (model, task, prompt_a, prompt_b)
    seed_jaccard, seed_spearman (model, task, seed_a, seed_b)
    seed_stable_jaccard, seed_expected_jaccard (model, task, seed_a, seed_b), with
        ``--stability-boot``: Jaccard of the seeds' stable SN sets (bootstrap frequency >= 0.5)
        and, on the diagonal, a seed's own expected Jaccard of two bootstrap draws
    sn_id, sn_site, sn_layer, relative_depth (model, task, rank): the top-k SNs
    site_count (model, task, site); accuracy, accuracy_low, accuracy_high (model, task)
    depth_ks, depth_ks_pvalue, agreement, kappa (task, model_a, model_b)
    n_layers, family (model)
Cells a task does not have (another task's prompts) are NaN.

Run: ``python -m sn_interp.analyses.cross_model_overlap --model micro-llava micro-qwen3-vl
--task digits shapes-color``
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict, TypeVar

import numpy as np
import pandas as pd
import xarray as xr

from sn_interp.analyses import _data
from sn_interp.analyses._common import StudyConfig, make_main
from sn_interp.analyses._common import file_name as _name
from sn_interp.analyses._data import check_names, resolve, task_meta
from sn_interp.analyses._overlap import overlap
from sn_interp.analyses._result import combine_cells, frame_to_dataset
from sn_interp.names import ALL_SITES

if TYPE_CHECKING:
    from sn_interp.models import VLM
    from sn_interp.probes import SuperNeurons

K = TypeVar("K", str, int)  # what a family of selections is keyed by: prompt id or seed

log = logging.getLogger(__name__)
ANALYSIS = "cross_model_overlap"


@dataclasses.dataclass(frozen=True)
class Config(StudyConfig):
    """Options of the cross_model_overlap analysis."""

    prompts: tuple[str, ...] = ()
    """Prompt template ids of the prompt comparison (default: all of each task's templates);
    a task skips the ids it lacks. The first is the prompt of every other comparison."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Split seeds of the seed comparison (each draws other probe images)."""
    stability_boot: int = 0
    """Bootstrap reselections per seed's probe split (0: skip): the seeds' stable SN sets are compared, beside each seed's own expected bootstrap Jaccard."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(set(self.seeds)) != len(self.seeds) or not self.seeds:
            raise ValueError(f"seeds must be distinct and non-empty, got {self.seeds}")
        if self.stability_boot < 0 or self.stability_boot == 1:
            raise ValueError(f"stability_boot must be 0 or >= 2, got {self.stability_boot}")


# ---- load stage ----------------------------------------------------------------------------

class CellInputs(TypedDict):
    """What the load stage gives one (model, task) cell."""

    ref: _data.Acts
    prompts: list[str]
    by_prompt: dict[str, xr.Dataset]
    by_seed: dict[int, xr.Dataset]
    n_layers: int
    family: str


def load_cell(cfg: Config, vlm: VLM, task: str) -> CellInputs:
    """The stores of one (model, task): reference probe + test, other prompts, other seeds."""
    meta = task_meta(task, cfg.n, cfg.seed)
    prompts = resolve(cfg.prompts, list(meta.prompts), "prompt", task)
    if not prompts:
        raise ValueError(f"task {task!r} has none of the prompts {list(cfg.prompts)}")
    ref = _data.split_acts(cfg, vlm, task, prompt=prompts[0])
    by_prompt = {p: _data.split_acts(cfg, vlm, task, prompt=p, with_test=False).probe
                 for p in prompts[1:]}
    by_seed = {s: _data.split_acts(dataclasses.replace(cfg, seed=s), vlm, task,
                                   prompt=prompts[0], with_test=False).probe
               for s in cfg.seeds if s != cfg.seed}
    return {"ref": ref, "prompts": prompts, "by_prompt": by_prompt, "by_seed": by_seed,
            "n_layers": vlm.dims.n_layers, "family": str(getattr(vlm, "family", ""))}


def resident_inputs(inputs: CellInputs) -> CellInputs:
    """``inputs`` with every activation split in memory (see :func:`_data.resident`)."""
    return {**inputs, "ref": inputs["ref"].resident(),
            "by_prompt": {p: _data.resident(a) for p, a in inputs["by_prompt"].items()},
            "by_seed": {s: _data.resident(a) for s, a in inputs["by_seed"].items()}}


def load(cfg: Config) -> _data.Loaded[CellInputs]:
    """The IO stage: check the prompt ids, load the models, extract or open every store."""
    check_names(cfg, prompts=cfg.prompts)
    return _data.load_cells(cfg, load_cell)


# ---- one model -----------------------------------------------------------------------------

class Selections(NamedTuple):
    """The selections of one (model, task) and the reference's test predictions."""

    ref: SuperNeurons
    by_prompt: dict[str, SuperNeurons]
    by_seed: dict[int, SuperNeurons]
    pred: xr.DataArray
    n_layers: int


def _pairs(name: str, fits: Mapping[K, SuperNeurons]) -> list[dict]:
    """Overlap rows ``<name>_a``, ``<name>_b`` over every ordered pair of selections."""
    rows = []
    for a, b in itertools.combinations_with_replacement(list(fits), 2):
        ov = overlap(fits[a], fits[b])
        for x, y in {(a, b), (b, a)}:
            rows.append({f"{name}_a": x, f"{name}_b": y, f"{name}_jaccard": ov["jaccard"],
                         f"{name}_spearman": ov["spearman"]})
    return rows


def select_cell(cfg: Config, inputs: CellInputs) -> Selections:
    """Reference, prompt and seed selections and test predictions of one (model, task)."""
    ref = _data.select(cfg, inputs["ref"].probe)
    prompts = inputs["prompts"]
    by_prompt = {prompts[0]: ref} | {p: _data.select(cfg, a)
                                     for p, a in inputs["by_prompt"].items()}
    by_seed = {s: ref if s == cfg.seed else _data.select(
        dataclasses.replace(cfg, seed=s), inputs["by_seed"][s]) for s in cfg.seeds}
    return Selections(ref, by_prompt, by_seed, ref.predict(inputs["ref"].test),
                      inputs["n_layers"])


def sn_rows(found: SuperNeurons, n_layers: int) -> list[dict]:
    """The top-k SNs of a selection: rank, id, site, layer, relative depth."""
    sel = found.selected
    return [{"rank": r, "sn_id": str(i), "sn_site": str(s), "sn_layer": int(la),
             "relative_depth": (int(la) + 1) / n_layers}
            for r, (i, s, la) in enumerate(zip(sel["id"].values, sel["site"].values,
                                               sel["layer"].values, strict=True))]


def seed_stability(cfg: Config, inputs: CellInputs) -> list[dict]:
    """Rows over (seed_a, seed_b): Jaccard of the seeds' stable sets; a seed's own expected
    bootstrap Jaccard on the diagonal (empty without ``stability_boot``)."""
    from sn_interp.probes import selection_stability
    from sn_interp.probes.stability import stable_jaccard

    if not cfg.stability_boot:
        return []
    probes = {s: inputs["ref"].probe if s == cfg.seed else inputs["by_seed"][s]
              for s in cfg.seeds}
    stabs = {s: selection_stability(a, n_boot=cfg.stability_boot, k=cfg.k, rule=cfg.rule,
                                    score=cfg.score, seed=s, progress=False)
             for s, a in probes.items()}
    return [{"seed_a": a, "seed_b": b, "seed_stable_jaccard": stable_jaccard(stabs[a], stabs[b]),
             "seed_expected_jaccard": stabs[a].attrs["expected_jaccard"] if a == b
             else float("nan")} for a in cfg.seeds for b in cfg.seeds]


def cell(cfg: Config, sels: Selections, inputs: CellInputs) -> xr.Dataset:
    """One (model, task) cell: dims prompt_a, prompt_b, seed_a, seed_b, rank, site."""
    from sn_interp.probes import evaluate

    prompts = inputs["prompts"]
    order = {"prompt_a": prompts, "prompt_b": prompts, "seed_a": list(cfg.seeds),
             "seed_b": list(cfg.seeds), "rank": list(range(cfg.k)), "site": list(ALL_SITES)}
    sns = sn_rows(sels.ref, sels.n_layers)
    sites = [r["sn_site"] for r in sns]
    acc = _data.accuracy_fields(evaluate(sels.pred, seed=cfg.seed))
    ds = xr.merge([
        frame_to_dataset(_pairs("prompt", sels.by_prompt), ("prompt_a", "prompt_b"), order),
        frame_to_dataset(_pairs("seed", sels.by_seed), ("seed_a", "seed_b"), order),
        *([frame_to_dataset(rows, ("seed_a", "seed_b"), order)]
          if (rows := seed_stability(cfg, inputs)) else []),
        frame_to_dataset(sns, ("rank",), order),
        frame_to_dataset([{"site": s, "site_count": sites.count(s)} for s in ALL_SITES],
                         ("site",), order)])
    return ds.assign({**dict(zip(("accuracy", "accuracy_low", "accuracy_high"), acc, strict=True)),
                      "n_layers": np.int64(inputs["n_layers"]), "family": inputs["family"]})


# ---- across tasks and models ---------------------------------------------------------------

def agreement(a: xr.DataArray, b: xr.DataArray, n_classes: int) -> dict[str, float]:
    """Fraction of shared samples where two prediction vectors agree, and Cohen's kappa."""
    from sklearn.metrics import cohen_kappa_score

    sa = pd.Series(a.values, index=a["sample_id"].values)
    sb = pd.Series(b.values, index=b["sample_id"].values)
    common = sa.index.intersection(sb.index)
    if common.empty:
        raise ValueError("the two models' test splits share no sample_id; they must be "
                         "the same task, prompt, seed, n and shots")
    x, y = sa.loc[common].to_numpy(), sb.loc[common].to_numpy()
    if len(np.unique(np.concatenate([x, y]))) < 2:
        kappa = float("nan")  # both constant and equal: chance agreement is 1
    else:
        kappa = float(cohen_kappa_score(x, y, labels=list(range(n_classes))))
    return {"agreement": float((x == y).mean()), "kappa": kappa}


def across_tasks(cfg: Config, sels: Mapping[tuple[str, str], Selections]) -> xr.Dataset:
    """Overlap of every pair of tasks' reference selections, per model."""
    tasks = list(cfg.tasks)
    rows = [{"model": m, **r} for m in cfg.models
            for r in _pairs("task", {t: sels[m, t].ref for t in tasks})]
    return frame_to_dataset(rows, ("model", "task_a", "task_b"),
                            {"model": list(cfg.models), "task_a": tasks, "task_b": tasks})


def across_models(cfg: Config, sels: Mapping[tuple[str, str], Selections]) -> xr.Dataset:
    """Depth KS statistic and prediction agreement for every ordered pair of models, per task."""
    from scipy.stats import ks_2samp

    rows = []
    for task in cfg.tasks:
        for ma, mb in itertools.product(cfg.models, repeat=2):
            a, b = sels[ma, task], sels[mb, task]
            ks: Any = ks_2samp(  # scipy's stub hides the result's fields
                [r["relative_depth"] for r in sn_rows(a.ref, a.n_layers)],
                [r["relative_depth"] for r in sn_rows(b.ref, b.n_layers)])
            rows.append({"task": task, "model_a": ma, "model_b": mb,
                         "depth_ks": float(ks.statistic), "depth_ks_pvalue": float(ks.pvalue),
                         **agreement(a.pred, b.pred, len(a.ref.class_names))})
    models = list(cfg.models)
    return frame_to_dataset(rows, ("task", "model_a", "model_b"),
                            {"task": list(cfg.tasks), "model_a": models, "model_b": models})


# ---- run and assemble ----------------------------------------------------------------------

def run(cfg: Config, loaded: _data.Loaded[CellInputs] | None = None) -> xr.Dataset:
    """All models and tasks as one Dataset (see the module docstring).

    Pure given ``loaded`` (the output of :func:`load`); without it, loads first.
    """
    loaded = load(cfg) if loaded is None else loaded
    sels, cells = {}, {}
    for key, inp in loaded.cells.items():
        inp = resident_inputs(inp)  # each split is read many times: from memory, not the store
        sels[key] = select_cell(cfg, inp)
        cells[key] = cell(cfg, sels[key], inp)
    ds = combine_cells(cells, models=cfg.models, tasks=cfg.tasks,
                       per_model=("n_layers", "family"),
                       order={"rank": list(range(cfg.k)), "site": list(ALL_SITES),
                              "seed_a": list(cfg.seeds), "seed_b": list(cfg.seeds)},
                       extra=[across_tasks(cfg, sels), across_models(cfg, sels)],
                       attrs={"study": cfg.study, "k": cfg.k, "shots": cfg.shots,
                              "rule": cfg.rule, "score": cfg.score, "seed": cfg.seed})
    ds["sn_layer"] = ds["sn_layer"].astype(np.int64)
    ds["site_count"] = ds["site_count"].astype(np.int64)
    for name, text in LONG_NAMES.items():
        ds[name].attrs["long_name"] = text
    return ds


LONG_NAMES = {
    "task_jaccard": "Jaccard index of the top-k SN ids", "prompt_jaccard":
    "Jaccard index of the top-k SN ids", "seed_jaccard": "Jaccard index of the top-k SN ids",
    "task_spearman": "Spearman correlation of neuron scores",
    "prompt_spearman": "Spearman correlation of neuron scores",
    "seed_spearman": "Spearman correlation of neuron scores",
    "relative_depth": "(layer + 1) / n_layers", "site_count": "top-k SNs at the site",
    "accuracy": "test accuracy of the top-k SN vote",
    "depth_ks": "two-sample KS statistic of SN relative depths",
    "agreement": "fraction of test samples where both models' SN votes agree",
    "kappa": "Cohen's kappa of the two models' SN votes",
}


# ---- tables and figures --------------------------------------------------------------------

def _upper(df: pd.DataFrame, a: str, b: str, order: Sequence[Hashable]) -> pd.DataFrame:
    """Rows with a before b in ``order`` (each unordered pair once, no diagonal)."""
    pos = {v: i for i, v in enumerate(order)}
    keep = df[a].map(pos.__getitem__) < df[b].map(pos.__getitem__)
    return df.loc[keep.to_numpy()].reindex(columns=df.columns)


def tables(result: xr.Dataset) -> dict[str, pd.DataFrame]:
    out = {}
    for kind in ("task", "prompt", "seed"):
        df = result[[f"{kind}_jaccard", f"{kind}_spearman"]].to_dataframe().reset_index()
        df = df.dropna(subset=[f"{kind}_jaccard"])
        out[f"within_{kind}s"] = _upper(df, f"{kind}_a", f"{kind}_b",
                                        list(result[f"{kind}_a"].values))
    pairs = result[["agreement", "kappa", "depth_ks", "depth_ks_pvalue"]].to_dataframe()
    pairs = _upper(pairs.reset_index(), "model_a", "model_b", list(result.model.values))
    acc = result.accuracy.to_series()
    pairs["accuracy_a"] = [acc[m, t] for m, t in zip(pairs.model_a, pairs.task, strict=True)]
    pairs["accuracy_b"] = [acc[m, t] for m, t in zip(pairs.model_b, pairs.task, strict=True)]
    out["across_models"] = pairs
    sns_ = result[["sn_id", "sn_site", "sn_layer", "relative_depth"]].to_dataframe()
    out["sn_depth"] = sns_.reset_index().dropna(subset=["relative_depth"])
    sites = result.site_count.to_dataframe().reset_index()
    out["sites"] = sites[sites.site_count > 0]
    if "seed_stable_jaccard" in result:  # stable SN sets of the seeds, vs resampling alone
        st = result[["seed_stable_jaccard", "seed_expected_jaccard"]].to_dataframe()
        out["seed_stability"] = st.reset_index().dropna(
            subset=["seed_stable_jaccard", "seed_expected_jaccard"], how="all")
    return out


def plot(result: xr.Dataset, ax=None):
    """Relative depth of every model's top-k SNs per task (a strip plot, hue = model)."""
    from sn_interp.plotting import depth_strips

    df = result[["relative_depth"]].to_dataframe().reset_index().dropna()
    return depth_strips(df, ax=ax)


def _within_figure(result: xr.Dataset, m: str, t: str):
    import matplotlib.pyplot as plt

    from sn_interp.plotting import COLUMN_WIDTH, matrix_heatmap, tidy_ticks

    r = result.sel(model=m, task=t)
    prompts = r.prompt_jaccard.dropna("prompt_a", how="all").dropna("prompt_b", how="all")
    fig, axes = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH, 2.5), layout="constrained")
    matrix_heatmap(prompts, ax=axes[0], label="Jaccard of top-k SN ids")
    axes[0].set(xlabel="prompt", ylabel="prompt", title="across prompts")
    matrix_heatmap(r.seed_jaccard, ax=axes[1], label="Jaccard of top-k SN ids")
    axes[1].set(xlabel="split seed", ylabel="split seed", title="across probe splits")
    for ax in axes:
        ax.title.set_fontsize(8)
        tidy_ticks(ax, rotation=30)
    fig.suptitle(f"{m} / {t}: overlap of SN selections", fontsize=8)
    return fig


def _tasks_figure(result: xr.Dataset, m: str):
    from sn_interp.plotting import overlap_pair

    r = result.sel(model=m)
    return overlap_pair(r.task_jaccard, r.task_spearman, xlabel="task", ylabel="task",
                        title=f"{m}: SN selections across tasks")


def figures(result: xr.Dataset) -> dict:
    """Within-model overlap matrices; relative depths and site distributions of all models."""
    from sn_interp.plotting import site_bars

    figs = {"relative_depth": plot(result).figure}
    sites = result.site_count.sum("task").to_dataframe().reset_index()
    figs["sites"] = site_bars(sites.rename(columns={"site_count": "count"})).figure
    for m in map(str, result.model.values):
        if result.sizes["task_a"] > 1:
            figs[f"tasks_{_name(m)}"] = _tasks_figure(result, m)
        for t in map(str, result.task.values):
            figs[f"within_{_name(m)}_{_name(t)}"] = _within_figure(result, m, t)
    return figs



main = make_main(ANALYSIS, Config, run, tables, figures, load=load)

if __name__ == "__main__":
    main()
