"""Do Super Neurons survive a change of prompt or of image distribution?

For each model and task, on the same probe/test images:

(a) prompts: SNs selected on the probe split under template A are evaluated on the test
    split under every template B (activations differ by prompt, so each prompt's test split
    is extracted), giving a (prompt_fit x prompt_eval) accuracy matrix;
(b) shifts: SNs selected on the clean probe split (under the first prompt) are evaluated on
    each shifted test split and, where one exists, on the test split of the other domain
    with the same classes (digits <-> mnist); the drop is clean minus shifted accuracy;
(c) overlap: the selections are compared — Jaccard index of the top-k neuron-id sets and
    Spearman rank correlation of the full score vectors over the common neuron ids — for
    every pair of prompts and for clean vs each shift (selected on the shifted probe split).

Output variables (dims):
    prompt_accuracy, prompt_accuracy_low, prompt_accuracy_high, prompt_drop
        (model, task, prompt_fit, prompt_eval); drop = accuracy under prompt_fit itself
        minus accuracy under prompt_eval, same SNs.
    prompt_jaccard, prompt_spearman (model, task, prompt_a, prompt_b)
    shift_accuracy, shift_accuracy_low, shift_accuracy_high, shift_drop, shift_refit_accuracy,
        shift_jaccard, shift_spearman (model, task, condition); ``condition`` holds
        ``clean``, the shift names and ``other-domain`` (not named ``shift``, which is a
        Dataset method); refit = SNs selected on that condition's own probe split.
    other_domain (task): the other-domain task, or "" ; chance (task).
Cells a task does not have (another task's prompts or shifts) are NaN.

Run: ``python -m sn_interp.analyses.robustness --model micro-llava --task digits``
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple, TypedDict

import numpy as np
import pandas as pd
import xarray as xr

from sn_interp.analyses import _data
from sn_interp.analyses._common import StudyConfig, make_main
from sn_interp.analyses._common import file_name as _name
from sn_interp.analyses._data import check_names, resolve, task_meta
from sn_interp.analyses._overlap import jaccard, overlap, rank_correlation, top_ids  # noqa: F401  (re-exported)
from sn_interp.analyses._result import combine_cells, frame_to_dataset

if TYPE_CHECKING:
    from sn_interp.models import VLM
    from sn_interp.probes import SuperNeurons

log = logging.getLogger(__name__)
ANALYSIS = "robustness"
CLEAN, OTHER = "clean", "other-domain"
#: Tasks holding the same classes in another image distribution.
OTHER_DOMAIN: dict[str, str] = {"digits": "mnist", "mnist": "digits"}


@dataclasses.dataclass(frozen=True)
class Config(StudyConfig):
    """Options of the robustness analysis."""

    prompts: tuple[str, ...] = ()
    """Prompt template ids to compare (default: all of each task's templates); a task skips
    the ids it lacks. The first one is the prompt of the shift comparison."""
    shifts: tuple[str, ...] = ()
    """Image shifts to evaluate on (default: all of each task's shifts); a task skips the
    names it lacks."""
    other_domain: bool = True
    """Also evaluate on the other domain of the same classes where one exists (digits <-> mnist)."""
    stability_boot: int = 0
    """Bootstrap reselections per prompt (0: skip): Jaccard of the prompts' stable SN sets, beside each prompt's own expected bootstrap Jaccard."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stability_boot < 0 or self.stability_boot == 1:
            raise ValueError(f"stability_boot must be 0 or >= 2, got {self.stability_boot}")


class Fit(NamedTuple):
    """SNs selected on one probe split, and the activations of the matching test split."""

    found: SuperNeurons
    test: xr.Dataset


# ---- load stage: every store a cell needs ---------------------------------------------------

def other_domain_acts(cfg: Config, vlm: VLM, task: str, prompt: str,
                      class_names: tuple[str, ...]) -> _data.Acts | None:
    """The other domain's probe and test activations, or None when the task has none."""
    other = OTHER_DOMAIN.get(task)
    if other is None or not cfg.other_domain:
        return None
    meta = task_meta(other, cfg.n, cfg.seed)
    if tuple(meta.class_names) != tuple(class_names):
        raise ValueError(f"other domain {other!r} of {task!r} has the classes "
                         f"{list(meta.class_names)}, not {list(class_names)}")
    if prompt not in meta.prompts:
        log.warning("%s has no prompt %r; using its default %r", other, prompt, meta.prompt_id)
        prompt = meta.prompt_id
    return _data.split_acts(cfg, vlm, other, prompt=prompt)


class CellInputs(TypedDict):
    """What the load stage gives one (model, task) cell."""

    prompts: dict[str, _data.Acts]
    conditions: dict[str, _data.Acts]
    chance: float
    other: str


def load_cell(cfg: Config, vlm: VLM, task: str) -> CellInputs:
    """The activations of one (model, task) cell: per prompt, per shift, other domain."""
    meta = task_meta(task, cfg.n, cfg.seed)
    prompts = resolve(cfg.prompts, list(meta.prompts), "prompt", task)
    if not prompts:
        raise ValueError(f"task {task!r} has none of the prompts {list(cfg.prompts)}; "
                         f"it has {list(meta.prompts)}")
    shifts = resolve(cfg.shifts, list(meta.shifts), "shift", task)
    by_prompt = {p: _data.split_acts(cfg, vlm, task, prompt=p) for p in prompts}
    conditions = {s: _data.split_acts(cfg, vlm, task, prompt=prompts[0], shift=s)
                  for s in shifts}
    other = other_domain_acts(cfg, vlm, task, prompts[0], tuple(meta.class_names))
    if other is not None:
        conditions[OTHER] = other
    return {"prompts": by_prompt, "conditions": conditions,
            "chance": 1 / len(meta.class_names),
            "other": OTHER_DOMAIN.get(task, "") if cfg.other_domain else ""}


def load(cfg: Config) -> _data.Loaded[CellInputs]:
    """The IO stage: check the names, load the models, extract or open every store."""
    check_names(cfg, prompts=cfg.prompts, shifts=cfg.shifts)
    return _data.load_cells(cfg, load_cell)


# ---- computation --------------------------------------------------------------------------

def fit(cfg: StudyConfig, vlm: VLM, task: str, *, prompt: str | None,
        shift: str | None = None) -> Fit:
    """Select SNs on one probe split and extract the matching test split (load + compute)."""
    a = _data.split_acts(cfg, vlm, task, prompt=prompt, shift=shift)
    return Fit(_data.select(cfg, a.probe), a.test)


def _accuracy(cfg: Config, found: SuperNeurons, test: xr.Dataset) -> tuple[float, float, float]:
    from sn_interp.probes import evaluate

    return _data.accuracy_fields(evaluate(found.predict(test), seed=cfg.seed))


def prompt_stability(cfg: Config, probes: Mapping[str, xr.Dataset]) -> dict[str, xr.Dataset]:
    """Per prompt, the bootstrap selection stability of its probe split (empty: skipped)."""
    from sn_interp.probes import selection_stability

    if not cfg.stability_boot:
        return {}
    return {p: selection_stability(a, n_boot=cfg.stability_boot, k=cfg.k, rule=cfg.rule,
                                   score=cfg.score, seed=cfg.seed, progress=False)
            for p, a in probes.items()}


def _stable_columns(stabs: Mapping[str, xr.Dataset], a: str, b: str) -> dict[str, float]:
    from sn_interp.probes.stability import stable_jaccard

    if not stabs:
        return {}
    return {"prompt_stable_jaccard": stable_jaccard(stabs[a], stabs[b]),
            "prompt_expected_jaccard": stabs[a].attrs["expected_jaccard"] if a == b
            else float("nan")}


def prompt_records(cfg: Config, fits: Mapping[str, Fit],
                   stabs: Mapping[str, xr.Dataset] | None = None
                   ) -> tuple[list[dict], list[dict]]:
    """(accuracy rows over prompt_fit x prompt_eval, overlap rows over prompt_a x prompt_b).

    With ``stabs`` (:func:`prompt_stability`) the overlap rows also carry the Jaccard of the
    two prompts' stable sets and, on the diagonal, a prompt's own expected bootstrap Jaccard.
    """
    acc = {(a, b): _accuracy(cfg, fits[a].found, fits[b].test) for a in fits for b in fits}
    rows = [{"prompt_fit": a, "prompt_eval": b, "prompt_accuracy": v[0],
             "prompt_accuracy_low": v[1], "prompt_accuracy_high": v[2],
             "prompt_drop": acc[a, a][0] - v[0]} for (a, b), v in acc.items()]
    pairs = []
    for i, a in enumerate(fits):
        for b in list(fits)[i:]:
            ov = overlap(fits[a].found, fits[b].found)
            for x, y in {(a, b), (b, a)}:
                pairs.append({"prompt_a": x, "prompt_b": y, "prompt_jaccard": ov["jaccard"],
                              "prompt_spearman": ov["spearman"],
                              **_stable_columns(stabs or {}, x, y)})
    return rows, pairs


def shift_records(cfg: Config, clean: Fit, conditions: Mapping[str, Fit]) -> list[dict]:
    """One row per condition: clean, each shift, and the other domain where one exists."""
    base = _accuracy(cfg, clean.found, clean.test)
    rows = [{"condition": CLEAN, "shift_accuracy": base[0], "shift_accuracy_low": base[1],
             "shift_accuracy_high": base[2], "shift_drop": 0.0,
             "shift_refit_accuracy": base[0], **_prefixed(overlap(clean.found, clean.found))}]
    for name, cond in conditions.items():
        acc = _accuracy(cfg, clean.found, cond.test)
        rows.append({"condition": name, "shift_accuracy": acc[0], "shift_accuracy_low": acc[1],
                     "shift_accuracy_high": acc[2], "shift_drop": base[0] - acc[0],
                     "shift_refit_accuracy": _accuracy(cfg, cond.found, cond.test)[0],
                     **_prefixed(overlap(clean.found, cond.found))})
    return rows


def _prefixed(ov: dict[str, float]) -> dict[str, float]:
    return {f"shift_{k}": v for k, v in ov.items()}


def cell(cfg: Config, vlm: VLM, inputs: CellInputs) -> xr.Dataset:
    """One (model, task) cell: dims prompt_fit, prompt_eval, prompt_a, prompt_b, condition."""
    # every split is read many times below (selection, every prompt's test, stability draws)
    by_prompt = {p: a.resident() for p, a in inputs["prompts"].items()}
    fits = {p: Fit(_data.select(cfg, a.probe), a.test) for p, a in by_prompt.items()}
    conds = {c: Fit(_data.select(cfg, a.probe), a.test)
             for c, a in ((c, a.resident()) for c, a in inputs["conditions"].items())}
    stabs = prompt_stability(cfg, {p: a.probe for p, a in by_prompt.items()})
    matrix, pairs = prompt_records(cfg, fits, stabs)
    shift_rows = shift_records(cfg, next(iter(fits.values())), conds)
    prompts = list(fits)
    order = {"prompt_fit": prompts, "prompt_eval": prompts, "prompt_a": prompts,
             "prompt_b": prompts, "condition": [CLEAN, *conds]}
    ds = xr.merge([frame_to_dataset(matrix, ("prompt_fit", "prompt_eval"), order),
                   frame_to_dataset(pairs, ("prompt_a", "prompt_b"), order),
                   frame_to_dataset(shift_rows, ("condition",), order)])
    return ds.assign(other_domain=inputs["other"],
                     chance=((), inputs["chance"], {"long_name": "1 / number of classes"}))


def one(cfg: Config, vlm: VLM, task: str) -> xr.Dataset:
    """One (model, task) cell, loaded and computed (see :func:`cell`)."""
    return cell(cfg, vlm, load_cell(cfg, vlm, task))


def run(cfg: Config, loaded: _data.Loaded[CellInputs] | None = None) -> xr.Dataset:
    """All (model, task) cells as one Dataset (see the module docstring).

    Pure given ``loaded`` (the output of :func:`load`); without it, loads first.
    """
    loaded = load(cfg) if loaded is None else loaded
    cells = {(m, t): cell(cfg, loaded.models[m], inp) for (m, t), inp in loaded.cells.items()}
    return assemble(cfg, cells)


def assemble(cfg: Config, cells: Mapping[tuple[str, str], xr.Dataset]) -> xr.Dataset:
    """The cells over (model, task); prompts in first-seen order, other-domain last."""
    conds = [c for ds in cells.values() for c in ds["condition"].values.tolist()]
    conditions = list(dict.fromkeys(c for c in conds if c != OTHER)) + (
        [OTHER] if OTHER in conds else [])
    ds = combine_cells(cells, models=cfg.models, tasks=cfg.tasks,
                       per_task=("other_domain", "chance"), order={"condition": conditions},
                       attrs={"study": cfg.study, "k": cfg.k, "shots": cfg.shots,
                              "rule": cfg.rule, "score": cfg.score,
                              "shift_prompt": "first prompt of each task"})
    for name, text in LONG_NAMES.items():
        if name in ds:  # the stability columns exist only with stability_boot
            ds[name].attrs["long_name"] = text
    return ds


LONG_NAMES = {
    "prompt_accuracy": "test accuracy (SNs selected under prompt_fit, tested under prompt_eval)",
    "prompt_drop": "accuracy under prompt_fit minus under prompt_eval",
    "prompt_jaccard": "Jaccard index of the top-k SN ids",
    "prompt_spearman": "Spearman correlation of neuron scores",
    "prompt_stable_jaccard": "Jaccard index of the stable SN sets (bootstrap frequency >= 0.5)",
    "prompt_expected_jaccard": "expected Jaccard of two bootstrap draws under one prompt",
    "shift_accuracy": "test accuracy of clean-selected SNs",
    "shift_drop": "clean minus shifted test accuracy",
    "shift_refit_accuracy": "test accuracy of SNs selected on the shifted probe split",
    "shift_jaccard": "Jaccard index of the top-k SN ids (clean vs shifted)",
    "shift_spearman": "Spearman correlation of neuron scores (clean vs shifted)",
}


# ---- tables and figures -------------------------------------------------------------------

def summary(result: xr.Dataset) -> pd.DataFrame:
    """One row per (model, task): in-prompt and cross-prompt accuracy, overlaps, worst shift."""
    rows = []
    for m in result.model.values:
        for t in result.task.values:
            r = result.sel(model=m, task=t)
            acc = r.prompt_accuracy.dropna("prompt_fit", how="all").dropna("prompt_eval", how="all")
            diag = np.diag(acc.values)
            off = ~np.eye(len(diag), dtype=bool)
            jac = r.prompt_jaccard.dropna("prompt_a", how="all").dropna("prompt_b", how="all")
            drops = r.shift_drop.dropna("condition").drop_sel(condition=CLEAN)
            worst = str(drops.idxmax("condition").values) if drops.size else ""
            rows.append({"model": m, "task": t, "in-prompt acc": float(diag.mean()),
                         "cross-prompt acc": float(acc.values[off].mean()) if off.any() else np.nan,
                         "prompt Jaccard": float(jac.values[off].mean()) if off.any() else np.nan,
                         "clean acc": float(r.shift_accuracy.sel(condition=CLEAN)),
                         "worst shift": worst,
                         "worst drop": float(drops.max()) if drops.size else np.nan})
    return pd.DataFrame(rows)


def tables(result: xr.Dataset) -> dict[str, pd.DataFrame]:
    matrix = result[["prompt_accuracy", "prompt_accuracy_low", "prompt_accuracy_high",
                     "prompt_drop"]].to_dataframe().reset_index().dropna()
    stable = [v for v in ("prompt_stable_jaccard",) if v in result]
    pairs = result[["prompt_jaccard", "prompt_spearman", *stable]].to_dataframe().reset_index()
    pairs = pairs.dropna(subset=["prompt_jaccard"])
    keep = (pairs.prompt_a.map(list(result.prompt_a.values).index)
            < pairs.prompt_b.map(list(result.prompt_b.values).index))
    pairs = pairs.loc[keep.to_numpy()].reindex(columns=pairs.columns)
    shift_vars = [v for v in result.data_vars if result[v].dims == ("model", "task", "condition")]
    shifts = result[shift_vars].to_dataframe().reset_index().dropna(subset=["shift_accuracy"])
    out = {"summary": summary(result), "prompt_matrix": matrix, "prompt_overlap": pairs,
           "shift": shifts}
    if "prompt_expected_jaccard" in result:  # each prompt's own bootstrap overlap
        own = result.prompt_expected_jaccard.to_dataframe().reset_index().dropna()
        out["prompt_stability"] = own[own.prompt_a == own.prompt_b] \
            .rename(columns={"prompt_a": "prompt"}).drop(columns="prompt_b")
    return out


def plot(result: xr.Dataset, ax=None, *, model: str | None = None, task: str | None = None):
    """The (prompt_fit x prompt_eval) accuracy matrix of one model and task (default: first)."""
    from sn_interp.plotting import matrix_heatmap, tidy_ticks

    m = model or str(result.model.values[0])
    t = task or str(result.task.values[0])
    da = _square(result.prompt_accuracy.sel(model=m, task=t))
    ax = matrix_heatmap(da, ax=ax, label="test accuracy")
    ax.set(xlabel="prompt at test", ylabel="prompt at SN selection")
    tidy_ticks(ax, rotation=30)
    ax.set_title(f"{m} / {t}", fontsize=8)
    return ax


def _square(da: xr.DataArray) -> xr.DataArray:
    """A 2-D matrix without the rows and columns a task does not have."""
    return da.dropna(da.dims[0], how="all").dropna(da.dims[1], how="all")


def _overlap_figure(result: xr.Dataset, m: str, t: str):
    from sn_interp.plotting import overlap_pair

    r = result.sel(model=m, task=t)
    return overlap_pair(_square(r.prompt_jaccard), _square(r.prompt_spearman),
                        xlabel="prompt", ylabel="prompt",
                        title=f"{m} / {t}: SN selections under two prompts")


def _shift_drop_figure(result: xr.Dataset, m: str):
    from sn_interp.plotting import drop_bars

    r = result.sel(model=m).drop_sel(condition=CLEAN)
    drops = r.shift_drop.to_dataframe().reset_index().dropna(subset=["shift_drop"])
    ax = drop_bars(drops, x="condition", hue="task", value="shift_drop",
                   ylabel="accuracy drop (clean − shifted)")
    ax.set_xticks(ax.get_xticks(), [t.get_text() for t in ax.get_xticklabels()], rotation=30,
                  ha="right", rotation_mode="anchor")
    ax.set_title(f"{m}: clean-selected SNs on shifted images", fontsize=8)
    return ax.figure


def _shift_overlap_figure(result: xr.Dataset, m: str):
    from sn_interp.plotting import overlap_pair

    r = result.sel(model=m).drop_sel(condition=CLEAN)
    return overlap_pair(r.shift_jaccard, r.shift_spearman,
                        xlabel="image condition (its own selection vs the clean one)",
                        ylabel="task", height=1.6 + 0.35 * r.sizes["task"], wrap=True,
                        title=f"{m}: overlap of clean and shifted SN selections")


def figures(result: xr.Dataset) -> dict:
    """Prompt matrix and prompt overlap per (model, task); shift drops and overlap per model."""
    figs = {}
    for m in map(str, result.model.values):
        for t in map(str, result.task.values):
            figs[f"prompt_matrix_{_name(m)}_{_name(t)}"] = plot(result, model=m, task=t).figure
            figs[f"prompt_overlap_{_name(m)}_{_name(t)}"] = _overlap_figure(result, m, t)
        if result.sizes["condition"] > 1:
            figs[f"shift_drop_{_name(m)}"] = _shift_drop_figure(result, m)
            figs[f"shift_overlap_{_name(m)}"] = _shift_overlap_figure(result, m)
    return figs



main = make_main(ANALYSIS, Config, run, tables, figures, load=load)

if __name__ == "__main__":
    main()
