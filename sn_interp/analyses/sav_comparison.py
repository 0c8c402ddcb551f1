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
model; ``chance`` over task.

Run: ``python -m sn_interp.analyses.sav_comparison --model micro-llava --task digits``
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import xarray as xr

from sn_interp.analyses import _data
from sn_interp.analyses._common import StudyConfig, make_main
from sn_interp.analyses._common import file_name as _name

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

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("k_grid", "shots_grid"):
            grid = getattr(self, name)
            if not grid or min(grid) < 1:
                raise ValueError(f"{name} must be a non-empty list of integers >= 1, got {grid}")

    @property
    def ks(self) -> list[int]:
        return sorted(set(self.k_grid))

    @property
    def shots_all(self) -> list[int]:
        return sorted(set(self.shots_grid) | {self.shots})


# ---- one (model, task) cell -------------------------------------------------------------------

def feasible_shots(task, wanted: list[int], needed: int) -> list[int]:
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


def probe_subset(acts: xr.Dataset, probe) -> xr.Dataset:
    """The rows of ``acts`` holding the samples of ``probe`` (a smaller split of one seed)."""
    ids = [s.sample_id for s in probe]
    index = {sid: i for i, sid in enumerate(acts["sample_id"].values.tolist())}
    missing = [sid for sid in ids if sid not in index]
    if missing:
        raise RuntimeError(f"probe samples {missing[:3]} are not in the largest probe split; "
                           "Task.split is expected to nest splits of one seed")
    return acts.isel(sample=sorted(index[sid] for sid in ids))


def vote_accuracy(sel, acts_test: xr.Dataset, ks: list[int], seed: int) -> np.ndarray:
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


def fit(cfg: Config, acts_probe: xr.Dataset, n_heads: int) -> dict:
    """SNs and SAV heads fitted on one probe split, keyed by classifier."""
    from sn_interp.probes import find_sav_heads, find_super_neurons

    found = find_super_neurons(acts_probe, k=cfg.k, rule=cfg.rule, score=cfg.score,
                               seed=cfg.seed, progress=False)
    heads = find_sav_heads(acts_probe, k=min(cfg.k, n_heads), progress=False)
    return {"sn": found, "sav": heads}


def best_feature(sel, n_layers: int) -> tuple[float, float, str, float]:
    """(layer, relative depth, id, probe score) of the top-ranked voter."""
    top = sel.table.isel({sel.dim: 0})
    layer = int(top["layer"].values)
    return float(layer), (layer + 1) / n_layers, str(top["id"].values), float(top["score"])


def one(cfg: Config, vlm, task_name: str) -> dict:
    """Every number of one (model, task) cell."""
    from sn_interp.tasks import load_task

    task = load_task(task_name, n=cfg.n, seed=cfg.seed)
    shots = feasible_shots(task, cfg.shots_all, cfg.shots)
    big = dataclasses.replace(cfg, shots=max(shots))
    probe_big, test = task.split(shots=big.shots, seed=cfg.seed, test_size=cfg.test_size)
    a_big = _data.acts(big, vlm, probe_big, "probe")
    a_test = _data.acts(big, vlm, test, "test")
    test_ids = set(a_test["sample_id"].values.tolist())
    n_heads = vlm.dims.n_layers * vlm.dims.n_heads
    cell: dict = {"by_shots": {}, "best": {}, "n_test": len(test_ids),
                  "n_layers": vlm.dims.n_layers, "chance": 1 / len(task.class_names)}
    for s in shots:
        a_probe = probe_subset(a_big, task.split(shots=s, seed=cfg.seed,
                                                 test_size=cfg.test_size)[0])
        if test_ids & set(a_probe["sample_id"].values.tolist()):
            raise RuntimeError(f"{task_name}: probe split of {s} shots overlaps the test split")
        fitted = fit(cfg, a_probe, n_heads)
        for name, sel in fitted.items():
            k = min(cfg.k, sel.table.sizes[sel.dim])
            cell["by_shots"][name, s] = vote_accuracy(sel, a_test, [k], cfg.seed)[0]
            cell["best"][name, s] = best_feature(sel, vlm.dims.n_layers)
            cell["n_candidates", name] = sel.table.sizes[sel.dim]
        if s == cfg.shots:
            cell["by_k"] = {name: vote_accuracy(sel, a_test, cfg.ks, cfg.seed)
                            for name, sel in fitted.items()}
    return cell


# ---- all cells -> Dataset ---------------------------------------------------------------------

def run(cfg: Config) -> xr.Dataset:
    """All (model, task) cells as one Dataset (see the module docstring)."""
    cells = {(m, t): one(cfg, _data.vlm(cfg, m), t)
             for m in cfg.models for t in cfg.tasks}
    return assemble(cfg, cells)


def _by_k(cfg: Config, cells: dict) -> dict[str, np.ndarray]:
    models, tasks, ks = list(cfg.models), list(cfg.tasks), cfg.ks
    arr = np.full((len(models), len(tasks), len(CLASSIFIERS), len(ks), 3), np.nan)
    for (m, t), c in cells.items():
        for q, name in enumerate(CLASSIFIERS):
            arr[models.index(m), tasks.index(t), q] = c["by_k"][name]
    return {"accuracy_by_k" + sfx: arr[..., i] for i, sfx in enumerate(("", "_low", "_high"))}


def _by_shots(cfg: Config, cells: dict) -> dict[str, np.ndarray]:
    models, tasks, shots = list(cfg.models), list(cfg.tasks), cfg.shots_all
    shape = (len(models), len(tasks), len(CLASSIFIERS), len(shots))
    acc = np.full((*shape, 3), np.nan)
    best = np.full((*shape, 3), np.nan)
    ids = np.full(shape, "", dtype=object)
    for (m, t), c in cells.items():
        i, j = models.index(m), tasks.index(t)
        for (name, s), value in c["by_shots"].items():
            q, p = CLASSIFIERS.index(name), shots.index(s)
            acc[i, j, q, p] = value
            layer, depth, ids[i, j, q, p], score = c["best"][name, s]
            best[i, j, q, p] = (layer, depth, score)
    out = {"accuracy_by_shots" + sfx: acc[..., i]
           for i, sfx in enumerate(("", "_low", "_high"))}
    out.update({"best_layer": best[..., 0], "best_relative_depth": best[..., 1],
                "best_score": best[..., 2], "best_id": ids.astype(str)})
    return out


def assemble(cfg: Config, cells: dict[tuple[str, str], dict]) -> xr.Dataset:
    models, tasks = list(cfg.models), list(cfg.tasks)
    k_dims, s_dims = ("model", "task", "classifier", "k"), ("model", "task", "classifier", "shots")
    by_k, by_shots = _by_k(cfg, cells), _by_shots(cfg, cells)
    cand = np.array([[next(c["n_candidates", q] for (m2, _), c in cells.items() if m2 == m)
                      for q in CLASSIFIERS] for m in models], np.int64)
    n_test = np.array([[cells[m, t]["n_test"] for t in tasks] for m in models], np.int64)
    n_layers = [next(c["n_layers"] for (m2, _), c in cells.items() if m2 == m) for m in models]
    chance = [cells[models[0], t]["chance"] for t in tasks]
    long = {"accuracy_by_k": "test accuracy of the top-k vote",
            "accuracy_by_shots": f"test accuracy of the top-{cfg.k} vote",
            "best_layer": "layer of the best feature", "best_score": "probe accuracy of the "
            "best feature", "best_relative_depth": "(best layer + 1) / n_layers",
            "best_id": "best neuron / head"}
    data = {name: (k_dims, v) for name, v in by_k.items()}
    data.update({name: (s_dims, v) for name, v in by_shots.items()})
    data = {name: (*spec, {"long_name": long[name]} if name in long else {})
            for name, spec in data.items()}
    data.update({
        "n_candidates": (("model", "classifier"), cand, {"long_name": "candidate voters"}),
        "n_test": (("model", "task"), n_test, {"long_name": "test samples"}),
        "n_layers": ("model", np.array(n_layers, np.int64)),
        "chance": ("task", np.array(chance), {"long_name": "1 / number of classes"})})
    return xr.Dataset(
        data, coords={"model": models, "task": tasks, "classifier": list(CLASSIFIERS),
                      "k": ("k", np.array(cfg.ks, np.int64), {"long_name": "voters (k)"}),
                      "shots": ("shots", np.array(cfg.shots_all, np.int64),
                                {"long_name": "probe examples per class"})},
        attrs={"study": cfg.study, "k": cfg.k, "shots": cfg.shots, "rule": cfg.rule,
               "score": cfg.score})


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
                row[f"best {label}"] = str(r.best_id.sel(classifier=q).values)
                row[f"best {label} layer"] = int(r.best_layer.sel(classifier=q))
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
    best = best[best.best_id != ""].astype({"best_layer": int})
    points = pd.concat([_long(result, "accuracy_by_k").assign(shots=result.attrs["shots"]),
                        _long(result, "accuracy_by_shots").assign(k=result.attrs["k"])],
                       keys=["k", "shots"], names=["varied", None]).reset_index(level=0)
    points = points[["model", "task", "classifier", "varied", "k", "shots", "accuracy",
                     "accuracy_low", "accuracy_high"]]
    return {"summary": summary(result), "accuracy_by_k": wide(result, "accuracy_by_k", "k"),
            "accuracy_by_shots": wide(result, "accuracy_by_shots", "shots"),
            "intervals": points, "best_feature": best}


def _lines(df: pd.DataFrame, x: str, ax, xlabel: str, chance: float):
    import matplotlib.ticker

    from sn_interp.plotting import accuracy_lines

    df = df.assign(classifier=df["classifier"].map(LABELS))
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
    import matplotlib.pyplot as plt

    from sn_interp.plotting import COLUMN_WIDTH

    figs = {}
    for m in result.model.values:
        for t in result.task.values:
            fig, axes = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH, 2.4),
                                     layout="constrained", sharey=True)
            plot(result, axes[0], model=str(m), task=str(t), x="k")
            plot(result, axes[1], model=str(m), task=str(t), x="shots")
            axes[1].set_ylabel("")
            figs[f"sav_vs_sn_{_name(m)}_{_name(t)}"] = fig
    return figs



main = make_main(ANALYSIS, Config, run, tables, figures)

if __name__ == "__main__":
    main()
