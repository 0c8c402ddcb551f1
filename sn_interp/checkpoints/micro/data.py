"""Instruction data for the micro VLMs: train-partition images, every non-held-out template.

Each :class:`Example` is one image, one question rendered by one of the task's templates and
the answer text in that template's format (the letter for ``multiple_choice``, the class name
for ``open``, ``Yes``/``No`` for ``yes_no``; the same strings :mod:`sn_interp.probes.baseline`
maps back to classes). Held out: the eval partition, the task's held-out template, every shift.

Example:
    >>> examples = instruction_examples(("shapes-color",), max_images=12)  # doctest: +SKIP
    >>> examples[0].answer                                                 # doctest: +SKIP
    'A'
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature, PreTrainedTokenizerBase, ProcessorMixin

from sn_interp.sample import Sample
from sn_interp.tasks.prompts import class_answer_strings

if TYPE_CHECKING:
    from sn_interp.tasks import Task

log = logging.getLogger(__name__)

__all__ = ["Example", "answer_text", "chat_prompt", "collate", "instruction_examples",
           "length_bucketed_batches", "sample_batch", "training_prompts"]


@dataclass(frozen=True)
class Example:
    """One instruction example: image, question, target answer text."""

    image: Image.Image
    question: str
    answer: str
    task: str
    prompt_id: str
    image_id: str
    label: int = -1
    """Class index of the answer (for label-balanced batches)."""


def answer_text(sample: Sample) -> str:
    """The target answer of a labelled sample in its template's answer format."""
    if sample.label is None:
        raise ValueError(f"sample {sample.sample_id!r} has no label")
    return class_answer_strings(sample.class_names, sample.answer_format)[sample.label]


def training_prompts(task: Task) -> list[str]:
    """The prompt ids used for training: all of the task's templates but the held-out one."""
    return [p for p in task.prompts if p != task.heldout_prompt]


def instruction_examples(tasks: Sequence[str], *, max_images: int | None = None,
                         seed: int = 0) -> dict[str, list[Example]]:
    """Examples per task from the ``train`` partition (no shift, held-out prompt excluded)."""
    from sn_interp.tasks import load_task

    out: dict[str, list[Example]] = {}
    for name in tasks:
        task = load_task(name, partition="train", n=max_images, seed=seed)
        if task.shift is not None:
            raise ValueError(f"task {name!r} is shifted; micro training never uses shifts")
        examples = []
        for pid in training_prompts(task):
            examples += [Example(s.image, s.question, answer_text(s), name, pid, s.image_id,
                                 cast(int, s.label)) for s in task.with_prompt(pid)]
        out[name] = examples
        log.info("%s: %d train images x %d prompts (held out: %s)", name, len(task),
                 len(training_prompts(task)), task.heldout_prompt)
    return out


def sample_batch(examples: dict[str, list[Example]], batch_size: int,
                 rng: np.random.Generator, *, balanced: bool = False) -> list[Example]:
    """A batch with tasks drawn uniformly, then one example uniformly within the task.

    With ``balanced``, a class is drawn uniformly within the task before the example, so every
    answer (every multiple-choice letter) has the same share of the training targets.
    """
    names = sorted(examples)
    picks = rng.integers(len(names), size=batch_size)
    if not balanced:
        return [examples[names[t]][rng.integers(len(examples[names[t]]))] for t in picks]
    by_class = {n: _by_label(examples[n]) for n in names}
    out = []
    for t in picks:
        groups = by_class[names[t]]
        group = groups[rng.integers(len(groups))]
        out.append(group[rng.integers(len(group))])
    return out


def _by_label(examples: list[Example]) -> list[list[Example]]:
    groups: dict[int, list[Example]] = {}
    for ex in examples:
        groups.setdefault(ex.label, []).append(ex)
    return [groups[k] for k in sorted(groups)]


def length_bucketed_batches(examples: dict[str, list[Example]], batch_size: int,
                            rng: np.random.Generator, pool: int = 8, *,
                            balanced: bool = False) -> Iterator[list[Example]]:
    """Endless batches: draw ``pool`` batches' worth, sort by question length, cut, shuffle.

    Rows of similar length share a batch, so left padding wastes little compute, while each
    batch still mixes tasks and prompts (``balanced``: see :func:`sample_batch`).
    """
    while True:
        drawn = sample_batch(examples, batch_size * pool, rng, balanced=balanced)
        drawn.sort(key=lambda ex: len(ex.question))
        chunks = [drawn[i:i + batch_size] for i in range(0, len(drawn), batch_size)]
        for i in rng.permutation(len(chunks)):
            yield chunks[i]


def _answer_ids(tokenizer: PreTrainedTokenizerBase, answer: str, prompt: str) -> list[int]:
    """Token ids of the answer as the chat template continues ``prompt``, plus EOS."""
    text = answer if prompt[-1:].isspace() else " " + answer  # "assistant\nB" vs "ASSISTANT: B"
    eos = tokenizer.eos_token_id
    if not isinstance(eos, int):
        raise ValueError(f"the tokenizer's eos_token_id is {eos!r}: training targets end with "
                         "one EOS id; set tokenizer.eos_token")
    return [*tokenizer.encode(text, add_special_tokens=False), eos]


def chat_prompt(processor: ProcessorMixin, question: str) -> str:
    """The chat-templated prompt of one image and one question, as :class:`sn_interp.VLM`
    builds it (image first, generation prompt appended)."""
    # Any: HF types a message's content as str; a multimodal chat's is a list of parts
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "image"},
                                             {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def collate(processor: ProcessorMixin, batch: Sequence[Example]) -> BatchFeature:
    """Left-padded training inputs with ``labels`` on the answer tokens and EOS only.

    Each row is the chat-templated prompt (:func:`chat_prompt`) followed by the answer and
    EOS; the processor tokenizes the full text, and the answer span is checked against the
    separately tokenized answer so prompt/answer merges can never shift the labels.
    """
    tok = cast(PreTrainedTokenizerBase, processor.tokenizer)  # ProcessorMixin leaves it untyped
    prompts = [chat_prompt(processor, ex.question) for ex in batch]
    answers = [_answer_ids(tok, ex.answer, p) for ex, p in zip(batch, prompts, strict=True)]
    # decode of one id list is one str (the stub also allows a batch's list[str])
    texts = [p + cast(str, tok.decode(ids)) for p, ids in zip(prompts, answers, strict=True)]
    tok.padding_side = "left"
    # Any: ProcessorMixin.__call__ is typed with per-modality kwargs only; the call takes the
    # flat ones (return_tensors, padding) every HF processor accepts (as in VLM.encode)
    enc = cast(Any, processor)(images=[ex.image.convert("RGB") for ex in batch], text=texts,
                               return_tensors="pt", padding=True)
    labels = torch.full_like(enc["input_ids"], -100)
    for row, ids in enumerate(answers):
        tail = enc["input_ids"][row, -len(ids):]
        if tail.tolist() != ids:
            raise RuntimeError(f"answer tokens {ids} not at the end of row {row}: "
                               f"{tail.tolist()} (tokenizer merged prompt and answer)")
        labels[row, -len(ids):] = tail
    enc["labels"] = labels
    return enc
