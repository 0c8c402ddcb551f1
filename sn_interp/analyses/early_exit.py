"""How early can Super Neurons answer, how accurately, and how much faster than the model?

For each model and task, :func:`sn_interp.early_exit.sweep`: at each exit layer ``L`` SNs are
selected on the probe split among the neurons of layers ``<= L`` and run by an
:class:`~sn_interp.EarlyExitClassifier` (the model stops after layer ``L``) on the test split;
the base model answers the same test split itself (zero-shot) as the reference. With
``--vision`` one more exit point, ``exit_layer = -1``, selects among vision-tower neurons only.

The best exit point of a cell is the earliest exit whose test accuracy is within
``--tolerance`` of the sweep's best (chosen on the test split: an operating point to report,
not a held-out estimate). One :class:`~sn_interp.EarlyExitClassifier` per (model, task) is
saved there, under ``<out>/classifier_<model>_<task>/``, with its ``task_options``, so
``python -m sn_interp.predict --classifier <that dir> --task <task>`` reproduces it.

Output dims: ``model``, ``task``, ``exit_layer`` (the union over models; -1 is the vision exit;
NaN past a model's depth or off the swept grid). Variables over (model, task, exit_layer):
``accuracy`` (+ ``_low``/``_high``, 95% bootstrap), ``latency`` (s / sample), ``speedup``
(base latency / latency; latencies are medians of ``--timing-repeats`` repeats with the base
model and the exits interleaved, the speed-up the median of the per-repeat ratios), ``best_neuron``; over (model, task): ``base_accuracy`` (+ interval),
``base_latency``, ``best_exit_layer``, ``best_accuracy``, ``best_speedup``; ``n_layers`` over
model.

Run: ``python -m sn_interp.analyses.early_exit --model micro-llava --task digits --vision``
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from sn_interp.analyses import _data
from sn_interp.analyses._common import StudyConfig, make_main
from sn_interp.analyses._common import file_name as _name
from sn_interp.analyses._result import Headline, cell_value, combine_cells, model_task_cells

if TYPE_CHECKING:
    from sn_interp.models import VLM

log = logging.getLogger(__name__)
ANALYSIS = "early_exit"
SWEEP_VARS = ("accuracy", "accuracy_low", "accuracy_high", "latency", "speedup")
BASE_VARS = ("base_accuracy", "base_accuracy_low", "base_accuracy_high", "base_latency")


@dataclasses.dataclass(frozen=True)
class Config(StudyConfig):
    """Options of the early_exit analysis."""

    exit_layers: tuple[int, ...] | None = None
    """Exit layers to sweep (0-based; default: every layer of each model); layers past a model's depth are skipped."""
    vision: bool = False
    """Also try exiting before the language model: SNs among the vision tower's neurons only (exit_layer -1)."""
    tolerance: float = 0.01
    """Best exit point: the earliest exit whose test accuracy is within this of the sweep's best."""
    zero_shot_mode: str = "generate"
    """How the base model answers: generate (greedy text, mapped to a class) or first_token."""
    max_new_tokens: int = 5
    """Generation budget of the base model's answer (its latency includes generating these)."""
    timing_repeats: int = 5
    """Latency: repeats of the base model and every exit, interleaved; the speed-up is the median of the per-repeat ratios."""
    timing_samples: int = 32
    """Latency: test samples timed per repeat (accuracy always uses the whole test split)."""
    save_classifiers: bool = True
    """Save one EarlyExitClassifier per (model, task) at its best exit point under the out dir."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.zero_shot_mode not in ("generate", "first_token"):
            raise ValueError(f"zero_shot_mode must be generate or first_token, "
                             f"got {self.zero_shot_mode!r}")
        if self.exit_layers is not None and (not self.exit_layers or min(self.exit_layers) < 0):
            raise ValueError(f"exit_layers must be layers >= 0 (use --vision for the vision "
                             f"exit), got {self.exit_layers}")
        if self.timing_repeats < 1 or self.timing_samples < 1:
            raise ValueError(f"timing_repeats and timing_samples must be >= 1, got "
                             f"{self.timing_repeats} and {self.timing_samples}")
        if not 0 <= self.tolerance <= 1:
            raise ValueError(f"tolerance must be in [0, 1], got {self.tolerance}")


def layers_of(cfg: Config, n_layers: int) -> list[int]:
    """The exit layers swept on a model of ``n_layers`` layers."""
    if cfg.exit_layers is None:
        return list(range(n_layers))
    kept = sorted({la for la in cfg.exit_layers if la < n_layers})
    if not kept:
        raise ValueError(f"none of exit_layers {cfg.exit_layers} exists in a model of "
                         f"{n_layers} layers")
    return kept


def best_exit(sweep: xr.Dataset, tolerance: float) -> int:
    """The earliest exit layer whose accuracy is within ``tolerance`` of the best."""
    acc = sweep["accuracy"]
    ok = acc.exit_layer.values[(acc >= float(acc.max()) - tolerance - 1e-12).values]
    return int(ok.min())


def load_cell(cfg: Config, vlm: VLM, task: str) -> dict:
    """The probe and test samples of one (model, task) (the sweep extracts in memory)."""
    probe, test = _data.split(cfg, task)
    return {"task": task, "probe": probe, "test": test}


def load(cfg: Config) -> _data.Loaded:
    """The IO stage: load the models and draw every split."""
    return _data.load_cells(cfg, load_cell)


def cell(cfg: Config, vlm: VLM, inputs: dict) -> xr.Dataset:
    """The sweep of one (model, task) cell (dim ``exit_layer``), with its best exit point."""
    from sn_interp.early_exit import sweep

    ds = sweep(vlm, inputs["probe"], inputs["test"], layers=layers_of(cfg, vlm.dims.n_layers),
               k=cfg.k, rule=cfg.rule, score=cfg.score, vision=cfg.vision,
               batch_size=cfg.batch_size, zero_shot_mode=cfg.zero_shot_mode,
               max_new_tokens=cfg.max_new_tokens, repeats=cfg.timing_repeats,
               timing_samples=cfg.timing_samples, progress=cfg.progress)
    ds = ds.drop_vars(["latency_repeats", "base_latency_repeats"])  # medians are kept
    best = best_exit(ds, cfg.tolerance)
    at = ds.sel(exit_layer=best)
    log.info("%s / %s: best exit layer %d, accuracy %.3f (base %.3f), speed-up %.2fx",
             vlm.model_id, inputs["task"], best, float(at.accuracy),
             float(ds.base_accuracy), float(at.speedup))
    ds["best_neuron"].attrs["long_name"] = "best neuron at the exit"
    return ds.assign(
        best_exit_layer=((), np.int64(best), {"long_name": "best exit layer"}),
        best_accuracy=((), float(at.accuracy)),
        best_speedup=((), float(at.speedup), {"long_name": "speed-up at the best exit layer"}),
        n_layers=((), np.int64(vlm.dims.n_layers)))


def one(cfg: Config, vlm: VLM, task: str) -> xr.Dataset:
    """One (model, task) cell, loaded and computed (see :func:`cell`)."""
    return cell(cfg, vlm, load_cell(cfg, vlm, task))


def run(cfg: Config, loaded: _data.Loaded | None = None) -> xr.Dataset:
    """All (model, task) sweeps as one Dataset (see the module docstring).

    Pure given ``loaded`` (the output of :func:`load`); without it, loads first.
    """
    loaded = load(cfg) if loaded is None else loaded
    cells = {(m, t): cell(cfg, loaded.models[m], inp) for (m, t), inp in loaded.cells.items()}
    exits = sorted({int(e) for ds in cells.values() for e in ds.exit_layer.values})
    return combine_cells(
        cells, models=cfg.models, tasks=cfg.tasks, per_model=("n_layers",),
        fill={"best_neuron": ""}, order={"exit_layer": exits},
        attrs={"study": cfg.study, "k": cfg.k, "shots": cfg.shots, "rule": cfg.rule,
               "score": cfg.score, "vision": int(cfg.vision), "tolerance": cfg.tolerance,
               "zero_shot_mode": cfg.zero_shot_mode})


#: Headline columns: the early-exit operating point (and zero-shot as a fallback source).
HEADLINE = (
    Headline("zero-shot", cell_value("base_accuracy")),
    Headline("exit layer", cell_value("best_exit_layer"), integer=True,
             note="the SN early-exit classifier's chosen exit point (-1: vision tower only)"),
    Headline("early-exit accuracy", cell_value("best_accuracy"),
             note="its test accuracy"),
    Headline("speed-up", cell_value("best_speedup"),
             note="over the base model generating its answer"),
)


# ---- tables and figures -----------------------------------------------------------------------

def best_table(result: xr.Dataset) -> pd.DataFrame:
    """One row per (model, task): the best exit point next to the base model."""
    rows = []
    for m, t, r in model_task_cells(result):
        rows.append({"model": m, "task": t, "exit layer": int(r.best_exit_layer),
                     "layers": int(result.n_layers.sel(model=m)),
                     "SN accuracy": float(r.best_accuracy),
                     "base accuracy": float(r.base_accuracy),
                     "speed-up": float(r.best_speedup)})
    return pd.DataFrame(rows)


def latency_table(result: xr.Dataset) -> pd.DataFrame:
    """Latency (ms / sample) per exit layer, with the base model as the reference row."""
    rows = []
    for m, t, r in model_task_cells(result):
        rows.append({"model": m, "task": t, "exit layer": "base model",
                     "latency (ms/sample)": 1e3 * float(r.base_latency), "speed-up": 1.0,
                     "accuracy": float(r.base_accuracy)})
        for e in r.exit_layer.values:
            at = r.sel(exit_layer=e)
            if np.isfinite(float(at.latency)):
                rows.append({"model": m, "task": t, "exit layer": str(int(e)),
                             "latency (ms/sample)": 1e3 * float(at.latency),
                             "speed-up": float(at.speedup), "accuracy": float(at.accuracy)})
    return pd.DataFrame(rows)


def tables(result: xr.Dataset) -> dict[str, pd.DataFrame]:
    sweep = result[[*SWEEP_VARS, "best_neuron"]].to_dataframe().reset_index() \
        .dropna(subset=["accuracy"])
    return {"best_exit": best_table(result), "latency": latency_table(result), "sweep": sweep}


def plot(result: xr.Dataset, ax=None, *, model: str | None = None, task: str | None = None):
    """Accuracy vs exit layer (base model as a band) and speed-up on a second axis."""
    from sn_interp.plotting import early_exit_axes

    m = model or str(result.model.values[0])
    t = task or str(result.task.values[0])
    r = result.sel(model=m, task=t)
    df = r[list(SWEEP_VARS)].to_dataframe().reset_index().dropna(subset=["accuracy"])
    base = (float(r.base_accuracy), float(r.base_accuracy_low), float(r.base_accuracy_high))
    ax = early_exit_axes(df, base=base, ax=ax, best=int(r.best_exit_layer))
    ax.set_title(f"{m} / {t}", fontsize=8, pad=30)
    return ax


def figures(result: xr.Dataset) -> dict:
    """One accuracy/speed-up figure per (model, task)."""
    return {f"early_exit_{_name(m)}_{_name(t)}": plot(result, model=m, task=t).figure
            for m, t, _ in model_task_cells(result)}


# ---- saved classifiers ------------------------------------------------------------------------

def classifier_dir(folder: Path, model: str, task: str) -> Path:
    return Path(folder) / f"classifier_{_name(model)}_{_name(task)}"


def save_classifiers(cfg: Config, result: xr.Dataset, folder: Path) -> None:
    """One EarlyExitClassifier per (model, task) at its best exit, unless already saved."""
    if not cfg.save_classifiers:
        return
    for m, t, r in model_task_cells(result):
        path = classifier_dir(folder, m, t)
        stamp = {"config_digest": cfg.digest(), "exit_layer": int(r.best_exit_layer)}
        if (path / "analysis.json").exists() and \
                json.loads((path / "analysis.json").read_text()) == stamp:
            continue
        save_classifier(cfg, m, t, int(r.best_exit_layer), path,
                        expect=str(r.best_neuron.sel(exit_layer=int(r.best_exit_layer)).values))
        (path / "analysis.json").write_text(json.dumps(stamp) + "\n")


def save_classifier(cfg: Config, model: str, task: str, exit_layer: int, path: Path,
                    expect: str = "") -> Path:
    """Refit the sweep's SNs at ``exit_layer`` on the probe split and save the classifier."""
    from sn_interp.early_exit import EarlyExitClassifier
    from sn_interp.names import ALL_SITES, VISION_SITE
    from sn_interp.probes import find_super_neurons

    vlm = _data.vlm(cfg, model)
    probe, _ = _data.split(cfg, task)
    if exit_layer < 0:
        acts = _data.acts(cfg, vlm, probe, "probe", sites=(VISION_SITE.name,))
        cand: dict = {"sites": (VISION_SITE.name,)}
    else:
        acts = _data.acts(cfg, vlm, probe, "probe")
        cand = {"sites": ALL_SITES, "max_layer": exit_layer}
    found = find_super_neurons(acts, k=cfg.k, rule=cfg.rule, score=cfg.score, progress=False,
                               **cand)
    top = str(found.table["id"][0].item())
    if expect and top != expect:
        log.warning("%s / %s: refitted best neuron %s differs from the sweep's %s (float "
                    "ties); saving the refit", model, task, top, expect)
    clf = EarlyExitClassifier(vlm, found, batch_size=cfg.batch_size,
                              task_options={"n": cfg.n, "shots": cfg.shots, "seed": cfg.seed,
                                            "test_size": cfg.test_size})
    clf.save(path)
    log.info("saved %r to %s", clf, path)
    return path



extras = save_classifiers
main = make_main(ANALYSIS, Config, run, tables, figures, extras=extras, load=load)

if __name__ == "__main__":
    main()
