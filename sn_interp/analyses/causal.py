"""Does the model use its Super Neurons? Edit them in its own forward pass and watch its answer.

For each model and task, SNs are selected on the probe split (language-model sites); on test
samples, at the last prompt token (the position that emits the first answer token), the top-k
SNs (k in ``--k-grid``) are edited inside the model's forward pass (nnsight,
:func:`sn_interp.intervene.edited_logits`):

- ``mean``: each set to its probe-set mean (mean ablation);
- ``patch``: each set to its probe centroid of another class; the effect is averaged over
  the other classes (all of them, or ``--patch-classes`` of them, the same seeded choice of
  class offsets for every sample).

Control: the same edit on k random neurons drawn from the same (site, layer) blocks as the SNs
(as many per block, the SNs themselves excluded), ``--n-random`` seeded draws per k.

Effects on the model's own answer, per test sample: the *drop* of the first-answer-token
logit difference (correct class's answer token minus the best other class's; each class's
score is the highest logit among its answer's first tokens, as ``zero_shot(mode="first_token")``
reads them): unedited minus edited, so a positive drop means the edit pushes the model off the
correct answer; and the *flip* rate: how often the greedy first-token answer, mapped to a class,
changes. Means over test samples with 95% percentile bootstrap intervals (scipy); against the
control: the empirical p-value ``(1 + #{draws with effect >= SN effect}) / (1 + n_random)``.

Output dims: ``model``, ``task``, ``edit`` (mean, patch), ``k``, ``draw`` (control draws).

Run: ``python -m sn_interp.analyses.causal --model micro-llava --task digits``
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr
from jaxtyping import Float, Int

from sn_interp.analyses import _data
from sn_interp.analyses._common import StudyConfig, make_main
from sn_interp.analyses._result import Headline, combine_cells, panel_figures

if TYPE_CHECKING:
    from sn_interp.models import VLM
    from sn_interp.probes import SuperNeurons
    from sn_interp.sample import Sample

#: (site, layer) -> sorted flat unit indices of that block.
Blocks = dict[tuple[str, int], Int[np.ndarray, " unit"]]
#: (site, layer) -> the (sample, unit) values written into that block.
BlockValues = dict[tuple[str, int], Float[np.ndarray, "sample unit"]]

log = logging.getLogger(__name__)
ANALYSIS = "causal"
EDITS = ("mean", "patch")


@dataclasses.dataclass(frozen=True)
class Config(StudyConfig):
    """Options of the causal analysis."""

    k_grid: tuple[int, ...] = (1, 2, 5, 10, 20, 50)
    """Numbers of top SNs edited together (values above the candidate count are NaN)."""
    n_random: int = 20
    """Control draws per k: k random neurons from the SNs' own (site, layer) blocks (>= 20)."""
    edits: tuple[str, ...] = EDITS
    """Edits: mean (set to the probe mean) and/or patch (set to another class's probe centroid)."""
    patch_classes: int | None = None
    """Other classes patched per sample (None: all; fewer forwards on many-class tasks)."""
    max_test: int | None = None
    """Test samples edited (the first of the test split; None: all)."""
    n_boot: int = 1000
    """Bootstrap resamples of the 95% intervals."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.k_grid or min(self.k_grid) < 1:
            raise ValueError(f"k_grid must be integers >= 1, got {self.k_grid}")
        if self.n_random < 20:
            raise ValueError(f"n_random must be >= 20 control draws, got {self.n_random}")
        bad = [e for e in self.edits if e not in EDITS]
        if not self.edits or bad:
            raise ValueError(f"edits must be a non-empty subset of {EDITS}, got {self.edits}")
        for name in ("patch_classes", "max_test"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {v}")
        if self.n_boot < 100:
            raise ValueError(f"n_boot must be >= 100, got {self.n_boot}")

    @property
    def ks(self) -> list[int]:
        return sorted(set(self.k_grid))


# ---- the model's answer ----------------------------------------------------------------------

def answer_token_ids(vlm: VLM, sample: Sample) -> list[list[int]]:
    """Per class, the first tokens of its answer string (as ``zero_shot`` first_token reads)."""
    from sn_interp.probes.baseline import class_answer_strings, first_token_ids

    return [first_token_ids(vlm.tokenizer, a)
            for a in class_answer_strings(sample.class_names, sample.answer_format)]


def class_scores(logits: Float[np.ndarray, "sample vocab"], cands: list[list[int]]
                 ) -> Float[np.ndarray, "sample cls"]:
    """(sample, class): the highest logit among each class's answer tokens."""
    return np.stack([logits[:, ids].max(1) for ids in cands], axis=1)


def logit_diff(scores: Float[np.ndarray, "sample cls"], y: Int[np.ndarray, " sample"]
               ) -> Float[np.ndarray, " sample"]:
    """Correct class's score minus the best other class's, per sample."""
    rows = np.arange(len(y))
    other = scores.copy()
    other[rows, y] = -np.inf
    return scores[rows, y] - other.max(1)


class Runner:
    """Edited forwards over a fixed list of encoded test batches."""

    def __init__(self, vlm: VLM, samples: Sequence[Sample], batch_size: int) -> None:
        self.vlm = vlm
        self.batches = [(s, min(s + batch_size, len(samples)))
                        for s in range(0, len(samples), batch_size)]
        self.encs = [vlm.encode(samples[a:b]) for a, b in self.batches]
        self.cands = answer_token_ids(vlm, samples[0])

    def scores(self, blocks: Blocks | None = None,
               values: BlockValues | None = None) -> Float[np.ndarray, "sample cls"]:
        """(sample, class) answer scores with ``values[key]`` (sample, units) written."""
        from sn_interp.intervene import edited_logits

        if blocks and values is None:
            raise ValueError("editing blocks needs their values= (sample, units) per block")
        vals = values or {}
        out = []
        for (a, b), enc in zip(self.batches, self.encs, strict=True):
            edits = {key: (units, vals[key][a:b]) for key, units in (blocks or {}).items()}
            logits = edited_logits(self.vlm, enc, edits).numpy()
            out.append(class_scores(logits, self.cands))
        return np.concatenate(out)


# ---- edits -----------------------------------------------------------------------------------

class ProbeStats:
    """Probe-set mean and class centroids of any unit, one (site, layer) block read at a time."""

    def __init__(self, acts: xr.Dataset, n_classes: int) -> None:
        self.acts, self.n_classes = acts, n_classes
        self.y = np.asarray(acts["label"].values, np.int64)
        self._cache: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    def block(self, key: tuple[str, int]
              ) -> tuple[Float[np.ndarray, " unit"], Float[np.ndarray, "cls unit"]]:
        """(mean (unit,), centroids (class, unit)) of every unit of a block (float64)."""
        if key not in self._cache:
            from sn_interp.probes._data import unit_matrix

            x = np.asarray(unit_matrix(self.acts, *key, 1 << 30).compute(), np.float64)
            cent = np.stack([x[self.y == c].mean(0) for c in range(self.n_classes)])
            self._cache[key] = (x.mean(0), cent)
        return self._cache[key]


def edit_values(stats: ProbeStats, blocks: Blocks, edit: str, y: Int[np.ndarray, " sample"],
                offset: int = 0) -> BlockValues:
    """Per block, (sample, units) values: the probe mean, or the centroid of class y+offset."""
    out = {}
    for key, units in blocks.items():
        mean, cent = stats.block(key)
        if edit == "mean":
            out[key] = np.broadcast_to(mean[units], (len(y), len(units)))
        else:
            out[key] = cent[(y + offset) % stats.n_classes][:, units]
    return out


def sn_blocks(found: SuperNeurons, k: int) -> Blocks:
    """The top-k SNs grouped by (site, layer): sorted flat unit indices."""
    return found.requirements(k)


def random_blocks(vlm: VLM, blocks: Blocks, rng: np.random.Generator) -> Blocks:
    """As many random units per block as ``blocks`` holds, excluding those units."""
    out = {}
    for (site, layer), units in blocks.items():
        width = int(np.prod(vlm.dims.width(site)))
        pool = np.setdiff1d(np.arange(width), units)
        out[site, layer] = np.sort(rng.choice(pool, size=len(units), replace=False))
    return out


def effect(runner: Runner, stats: ProbeStats, blocks: Blocks, edit: str,
           y: Int[np.ndarray, " sample"], base: Float[np.ndarray, "sample cls"], offsets: list[int]
           ) -> tuple[Float[np.ndarray, " sample"], Float[np.ndarray, " sample"]]:
    """Per-sample logit-difference drop and flip (averaged over ``offsets`` for patch)."""
    base_ld, base_choice = logit_diff(base, y), base.argmax(1)
    drops, flips = [], []
    for off in (offsets if edit == "patch" else [0]):
        sc = runner.scores(blocks, edit_values(stats, blocks, edit, y, off))
        drops.append(base_ld - logit_diff(sc, y))
        flips.append((sc.argmax(1) != base_choice).astype(float))
    return np.mean(drops, 0), np.mean(flips, 0)


def mean_interval(x: Float[np.ndarray, " sample"], n_boot: int, seed: int) -> tuple[float, float, float]:
    """Mean and 95% percentile bootstrap interval (scipy.stats.bootstrap)."""
    from scipy.stats import bootstrap

    if np.ptp(x) == 0:
        return float(x[0]), float(x[0]), float(x[0])
    ci = bootstrap((x,), np.mean, n_resamples=n_boot, method="percentile",
                   random_state=seed).confidence_interval  # pyright: ignore[reportCallIssue]  (scipy's stub lacks random_state)
    return float(np.mean(x)), float(ci.low), float(ci.high)


def empirical_p(control: Float[np.ndarray, " draw"], observed: float) -> float:
    """``(1 + #{control >= observed}) / (1 + n)``."""
    return float((1 + np.sum(np.asarray(control) >= observed)) / (1 + len(control)))


# ---- one (model, task) cell ------------------------------------------------------------------

def load_cell(cfg: Config, vlm: VLM, task: str) -> dict:
    """The probe activations (store) and the test samples of one (model, task)."""
    probe, test = _data.split(cfg, task)
    return {"task": task, "a_probe": _data.acts(cfg, vlm, probe, "probe"),
            "test": list(test)[:cfg.max_test]}


def load(cfg: Config) -> _data.Loaded:
    """The IO stage: load the models, extract or open the probe stores."""
    return _data.load_cells(cfg, load_cell)


def one(cfg: Config, vlm: VLM, task: str) -> xr.Dataset:
    """One (model, task) cell, loaded and computed (see :func:`cell`)."""
    return cell(cfg, vlm, load_cell(cfg, vlm, task))


def cell(cfg: Config, vlm: VLM, inputs: dict) -> xr.Dataset:
    """Every number of one (model, task) cell, over (edit, k[, draw])."""
    from sn_interp.names import ALL_SITES
    from sn_interp.probes import find_super_neurons

    a_probe, test, task = inputs["a_probe"], inputs["test"], inputs["task"]
    found = find_super_neurons(a_probe, k=1, rule=cfg.rule, score=cfg.score, seed=cfg.seed,
                               sites=tuple(s for s in ALL_SITES if s in a_probe.data_vars),
                               progress=False)
    n_cand, n_cls = found.table.sizes["neuron"], len(found.class_names)
    y = np.array([s.label for s in test], np.int64)
    runner, stats = Runner(vlm, test, cfg.batch_size), ProbeStats(a_probe, n_cls)
    base = runner.scores()
    rng = np.random.default_rng(cfg.seed)
    offsets = list(rng.permutation(np.arange(1, n_cls))[:cfg.patch_classes or n_cls])
    shape = (len(cfg.edits), len(cfg.ks))
    sn_v = {n: np.full((*shape, 3), np.nan) for n in ("drop", "flip")}
    ctrl = {n: np.full((*shape, cfg.n_random), np.nan) for n in ("drop", "flip")}
    for j, k in enumerate(cfg.ks):
        if k > n_cand:
            continue
        blocks = sn_blocks(found, k)
        draws = [random_blocks(vlm, blocks, rng) for _ in range(cfg.n_random)]
        for i, edit in enumerate(cfg.edits):
            d, f = effect(runner, stats, blocks, edit, y, base, offsets)
            sn_v["drop"][i, j] = mean_interval(d, cfg.n_boot, cfg.seed)
            sn_v["flip"][i, j] = mean_interval(f, cfg.n_boot, cfg.seed)
            for r, rb in enumerate(draws):
                cd, cf = effect(runner, stats, rb, edit, y, base, offsets)
                ctrl["drop"][i, j, r], ctrl["flip"][i, j, r] = cd.mean(), cf.mean()
        log.info("%s / %s k=%d: SN drop %s, control %s", vlm.model_id, task, k,
                 np.round(sn_v["drop"][:, j, 0], 3), np.round(ctrl["drop"][:, j].mean(1), 3))
    return cell_dataset(cfg, sn_v, ctrl, base, y, found, n_cand)


def cell_dataset(cfg: Config, sn_v: dict, ctrl: dict, base: Float[np.ndarray, "sample cls"],
                 y: Int[np.ndarray, " sample"], found: SuperNeurons, n_cand: int) -> xr.Dataset:
    ek, ekd = ("edit", "k"), ("edit", "k", "draw")
    data = {}
    for name, what in (("drop", "logit-difference drop"), ("flip", "answer flip rate")):
        data[f"sn_{name}"] = (ek, sn_v[name][..., 0], {"long_name": f"SN {what}"})
        data[f"sn_{name}_low"] = (ek, sn_v[name][..., 1])
        data[f"sn_{name}_high"] = (ek, sn_v[name][..., 2])
        data[f"control_{name}"] = (ekd, ctrl[name], {"long_name": f"random-neuron {what}"})
        data[f"control_{name}_mean"] = (ek, ctrl[name].mean(-1))
        p = np.full(sn_v[name].shape[:2], np.nan)
        for idx in np.ndindex(p.shape):
            if not np.isnan(sn_v[name][idx][0]):
                p[idx] = empirical_p(ctrl[name][idx], sn_v[name][idx][0])
        data[f"p_{name}"] = (ek, p, {"long_name": f"empirical p of the SN {what} vs control"})
    data["base_logit_diff"] = ((), float(logit_diff(base, y).mean()))
    data["base_accuracy"] = ((), float((base.argmax(1) == y).mean()),
                             {"long_name": "first-answer-token accuracy, unedited"})
    data["n_test"] = ((), len(y))
    data["n_candidates"] = ((), n_cand)
    data["best_id"] = ((), str(found.table["id"][0].item()))
    return xr.Dataset(data, coords={"edit": list(cfg.edits), "k": cfg.ks,
                                    "draw": np.arange(cfg.n_random)})


def run(cfg: Config, loaded: _data.Loaded | None = None) -> xr.Dataset:
    """All (model, task) cells as one Dataset (see the module docstring).

    Pure given ``loaded`` (the output of :func:`load`); without it, loads first.
    """
    loaded = load(cfg) if loaded is None else loaded
    cells = {(m, t): cell(cfg, loaded.models[m], inp) for (m, t), inp in loaded.cells.items()}
    return combine_cells(cells, models=cfg.models, tasks=cfg.tasks,
                         attrs={"study": cfg.study, "rule": cfg.rule, "score": cfg.score,
                                "n_random": cfg.n_random, "shots": cfg.shots})


def _largest_k(var: str):
    """A headline value: ``var`` of the mean ablation at the cell's largest computed k."""
    def value(result: xr.Dataset, cell: Mapping[str, str], cfg: object) -> float:
        if var not in result or cell["model"] not in result.model.values \
                or cell["task"] not in result.task.values:
            return float("nan")
        r = result.sel(model=cell["model"], task=cell["task"])
        e = "mean" if "mean" in r.edit.values else str(r.edit.values[0])
        done = r.k.values[~np.isnan(r.sn_drop.sel(edit=e).values)]
        return float(r[var].sel(edit=e, k=done.max())) if len(done) else float("nan")
    return value


#: Headline columns: the mean ablation of the largest k against random neurons.
HEADLINE = (
    Headline("ablation drop", _largest_k("sn_drop"),
             note="drop of the first-answer-token logit difference when the top-k SNs (largest "
                  "k of the causal analysis) are mean-ablated at the answer position"),
    Headline("ablation p", _largest_k("p_drop"),
             note="empirical p of that drop against the same edit on random neurons of the same "
                  "blocks"),
)


# ---- tables and figures ----------------------------------------------------------------------

def effects_frame(result: xr.Dataset) -> pd.DataFrame:
    cols = ["sn_drop", "sn_drop_low", "sn_drop_high", "control_drop_mean", "p_drop",
            "sn_flip", "sn_flip_low", "sn_flip_high", "control_flip_mean", "p_flip"]
    df = result[cols].to_dataframe().reset_index().dropna(subset=["sn_drop"])
    return df.reindex(columns=["model", "task", "edit", "k", *cols])


def headline(result: xr.Dataset) -> pd.DataFrame:
    """Per (model, task): the mean-ablation drop and flip of the largest k, vs control."""
    rows = []
    for m in result.model.values:
        for t in result.task.values:
            r = result.sel(model=m, task=t)
            e = "mean" if "mean" in r.edit.values else str(r.edit.values[0])
            ks = r.k.values[~np.isnan(r.sn_drop.sel(edit=e).values)]
            if not len(ks):
                continue
            q = r.sel(edit=e, k=ks.max())
            rows.append({"model": m, "task": t, "edit": e, "k": int(ks.max()),
                         "SN drop": float(q.sn_drop), "control drop": float(q.control_drop_mean),
                         "p (drop)": float(q.p_drop), "SN flip": float(q.sn_flip),
                         "control flip": float(q.control_flip_mean),
                         "p (flip)": float(q.p_flip)})
    return pd.DataFrame(rows)


def tables(result: xr.Dataset) -> dict[str, pd.DataFrame]:
    base = result[["base_accuracy", "base_logit_diff", "n_test", "best_id"]] \
        .to_dataframe().reset_index()
    return {"headline": headline(result), "effects": effects_frame(result), "unedited": base}


def plot(result: xr.Dataset, ax=None, *, model: str | None = None, task: str | None = None,
         measure: str = "drop"):
    """SN effect vs k (with 95% interval) beside every control draw, per edit."""
    from sn_interp.plotting import effect_vs_k

    m = model or str(result.model.values[0])
    t = task or str(result.task.values[0])
    r = result.sel(model=m, task=t)
    sn_df = r[[f"sn_{measure}", f"sn_{measure}_low", f"sn_{measure}_high"]] \
        .to_dataframe().reset_index().rename(columns=lambda c: c.replace(f"sn_{measure}", "effect"))
    ctrl = r[f"control_{measure}"].to_dataframe().reset_index() \
        .rename(columns={f"control_{measure}": "effect"})
    label = {"drop": "logit-diff drop", "flip": "answer flip rate"}[measure]
    ax = effect_vs_k(sn_df.dropna(subset=["effect"]), ctrl.dropna(subset=["effect"]), ax=ax,
                     ylabel=label)
    if measure == "flip":
        ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"{m} / {t}", fontsize=8)
    return ax


def figures(result: xr.Dataset) -> dict:
    """Per (model, task): logit-difference drop and flip rate against k, SN vs control."""
    def draw(axes, m: str, t: str) -> None:
        plot(result, axes[0], model=m, task=t, measure="drop")
        plot(result, axes[1], model=m, task=t, measure="flip")

    return panel_figures(result, "effect", draw, figsize=(7, 2.4))


main = make_main(ANALYSIS, Config, run, tables, figures, load=load)

if __name__ == "__main__":
    main()
