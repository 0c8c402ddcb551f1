"""Train an embedded VLM on the embedded tasks' train partition.

Usage::

    python -m sn_interp.checkpoints.micro.train micro-llava            # -> data/models/micro-llava
    python -m sn_interp.checkpoints.micro.train micro-qwen3-vl --steps 200 --out /tmp/q
    python -m sn_interp.checkpoints.micro.train mini-llava-smollm2     # pretrained LM + LoRA

Micro models train every weight from scratch. ``mini-llava-smollm2`` follows LLaVA: stage 0
pretrains the vision tower (started from micro-llava's) as a supervised multi-task classifier
(:mod:`sn_interp.checkpoints.micro.vision`); stage 1 loads the pretrained SmolLM2-135M-Instruct,
freezes it and the tower, and trains the projector and low-rank (LoRA, ``peft``) adapters of
the LM's attention and MLP projections; the adapters are then merged. Only the trained parts
are saved (tower, projector, adapter factors), with what :mod:`sn_interp.models.pretrained_lm`
needs to assemble the rest at load.

Teacher-forced next-token loss on the answer tokens and EOS only (see
:mod:`sn_interp.checkpoints.micro.data`); AdamW, linear warm-up then cosine decay to 10% of the
peak rate, gradient clipping at 1. Seeded: the same config gives the same weights on the same
machine and library versions.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
import transformers
from tqdm.auto import tqdm
from transformers import LlavaForConditionalGeneration, PreTrainedModel, ProcessorMixin

from sn_interp.checkpoints.micro.config import (
    MICRO_CONFIGS,
    MicroConfig,
    build_config,
    build_processor,
    build_tokenizer_for,
)
from sn_interp.checkpoints.micro.data import (
    Example,
    collate,
    instruction_examples,
    length_bucketed_batches,
)

if TYPE_CHECKING:
    from sn_interp.checkpoints.micro.vision import Stage0Report

log = logging.getLogger(__name__)

__all__ = ["TrainResult", "add_lora", "answer_loss", "build_model", "lr_factor", "main",
           "merge_lora", "run_recipe", "save", "train"]

DATA_MODELS = Path(__file__).resolve().parents[3] / "data" / "models"
SUMMARY = "micro_train.json"


@dataclass
class TrainResult:
    """What a training run produced besides the weights."""

    losses: list[float]
    """Loss of every step."""
    seconds: float
    """Wall-clock training time (data building excluded; stage 0 included)."""
    stage0: Stage0Report | None = None
    """Stage 0 (vision pretraining) report: losses, kept-aside accuracy per task, seconds."""
    lora: dict[str, torch.Tensor] | None = None
    """Merged LoRA factors (``lora.<module>.A``/``.B``), saved as trained parts."""

    def mean_loss(self, first: int | None = None, last: int | None = None) -> float:
        """Mean loss over the first or last ``n`` steps."""
        part = self.losses[:first] if first else self.losses[-(last or len(self.losses)):]
        return float(np.mean(part))


def _load_pretrained_parts(model: PreTrainedModel, cfg: MicroConfig) -> None:
    """Copy the pretrained LM (frozen) and, with ``init_vision``, a trained vision tower in."""
    from safetensors.torch import load_file

    from sn_interp.models import resolve
    from sn_interp.models.pretrained_lm import insert_lm, load_lm, output_head

    if cfg.pretrained:
        insert_lm(model, load_lm(cfg.lm_name))
        for p in [*model.get_decoder().parameters(), *output_head(model).parameters()]:
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
        model.get_submodule("model.vision_tower").load_state_dict(tower)


def build_model(cfg: MicroConfig) -> tuple[PreTrainedModel, ProcessorMixin]:
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
    model_class: type[PreTrainedModel] = getattr(transformers, cfg.model_class)
    model = model_class(config).float()
    _load_pretrained_parts(model, cfg)
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id, gen.bos_token_id = (tok.pad_token_id, tok.eos_token_id,
                                                            tok.bos_token_id)
    gen.do_sample = False
    return model, build_processor(cfg, tok)


def add_lora(model: PreTrainedModel, cfg: MicroConfig) -> int:
    """Put ``peft`` LoRA adapters (rank ``cfg.lora_rank``) on ``cfg.lora_targets`` of every LM
    layer; only they train in the LM. Returns the number of adapter parameters."""
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(cfg.seed + 2)
    lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                      target_modules=list(cfg.lora_targets), bias="none")
    inject_adapter_in_model(lora, model.get_submodule("model.language_model"))
    adapters = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in adapters:
        p.requires_grad_(True)
    return sum(p.numel() for p in adapters)


def merge_lora(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """Merge every LoRA adapter into its base weight (peft's ``merge``), put the plain
    ``Linear`` back, and return the factors as ``lora.<module>.A`` / ``.B`` tensors (what
    :func:`sn_interp.models.pretrained_lm.assemble` merges again at load)."""
    from peft.tuners.lora import LoraLayer

    factors = {}
    for name, module in list(model.named_modules()):
        if not isinstance(module, LoraLayer):
            continue
        # peft's ModuleDicts hold one nn.Linear per adapter (LoRA on Linear layers only)
        for part, adapters in (("A", module.lora_A), ("B", module.lora_B)):
            linear = cast(torch.nn.Linear, adapters["default"])
            factors[f"lora.{name}.{part}"] = linear.weight.detach().clone()
        module.merge()
        parent, child = name.rsplit(".", 1)
        base = module.get_base_layer()
        base.weight.requires_grad_(False)
        setattr(model.get_submodule(parent), child, base)
    return factors


def lr_factor(step: int, cfg: MicroConfig) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay from 1 to 0.1."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress)))


def answer_loss(model: PreTrainedModel, enc: Mapping[str, torch.Tensor]) -> torch.Tensor:
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


def _optimizer(model: PreTrainedModel, cfg: MicroConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; LoRA adapters at ``lora_lr_scale`` times the rate."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = []
    for lora in (False, True):
        part = [(n, p) for n, p in trainable if ("lora_" in n) == lora]
        decay = [p for n, p in part if p.ndim >= 2 and "embed" not in n]
        rest = [p for n, p in part if not (p.ndim >= 2 and "embed" not in n)]
        lr = cfg.lr * (cfg.lora_lr_scale if lora else 1.0)
        groups += [{"params": ps, "weight_decay": wd, "lr": lr}
                   for ps, wd in ((decay, cfg.weight_decay), (rest, 0.0)) if ps]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98))


def train(model: PreTrainedModel, processor: ProcessorMixin, cfg: MicroConfig,
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
    batches = length_bucketed_batches(first or examples, cfg.batch_size, rng,
                                      balanced=cfg.balance_labels)
    bar = tqdm(range(cfg.steps), desc=f"train {cfg.name}", unit="step", disable=not progress)
    for step in bar:
        if step == cfg.first_steps and first:
            log.info("step %d: curriculum stage 2, all tasks %s", step, sorted(examples))
            batches = length_bucketed_batches(examples, cfg.batch_size, rng,
                                              balanced=cfg.balance_labels)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = answer_loss(model, collate(processor, next(batches)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
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


def save(model: PreTrainedModel, processor: ProcessorMixin, cfg: MicroConfig, out: Path,
         result: TrainResult, command: str) -> Path:
    """Write weights (safetensors), processor and :data:`SUMMARY` (recipe + losses) to ``out``."""
    if cfg.lora_rank and not result.lora:
        raise ValueError(f"{cfg.name} trains LoRA adapters (lora_rank {cfg.lora_rank}) but the "
                         "result carries no LoRA factors: pass the TrainResult of run_recipe, "
                         "or the saved model would lack the adapters merged into its LM")
    out.mkdir(parents=True, exist_ok=True)
    if cfg.pretrained:
        _save_trained_parts(model, cfg, out, result.lora or {})
    else:
        model.save_pretrained(out)
    processor.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    n_trained = n_params
    if cfg.pretrained:
        from sn_interp.models.pretrained_lm import trained_state

        parts = [*trained_state(model).values(), *(result.lora or {}).values()]
        n_trained = sum(t.numel() for t in parts)
    summary = {"config": cfg.to_dict(), "command": command, "parameters": n_params,
               "trained_parameters": n_trained,
               "lora_parameters": sum(t.numel() for t in (result.lora or {}).values()),
               "train_seconds": round(result.seconds, 1), "torch": torch.__version__,
               "transformers": transformers.__version__,
               "loss_first_25": round(result.mean_loss(first=25), 4),
               "loss_last_100": round(result.mean_loss(last=100), 4),
               "loss_every_100": [round(float(np.mean(result.losses[i:i + 100])), 4)
                                  for i in range(0, len(result.losses), 100)]}
    if result.stage0:
        losses = result.stage0["losses"]
        summary["stage0"] = {
            "seconds": result.stage0["seconds"], "val_accuracy": result.stage0["val_accuracy"],
            "val_images": result.stage0["val_images"],
            "loss_every_100": [round(float(np.mean(losses[i:i + 100])), 4)
                               for i in range(0, len(losses), 100)]}
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return out


def _save_trained_parts(model: PreTrainedModel, cfg: MicroConfig, out: Path,
                        lora: dict[str, torch.Tensor]) -> None:
    """Write only what training changed, plus what :mod:`~sn_interp.models.pretrained_lm`
    needs to assemble the full model at first load (the LM comes from its wheel)."""
    from safetensors.torch import save_file

    from sn_interp.models import pretrained_lm as plm

    save_file({**plm.trained_state(model), **lora}, out / plm.TRAINED_FILE,
              metadata={"format": "pt"})
    (out / plm.CONFIG_FILE).write_text(model.config.to_json_string())
    model.generation_config.save_pretrained(out)
    lm = plm.PRETRAINED_LMS[cfg.lm_name]
    spec: dict[str, object] = {
        "language_model": lm.name, "requirement": lm.requirement, "file": lm.file,
        "sha256": lm.sha256, "trained": plm.TRAINED_FILE, "config": plm.CONFIG_FILE}
    if lora:
        spec["lora"] = {"rank": cfg.lora_rank, "alpha": cfg.lora_alpha}
    (out / plm.ASSEMBLE_FILE).write_text(json.dumps(spec, indent=2) + "\n")


def run_recipe(model: PreTrainedModel, processor: ProcessorMixin, cfg: MicroConfig,
               examples: dict[str, list[Example]], *, progress: bool = True,
               loss_log: Path | None = None) -> TrainResult:
    """Every stage of ``cfg``'s recipe on ``model`` in place: stage 0 (vision pretraining) if
    configured, then the instruction stage (vision tower frozen unless ``train_vision``, LoRA
    adapters on the LM if ``lora_rank``), then the adapters merged into the LM."""
    from sn_interp.checkpoints.micro.vision import pretrain_vision

    start = time.perf_counter()
    stage0 = None
    if cfg.vision_pretrain_steps:
        if not isinstance(model, LlavaForConditionalGeneration):
            raise TypeError(f"{cfg.name}: stage 0 (vision_pretrain_steps) trains a LLaVA vision "
                            f"tower; {type(model).__name__} has none (set vision_pretrain_steps=0)")
        stage0 = pretrain_vision(model, processor, cfg)
    if not cfg.train_vision:
        model.get_submodule("model.vision_tower").requires_grad_(False)
    if cfg.lora_rank:
        log.info("LoRA rank %d on %s: %d adapter parameters", cfg.lora_rank,
                 ",".join(cfg.lora_targets), add_lora(model, cfg))
    result = train(model, processor, cfg, examples, progress=progress, loss_log=loss_log)
    result.stage0 = stage0
    result.lora = merge_lora(model) if cfg.lora_rank else None
    result.seconds = time.perf_counter() - start
    return result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("name", choices=sorted(MICRO_CONFIGS), help="micro model to train")
    p.add_argument("--out", type=Path, help="output directory (default: data/models/<name>)")
    p.add_argument("--loss-log", type=Path, help="per-step loss TSV (default: none)")
    overridable = {"steps", "batch_size", "lr", "warmup", "seed", "max_images", "threads",
                   "first_steps", "vision_pretrain_steps", "lora_rank"}
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
    result = run_recipe(model, processor, cfg, examples, progress=not args.no_progress,
                        loss_log=args.loss_log)
    command = "python -m sn_interp.checkpoints.micro.train " + " ".join(
        argv if argv is not None else sys.argv[1:])
    out = save(model, processor, cfg, args.out or DATA_MODELS / cfg.name, result, command)
    log.info("saved %s in %.0f s; loss %.4f -> %.4f", out, result.seconds,
             result.mean_loss(first=25), result.mean_loss(last=100))


if __name__ == "__main__":
    main()
