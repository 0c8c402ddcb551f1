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

# pyright: reportAttributeAccessIssue=false, reportCallIssue=false, reportArgumentType=false
# (training recipe: HF submodules reached through nn.Module attributes, which torch types as Tensor | Module)

from __future__ import annotations

import logging
import math
from typing import Any, cast

import numpy as np
import torch

from sn_interp.checkpoints.micro.config import MicroConfig

log = logging.getLogger(__name__)

__all__ = ["MAX_SHIFT", "SHIFT_TASKS", "patch_features", "pretrain_vision", "shift", "vision_data"]

#: Tasks whose label does not depend on where the object sits: stage 0 augments them by shifts.
SHIFT_TASKS: frozenset[str] = frozenset({"digits", "mnist", "fashion-mnist"})
#: Largest shift (pixels, each axis) of the stage-0 augmentation.
MAX_SHIFT: int = 4


def vision_data(cfg: MicroConfig, processor: Any) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Pixel tensors and labels per task from the train partition (cap ``vision_pretrain_images``)."""
    from sn_interp.tasks import load_task

    out = {}
    for name in cfg.tasks:
        task = load_task(name, partition="train", n=cfg.vision_pretrain_images, seed=cfg.seed)
        samples = list(task)
        pixels = processor.image_processor([s.image.convert("RGB") for s in samples],
                                           return_tensors="pt")["pixel_values"]
        out[name] = (pixels, torch.tensor([s.label for s in samples]))
        log.info("stage 0: %s, %d train images", name, len(samples))
    return out


def patch_features(model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """The features the LLaVA projector reads: last hidden layer, CLS dropped (batch, patches, d)."""
    out = model.model.vision_tower(pixels, output_hidden_states=True)
    return out.hidden_states[model.config.vision_feature_layer][:, 1:]


def shift(x: torch.Tensor, rng: np.random.Generator, max_shift: int = MAX_SHIFT) -> torch.Tensor:
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


def _split(data: dict[str, tuple[torch.Tensor, torch.Tensor]], rng: np.random.Generator
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    train, val = {}, {}
    for name, (x, y) in data.items():
        order = rng.permutation(len(y))
        cut = max(1, len(y) // 10)
        val[name] = (x[order[:cut]], y[order[:cut]])
        train[name] = (x[order[cut:]], y[order[cut:]])
    return train, val


@torch.no_grad()
def _accuracy(model: torch.nn.Module, head: torch.nn.Module, x: torch.Tensor,
              y: torch.Tensor) -> float:
    hits = 0
    for i in range(0, len(y), 256):
        logits = head(patch_features(model, x[i:i + 256]).flatten(1))
        hits += int((logits.argmax(-1) == y[i:i + 256]).sum())
    return hits / len(y)


def pretrain_vision(model: torch.nn.Module, processor: Any, cfg: MicroConfig) -> dict[str, Any]:
    """Train the vision tower of ``model`` in place as a multi-task classifier (stage 0).

    Every step draws ``vision_pretrain_batch`` images of each task (shifted, for
    :data:`SHIFT_TASKS`) and sums the tasks' cross-entropies; AdamW with linear warm-up and cosine decay to 10%. Returns the loss per
    step and the accuracy on the 10% of images kept aside, per task.
    """
    rng = np.random.default_rng(cfg.seed + 1)
    torch.manual_seed(cfg.seed + 1)
    train, val = _split(vision_data(cfg, processor), rng)
    vc = cast(Any, model.config).vision_config  # an HF config: attributes are dynamic
    width = vc.hidden_size * (vc.image_size // vc.patch_size) ** 2
    heads = torch.nn.ModuleDict({n: torch.nn.Linear(width, int(y.max()) + 1)
                                 for n, (_, y) in train.items()})
    tower = model.model.vision_tower
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
            "val_images": {n: len(y) for n, (_, y) in val.items()}}
