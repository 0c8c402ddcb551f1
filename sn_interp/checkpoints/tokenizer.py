"""Offline tokenizers for tiny and micro VLMs: byte-level BPE trained in code, family chat templates.

Nothing here touches the network. :func:`build_tokenizer` trains a small byte-level BPE on an
in-code English corpus of VQA-style words (plus any ``extra_corpus``), appends the special
tokens a family's processor and chat template need, and wraps the result as a
``PreTrainedTokenizerFast`` with left padding and the family's chat template. Byte-level BPE
starts from all 256 bytes, so any text encodes. Training is deterministic: the same corpus
always gives the same vocabulary, merges and ids.

Ids of ordinary (non-special) tokens depend only on the corpus, not on the family; the
family's special tokens come after them.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from sn_interp.models.registry import TokenizerFamily, chat_templates, tokenizer_families

__all__ = [
    "CHAT_TEMPLATES",
    "TOKENIZER_FAMILIES",
    "TokenizerFamily",
    "base_corpus",
    "build_tokenizer",
]

#: Chat templates by key, declared by the family modules (``llava``, ``qwen3_vl``, ...).
CHAT_TEMPLATES: dict[str, str] = chat_templates()
#: Tokenizer families by key, declared by the family modules.
TOKENIZER_FAMILIES: dict[str, TokenizerFamily] = tokenizer_families()

# --------------------------------------------------------------------------- corpus

_WORDS = {
    "digits": "0 1 2 3 4 5 6 7 8 9 zero one two three four five six seven eight nine ten",
    "letters": "A B C D E F G H I J a b c d e f g h i j",
    "colours": "red green blue yellow orange purple pink brown black white gray grey",
    "shapes": "circle square triangle rectangle star cube sphere cylinder cone ellipse",
    "answers": "yes no true false maybe none both neither",
    "places": "left right top bottom middle center above below front behind near far inside outside",
    "fashion": (
        "T-shirt top trouser trousers pullover dress coat sandal shirt sneaker bag ankle boot "
        "shoe hat skirt jacket sock"
    ),
    "objects": (
        "cat dog bird horse car truck airplane ship frog deer person people man woman child "
        "table chair cup bottle book phone tree house road water sky grass animal pet"
    ),
    "scenes": (
        "forest river sea lake highway industrial residential pasture crop farmland annual "
        "permanent herbaceous vegetation satellite"
    ),
    "qwords": (
        "What Which Is Are Does Do How Where Who Why When Can there this that these those the a an "
        "of in on at to from with and or is are image picture photo object color colour shape "
        "digit number letter class category kind type count many much closer occluded depth "
        "object visible answer question option options choose select single word please "
        "describe shown show see look contains contain present appear located"
    ),
}

_CHAT = (
    "USER: ASSISTANT:",
    "user",
    "assistant",
    "system",
    "You are a helpful assistant.",
    "Answer the question using a single word or phrase.",
    "Answer with the option's letter from the given choices directly.",
)

_TEMPLATES = (
    "What digit is this? {w}",
    "What is the {w} in the image? The answer is {w}.",
    "Is there a {w} in this picture? Answer yes or no.",
    "Which option is correct: {w}? Answer with a single word.",
    "The object on the left is {w}, the one on the right is not.",
    "Q: What colour is the {w}? A: {w}",
)


def base_corpus() -> list[str]:
    """The built-in training corpus: VQA-style sentences over digits, colours, shapes, ... ."""
    lines: list[str] = [line for line in _CHAT for _ in range(4)]
    for group in sorted(_WORDS):
        words = _WORDS[group].split()
        lines.append(" ".join(words))
        lines.extend(t.format(w=w) for w in words for t in _TEMPLATES)
    return lines


# --------------------------------------------------------------------------- builder


def _train_bpe(corpus: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE (no special tokens) on ``corpus``; deterministic."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    return tok


def build_tokenizer(
    family: str,
    extra_corpus: Iterable[str] = (),
    *,
    vocab_size: int = 1024,
    chat_template: str | None = None,
) -> PreTrainedTokenizerFast:
    """Build a left-padding fast tokenizer for ``family`` entirely offline.

    Args:
        family: one of :data:`TOKENIZER_FAMILIES` (``llava``, ``llava_onevision``, ``qwen_vl``).
        extra_corpus: more training text, appended to :func:`base_corpus`.
        vocab_size: upper bound on the BPE vocabulary (special tokens excluded); a small
            corpus yields fewer tokens.
        chat_template: a key of :data:`CHAT_TEMPLATES` or a jinja string; defaults to the
            family's.

    Returns:
        A ``PreTrainedTokenizerFast`` with bos/eos/pad set, ``padding_side="left"`` and a chat
        template. ``len(tokenizer)`` is the vocabulary a model config must cover.
    """
    if family not in TOKENIZER_FAMILIES:
        known = ", ".join(sorted(TOKENIZER_FAMILIES))
        raise ValueError(f"unknown tokenizer family {family!r}; known families: {known}")
    spec = TOKENIZER_FAMILIES[family]
    tok = _train_bpe([*base_corpus(), *extra_corpus], vocab_size)
    tok.add_special_tokens(list(spec.special_tokens))
    template = chat_template or spec.chat_template
    template = CHAT_TEMPLATES.get(template, template)
    kwargs = {"bos_token": spec.bos_token, "unk_token": spec.unk_token,
              "extra_special_tokens": dict(spec.named_tokens) or None}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=spec.eos_token,
        pad_token=spec.pad_token,
        padding_side="left",
        add_bos_token=spec.add_bos_token,
        add_eos_token=False,
        chat_template=template or None,
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
        **{k: v for k, v in kwargs.items() if v is not None},
    )
