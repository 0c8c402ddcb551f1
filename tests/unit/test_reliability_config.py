"""Reliability at the edge: configs, flags, split arguments and data files are checked first.

Class 6 of the reliability table (docs/reliability.md): each wrong value gets one line naming the
key (or line), the type expected and the file, before anything runs.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from PIL import Image

import sn_interp as sn
from sn_interp.analyses import report
from sn_interp.analyses._common import make_config

ANALYSES = (*report.known_analyses(), "report")  # every analysis module, new ones included


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def _config_error(tmp_path, text: str, analysis: str = "early_exit") -> str:
    module = importlib.import_module(f"sn_interp.analyses.{analysis}")
    path = _toml(tmp_path, text)
    with pytest.raises(SystemExit) as exit_:
        make_config(module.Config, analysis, ["--config", str(path)])
    message = str(exit_.value)
    assert message.startswith("error: ") and "\n" not in message and str(path) in message
    return message


# ---- TOML values: key, expected type, file ----------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ('models = "tiny-llava"\n', "models must be a list of strings, got the string "
                                "'tiny-llava' (write a list"),
    ('k = "forty"\n', "k must be an integer, got the string 'forty'"),
    ("k = 2.5\n", "k must be an integer, got the number 2.5"),
    ("k = true\n", "k must be an integer, got the boolean true"),
    ('shots = [5]\n', "shots must be an integer, got the list [5]"),
    ('tolerance = "small"\n', "tolerance must be a number, got the string 'small'"),
    ("vision = 1\n", "vision must be true or false, got the integer 1"),
    ("exit_layers = 3\n", "exit_layers must be a list of integers or none, got the integer 3"),
    ('exit_layers = [0, "1"]\n', "exit_layers must be a list of integers or none"),
    ("test_size = 1.5\n", "test_size must be an integer or none, got the number 1.5"),
    ("[early_exit]\nmax_new_tokens = \"5\"\n", "max_new_tokens must be an integer"),
    ("study = 3\n", "study must be a string, got the integer 3"),
])
def test_toml_value_of_wrong_type_names_key_type_and_file(tmp_path, text, expected):
    assert expected in _config_error(tmp_path, text)


def test_list_field_of_another_analysis_is_checked_too(tmp_path):
    assert "seeds must be a list of integers" in _config_error(
        tmp_path, 'seeds = [0, "one"]\n', "cross_model_overlap")
    assert "k_grid must be a list of integers" in _config_error(
        tmp_path, "k_grid = [1, 2.5]\n", "sav_comparison")


def test_toml_syntax_error_names_file_and_line(tmp_path):
    message = _config_error(tmp_path, 'study = "s"\nk = = 3\n')
    assert "is not valid TOML" in message and "line 2" in message


def test_report_toml_syntax_error_names_file_and_line(tmp_path):
    path = _toml(tmp_path, "[early_exit\nk = 3\n")
    with pytest.raises(SystemExit, match=rf"{path} is not valid TOML.*line 1"):
        report.main(["--config", str(path), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_report_checks_types_of_every_table_before_running(tmp_path):
    path = _toml(tmp_path, 'models = ["tiny-llava"]\n[sav_comparison]\nk_grid = "1, 2"\n')
    with pytest.raises(SystemExit, match=r"\[sav_comparison\].*k_grid must be a list"):
        report.main(["--config", str(path), "--out", str(tmp_path / "o"),
                     "--analyses", "sav_comparison"])
    assert not (tmp_path / "o").exists()


# ---- every field of every analysis Config, at the Python level --------------------------------

_WRONG = {int: "forty", float: "x", str: 3, bool: "yes"}


def _wrong_value(tp):
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is tuple:
        return "not-a-list"
    if args:  # X | None
        return _wrong_value(args[0])
    return _WRONG[tp]


@pytest.mark.parametrize("analysis", ANALYSES)
def test_every_config_field_is_type_checked(analysis):
    cls = importlib.import_module(f"sn_interp.analyses.{analysis}").Config
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        with pytest.raises(TypeError, match=rf"^{field.name} must be "):
            cls(**{field.name: _wrong_value(hints[field.name])})


def test_lists_become_tuples_and_ints_pass_for_floats():
    from sn_interp.analyses.early_exit import Config

    cfg = Config(models=["tiny-llava"], tolerance=0)
    assert cfg.models == ("tiny-llava",) and cfg.tolerance == 0.0


# ---- flags --------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["forty", "2.5"])
def test_non_int_flag_is_refused_by_the_parser(value, capsys):
    from sn_interp.analyses.early_exit import Config

    with pytest.raises(SystemExit) as exit_:
        make_config(Config, "early_exit", ["--k", value])
    assert exit_.value.code == 2
    assert f"argument --k: invalid int value: '{value}'" in capsys.readouterr().err


def test_unknown_analysis_lists_the_known_ones_with_non_zero_exit(tmp_path):
    with pytest.raises(SystemExit) as exit_:
        report.main(["--analyses", "early_exit", "no_such_analysis", "--out",
                     str(tmp_path / "o")])
    message = str(exit_.value)
    assert "unknown analysis 'no_such_analysis'" in message
    for name in ("find_super_neurons", "sav_comparison", "robustness", "cross_model_overlap",
                 "early_exit"):
        assert name in message
    assert not (tmp_path / "o").exists()


def test_unknown_analysis_exit_code_from_the_command_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "sn_interp.analyses.report", "--analyses",
                          "nope", "--out", str(tmp_path / "o")], capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 1
    assert "unknown analysis 'nope'" in run.stderr and "early_exit" in run.stderr


# ---- split() arguments --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    return sn.load_task("digits", n=60)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"shots": "5"}, "shots must be an integer, got str '5'"),
    ({"shots": 2.5}, "shots must be an integer, got float 2.5"),
    ({"shots": True}, "shots must be an integer, got bool True"),
    ({"seed": 1.5}, "seed must be an integer, got float 1.5"),
    ({"seed": None}, "seed must be an integer, got NoneType None"),
    ({"seed": "0"}, "seed must be an integer, got str '0'"),
    ({"test_size": "10"}, "test_size must be an integer, got str '10'"),
])
def test_split_refuses_non_int_seeds_and_shots(digits, kwargs, message):
    with pytest.raises(TypeError, match=message):
        digits.split(**{"shots": 2, **kwargs})


def test_split_refuses_negative_seed_and_subsample_checks_too(digits):
    with pytest.raises(ValueError, match="seed must be at least 0, got -1"):
        digits.split(shots=2, seed=-1)
    with pytest.raises(TypeError, match="n must be an integer, got str"):
        digits.subsample("10")


def test_numpy_ints_are_fine_for_split(digits):
    import numpy as np

    a = digits.split(shots=np.int64(2), seed=np.int32(1))
    b = digits.split(shots=2, seed=1)
    assert [s.sample_id for s in a[0]] == [s.sample_id for s in b[0]]


# ---- data loaders name the line -----------------------------------------------------------------

def _jsonl(tmp_path: Path, labels: list, images: list[str] | None = None) -> Path:
    images = images or [f"{i}.png" for i in range(len(labels))]
    for name in set(images):
        Image.new("RGB", (8, 8), (len(name) * 20, 0, 0)).save(tmp_path / name)
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"image": im, "question": "Which?", "label": lab}) + "\n"
                            for im, lab in zip(images, labels, strict=True)))
    return path


@pytest.mark.parametrize(("labels", "message"), [
    (["a", True, "b"], r"line 2: label true is not a class name \(string\) or a class index"),
    (["a", "b", None], r"line 3: label null is not a class name"),
    ([1.5, "a"], r"line 1: label 1.5 is not a class name"),
    ([[1], "a"], r"line 1: label \[1\] is not a class name"),
    ([1, 0, "1"], r"lines 1 and 3: labels mix 1 and \"1\"; write every label the same way"),
])
def test_jsonl_bad_labels_name_the_line(tmp_path, labels, message):
    path = _jsonl(tmp_path, labels)
    with pytest.raises(ValueError, match=rf"{path}, {message}"):
        sn.load_task(path)


def test_jsonl_duplicated_image_names_both_lines(tmp_path):
    path = _jsonl(tmp_path, ["a", "b", "a"], ["x.png", "y.png", "x.png"])
    with pytest.raises(ValueError, match=rf"{path}, lines 1 and 3: both use image 'x.png'"):
        sn.load_task(path)


def test_jsonl_integer_labels_are_class_names_without_classes_option(tmp_path):
    """Labels 1 and 5 are the classes "1" and "5" (not indices: 1 would alias class "5")."""
    path = _jsonl(tmp_path, [1, 5, 5, 1])
    task = sn.load_task(path)
    assert task.class_names == ("1", "5")
    assert [s.label_name for s in task] == ["1", "5", "5", "1"]


def test_jsonl_integer_labels_index_the_classes_option(tmp_path):
    path = _jsonl(tmp_path, [1, 0, 1])
    task = sn.load_task(path, classes=["no", "yes"])
    assert [s.label_name for s in task] == ["yes", "no", "yes"]
