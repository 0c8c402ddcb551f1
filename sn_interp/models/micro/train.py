"""Train an embedded VLM on the embedded tasks' train partition.

Usage::

    python -m sn_interp.models.micro.train micro-llava            # -> data/models/micro-llava
    python -m sn_interp.models.micro.train micro-qwen3-vl --steps 200 --out /tmp/q
    python -m sn_interp.models.micro.train mini-llava-smollm2     # frozen pretrained LM

Micro models train every weight from scratch. ``mini-llava-smollm2`` loads the pretrained
SmolLM2-135M-Instruct, freezes it (gradients still flow through it to the image tokens) and
trains only the vision tower (started from micro-llava's) and the projector; only those are
saved, with what :mod:`sn_interp.models.pretrained_lm` needs to assemble the rest at load.

Teacher-forced next-token loss on the answer tokens and EOS only (see
:mod:`sn_interp.models.micro.data`); AdamW, linear warm-up then cosine decay to 10% of the
peak rate, gradient clipping at 1. Seeded: the same config gives the same weights on the same
machine and library versions.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from tqdm.auto import tqdm

from sn_interp.models.micro.config import (
    MICRO_CONFIGS,
    MicroConfig,
    build_config,
    build_processor,
    build_tokenizer_for,
)
from sn_interp.models.micro.data import (
    Example,
    collate,
    instruction_examples,
    length_bucketed_batches,
)

log = logging.getLogger(__name__)

__all__ = ["TrainResult", "answer_loss", "build_model", "lr_factor", "main", "save", "train"]

DATA_MODELS = Path(__file__).resolve().parents[3] / "data" / "models"
SUMMARY = "micro_train.json"


@dataclass
class TrainResult:
    """What a training run produced besides the weights."""

    losses: list[float]
    """Loss of every step."""
    seconds: float
    """Wall-clock training time (data building excluded)."""

    def mean_loss(self, first: int | None = None, last: int | None = None) -> float:
        """Mean loss over the first or last ``n`` steps."""
        part = self.losses[:first] if first else self.losses[-(last or len(self.losses)):]
        return float(np.mean(part))


def _load_pretrained_parts(model: torch.nn.Module, cfg: MicroConfig) -> None:
    """Copy the pretrained LM (frozen) and, with ``init_vision``, a trained vision tower in."""
    from safetensors.torch import load_file

    from sn_interp.models import resolve
    from sn_interp.models.pretrained_lm import insert_lm, load_lm

    if cfg.pretrained:
        insert_lm(model, load_lm(cfg.language_model))
        for p in [*model.get_decoder().parameters(), *model.get_output_embeddings().parameters()]:
            p.requires_grad_(False)
    if cfg.init_vision:
        path, _ = resolve(cfg.init_vision)
        state = load_file(Path(path) / "model.safetensors")
        # saved checkpoints use "vision_tower." (transformers' on-disk names), modules
        # "model.vision_tower."; accept either
        tower = {k.split("vision_tower.", 1)[1]: v for k, v in state.items()
                 if k.startswith(("vision_tower.", "model.vision_tower."))}
        if not tower:
            raise ValueError(f"{cfg.init_vision} has no vision tower weights to start from")
        model.model.vision_tower.load_state_dict(tower)


def build_model(cfg: MicroConfig) -> tuple[torch.nn.Module, Any]:
    """A freshly initialised (seeded, float32) model and its processor.

    With :attr:`MicroConfig.language_model`, the LM carries its pretrained weights and is
    frozen (``requires_grad=False``); with :attr:`MicroConfig.init_vision`, the vision tower
    starts from that model's trained tower.
    """
    tok = build_tokenizer_for(cfg)
    config = build_config(cfg, tok)
    config.dtype = torch.float32
    config.architectures = [cfg.model_class]
    torch.manual_seed(cfg.seed)
    model = getattr(transformers, cfg.model_class)(config).float()
    _load_pretrained_parts(model, cfg)
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id, gen.bos_token_id = (tok.pad_token_id, tok.eos_token_id,
                                                            tok.bos_token_id)
    gen.do_sample = False
    return model, build_processor(cfg, tok)


def lr_factor(step: int, cfg: MicroConfig) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay from 1 to 0.1."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress)))


def answer_loss(model: torch.nn.Module, enc: Any) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled (answer + EOS) positions.

    Answers sit at the end of left-padded rows, so only the last ``k`` logits are computed
    (``logits_to_keep``), which skips most of the LM head.
    """
    enc = dict(enc)
    labels = enc.pop("labels")
    labelled = (labels != -100).any(0).nonzero()
    k = labels.shape[1] - int(labelled.min()) + 1
    logits = model(**enc, logits_to_keep=k).logits  # positions T-k .. T-1
    targets = labels[:, -k + 1:]
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
        ignore_index=-100)


def _optimizer(model: torch.nn.Module, cfg: MicroConfig) -> torch.optim.Optimizer:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.ndim >= 2 and "embed" not in n]
    rest = [p for n, p in trainable if not (p.ndim >= 2 and "embed" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98))


def train(model: torch.nn.Module, processor: Any, cfg: MicroConfig,
          examples: dict[str, list[Example]], *, progress: bool = True,
          loss_log: Path | None = None) -> TrainResult:
    """Train ``model`` in place for ``cfg.steps`` steps and return the loss curve."""
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    opt = _optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    model.train()
    losses: list[float] = []
    sink = loss_log.open("w") if loss_log else None
    start = time.perf_counter()
    first = {t: examples[t] for t in cfg.first_tasks if t in examples}
    batches = length_bucketed_batches(first or examples, cfg.batch_size, rng)
    bar = tqdm(range(cfg.steps), desc=f"train {cfg.name}", unit="step", disable=not progress)
    for step in bar:
        if step == cfg.first_steps and first:
            log.info("step %d: curriculum stage 2, all tasks %s", step, sorted(examples))
            batches = length_bucketed_batches(examples, cfg.batch_size, rng)
        loss = answer_loss(model, collate(processor, next(batches)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if sink:
            sink.write(f"{step}\t{losses[-1]:.5f}\t{sched.get_last_lr()[0]:.2e}\n")
            sink.flush()
        if step % 25 == 0 or step == cfg.steps - 1:
            bar.set_postfix(loss=f"{np.mean(losses[-25:]):.3f}")
            log.info("step %d loss %.4f (mean of last 25: %.4f)", step, losses[-1],
                     np.mean(losses[-25:]))
    if sink:
        sink.close()
    model.eval()
    return TrainResult(losses=losses, seconds=time.perf_counter() - start)


def save(model: torch.nn.Module, processor: Any, cfg: MicroConfig, out: Path,
         result: TrainResult, command: str) -> Path:
    """Write weights (safetensors), processor and :data:`SUMMARY` (recipe + losses) to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    if cfg.pretrained:
        _save_trained_parts(model, cfg, out)
    else:
        model.save_pretrained(out)
    processor.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    n_trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    summary = {"config": cfg.to_dict(), "command": command, "parameters": n_params,
               "trained_parameters": n_trained,
               "train_seconds": round(result.seconds, 1), "torch": torch.__version__,
               "transformers": transformers.__version__,
               "loss_first_25": round(result.mean_loss(first=25), 4),
               "loss_last_100": round(result.mean_loss(last=100), 4),
               "loss_every_100": [round(float(np.mean(result.losses[i:i + 100])), 4)
                                  for i in range(0, len(result.losses), 100)]}
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return out


def _save_trained_parts(model: torch.nn.Module, cfg: MicroConfig, out: Path) -> None:
    """Write only what training changed, plus what :mod:`~sn_interp.models.pretrained_lm`
    needs to assemble the full model at first load (the LM comes from its wheel)."""
    from safetensors.torch import save_file

    from sn_interp.models import pretrained_lm as plm

    save_file(plm.trained_state(model), out / plm.TRAINED_FILE, metadata={"format": "pt"})
    (out / plm.CONFIG_FILE).write_text(model.config.to_json_string())
    model.generation_config.save_pretrained(out)
    lm = plm.PRETRAINED_LMS[cfg.language_model]
    spec = {"language_model": lm.name, "requirement": lm.requirement, "file": lm.file,
            "sha256": lm.sha256, "trained": plm.TRAINED_FILE, "config": plm.CONFIG_FILE}
    (out / plm.ASSEMBLE_FILE).write_text(json.dumps(spec, indent=2) + "\n")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("name", choices=sorted(MICRO_CONFIGS), help="micro model to train")
    p.add_argument("--out", type=Path, help="output directory (default: data/models/<name>)")
    p.add_argument("--loss-log", type=Path, help="per-step loss TSV (default: none)")
    overridable = {"steps", "batch_size", "lr", "warmup", "seed", "max_images", "threads",
                   "first_steps"}
    for f in fields(MicroConfig):
        if f.name in overridable:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default),
                           help=f"override the config's {f.name}")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    import sys

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = MICRO_CONFIGS[args.name]
    changes = {k: v for k, v in vars(args).items()
               if k in {f.name for f in fields(MicroConfig)} and v is not None}
    cfg = cfg.with_(**changes)
    torch.set_num_threads(cfg.threads)
    examples = instruction_examples(cfg.tasks, max_images=cfg.max_images, seed=cfg.seed)
    model, processor = build_model(cfg)
    log.info("%s: %d parameters", cfg.name, sum(p.numel() for p in model.parameters()))
    result = train(model, processor, cfg, examples, progress=not args.no_progress,
                   loss_log=args.loss_log)
    command = "python -m sn_interp.models.micro.train " + " ".join(
        argv if argv is not None else sys.argv[1:])
    out = save(model, processor, cfg, args.out or DATA_MODELS / cfg.name, result, command)
    log.info("saved %s in %.0f s; loss %.4f -> %.4f", out, result.seconds,
             result.mean_loss(first=25), result.mean_loss(last=100))


if __name__ == "__main__":
    main()
