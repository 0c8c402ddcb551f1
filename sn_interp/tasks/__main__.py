"""Command line: ``python -m sn_interp.tasks list`` and ``... show <task>``.

``list`` prints the registered tasks; ``show`` writes a PNG grid of a few examples per class
with their questions, so a person can look at what the model sees.

Example:
    $ python -m sn_interp.tasks show shapes-position --per-class 3 --out position.png
"""

from __future__ import annotations

import argparse
import logging
import textwrap
from pathlib import Path

import numpy as np

from sn_interp.tasks.base import Task
from sn_interp.tasks.registry import list_tasks, load_task

log = logging.getLogger("sn_interp.tasks")


def examples_per_class(task: Task, per_class: int, seed: int = 0) -> list[list[int]]:
    """Row indices of up to ``per_class`` examples of each class (deterministic)."""
    rng = np.random.default_rng(seed)
    return [sorted(rng.permutation(np.flatnonzero(task.labels == c))[:per_class].tolist())
            for c in range(len(task.class_names))]


def plot_examples(task: Task, per_class: int = 4, seed: int = 0, max_classes: int = 12):
    """A figure: one row per class, ``per_class`` images with their questions.

    Example:
        >>> fig = plot_examples(load_task("digits", n=100), per_class=2)
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="white", context="paper")
    rows = examples_per_class(task, per_class, seed)[:max_classes]
    fig, axes = plt.subplots(len(rows), per_class, squeeze=False,
                             figsize=(2.6 * per_class, 3.0 * len(rows)))
    for _c, (idx, ax_row) in enumerate(zip(rows, axes, strict=False)):
        for ax, i in zip(ax_row, idx + [None] * (per_class - len(idx)), strict=False):
            if i is None:
                ax.set_axis_off()
                continue
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():  # frame: white scenes on a white page
                spine.set_color("0.7")
            s = task[i]
            ax.imshow(np.asarray(s.image), interpolation="nearest")
            first = textwrap.shorten(s.question.splitlines()[0], 100)
            ax.set_title(f"{s.label_name}  [{s.image_id}]\n{textwrap.fill(first, 34)}",
                         fontsize=6.5, loc="left")
    shift = f" · shift {task.shift}" if task.shift else ""
    fig.suptitle(f"{task.name} · prompt {task.prompt_id} ({task.answer_format}){shift}",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    return fig


def _cmd_list() -> None:
    for name, entry in list_tasks().items():
        print(f"{name:32s} {entry.kind:9s} {entry.description}")  # noqa: T201


def _cmd_show(args: argparse.Namespace) -> None:
    task = load_task(args.task, partition=args.partition, prompt=args.prompt, shift=args.shift)
    out = Path(args.out or f"{args.task.rstrip('/').replace('/', '_')}"
               f"{'-' + args.shift if args.shift else ''}.png")
    fig = plot_examples(task, args.per_class, args.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=args.dpi)
    print(f"{task!r}\nwrote {out}")  # noqa: T201


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m sn_interp.tasks``."""
    parser = argparse.ArgumentParser(prog="python -m sn_interp.tasks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the registered tasks")
    show = sub.add_parser("show", help="write a PNG grid of examples per class")
    show.add_argument("task", help="registered name, .jsonl file or image folder")
    show.add_argument("--out", help="PNG path (default: <task>.png)")
    show.add_argument("--per-class", type=int, default=4, help="examples per class")
    show.add_argument("--prompt", help="prompt id (default: the task's first)")
    show.add_argument("--shift", help="image shift name (default: none)")
    show.add_argument("--partition", default="eval", help="eval, train or all")
    show.add_argument("--seed", type=int, default=0, help="which examples to show")
    show.add_argument("--dpi", type=int, default=150)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import datasets

    datasets.disable_progress_bars()
    if args.command == "list":
        _cmd_list()
    else:
        _cmd_show(args)


if __name__ == "__main__":
    main()
