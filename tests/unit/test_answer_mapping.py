"""Answer mapping on real-looking model outputs (pure function, no model)."""

from __future__ import annotations

import pytest

from sn_interp.probes.baseline import class_answer_strings, first_token_ids, map_answer

MC = ("shirt", "coat", "dog")


@pytest.mark.parametrize("text,expect", [
    ("B", 1), ("b", 1), ("(B) Coat", 1), ("B. coat", 1), ("B) coat", 1), ("B: coat", 1),
    ("(C)", 2), ("The answer is B.", 1), ("Answer: (A)", 0), ("**B**", 1), ("option C", 2),
    ("coat.", 1), ("A coat", 1), ("I think it's a dog", 2), ("D", -1), ("(E) banana", -1),
    ("zzz ### 42", -1), ("", -1),
])
def test_multiple_choice(text, expect):
    assert map_answer(text, MC, "multiple_choice") == expect


@pytest.mark.parametrize("text,names,expect", [
    ("The answer is yes.", ("no", "yes"), 1), ("Yes", ("no", "yes"), 1),
    ("No, there is no cat.", ("no", "yes"), 0), ("yes", ("Yes", "No"), 0),
    ("NO.", ("Yes", "No"), 1), ("yes", ("absent", "present"), 1), ("no", ("absent", "present"), 0),
    ("It is present", ("absent", "present"), 1), ("nope, not sure", ("no", "yes"), -1),
    ("I don't know", ("no", "yes"), -1),
])
def test_yes_no(text, names, expect):
    assert map_answer(text, names, "yes_no") == expect


@pytest.mark.parametrize("text,expect", [
    ("coat.", 1), ("Coat", 1), ("I think it's a dog", 2), ("Dogs", 2),
    ("It's a cat, not a dog", 0), ("a t-shirt", 3), ("top", 3), ("sandal boots", -1),
    ("unmappable garbage", -1), ("coated", -1),
])
def test_open(text, expect):
    assert map_answer(text, ("cat", "coat", "dog", "T-shirt/top"), "open") == expect


def test_open_longest_name_wins_at_same_position():
    assert map_answer("ankle boot", ("ankle", "ankle_boot")) == 1


def test_unknown_format():
    with pytest.raises(ValueError, match="answer_format"):
        map_answer("B", MC, "essay")


def test_class_answer_strings_and_first_tokens():
    assert class_answer_strings(MC, "multiple_choice") == ["A", "B", "C"]
    assert class_answer_strings(("no", "yes"), "yes_no") == ["No", "Yes"]
    assert class_answer_strings(("ankle_boot",), "open") == ["ankle boot"]

    class Tok:  # a whitespace tokenizer: one token per word, a leading space its own token
        vocab: dict[str, int] = {}

        def encode(self, s, add_special_tokens=False):
            parts = ([" "] if s.startswith(" ") else []) + s.split()
            return [self.vocab.setdefault(p, len(self.vocab)) for p in parts]

    tok = Tok()
    ids = first_token_ids(tok, "coat")
    assert sorted(tok.vocab[w] for w in ("coat", "Coat", " ")) == sorted(ids)
