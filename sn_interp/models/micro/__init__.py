"""Micro VLMs: small LLaVA- and Qwen3-VL-family models trained from scratch on the embedded tasks.

The trained checkpoints are committed under ``data/models/<name>/`` and load with
``sn.load_model("micro-llava")`` / ``sn.load_model("micro-qwen3-vl")``. This package holds the
recipe that made them:

- :mod:`.config`: one frozen :class:`MicroConfig` per model (architecture and training
  hyper-parameters) and the builders of its HF config, tokenizer and processor;
- :mod:`.data`: instruction examples from the embedded tasks' ``train`` partition (every
  template except the held-out one, never a shift) and the left-padded batch collation;
- :mod:`.train`: the seeded training loop and ``python -m sn_interp.models.micro.train``;
- :mod:`.card`: zero-shot accuracy per task and prompt on the ``eval`` partition, for the
  model card.
"""

from sn_interp.models.micro.config import MICRO_CONFIGS, MICRO_NAMES, MicroConfig

__all__ = ["MICRO_CONFIGS", "MICRO_NAMES", "MicroConfig"]
