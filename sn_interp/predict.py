"""Classify images with a saved early-exit classifier.

Examples::

    python -m sn_interp.predict --classifier runs/clf --images a.png b.png \\
        --question "What colour is the shape?"
    python -m sn_interp.predict --classifier runs/clf --task shapes-color --split test

With ``--images`` it prints one line per image (path, class, class index). Without
``--question`` the question is rendered from the task and prompt template the classifier was
fitted under. With ``--task`` it prints the accuracy (95% bootstrap interval) on that task's
split, drawn with ``--shots``/``--seed``/``--n`` (defaults: what the classifier recorded, else
20 / 0 / all).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from sn_interp.sample import Sample

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sn_interp.predict",
                                description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--classifier", required=True, type=Path,
                   help="directory written by EarlyExitClassifier.save")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--images", nargs="+", type=Path, help="image files to classify")
    what.add_argument("--task", help="a task name (sn_interp.tasks list) to score on")
    p.add_argument("--question", help="question text (default: the classifier's template)")
    p.add_argument("--split", choices=("probe", "test"), default="test")
    p.add_argument("--shots", type=int, help="probe examples per class of the split")
    p.add_argument("--seed", type=int, help="seed of the split")
    p.add_argument("--n", type=int, help="cap on the task's images")
    p.add_argument("--batch-size", type=int, default=8)
    return p


def _question(info: dict, override: str | None) -> str:
    if override:
        return override
    from sn_interp.tasks import load_task

    if not info.get("task"):
        raise SystemExit("error: the classifier records no task to render a question from; "
                         "pass --question")
    task = load_task(info["task"], prompt=info.get("prompt_template") or None, n=1)
    return task[0].question


def _images(paths: Sequence[Path], question: str, info: dict) -> list[Sample]:
    classes = tuple(json.loads(info.get("class_names") or "[]"))
    out = []
    for path in paths:
        try:
            image = Image.open(path)
            image.load()
        except (OSError, UnidentifiedImageError) as err:
            raise SystemExit(f"error: cannot read image {path}: {err}") from err
        out.append(Sample(image.convert("RGB"), question, sample_id=str(path),
                          image_id=str(path), class_names=classes,
                          prompt_id=info.get("prompt_template", "")))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not (args.classifier / "classifier.json").exists():
        raise SystemExit(f"error: {args.classifier} is not a saved EarlyExitClassifier "
                         "(no classifier.json)")
    if args.batch_size < 1:
        raise SystemExit(f"error: --batch-size must be >= 1, got {args.batch_size}")
    try:
        return _run(args)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None


def _run(args: argparse.Namespace) -> int:
    """Load the classifier, predict, print; errors surface as ValueError/KeyError."""
    from sn_interp.early_exit import EarlyExitClassifier
    from sn_interp.probes import evaluate

    info = EarlyExitClassifier.info(args.classifier)
    clf = EarlyExitClassifier.load(args.classifier)
    clf.batch_size = args.batch_size
    if args.images:
        samples = _images(args.images, _question(info, args.question), info)
        pred = clf.predict(samples)
        names = json.loads(pred.attrs["class_names"])
        for path, c in zip(args.images, pred.values.tolist(), strict=True):
            print(f"{path}\t{names[c]}\t{c}")
        return 0
    from sn_interp.tasks import load_task

    opts = info.get("task_options", {})
    seed = args.seed if args.seed is not None else opts.get("seed", 0)
    task = load_task(args.task, n=args.n or opts.get("n"), seed=seed,
                     prompt=info.get("prompt_template") or None)
    probe, test = task.split(shots=args.shots or opts.get("shots", 20), seed=seed,
                             test_size=opts.get("test_size"))
    samples = test if args.split == "test" else probe
    ev = evaluate(clf.predict(samples))
    print(f"{args.task} {args.split}: accuracy {float(ev.accuracy):.4f} "
          f"[{float(ev.accuracy_low):.4f}, {float(ev.accuracy_high):.4f}] "
          f"n={int(ev.n)} exit_layer={clf.exit_layer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
