"""MkDocs hooks: the pages' tables that the package can compute are generated at build time.

A page holds a marker, replaced by the output of a function here:

- ``<!-- api:names -->`` (api.md): one mkdocstrings block per name of ``sn_interp.__all__``
  (the top-level names first, in the order of ``sn_interp._API``, then each public submodule
  with the members it exports that are not top-level names). A name added to the package's
  API appears in the reference without editing the docs, and ``mkdocs build --strict`` fails
  when its docstring does not render.
- ``<!-- sites:table -->``: the site table, from :mod:`sn_interp.names` and each family
  adapter's layout.
- ``<!-- sizing:table -->``: parameters, weight memory and store sizes of the real checkpoints,
  computed by :mod:`sn_interp.models.sizing` from their widths.
- ``<!-- families:table -->``: the registered families and the classes they accept.
- ``<!-- rules -->``: every registered per-neuron rule with its module's definition.
- ``<!-- store:fingerprint -->``: the attributes that identify an activation store.
- ``<!-- hub:table -->``: each hub benchmark adapter: hub id, split read, columns expected.
- ``<!-- study:PATH -->``: a study TOML shown whole, then every key it sets, line by line,
  with the documentation of that field from the analyses' ``Config`` classes.
"""

from __future__ import annotations

import importlib
import re

MARKER = "<!-- api:names -->"
#: Public modules below a submodule that the reference documents whole.
EXTRA_MODULES = ("sn_interp.models.sizing",)


def _members(module: str, skip: set[str]) -> list[str] | None:
    """The public members a submodule exports (``__all__``), minus the top-level names."""
    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None)
    if names is None:
        return None
    return [n for n in names if n not in skip and not n.startswith("_")]


def _defined_at(obj: object) -> str:
    """The dotted path where an object is defined (lazy re-exports resolve to their source)."""
    return f"{obj.__module__}.{obj.__qualname__}"


def api_markdown() -> str:
    """Markdown of the whole reference: a heading and a ``:::`` block per public name."""
    import sn_interp

    out = ["## Top-level names", "",
           "Everything below is reachable as `sn.<name>` after `import sn_interp as sn`.", ""]
    for name in sn_interp._API:
        out += [f"::: {_defined_at(getattr(sn_interp, name))}", "    options:",
                "      heading_level: 3", ""]
    out += ["## Modules", ""]
    for sub in sn_interp._SUBMODULES:
        module = f"sn_interp.{sub}"
        members = _members(module, set(sn_interp._API))
        out += [f"::: {module}", "    options:", "      heading_level: 3",
                "      show_submodules: false"]
        if members is not None:
            out += ["      members:", *[f"        - {m}" for m in members]]
        out.append("")
    for module in EXTRA_MODULES:
        out += [f"::: {module}", "    options:", "      heading_level: 3", ""]
    return "\n".join(out)


def _row(cells: list[object]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _table(header: list[str], rows: list[list[object]]) -> str:
    return "\n".join([_row(header), _row(["---"] * len(header)), *map(_row, rows)])


def sites_markdown() -> str:
    """Site, hook, dims and what each registered family's adapter reads for it."""
    from sn_interp.models.adapter import LLAMA_LAYOUT
    from sn_interp.names import SITES, VISION_SITE

    rows = []
    for site in SITES.values():
        sub, end = LLAMA_LAYOUT[site.name]
        module = f"{end} of {'decoder layer l' if not sub else '`' + sub + '`'}"
        rows.append([f"`{site.name}`", f"`{site.hook}`", ", ".join(("sample", *site.dims)),
                     module, site.long_name])
    rows.append([f"`{VISION_SITE.name}` (opt-in)", f"`{VISION_SITE.hook}`",
                 ", ".join(("sample", *VISION_SITE.dims)), "output of vision block l, "
                 "mean over patch tokens", VISION_SITE.long_name])
    return _table(["variable", "TransformerLens hook", "dims", "module read", "meaning"], rows)


def families_markdown() -> str:
    """Registered family -> the HF classes its adapter accepts."""
    from sn_interp.models.registry import supported_architectures

    return _table(["family", "classes"], [[f"`{fam}`", ", ".join(f"`{a}`" for a in archs)]
                                          for fam, archs in supported_architectures().items()])


def adapters_markdown() -> str:
    """Per family: the module each site of decoder layer ``l`` is read at."""
    from sn_interp.models.registry import FAMILIES
    from sn_interp.names import SITES

    out = []
    for fam in FAMILIES:
        ad, rows = fam.adapter, []
        for site in SITES:
            cells = []
            for kind, layout in ad.layouts.items():
                where = "" if len(ad.layouts) == 1 else f"{kind} layers: "
                if site not in layout:
                    cells.append(f"{where}absent")
                    continue
                sub, end = layout[site]
                cells.append(f"{where}{end} of `{ad.layers}[l]" + (f".{sub}`" if sub else "`"))
            rows.append([f"`{site}`", "; ".join(cells)])
        rows.append(["`vision_resid_post`", "output of `" + "` or `".join(
            f"{p}[l]" for p in ad.vision_blocks) + f"`, pooled `{ad.vision_tokens}`"
            + (", CLS token left out" if ad.vision_cls else "")])
        out += [f"**`{fam.name}`** ({', '.join(ad.architectures)}); final norm "
                f"`{ad.final_norm}`, LM head `{ad.lm_head}`:", "",
                _table(["site", "module read"], rows), ""]
    return "\n".join(out)


def sizing_markdown() -> str:
    """Every family's real checkpoints: widths, then parameters, weight memory, store per 1k.

    The checkpoints are the registry's ``hub_ids`` (plus any others
    :mod:`sn_interp.models.sizing` records); one whose widths sizing does not record gets a row
    saying how to compute it.
    """
    from sn_interp.models import sizing
    from sn_interp.models.registry import FAMILIES

    ids = [(fam.name, h) for fam in FAMILIES for h in fam.hub_ids]
    known = {h for _, h in ids}
    ids += [(sizing.CHECKPOINTS[h].family, h) for h in sizing.CHECKPOINTS if h not in known]
    widths, sizes = [], []
    for family, hub_id in ids:
        if hub_id not in sizing.CHECKPOINTS:
            note = "not recorded"
            widths.append([f"`{family}`", f"`{hub_id}`", note, *["-"] * 4])
            sizes.append([f"`{hub_id}`", note, *["-"] * 5])
            continue
        r = sizing.summary(hub_id)
        widths.append([f"`{family}`", f"`{hub_id}`", r["n_layers"], r["d_model"], r["d_mlp"],
                       f"{r['n_heads']} x {r['d_head']} ({r['n_kv_heads']} KV)",
                       f"{r['n_vision_layers']} x {r['d_vision']}"])
        sizes.append([f"`{hub_id}`", f"{r['params'] / 1e9:.2f}B",
                      f"{r['weights_gb_float32']:.1f}", f"{r['weights_gb_bfloat16']:.1f}",
                      f"{r['store_gb_per_1000_float32']:.2f}",
                      f"{r['store_gb_per_1000_float16']:.2f}",
                      f"{r['store_gb_per_1000_float32_with_vision']:.2f}"])
    return (_table(["family", "checkpoint", "layers", "d_model", "d_mlp", "heads x d_head",
                    "vision layers x width"], widths)
            + "\n\nMemory of the weights and size of an activation store of 1,000 images "
              "(all seven sites, every layer):\n\n"
            + _table(["checkpoint", "params", "weights fp32 (GB)", "weights bf16 (GB)",
                      "store fp32 (GB)", "store fp16 (GB)", "store fp32 + vision (GB)"], sizes))


def hub_markdown() -> str:
    """The hub adapters: the dataset each reads, its splits, the columns it expects."""
    from sn_interp.tasks.hub import ADAPTERS

    rows = []
    for name, a in ADAPTERS.items():
        hub = f"`{a.hub_id}`" + (f" (config `{a.config}`)" if a.config else "") if a.hub_id \
            else "none: local copy only"
        splits = ", ".join(f"{k}: `{v}`" for k, v in a.splits.items())
        opts = ", ".join(f"`{k}={v!r}`" for k, v in a.options.items()) or ""
        rows.append([f"`{name}`", hub, splits, a.description, opts])
    return _table(["task", "hub dataset", "partition: hub split", "rows it expects", "options"],
                  rows)


def _field_docs() -> dict[str, dict[str, str]]:
    """Analysis -> field -> its docstring (``""`` holds the shared StudyConfig fields)."""
    from sn_interp.analyses import _common
    from sn_interp.analyses.report import ANALYSES

    docs = {"": _common.field_docs(_common.StudyConfig)}
    for name in (*ANALYSES, "report"):
        module = importlib.import_module(f"sn_interp.analyses.{name}")
        docs[name] = _common.field_docs(module.Config)
    return docs


def study_markdown(path: str) -> str:
    """A study TOML whole, then a table of every key it sets with the field's documentation."""
    import tomllib
    from pathlib import Path

    text = Path(path).read_text()
    tomllib.loads(text)  # a config that does not parse fails the build
    docs = _field_docs()
    rows, table = [], ""
    for line in text.splitlines():
        code = line.split("#", 1)[0].strip()
        if code.startswith("[") and code.endswith("]"):
            table = code.strip("[]")
            rows.append([f"`[{table}]`", "", f"options of `{table}` only (override the top level)",
                         ""])
        elif "=" in code and not code.startswith(("\"", " ")):
            key, value = (x.strip() for x in code.split("=", 1))
            where = docs.get(table, {}) if table else docs[""]
            doc = where.get(key) or next((d[key] for d in docs.values() if key in d), "")
            if not doc:
                raise ValueError(f"{path}: key {key!r} is documented by no Config field")
            note = line.split("#", 1)[1].strip() if "#" in line else ""
            rows.append([f"`{key}`", f"`{value}`" if len(value) < 60 and value != "[" else "(the list above)", doc,
                         note])
    lang = "toml"
    return (f"```{lang}\n{text}```\n\n"
            + _table(["key", "value", "what it sets (from the Config docs)", "comment in the file"],
                     rows))


def rules_markdown() -> str:
    """One section per registered rule: its module docstring (the exact decision rule)."""
    from sn_interp.probes.rules import get_rule, rule_names

    out = []
    for name in rule_names():
        module = type(get_rule(name)).__module__
        out += [f"### `rule=\"{name}\"`", "", f"::: {module}", "    options:",
                "      show_root_heading: false", "      show_root_toc_entry: false",
                "      members: false", ""]
    return "\n".join(out)


def fingerprint_markdown() -> str:
    """The store fingerprint: attribute -> what a difference in it means."""
    from sn_interp.store import FINGERPRINT

    return _table(["attribute", "a difference means"],
                  [[f"`{k}`", v] for k, v in FINGERPRINT.items()])


GENERATORS = {MARKER: api_markdown, "<!-- sites:table -->": sites_markdown,
              "<!-- hub:table -->": hub_markdown, "<!-- rules -->": rules_markdown,
              "<!-- store:fingerprint -->": fingerprint_markdown, "<!-- adapters:table -->": adapters_markdown,
              "<!-- families:table -->": families_markdown,
              "<!-- sizing:table -->": sizing_markdown}


STUDY = re.compile(r"<!-- study:(\S+) -->")


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (mkdocs API)
    for marker, make in GENERATORS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return STUDY.sub(lambda m: study_markdown(m.group(1)), markdown)
