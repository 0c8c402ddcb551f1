"""Reliability of analysis outputs: never replaced silently, written atomically.

Class 4 of the reliability table (docs/reliability.md): another config into an existing ``--out`` is
refused (nothing written) unless ``--overwrite``, which removes the previous config's outputs
first; every file is renamed into place whole; a corrupt result says ``--overwrite`` fixes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import xarray as xr

from sn_interp.analyses import _outputs
from sn_interp.analyses._common import StudyConfig, execute, make_main


@dataclasses.dataclass(frozen=True)
class DemoConfig(StudyConfig):
    """Demo."""

    figure_names: tuple[str, ...] = ("f",)
    """Figures to draw."""


def _run(cfg):
    return xr.Dataset({"v": ("x", [float(cfg.k)])})


def _tables(result):
    return {"t": result.to_dataframe().reset_index()}


def _figures(result):
    import matplotlib.pyplot as plt

    k = float(result.v[0])
    return {name: plt.subplots(figsize=(1, 1))[0] for name in
            (("f", "g") if k == 1 else ("f",))}


def _go(folder: Path, **kw) -> Path:
    return execute("demo", DemoConfig(out=str(folder), **kw), _run, _tables, _figures)


def _tree(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


def test_another_config_into_an_existing_out_is_refused_untouched(tmp_path):
    folder = _go(tmp_path / "o", k=1)
    before = _tree(folder)
    with pytest.raises(_outputs.OutputConflictError, match=r"another demo config .*--overwrite"):
        _go(folder, k=2)
    assert _tree(folder) == before


def test_overwrite_replaces_and_never_mixes_figures_of_two_configs(tmp_path):
    folder = _go(tmp_path / "o", k=1)
    assert (folder / "g.png").exists()
    (folder / "notes.txt").write_text("mine")  # not an output: kept
    (folder / "clf_a").mkdir()  # an extras output of that config (e.g. a saved classifier)
    (folder / "clf_a" / "analysis.json").write_text('{"config_digest": "x"}')
    _go(folder, k=2, overwrite=True)
    assert not (folder / "clf_a").exists()
    assert not (folder / "g.png").exists() and not (folder / "g.pdf").exists()
    assert (folder / "f.png").exists() and (folder / "notes.txt").read_text() == "mine"
    with xr.open_dataset(folder / "result.nc") as ds:
        assert float(ds.v[0]) == 2.0
    assert json.loads((folder / "config.json").read_text())["k"] == 2


def test_same_config_is_reused_and_other_analysis_is_refused(tmp_path):
    folder = _go(tmp_path / "o", k=1)
    before = (folder / "result.nc").stat().st_mtime_ns
    _go(folder, k=1)
    assert (folder / "result.nc").stat().st_mtime_ns == before
    with pytest.raises(_outputs.OutputConflictError, match="another demo config"):
        execute("other", DemoConfig(out=str(folder), k=1), _run, _tables, _figures)


def test_corrupt_result_says_overwrite_fixes_it(tmp_path):
    folder = _go(tmp_path / "o", k=1)
    (folder / "result.nc").write_bytes(b"\x89HDF\r\n" + b"\0" * 40)
    with pytest.raises(_outputs.OutputConflictError, match="unreadable.*--overwrite") as err:
        _go(folder, k=1)
    assert "\n" not in str(err.value)
    _go(folder, k=1, overwrite=True)
    with xr.open_dataset(folder / "result.nc") as ds:
        assert float(ds.v[0]) == 1.0


def test_result_of_another_digest_says_overwrite(tmp_path):
    folder = _go(tmp_path / "o", k=1)
    with xr.open_dataset(folder / "result.nc") as ds:
        other = ds.load().assign_attrs(config_digest="0" * 64)
    other.to_netcdf(folder / "result.nc")
    with pytest.raises(_outputs.OutputConflictError, match="another config.*--overwrite"):
        _go(folder, k=1)


def test_unreadable_config_json_is_refused_unless_overwrite(tmp_path):
    folder = _go(tmp_path / "o", k=1)
    (folder / "config.json").write_text("{ half")
    with pytest.raises(_outputs.OutputConflictError, match="unreadable config.json"):
        _go(folder, k=1)
    _go(folder, k=1, overwrite=True)
    assert json.loads((folder / "config.json").read_text())["k"] == 1


def test_interrupted_writes_leave_no_half_file_and_rerun_works(tmp_path, monkeypatch):
    folder = tmp_path / "o"

    def dying_to_netcdf(self, path, *args, **kwargs):
        Path(path).write_bytes(b"half a file")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", dying_to_netcdf)
    with pytest.raises(KeyboardInterrupt):
        _go(folder, k=1)
    assert not (folder / "result.nc").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    monkeypatch.undo()
    _go(folder, k=1)  # the rerun is not blocked by a half file
    with xr.open_dataset(folder / "result.nc") as ds:
        assert float(ds.v[0]) == 1.0


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("old")

    def failing(tmp):
        tmp.write_text("new, half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _outputs.atomic_write(path, failing)
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]


def test_interrupted_figure_keeps_previous_figure_whole(tmp_path, monkeypatch):
    import matplotlib.figure

    folder = _go(tmp_path / "o", k=1)
    before = (folder / "f.png").read_bytes()
    real = matplotlib.figure.Figure.savefig

    def dying(self, fname, *args, **kwargs):
        real(self, fname, *args, **kwargs)
        Path(fname).write_bytes(Path(fname).read_bytes()[:50])
        raise KeyboardInterrupt

    (folder / "figures.json").unlink()  # figures are redrawn on the next run
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", dying)
    with pytest.raises(KeyboardInterrupt):
        _go(folder, k=1)
    assert (folder / "f.png").read_bytes() == before  # the old figure, whole
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_cli_refusal_is_one_line_with_exit(tmp_path):
    main = make_main("demo", DemoConfig, _run, _tables, _figures)
    main(["--out", str(tmp_path / "o"), "--k", "1"])
    with pytest.raises(SystemExit) as exit_:
        main(["--out", str(tmp_path / "o"), "--k", "2"])
    text = str(exit_.value)
    assert text.startswith("error: ") and "--overwrite" in text and "\n" not in text


def test_report_of_another_config_into_its_out_is_refused_before_running(tmp_path,
                                                                           monkeypatch):
    import sys
    import types

    from sn_interp.analyses import _common, report

    fine = types.ModuleType("sn_interp.analyses.fine_demo")
    fine.__doc__ = "Does it work?"
    fine.Config = _common.StudyConfig
    runs = []
    fine.run = lambda cfg: runs.append(cfg.k) or xr.Dataset({"v": ("x", [float(cfg.k)])})
    fine.tables = lambda result: {"values": result.to_dataframe().reset_index()}
    fine.figures = lambda result: {}
    monkeypatch.setitem(sys.modules, fine.__name__, fine)
    out = tmp_path / "o"
    report.main(["--analyses", "fine_demo", "--k", "3", "--out", str(out)])
    before = (out / "REPORT.md").read_text()
    with pytest.raises(SystemExit, match="another report config.*--overwrite"):
        report.main(["--analyses", "fine_demo", "--k", "4", "--out", str(out)])
    assert runs == [3] and (out / "REPORT.md").read_text() == before
    report.main(["--analyses", "fine_demo", "--k", "4", "--out", str(out), "--overwrite"])
    assert runs == [3, 4] and "| 4.000 |" in (out / "REPORT.md").read_text()


def test_result_of_edited_input_data_is_not_reused(tmp_path):
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        Image.new("RGB", (4, 4), (i * 50, 0, 0)).save(data / f"{i}.png")
    task = data / "t.jsonl"
    task.write_text('{"image": "0.png", "label": "a"}\n{"image": "1.png", "label": "b"}\n')
    calls = []

    def run(cfg):
        calls.append(1)
        return _run(cfg)

    def go():
        execute("demo", DemoConfig(out=str(tmp_path / "o"), tasks=(str(task),)), run, _tables,
                _figures)

    go()
    go()
    assert len(calls) == 1  # same config, same data: reused
    Image.new("RGB", (4, 4), (1, 0, 0)).save(data / "0.png")  # one image edited
    go()
    assert len(calls) == 2  # recomputed (the stores it reads then refuse the old activations)
    go()
    assert len(calls) == 2
