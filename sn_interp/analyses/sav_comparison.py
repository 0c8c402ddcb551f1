"""Do Super Neurons beat SAV heads, and with how many voters and how few examples?

For each model and task, SNs (single scalars) and SAV heads (attention-head vectors, cosine
nearest centroid) are fitted on the same few-shot probe split and tested on the same held-out
test split:

- test accuracy against ``k``, the number of voters (``--k-grid``; values above a method's
  number of candidates are NaN), with the probe split of ``--shots`` examples per class;
- test accuracy of the top-``--k`` vote against the probe size (``--shots-grid``, plus
  ``--shots``): each size is its own ``task.split(shots, seed)``. Splits of one seed are nested,
  so every probe split is a subset of the largest one and the test split of the largest one is
  disjoint from all of them: it is the one test set of every point (checked), and activations
  are extracted once, for the largest probe split and that test set. Sizes a task cannot
  provide (a class with no image left to test) are NaN;
- where each method's best feature lives: the layer (and id, probe score) of the best neuron
  and of the best head, per probe size.

Output dims: ``model``, ``task``, ``classifier`` (``sn``, ``sav``; not ``method``, which ``.sel``
would take for its own keyword), ``k`` (the k grid), ``shots`` (the shots grid with ``--shots``).
Variables: ``accuracy_by_k`` (+ ``_low``/``_high``, 95% bootstrap) over (model, task,
classifier, k); ``accuracy_by_shots`` (+ ``_low``/``_high``) and ``best_layer``,
``best_relative_depth``, ``best_id``, ``best_score`` over (model, task, classifier, shots);
``n_candidates`` over (model, classifier); ``n_test`` over (model, task); ``n_layers`` over
model; ``chance`` over task. Evidence at ``--shots`` (top-k vote): ``p_vs_zero_shot`` (exact
McNemar against the model's own answer on the same test items; ``_holm``: Holm across tasks),
``null_ceiling`` / ``p_null`` (the selection null of the SN top-k accuracy) over (model, task,
classifier); ``p_sn_vs_sav`` and ``zero_shot_accuracy`` over (model, task).

Run: ``python -m sn_interp.analyses.sav_comparison --model micro-llava --task digits``
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr
from jaxtyping import Float

from sn_interp.analyses import _data
from sn_interp.analyses._common import StudyConfig, make_main
from sn_interp.analyses._evidence import add_holm, cell_evidence
from sn_interp.analyses._result import Headline, cell_value, combine_cells, panel_figures

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sn_interp.models import VLM
    from sn_interp.probes._selection import Selection
    from sn_interp.sample import Sample
    from sn_interp.tasks import Task

log = logging.getLogger(__name__)
ANALYSIS = "sav_comparison"
CLASSIFIERS = ("sn", "sav")
LABELS = {"sn": "Super Neurons", "sav": "SAV heads"}


@dataclasses.dataclass(frozen=True)
class Config(StudyConfig):
    """Options of the sav_comparison analysis."""

    k_grid: tuple[int, ...] = (1, 2, 3, 5, 10, 20, 30, 50)
    """Numbers of voters (SNs or SAV heads) for accuracy vs k; each is capped at a method's number of candidates (NaN above it)."""
    shots_grid: tuple[int, ...] = (1, 2, 5, 10, 20)
    """Probe examples per class for accuracy vs shots (top-k vote, k = --k); --shots is added; sizes a task cannot provide are NaN."""
    zero_shot_mode: str = "first_token"
    """How the base model answers for the paired tests at --shots: first_token (one forward) or generate."""
    max_new_tokens: int = 8
    """Generation budget of the zero-shot answer (zero_shot_mode generate)."""
    n_perm: int = 200
    """Permutations of the selection null at --shots (its ceiling goes beside the SN accuracy; 0: skip)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("k_grid", "shots_grid"):
            grid = getattr(self, name)
            if not grid or min(grid) < 1:
                raise ValueError(f"{name} must be a non-empty list of integers >= 1, got {grid}")
        if self.zero_shot_mode not in ("generate", "first_token"):
            raise ValueError(f"zero_shot_mode must be generate or first_token, "
                             f"got {self.zero_shot_mode!r}")
        if self.n_perm < 0:
            raise ValueError(f"n_perm must be >= 0, got {self.n_perm}")

    @property
    def ks(self) -> list[int]:
        return sorted(set(self.k_grid))

    @property
    def shots_all(self) -> list[int]:
        return sorted(set(self.shots_grid) | {self.shots})


# ---- one (model, task) cell -------------------------------------------------------------------

def feasible_shots(task: Task, wanted: list[int], needed: int) -> list[int]:
    """The probe sizes ``task`` can provide while leaving every class an image to test."""
    counts = np.bincount(task.labels, minlength=len(task.class_names))
    top = int(counts.min()) - 1
    if needed > top:
        raise ValueError(f"task {task.name!r}: its smallest class has {counts.min()} images, "
                         f"too few for shots={needed} plus a test image; lower --shots or "
                         "raise --n")
    dropped = [s for s in wanted if s > top]
    if dropped:
        log.warning("%s: shots %s left out (the smallest class has %d images)", task.name,
                    dropped, counts.min())
    return [s for s in wanted if s <= top]


def probe_subset(acts: xr.Dataset, probe: Iterable[Sample]) -> xr.Dataset:
    """The rows of ``acts`` holding the samples of ``probe`` (a smaller split of one seed)."""
    ids = [s.sample_id for s in probe]
    index = {sid: i for i, sid in enumerate(acts["sample_id"].values.tolist())}
    missing = [sid for sid in ids if sid not in index]
    if missing:
        raise RuntimeError(f"probe samples {missing[:3]} are not in the largest probe split; "
                           "Task.split is expected to nest splits of one seed")
    return acts.isel(sample=sorted(index[sid] for sid in ids))


def vote_accuracy(sel: Selection, acts_test: xr.Dataset, ks: list[int], seed: int
                  ) -> Float[np.ndarray, "k 3"]:
    """(len(ks), 3) accuracy, low, high of the top-k vote of ``sel`` for each k (NaN if k > n).

    Equal to ``evaluate(sel.predict(acts_test, k=k))``, with one read of the voters' values.
    """
    from sn_interp.probes import evaluate
    from sn_interp.probes._selection import majority_vote

    n = sel.table.sizes[sel.dim]
    out = np.full((len(ks), 3), np.nan)
    usable = [k for k in ks if k <= n]
    if not usable:
        return out
    votes = sel.votes(acts_test, k=max(usable))
    template = votes.isel({sel.dim: 0}, drop=True).rename("pred")
    for i, k in enumerate(ks):
        if k <= n:
            pred = template.copy(data=majority_vote(votes.values[:, :k], len(sel.class_names)))
            out[i] = _data.accuracy_fields(evaluate(pred, seed=seed))
    return out


def fit(cfg: Config, acts_probe: xr.Dataset, n_heads: int,
        heads_probe: xr.Dataset | None = None) -> dict:
    """SNs and SAV heads fitted on one probe split, keyed by classifier.

    ``heads_probe`` holds ``z`` when ``acts_probe`` lacks it (hybrid-attention models).
    """
    from sn_interp.probes import find_sav_heads

    found = _data.select(dataclasses.replace(cfg, progress=False), acts_probe)
    heads = find_sav_heads(acts_probe if heads_probe is None else heads_probe,
                           k=min(cfg.k, n_heads), progress=False)
    return {"sn": found, "sav": heads}


def best_feature(sel: Selection, n_layers: int) -> tuple[float, float, str, float]:
    """(layer, relative depth, id, probe score) of the top-ranked voter."""
    top = sel.table.isel({sel.dim: 0})
    layer = int(top["layer"].values)
    return float(layer), (layer + 1) / n_layers, str(top["id"].values), float(top["score"])


def load_cell(cfg: Config, vlm: VLM, task_name: str) -> dict:
    """The largest probe split's and the test split's activations (stores) of one cell."""
    from sn_interp.tasks import load_task

    task = load_task(task_name, n=cfg.n, seed=cfg.seed)
    shots = feasible_shots(task, cfg.shots_all, cfg.shots)
    big = dataclasses.replace(cfg, shots=max(shots))
    probe_big, test = task.split(shots=big.shots, seed=cfg.seed, test_size=cfg.test_size)
    acts = _data.Acts(_data.acts(big, vlm, probe_big, "probe"), _data.acts(big, vlm, test, "test"))
    heads = _data.Acts(_data.head_acts(big, vlm, probe_big, "probe", acts.probe),
                       _data.head_acts(big, vlm, test, "test", acts.test))
    return {"task": task, "shots": shots, "acts": acts, "heads": heads, "test": test}


def load(cfg: Config) -> _data.Loaded:
    """The IO stage: load the models, extract or open every store."""
    return _data.load_cells(cfg, load_cell)


def evidence(cfg: Config, vlm: VLM, inputs: dict, fitted: dict, a_probe: xr.Dataset,
             tests: dict) -> xr.Dataset:
    """At --shots: McNemar of SN and SAV vs zero-shot and each other, SN null ceiling."""
    base = _data.zero_shot(cfg, vlm, inputs["test"], mode=cfg.zero_shot_mode,
                           max_new_tokens=cfg.max_new_tokens)
    preds = {"zero_shot": base.pred, **{n: sel.predict(tests[n]) for n, sel in fitted.items()},
             "sn_top1": fitted["sn"].predict(tests["sn"], k=1)}
    ev = cell_evidence(fitted["sn"], a_probe, tests["sn"], preds, n_perm=cfg.n_perm, n_boot=0,
                       seed=cfg.seed, null_of={"sn": "topk", "sn_top1": "top1"})
    y = np.asarray(tests["sn"]["label"].values)
    out = ev[["p_vs_zero_shot", "null_ceiling", "p_null"]].sel(classifier=list(CLASSIFIERS))
    top1 = ev.sel(classifier="sn_top1")
    out["p_top1_vs_zero_shot"] = ((), float(top1.p_vs_zero_shot),
                                  {"long_name": "exact McNemar p, best SN vs zero-shot"})
    out["null_ceiling_top1"] = ((), float(top1.null_ceiling),
                                {"long_name": "null ceiling of the best SN's accuracy"})
    out["p_sn_vs_sav"] = ((), float(ev.mcnemar_p.sel(classifier="sn", versus="sav")),
                          {"long_name": "exact McNemar p, SN top-k vs SAV top-k"})
    out["zero_shot_accuracy"] = ((), float(np.mean(base.pred.values == y)),
                                 {"long_name": f"zero-shot ({cfg.zero_shot_mode}) accuracy"})
    return out


def _fits_by_shots(cfg: Config, vlm: VLM, inputs: dict) -> tuple[dict, dict, xr.Dataset | None]:
    """Per probe size: each classifier's top-k accuracy and best feature; by k at --shots."""
    task, acts, heads = inputs["task"], inputs["acts"], inputs["heads"]
    # read many times below: from memory, not the store
    (a_big, a_test), (z_big, z_test) = _data.resident_pair(acts, heads)
    tests = {"sn": a_test, "sav": z_test}  # z on its own layers for hybrid-attention models
    test_ids = set(a_test["sample_id"].values.tolist())
    n_heads = _data.n_heads(vlm)
    by_shots: dict = {}
    by_k: dict = {}
    ev = None
    for s in inputs["shots"]:
        probe_s = task.split(shots=s, seed=cfg.seed, test_size=cfg.test_size)[0]
        a_probe = probe_subset(a_big, probe_s)
        if test_ids & set(a_probe["sample_id"].values.tolist()):
            raise RuntimeError(f"{task.name}: probe split of {s} shots overlaps the test split")
        fitted = fit(cfg, a_probe, n_heads,
                     None if z_big is a_big else probe_subset(z_big, probe_s))
        for name, sel in fitted.items():
            k = min(cfg.k, sel.table.sizes[sel.dim])
            by_shots[name, s] = (vote_accuracy(sel, tests[name], [k], cfg.seed)[0],
                                 best_feature(sel, vlm.dims.n_layers),
                                 sel.table.sizes[sel.dim])
        if s == cfg.shots:
            by_k = {name: vote_accuracy(sel, tests[name], cfg.ks, cfg.seed)
                    for name, sel in fitted.items()}
            ev = evidence(cfg, vlm, inputs, fitted, a_probe, tests)
    return by_shots, by_k, ev


def cell(cfg: Config, vlm: VLM, inputs: dict) -> xr.Dataset:
    """One (model, task) cell: dims (``classifier``, ``k``), (``classifier``, ``shots``)."""
    by_shots, by_k, ev = _fits_by_shots(cfg, vlm, inputs)
    shots, n_cls = cfg.shots_all, len(CLASSIFIERS)
    acc = np.full((n_cls, len(shots), 3), np.nan)
    best = np.full((n_cls, len(shots), 3), np.nan)
    ids = np.full((n_cls, len(shots)), "", dtype=object)
    cand = np.zeros(n_cls, np.int64)
    for (name, s), (value, feature, n_candidates) in by_shots.items():
        q, p = CLASSIFIERS.index(name), shots.index(s)
        acc[q, p] = value
        layer, depth, ids[q, p], score = feature
        best[q, p] = (layer, depth, score)
        cand[q] = n_candidates
    ks = np.stack([by_k[name] for name in CLASSIFIERS])  # (classifier, k, 3)
    long = {"accuracy_by_k": "test accuracy of the top-k vote",
            "accuracy_by_shots": f"test accuracy of the top-{cfg.k} vote"}
    data: dict[str, tuple[object, ...]] = {f"accuracy_by_k{sfx}": (("classifier", "k"), ks[..., i],
                                    {"long_name": long["accuracy_by_k"]} if not sfx else {})
            for i, sfx in enumerate(("", "_low", "_high"))}
    data.update({f"accuracy_by_shots{sfx}": (("classifier", "shots"), acc[..., i],
                                             {"long_name": long["accuracy_by_shots"]}
                                             if not sfx else {})
                 for i, sfx in enumerate(("", "_low", "_high"))})
    cs = ("classifier", "shots")
    data.update({
        "best_layer": (cs, best[..., 0], {"long_name": "layer of the best feature"}),
        "best_relative_depth": (cs, best[..., 1], {"long_name": "(best layer + 1) / n_layers"}),
        "best_score": (cs, best[..., 2], {"long_name": "probe accuracy of the best feature"}),
        "best_id": (cs, ids.astype(str), {"long_name": "best neuron / head"}),
        "n_candidates": ("classifier", cand, {"long_name": "candidate voters"}),
        "n_test": ((), np.int64(len(set(inputs["acts"].test["sample_id"].values.tolist()))),
                   {"long_name": "test samples"}),
        "n_layers": ((), np.int64(vlm.dims.n_layers)),
        "chance": ((), 1 / len(inputs["task"].class_names),
                   {"long_name": "1 / number of classes"})})
    return xr.merge([xr.Dataset(data, coords={
        "classifier": list(CLASSIFIERS),
        "k": ("k", np.array(cfg.ks, np.int64), {"long_name": "voters (k)"}),
        "shots": ("shots", np.array(shots, np.int64), {"long_name": "probe examples per class"})}),
        *([] if ev is None else [ev])])


def run(cfg: Config, loaded: _data.Loaded | None = None) -> xr.Dataset:
    """All (model, task) cells as one Dataset (see the module docstring).

    Pure given ``loaded`` (the output of :func:`load`); without it, loads first.
    """
    loaded = load(cfg) if loaded is None else loaded
    cells = {(m, t): cell(cfg, loaded.models[m], inp) for (m, t), inp in loaded.cells.items()}
    return add_holm(combine_cells(cells, models=cfg.models, tasks=cfg.tasks,
                                  per_model=("n_candidates", "n_layers"), per_task=("chance",),
                                  fill={"best_id": ""},
                                  attrs={"study": cfg.study, "k": cfg.k, "shots": cfg.shots,
                                         "rule": cfg.rule, "score": cfg.score,
                                         "zero_shot_mode": cfg.zero_shot_mode,
                                         "n_perm": cfg.n_perm}))


#: Headline columns (fallbacks when find_super_neurons did not run: same split when --shots
#: is the largest of the shots grid).
HEADLINE = (
    Headline("SAV", cell_value("accuracy_by_shots", classifier="sav", shots="{shots}")),
    Headline("SN best", cell_value("accuracy_by_k", classifier="sn", k=1)),
    Headline("SN best p", cell_value("p_top1_vs_zero_shot_holm")),
    Headline("SN best null", cell_value("null_ceiling_top1")),
    Headline("SN top-{k}", cell_value("accuracy_by_shots", classifier="sn", shots="{shots}")),
    Headline("SN top-{k} p", cell_value("p_vs_zero_shot_holm", classifier="sn")),
    Headline("SN top-{k} null", cell_value("null_ceiling", classifier="sn")),
    Headline("best SN layer", cell_value("best_layer", classifier="sn", shots="{shots}"),
             integer=True),
)


# ---- tables and figures -----------------------------------------------------------------------

def _long(result: xr.Dataset, var: str) -> pd.DataFrame:
    df = result[[var, var + "_low", var + "_high"]].to_dataframe().reset_index()
    df = df.rename(columns={var: "accuracy", var + "_low": "accuracy_low",
                            var + "_high": "accuracy_high"})
    return df.dropna(subset=["accuracy"])


def summary(result: xr.Dataset) -> pd.DataFrame:
    """One row per (model, task): SN and SAV top-k accuracy and their best feature's layer.

    ``k`` is capped per method at its number of candidates (``SAV k`` says where it was).
    """
    k, s = result.attrs["k"], result.attrs["shots"]
    rows = []
    for m in result.model.values:
        for t in result.task.values:
            r = result.sel(model=m, task=t, shots=s)
            row = {"model": m, "task": t, "shots": s}
            for q, label in (("sn", "SN"), ("sav", "SAV")):
                row[f"{label} k"] = min(k, int(result.n_candidates.sel(model=m, classifier=q)))
                row[f"{label} top-k"] = float(r.accuracy_by_shots.sel(classifier=q))
                row[f"{label} p vs zero-shot"] = float(r.p_vs_zero_shot_holm.sel(classifier=q))
                if q == "sn":
                    row["SN null ceiling"] = float(r.null_ceiling.sel(classifier=q))
                row[f"best {label}"] = str(r.best_id.sel(classifier=q).values)
                row[f"best {label} layer"] = int(r.best_layer.sel(classifier=q))
            row["SN vs SAV p"] = float(r.p_sn_vs_sav)
            row["zero-shot"] = float(r.zero_shot_accuracy)
            rows.append(row)
    return pd.DataFrame(rows)


def wide(result: xr.Dataset, var: str, dim: str) -> pd.DataFrame:
    """Accuracy with one column per ``dim`` value (``k`` or ``shots``), a row per classifier."""
    df = result[var].to_dataframe().reset_index()
    out = df.pivot_table(index=["model", "task", "classifier"], columns=dim, values=var,
                         sort=False, dropna=False).reset_index()
    out.columns = [f"{dim}={c}" if isinstance(c, int | np.integer) else c for c in out.columns]
    return out


def tables(result: xr.Dataset) -> dict[str, pd.DataFrame]:
    """summary; accuracy by k and by shots (wide); every point with its interval (long)."""
    best = result[["best_id", "best_layer", "best_relative_depth", "best_score"]] \
        .to_dataframe().reset_index()
    best = best.loc[(best.best_id != "").to_numpy()].astype({"best_layer": int})
    points = pd.concat([_long(result, "accuracy_by_k").assign(shots=result.attrs["shots"]),
                        _long(result, "accuracy_by_shots").assign(k=result.attrs["k"])],
                       keys=["k", "shots"], names=["varied", None]).reset_index(level=0)
    points = points.reindex(columns=["model", "task", "classifier", "varied", "k", "shots",
                                     "accuracy", "accuracy_low", "accuracy_high"])
    return {"summary": summary(result), "accuracy_by_k": wide(result, "accuracy_by_k", "k"),
            "accuracy_by_shots": wide(result, "accuracy_by_shots", "shots"),
            "intervals": points, "best_feature": best}


def _lines(df: pd.DataFrame, x: str, ax, xlabel: str, chance: float):
    import matplotlib.ticker

    from sn_interp.plotting import accuracy_lines

    df = df.assign(classifier=df["classifier"].map(LABELS.__getitem__))
    ax = accuracy_lines(df, x=x, hue="classifier", ax=ax, xlabel=xlabel, logx=True)
    ticks = sorted(df[x].unique())
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.axhline(chance, color="0.4", ls=":", lw=1, label="chance")
    ax.legend(fontsize=6, frameon=True, loc="lower right")
    return ax


def plot(result: xr.Dataset, ax=None, *, model: str | None = None, task: str | None = None,
         x: str = "k"):
    """Test accuracy of SNs and SAV heads against ``x`` (``k`` or ``shots``) for one cell."""
    m = model or str(result.model.values[0])
    t = task or str(result.task.values[0])
    var = "accuracy_by_k" if x == "k" else "accuracy_by_shots"
    df = _long(result.sel(model=m, task=t), var)
    if x == "k":
        label = f"voters k (probe: {result.attrs['shots']} per class)"
    else:
        label = f"probe examples per class (k = {result.attrs['k']})"
    ax = _lines(df, x, ax, label, float(result.chance.sel(task=t)))
    ax.set_title(f"{m} / {t}", fontsize=8)
    return ax


def figures(result: xr.Dataset) -> dict:
    """Per (model, task): accuracy vs k and accuracy vs shots side by side."""
    from sn_interp.plotting import COLUMN_WIDTH

    def draw(axes, m: str, t: str) -> None:
        plot(result, axes[0], model=m, task=t, x="k")
        plot(result, axes[1], model=m, task=t, x="shots")
        axes[1].set_ylabel("")

    return panel_figures(result, "sav_vs_sn", draw, figsize=(2 * COLUMN_WIDTH, 2.4), sharey=True)



main = make_main(ANALYSIS, Config, run, tables, figures, load=load)

if __name__ == "__main__":
    main()
