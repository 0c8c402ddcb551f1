"""Model families are one-module plug-ins: nothing outside the model packages names them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from sn_interp.models import registry

PACKAGE = Path(__file__).resolve().parents[2] / "sn_interp"
#: Packages allowed to name families, HF classes and module paths.
MODEL_PACKAGES = ("models", "checkpoints")
#: HF module-path fragments and family quirks that only an adapter may know.
PATHS = ("language_model", "text_model", "self_attn", "linear_attn", "o_proj", "down_proj",
         "vision_tower", "vision_model", "model.visual", "post_attention_layernorm",
         "feedforward_layernorm", "image_grid_thw", "pixel_values", "DeepStack")
FAMILY_WORDS = ("LLaVA", "Llava", "Qwen", "Gemma", "Idefics", "SmolVLM", "InternVL", "Mistral",
                "Pixtral", "PaliGemma", "ForConditionalGeneration")


def _outside_model_packages() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py"))
            if p.relative_to(PACKAGE).parts[0] not in MODEL_PACKAGES]


def test_no_family_class_or_module_path_outside_the_model_packages() -> None:
    archs = [a for fam in registry.FAMILIES for a in fam.adapter.architectures]
    families = [fam.name for fam in registry.FAMILIES]
    words = [*archs, *PATHS, *FAMILY_WORDS]
    pattern = re.compile("|".join(re.escape(w) for w in words)
                         + "|" + "|".join(rf"[\"']{re.escape(f)}[\"']" for f in families))
    hits = [f"{p.relative_to(PACKAGE)}:{i}: {line.strip()}"
            for p in _outside_model_packages()
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert len(_outside_model_packages()) > 20  # the grep sees the package
    assert not hits, "\n".join(hits)


def test_registry_is_explicit_and_complete() -> None:
    modules = {p.stem for p in (PACKAGE / "models" / "families").glob("*.py")
               if not p.stem.startswith("_")}
    listed = {fam.adapter.family for fam in registry.FAMILIES}
    assert listed == modules, "every family module is listed once in registry.FAMILIES"
    archs = [a for fam in registry.FAMILIES for a in fam.adapter.architectures]
    assert len(archs) == len(set(archs)), "an architecture belongs to one family"
    for fam in registry.FAMILIES:
        assert fam.tiny, f"{fam.name} declares no tiny test checkpoint"
        assert {s.model_class for s in fam.tiny} <= set(fam.adapter.architectures)
        assert {s.family for s in fam.tiny} == {fam.name}
        assert fam.hub_ids, f"{fam.name} lists no real checkpoints"


def test_family_modules_do_not_import_the_registry() -> None:
    """Importing every family module (in a fresh interpreter) loads no registry or builder."""
    modules = sorted(p.stem for p in (PACKAGE / "models" / "families").glob("*.py"))
    code = ("import sys; "
            + "; ".join(f"import sn_interp.models.families.{m}" for m in modules if m != "__init__")
            + "; bad = [m for m in sys.modules if m in ('sn_interp.models.registry', "
            "'sn_interp.checkpoints', 'sn_interp.probes', "
            "'sn_interp.analyses')]; print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_family_study_configs_cover_the_families() -> None:
    import tomllib

    studies = PACKAGE.parent / "analyses"
    tiny = tomllib.loads((studies / "families-tiny.toml").read_text())["models"]
    specs = registry.tiny_specs()
    assert set(tiny) <= set(specs) and len({specs[m].family for m in tiny}) >= 3
    paper = tomllib.loads((studies / "families-paper.toml").read_text())["models"]
    family_of = {hub: fam.name for fam in registry.FAMILIES for hub in fam.hub_ids}
    assert set(paper) <= set(family_of), set(paper) - set(family_of)
    assert {family_of[m] for m in paper} == {fam.name for fam in registry.FAMILIES}


def test_version_lives_in_its_own_module() -> None:
    import tomllib

    from sn_interp._version import __version__

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == __version__


FORBIDDEN = ("sn_interp.probes", "sn_interp.analyses", "sn_interp.early_exit",
             "sn_interp.extraction", "sn_interp.predict", "sn_interp.plotting")


def _imports(path: Path) -> list[str]:
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [node.module] if node.module != "sn_interp" else [
                f"sn_interp.{a.name}" for a in node.names]
    return found


def test_loading_and_building_do_not_import_upward() -> None:
    """models/ and checkpoints/ import neither probes, analyses nor the package root."""
    bad = []
    for pkg in MODEL_PACKAGES:
        for path in sorted((PACKAGE / pkg).rglob("*.py")):
            for name in _imports(path):
                head = name.split(".")[1] if name.startswith("sn_interp.") else ""
                submodule = (PACKAGE / head).is_dir() or (PACKAGE / f"{head}.py").is_file()
                root = name == "sn_interp" or (head != "" and not submodule)
                if name.startswith(FORBIDDEN) or root:
                    bad.append(f"{path.relative_to(PACKAGE)}: {name}")
    assert not bad, "\n".join(bad)
