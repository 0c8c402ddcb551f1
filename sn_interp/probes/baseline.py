"""The base model's own answer (zero-shot), mapped to class indices.

Answer mapping (:func:`map_answer`, pure, applied to the decoded generation), by format:

``multiple_choice`` (options A, B, ... in ``class_names`` order), first rule that fires:
  1. the answer is a bare letter, optionally bracketed or punctuated: ``"B"``, ``"(B)"``, ``"B."``;
  2. it starts with a letter and a delimiter: ``"(B) Coat"``, ``"B. coat"``, ``"B) coat"``,
     ``"B: coat"`` (a letter followed only by a space, ``"A coat"``, is not taken as a letter);
  3. an explicit phrase: ``"The answer is B"``, ``"Answer: (B)"``, ``"option B"``;
  4. otherwise the ``open`` rule on the class names.
``yes_no``: the first standalone ``yes`` or ``no`` in the text. When the class names are
  ``yes``/``no`` (any case, any order) it maps by name; otherwise ``no`` -> class 0 and
  ``yes`` -> class 1 (the binary convention: label 1 is the positive answer). Without a
  yes/no word it falls back to the ``open`` rule.
``open``: the class name (case-insensitive, whole words, ``_`` read as a space, ``a/b`` names
  match either part, an optional plural ``s``/``es``) that occurs **earliest** in the text;
  at the same position the longest name wins.
Nothing found: -1 (unmappable, counted wrong by :func:`sn_interp.probes.evaluate`).

Example:
    >>> map_answer("(B) Coat", ("shirt", "coat"), "multiple_choice")
    1
    >>> map_answer("The answer is yes.", ("no", "yes"), "yes_no")
    1
    >>> map_answer("I think it's a dog", ("cat", "dog"))
    1
    >>> map_answer("banana", ("cat", "dog"))
    -1
"""

from __future__ import annotations

import json
import logging
import re
import string
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from sn_interp.sample import sample_coords

# class_answer_strings is defined below probes (checkpoint building uses it) and stays
# importable from here, where the zero-shot baseline and its callers have always found it.
from sn_interp.tasks.prompts import class_answer_strings, yes_no_classes

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from sn_interp.models.vlm import VLM
    from sn_interp.sample import Sample

log = logging.getLogger(__name__)
MODES = ("generate", "first_token")
_BARE = re.compile(r"^\W*\(?([a-z])\)?\W*$")
_LEAD = re.compile(r"^\W*(?:\(([a-z])\)|([a-z])[.):])(?:\s|$)")
_PHRASE = re.compile(r"\b(?:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*\(?([a-z])\)?(?=[\s.,;:!)]|$)")
_YESNO = re.compile(r"\b(yes|no)\b")


def _name_patterns(name: str) -> list[str]:
    name = name.lower().replace("_", " ").strip()
    parts = [name] + ([p.strip() for p in name.split("/") if p.strip()] if "/" in name else [])
    return [re.escape(p) for p in parts]


def _match_open(text: str, class_names: Sequence[str]) -> int:
    best: tuple[int, int, int] | None = None  # (start, -length, class)
    for c, name in enumerate(class_names):
        for pat in _name_patterns(name):
            m = re.search(rf"(?<!\w){pat}(?:s|es)?(?!\w)", text)
            if m and (best is None or (m.start(), -len(m.group()), c) < best):
                best = (m.start(), -len(m.group()), c)
    return -1 if best is None else best[2]


def map_answer(text: str, class_names: Sequence[str], answer_format: str = "open") -> int:
    """Class index of a free-text answer, or -1 (rules in the module docstring).

    Example:
        >>> map_answer("(B) Coat", ("shirt", "coat"), "multiple_choice")
        1
        >>> map_answer("banana", ("cat", "dog"))
        -1
    """
    t = " ".join(str(text).lower().replace("*", "").split())
    if answer_format == "multiple_choice":
        letters = string.ascii_lowercase[:len(class_names)]
        for rx in (_BARE, _LEAD, _PHRASE):
            m = rx.search(t)
            letter = m and next((g for g in m.groups() if g), None)
            if letter and letter in letters:
                return letters.index(letter)
    elif answer_format == "yes_no":
        m = _YESNO.search(t)
        if m:
            return yes_no_classes(class_names)[m.group(1)]
    elif answer_format != "open":
        raise ValueError(f"unknown answer_format {answer_format!r}")
    return _match_open(t, class_names)


def first_token_ids(tokenizer: PreTrainedTokenizerBase, answer: str) -> list[int]:
    """Distinct first tokens of ``answer`` with/without a leading space, in three casings."""
    ids = []
    for v in {answer, answer.lower(), answer.capitalize()}:
        for s in (v, " " + v):
            toks = tokenizer.encode(s, add_special_tokens=False)
            if toks and toks[0] not in ids:
                ids.append(toks[0])
    return ids


def _batch_generate(vlm: VLM, batch: Sequence[Sample], max_new_tokens: int) -> tuple[list, list]:
    import torch
    enc = vlm.encode(batch)
    tok = vlm.processor.tokenizer
    with torch.no_grad():
        # Any: PreTrainedModel does not declare generate(); every family's model class does.
        model: Any = vlm.model
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id or tok.eos_token_id)
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    preds = [map_answer(t, s.class_names, s.answer_format) for t, s in zip(texts, batch, strict=True)]
    return [t.strip() for t in texts], preds


def _batch_first_token(vlm: VLM, batch: Sequence[Sample]) -> tuple[list, list]:
    import torch
    enc = vlm.encode(batch)
    tok = vlm.processor.tokenizer
    with torch.no_grad():
        logits = vlm.model(**enc).logits[:, -1, :].float().cpu().numpy()
    texts, preds = [], []
    for row, s in zip(logits, batch, strict=True):
        cands = [first_token_ids(tok, a) for a in class_answer_strings(s.class_names,
                                                                       s.answer_format)]
        scores = [row[ids].max() for ids in cands]
        c = int(np.argmax(scores))  # ties to the lowest class index
        preds.append(c)
        texts.append(tok.decode([cands[c][int(np.argmax(row[cands[c]]))]]).strip())
    return texts, preds


def zero_shot(vlm: VLM, samples: Sequence[Sample], *, mode: str = "generate",
              max_new_tokens: int = 16, batch_size: int = 8, progress: bool = True) -> xr.Dataset:
    """The model's own answers, mapped to class indices.

    Args:
        vlm: A loaded :class:`sn_interp.VLM`.
        samples: Samples with ``class_names`` and ``answer_format`` set.
        mode: ``"generate"`` (greedy generation, then :func:`map_answer`) or
            ``"first_token"`` (the class whose first answer token has the highest logit at
            the first generated position; always mapped).
        max_new_tokens: Generation length (tokens) of the answer.
        batch_size: Samples per forward pass.

    Returns:
        Dataset over ``sample`` with ``pred`` (int64, -1 when unmappable), ``answer`` (str),
        ``mapped`` (bool) and the label coords.

    Example:
        >>> import sn_interp as sn
        >>> vlm = sn.load_model("tiny-llava")
        >>> probe, test = sn.load_task("shapes-color", n=60).split(shots=5, seed=0)
        >>> acts = sn.extract(vlm, probe, progress=False)    # (sample, layer, ...) per site
        >>> base = sn.zero_shot(vlm, test[:4], max_new_tokens=3, progress=False)
        >>> base.pred.dims, base.mapped.dtype.kind           # -1 where unmapped
        (('sample',), 'b')
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    samples = list(samples)
    if not samples:
        raise ValueError("zero_shot needs at least one sample")
    bad = [i for i, s in enumerate(samples) if not s.class_names]
    if bad:
        raise ValueError(f"samples {bad[:5]} have no class_names; answers cannot be mapped")
    texts, preds = [], []
    starts = range(0, len(samples), batch_size)
    for i in tqdm(starts, desc=f"zero-shot ({mode})", unit="batch", disable=not progress):
        batch = samples[i:i + batch_size]
        t, p = (_batch_generate(vlm, batch, max_new_tokens) if mode == "generate"
                else _batch_first_token(vlm, batch))
        texts += t
        preds += p
    pred = np.array(preds, np.int64)
    log.info("zero-shot (%s): %d/%d answers mapped", mode, int((pred >= 0).sum()), len(pred))
    return xr.Dataset({"pred": ("sample", pred, {"long_name": "predicted class"}),
                       "answer": ("sample", np.array(texts, str), {"long_name": "model answer"}),
                       "mapped": ("sample", pred >= 0, {"long_name": "answer mapped"})},
                      coords=sample_coords(samples),
                      attrs={"model_id": str(getattr(vlm, "model_id", "")), "mode": mode,
                             **_shared_class_names(samples)})


def _shared_class_names(samples: Sequence[Sample]) -> dict[str, str]:
    names = {tuple(s.class_names) for s in samples}
    return {"class_names": json.dumps(list(names.pop()))} if len(names) == 1 else {}
