"""The micro-VLM training recipe: data from the train partition only, labels on the answer,
and a few steps on a few examples lower the loss (both families, tiny configs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sn_interp.checkpoints.micro.config import MICRO_CONFIGS, MicroConfig
from sn_interp.checkpoints.micro.data import (
    answer_text,
    collate,
    instruction_examples,
    length_bucketed_batches,
)
from sn_interp.checkpoints.micro.train import _parser, build_model, lr_factor, train

TASKS = ("shapes-color", "shapes-position")


def _tiny(name: str, **kw: object) -> MicroConfig:
    """A seconds-fast version of a micro recipe."""
    base = dict(tasks=("shapes-color",), d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                d_mlp=64, vision_width=32, vision_layers=2, vision_heads=2, image_size=32,
                patch_size=16 if name == "micro-llava" else 8, steps=40, batch_size=8,
                warmup=4, lr=3e-3, max_images=8, first_tasks=(), first_steps=0)
    return MICRO_CONFIGS[name].with_(**{**base, **kw})


@pytest.fixture(scope="module")
def examples() -> dict:
    return instruction_examples(TASKS, max_images=12, seed=0)


def test_examples_come_from_train_partition_without_heldout_prompt(examples: dict) -> None:
    import sn_interp as sn

    for name in TASKS:
        task = sn.load_task(name, partition="train")
        used = {ex.prompt_id for ex in examples[name]}
        assert task.heldout_prompt not in used
        assert used == set(task.prompts) - {task.heldout_prompt}
        eval_ids = set(sn.load_task(name, partition="eval").image_ids)
        assert not {ex.image_id for ex in examples[name]} & eval_ids
        assert {ex.image_id for ex in examples[name]} <= set(task.image_ids)


def test_answers_follow_the_template_format() -> None:
    import sn_interp as sn

    task = sn.load_task("shapes-position", partition="train", n=4)
    s = task.with_prompt("mc")[0]
    assert answer_text(s) == "AB"[s.label]
    s = task.with_prompt("open")[0]
    assert answer_text(s) == task.class_names[s.label]
    s = task.with_prompt("yes_no")[0]
    assert answer_text(s) == ("Yes" if s.label == 1 else "No")


@pytest.mark.parametrize("name", ["micro-llava", "micro-qwen3-vl"])
def test_collate_labels_only_the_answer_and_eos(name: str, examples: dict) -> None:
    cfg = _tiny(name)
    _, processor = build_model(cfg)
    batch = next(length_bucketed_batches(examples, 4, np.random.default_rng(0)))
    enc = collate(processor, batch)
    tok = processor.tokenizer
    assert (enc["attention_mask"][:, -1] == 1).all()  # left padded
    for row, ex in enumerate(batch):
        ids = enc["labels"][row][enc["labels"][row] != -100].tolist()
        assert ids[-1] == tok.eos_token_id
        assert tok.decode(ids[:-1]).strip() == ex.answer


@pytest.mark.parametrize("name", ["micro-llava", "micro-qwen3-vl"])
def test_a_few_steps_lower_the_loss(name: str) -> None:
    torch.set_num_threads(1)
    cfg = _tiny(name)
    data = instruction_examples(cfg.tasks, max_images=cfg.max_images, seed=cfg.seed)
    model, processor = build_model(cfg)
    result = train(model, processor, cfg, data, progress=False)
    assert len(result.losses) == cfg.steps
    assert np.isfinite(result.losses).all()
    assert result.mean_loss(last=5) < 0.7 * result.mean_loss(first=5)


def test_recipe_is_seeded() -> None:
    cfg = _tiny("micro-llava", steps=3)
    a, _ = build_model(cfg)
    b, _ = build_model(cfg)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values(), strict=True))


def test_schedule_and_cli() -> None:
    cfg = MICRO_CONFIGS["micro-llava"]
    assert lr_factor(0, cfg) == pytest.approx(1 / cfg.warmup)
    assert lr_factor(cfg.warmup, cfg) == pytest.approx(1.0)
    assert lr_factor(cfg.steps, cfg) == pytest.approx(0.1)
    args = _parser().parse_args(["micro-qwen3-vl", "--steps", "5", "--batch-size", "4"])
    assert (args.steps, args.batch_size, args.name) == (5, 4, "micro-qwen3-vl")
    with pytest.raises(ValueError, match="patch_size"):
        cfg.with_(image_size=60)
