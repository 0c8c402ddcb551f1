"""Hub adapters on tiny local fixtures in each benchmark's schema (tests/fixtures/tasks/hub)."""

from __future__ import annotations

import json
import shutil
import zlib
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

import sn_interp as sn
from sn_interp.tasks import HubUnavailableError
from sn_interp.tasks.hub import ADAPTERS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks" / "hub"


def materialise(name: str, tmp_path: Path) -> Path:
    """Copy the fixture next to generated PNGs for every image path it names."""
    src = FIXTURES / f"{name}.jsonl"
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    for line in src.read_text().splitlines():
        for value in json.loads(line).values():
            if isinstance(value, str) and value.startswith("img/"):
                rgb = tuple(zlib.crc32(value.encode()).to_bytes(4, "big")[:3])
                (tmp_path / "img").mkdir(exist_ok=True)
                Image.new("RGB", (12, 10), rgb).save(tmp_path / value)
    return dst


# name, options, fixture, expected rows, expected class counts (by name)
CASES = [
    ("pope", {}, "pope", 8, {"yes": 4, "no": 4}),
    ("pope", {"category": "random"}, "pope", 4, {"yes": 2, "no": 2}),
    ("aokvqa", {}, "aokvqa", 8, {"A": 2, "B": 2, "C": 2, "D": 2}),
    ("vizwiz", {}, "vizwiz", 6, {"answerable": 3, "unanswerable": 3}),
    ("clevr", {}, "clevr", 6, {"cube": 2, "sphere": 2, "cylinder": 2}),
    ("scienceqa", {}, "scienceqa", 8, {"A": 3, "B": 3, "C": 2}),
    ("instaorder-depth", {}, "instaorder-depth", 6, {"A": 3, "B": 3}),
    ("instaorder-occlusion", {}, "instaorder-occlusion", 6, {"A": 3, "B": 3}),
    ("eurosat", {}, "eurosat", 20, {c: 2 for c in ADAPTERS["eurosat"].classes()}),
    ("oxford-pets", {}, "oxford-pets", 74, {c: 2 for c in ADAPTERS["oxford-pets"].classes()}),
    ("mhalubench", {}, "mhalubench", 6, {"hallucination": 3, "non-hallucination": 3}),
    ("vlguard", {}, "vlguard", 6, {"safe": 2, "unsafe": 4}),
    ("blink-counting", {}, "blink", 8, {"A": 2, "B": 2, "C": 2, "D": 2}),
    ("naturalbench", {}, "naturalbench", 12, {"yes": 6, "no": 6}),
]


@pytest.mark.parametrize("name, options, fixture, n_rows, counts", CASES,
                         ids=[f"{c[0]}{'-' + '-'.join(c[1].values()) if c[1] else ''}"
                              for c in CASES])
def test_adapter_maps_fixture(name, options, fixture, n_rows, counts, tmp_path):
    task = sn.load_task(name, path=materialise(fixture, tmp_path), **options)
    assert len(task) == n_rows
    found = Counter(task.class_names[i] for i in task.labels)
    assert found == Counter({k: v for k, v in counts.items() if v})
    assert len(task.prompts) >= 3
    sample_ids = set()
    for s in task:
        assert s.image.mode == "RGB" and s.task == name and s.label_name in counts
        assert s.question.strip() and "{" not in s.question
        sample_ids.add(s.sample_id)
    assert len(sample_ids) == len(task)
    ds = task.dataset
    assert isinstance(ds.features["image"], datasets.Image)
    assert isinstance(ds.features["label"], datasets.ClassLabel)
    assert {"question", "image_id"} <= set(ds.column_names)


def test_row_choices_render_as_options(tmp_path):
    task = sn.load_task("aokvqa", path=materialise("aokvqa", tmp_path))
    assert task.answer_format == "multiple_choice"
    assert task[0].question == ("What is the object number 0 used for?\nA. eating\nB. driving\n"
                                "C. sleeping\nD. writing\nAnswer with the letter.")


def test_pope_questions_and_ids(tmp_path):
    task = sn.load_task("pope", path=materialise("pope", tmp_path))
    s = task[0]
    assert s.question == "Is there a dog in the image? Answer yes or no."
    assert (s.label_name, s.image_id, s.sample_id) == ("yes", "100", "pope/100/yes_no")
    assert task.answer_format == "yes_no" and task.class_names == ("no", "yes")
    mc = task.with_prompt("mc")
    assert mc.answer_format == "multiple_choice" and "A. no\nB. yes" in mc[0].question


def test_scienceqa_drops_text_only_and_adds_hint(tmp_path):
    task = sn.load_task("scienceqa", path=materialise("scienceqa", tmp_path))
    assert task.class_names == ("A", "B", "C")  # letters up to the most options
    assert task[1].question.startswith("Context: Select the best answer.\n")


def test_blink_multi_image_rows_are_composited(tmp_path):
    task = sn.load_task("blink-counting", path=materialise("blink", tmp_path))
    single, multi = task[0].image, task[7].image
    assert single.size == (12, 10)
    assert multi.height == 384 and multi.width > 2 * 384  # two 12x10 images side by side


def test_local_copy_formats_agree(tmp_path):
    """A save_to_disk directory and a parquet file in the hub schema load like the jsonl."""
    jsonl = materialise("pope", tmp_path)
    ref = sn.load_task("pope", path=jsonl)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    columns["image"] = [Image.open(tmp_path / p) for p in columns["image"]]
    hub_like = datasets.Dataset.from_dict(columns).cast_column("image", datasets.Image())
    hub_like.save_to_disk(str(tmp_path / "saved"))
    hub_like.to_parquet(str(tmp_path / "pope.parquet"))
    for path in (tmp_path / "saved", tmp_path / "pope.parquet"):
        task = sn.load_task("pope", path=path)
        assert task.image_ids == ref.image_ids
        assert np.array_equal(task.labels, ref.labels)
        assert np.array_equal(np.asarray(task[3].image), np.asarray(ref[3].image))


def test_hub_offline_error_says_how_to_use_a_local_copy():
    with pytest.raises(HubUnavailableError, match=r"lmms-lab/POPE.*unreachable.*path="):
        sn.load_task("pope")
    with pytest.raises(HubUnavailableError, match="no copy on the Hugging Face Hub"):
        sn.load_task("instaorder-depth")


def test_adapter_errors(tmp_path):
    path = materialise("pope", tmp_path)
    with pytest.raises(TypeError, match=r"no option\(s\) \['colour'\].*category"):
        sn.load_task("pope", path=path, colour="red")
    with pytest.raises(ValueError, match="no 'train' partition"):
        sn.load_task("pope", path=path, partition="train")
    with pytest.raises(ValueError, match="no rows left"):
        sn.load_task("pope", path=path, category="popular")
    with pytest.raises(ValueError, match="unknown family 'texture'"):
        sn.load_task("clevr", path=materialise("clevr", tmp_path), family="texture")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sn.load_task("pope", path=tmp_path / "nope.parquet")


def test_adapter_bad_label_and_missing_image_name_the_row(tmp_path):
    path = materialise("pope", tmp_path)
    lines = path.read_text().splitlines()
    bad = json.loads(lines[2]) | {"answer": "maybe"}
    path.write_text("\n".join([*lines[:2], json.dumps(bad), *lines[3:]]) + "\n")
    with pytest.raises(ValueError, match=r"row 3: label 'maybe' is outside the class list"):
        sn.load_task("pope", path=path)
    missing = json.loads(lines[1]) | {"image": "img/missing.png"}
    path.write_text("\n".join([lines[0], json.dumps(missing)]) + "\n")
    with pytest.raises(FileNotFoundError, match=r"row 2: image 'img/missing.png'"):
        sn.load_task("pope", path=path)


def test_missing_column_names_the_schema(tmp_path):
    path = materialise("vizwiz", tmp_path)
    with pytest.raises(KeyError, match="lack the column.*Expected schema"):
        sn.load_task("aokvqa", path=path)


def test_every_hub_adapter_is_registered_and_renders():
    tasks = sn.tasks.list_tasks()
    for name in ("pope", "aokvqa", "vizwiz", "clevr", "scienceqa", "instaorder-depth",
                 "instaorder-occlusion", "eurosat", "oxford-pets", "mhalubench", "vlguard",
                 "naturalbench", "blink-relative-depth", "blink-jigsaw"):
        assert tasks[name].kind == "hub"
