"""Shared plumbing of the analysis modules: configs, CLI, output folders, stage reuse, stores.

Every analysis module ``sn_interp/analyses/<name>.py`` defines a frozen ``Config`` (a subclass
of :class:`StudyConfig` whose fields carry a docstring each — that text becomes ``--help``),
``load(cfg)`` (the IO stage: models, stores), a pure ``run(cfg, loaded) -> xr.Dataset``,
``tables(result) -> dict[str, DataFrame]``, ``figures(result) -> dict[str, Figure]`` and
``main = make_main(...)`` (see :mod:`sn_interp.analyses` for the whole shape).

:func:`make_main` gives every analysis the same command line and the same outputs:
``--config study.toml`` or flags; under ``--out`` (default ``results/<analysis>/<study>/``)
``config.json`` first, then ``result.nc``, tables as CSV and Markdown, figures as PNG and PDF.
A finished ``result.nc`` written with the same config is reused unless ``--overwrite``;
activation stores are shared by all analyses under ``--stores`` and reused the same way.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import hashlib
import inspect
import json
import logging
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import xarray as xr

from sn_interp.analyses import _outputs, _validate
from sn_interp.store import StoreDamagedError, StoreMismatchError

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client
    from matplotlib.figure import Figure

# Any is kept for values read from TOML/JSON and for argparse keyword arguments (mixed types
# by nature) and for annotation objects handed to typing.get_args (no common static type).
C = TypeVar("C", bound="StudyConfig")  # an analysis's Config dataclass

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Options every analysis shares."""

    study: str = "default"
    """Study name: the folder under results/<analysis>/ and a label in reports."""
    models: tuple[str, ...] = ("tiny-llava",)
    """Models to study: registry names (sn_interp.models.registry_names()), directories or hub ids."""
    tasks: tuple[str, ...] = ("shapes-color",)
    """Tasks to study: registry names (python -m sn_interp.tasks list), .jsonl files or folders."""
    n: int | None = None
    """Cap on the images loaded per task (stratified); None loads the whole eval partition."""
    shots: int = 20
    """Probe examples per class (the few-shot set SNs and SAV heads are fitted on)."""
    test_size: int | None = None
    """Cap on the test set per task (stratified); None tests on all remaining images."""
    seed: int = 0
    """Seed of the probe/test split and of the bootstrap intervals."""
    k: int = 20
    """Number of Super Neurons / SAV heads in the top-k vote."""
    rule: str = "centroid"
    """Per-neuron classifier rule, any registered one: centroid (1-D nearest class mean), threshold (best threshold; one-vs-rest beyond two classes) or interval (ordered class intervals)."""
    score: str = "probe"
    """Neuron ranking score: probe (in-sample accuracy, as SAV) or cv (k-fold cross-validated)."""
    batch_size: int = 8
    """Samples per forward pass."""
    dtype: str = "float32"
    """Model weights dtype: float32, bfloat16 or float16."""
    device_map: str | None = None
    """Where the model's weights go, passed to from_pretrained: e.g. auto (the GPUs) for a 7B checkpoint; None keeps them on the CPU."""
    out: str | None = None
    """Output folder (default results/<analysis>/<study>)."""
    stores: str = "runs/stores"
    """Folder of the activation stores shared by all analyses (reused across runs)."""
    overwrite: bool = False
    """Recompute finished stages (result.nc, tables, figures) instead of reusing them, and replace the outputs of another config in --out; activation stores whose content matches are still reused."""
    overwrite_stores: bool = False
    """Rebuild activation stores written for other content (edited images, questions, labels or re-saved weights) instead of refusing them."""
    scheduler: str | None = None
    """Address of a dask.distributed scheduler to extract and score on (default: this process, local threads)."""
    workers: int | None = None
    """Extraction worker processes: a local dask.distributed cluster of N single-thread workers (one GPU each when there are GPUs) fills each activation store; None extracts in this process."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        _validate.check_fields(self)
        if not self.models:
            raise ValueError("models is empty: name at least one model")
        if not self.tasks:
            raise ValueError("tasks is empty: name at least one task")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        for name in ("shots", "k", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        from sn_interp.probes.rules import rule_names
        if self.rule not in rule_names():
            raise ValueError(f"rule must be one of {', '.join(rule_names())}, got {self.rule!r}")
        if self.score not in ("probe", "cv"):
            raise ValueError(f"score must be probe or cv, got {self.score!r}")

    def digest(self) -> str:
        """Hash of every field that changes results (not where or how the work runs)."""
        skip = {"out", "overwrite", "overwrite_stores", "progress", "scheduler", "workers",
                "stores", "device_map"}
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


# ---- config <-> command line / TOML ------------------------------------------------------

def field_docs(cls: type) -> dict[str, str]:
    """Field -> the docstring written under it, for every class in the MRO."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        node = tree.body[0]
        if not isinstance(node, ast.ClassDef):
            continue
        body = node.body
        for node, nxt in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)):
                docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def _base_type(tp: Any) -> tuple[type, bool]:
    """(scalar type, is_tuple) of an annotation like ``int | None`` or ``tuple[str, ...]``."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) is tuple:
        return typing.get_args(tp)[0], True
    return tp, False


_FLAG_NAMES = {"models": "--model", "tasks": "--task"}


def build_parser(cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser with ``--config`` and one flag per Config field."""
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="study config (TOML): top-level keys, "
                   "overridden by a table named after the analysis, overridden by flags")
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = _FLAG_NAMES.get(f.name, "--" + f.name.replace("_", "-"))
        base, many = _base_type(hints[f.name])
        kw: dict[str, Any] = {"dest": f.name, "default": None, "help": docs.get(f.name, "")
                              + f" (default: {f.default})"}
        if base is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = base
            if many:
                kw["nargs"] = "+"
        p.add_argument(flag, **kw)
    return p


def make_config(cls: type[C], analysis: str, argv: Sequence[str] | None) -> C:
    """A Config from a TOML study file (optional) and flags."""
    parser = build_parser(cls, f"python -m sn_interp.analyses.{analysis}",
                          (inspect.getmodule(cls).__doc__ or "").strip().split("\n\n")[0])
    args = parser.parse_args(argv)
    values = load_toml(args.config, analysis) if args.config else {}
    values.update({k: v for k, v in vars(args).items() if k != "config" and v is not None})
    return config_from(cls, values, origin=str(args.config or "flags"))


def load_toml(path: Path, analysis: str) -> dict[str, Any]:
    """Top-level keys of a study file, updated by its ``[<analysis>]`` table."""
    data = read_toml(path)
    tables = {k for k, v in data.items() if isinstance(v, dict)}
    values = {k: v for k, v in data.items() if k not in tables}
    values.update(data.get(analysis, {}))
    return values


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's content; a missing file or a syntax error is one line naming the file."""
    if not Path(path).is_file():
        raise SystemExit(f"error: no study config at {path}")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise SystemExit(f"error: {path} is not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise SystemExit(f"error: {path} is not UTF-8 text ({err.reason})") from None


def config_from(cls: type[C], values: Mapping[str, Any], origin: str = "") -> C:
    """Build a Config, turning lists into tuples and naming unknown keys."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise SystemExit(f"error: unknown option(s) {unknown} in {origin}; "
                         f"{cls.__module__} knows {sorted(names)}")
    clean: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return cls(**clean)
    except (TypeError, ValueError) as err:
        raise SystemExit(f"error: bad config ({origin}): {err}") from err


# ---- outputs ------------------------------------------------------------------------------

def out_dir(cfg: StudyConfig, analysis: str) -> Path:
    return Path(cfg.out) if cfg.out else Path("results") / analysis / cfg.study


def write_table(df: pd.DataFrame, folder: Path, name: str) -> None:
    """A pandas DataFrame as ``<name>.csv`` and ``<name>.md``."""
    _outputs.atomic_write(folder / f"{name}.csv", lambda tmp: df.to_csv(tmp, index=False))
    _outputs.write_text(folder / f"{name}.md", markdown_table(df) + "\n")


def markdown_table(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A GitHub-flavoured Markdown table (no extra dependency); NaN shows as an en dash."""
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "–" if v != v else format(v, floatfmt)  # NaN: not computed
        return str(v)
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def file_name(text: object) -> str:
    """A model, task or prompt name made safe for a file name (``/`` and spaces -> ``_``)."""
    return "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in str(text))


def save_figure(fig: Figure, folder: Path, name: str) -> list[Path]:
    """A matplotlib figure as PNG (200 dpi) and PDF; closes it."""
    import matplotlib.pyplot as plt

    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    try:
        _outputs.atomic_write(paths[0], lambda tmp: fig.savefig(tmp, dpi=200,
                                                                bbox_inches="tight"))
        _outputs.atomic_write(paths[1], lambda tmp: fig.savefig(tmp, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return paths


#: ``extras(cfg, result, folder)``: an analysis's outputs beyond tables and figures.
Extras = Callable[[C, xr.Dataset, Path], None]


def cli_logging() -> None:
    """Logging of the command lines: INFO from sn_interp and the running module, WARNING and
    above from third-party libraries (matplotlib's INFO notes on categorical axes, ...)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    for name in ("sn_interp", "__main__"):
        logging.getLogger(name).setLevel(logging.INFO)


def make_main(analysis: str, cls: type[C], run: Callable[..., xr.Dataset],
              tables: Callable[[xr.Dataset], Mapping[str, pd.DataFrame]],
              figures: Callable[[xr.Dataset], Mapping[str, Figure]],
              extras: Extras[C] | None = None,
              load: Callable[[C], object] | None = None) -> Callable[..., Path]:
    """The ``main(argv=None)`` of an analysis module (see the module docstring)."""

    def main(argv: Sequence[str] | None = None) -> Path:
        cfg = make_config(cls, analysis, argv)
        cli_logging()
        try:
            return execute(analysis, cfg, run, tables, figures, extras=extras, load=load)
        except (_outputs.OutputConflictError, StoreMismatchError, StoreDamagedError) as err:
            raise SystemExit(f"error: {err}") from None

    main.__doc__ = f"Command line of sn_interp.analyses.{analysis} (see --help)."
    return main


def execute(analysis: str, cfg: C, run: Callable[..., xr.Dataset],
            tables: Callable[[xr.Dataset], Mapping[str, pd.DataFrame]],
            figures: Callable[[xr.Dataset], Mapping[str, Figure]], *,
            extras: Extras[C] | None = None, load: Callable[[C], object] | None = None) -> Path:
    """Write config.json, reuse or compute result.nc, then tables and figures; return the folder.

    Figures are redrawn only with a fresh result, or when ``figures.json`` (the names drawn
    last, with the config digest) does not match or one of its files is missing.

    ``extras(cfg, result, folder)``, when given, writes an analysis's other outputs (e.g. the
    early-exit analysis's saved classifiers) after the tables and figures.

    ``load(cfg)``, when given, is the analysis's IO stage (models loaded, stores written or
    opened); the result is then ``run(cfg, load(cfg))``, else ``run(cfg)``. Neither runs when
    a finished result is reused.
    """
    folder = out_dir(cfg, analysis)
    folder.mkdir(parents=True, exist_ok=True)
    _outputs.claim(folder, analysis, cfg.digest(), cfg.overwrite)
    record = {"analysis": analysis, "digest": cfg.digest(), **dataclasses.asdict(cfg)}
    _outputs.write_text(folder / "config.json", json.dumps(record, indent=2, default=str) + "\n")
    result_path = folder / "result.nc"
    inputs = _outputs.inputs_digest(cfg.models, cfg.tasks)
    result = None if cfg.overwrite else _outputs.read_result(result_path, cfg.digest(), inputs)
    fresh = result is None
    if cfg.overwrite:  # recompute everything from the stores, nothing from earlier analyses
        from sn_interp.analyses import _reuse

        _reuse.clear()
    if fresh:
        with _scheduler(cfg.scheduler, cfg.workers):
            result = run(cfg) if load is None else run(cfg, load(cfg))
        result.attrs.update({"analysis": analysis, "config_digest": cfg.digest(),
                             "inputs_digest": inputs,
                             "config": json.dumps(dataclasses.asdict(cfg), default=str)})
        _outputs.atomic_write(result_path, result.to_netcdf)
        log.info("wrote %s", result_path)
    else:
        log.info("reusing %s (same config; --overwrite to recompute)", result_path)
    table_names = []
    for name, df in tables(result).items():
        write_table(df, folder, name)
        table_names.append(name)
    if fresh or written_figures(folder, cfg.digest()) is None:
        names = []
        for name, fig in figures(result).items():
            save_figure(fig, folder, name)
            names.append(name)
        _outputs.write_text(folder / FIGURES_FILE, json.dumps(
            {"digest": cfg.digest(), "figures": names, "tables": table_names}) + "\n")
    else:
        log.info("reusing the figures in %s", folder)
    if extras is not None:
        extras(cfg, result, folder)
    log.info("outputs in %s", folder)
    return folder


FIGURES_FILE = "figures.json"


def written_figures(folder: Path, digest: str | None = None) -> list[str] | None:
    """Names of the figures last saved in ``folder`` (for ``digest``, if given), or None.

    None also when a listed PNG or PDF is missing.
    """
    path = Path(folder) / FIGURES_FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a damaged record: redraw
    if not isinstance(record, dict):
        return None
    if digest is not None and record.get("digest") != digest:
        return None
    names = list(record.get("figures", []))
    if not all((Path(folder) / f"{n}.{ext}").exists() for n in names for ext in ("png", "pdf")):
        return None
    return names


class _scheduler:
    """Use a dask.distributed scheduler for the duration of a run, when one is named.

    ``--scheduler ADDRESS`` connects a client (the default for scoring, and the workers of
    every extraction); ``--workers N`` alone starts a local cluster of N worker processes for
    the extractions of the run (scoring stays on local threads).
    """

    def __init__(self, address: str | None, workers: int | None = None) -> None:
        self.address, self.workers, self.client, self.cluster = address, workers, None, None

    def __enter__(self) -> _scheduler:
        global _EXTRACT_WORKERS
        if self.address:
            from distributed import Client

            self.client = Client(self.address)
            log.info("scoring and extracting on dask scheduler %s", self.address)
        elif self.workers:
            from distributed import Client

            from sn_interp.parallel import local_cluster

            self.cluster = local_cluster(self.workers)
            self.client = Client(self.cluster, set_as_default=False)
            log.info("extracting on %d local worker processes", self.workers)
        _EXTRACT_WORKERS = self.client
        return self

    def __exit__(self, *exc: object) -> None:
        global _EXTRACT_WORKERS
        _EXTRACT_WORKERS = None
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


_EXTRACT_WORKERS: Client | None = None


def extraction_workers() -> Client | None:
    """The ``distributed.Client`` the running analysis extracts on (None: this process)."""
    return _EXTRACT_WORKERS
