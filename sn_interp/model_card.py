"""Score a trained model zero-shot per task and prompt, and write its model card.

Usage::

    python -m sn_interp.model_card micro-llava --n 100    # prints the Markdown accuracy table
    python -m sn_interp.model_card micro-llava --write    # -> data/models/micro-llava/README.md

Samples come from the ``eval`` partition only (never seen in training); every prompt of each
task is scored, the held-out one included (marked), with :func:`sn_interp.zero_shot` (greedy
generation) and :func:`sn_interp.evaluate`.

Why here and not in :mod:`sn_interp.checkpoints.micro.card`: scoring needs ``probes``
(zero-shot, evaluate), and checkpoint building never imports upward (a unit test checks it).
So the card's *formatting* lives with the training recipes in
:mod:`sn_interp.checkpoints.micro.card`, and this package-level command, which may import
anything, does the scoring and writes the file.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from sn_interp.checkpoints.micro.card import ALL_TASKS, model_card, to_markdown
from sn_interp.checkpoints.micro.config import DEFAULT_TASKS
from sn_interp.models import DATA_MODELS, VLM, load_model
from sn_interp.probes.baseline import zero_shot
from sn_interp.probes.evaluate import evaluate
from sn_interp.tasks import load_task

log = logging.getLogger(__name__)

__all__ = ["accuracy_table", "main", "write_card"]


def _accuracy(pred: xr.DataArray) -> float:
    return float(evaluate(pred, n_boot=1)["accuracy"])


def accuracy_table(vlm: VLM, tasks: Sequence[str] = ALL_TASKS, *, n: int = 100,
                   trained: Sequence[str] = DEFAULT_TASKS, batch_size: int = 25,
                   seed: int = 0) -> pd.DataFrame:
    """One row per (task, prompt): format, held out?, trained task?, chance, accuracy, mapped.

    Example:
        >>> vlm = load_model("micro-llava")  # doctest: +SKIP
        >>> accuracy_table(vlm, ["shapes-color"], n=20)["accuracy"]  # doctest: +SKIP
    """
    rows = []
    for name in tasks:
        task = load_task(name, partition="eval", n=n, seed=seed)
        for pid, template in task.prompts.items():
            samples = list(task.with_prompt(pid))
            base = zero_shot(vlm, samples, batch_size=batch_size, max_new_tokens=8,
                             progress=False)
            k = len(task.class_names)
            rows.append({"task": name, "prompt": pid, "format": template.answer_format,
                         "heldout": pid == task.heldout_prompt, "trained_task": name in trained,
                         "n": len(samples), "chance": round(1 / k, 3),
                         "accuracy": round(_accuracy(base.pred), 3),
                         "mapped": round(float(base.mapped.mean()), 3),
                         "label_counts": np.bincount([int(s.label) for s in samples if s.label is not None],
                                                     minlength=k),
                         "answer_counts": np.bincount(base.pred.values[base.pred.values >= 0],
                                                      minlength=k)})
            log.info("%s/%s: %.3f", name, pid, rows[-1]["accuracy"])
    return pd.DataFrame(rows)


def write_card(name: str, n: int = 100) -> Path:
    """Score ``name`` and write ``data/models/<name>/README.md``."""
    path = DATA_MODELS / name
    summary = json.loads((path / "micro_train.json").read_text())
    table = accuracy_table(load_model(name), n=n)
    size = sum(f.stat().st_size for f in path.iterdir() if f.name != "README.md") / 2**20
    (path / "README.md").write_text(model_card(name, summary, table, size))
    return path / "README.md"


def main(argv: Sequence[str] | None = None) -> None:
    """Print the accuracy table of a model as Markdown (and save it as CSV with ``--csv``)."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("model", help="model name or directory")
    p.add_argument("--n", type=int, default=100, help="eval images per task")
    p.add_argument("--tasks", nargs="*", default=list(ALL_TASKS), help="tasks to score")
    p.add_argument("--csv", help="also write the table to this CSV file")
    p.add_argument("--write", action="store_true",
                   help="write data/models/<model>/README.md (a micro model's card)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.write:
        log.info("wrote %s", write_card(args.model, n=args.n))
        return
    table = accuracy_table(load_model(args.model), args.tasks, n=args.n)
    if args.csv:
        table.to_csv(args.csv, index=False)
    print(to_markdown(table))  # noqa: T201 - the CLI's output


if __name__ == "__main__":
    main()
