"""Stage 0 of the mini recipe: the vision tower pretrained as a supervised multi-task classifier.

LLaVA starts from a vision encoder that was pretrained first (CLIP). Here the tower is trained
for a few minutes to classify the images of every trained task from the train partition (one
linear head per task on the patch features the projector reads, i.e. the last hidden layer
without the CLS token, LLaVA's ``default`` feature strategy, flattened in patch order so that
position and count stay linearly decodable, as they are for the language model, which reads
every patch token), so the image tokens carry digit, shape, colour, count and position
identity before the language model ever sees them. Images of the position-invariant tasks
(:data:`SHIFT_TASKS`) are shifted by up to :data:`MAX_SHIFT` pixels per draw (the digits set
has under 900 train images). The heads are thrown away; only the tower is kept.

Example:
    >>> from sn_interp.checkpoints.micro.config import MICRO_CONFIGS
    >>> cfg = MICRO_CONFIGS["mini-llava-smollm2"].with_(vision_pretrain_steps=2)  # doctest: +SKIP
    >>> report = pretrain_vision(model, processor, cfg)                            # doctest: +SKIP
    >>> sorted(report["val_accuracy"])[:2]                                         # doctest: +SKIP
    ['digits', 'fashion-mnist']
"""

from __future__ import annotations

import logging
import math
import time
from typing import TypedDict, cast

import numpy as np
import torch
from jaxtyping import Float, Int
from transformers import CLIPVisionModel, LlavaForConditionalGeneration, ProcessorMixin

from sn_interp.checkpoints.micro.config import MicroConfig

log = logging.getLogger(__name__)

__all__ = ["MAX_SHIFT", "SHIFT_TASKS", "Stage0Report", "patch_features", "pretrain_vision", "shift",
           "vision_data"]

#: Tasks whose label does not depend on where the object sits: stage 0 augments them by shifts.
SHIFT_TASKS: frozenset[str] = frozenset({"digits", "mnist", "fashion-mnist"})
#: Largest shift (pixels, each axis) of the stage-0 augmentation.
MAX_SHIFT: int = 4

#: Pixels ``(batch, channel, height, width)`` and class labels ``(batch,)`` per task.
TaskImages = dict[str, tuple[Float[torch.Tensor, "batch channel height width"],
                             Int[torch.Tensor, " batch"]]]


class Stage0Report(TypedDict):
    """What :func:`pretrain_vision` reports (saved under ``stage0`` in the training summary)."""

    losses: list[float]
    """Mean task loss of every step."""
    val_accuracy: dict[str, float]
    """Per task: accuracy of its linear head on the kept-aside 10% of the train images."""
    val_images: dict[str, int]
    """Per task: number of kept-aside images."""
    seconds: float
    """Wall-clock time of the stage (data building included)."""


def vision_data(cfg: MicroConfig, processor: ProcessorMixin) -> TaskImages:
    """Pixel tensors and labels per task from the train partition (cap ``vision_pretrain_images``)."""
    from sn_interp.tasks import load_task

    out: TaskImages = {}
    for name in cfg.tasks:
        task = load_task(name, partition="train", n=cfg.vision_pretrain_images, seed=cfg.seed)
        samples = list(task)
        pixels = processor.image_processor([s.image.convert("RGB") for s in samples],
                                           return_tensors="pt")["pixel_values"]
        out[name] = (pixels, torch.tensor([s.label for s in samples]))
        log.info("stage 0: %s, %d train images", name, len(samples))
    return out


def _tower(model: LlavaForConditionalGeneration) -> CLIPVisionModel:
    # transformers builds it with AutoModel.from_config (untyped); the micro LLaVA config is a
    # CLIPVisionConfig, so it is a CLIPVisionModel
    return cast(CLIPVisionModel, model.model.vision_tower)


def patch_features(model: LlavaForConditionalGeneration,
                   pixels: Float[torch.Tensor, "batch channel height width"]
                   ) -> Float[torch.Tensor, "batch patch d_vision"]:
    """The features the LLaVA projector reads: last hidden layer, CLS dropped (batch, patches, d)."""
    out = _tower(model)(pixels, output_hidden_states=True)
    # the micro configs set one layer (vision_feature_layer=-1), never a list
    return out.hidden_states[cast(int, model.config.vision_feature_layer)][:, 1:]


def shift(x: Float[torch.Tensor, "batch channel height width"], rng: np.random.Generator,
          max_shift: int = MAX_SHIFT) -> Float[torch.Tensor, "batch channel height width"]:
    """Each image of ``x`` (batch, channels, h, w) moved by a random whole-pixel offset of at
    most ``max_shift`` per axis, the uncovered border filled with the image's corner value.

    Example:
        >>> x = torch.zeros(1, 1, 4, 4); x[0, 0, 1, 1] = 1.0
        >>> float(shift(x, np.random.default_rng(0), 1).sum())
        1.0
    """
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    pad = torch.nn.functional.pad(x, (max_shift,) * 4, mode="replicate")
    offsets = rng.integers(0, 2 * max_shift + 1, size=(n, 2))
    return torch.stack([pad[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])


def _split(data: TaskImages, rng: np.random.Generator) -> tuple[TaskImages, TaskImages]:
    train: TaskImages = {}
    val: TaskImages = {}
    for name, (x, y) in data.items():
        order = rng.permutation(len(y))
        cut = max(1, len(y) // 10)
        val[name] = (x[order[:cut]], y[order[:cut]])
        train[name] = (x[order[cut:]], y[order[cut:]])
    return train, val


@torch.no_grad()
def _accuracy(model: LlavaForConditionalGeneration, head: torch.nn.Module, x: torch.Tensor,
              y: torch.Tensor) -> float:
    hits = 0
    for i in range(0, len(y), 256):
        logits = head(patch_features(model, x[i:i + 256]).flatten(1))
        hits += int((logits.argmax(-1) == y[i:i + 256]).sum())
    return hits / len(y)


def pretrain_vision(model: LlavaForConditionalGeneration, processor: ProcessorMixin,
                    cfg: MicroConfig) -> Stage0Report:
    """Train the vision tower of ``model`` in place as a multi-task classifier (stage 0).

    Every step draws ``vision_pretrain_batch`` images of each task (shifted, for
    :data:`SHIFT_TASKS`) and sums the tasks' cross-entropies; AdamW with linear warm-up and cosine decay to 10%. Returns the loss per
    step, the accuracy on the 10% of images kept aside, per task, and the stage's seconds.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(cfg.seed + 1)
    torch.manual_seed(cfg.seed + 1)
    train, val = _split(vision_data(cfg, processor), rng)
    tower = _tower(model)
    vc = tower.config
    # config.py builds square images: image_size and patch_size are single ints
    side = cast(int, vc.image_size) // cast(int, vc.patch_size)
    heads = torch.nn.ModuleDict({n: torch.nn.Linear(vc.hidden_size * side ** 2, int(y.max()) + 1)
                                 for n, (_, y) in train.items()})
    params = [*tower.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.vision_pretrain_lr, weight_decay=0.01)
    steps, warm = cfg.vision_pretrain_steps, max(1, cfg.vision_pretrain_steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else
                                              0.1 + 0.45 * (1 + math.cos(math.pi * (s - warm)
                                                                         / max(1, steps - warm))))
    tower.train()
    losses = []
    for step in range(steps):
        loss = torch.zeros(())
        for name, (x, y) in train.items():
            idx = torch.from_numpy(rng.integers(len(y), size=cfg.vision_pretrain_batch))
            batch = shift(x[idx], rng) if name in SHIFT_TASKS else x[idx]
            feats = patch_features(model, batch).flatten(1)
            loss = loss + torch.nn.functional.cross_entropy(heads[name](feats), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item() / len(train))
        if step % 50 == 0 or step == steps - 1:
            log.info("stage 0 step %d: mean task loss %.4f", step, np.mean(losses[-50:]))
    tower.eval()
    acc = {n: round(_accuracy(model, heads[n], x, y), 4) for n, (x, y) in val.items()}
    log.info("stage 0 classifier accuracy on the kept-aside train images: %s", acc)
    return {"losses": losses, "val_accuracy": acc,
            "val_images": {n: len(y) for n, (_, y) in val.items()},
            "seconds": round(time.perf_counter() - start, 1)}
