"""The analyses' shared command line: TOML + flag precedence, unknown keys, bool and list flags."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import xarray as xr

from sn_interp.analyses import _common, _outputs
from sn_interp.analyses._common import StudyConfig, execute, field_docs, make_config
from sn_interp.models import registry_names


@dataclasses.dataclass(frozen=True)
class DemoConfig(StudyConfig):
    """A config with one field of each kind the command line maps."""

    grid: tuple[int, ...] = (1, 2)
    """A list of numbers."""
    flag: bool = False
    """A switch."""
    label: str | None = None
    """An optional text."""


def _toml(tmp_path, text: str):
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def test_defaults_without_config_or_flags():
    assert make_config(DemoConfig, "demo", []) == DemoConfig()


def test_table_overrides_top_level_and_flags_override_both(tmp_path):
    path = _toml(tmp_path, 'study = "s"\nk = 3\nshots = 4\nmodels = ["a", "b"]\n'
                           '[demo]\nk = 7\ngrid = [5, 6]\n[other]\nk = 99\n')
    cfg = make_config(DemoConfig, "demo", ["--config", str(path), "--shots", "9"])
    assert (cfg.study, cfg.k, cfg.shots, cfg.grid) == ("s", 7, 9, (5, 6))
    assert cfg.models == ("a", "b")  # TOML lists become tuples
    cfg = make_config(DemoConfig, "demo", ["--config", str(path), "--k", "2",
                                           "--model", "x", "y", "z", "--grid", "8"])
    assert (cfg.k, cfg.models, cfg.grid) == (2, ("x", "y", "z"), (8,))


def test_unknown_keys_are_named(tmp_path):
    path = _toml(tmp_path, "shotz = 3\n")
    with pytest.raises(SystemExit, match="shotz"):
        make_config(DemoConfig, "demo", ["--config", str(path)])
    path = _toml(tmp_path, "[demo]\ngird = [1]\n")
    with pytest.raises(SystemExit, match="gird"):
        make_config(DemoConfig, "demo", ["--config", str(path)])


def test_bool_flags_both_ways(tmp_path):
    assert make_config(DemoConfig, "demo", ["--flag"]).flag is True
    path = _toml(tmp_path, "flag = true\noverwrite = true\n")
    cfg = make_config(DemoConfig, "demo", ["--config", str(path), "--no-flag"])
    assert cfg.flag is False and cfg.overwrite is True
    assert make_config(DemoConfig, "demo", ["--no-progress"]).progress is False


def test_bad_values_and_missing_file_fail_clearly(tmp_path):
    with pytest.raises(SystemExit, match="k must be >= 1"):
        make_config(DemoConfig, "demo", ["--k", "0"])
    with pytest.raises(SystemExit, match="no study config"):
        make_config(DemoConfig, "demo", ["--config", str(tmp_path / "nope.toml")])


def test_help_lists_every_field_doc(capsys):
    with pytest.raises(SystemExit):
        make_config(DemoConfig, "demo", ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    docs = field_docs(DemoConfig)
    assert {f.name for f in dataclasses.fields(DemoConfig)} == set(docs)
    for doc in docs.values():
        assert doc in text


def test_digest_ignores_where_and_how_but_not_what():
    a = DemoConfig()
    assert a.digest() == DemoConfig(out="x", overwrite=True, progress=False,
                                    stores="y").digest()
    assert a.digest() != DemoConfig(grid=(3,)).digest()


def test_execute_reuses_result_and_figures_of_same_config_only(tmp_path):
    import matplotlib.pyplot as plt

    calls, drawn, extras = [], [], []

    def run(cfg):
        calls.append(cfg.k)
        return xr.Dataset({"v": ("x", [float(cfg.k)])})

    def tables(result):
        return {"t": result.to_dataframe().reset_index()}

    def figures(result):
        drawn.append(float(result.v[0]))
        return {"f": plt.subplots(figsize=(1, 1))[0]}

    folder = tmp_path / "o"
    for k, overwrite in ((1, False), (1, False), (2, False), (2, True), (2, False)):
        if len(calls) == 2 and not overwrite:  # a missing figure is redrawn, result reused
            (folder / "f.pdf").unlink(missing_ok=True)
        cfg = DemoConfig(k=k, out=str(folder), overwrite=overwrite)
        if (k, overwrite) == (2, False) and len(calls) == 1:
            # another config into a folder of results: refused, nothing replaced
            with pytest.raises(_outputs.OutputConflictError, match="--overwrite"):
                execute("demo", cfg, run, tables, figures)
            continue
        execute("demo", cfg, run, tables, figures,
                extras=lambda c, r, f: extras.append(float(r.v[0])))
    assert calls == [1, 2] and drawn == [1.0, 2.0, 2.0]
    assert extras == [1.0, 1.0, 2.0, 2.0]
    record = json.loads((folder / "config.json").read_text())
    assert record["analysis"] == "demo" and record["k"] == 2
    assert (folder / "t.csv").exists() and (folder / "t.md").read_text().startswith("| x |")
    assert _common.written_figures(folder, cfg.digest()) == ["f"]
    assert _common.written_figures(folder, DemoConfig(k=3).digest()) is None


def test_markdown_table_formats_floats():
    import pandas as pd

    text = _common.markdown_table(pd.DataFrame({"a": [0.12345, float("nan")], "b": ["x", "y"]}))
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 0.123 | x |", "| – | y |"]


STUDIES = Path(__file__).resolve().parents[2] / "analyses"


@pytest.mark.parametrize("study", sorted(p.name for p in STUDIES.glob("*.toml")))
def test_study_configs_build_every_analysis_config(study):
    """Each committed study file: known keys, registered tasks, every analysis Config valid."""
    from sn_interp.analyses import report
    from sn_interp.tasks.registry import list_tasks

    path = STUDIES / study
    top, tables, _ = report.read_study(path)
    own = {k: v for k, v in top.items() if k in report.fields_of(report.Config)}
    cfg = report.config_from(report.Config, {**own, **tables.get("report", {})}, study)
    modules = {name: report.load_module(name) for name in cfg.analyses}
    report.check_keys(top, tables, modules, study)
    for name, module in modules.items():
        sub = report.sub_config(module, name, top, tables.get(name, {}), {}, Path("o"), study)
        assert sub.out == str(Path("o") / name)
    assert set(cfg.tasks) <= set(list_tasks())
    if study == "embedded.toml":
        assert cfg.models == ("micro-llava", "micro-qwen3-vl", "mini-llava-smollm2")
        assert set(cfg.models) <= set(registry_names())
