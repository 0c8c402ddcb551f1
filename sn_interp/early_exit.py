"""Super Neurons as a deployable classifier that runs the model only as far as it needs.

:class:`EarlyExitClassifier` encodes the samples, runs the vision tower and the language model
up to the deepest (site, layer) its selection reads, slices out just the selected units at the
last prompt token, and stops the forward pass there: no later decoder layer, no later part of
that layer, no final norm, no LM head, no decoding. Its predictions equal
``found.predict(sn.extract(vlm, samples, sites=found.sites, layers=found.layers))``.

:func:`sweep` measures accuracy and latency against the exit layer, next to the base model
answering on its own.

Example:
    >>> import sn_interp as sn
    >>> vlm = sn.load_model("tiny-llava")
    >>> probe, test = sn.load_task("shapes-color", n=60).split(shots=5, seed=0)
    >>> found = sn.find_super_neurons(sn.extract(vlm, probe, progress=False), k=3, max_layer=0)
    >>> sn.EarlyExitClassifier(vlm, found).predict(test).dims   # (sample,) over the test set
    ('sample',)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import xarray as xr
from jaxtyping import Float
from tqdm.auto import tqdm

from sn_interp import __version__
from sn_interp.capture import capture
from sn_interp.extraction import _check_samples
from sn_interp.models.vlm import VLM
from sn_interp.probes import SAVHeads, SuperNeurons
from sn_interp.probes._checks import (
    ClassifierFileError,
    check_compatible,
    read_json,
    sha256_of,
    verify_checksum,
)
from sn_interp.probes._selection import Selection, _meta_digest
from sn_interp.sample import Sample, sample_coords

log = logging.getLogger(__name__)
K = TypeVar("K")  # what interleaved_latency's callables are keyed by

_KINDS = {SuperNeurons.kind: SuperNeurons, SAVHeads.kind: SAVHeads}


class EarlyExitClassifier:
    """Classify samples from a selection's neurons, running the model only up to them.

    Args:
        vlm: The model the selection was found on.
        found: A :class:`~sn_interp.probes.SuperNeurons` or :class:`~sn_interp.probes.SAVHeads`.
        batch_size: Samples per forward pass.
        k: Number of top voters to use (default: the selection's ``k``).
        task_options: How the probe split was drawn (``n``, ``shots``, ``seed``), saved with
            the classifier so ``python -m sn_interp.predict --task`` re-draws the same split.

    Example:
        >>> import sn_interp as sn
        >>> vlm = sn.load_model("tiny-llava")
        >>> probe, test = sn.load_task("shapes-color", n=80).split(shots=5)
        >>> found = sn.find_super_neurons(sn.extract(vlm, probe), k=5, max_layer=0)
        >>> clf = sn.EarlyExitClassifier(vlm, found)
        >>> pred = clf.predict(test)          # runs decoder layer 0 only
        >>> float((pred == pred.label).mean()) >= 0
        True
    """

    def __init__(self, vlm: VLM, found: Selection, *, batch_size: int = 8,
                 k: int | None = None, task_options: dict | None = None) -> None:
        if not isinstance(found, Selection):
            raise TypeError(f"found must be a SuperNeurons or SAVHeads, got "
                            f"{type(found).__name__}")
        _check_model(vlm, found.attrs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.vlm, self.found, self.batch_size = vlm, found, batch_size
        self.k = found.k if k is None else int(k)
        self.task_options = dict(task_options or {})
        self.units = found.requirements(self.k)

    @property
    def exit_layer(self) -> int:
        """The last decoder layer that runs (-1: the language model does not run at all)."""
        return max((layer for site, layer in self.units if site != "vision_resid_post"),
                   default=-1)

    def predict(self, samples: Iterable[Sample], *, progress: bool = False) -> xr.DataArray:
        """Class indices over ``sample`` (named ``pred``, with the label coords)."""
        samples = _check_samples(samples)
        classes = {s.class_names for s in samples if s.class_names}
        if len(classes) > 1:
            raise ValueError("samples come from tasks with different class lists; predict each "
                             "task separately")
        self.found.check_inputs({}, "samples", next(iter(classes), None))
        preds = []
        starts = range(0, len(samples), self.batch_size)
        for start in tqdm(starts, desc="early exit", unit="batch", disable=not progress):
            batch = samples[start:start + self.batch_size]
            reads = capture(self.vlm, self.vlm.encode(batch), list(self.units),
                            units=self.units)
            values = {key: value.float().numpy() for key, value in reads.items()}
            preds.append(self.found.predict_values(values, k=self.k))
        pred = xr.DataArray(np.concatenate(preds).astype(np.int64), dims=("sample",),
                            coords=sample_coords(samples), name="pred")
        pred.attrs["class_names"] = json.dumps(list(self.found.class_names))
        pred.attrs["exit_layer"] = self.exit_layer
        return pred

    # ---- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``classifier.json`` and the selection (JSON + netCDF) under ``path``."""
        path = Path(path)
        self.found.save(path / "selection")
        info = {"format": "sn_interp.EarlyExitClassifier", "version": 1,
                "kind": self.found.kind, "k": self.k, "batch_size": self.batch_size,
                "exit_layer": self.exit_layer, "sn_interp_version": __version__,
                "model_id": self.vlm.model_id, "model_revision": self.vlm.revision,
                "family": self.vlm.family, "task_options": self.task_options,
                **{key: self.found.attrs.get(key, "") for key in
                   ("task", "prompt_template", "answer_format", "class_names")}}
        info["sha256"] = {name: sha256_of(path / "selection" / name)
                          for name in ("meta.json", "table.nc")}
        info["sha256"]["classifier.json"] = _meta_digest(info)
        (path / "classifier.json").write_text(json.dumps(info, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, vlm: VLM | None = None) -> EarlyExitClassifier:
        """Read a classifier; load its model unless ``vlm`` is given (then it must match).

        Refuses, with one line naming the file, a classifier whose files are missing,
        edited, truncated or hold NaN parameters.
        """
        path = Path(path)
        if not (path / "classifier.json").exists():
            raise FileNotFoundError(f"{path} is not a saved EarlyExitClassifier "
                                    "(no classifier.json); save one with clf.save(dir)")
        info = cls.info(path)
        for name, digest in (info.get("sha256") or {}).items():
            if name == "classifier.json":
                continue
            verify_checksum(path / "selection" / name, digest, "EarlyExitClassifier")
        found = _KINDS[info["kind"]].load(path / "selection")
        if vlm is None:
            from sn_interp.models import load_model

            vlm = load_model(info["model_id"])
        _check_model(vlm, {"model_id": info["model_id"],
                           "model_revision": info["model_revision"]})
        return cls(vlm, found, batch_size=info["batch_size"], k=info["k"],
                   task_options=info.get("task_options"))

    @staticmethod
    def info(path: str | Path) -> dict:
        """The saved metadata (model, task, prompt, classes) without loading anything."""
        file = Path(path) / "classifier.json"
        info = read_json(file, "EarlyExitClassifier", {
            "kind": str, "k": int, "batch_size": int, "model_id": str, "model_revision": str})
        raw = info.get("sha256")
        sums: dict[str, str] = raw if isinstance(raw, dict) else {}
        if sums.get("classifier.json") and sums["classifier.json"] != _meta_digest(info):
            raise ClassifierFileError(f"{file} was edited since it was saved (its checksum "
                                      "differs); save the EarlyExitClassifier again")
        if info["kind"] not in _KINDS:
            raise ClassifierFileError(f"{file}: kind {info['kind']!r} is not one of "
                                      f"{sorted(_KINDS)}; the file was edited")
        if info["batch_size"] < 1:
            raise ClassifierFileError(f"{file}: batch_size {info['batch_size']} is not >= 1; "
                                      "the file was edited")
        return info

    def __repr__(self) -> str:
        return (f"EarlyExitClassifier({self.vlm.model_id!r}, {type(self.found).__name__}, "
                f"k={self.k}, exit_layer={self.exit_layer})")


def _check_model(vlm: VLM, attrs: dict) -> None:
    """Refuse a model other than the one the selection was fitted on (id, revision, widths)."""
    d = vlm.dims
    have = {"model_id": vlm.model_id, "model_revision": vlm.revision, "n_layers": d.n_layers,
            "n_heads": d.n_heads, "d_head": d.d_head, "d_model": d.d_model, "d_mlp": d.d_mlp,
            "n_vision_layers": d.n_vision_layers}
    check_compatible(attrs, (), have, "the model's activations")


def timed_predict(clf: EarlyExitClassifier, samples: Sequence[Sample]) -> tuple[xr.DataArray,
                                                                                 float]:
    """Predictions and wall-clock seconds per sample.

    Example:
        >>> import sn_interp as sn
        >>> vlm = sn.load_model("tiny-llava")
        >>> probe, test = sn.load_task("shapes-color", n=60).split(shots=5, seed=0)
        >>> found = sn.find_super_neurons(sn.extract(vlm, probe, progress=False), k=3, max_layer=0)
        >>> pred, seconds = timed_predict(sn.EarlyExitClassifier(vlm, found), test[:4])
        >>> pred.dims, seconds > 0                          # pred: (sample,)
        (('sample',), True)
    """
    start = time.perf_counter()
    pred = clf.predict(samples)
    return pred, (time.perf_counter() - start) / len(samples)


def interleaved_latency(runs: Mapping[K, Callable[[], object]], n: int, *,
                        repeats: int = 5) -> dict[K, Float[np.ndarray, " repeat"]]:
    """Seconds per sample of each callable, ``repeats`` times, the callables interleaved.

    Each repeat runs every callable once, in order (the base model first, then each early
    exit), so a load change on a shared machine hits all of them alike within a repeat; a
    ratio of two callables is taken per repeat and its median reported (see :func:`sweep`).

    Example:
        >>> lat = interleaved_latency({"a": lambda: sum(range(1000))}, n=1, repeats=3)
        >>> lat["a"].shape
        (3,)
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    out: dict[K, list[float]] = {key: [] for key in runs}
    for _ in range(repeats):
        for key, run in runs.items():
            start = time.perf_counter()
            run()
            out[key].append((time.perf_counter() - start) / n)
    return {key: np.array(v) for key, v in out.items()}


def sweep(vlm: VLM, probe: Sequence[Sample], test: Sequence[Sample], *,
          layers: Sequence[int] | None = None, k: int = 20, rule: str = "centroid",
          score: str = "probe", vision: bool = False, batch_size: int = 8,
          zero_shot_mode: str = "generate", max_new_tokens: int = 5,
          repeats: int = 5, timing_samples: int = 32, progress: bool = True) -> xr.Dataset:
    """Test accuracy and latency of SN early exit at each exit layer, and of the base model.

    For each exit layer ``L``, SNs are selected on ``probe`` among the neurons of layers
    ``<= L`` (``max_layer=L``) and run by an :class:`EarlyExitClassifier` on ``test``. With
    ``vision=True`` one more exit point (``exit_layer=-1``) selects among the vision tower's
    neurons only, so the language model never runs. The base model answers ``test`` itself
    through :func:`sn_interp.zero_shot`.

    Accuracy comes from one pass over ``test``. Latency is timed apart, on the first
    ``timing_samples`` test samples, ``repeats`` times with the base model and the exits
    interleaved (:func:`interleaved_latency`): ``latency`` and ``base_latency`` are medians
    over the repeats, ``speedup`` the median of the per-repeat ratios, so a busy machine
    slows both sides of a ratio alike instead of printing nonsense.

    Returns:
        A Dataset over ``exit_layer`` with ``accuracy`` (+ ``accuracy_low``/``_high``, 95%
        bootstrap), ``latency`` (seconds per sample), ``speedup`` (base latency / latency),
        ``best_neuron``; scalars ``base_accuracy`` (+ interval) and ``base_latency``; the
        timings of every repeat as ``latency_repeats`` (exit_layer, repeat) and
        ``base_latency_repeats`` (repeat).

    Example:
        >>> import sn_interp as sn
        >>> vlm = sn.load_model("tiny-llava")
        >>> probe, test = sn.load_task("shapes-color", n=60).split(shots=5, seed=0)
        >>> res = sweep(vlm, probe, test[:8], k=3, repeats=1, timing_samples=4, progress=False)
        >>> res.accuracy.dims, res.exit_layer.values.tolist()   # one row per exit layer
        (('exit_layer',), [0, 1])
    """
    from sn_interp.extraction import extract
    from sn_interp.names import ALL_SITES, VISION_SITE
    from sn_interp.probes import evaluate, find_super_neurons, zero_shot

    test = _check_samples(test)
    layers = sorted(set(range(vlm.dims.n_layers) if layers is None else layers))
    sites = ALL_SITES + ((VISION_SITE.name,) if vision else ())
    acts = extract(vlm, probe, sites=sites, layers=range(max(layers) + 1),
                   batch_size=batch_size, progress=progress)
    exits = ([-1] if vision else []) + layers
    rows, clfs = [], []
    for exit_layer in tqdm(exits, desc="exit layers", disable=not progress):
        sites, max_layer = ((VISION_SITE.name,), None) if exit_layer < 0 else (ALL_SITES,
                                                                               exit_layer)
        found = find_super_neurons(acts, k=k, rule=rule, score=score, progress=False,
                                   sites=sites, max_layer=max_layer)
        clfs.append(EarlyExitClassifier(vlm, found, batch_size=batch_size))
        ev = evaluate(clfs[-1].predict(test))
        rows.append((float(ev.accuracy), float(ev.accuracy_low), float(ev.accuracy_high),
                     str(found.table["id"][0].item())))

    def answer(samples: Sequence[Sample]) -> xr.Dataset:
        return zero_shot(vlm, samples, mode=zero_shot_mode, max_new_tokens=max_new_tokens,
                         batch_size=batch_size, progress=False)

    base_ev = evaluate(answer(test).pred)
    timing = list(test[:max(1, timing_samples)])
    runs: dict[str | int, Callable[[], object]] = {"base": lambda: answer(timing)}
    runs.update({i: (lambda c=c: c.predict(timing)) for i, c in enumerate(clfs)})
    lat = interleaved_latency(runs, len(timing), repeats=repeats)
    base_lat = lat.pop("base")
    latency = np.array([np.median(lat[i]) for i in range(len(clfs))])
    speedup = np.array([np.median(base_lat / lat[i]) for i in range(len(clfs))])
    acc, low, high, best = (np.array(c) for c in zip(*rows, strict=True))
    timed = {"timing": f"median of {repeats} interleaved repeats on {len(timing)} test samples"}
    return xr.Dataset(
        {"accuracy": ("exit_layer", acc, {"long_name": "SN early-exit test accuracy"}),
         "accuracy_low": ("exit_layer", low), "accuracy_high": ("exit_layer", high),
         "latency": ("exit_layer", latency, {"long_name": "latency", "units": "s / sample",
                                             **timed}),
         "speedup": ("exit_layer", speedup, {"long_name": "speed-up vs base", **timed}),
         "best_neuron": ("exit_layer", best.astype(str)),
         "base_accuracy": ((), float(base_ev.accuracy)),
         "base_accuracy_low": ((), float(base_ev.accuracy_low)),
         "base_accuracy_high": ((), float(base_ev.accuracy_high)),
         "base_latency": ((), float(np.median(base_lat)), {"units": "s / sample", **timed}),
         "latency_repeats": (("exit_layer", "repeat"), np.stack([lat[i] for i in
                                                                 range(len(clfs))]),
                             {"units": "s / sample"}),
         "base_latency_repeats": ("repeat", base_lat, {"units": "s / sample"})},
        coords={"exit_layer": ("exit_layer", np.array(exits, np.int64),
                               {"long_name": "exit layer (-1: vision tower only)"})},
        attrs={"model_id": vlm.model_id, "k": k, "rule": rule, "score": score,
               "zero_shot_mode": zero_shot_mode, "batch_size": batch_size,
               "n_probe": int(acts.sizes["sample"]), "n_test": len(test),
               "timing_repeats": repeats, "timing_samples": len(timing)})
