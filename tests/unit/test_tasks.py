"""The embedded suite, Task splits, prompts, shifts, partitions and the CLI."""

from __future__ import annotations

import json
from collections import Counter

import datasets
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import sn_interp as sn
from sn_interp.tasks import Task, Template, stratified_take
from sn_interp.tasks import embedded as emb
from sn_interp.tasks.__main__ import main as cli_main
from sn_interp.tasks.shapes import COLORS

EMBEDDED = emb.embedded_names()
SIZES = {"digits": 32, "mnist": 28, "fashion-mnist": 28}
needs_fashion = pytest.mark.skipif(not emb.FASHION_DIR.is_dir(),
                                   reason="apt-get install dataset-fashion-mnist")


def params(names):
    return [pytest.param(n, marks=needs_fashion) if n == "fashion-mnist" else n for n in names]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def digits() -> Task:
    return sn.load_task("digits", n=200)


# ---- the embedded suite ----------------------------------------------------------------------
def test_registry_lists_the_embedded_suite():
    assert {"digits", "mnist", "fashion-mnist", "shapes-color", "shapes-shape", "shapes-count",
            "shapes-position", "shapes-exists", "shapes-occlusion"} <= set(EMBEDDED)
    assert sn.load_task is sn.tasks.load_task and sn.Task is Task


@pytest.mark.parametrize("name", params(EMBEDDED))
def test_embedded_task(name):
    k = len(sn.tasks.manifest.manifest("embedded")[name]["classes"])
    task = sn.load_task(name, n=6 * k)
    assert Counter(task.labels.tolist()) == {c: 6 for c in range(k)}  # stratified cap
    assert len(task.prompts) >= 3
    assert [p for p, t in task.prompts.items() if t.heldout] == [task.heldout_prompt]
    assert task.shifts.keys() == ({"background", "scale", "style"} if name.startswith("shapes")
                                  else {"inverted", "noisy", "rotated"})
    s = task[0]
    assert (s.task, s.prompt_id, s.split) == (name, task.prompt_id, "")
    assert s.sample_id == f"{name}/{s.image_id}/{task.prompt_id}"
    assert s.image.mode == "RGB" and s.image.size == (SIZES.get(name, 64),) * 2
    assert s.label_name == task.class_names[s.label]
    for pid, template in task.prompts.items():
        q = task.with_prompt(pid)[0].question
        assert "{" not in q and q.strip()
        if template.answer_format == "multiple_choice":
            letters = "\n".join(f"{'ABCDEFGHIJ'[i]}. {c}" for i, c in enumerate(task.class_names))
            assert letters in q and q.endswith("Answer with the letter.")
        elif template.answer_format == "open":
            assert q.endswith("Answer with the class name.")
        else:
            assert q.endswith("Answer yes or no.") and len(task.class_names) == 2


@pytest.mark.parametrize("name", ["digits", "mnist", "shapes-count"])  # fashion: own test
def test_partitions_are_fixed_and_disjoint(name):
    train, evals = (sn.load_task(name, partition=p) for p in ("train", "eval"))
    assert not set(train.image_ids) & set(evals.image_ids)
    assert len(train) + len(evals) == len(sn.load_task(name, partition="all"))
    assert train[0].split == "train" and evals[0].split == ""
    assert sn.load_task(name, partition="eval").image_ids == evals.image_ids
    counts = np.bincount(evals.labels)
    assert counts.min() > 0.05 * len(evals) / len(counts)  # every class present in eval


def test_known_sizes():
    assert len(sn.load_task("digits", partition="all")) == 1797
    assert len(sn.load_task("mnist", partition="all")) == 5000
    assert len(sn.load_task("shapes-color", partition="all")) == 1200


@needs_fashion
def test_fashion_mnist_uses_the_official_split():
    evals = sn.load_task("fashion-mnist")
    assert len(evals) == 10_000 and evals.image_ids[0] == "t10k-00000"
    assert evals.class_names[9] == "ankle boot"


def test_fashion_mnist_missing_package_says_how(monkeypatch, tmp_path):
    monkeypatch.setattr(emb, "FASHION_DIR", tmp_path / "absent")
    monkeypatch.setenv("SN_INTERP_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        sn.load_task("fashion-mnist")


def test_generation_is_deterministic_and_cached(monkeypatch, tmp_path):
    ref = sn.load_task("shapes-occlusion", partition="all")
    monkeypatch.setenv("SN_INTERP_CACHE", str(tmp_path))
    rebuilt = sn.load_task("shapes-occlusion", partition="all")
    assert any((tmp_path / "tasks" / "shapes-occlusion").iterdir())
    assert rebuilt.image_ids == ref.image_ids and np.array_equal(rebuilt.labels, ref.labels)
    for i in (0, 17, 1199):
        assert np.array_equal(pixels(rebuilt[i].image), pixels(ref[i].image))
        assert rebuilt[i].question == ref[i].question


# ---- the shapes scenes show their labels (checked from pixels, not from the scene spec) -----
def _mask(image: np.ndarray, rgb) -> np.ndarray:
    return (np.abs(image - np.array(rgb)).sum(axis=2) < 30)


def test_shapes_color_pixels_match_label():
    task = sn.load_task("shapes-color", n=60)
    for s in task:
        img = pixels(s.image)
        assert _mask(img, COLORS[s.label_name]).sum() > 100


def test_shapes_count_matches_connected_components():
    task = sn.load_task("shapes-count", n=60)
    for s in task:
        _, found = ndimage.label(pixels(s.image).sum(axis=2) < 3 * 250)
        assert found == int(s.label_name), s.sample_id


def test_shapes_position_matches_centroids():
    task = sn.load_task("shapes-position", n=40)
    for s, row in zip(task, task.data, strict=False):
        img = pixels(s.image)
        subject, reference = row["subject"].split()[0], row["reference"].split()[0]
        xs = [np.nonzero(_mask(img, COLORS[c]))[1].mean() for c in (subject, reference)]
        assert (xs[0] < xs[1]) == (s.label_name == "left"), s.sample_id


# ---- split ----------------------------------------------------------------------------------
def test_split_sizes_disjoint_stratified(digits):
    probe, test = digits.split(shots=5, seed=0)
    assert len(probe) == 50 and len(test) == 150
    assert Counter(probe.labels.tolist()) == {c: 5 for c in range(10)}
    assert not set(probe.image_ids) & set(test.image_ids)
    assert set(probe.image_ids) | set(test.image_ids) == set(digits.image_ids)
    assert {s.split for s in probe} == {"probe"} and {s.split for s in test} == {"test"}


def test_split_is_deterministic_per_seed(digits):
    a, b, c = (digits.split(5, seed)[0].image_ids for seed in (0, 0, 1))
    assert a == b and a != c


def test_split_ignores_prompt_and_shift(digits):
    ref = digits.split(5, 0)
    for other in (digits.with_prompt("open"), digits.shifted("noisy"),
                  digits.with_prompt("mc_terse").shifted("rotated")):
        got = other.split(5, 0)
        assert got[0].image_ids == ref[0].image_ids and got[1].image_ids == ref[1].image_ids
    probe = ref[0].with_prompt("open").shifted("inverted")
    assert probe[0].split == "probe" and probe.image_ids == ref[0].image_ids


def test_split_test_size_caps_stratified(digits):
    probe, test = digits.split(shots=5, seed=3, test_size=40)
    assert len(test) == 40 and Counter(test.labels.tolist()) == {c: 4 for c in range(10)}
    assert not set(probe.image_ids) & set(test.image_ids)
    assert test.image_ids == digits.split(5, 3, test_size=40)[1].image_ids


def test_split_errors(digits):
    with pytest.raises(ValueError, match=r"class '0' has 20 examples, fewer than shots=21"):
        digits.split(shots=21)
    with pytest.raises(ValueError, match="no rows left for the test set"):
        digits.split(shots=20)
    with pytest.raises(ValueError, match="shots must be at least 1"):
        digits.split(shots=0)


def test_stratified_take_is_proportional():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    idx = stratified_take(labels, 10, np.random.default_rng(0))
    assert Counter(labels[idx].tolist()) == {0: 6, 1: 3, 2: 1}
    assert np.array_equal(idx, np.sort(idx)) and len(set(idx)) == 10


def test_n_cap_deterministic_per_seed():
    a, b, c = (sn.load_task("mnist", n=50, seed=s).image_ids for s in (0, 0, 1))
    assert a == b and a != c and len(a) == 50


# ---- prompts ----------------------------------------------------------------------------------
def test_with_prompt_switches_format_and_keeps_images(digits):
    mc, op = digits.with_prompt("mc"), digits.with_prompt("open")
    assert (mc.answer_format, op.answer_format) == ("multiple_choice", "open")
    assert mc[3].question.startswith("Which digit is shown in the image?\nA. 0\nB. 1\n")
    assert op[3].sample_id == mc[3].sample_id.replace("/mc", "/open")
    assert op[3].image_id == mc[3].image_id
    assert np.array_equal(pixels(op[3].image), pixels(mc[3].image))
    assert "0, 1, 2, 3, 4, 5, 6, 7, 8 or 9" in digits.with_prompt("open_list")[0].question


def test_unknown_prompt_and_shift_list_the_known_ones(digits):
    with pytest.raises(KeyError, match=r"no prompt 'x'.*\['mc', 'open', 'open_list', 'mc_terse'\]"):
        digits.with_prompt("x")
    with pytest.raises(KeyError, match=r"no shift 'blur'.*inverted"):
        digits.shifted("blur")
    with pytest.raises(KeyError, match="no prompt 'x'"):
        sn.load_task("digits", prompt="x")


def test_template_contract():
    with pytest.raises(ValueError, match="no {options} field"):
        Template("bad", "Which one?", "multiple_choice")
    with pytest.raises(ValueError, match="answer_format"):
        Template("bad", "Which one?", "essay")
    t = Template("yn", "Is there a {object}? Answer yes or no.", "yes_no")
    with pytest.raises(KeyError, match="needs the field 'object'"):
        t.render(("no", "yes"), {})
    with pytest.raises(ValueError, match="yes_no needs exactly two"):
        sn.load_task("digits", n=20).__class__(
            "d", sn.load_task("digits", n=20).data, prompts={"yn": Template("yn", "Q? yes/no",
                                                                             "yes_no")})


# ---- shifts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, shift", [("digits", "inverted"), ("digits", "noisy"),
                                         ("mnist", "rotated"), ("shapes-color", "background"),
                                         ("shapes-count", "scale"), ("shapes-exists", "style"),
                                         ("shapes-occlusion", "style")])
def test_shift_changes_pixels_keeps_labels_ids(name, shift):
    task = sn.load_task(name, n=20)
    moved = task.shifted(shift)
    assert moved.image_ids == task.image_ids and np.array_equal(moved.labels, task.labels)
    again = list(task.shifted(shift))
    changed = []
    for s, m, a in zip(task, moved, again, strict=False):
        assert (m.label, m.image_id, m.question) == (s.label, s.image_id, s.question)
        assert m.sample_id == s.sample_id + f"/{shift}"
        changed.append((np.abs(pixels(m.image) - pixels(s.image)).sum(axis=2) > 30).mean())
        assert changed[-1] > 0, f"{shift} left {s.sample_id} unchanged"
        assert np.array_equal(pixels(m.image), pixels(a.image))  # deterministic
    assert np.mean(changed) > 0.03, f"{shift} changes {np.mean(changed):.1%} of the pixels"
    ds = moved.dataset
    assert np.array_equal(pixels(ds[2]["image"]), pixels(moved[2].image))
    assert ds[2]["question"] == moved[2].question


def test_inverted_is_the_complement(digits):
    s, m = digits[5], digits.shifted("inverted")[5]
    assert np.array_equal(pixels(m.image), 255 - pixels(s.image))


# ---- Task basics ----------------------------------------------------------------------------
def test_dataset_columns_and_indexing(digits):
    ds = digits.dataset
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds.features["label"].names == list(digits.class_names)
    assert ds["question"][0] == digits[0].question and len(ds) == len(digits) == 200
    assert digits[-1].image_id == digits.image_ids[-1]
    with pytest.raises(IndexError):
        digits[200]
    assert len({s.sample_id for s in digits}) == 200


def test_labels_outside_class_list_fail(digits):
    data = datasets.Dataset.from_dict({"image": [None, None], "label": [0, 7],
                                       "image_id": ["a", "b"]})
    data.info.features = datasets.Features({"image": datasets.Image(),  # bypass encoding
                                            "label": datasets.ClassLabel(names=["x", "y"]),
                                            "image_id": datasets.Value("string")})
    with pytest.raises(ValueError, match=r"label 7 of image 'b' is outside the class list"):
        Task("t", data, prompts={"p": Template("p", "Which? {classes}")})


def test_duplicate_image_ids_fail(digits):
    data = digits.data.select([0, 0])
    with pytest.raises(ValueError, match=r"rows 1 and 2 have the same image_id"):
        Task("t", data, prompts=digits.prompts)


def test_load_task_errors():
    with pytest.raises(KeyError, match=r"unknown task 'digitz'.*'digits'"):
        sn.load_task("digitz")
    with pytest.raises(TypeError, match=r"task 'digits' has no option\(s\) \['colour'\]"):
        sn.load_task("digits", colour="red")
    with pytest.raises(ValueError, match="partition 'test' is not one of"):
        sn.load_task("digits", partition="test")


# ---- CLI ------------------------------------------------------------------------------------
def test_cli_list(capsys):
    cli_main(["list"])
    out = capsys.readouterr().out
    assert "shapes-occlusion" in out and "pope" in out and "blink-relative-depth" in out


def test_cli_show_writes_png(tmp_path, capsys):
    out = tmp_path / "grid.png"
    cli_main(["show", "shapes-exists", "--per-class", "2", "--shift", "background",
              "--out", str(out)])
    with Image.open(out) as im:
        assert im.width > 300 and im.height > 300
    assert str(out) in capsys.readouterr().out


def test_manifests_parse():
    m = sn.tasks.manifest.manifest("embedded")
    assert json.dumps(m)  # plain data only
    assert all(sum(p.get("heldout", False) for p in t["prompts"].values()) == 1
               for t in m.values())
