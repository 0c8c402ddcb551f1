"""The user's own data: jsonl records and image folders, and their error messages."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sn_interp as sn


def _png(path: Path, value: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, 255 - value, 0)).save(path)
    return path.name


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    lines = []
    for i in range(12):
        _png(tmp_path / "imgs" / f"{i}.png", 20 * i)
        lines.append(json.dumps({"image": f"imgs/{i}.png", "question": f"Animal {i}?",
                                 "label": ["dog", "cat", "bird"][i % 3]}))
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(lines) + "\n\n")
    return path


def test_jsonl_task(jsonl):
    task = sn.load_task(jsonl)
    assert task.name == "mine" and task.class_names == ("bird", "cat", "dog")  # sorted
    assert Counter(task.labels.tolist()) == {0: 4, 1: 4, 2: 4}
    s = task[0]
    assert (s.question, s.label_name, s.image_id) == ("Animal 0?", "dog", "imgs/0.png")
    assert np.asarray(s.image)[0, 0].tolist() == [0, 255, 0]
    assert task.with_prompt("mc")[0].question == ("Animal 0?\nA. bird\nB. cat\nC. dog\n"
                                                   "Answer with the letter.")
    probe, test = task.split(shots=2, seed=0)
    assert len(probe) == 6 and len(test) == 6 and not set(probe.image_ids) & set(test.image_ids)


def test_jsonl_classes_option_orders_labels(jsonl):
    task = sn.load_task(jsonl, classes=["dog", "cat", "bird", "fish"])
    assert task[0].label == 0 and task.class_names[3] == "fish"
    with pytest.raises(ValueError, match=r"mine.jsonl, line 2: label 'cat' is outside"):
        sn.load_task(jsonl, classes=["dog", "bird"])


def test_jsonl_question_option_fills_missing_questions(tmp_path):
    _png(tmp_path / "a.png", 1)
    _png(tmp_path / "b.png", 2)
    path = tmp_path / "q.jsonl"
    path.write_text('{"image": "a.png", "label": "x"}\n{"image": "b.png", "label": "y"}\n')
    assert sn.load_task(path, question="Which?")[1].question == "Which?"
    with pytest.raises(ValueError, match=r"q.jsonl, line 1: no question"):
        sn.load_task(path)


@pytest.mark.parametrize("content, message", [
    ("", r"empty.jsonl is empty"),
    ('{"image": "0.png", "label": "a"}\n{"image": "1.png", "label": \n', r"line 2: not valid JSON"),
    ('{"image": "0.png", "label": "a"}\n["a", "b"]\n', r"line 2: expected an object"),
    ('{"image": "0.png", "label": "a"}\n{"label": "a"}\n', r"line 2: record lacks \['image'\]"),
    ('{"image": "0.png", "label": "a", "question": "q"}\n'
     '{"image": "missing.png", "label": "a", "question": "q"}\n',
     r"line 2: image .*missing.png' does not exist"),
    ('{"image": "0.png", "label": "a", "question": "q"}\n'
     '{"image": "broken.png", "label": "a", "question": "q"}\n',
     r"line 2: image .*broken.png' is unreadable"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, content, message):
    _png(tmp_path / "0.png", 0)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        sn.load_task(path)


def test_folder_task(tmp_path):
    for cls, n in (("cats", 3), ("dogs", 4)):
        for i in range(n):
            _png(tmp_path / "pets" / cls / f"{i}.png", 30 * i)
    (tmp_path / "pets" / "cats" / "notes.txt").write_text("ignored")
    task = sn.load_task(tmp_path / "pets", question="Which pet is this?")
    assert task.class_names == ("cats", "dogs") and len(task) == 7
    assert task[0].image_id == "cats/0.png" and task[0].question == "Which pet is this?"
    assert task.with_prompt("open")[0].question.endswith("Answer with the class name.")
    only = sn.load_task(tmp_path / "pets", question="Q?", classes=["dogs"])
    assert set(only.labels.tolist()) == {0} and len(only) == 4
    with pytest.raises(ValueError, match="pass question="):
        sn.load_task(tmp_path / "pets")
    with pytest.raises(FileNotFoundError, match="no sub-folder for class 'birds'"):
        sn.load_task(tmp_path / "pets", question="Q?", classes=["birds"])
    (tmp_path / "pets" / "fish").mkdir()
    with pytest.raises(ValueError, match="fish holds no images"):
        sn.load_task(tmp_path / "pets", question="Q?")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no class sub-folders"):
        sn.load_task(tmp_path / "empty", question="Q?")


def test_user_data_rejects_unknown_options(jsonl):
    with pytest.raises(TypeError, match=r"no option\(s\) \['path'\]"):
        sn.load_task(jsonl, path="x")
