"""What does a whole study find? Run its analyses and write one REPORT.md.

Runs each analysis named in ``--analyses`` (default: find_super_neurons, sav_comparison,
robustness, cross_model_overlap, early_exit, causal; an unknown name exits with the list of known
analyses) through :func:`sn_interp.analyses._common.execute`, into ``<out>/<analysis>/``
(default ``results/<study>/``), each with its own Config built from the same study TOML: the
top-level keys that Config knows, then its ``[<analysis>]`` table (every key of which it must
know), then the flags given to the report that it knows. A top-level key no analysis knows is
an error. Finished results and activation stores are reused as by every analysis.

``<out>/REPORT.md`` holds a headline table per model and task (the columns each analysis
declares in its ``HEADLINE``: zero-shot, SAV, best-SN and top-k SN test accuracy, the layer of
the best SN, the early-exit layer, accuracy and speed-up, ...), then every table (Markdown) and figure (PNG link) of every analysis, and the study config that
produced them. The headline is also written as ``headline.csv`` / ``headline.md``.

Run: ``python -m sn_interp.analyses.report --config analyses/embedded.toml``
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sn_interp.analyses import _outputs
from sn_interp.analyses._common import (
    StudyConfig,
    build_parser,
    cli_logging,
    config_from,
    execute,
    markdown_table,
    read_toml,
    write_table,
    written_figures,
)
from sn_interp.analyses._result import Headline, format_int

log = logging.getLogger(__name__)
ANALYSIS = "report"
ANALYSES = ("find_super_neurons", "sav_comparison", "robustness", "cross_model_overlap",
            "early_exit", "causal")


@dataclasses.dataclass(frozen=True)
class Config(StudyConfig):
    """Options of the report (the other options are handed to every analysis that knows them)."""

    analyses: tuple[str, ...] = ANALYSES
    """Analyses to run, in order (modules of sn_interp.analyses); an unknown name is an error listing the known ones."""
    max_rows: int = 40
    """Rows of a table shown in REPORT.md; longer tables are cut there (their CSV is complete)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {self.max_rows}")
        bad = [a for a in self.analyses if a == ANALYSIS or not a.isidentifier()]
        if bad:
            raise ValueError(f"analyses {bad} are not analysis module names")


@dataclasses.dataclass
class Section:
    """What one analysis produced (or why it did not run)."""

    name: str
    folder: Path | None = None
    question: str = ""
    tables: dict[str, pd.DataFrame] = dataclasses.field(default_factory=dict)
    figures: list[str] = dataclasses.field(default_factory=list)
    result: xr.Dataset | None = None
    seconds: float = 0.0
    skipped: str = ""
    failed: bool = False


# ---- configs ----------------------------------------------------------------------------------

def fields_of(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def known_analyses() -> list[str]:
    """Names of the analysis modules of :mod:`sn_interp.analyses` (the report excluded)."""
    import pkgutil

    import sn_interp.analyses as package

    return sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                  if not m.name.startswith("_") and m.name != ANALYSIS)


def load_module(name: str) -> ModuleType:
    """``sn_interp.analyses.<name>``; an unknown name exits listing the known analyses."""
    full = f"sn_interp.analyses.{name}"
    try:
        module = importlib.import_module(full)
    except ModuleNotFoundError as err:
        if err.name != full:
            raise
        module = None
    if module is None or not hasattr(module, "Config") or not hasattr(module, "run"):
        raise SystemExit(f"error: unknown analysis {name!r} in --analyses; known analyses: "
                         f"{', '.join(known_analyses())}")
    return module


def read_study(path: Path | None) -> tuple[dict[str, Any], dict[str, dict], str]:
    """(top-level keys, tables, raw text) of a study TOML (empty without one)."""
    if path is None:
        return {}, {}, ""
    data = read_toml(path)
    text = Path(path).read_text()
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    return {k: v for k, v in data.items() if k not in tables}, tables, text


def check_keys(top: dict[str, Any], tables: dict[str, dict], modules: dict[str, ModuleType],
               origin: str) -> None:
    """Refuse top-level keys no analysis knows and tables that name no analysis.

    Tables of analyses left out of ``analyses`` are allowed (and not checked), so a study file
    can be run in part with ``--analyses``.
    """
    known = fields_of(Config).union(*(fields_of(m.Config) for m in modules.values() if m))
    unknown = sorted(set(top) - known)
    if unknown:
        raise SystemExit(f"error: unknown option(s) {unknown} in {origin}: no analysis of "
                         f"{sorted(modules)} knows them")
    stray = sorted(set(tables) - set(modules) - set(ANALYSES) - {ANALYSIS})
    if stray:
        raise SystemExit(f"error: table(s) {stray} in {origin} name no analysis "
                         f"(known: {sorted(set(ANALYSES) | set(modules))})")


def sub_config(module: ModuleType, name: str, top: dict[str, Any], table: dict[str, Any],
               flags: dict[str, Any], out: Path, origin: str) -> StudyConfig:
    """An analysis's Config: known top-level keys < its table < known report flags."""
    known = fields_of(module.Config)
    values = {k: v for k, v in top.items() if k in known}
    values.update(table)
    values.update({k: v for k, v in flags.items() if k in known})
    values["out"] = str(out / name)
    return config_from(module.Config, values, origin=f"{origin} [{name}]")


# ---- running ----------------------------------------------------------------------------------

def run_one(name: str, module: ModuleType, cfg: StudyConfig) -> Section:
    """Execute one analysis, keeping its result, tables and figure names for the report."""
    sec = Section(name, question=(module.__doc__ or "").strip().split("\n")[0])
    keep: dict[str, Any] = {}

    def tables(result: xr.Dataset) -> dict[str, pd.DataFrame]:
        keep["result"], keep["tables"] = result, module.tables(result)
        return keep["tables"]

    start = time.perf_counter()
    sec.folder = execute(name, cfg, module.run, tables, module.figures,
                         extras=getattr(module, "extras", None),
                         load=getattr(module, "load", None))
    sec.seconds = time.perf_counter() - start
    sec.result, sec.tables = keep["result"], keep["tables"]
    sec.figures = written_figures(sec.folder) or []
    return sec


def run_all(cfg: Config, top: dict[str, Any], tables: dict[str, dict],
            flags: dict[str, Any], origin: str) -> list[Section]:
    """Every analysis of the report, in order; a missing one becomes a skipped section."""
    modules = {name: load_module(name) for name in cfg.analyses}
    check_keys(top, tables, modules, origin)
    out = report_dir(cfg)
    subs = {name: sub_config(module, name, top, tables.get(name, {}), flags, out, origin)
            for name, module in modules.items() if module is not None}  # all checked first
    sections = []
    for name, module in modules.items():
        if module is None:
            sections.append(Section(name, skipped="module not available"))
            continue
        log.info("report: running %s into %s", name, subs[name].out)
        try:
            sections.append(run_one(name, module, subs[name]))
        except Exception as err:  # one broken analysis must not lose the others' report
            log.exception("analysis %s failed", name)
            sections.append(Section(name, skipped=f"failed: {type(err).__name__}: {err}",
                                    failed=True))
    return sections


def report_dir(cfg: Config) -> Path:
    return Path(cfg.out) if cfg.out else Path("results") / cfg.study


# ---- the headline -----------------------------------------------------------------------------

def headline_sources(cfg: Config) -> list[tuple[str, Headline]]:
    """Every declared headline column, as (analysis, column), in source-priority order.

    The analyses of the default run list come first (in its order), then the others of
    ``cfg.analyses``: a column shows the first source that has a value for a cell.
    """
    names = list(dict.fromkeys([*ANALYSES, *cfg.analyses]))
    return [(n, h) for n in names for h in getattr(load_module(n), "HEADLINE", ())]


def headline(cfg: Config, sections: Sequence[Section]) -> pd.DataFrame:
    """Per (model, task): the columns the analyses declare (``HEADLINE``), first source first.

    find_super_neurons is the primary source of the accuracies; sav_comparison and
    early_exit declare the same columns as fallbacks (see their ``HEADLINE``). Columns whose
    sources all did not run are left out.
    """
    res = {s.name: s.result for s in sections}
    columns: dict[str, list[tuple[str, Headline]]] = {}
    for name, h in headline_sources(cfg):
        columns.setdefault(h.name(cfg), []).append((name, h))
    # a column none of whose source analyses ran this time is left out
    columns = {c: src for c, src in columns.items()
               if any(res.get(n) is not None for n, _ in src)}
    rows = []
    for m in cfg.models:
        for t in cfg.tasks:
            at = {"model": m, "task": t}
            row: dict[str, object] = {"model": m, "task": t}
            for column, sources in columns.items():
                value = _first(*(h.value(r, at, cfg) for n, h in sources
                                 if (r := res.get(n)) is not None))
                row[column] = format_int(value) if sources[0][1].integer else value
            rows.append(row)
    return pd.DataFrame(rows)


def headline_note(cfg: Config) -> str:
    """The note under the headline table, from the columns' own notes."""
    notes = {}
    for _, h in headline_sources(cfg):
        if h.note:
            notes.setdefault(h.name(cfg), h.note)
    parts = "; ".join(f"*{c}*: {n}" for c, n in notes.items())
    return f"Test accuracy on the held-out split. {parts}. – : not computed."


def _first(*values: float) -> float:
    return next((v for v in values if not np.isnan(v)), float("nan"))


# ---- REPORT.md --------------------------------------------------------------------------------

def _table_md(df: pd.DataFrame, max_rows: int, csv: str) -> str:
    if len(df) <= max_rows:
        return markdown_table(df)
    return (markdown_table(df.head(max_rows))
            + f"\n\n*First {max_rows} of {len(df)} rows; all of them in [{csv}]({csv}).*")


def section_md(sec: Section, out: Path, max_rows: int) -> list[str]:
    lines = [f"## {sec.name}", ""]
    if sec.skipped or sec.folder is None:
        return [*lines, f"*Skipped: {sec.skipped or 'no outputs'}.*", ""]
    rel = sec.folder.relative_to(out) if sec.folder.is_relative_to(out) else sec.folder
    lines += [f"{sec.question}", "",
              f"Outputs in [`{rel}/`]({rel}/) ([config]({rel}/config.json), "
              f"[result.nc]({rel}/result.nc)); {sec.seconds:.0f} s.", ""]
    for name, df in sec.tables.items():
        lines += [f"### {name.replace('_', ' ')}", "",
                  _table_md(df, max_rows, f"{rel}/{name}.csv"), ""]
    if sec.figures:
        lines += ["### figures", ""]
        lines += [f"![{name}]({rel}/{name}.png)" for name in sec.figures] + [""]
    return lines


def render(cfg: Config, sections: Sequence[Section], head: pd.DataFrame, study_text: str,
           command: str) -> str:
    """The text of REPORT.md."""
    from sn_interp import __version__

    out = report_dir(cfg)
    lines = [f"# Study `{cfg.study}`", "",
             f"Written by `{command}` (sn_interp {__version__}).", "",
             "## Headline", "", markdown_table(head), "", headline_note(cfg), ""]
    for sec in sections:
        lines += section_md(sec, out, cfg.max_rows)
    lines += ["## Config", ""]
    if study_text:
        lines += ["The study file:", "", "```toml", study_text.rstrip(), "```", ""]
    lines += ["Each analysis's resolved options are in its `config.json`. Report options:", "",
              "```", *(f"{k} = {v!r}" for k, v in dataclasses.asdict(cfg).items()), "```", ""]
    return "\n".join(lines)


# ---- command line -----------------------------------------------------------------------------

def report(cfg: Config, top: dict[str, Any] | None = None, tables: dict[str, dict] | None = None,
           flags: dict[str, Any] | None = None, study_text: str = "",
           origin: str = "flags", command: str = "python -m sn_interp.analyses.report") -> Path:
    """Run the study and write REPORT.md; return its path.

    Raises:
        RuntimeError: after writing REPORT.md, when an analysis failed (its section says why).
        OutputConflictError: ``out`` holds the report of another config (before anything
            runs; ``--overwrite`` replaces it).
    """
    out = report_dir(cfg)
    if out.is_dir():
        _outputs.claim(out, ANALYSIS, cfg.digest(), cfg.overwrite)
    sections = run_all(cfg, top or {}, tables or {}, flags or {}, origin)
    out.mkdir(parents=True, exist_ok=True)
    record = {"analysis": ANALYSIS, "digest": cfg.digest(), **dataclasses.asdict(cfg)}
    _outputs.write_text(out / "config.json", json.dumps(record, indent=2, default=str) + "\n")
    head = headline(cfg, sections)
    write_table(head, out, "headline")
    path = out / "REPORT.md"
    _outputs.write_text(path, render(cfg, sections, head, study_text, command))
    log.info("wrote %s", path)
    failed = [s.name for s in sections if s.failed]
    if failed:
        raise RuntimeError(f"analyses {failed} failed (see the log and {path})")
    return path


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line of sn_interp.analyses.report (see --help)."""
    parser = build_parser(Config, "python -m sn_interp.analyses.report",
                          (__doc__ or "").strip().split("\n\n")[0])
    args = parser.parse_args(argv)
    top, tables, text = read_study(args.config)
    flags = {k: v for k, v in vars(args).items() if k != "config" and v is not None}
    origin = str(args.config or "flags")
    own = {k: v for k, v in top.items() if k in fields_of(Config)}
    cfg = config_from(Config, {**own, **tables.get(ANALYSIS, {}), **flags}, origin=origin)
    cli_logging()
    command = "python -m sn_interp.analyses.report " + " ".join(
        map(str, sys.argv[1:] if argv is None else argv))
    try:
        return report(cfg, top, tables, flags, text, origin, command.strip())
    except _outputs.OutputConflictError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
